//! [`ConnectionStore`] on SQLite: table `connections (id, settings, auth, settings_version)`, settings and status
//! as JSON. Settings and status are separate columns so that recording a call's outcome never overwrites an
//! admin's concurrent change; every settings write adds one to `settings_version`.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{EmbeddedStore, corrupt, to_json, unavailable};
use crate::adapters::{decode_cursor, encode_cursor};
use crate::domain::connection::{
    AuthState, Connection, ConnectionSettings, MissedClosing, WebhookActivity,
};
use crate::ports::{ConnectionStore, Page, StoreError, VersionedConnection};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The columns every read selects: settings and status, and the webhook activity kept in
/// `connection_webhooks` (its own table, so that noting a delivery never rewrites the connection).
const COLUMNS: &str = "c.settings, c.auth, w.last_delivery_at, w.missed_closing, c.settings_version
     FROM connections c LEFT JOIN connection_webhooks w ON w.id = c.id";

type Row = (String, String, Option<String>, Option<String>, i64);

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

/// A database written before connections had versions gets the column; every connection it holds reads as
/// version 1.
pub(super) fn add_settings_versions(conn: &rusqlite::Connection) -> Result<(), StoreError> {
    let has_version: bool = conn
        .query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('connections') WHERE name = 'settings_version'",
            [],
            |r| r.get(0),
        )
        .map_err(unavailable)?;
    if !has_version {
        conn.execute_batch(
            "ALTER TABLE connections ADD COLUMN settings_version INTEGER NOT NULL DEFAULT 1;",
        )
        .map_err(unavailable)?;
    }
    Ok(())
}

fn versioned_from(row: &Row) -> Result<VersionedConnection, StoreError> {
    Ok(VersionedConnection {
        connection: connection_from(row)?,
        version: u64::try_from(row.4).map_err(corrupt)?,
    })
}

fn connection_from((settings, auth, delivery, missed, _): &Row) -> Result<Connection, StoreError> {
    Ok(Connection {
        settings: serde_json::from_str(settings).map_err(corrupt)?,
        auth: serde_json::from_str(auth).map_err(corrupt)?,
        webhook: WebhookActivity {
            last_delivery_at: delivery
                .as_deref()
                .map(|d| OffsetDateTime::parse(d, &Rfc3339).map_err(corrupt))
                .transpose()?,
            last_missed_closing: missed
                .as_deref()
                .map(|m| serde_json::from_str(m).map_err(corrupt))
                .transpose()?,
        },
    })
}

#[async_trait]
impl ConnectionStore for EmbeddedStore {
    async fn insert_connection(&self, connection: &Connection) -> Result<(), StoreError> {
        let id = connection.settings.id.clone();
        let (settings, auth) = (to_json(&connection.settings)?, to_json(&connection.auth)?);
        self.with(move |conn| {
            let inserted = conn
                .execute(
                    "INSERT OR IGNORE INTO connections (id, settings, auth) VALUES (?1, ?2, ?3)",
                    params![id, settings, auth],
                )
                .map_err(unavailable)?;
            if inserted == 0 {
                Err(StoreError::AlreadyExists)
            } else {
                Ok(())
            }
        })
        .await
    }

    async fn update_settings(&self, settings: &ConnectionSettings) -> Result<bool, StoreError> {
        let (id, doc) = (settings.id.clone(), to_json(settings)?);
        self.with(move |conn| {
            Ok(conn
                .execute(
                    "UPDATE connections SET settings = ?1, settings_version = settings_version + 1 WHERE id = ?2",
                    params![doc, id],
                )
                .map_err(unavailable)?
                > 0)
        })
        .await
    }

    async fn update_settings_if(
        &self,
        settings: &ConnectionSettings,
        version: u64,
    ) -> Result<u64, StoreError> {
        let (id, doc) = (settings.id.clone(), to_json(settings)?);
        let expected = i64::try_from(version).map_err(corrupt)?;
        self.with(move |conn| {
            // One statement is one transaction: the version compared is the version replaced.
            let written = conn
                .execute(
                    "UPDATE connections SET settings = ?1, settings_version = settings_version + 1
                     WHERE id = ?2 AND settings_version = ?3",
                    params![doc, id, expected],
                )
                .map_err(unavailable)?;
            if written == 0 {
                Err(StoreError::Conflict)
            } else {
                Ok(version + 1)
            }
        })
        .await
    }

