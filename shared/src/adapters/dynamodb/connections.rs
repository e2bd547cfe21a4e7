//! [`ConnectionStore`] on DynamoDB: item `CONNECTION#<id>` / `#CONNECTION`, listed through gsi5 `CONNECTIONS`.
//! The settings (`doc`) and the authorization status (`auth`) are separate attributes, each changed by its
//! own conditional `UpdateItem`, so recording a call's outcome never overwrites an admin's concurrent change.
//! Every settings write adds one to `settings_version` (absent on an item written before versions: version 1).

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;

use super::{
    Attempts, BY_TYPE, DynamoStore, INDEXES, Item, WRITER, decode_key, encode_key,
    is_conditional_failure, s, store_error, writer_token,
};
use crate::domain::connection::{
    AuthState, Connection, ConnectionSettings, MissedClosing, WebhookActivity,
};
use crate::ports::{ConnectionStore, Page, StoreError, VersionedConnection};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Webhook activity: two attributes of the connection item, each set by its own `UpdateItem`.
const LAST_DELIVERY: &str = "last_delivery_at";
const MISSED_CLOSING: &str = "missed_closing";

const PARTITION: &str = "CONNECTIONS";

/// The version of the settings: an attribute beside `doc`, absent (version 1) until the first settings write.
const SETTINGS_VERSION: &str = "settings_version";

/// The version of the settings an item holds.
fn version_of(item: &Item) -> Result<u64, StoreError> {
    match item.get(SETTINGS_VERSION) {
        None => Ok(1),
        Some(v) => v.as_n().ok().and_then(|n| n.parse().ok()).ok_or_else(|| {
            StoreError::Corrupt("connection item with a bad settings version".into())
        }),
    }
}

fn key(id: &str) -> Item {
    HashMap::from([
        ("pk".into(), s(format!("CONNECTION#{id}"))),
        ("sk".into(), s("#CONNECTION")),
    ])
}

fn json<T: serde::Serialize>(value: &T) -> Result<AttributeValue, StoreError> {
    serde_json::to_string(value)
        .map(s)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn attribute<T: serde::de::DeserializeOwned>(item: &Item, name: &str) -> Result<T, StoreError> {
    let text = item
        .get(name)
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("connection item without `{name}`")))?;
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn connection_of(item: &Item) -> Result<Connection, StoreError> {
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok());
    Ok(Connection {
        settings: attribute(item, "doc")?,
        auth: attribute(item, "auth")?,
        webhook: WebhookActivity {
            last_delivery_at: text(LAST_DELIVERY)
                .map(|t| {
                    OffsetDateTime::parse(t, &Rfc3339)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))
                })
                .transpose()?,
            last_missed_closing: text(MISSED_CLOSING)
                .map(|_| attribute(item, MISSED_CLOSING))
                .transpose()?,
        },
    })
}

impl DynamoStore {
    /// `SET <attribute> = <value>` on an existing connection; `false` when it does not exist.
    async fn set_connection_attribute(
        &self,
        id: &str,
        attribute: &str,
        value: AttributeValue,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(id)))
            .update_expression("SET #a = :v")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#a", attribute)
            .expression_attribute_values(":v", value)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(is_conditional_failure) => Ok(false),
            Err(e) => Err(store_error(e)),
        }
    }
}

