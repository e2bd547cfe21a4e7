//! The DynamoDB store: one table serving every access pattern of DESIGN §10.
//!
//! Item layout (`pk`, `sk` strings; the item's JSON in `doc`):
//!
//! | item | pk | sk | GSI keys |
//! |---|---|---|---|
//! | grant | `GRANT#<id>` | `#GRANT` | gsi1 `REQ#<requester>`/id · gsi2 `STATUS#<status>`/id · gsi3 `TICKET#<connection>#<key>`/id (bound grants) · gsi4 `ACTIVE#<requester>#<resource>`/id (active grants only) · gsi5 `GRANTS`/id |
//! | audit event | `GRANT#<id>` | `EVENT#<version, 10 digits>` | – |
//! | resource | `RESOURCE#<id>` | `#RESOURCE` | gsi5 `RESOURCES`/id |
//! | connection | `CONNECTION#<id>` | `#CONNECTION` | gsi5 `CONNECTIONS`/id (settings in `doc`, authorization status in `auth`, JSON) |
//! | webhook delivery | `DELIVERY#<key>` | `#DELIVERY` | – (`ttl` attribute: DynamoDB deletes it, days late at worst) |
//!
//! Grant ids are ULIDs, so every GSI sort key orders by request time: "newest first" is a reverse query. Grants
//! carry `status` and `version` as attributes: every state change is a `PutItem` (or a `TransactWriteItems` with
//! its audit event) conditioned on both. GSIs project all attributes and are eventually consistent; where
//! that matters (rule 8) candidates are re-read with strongly consistent `GetItem`.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, Put, ScalarAttributeType, TransactWriteItem,
};
use std::collections::HashMap;
use time::OffsetDateTime;

mod connections;
#[cfg(test)]
mod cursor_props;

use super::{decode_cursor, encode_cursor};
use crate::domain::grant::Expected;
use crate::domain::{AuditEvent, Grant, GrantStatus, Resource, TicketRef};
use crate::ports::{GrantFilter, GrantStore, Page, StoreError};

type Item = HashMap<String, AttributeValue>;

/// The global secondary indexes: (name, partition key, sort key).
pub const INDEXES: [(&str, &str, &str); 5] = [
    ("gsi1", "gsi1pk", "gsi1sk"),
    ("gsi2", "gsi2pk", "gsi2sk"),
    ("gsi3", "gsi3pk", "gsi3sk"),
    ("gsi4", "gsi4pk", "gsi4sk"),
    ("gsi5", "gsi5pk", "gsi5sk"),
];
const BY_REQUESTER: usize = 0;
const BY_STATUS: usize = 1;
const BY_TICKET: usize = 2;
const BY_ACCESS: usize = 3;
const BY_TYPE: usize = 4;

/// The attribute DynamoDB's TTL deletes by (webhook delivery records only).
pub const TTL_ATTRIBUTE: &str = "ttl";

/// How many queries one list page may take before it returns a short page with a cursor.
const MAX_ROUND_TRIPS: usize = 20;

/// One query: the index (`None`: the table, read consistently), its partition, the direction, and an optional
/// sort-key prefix.
struct QuerySpec<'a> {
    index: Option<usize>,
    partition: String,
    forward: bool,
    sk_prefix: Option<&'a str>,
}

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn describe<E: ProvideErrorMetadata + std::fmt::Display>(e: &E) -> String {
    match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => e.to_string(),
    }
}

fn unavailable<E: ProvideErrorMetadata + std::fmt::Display>(e: E) -> StoreError {
    StoreError::Unavailable(describe(&e))
}

fn doc_of<T: serde::de::DeserializeOwned>(item: &Item) -> Result<T, StoreError> {
    let doc = item
        .get("doc")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| StoreError::Corrupt("item without doc".into()))?;
    serde_json::from_str(doc).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn grant_key(id: &str) -> Item {
    HashMap::from([
        ("pk".into(), s(format!("GRANT#{id}"))),
        ("sk".into(), s("#GRANT")),
    ])
}