    async fn update_auth(&self, id: &str, auth: &AuthState) -> Result<bool, StoreError> {
        let (id, doc) = (id.to_owned(), to_json(auth)?);
        self.with(move |conn| {
            Ok(conn
                .execute(
                    "UPDATE connections SET auth = ?1 WHERE id = ?2",
                    params![doc, id],
                )
                .map_err(unavailable)?
                > 0)
        })
        .await
    }

    async fn get_connection(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        let id = id.to_owned();
        self.with(move |conn| {
            let found: Option<Row> = conn
                .query_row(&format!("SELECT {COLUMNS} WHERE c.id = ?1"), [id], row)
                .optional()
                .map_err(unavailable)?;
            found.as_ref().map(connection_from).transpose()
        })
        .await
    }

    async fn get_connection_versioned(
        &self,
        id: &str,
    ) -> Result<Option<VersionedConnection>, StoreError> {
        let id = id.to_owned();
        self.with(move |conn| {
            let found: Option<Row> = conn
                .query_row(&format!("SELECT {COLUMNS} WHERE c.id = ?1"), [id], row)
                .optional()
                .map_err(unavailable)?;
            found.as_ref().map(versioned_from).transpose()
        })
        .await
    }

    async fn list_connections_versioned(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<VersionedConnection>, StoreError> {
        let after: String = cursor.map(decode_cursor).transpose()?.unwrap_or_default();
        let limit = limit.max(1);
        self.with(move |conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {COLUMNS} WHERE c.id > ?1 ORDER BY c.id LIMIT ?2"
                ))
                .map_err(unavailable)?;
            let rows: Vec<Row> = stmt
                .query_map(params![after, (limit + 1) as i64], row)
                .map_err(unavailable)?
                .collect::<Result<_, _>>()
                .map_err(unavailable)?;
            let mut items = rows
                .iter()
                .map(versioned_from)
                .collect::<Result<Vec<_>, _>>()?;
            let next = if items.len() > limit {
                items.truncate(limit);
                items
                    .last()
                    .map(|c| encode_cursor(&c.connection.settings.id))
            } else {
                None
            };
            Ok(Page { items, next })
        })
        .await
    }

    async fn delete_connection(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.with(move |conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            tx.execute("DELETE FROM connection_webhooks WHERE id = ?1", [&id])
                .map_err(unavailable)?;
            let deleted = tx
                .execute("DELETE FROM connections WHERE id = ?1", [&id])
                .map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn delete_connection_if(&self, id: &str, version: u64) -> Result<(), StoreError> {
        let id = id.to_owned();
        let expected = i64::try_from(version).map_err(corrupt)?;
        self.with(move |conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            // The version compared is the version deleted: one statement, inside the transaction that also
            // removes the webhook activity (kept only when the connection is).
            let deleted = tx
                .execute(
                    "DELETE FROM connections WHERE id = ?1 AND settings_version = ?2",
                    params![id, expected],
                )
                .map_err(unavailable)?;
            if deleted == 0 {
                return Err(StoreError::Conflict);
            }
            tx.execute("DELETE FROM connection_webhooks WHERE id = ?1", [&id])
                .map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn record_delivery(&self, id: &str, at: OffsetDateTime) -> Result<bool, StoreError> {
        let at = at.format(&Rfc3339).map_err(corrupt)?;
        self.set_webhook_column(id, "last_delivery_at", at).await
    }

    async fn record_missed_closing(
        &self,
        id: &str,
        missed: &MissedClosing,
    ) -> Result<bool, StoreError> {
        self.set_webhook_column(id, "missed_closing", to_json(missed)?)
            .await
    }
}

impl EmbeddedStore {
    /// Sets one column of a connection's webhook activity; `false` (nothing written) when the connection does
    /// not exist. `column` is one of two literals, never input.
    async fn set_webhook_column(
        &self,
        id: &str,
        column: &'static str,
        value: String,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.with(move |conn| {
            let changed = conn
                .execute(
                    &format!(
                        "INSERT INTO connection_webhooks (id, {column})
                         SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM connections WHERE id = ?1)
                         ON CONFLICT(id) DO UPDATE SET {column} = excluded.{column}"
                    ),
                    params![id, value],
                )
                .map_err(unavailable)?;
            Ok(changed > 0)
        })
        .await
    }
}
