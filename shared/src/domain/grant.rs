//! A grant and its life (DESIGN §2): `pending → active → ended`, `pending → denied | cancelled`.
//!
//! Every transition is a pure function from one grant to the next, bumping `version`; the store writes it with a
//! condition on the previous status and version, so two actors racing on one grant cannot both move it.
//!
//! Approval may take several people (a resource's `approvals_required`, issue 13): each approval appends to
//! `approvals` and bumps the version, and the one that completes the quorum also makes the grant `active`, in
//! the same write. Two approvers racing for the last slot therefore cannot both activate it: the loser's write
//! finds another version and is refused.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::duration::GrantDuration;
use super::side_effect::{SessionsOutcome, is_zero};
pub use super::side_effect::{SideEffect, SideEffectState};

/// The ticket a grant is bound to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketRef {
    pub connection: String,
    pub key: String,
}

/// A bound ticket as the ticket system answered the binding check (DESIGN §1 rule 3): the grant keeps these,
/// never the spelling the requester typed, so that every delivery and reconciliation about the ticket finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundTicket {
    /// The canonical key (`SEC-42` for a typed `sec-42`; a Freshservice id without leading zeros).
    pub key: String,
    /// The stable id where the ticket system has one besides the key (a Jira issue id, which survives a move to
    /// another project); a Freshservice key is its id already.
    pub id: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantStatus {
    Pending,
    Active,
    Ended,
    Denied,
    Cancelled,
}

impl GrantStatus {
    pub const ALL: [GrantStatus; 5] = [
        Self::Pending,
        Self::Active,
        Self::Ended,
        Self::Denied,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Ended => "ended",
            Self::Denied => "denied",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// Whether the grant can still change state (pending or active).
    pub fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::Active)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    TimeBoundReached,
    TicketClosed,
    TicketDeleted,
    Revoked,
    Withdrawn,
    Denied,
    /// Nobody decided the request within `PENDING_FOR`.
    ApprovalTimedOut,
    /// The requester's extension of this grant was approved and took over: access went on without a gap, under
    /// the new grant.
    Superseded,
    /// An admin deleted the connection of the grant's ticket and asked that its grants end with it.
    ConnectionRemoved,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TimeBoundReached => "time_bound_reached",
            Self::TicketClosed => "ticket_closed",
            Self::TicketDeleted => "ticket_deleted",
            Self::Revoked => "revoked",
            Self::Withdrawn => "withdrawn",
            Self::Denied => "denied",
            Self::ApprovalTimedOut => "approval_timed_out",
            Self::Superseded => "superseded",
            Self::ConnectionRemoved => "connection_removed",
        }
    }
}

/// Who `decided_by` names when a resource's `auto_approve` rule approved a request.
pub const POLICY_ACTOR: &str = "policy";

/// One approver's approval of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The approver's (lower-cased) e-mail.
    pub by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What the approver said with the approval, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

fn one() -> u32 {
    1
}

pub type Deprovisioning = SideEffect;
pub type Provisioning = SideEffect;

