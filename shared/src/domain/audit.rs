//! The audit trail: one event for every change of a grant, written atomically with the change.
//!
//! An event is keyed by the grant id and the version the change produced, so writing it is idempotent and the
//! trail reads in the order things happened.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::grant::{Grant, GrantStatus};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub grant_id: String,
    /// The grant version this event records.
    pub seq: u64,
    /// What happened: `requested`, `approved`, `denied`, `cancelled`, `ended`, `provisioned`,
    /// `provisioning_retry`, `provisioning_failed`, `deprovisioned`, `deprovisioning_skipped`,
    /// `deprovisioning_retry`, `deprovisioning_failed`.
    pub kind: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The person who acted, or none for the system (a schedule, a webhook).
    pub actor: Option<String>,
    /// The grant's status after the change.
    pub status: GrantStatus,
    #[serde(default)]
    pub detail: serde_json::Value,
}

impl AuditEvent {
    /// The event recording that `grant` (already at its new version) changed.
    pub fn of(
        grant: &Grant,
        kind: &str,
        actor: Option<&str>,
        at: OffsetDateTime,
        detail: serde_json::Value,
    ) -> Self {
        Self {
            grant_id: grant.id.clone(),
            seq: grant.version,
            kind: kind.to_owned(),
            at,
            actor: actor.map(str::to_owned),
            status: grant.status,
            detail,
        }
    }

    /// The sort key within the grant's trail.
    pub fn sort_key(&self) -> String {
        format!("{:010}", self.seq)
    }
}
