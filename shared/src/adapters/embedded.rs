//! The embedded store for local mode: SQLite (rusqlite, bundled) in one file under the data directory.
//!
//! Why SQLite: transactions give the same "conditional write + audit event, atomically" as DynamoDB's
//! TransactWriteItems; WAL with `synchronous=FULL` keeps every acknowledged write across a crash or restart; and
//! the file can be inspected with the `sqlite3` shell. Grants are stored as their JSON with the columns that the
//! access patterns of DESIGN §10 query, each backed by an index.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

mod connections;

use super::{decode_cursor, encode_cursor};
use crate::domain::grant::Expected;
use crate::domain::reconcile::ReconcileState;
use crate::domain::{AuditEvent, Grant, GrantStatus, Resource, SideEffectState, TicketRef};
use crate::ports::{
    GrantFilter, GrantStore, Job, JobKind, Page, ResourceExpected, StoreError, VersionedResource,
};

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
CREATE TABLE IF NOT EXISTS grants (
    id TEXT PRIMARY KEY,
    requester TEXT NOT NULL,
    resource TEXT NOT NULL,
    status TEXT NOT NULL,
    version INTEGER NOT NULL,
    ticket_connection TEXT,
    ticket_key TEXT,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS grants_by_requester ON grants (requester, id);
CREATE INDEX IF NOT EXISTS grants_by_status ON grants (status, id);
CREATE INDEX IF NOT EXISTS grants_by_ticket ON grants (ticket_connection, ticket_key, id);
CREATE INDEX IF NOT EXISTS grants_by_ticket_id ON grants (ticket_connection, json_extract(doc, '$.ticket_id'));
CREATE INDEX IF NOT EXISTS grants_by_access ON grants (requester, resource, status);
CREATE TABLE IF NOT EXISTS events (
    grant_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (grant_id, seq)
);
CREATE TABLE IF NOT EXISTS resources (id TEXT PRIMARY KEY, doc TEXT NOT NULL, version INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS deliveries (key TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS schedules (name TEXT PRIMARY KEY, at TEXT NOT NULL, job TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS connections (id TEXT PRIMARY KEY, settings TEXT NOT NULL, auth TEXT NOT NULL, settings_version INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS connection_webhooks (id TEXT PRIMARY KEY, last_delivery_at TEXT, missed_closing TEXT);
CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
";

/// The name of the reconciliation position in the `state` table.
const RECONCILE_STATE: &str = "reconcile";

/// The SQLite-backed store. Cloning shares the connection.
#[derive(Clone)]
pub struct EmbeddedStore {
    conn: Arc<Mutex<Connection>>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

impl EmbeddedStore {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(unavailable)?;
        Self::init(conn)
    }

    /// A private in-memory database (tests, benchmarks).
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(unavailable)?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(unavailable)?;
        conn.execute_batch(SCHEMA).map_err(unavailable)?;
        add_resource_versions(&conn)?;
        connections::add_settings_versions(&conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on the connection on the blocking pool.
    pub(crate) async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| unavailable("the store's lock was poisoned by a panic"))?;
            f(&mut guard)
        })
        .await
        .map_err(unavailable)?
    }
}

/// A database written before resources had versions gets the column; every resource it holds reads as
/// version 1.
fn add_resource_versions(conn: &Connection) -> Result<(), StoreError> {
    let has_version: bool = conn
        .query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('resources') WHERE name = 'version'",
            [],
            |r| r.get(0),
        )
        .map_err(unavailable)?;
    if !has_version {
        conn.execute_batch("ALTER TABLE resources ADD COLUMN version INTEGER NOT NULL DEFAULT 1;")
            .map_err(unavailable)?;
    }
    Ok(())
}

fn grant_from(doc: &str) -> Result<Grant, StoreError> {
    serde_json::from_str(doc).map_err(corrupt)
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(corrupt)
}

fn insert_event(tx: &rusqlite::Transaction<'_>, event: &AuditEvent) -> Result<(), StoreError> {
    tx.execute(
        "INSERT OR IGNORE INTO events (grant_id, seq, doc) VALUES (?1, ?2, ?3)",
        params![event.grant_id, event.seq as i64, to_json(event)?],
    )
    .map_err(unavailable)?;
    Ok(())
}

#[async_trait]
impl GrantStore for EmbeddedStore {
    async fn insert_grant(&self, grant: &Grant, event: &AuditEvent) -> Result<(), StoreError> {
        let (grant, event, doc) = (grant.clone(), event.clone(), to_json(grant)?);
        self.with(move |conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            let (tc, tk) = ticket_columns(grant.ticket.as_ref());
            let inserted = tx
                .execute(
                    "INSERT OR IGNORE INTO grants (id, requester, resource, status, version, ticket_connection, ticket_key, doc)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![grant.id, grant.requester, grant.resource, grant.status.as_str(), grant.version as i64, tc, tk, doc],
                )
                .map_err(unavailable)?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists);
            }
            insert_event(&tx, &event)?;
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn update_grant(
        &self,
        grant: &Grant,
        expected: Expected,
        event: Option<&AuditEvent>,
    ) -> Result<(), StoreError> {
        let (grant, event, doc) = (grant.clone(), event.cloned(), to_json(grant)?);
        self.with(move |conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            let (tc, tk) = ticket_columns(grant.ticket.as_ref());
            let changed = tx
                .execute(
                    "UPDATE grants SET status = ?1, version = ?2, ticket_connection = ?3, ticket_key = ?4, doc = ?5
                     WHERE id = ?6 AND status = ?7 AND version = ?8",
                    params![grant.status.as_str(), grant.version as i64, tc, tk, doc, grant.id, expected.status.as_str(), expected.version as i64],
                )
                .map_err(unavailable)?;
            if changed == 0 {
                return Err(StoreError::Conflict);
            }
            if let Some(event) = &event {
                insert_event(&tx, event)?;
            }
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn get_grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        let id = id.to_owned();
        self.with(move |conn| {
            let doc: Option<String> = conn
                .query_row("SELECT doc FROM grants WHERE id = ?1", [id], |r| r.get(0))
                .optional()
                .map_err(unavailable)?;
            doc.as_deref().map(grant_from).transpose()
        })
        .await
    }

    async fn list_grants(
        &self,
        filter: &GrantFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Grant>, StoreError> {
        let before: Option<String> = cursor.map(decode_cursor).transpose()?;
        let filter = filter.clone();
        let limit = limit.max(1);
        self.with(move |conn| {
            let mut sql = String::from("SELECT doc FROM grants WHERE 1 = 1");
            let mut args: Vec<String> = Vec::new();
            let mut bind = |sql: &mut String, clause: &str, value: String| {
                args.push(value);
                sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
            };
            if let Some(r) = &filter.requester {
                bind(&mut sql, " AND requester = ?", r.clone());
            }
            if let Some(s) = filter.status {
                bind(&mut sql, " AND status = ?", s.as_str().to_owned());
            }
            if let Some(t) = &filter.ticket {
                bind(&mut sql, " AND ticket_connection = ?", t.connection.clone());
                bind(&mut sql, " AND ticket_key = ?", t.key.clone());
            }
            if let Some(b) = &before {
                bind(&mut sql, " AND id < ?", b.clone());
            }
            sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", limit + 1));
            let mut stmt = conn.prepare(&sql).map_err(unavailable)?;
            let docs: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(args.iter()), |r| r.get(0))
                .map_err(unavailable)?
                .collect::<Result<_, _>>()
                .map_err(unavailable)?;
            let mut items = docs
                .iter()
                .map(|d| grant_from(d))
                .collect::<Result<Vec<_>, _>>()?;
            let next = if items.len() > limit {
                items.truncate(limit);
                items.last().map(|g| encode_cursor(&g.id))
            } else {
                None
            };
            Ok(Page { items, next })
        })
        .await
    }

    async fn active_grants_for(
        &self,
        requester: &str,
        resource: &str,
    ) -> Result<Vec<Grant>, StoreError> {
        let (requester, resource) = (requester.to_owned(), resource.to_owned());
        self.with(move |conn| {
            let mut stmt = conn
                .prepare("SELECT doc FROM grants WHERE requester = ?1 AND resource = ?2 AND status = ?3 ORDER BY id")
                .map_err(unavailable)?;
            let docs: Vec<String> = stmt
                .query_map(params![requester, resource, GrantStatus::Active.as_str()], |r| r.get(0))
                .map_err(unavailable)?
                .collect::<Result<_, _>>()
                .map_err(unavailable)?;
            docs.iter().map(|d| grant_from(d)).collect()
        })
        .await
    }

    async fn grants_for_ticket(&self, ticket: &TicketRef) -> Result<Vec<Grant>, StoreError> {
        let ticket = ticket.clone();
        self.with(move |conn| {
            let mut stmt = conn
                .prepare("SELECT doc FROM grants WHERE ticket_connection = ?1 AND ticket_key = ?2 ORDER BY id")
                .map_err(unavailable)?;
            let docs: Vec<String> = stmt
                .query_map(params![ticket.connection, ticket.key], |r| r.get(0))
                .map_err(unavailable)?
                .collect::<Result<_, _>>()
                .map_err(unavailable)?;
            docs.iter().map(|d| grant_from(d)).collect()
        })
        .await
    }

    async fn grants_for_ticket_id(
        &self,
        connection: &str,
        ticket_id: &str,
    ) -> Result<Vec<Grant>, StoreError> {
        let (connection, ticket_id) = (connection.to_owned(), ticket_id.to_owned());
        self.with(move |conn| {
            let mut stmt = conn
                .prepare("SELECT doc FROM grants WHERE ticket_connection = ?1 AND json_extract(doc, '$.ticket_id') = ?2 ORDER BY id")
                .map_err(unavailable)?;
            let docs: Vec<String> = stmt
                .query_map(params![connection, ticket_id], |r| r.get(0))
                .map_err(unavailable)?
                .collect::<Result<_, _>>()
                .map_err(unavailable)?;
            docs.iter().map(|d| grant_from(d)).collect()
        })
        .await
    }

    async fn list_events(
        &self,
        grant_id: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<AuditEvent>, StoreError> {
        let after: i64 = cursor.map(decode_cursor::<u64>).transpose()?.unwrap_or(0) as i64;
        let grant_id = grant_id.to_owned();
        let limit = limit.max(1);
        self.with(move |conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT doc FROM events WHERE grant_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                )
                .map_err(unavailable)?;
            let docs: Vec<String> = stmt
                .query_map(params![grant_id, after, (limit + 1) as i64], |r| r.get(0))
                .map_err(unavailable)?
                .collect::<Result<_, _>>()
                .map_err(unavailable)?;
            let mut items = docs
                .iter()
                .map(|d| serde_json::from_str::<AuditEvent>(d).map_err(corrupt))
                .collect::<Result<Vec<_>, _>>()?;
            let next = if items.len() > limit {
                items.truncate(limit);
                items.last().map(|e| encode_cursor(&e.seq))
            } else {
                None
            };
            Ok(Page { items, next })
        })
        .await
    }

    async fn put_resource(&self, resource: &Resource) -> Result<(), StoreError> {
        let (id, doc) = (resource.id.clone(), resource.to_storage_json().to_string());
        self.with(move |conn| {
            conn.execute("INSERT INTO resources (id, doc, version) VALUES (?1, ?2, 1) ON CONFLICT(id) DO UPDATE SET doc = excluded.doc, version = resources.version + 1", params![id, doc])
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn put_resource_if(
        &self,
        resource: &Resource,
        expected: ResourceExpected,
    ) -> Result<u64, StoreError> {
        let (id, doc) = (resource.id.clone(), resource.to_storage_json().to_string());
        self.with(move |conn| {
            // One statement each, so the check and the write cannot be split by another writer.
            let (written, version) = match expected {
                ResourceExpected::Absent => (
                    conn.execute(
                        "INSERT OR IGNORE INTO resources (id, doc, version) VALUES (?1, ?2, 1)",
                        params![id, doc],
                    )
                    .map_err(unavailable)?,
                    1,
                ),
                ResourceExpected::Version(v) => (
                    conn.execute(
                        "UPDATE resources SET doc = ?2, version = version + 1 WHERE id = ?1 AND version = ?3",
                        params![id, doc, v as i64],
                    )
                    .map_err(unavailable)?,
                    v + 1,
                ),
            };
            if written == 1 {
                Ok(version)
            } else {
                Err(StoreError::Conflict)
            }
        })
        .await
    }

    async fn get_resource_versioned(
        &self,
        id: &str,
    ) -> Result<Option<VersionedResource>, StoreError> {
        let id = id.to_owned();
        self.with(move |conn| {
            let row: Option<(String, i64)> = conn
                .query_row(
                    "SELECT doc, version FROM resources WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(unavailable)?;
            row.map(|(doc, version)| {
                Ok(VersionedResource {
                    resource: serde_json::from_str(&doc).map_err(corrupt)?,
                    version: u64::try_from(version).map_err(corrupt)?,
                })
            })
            .transpose()
        })
        .await
    }

    async fn delete_resource_if(&self, id: &str, version: u64) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.with(move |conn| {
            match conn
                .execute(
                    "DELETE FROM resources WHERE id = ?1 AND version = ?2",
                    params![id, version as i64],
                )
                .map_err(unavailable)?
            {
                1 => Ok(()),
                _ => Err(StoreError::Conflict),
            }
        })
        .await
    }

    async fn get_resource(&self, id: &str) -> Result<Option<Resource>, StoreError> {
        let id = id.to_owned();
        self.with(move |conn| {
            let doc: Option<String> = conn
                .query_row("SELECT doc FROM resources WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(unavailable)?;
            doc.map(|d| serde_json::from_str(&d).map_err(corrupt))
                .transpose()
        })
        .await
    }

    async fn list_resources_versioned(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<VersionedResource>, StoreError> {
        let after: String = cursor.map(decode_cursor).transpose()?.unwrap_or_default();
        let limit = limit.max(1);
        self.with(move |conn| {
            let mut stmt = conn
                .prepare("SELECT doc, version FROM resources WHERE id > ?1 ORDER BY id LIMIT ?2")
                .map_err(unavailable)?;
            let rows: Vec<(String, i64)> = stmt
                .query_map(params![after, (limit + 1) as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(unavailable)?
                .collect::<Result<_, _>>()
                .map_err(unavailable)?;
            let mut items = rows
                .iter()
                .map(|(doc, version)| {
                    Ok(VersionedResource {
                        resource: serde_json::from_str::<Resource>(doc).map_err(corrupt)?,
                        version: u64::try_from(*version).map_err(corrupt)?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let next = if items.len() > limit {
                items.truncate(limit);
                items.last().map(|r| encode_cursor(&r.resource.id))
            } else {
                None
            };
            Ok(Page { items, next })
        })
        .await
    }

    async fn delete_resource(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.with(move |conn| {
            Ok(conn
                .execute("DELETE FROM resources WHERE id = ?1", [id])
                .map_err(unavailable)?
                > 0)
        })
        .await
    }

    async fn remember_delivery(
        &self,
        key: &str,
        expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let key = key.to_owned();
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let expires = expires_at.unix_timestamp();
        self.with(move |conn| {
            let changed = conn
                .execute(
                    "INSERT INTO deliveries (key, expires_at) VALUES (?1, ?2)
                     ON CONFLICT(key) DO UPDATE SET expires_at = excluded.expires_at WHERE deliveries.expires_at < ?3",
                    params![key, expires, now],
                )
                .map_err(unavailable)?;
            Ok(changed > 0)
        })
        .await
    }

    async fn delivery_seen(&self, key: &str, now: OffsetDateTime) -> Result<bool, StoreError> {
        Ok(self
            .delivery_row(key)
            .await?
            .is_some_and(|expires| expires >= now.unix_timestamp()))
    }

    async fn open_bound_tickets(
        &self,
        connection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let (connection, after) = (connection.to_owned(), after.unwrap_or_default().to_owned());
        let limit = limit.max(1) as i64;
        self.with(move |conn| {
            // Served by grants_by_ticket; SQLite's default (BINARY) collation compares bytes, as DynamoDB does.
            let mut stmt = conn
                .prepare(
                    "SELECT DISTINCT ticket_key FROM grants
                     WHERE ticket_connection = ?1 AND ticket_key > ?2 AND status IN (?3, ?4)
                     ORDER BY ticket_key LIMIT ?5",
                )
                .map_err(unavailable)?;
            let keys = stmt
                .query_map(
                    params![
                        connection,
                        after,
                        GrantStatus::Pending.as_str(),
                        GrantStatus::Active.as_str(),
                        limit
                    ],
                    |r| r.get(0),
                )
                .map_err(unavailable)?
                .collect::<Result<Vec<String>, _>>()
                .map_err(unavailable)?;
            Ok(keys)
        })
        .await
    }

    async fn reconcile_state(&self) -> Result<Option<ReconcileState>, StoreError> {
        self.with(|conn| {
            let doc: Option<String> = conn
                .query_row(
                    "SELECT doc FROM state WHERE name = ?1",
                    [RECONCILE_STATE],
                    |r| r.get(0),
                )
                .optional()
                .map_err(unavailable)?;
            doc.map(|d| serde_json::from_str(&d).map_err(corrupt))
                .transpose()
        })
        .await
    }

    async fn save_reconcile_state(&self, state: &ReconcileState) -> Result<(), StoreError> {
        let doc = to_json(state)?;
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO state (name, doc) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET doc = excluded.doc",
                params![RECONCILE_STATE, doc],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }
}

impl EmbeddedStore {
    async fn delivery_row(&self, key: &str) -> Result<Option<i64>, StoreError> {
        let key = key.to_owned();
        self.with(move |conn| {
            conn.query_row(
                "SELECT expires_at FROM deliveries WHERE key = ?1",
                [key],
                |r| r.get(0),
            )
            .optional()
            .map_err(unavailable)
        })
        .await
    }
}

impl EmbeddedStore {
    /// Crash recovery, for the local server at start only: releases every side-effect lease (`lease_until`)
    /// held by a process that is gone, and returns the jobs to run at once: each side effect that was in flight
    /// (leased) or had not had its first attempt finished (no retry pending), under its live arming.
    ///
    /// Only one local server uses a data directory, so at start no lease can belong to a live worker; on Lambda
    /// another container may be mid-attempt, so the DynamoDB store has no such method and leases expire.
    pub async fn release_leases(&self) -> Result<Vec<Job>, StoreError> {
        self.with(|conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            let docs: Vec<String> = {
                let mut stmt = tx
                    .prepare(
                        "SELECT doc FROM grants
                         WHERE json_extract(doc, '$.provisioning.state') = 'pending'
                            OR json_extract(doc, '$.deprovisioning.state') = 'pending'",
                    )
                    .map_err(unavailable)?;
                stmt.query_map([], |r| r.get(0))
                    .map_err(unavailable)?
                    .collect::<Result<_, _>>()
                    .map_err(unavailable)?
            };
            let mut resume = Vec::new();
            for doc in docs {
                let grant = grant_from(&doc)?;
                let mut next = grant.touched();
                let mut released = false;
                for (kind, effect) in [
                    (JobKind::Provision, next.provisioning.as_mut()),
                    (JobKind::Deprovision, next.deprovisioning.as_mut()),
                ] {
                    let Some(effect) = effect.filter(|e| e.state == SideEffectState::Pending)
                    else {
                        continue;
                    };
                    if effect.lease_until.take().is_some() {
                        released = true;
                    } else if effect.next_attempt_at.is_some() {
                        // Waiting out its backoff: its retry schedule stands.
                        continue;
                    }
                    resume.push(Job::armed(kind, &grant.id, effect.arming));
                }
                if released {
                    tx.execute(
                        "UPDATE grants SET version = ?1, doc = ?2 WHERE id = ?3 AND version = ?4",
                        params![
                            next.version as i64,
                            to_json(&next)?,
                            next.id,
                            grant.version as i64
                        ],
                    )
                    .map_err(unavailable)?;
                }
            }
            tx.commit().map_err(unavailable)?;
            Ok(resume)
        })
        .await
    }
}

fn ticket_columns(ticket: Option<&TicketRef>) -> (Option<String>, Option<String>) {
    ticket
        .map(|t| (Some(t.connection.clone()), Some(t.key.clone())))
        .unwrap_or((None, None))
}

#[cfg(test)]
mod resource_version_tests {
    use super::*;

    #[tokio::test]
    async fn a_database_from_before_resource_versions_opens_and_reads_them_as_version_1() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE resources (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
             INSERT INTO resources VALUES ('old-db', '{\"id\":\"old-db\",\"name\":\"Old\",\"provisioner\":{\"kind\":\"none\"}}');",
        )
        .unwrap();
        let store = EmbeddedStore::init(conn).unwrap();
        let read = store
            .get_resource_versioned("old-db")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read.version, 1);
        assert_eq!(read.resource.name, "Old");
        let written = store
            .put_resource_if(&read.resource, ResourceExpected::Version(1))
            .await
            .unwrap();
        assert_eq!(written, 2);
    }
}