fn grant_item(grant: &Grant) -> Result<Item, StoreError> {
    let doc = serde_json::to_string(grant).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let mut item = grant_key(&grant.id);
    item.insert("doc".into(), s(doc));
    item.insert("status".into(), s(grant.status.as_str()));
    item.insert(
        "version".into(),
        AttributeValue::N(grant.version.to_string()),
    );
    let mut index = |i: usize, pk: String| {
        item.insert(INDEXES[i].1.into(), s(pk));
        item.insert(INDEXES[i].2.into(), s(grant.id.clone()));
    };
    index(BY_REQUESTER, format!("REQ#{}", grant.requester));
    index(BY_STATUS, format!("STATUS#{}", grant.status.as_str()));
    if let Some(t) = &grant.ticket {
        index(BY_TICKET, ticket_pk(t));
    }
    if grant.status == GrantStatus::Active {
        index(BY_ACCESS, access_pk(&grant.requester, &grant.resource));
    }
    index(BY_TYPE, "GRANTS".into());
    Ok(item)
}

fn ticket_pk(t: &TicketRef) -> String {
    format!("TICKET#{}#{}", t.connection, t.key)
}

fn access_pk(requester: &str, resource: &str) -> String {
    format!("ACTIVE#{requester}#{resource}")
}

fn event_item(event: &AuditEvent) -> Result<Item, StoreError> {
    let doc = serde_json::to_string(event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(HashMap::from([
        ("pk".into(), s(format!("GRANT#{}", event.grant_id))),
        ("sk".into(), s(format!("EVENT#{}", event.sort_key()))),
        ("doc".into(), s(doc)),
    ]))
}

/// A cursor is the query's `LastEvaluatedKey`, all string attributes.
fn encode_key(key: &Item) -> String {
    let plain: HashMap<&str, &str> = key
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.as_s().ok()?.as_str())))
        .collect();
    encode_cursor(&plain)
}

fn decode_key(cursor: &str, expected: &[&str]) -> Result<Item, StoreError> {
    let plain: HashMap<String, String> = decode_cursor(cursor)?;
    if plain.len() != expected.len() || !expected.iter().all(|k| plain.contains_key(*k)) {
        return Err(StoreError::InvalidCursor);
    }
    Ok(plain.into_iter().map(|(k, v)| (k, s(v))).collect())
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Creates the table with its indexes (tests, and operators not using the SAM template). The template's
    /// definition is checked against this one by a test.
    pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
        let mut attributes = vec![("pk", "sk")];
        attributes.extend(INDEXES.iter().map(|(_, pk, sk)| (*pk, *sk)));
        let mut request = client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest);
        for (pk, sk) in &attributes {
            for name in [pk, sk] {
                request = request.attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(*name)
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .map_err(|e| StoreError::Unavailable(e.to_string()))?,
                );
            }
        }
        request = request.set_key_schema(Some(key_schema("pk", "sk")?));
        for (name, pk, sk) in INDEXES {
            request = request.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(name)
                    .set_key_schema(Some(key_schema(pk, sk)?))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?,
            );
        }
        request.send().await.map_err(unavailable)?;
        Ok(())
    }

    async fn get_item(&self, key: Item) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.item)
    }

    /// Queries an index (or the table with `index = None`) forward or backward, filtering client-side, until
    /// `limit` matches or the partition ends.
    #[allow(clippy::too_many_arguments)]
    async fn query_page<T, F>(
        &self,
        spec: QuerySpec<'_>,
        limit: usize,
        cursor: Option<&str>,
        keep: F,
    ) -> Result<Page<T>, StoreError>
    where
        T: serde::de::DeserializeOwned,
        F: Fn(&T) -> bool,
    {
        let QuerySpec {
            index,
            partition,
            forward,
            sk_prefix,
        } = spec;
        let (pk_attr, sk_attr) = match index {
            Some(i) => (INDEXES[i].1, INDEXES[i].2),
            None => ("pk", "sk"),
        };
        let key_names: Vec<&str> = match index {
            Some(i) => vec!["pk", "sk", INDEXES[i].1, INDEXES[i].2],
            None => vec!["pk", "sk"],
        };
        let mut start = cursor.map(|c| decode_key(c, &key_names)).transpose()?;
        let limit = limit.max(1);
        let mut items = Vec::new();
        for _ in 0..MAX_ROUND_TRIPS {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .expression_attribute_names("#pk", pk_attr)
                .expression_attribute_values(":pk", s(partition.clone()))
                .scan_index_forward(forward)
                .limit(i32::try_from(limit - items.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take());
            query = match sk_prefix {
                Some(prefix) => query
                    .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                    .expression_attribute_names("#sk", sk_attr)
                    .expression_attribute_values(":prefix", s(prefix)),
                None => query.key_condition_expression("#pk = :pk"),
            };
            if let Some(i) = index {
                query = query.index_name(INDEXES[i].0);
            } else {
                query = query.consistent_read(true);
            }
            let out = query.send().await.map_err(|e| {
                if e.code() == Some("ValidationException") && cursor.is_some() {
                    StoreError::InvalidCursor
                } else {
                    unavailable(e)
                }
            })?;
            for item in out.items() {
                let value: T = doc_of(item)?;
                if keep(&value) {
                    items.push(value);
                }
            }
            start = out.last_evaluated_key;
            if items.len() >= limit || start.is_none() {
                break;
            }
        }
        Ok(Page {
            items,
            next: start.as_ref().map(encode_key),
        })
    }

    /// Every item of a partition (for small sets: the grants of one ticket).
    async fn query_all<T: serde::de::DeserializeOwned>(
        &self,
        index: usize,
        partition: String,
    ) -> Result<Vec<T>, StoreError> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .query_page::<T, _>(
                    QuerySpec {
                        index: Some(index),
                        partition: partition.clone(),
                        forward: true,
                        sk_prefix: None,
                    },
                    500,
                    cursor.as_deref(),
                    |_| true,
                )
                .await?;
            all.extend(page.items);
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(all),
            }
        }
    }
}