/// A request for access and, once approved, the access itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub requester: String,
    pub resource: String,
    pub reason: String,
    pub duration: GrantDuration,
    pub ticket: Option<TicketRef>,
    /// The bound ticket's stable id where the ticket system has one besides its key (a Jira issue id),
    /// recorded when the binding is checked: webhooks and reconciliation match it as well as the key, so an
    /// issue moved to another project (a new key) still ends the grant. Additive to DESIGN §5's shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<String>,
    /// What the requester's token said about them in ticket systems (an Atlassian account id, a Data Center
    /// user name), kept so the approval's re-check of the binding matches them as exactly as the request did.
    /// Absent when the token said nothing. Additive to DESIGN §5's shape.
    #[serde(
        default,
        skip_serializing_if = "super::identity::ClaimedIdentity::is_empty"
    )]
    pub requester_claims: super::identity::ClaimedIdentity,
    pub status: GrantStatus,
    pub end_reason: Option<EndReason>,
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub decided_at: Option<OffsetDateTime>,
    pub decided_by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    pub ended_by: Option<String>,
    pub deprovisioning: Option<Deprovisioning>,
    /// When access was really removed from the end system: the provisioner confirmed the revoke (or rule 8 left
    /// it to another grant, or there was nothing to remove). Null until then, and for grants that never were
    /// active. Additive to DESIGN §5's shape.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub access_removed_at: Option<OffsetDateTime>,
    /// Until when sessions opened before the removal may still work, when the provisioner said they outlive it
    /// (`sessions: "will_expire"`). Null when nothing outlives the removal or nothing is known.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub residual_until: Option<OffsetDateTime>,
    pub audit_ticket: Option<TicketRef>,
    /// Access being set up in the end system after approval (not in DESIGN §5's sample; additive).
    #[serde(default)]
    pub provisioning: Option<Provisioning>,
    /// The live arming of the expiry schedule (`ports::Job::arming`); above 0 only after an expiry fired early
    /// and re-armed itself. Not written while 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub expiry_arming: u32,
    /// Where each notification of this grant stands, per event and channel (`service/notifications.rs`); not
    /// written while empty. Additive to DESIGN §5's shape.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<super::notification::NotificationState>,
    /// The approvals recorded so far, oldest first (issue 13). `decided_by` is the one that completed the quorum
    /// (or `"policy"`, with no entry here, when the resource's `auto_approve` rule approved it).
    #[serde(default)]
    pub approvals: Vec<Approval>,
    /// How many distinct approvers must approve: the resource's `approvals_required` when requested, raised if
    /// the resource asks for more by the time an approval lands. 1 for grants requested before policies.
    #[serde(default = "one")]
    pub approvals_required: u32,
    /// When a request nobody decided is cancelled (`approval_timed_out`): `requested_at + PENDING_FOR`. None for
    /// grants requested before pending requests timed out.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub decide_by: Option<OffsetDateTime>,
    /// The live arming of the pending-expiry schedule (`ports::Job::arming`); above 0 only after it fired early
    /// and re-armed itself. Not written while 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pending_arming: u32,
    /// The requester's earlier active grant this one extends: when this one becomes active, that one ends as
    /// `superseded` (its access stays, given by this one). Absent for an ordinary request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    /// Bumped by every write; the store's conditional writes check it.
    pub version: u64,
}

/// A transition that the grant's current state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("the grant is {0}, not pending")]
    NotPending(&'static str),
    #[error("the grant is already {0}")]
    AlreadyClosed(&'static str),
    #[error("nobody may approve or deny their own request")]
    SelfDecision,
    /// This approver's approval is already recorded; the quorum needs other approvers.
    #[error(
        "you already approved this request; it needs {missing} more approval(s) from other approvers"
    )]
    AlreadyApproved { missing: u32 },
}

/// The status and version a conditional write expects to find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expected {
    pub status: GrantStatus,
    pub version: u64,
}

