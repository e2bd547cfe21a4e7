//! [`ConnectionStore`] on SQLite: table `connections (id, settings, auth)`, both JSON. Settings and status are
//! separate columns so that recording a call's outcome never overwrites an admin's concurrent change.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{EmbeddedStore, corrupt, to_json, unavailable};
use crate::adapters::{decode_cursor, encode_cursor};
use crate::domain::connection::{AuthState, Connection, ConnectionSettings};
use crate::ports::{ConnectionStore, Page, StoreError};

fn connection_from(settings: &str, auth: &str) -> Result<Connection, StoreError> {
    Ok(Connection {
        settings: serde_json::from_str(settings).map_err(corrupt)?,
        auth: serde_json::from_str(auth).map_err(corrupt)?,
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
                    "UPDATE connections SET settings = ?1 WHERE id = ?2",
                    params![doc, id],
                )
                .map_err(unavailable)?
                > 0)
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
            let row: Option<(String, String)> = conn
                .query_row(
                    "SELECT settings, auth FROM connections WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(unavailable)?;
            row.map(|(s, a)| connection_from(&s, &a)).transpose()
        })
        .await
    }

    async fn list_connections(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Connection>, StoreError> {
        let after: String = cursor.map(decode_cursor).transpose()?.unwrap_or_default();
        let limit = limit.max(1);
        self.with(move |conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT settings, auth FROM connections WHERE id > ?1 ORDER BY id LIMIT ?2",
                )
                .map_err(unavailable)?;
            let rows: Vec<(String, String)> = stmt
                .query_map(params![after, (limit + 1) as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(unavailable)?
                .collect::<Result<_, _>>()
                .map_err(unavailable)?;
            let mut items = rows
                .iter()
                .map(|(s, a)| connection_from(s, a))
                .collect::<Result<Vec<_>, _>>()?;
            let next = if items.len() > limit {
                items.truncate(limit);
                items.last().map(|c| encode_cursor(&c.settings.id))
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
            Ok(conn
                .execute("DELETE FROM connections WHERE id = ?1", [id])
                .map_err(unavailable)?
                > 0)
        })
        .await
    }
}