#[async_trait]
impl ConnectionStore for DynamoStore {
    async fn insert_connection(&self, connection: &Connection) -> Result<(), StoreError> {
        let mut item = key(&connection.settings.id);
        item.insert("doc".into(), json(&connection.settings)?);
        item.insert("auth".into(), json(&connection.auth)?);
        item.insert(INDEXES[BY_TYPE].1.into(), s(PARTITION));
        item.insert(INDEXES[BY_TYPE].2.into(), s(connection.settings.id.clone()));
        let writer = writer_token();
        item.insert(WRITER.into(), s(writer.clone()));
        let attempts = Attempts::default();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .customize()
            .interceptor(attempts.clone())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(is_conditional_failure) => {
                // Our own first attempt, applied but unanswered, if the SDK retried and the item bears our token.
                let ours = attempts.retried()
                    && self
                        .get_item(key(&connection.settings.id))
                        .await?
                        .as_ref()
                        .and_then(|item| item.get(WRITER))
                        .is_some_and(|w| w.as_s().ok() == Some(&writer));
                if ours {
                    Ok(())
                } else {
                    Err(StoreError::AlreadyExists)
                }
            }
            Err(e) => Err(store_error(e)),
        }
    }

    async fn update_settings(&self, settings: &ConnectionSettings) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&settings.id)))
            .update_expression("SET doc = :doc, #version = if_not_exists(#version, :one) + :one")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#version", SETTINGS_VERSION)
            .expression_attribute_values(":doc", json(settings)?)
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(is_conditional_failure) => Ok(false),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn update_settings_if(
        &self,
        settings: &ConnectionSettings,
        version: u64,
    ) -> Result<u64, StoreError> {
        // Version 1 is also an item written before versions existed, which has no version attribute.
        let condition = if version == 1 {
            "attribute_exists(pk) AND (#version = :version OR attribute_not_exists(#version))"
        } else {
            "attribute_exists(pk) AND #version = :version"
        };
        let attempts = Attempts::default();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&settings.id)))
            .update_expression("SET doc = :doc, #version = :next")
            .condition_expression(condition)
            .expression_attribute_names("#version", SETTINGS_VERSION)
            .expression_attribute_values(":doc", json(settings)?)
            .expression_attribute_values(":version", AttributeValue::N(version.to_string()))
            .expression_attribute_values(":next", AttributeValue::N((version + 1).to_string()))
            .customize()
            .interceptor(attempts.clone())
            .send()
            .await;
        match result {
            Ok(_) => Ok(version + 1),
            Err(e) if e.as_service_error().is_some_and(is_conditional_failure) => {
                // Our own first attempt, applied but unanswered, if the SDK retried and the item now holds
                // exactly what we wrote at the version we wrote.
                if attempts.retried()
                    && let Some(item) = self.get_item(key(&settings.id)).await?
                    && version_of(&item)? == version + 1
                    && attribute::<ConnectionSettings>(&item, "doc")? == *settings
                {
                    return Ok(version + 1);
                }
                Err(StoreError::Conflict)
            }
            Err(e) => Err(store_error(e)),
        }
    }

    async fn update_auth(&self, id: &str, auth: &AuthState) -> Result<bool, StoreError> {
        self.set_connection_attribute(id, "auth", json(auth)?).await
    }

    async fn get_connection(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        self.get_item(key(id))
            .await?
            .as_ref()
            .map(connection_of)
            .transpose()
    }

    async fn get_connection_versioned(
        &self,
        id: &str,
    ) -> Result<Option<VersionedConnection>, StoreError> {
        let Some(item) = self.get_item(key(id)).await? else {
            return Ok(None);
        };
        Ok(Some(VersionedConnection {
            connection: connection_of(&item)?,
            version: version_of(&item)?,
        }))
    }

    async fn list_connections_versioned(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<VersionedConnection>, StoreError> {
        let (index, pk_attr, _) = INDEXES[BY_TYPE];
        let key_names = ["pk", "sk", INDEXES[BY_TYPE].1, INDEXES[BY_TYPE].2];
        let start = cursor.map(|c| decode_key(c, &key_names)).transpose()?;
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", pk_attr)
            .expression_attribute_values(":pk", s(PARTITION))
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| {
                if cursor.is_some()
                    && aws_sdk_dynamodb::error::ProvideErrorMetadata::code(&e)
                        == Some("ValidationException")
                {
                    StoreError::InvalidCursor
                } else {
                    store_error(e)
                }
            })?;
        let items = out
            .items()
            .iter()
            .map(|item| {
                Ok(VersionedConnection {
                    connection: connection_of(item)?,
                    version: version_of(item)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Page {
            items,
            next: out.last_evaluated_key.as_ref().map(encode_key),
        })
    }

    async fn record_delivery(&self, id: &str, at: OffsetDateTime) -> Result<bool, StoreError> {
        let at = at
            .format(&Rfc3339)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.set_connection_attribute(id, LAST_DELIVERY, s(at))
            .await
    }

    async fn record_missed_closing(
        &self,
        id: &str,
        missed: &MissedClosing,
    ) -> Result<bool, StoreError> {
        self.set_connection_attribute(id, MISSED_CLOSING, json(missed)?)
            .await
    }

    async fn delete_connection(&self, id: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(id)))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(store_error)?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn delete_connection_if(&self, id: &str, version: u64) -> Result<(), StoreError> {
        // Version 1 is also an item written before versions existed, which has no version attribute.
        let condition = if version == 1 {
            "attribute_exists(pk) AND (#version = :version OR attribute_not_exists(#version))"
        } else {
            "attribute_exists(pk) AND #version = :version"
        };
        self.delete_at_version(key(id), condition, SETTINGS_VERSION, version)
            .await
    }
}
