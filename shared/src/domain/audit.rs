//! The audit trail: one event for every change of a grant, written atomically with the change.
//!
//! An event is keyed by the grant id and the version the change produced, so writing it is idempotent and the
//! trail reads in the order things happened.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::grant::{Grant, GrantStatus};

/// What an audit event records. The one list of kinds: the docs (`docs/openapi.yaml`'s `AuditEvent.kind`)
/// follow it, and a test holds them together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    Requested,
    /// One approver's approval of a request that needs more (a resource's `approvals_required`); the grant
    /// stays pending. The approval that completes the quorum is `Approved`.
    ApprovalRecorded,
    /// The request became active: the approval that completed the quorum, or the resource's `auto_approve`
    /// rule (actor `policy`).
    Approved,
    Denied,
    /// A pending request withdrawn, revoked, timed out (`approval_timed_out`) or cancelled by its ticket closing.
    Cancelled,
    Ended,
    Provisioned,
    ProvisioningRetry,
    ProvisioningFailed,
    /// The grant ended before access was set up.
    ProvisioningSkipped,
    Deprovisioned,
    /// Nothing to remove (access was never set up).
    DeprovisioningSkipped,
    DeprovisioningRetry,
    DeprovisioningFailed,
    /// The grant's audit ticket was opened (DESIGN §8).
    AuditTicketOpened,
    /// Opening the audit ticket failed; the request went on.
    AuditTicketFailed,
    /// Commenting on the audit ticket failed; the change went on.
    AuditNoteFailed,
}

impl AuditKind {
    /// Every kind, in the order a grant's trail usually shows them.
    pub const ALL: [Self; 17] = [
        Self::Requested,
        Self::ApprovalRecorded,
        Self::Approved,
        Self::Denied,
        Self::Cancelled,
        Self::Ended,
        Self::Provisioned,
        Self::ProvisioningRetry,
        Self::ProvisioningFailed,
        Self::ProvisioningSkipped,
        Self::Deprovisioned,
        Self::DeprovisioningSkipped,
        Self::DeprovisioningRetry,
        Self::DeprovisioningFailed,
        Self::AuditTicketOpened,
        Self::AuditTicketFailed,
        Self::AuditNoteFailed,
    ];

    /// The kind as the API and the stores write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::ApprovalRecorded => "approval_recorded",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Cancelled => "cancelled",
            Self::Ended => "ended",
            Self::Provisioned => "provisioned",
            Self::ProvisioningRetry => "provisioning_retry",
            Self::ProvisioningFailed => "provisioning_failed",
            Self::ProvisioningSkipped => "provisioning_skipped",
            Self::Deprovisioned => "deprovisioned",
            Self::DeprovisioningSkipped => "deprovisioning_skipped",
            Self::DeprovisioningRetry => "deprovisioning_retry",
            Self::DeprovisioningFailed => "deprovisioning_failed",
            Self::AuditTicketOpened => "audit_ticket_opened",
            Self::AuditTicketFailed => "audit_ticket_failed",
            Self::AuditNoteFailed => "audit_note_failed",
        }
    }
}

impl std::fmt::Display for AuditKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// So a trail can be searched by the kind's name (`e.kind == "ended"`).
impl PartialEq<&str> for AuditKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub grant_id: String,
    /// The grant version this event records.
    pub seq: u64,
    /// What happened.
    pub kind: AuditKind,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The person who acted, `policy` when a resource's `auto_approve` rule approved, or none for the system
    /// (a schedule, a webhook).
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
        kind: AuditKind,
        actor: Option<&str>,
        at: OffsetDateTime,
        detail: serde_json::Value,
    ) -> Self {
        Self {
            grant_id: grant.id.clone(),
            seq: grant.version,
            kind,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_from_its_name() {
        for kind in AuditKind::ALL {
            let json = serde_json::to_value(kind).unwrap();

            assert_eq!(json, kind.as_str());
            assert_eq!(serde_json::from_value::<AuditKind>(json).unwrap(), kind);
        }
    }

    #[test]
    fn an_unknown_kind_is_refused() {
        let parsed = serde_json::from_str::<AuditKind>("\"granted\"");

        assert!(parsed.is_err());
    }
}