fn key_schema(pk: &str, sk: &str) -> Result<Vec<KeySchemaElement>, StoreError> {
    let build = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    };
    Ok(vec![build(pk, KeyType::Hash)?, build(sk, KeyType::Range)?])
}

fn is_conditional_failure<E: ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

#[async_trait]
impl GrantStore for DynamoStore {
    async fn insert_grant(&self, grant: &Grant, event: &AuditEvent) -> Result<(), StoreError> {
        let grant_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(grant_item(grant)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let event_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(event_item(event)?))
            .build()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        self.client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(grant_put).build())
            .transact_items(TransactWriteItem::builder().put(event_put).build())
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(s) if s.is_transaction_canceled_exception() => StoreError::AlreadyExists,
                _ => unavailable(e),
            })?;
        Ok(())
    }

    async fn update_grant(
        &self,
        grant: &Grant,
        expected: Expected,
        event: Option<&AuditEvent>,
    ) -> Result<(), StoreError> {
        let condition = "#status = :status AND #version = :version";
        let names = HashMap::from([
            ("#status".to_owned(), "status".to_owned()),
            ("#version".to_owned(), "version".to_owned()),
        ]);
        let values = HashMap::from([
            (":status".to_owned(), s(expected.status.as_str())),
            (
                ":version".to_owned(),
                AttributeValue::N(expected.version.to_string()),
            ),
        ]);
        let Some(event) = event else {
            return self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(grant_item(grant)?))
                .condition_expression(condition)
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    if e.as_service_error().is_some_and(is_conditional_failure) {
                        StoreError::Conflict
                    } else {
                        unavailable(e)
                    }
                });
        };
        let grant_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(grant_item(grant)?))
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let event_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(event_item(event)?))
            .build()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        self.client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(grant_put).build())
            .transact_items(TransactWriteItem::builder().put(event_put).build())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| match e.as_service_error() {
                // A cancelled transaction here is the grant's condition (the event key is new by construction)
                // or a conflicting concurrent transaction: either way, somebody else moved the grant.
                Some(s) if s.is_transaction_canceled_exception() => StoreError::Conflict,
                _ => unavailable(e),
            })
    }

    async fn get_grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        self.get_item(grant_key(id))
            .await?
            .as_ref()
            .map(doc_of)
            .transpose()
    }

    async fn list_grants(
        &self,
        filter: &GrantFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Grant>, StoreError> {
        let (index, partition) = if let Some(t) = &filter.ticket {
            (BY_TICKET, ticket_pk(t))
        } else if let Some(r) = &filter.requester {
            (BY_REQUESTER, format!("REQ#{r}"))
        } else if let Some(st) = filter.status {
            (BY_STATUS, format!("STATUS#{}", st.as_str()))
        } else {
            (BY_TYPE, "GRANTS".to_owned())
        };
        self.query_page(
            QuerySpec {
                index: Some(index),
                partition,
                forward: false,
                sk_prefix: None,
            },
            limit,
            cursor,
            |g: &Grant| filter.matches(g),
        )
        .await
    }

    async fn active_grants_for(
        &self,
        requester: &str,
        resource: &str,
    ) -> Result<Vec<Grant>, StoreError> {
        let candidates: Vec<Grant> = self
            .query_all(BY_ACCESS, access_pk(requester, resource))
            .await?;
        let mut confirmed = Vec::new();
        for candidate in candidates {
            if let Some(g) = self.get_grant(&candidate.id).await?
                && g.status == GrantStatus::Active
            {
                confirmed.push(g);
            }
        }
        Ok(confirmed)
    }

    async fn grants_for_ticket(&self, ticket: &TicketRef) -> Result<Vec<Grant>, StoreError> {
        self.query_all(BY_TICKET, ticket_pk(ticket)).await
    }

    async fn list_events(
        &self,
        grant_id: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<AuditEvent>, StoreError> {
        self.query_page(
            QuerySpec {
                index: None,
                partition: format!("GRANT#{grant_id}"),
                forward: true,
                sk_prefix: Some("EVENT#"),
            },
            limit,
            cursor,
            |_: &AuditEvent| true,
        )
        .await
    }

    async fn put_resource(&self, resource: &Resource) -> Result<(), StoreError> {
        let item = HashMap::from([
            ("pk".into(), s(format!("RESOURCE#{}", resource.id))),
            ("sk".into(), s("#RESOURCE")),
            ("gsi5pk".into(), s("RESOURCES")),
            ("gsi5sk".into(), s(resource.id.clone())),
            ("doc".into(), s(resource.to_storage_json().to_string())),
        ]);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get_resource(&self, id: &str) -> Result<Option<Resource>, StoreError> {
        let key = HashMap::from([
            ("pk".into(), s(format!("RESOURCE#{id}"))),
            ("sk".into(), s("#RESOURCE")),
        ]);
        self.get_item(key).await?.as_ref().map(doc_of).transpose()
    }

    async fn list_resources(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Resource>, StoreError> {
        self.query_page(
            QuerySpec {
                index: Some(BY_TYPE),
                partition: "RESOURCES".into(),
                forward: true,
                sk_prefix: None,
            },
            limit,
            cursor,
            |_: &Resource| true,
        )
        .await
    }

    async fn delete_resource(&self, id: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(format!("RESOURCE#{id}")))
            .key("sk", s("#RESOURCE"))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn remember_delivery(
        &self,
        key: &str,
        expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("DELIVERY#{key}")))
            .item("sk", s("#DELIVERY"))
            .item(
                TTL_ATTRIBUTE,
                AttributeValue::N(expires_at.unix_timestamp().to_string()),
            )
            // New, or an expired record DynamoDB has not swept yet.
            .condition_expression("attribute_not_exists(pk) OR #ttl < :now")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(is_conditional_failure) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn delivery_seen(&self, key: &str, now: OffsetDateTime) -> Result<bool, StoreError> {
        let item = self
            .get_item(HashMap::from([
                ("pk".into(), s(format!("DELIVERY#{key}"))),
                ("sk".into(), s("#DELIVERY")),
            ]))
            .await?;
        let expires = item
            .as_ref()
            .and_then(|i| i.get(TTL_ATTRIBUTE))
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<i64>().ok());
        Ok(expires.is_some_and(|e| e >= now.unix_timestamp()))
    }
}