impl Grant {
    /// A new pending request. Validation against the resource happens in the service.
    pub fn request(
        id: String,
        requester: String,
        resource: String,
        reason: String,
        duration: GrantDuration,
        ticket: Option<TicketRef>,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            id,
            requester,
            resource,
            reason,
            duration,
            ticket,
            ticket_id: None,
            requester_claims: Default::default(),
            status: GrantStatus::Pending,
            end_reason: None,
            requested_at: now,
            decided_at: None,
            decided_by: None,
            expires_at: None,
            ended_at: None,
            ended_by: None,
            deprovisioning: None,
            access_removed_at: None,
            residual_until: None,
            audit_ticket: None,
            provisioning: None,
            expiry_arming: 0,
            notifications: Vec::new(),
            approvals: Vec::new(),
            approvals_required: 1,
            decide_by: None,
            pending_arming: 0,
            extends: None,
            version: 1,
        }
    }

    pub fn expected(&self) -> Expected {
        Expected {
            status: self.status,
            version: self.version,
        }
    }

    fn next(&self) -> Self {
        let mut next = self.clone();
        next.version += 1;
        next
    }

    /// When approved at `now`, when would this grant's time bound be reached?
    pub fn bound_from(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.duration.bound().map(|d| now + d.as_duration())
    }

    /// How many more approvals the quorum needs.
    pub fn approvals_missing(&self) -> u32 {
        let have = u32::try_from(self.approvals.len()).unwrap_or(u32::MAX);
        self.approvals_required.max(1).saturating_sub(have)
    }

    /// Records `approver`'s approval; the one that completes the quorum (`approvals_required` distinct
    /// approvers, never the requester) also moves `pending → active` (rule 4). The grant stays `pending`
    /// (with the approval appended) while approvals are missing.
    pub fn approve(&self, approver: &str, now: OffsetDateTime) -> Result<Self, TransitionError> {
        if self.status != GrantStatus::Pending {
            return Err(TransitionError::NotPending(self.status.as_str()));
        }
        if approver == self.requester {
            return Err(TransitionError::SelfDecision);
        }
        if self.approvals.iter().any(|a| a.by == approver) {
            return Err(TransitionError::AlreadyApproved {
                missing: self.approvals_missing(),
            });
        }
        let mut next = self.next();
        next.approvals.push(Approval {
            by: approver.to_owned(),
            at: now,
            comment: None,
        });
        if next.approvals_missing() == 0 {
            next.activate(approver, now);
        }
        Ok(next)
    }

    /// `pending → active` by the resource's `auto_approve` rule: decided by [`POLICY_ACTOR`], no person's
    /// approval recorded.
    pub fn approve_by_policy(&self, now: OffsetDateTime) -> Result<Self, TransitionError> {
        if self.status != GrantStatus::Pending {
            return Err(TransitionError::NotPending(self.status.as_str()));
        }
        let mut next = self.next();
        next.activate(POLICY_ACTOR, now);
        Ok(next)
    }

    fn activate(&mut self, by: &str, now: OffsetDateTime) {
        self.status = GrantStatus::Active;
        self.decided_at = Some(now);
        self.decided_by = Some(by.to_owned());
        self.expires_at = self.bound_from(now);
        self.provisioning = Some(SideEffect::pending());
    }

    /// `pending → denied`.
    pub fn deny(&self, approver: &str, now: OffsetDateTime) -> Result<Self, TransitionError> {
        if self.status != GrantStatus::Pending {
            return Err(TransitionError::NotPending(self.status.as_str()));
        }
        if approver == self.requester {
            return Err(TransitionError::SelfDecision);
        }
        let mut next = self.next();
        next.status = GrantStatus::Denied;
        next.end_reason = Some(EndReason::Denied);
        next.decided_at = Some(now);
        next.decided_by = Some(approver.to_owned());
        Ok(next)
    }

    /// Ends the grant: `pending → cancelled`, `active → ended` (with deprovisioning pending).
    pub fn end(
        &self,
        reason: EndReason,
        by: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Self, TransitionError> {
        let mut next = self.next();
        match self.status {
            GrantStatus::Pending => next.status = GrantStatus::Cancelled,
            GrantStatus::Active => {
                next.status = GrantStatus::Ended;
                next.deprovisioning = Some(SideEffect::pending());
            }
            closed => return Err(TransitionError::AlreadyClosed(closed.as_str())),
        }
        // A withdrawal names a request nobody decided. One that lost the race to the last approval ends the access
        // it meant to stop, and says so: revoked by the requester.
        next.end_reason = Some(match (reason, self.status) {
            (EndReason::Withdrawn, GrantStatus::Active) => EndReason::Revoked,
            (reason, _) => reason,
        });
        next.ended_at = Some(now);
        next.ended_by = by.map(str::to_owned);
        Ok(next)
    }

    /// A copy with `version` bumped, for writes that change only side-effect tracking.
    pub fn touched(&self) -> Self {
        self.next()
    }

    /// The key grouping grants that give the same access in the end system (rule 8).
    pub fn access_key(&self) -> (&str, &str) {
        (&self.requester, &self.resource)
    }

    /// Records that access was removed at `at`, and, when the provisioner said sessions outlive the removal,
    /// until when they may (`residual_until`, never before the removal itself).
    pub fn record_removal(
        &mut self,
        at: OffsetDateTime,
        sessions: Option<SessionsOutcome>,
        residual_until: Option<OffsetDateTime>,
    ) {
        self.access_removed_at = Some(at);
        self.residual_until = match sessions {
            Some(SessionsOutcome::Terminated) => None,
            _ => residual_until.filter(|until| *until > at),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_withdrawal_that_finds_the_grant_active_ends_it_as_revoked_by_the_requester() {
        let now = datetime!(2026-11-23 10:00 UTC);
        let request = pending("PT1H");
        let withdrawn = request
            .end(EndReason::Withdrawn, Some("alice@example.com"), now)
            .unwrap();
        assert_eq!(withdrawn.status, GrantStatus::Cancelled);
        assert_eq!(withdrawn.end_reason, Some(EndReason::Withdrawn));

        let active = request.approve("bob@example.com", now).unwrap();
        assert_eq!(active.status, GrantStatus::Active);
        let ended = active
            .end(EndReason::Withdrawn, Some("alice@example.com"), now)
            .unwrap();
        assert_eq!(ended.status, GrantStatus::Ended);
        assert_eq!(ended.end_reason, Some(EndReason::Revoked));
        assert_eq!(ended.ended_by.as_deref(), Some("alice@example.com"));
    }

    fn pending(duration: &str) -> Grant {
        Grant::request(
            "01JD3AAAAAAAAAAAAAAAAAAAAA".into(),
            "alice@example.com".into(),
            "prod-db".into(),
            "INC-7".into(),
            GrantDuration::parse(duration).unwrap(),
            None,
            datetime!(2026-01-01 10:00 UTC),
        )
    }

    #[test]
    fn approval_sets_expiry_from_approval_time_and_bumps_version() {
        let grant = pending("PT4H");
        let approved = grant
            .approve("bob@example.com", datetime!(2026-01-01 11:00 UTC))
            .unwrap();
        assert_eq!(approved.status, GrantStatus::Active);
        assert_eq!(approved.expires_at, Some(datetime!(2026-01-01 15:00 UTC)));
        assert_eq!(approved.decided_by.as_deref(), Some("bob@example.com"));
        assert_eq!(approved.version, grant.version + 1);
    }

    #[test]
    fn indefinite_grant_has_no_expiry() {
        let approved = pending("indefinite")
            .approve("bob@example.com", datetime!(2026-01-01 11:00 UTC))
            .unwrap();
        assert_eq!(approved.expires_at, None);
    }

    #[test]
    fn nobody_approves_or_denies_their_own_request() {
        let grant = pending("PT1H");
        assert_eq!(
            grant.approve("alice@example.com", grant.requested_at),
            Err(TransitionError::SelfDecision)
        );
        assert_eq!(
            grant.deny("alice@example.com", grant.requested_at),
            Err(TransitionError::SelfDecision)
        );
    }

    #[test]
    fn approving_an_ended_grant_is_refused() {
        let now = datetime!(2026-01-01 11:00 UTC);
        let ended = pending("PT1H")
            .approve("bob@example.com", now)
            .unwrap()
            .end(EndReason::Revoked, None, now)
            .unwrap();
        assert_eq!(
            ended.approve("carol@example.com", now),
            Err(TransitionError::NotPending("ended"))
        );
    }

    #[test]
    fn ending_a_pending_request_cancels_it_without_deprovisioning() {
        let now = datetime!(2026-01-01 11:00 UTC);
        let cancelled = pending("PT1H")
            .end(EndReason::TicketClosed, None, now)
            .unwrap();
        assert_eq!(cancelled.status, GrantStatus::Cancelled);
        assert_eq!(cancelled.end_reason, Some(EndReason::TicketClosed));
        assert!(cancelled.deprovisioning.is_none());
    }

    #[test]
    fn ending_an_active_grant_starts_deprovisioning() {
        let now = datetime!(2026-01-01 11:00 UTC);
        let ended = pending("PT1H")
            .approve("bob@example.com", now)
            .unwrap()
            .end(EndReason::TimeBoundReached, None, now)
            .unwrap();
        assert_eq!(ended.status, GrantStatus::Ended);
        assert_eq!(
            ended.deprovisioning.unwrap().state,
            SideEffectState::Pending
        );
    }

    #[test]
    fn a_grant_ends_only_once() {
        let now = datetime!(2026-01-01 11:00 UTC);
        let ended = pending("PT1H")
            .end(EndReason::Withdrawn, None, now)
            .unwrap();
        assert_eq!(
            ended.end(EndReason::Revoked, None, now),
            Err(TransitionError::AlreadyClosed("cancelled"))
        );
    }

    #[test]
    fn a_removal_records_when_and_keeps_a_residual_only_for_sessions_that_outlive_it() {
        let now = datetime!(2026-01-01 11:00 UTC);
        let later = now + time::Duration::hours(1);
        let mut grant = pending("PT1H");
        grant.record_removal(now, Some(SessionsOutcome::WillExpire), Some(later));
        assert_eq!(
            (grant.access_removed_at, grant.residual_until),
            (Some(now), Some(later))
        );
        grant.record_removal(now, Some(SessionsOutcome::Terminated), Some(later));
        assert_eq!(
            grant.residual_until, None,
            "terminated sessions leave nothing"
        );
        grant.record_removal(now, None, Some(now - time::Duration::hours(1)));
        assert_eq!(
            grant.residual_until, None,
            "a residual before the removal is none"
        );
    }

    fn pending_needing(approvals: u32) -> Grant {
        let mut grant = pending("PT4H");
        grant.approvals_required = approvals;
        grant
    }

    #[test]
    fn a_single_approval_records_the_approver_and_activates() {
        let now = datetime!(2026-01-01 11:00 UTC);
        let approved = pending("PT4H").approve("bob@example.com", now).unwrap();
        assert_eq!(approved.status, GrantStatus::Active);
        assert_eq!(
            approved.approvals,
            [Approval {
                by: "bob@example.com".into(),
                at: now,
                comment: None,
            }]
        );
    }

    #[test]
    fn the_approval_that_completes_the_quorum_activates_and_the_others_only_record() {
        let now = datetime!(2026-01-01 11:00 UTC);
        let first = pending_needing(2).approve("bob@example.com", now).unwrap();
        assert_eq!(first.status, GrantStatus::Pending);
        assert_eq!((first.approvals.len(), first.approvals_missing()), (1, 1));
        assert_eq!(first.decided_by, None);
        assert!(first.provisioning.is_none() && first.expires_at.is_none());

        let later = now + time::Duration::minutes(5);
        let second = first.approve("carol@example.com", later).unwrap();
        assert_eq!(second.status, GrantStatus::Active);
        assert_eq!(second.decided_by.as_deref(), Some("carol@example.com"));
        assert_eq!(second.decided_at, Some(later));
        assert_eq!(second.expires_at, Some(later + time::Duration::hours(4)));
        assert_eq!(second.version, first.version + 1);
    }

    #[test]
    fn one_approver_counts_once_and_the_requester_never() {
        let now = datetime!(2026-01-01 11:00 UTC);
        let first = pending_needing(2).approve("bob@example.com", now).unwrap();
        assert_eq!(
            first.approve("bob@example.com", now),
            Err(TransitionError::AlreadyApproved { missing: 1 })
        );
        assert_eq!(
            first.approve("alice@example.com", now),
            Err(TransitionError::SelfDecision)
        );
    }

    #[test]
    fn a_denial_after_some_approvals_denies() {
        let now = datetime!(2026-01-01 11:00 UTC);
        let denied = pending_needing(3)
            .approve("bob@example.com", now)
            .unwrap()
            .deny("carol@example.com", now)
            .unwrap();
        assert_eq!(denied.status, GrantStatus::Denied);
        assert_eq!(denied.approvals.len(), 1);
    }

    #[test]
    fn the_policy_approves_without_a_person() {
        let now = datetime!(2026-01-01 11:00 UTC);
        let approved = pending_needing(2).approve_by_policy(now).unwrap();
        assert_eq!(approved.status, GrantStatus::Active);
        assert_eq!(approved.decided_by.as_deref(), Some(POLICY_ACTOR));
        assert!(approved.approvals.is_empty());
    }

    #[test]
    fn a_grant_stored_before_policies_reads_with_one_approval_required() {
        let mut json = serde_json::to_value(pending("PT1H")).unwrap();
        let doc = json.as_object_mut().unwrap();
        for field in ["approvals", "approvals_required", "decide_by"] {
            doc.remove(field);
        }
        let grant: Grant = serde_json::from_value(json).unwrap();
        assert_eq!((grant.approvals_required, grant.approvals.len()), (1, 0));
        assert_eq!(grant.decide_by, None);
    }

    #[test]
    fn grant_json_has_the_documented_shape() {
        let mut grant = pending("PT4H");
        grant.ticket = Some(TicketRef {
            connection: "jira-main".into(),
            key: "SEC-42".into(),
        });
        let json = serde_json::to_value(&grant).unwrap();
        for field in [
            "id",
            "requester",
            "resource",
            "reason",
            "duration",
            "ticket",
            "status",
            "end_reason",
            "requested_at",
            "decided_at",
            "decided_by",
            "expires_at",
            "ended_at",
            "ended_by",
            "deprovisioning",
            "access_removed_at",
            "residual_until",
            "audit_ticket",
            "approvals",
            "approvals_required",
            "decide_by",
        ] {
            assert!(json.get(field).is_some(), "missing {field}");
        }
        assert_eq!(json["status"], "pending");
        assert_eq!(json["duration"], "PT4H");
        assert_eq!(json["requested_at"], "2026-01-01T10:00:00Z");
        let back: Grant = serde_json::from_value(json).unwrap();
        assert_eq!(back, grant);
    }
}
