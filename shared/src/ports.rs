//! The ports: traits the use cases need, one per concern, held as `Arc<dyn _>`.
//!
//! Every adapter of a port passes the same contract tests (`tests/tests/store_contract/`, ...).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::domain::grant::{BoundTicket, Expected};
use crate::domain::notification::NotifyEvent;
use crate::domain::reconcile::ReconcileState;
use crate::domain::side_effect::SessionsOutcome;
use crate::domain::{AuditEvent, Grant, GrantStatus, Resource, TicketRef};

/// One page of a list, with the opaque cursor of the next page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// What `GET /v1/grants` filters on. Every field narrows the list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GrantFilter {
    pub requester: Option<String>,
    pub status: Option<GrantStatus>,
    pub ticket: Option<TicketRef>,
}

impl GrantFilter {
    pub fn matches(&self, grant: &Grant) -> bool {
        self.requester
            .as_ref()
            .is_none_or(|r| *r == grant.requester)
            && self.status.is_none_or(|s| s == grant.status)
            && self
                .ticket
                .as_ref()
                .is_none_or(|t| grant.ticket.as_ref() == Some(t))
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A conditional write found another status or version: somebody else moved the grant first.
    #[error("the item was changed concurrently")]
    Conflict,
    #[error("an item with this id already exists")]
    AlreadyExists,
    #[error("the pagination cursor is not valid for this list")]
    InvalidCursor,
    /// The store could not be reached, throttled the call, failed on its side or timed out: retrying later
    /// can help (webhooks answer 503, scheduled jobs fail retryably).
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The store refused the call for what it is (validation, access denied, a missing table): a
    /// misconfiguration or a bug that retrying would only repeat.
    #[error("the store refused the call: {0}")]
    Rejected(String),
    /// An item could not be read back (a bug or a manual edit).
    #[error("a stored item is unreadable: {0}")]
    Corrupt(String),
}

/// What a conditional write of a resource expects to find stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceExpected {
    /// No resource with this id: the write creates it.
    Absent,
    /// The resource at exactly this version.
    Version(u64),
}

/// A resource as stored, with its version: every write adds one, so two readers of one version know whether
/// anybody wrote in between. Resources stored before versions existed read as version 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionedResource {
    pub resource: Resource,
    pub version: u64,
}

/// Grants, their audit trail, the resource catalog and webhook delivery ids (DESIGN §10).
#[async_trait]
pub trait GrantStore: Send + Sync {
    /// Writes a new grant and its first event; `AlreadyExists` if the id is taken.
    async fn insert_grant(&self, grant: &Grant, event: &AuditEvent) -> Result<(), StoreError>;
    /// Replaces the grant if it still has `expected` status and version, writing `event` in the same
    /// transaction; `Conflict` otherwise, with nothing written.
    async fn update_grant(
        &self,
        grant: &Grant,
        expected: Expected,
        event: Option<&AuditEvent>,
    ) -> Result<(), StoreError>;
    /// A strongly consistent read of one grant.
    async fn get_grant(&self, id: &str) -> Result<Option<Grant>, StoreError>;
    /// Grants matching `filter`, newest first.
    async fn list_grants(
        &self,
        filter: &GrantFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Grant>, StoreError>;
    /// The active grants of one requester on one resource (rule 8), confirmed by consistent reads.
    async fn active_grants_for(
        &self,
        requester: &str,
        resource: &str,
    ) -> Result<Vec<Grant>, StoreError>;
    /// Every grant bound to a ticket, in any status.
    async fn grants_for_ticket(&self, ticket: &TicketRef) -> Result<Vec<Grant>, StoreError>;
    /// Every grant bound to the ticket with this stable id (`Grant::ticket_id`) in `connection`, whatever key
    /// it was bound by (a Jira issue moved to another project has a new key and the same id).
    async fn grants_for_ticket_id(
        &self,
        connection: &str,
        ticket_id: &str,
    ) -> Result<Vec<Grant>, StoreError>;
    /// A grant's audit trail, oldest first.
    async fn list_events(
        &self,
        grant_id: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<AuditEvent>, StoreError>;

    /// Creates or replaces a resource whatever is stored (seeding, fixtures); the stored version goes up by one.
    async fn put_resource(&self, resource: &Resource) -> Result<(), StoreError>;
    /// Writes `resource` only if what is stored is as `expected`, as one conditional write: of two writers that
    /// read the same version, one wins and the other gets `Conflict` with nothing written. `Ok` with the
    /// version now stored (the one read plus one; 1 for a new resource).
    async fn put_resource_if(
        &self,
        resource: &Resource,
        expected: ResourceExpected,
    ) -> Result<u64, StoreError>;
    async fn get_resource(&self, id: &str) -> Result<Option<Resource>, StoreError>;
    /// A strongly consistent read of a resource with its version.
    async fn get_resource_versioned(
        &self,
        id: &str,
    ) -> Result<Option<VersionedResource>, StoreError>;
    /// Resources by id, each with its version (what its entity tag is made from, so a list can offer the tag a
    /// single read would answer).
    async fn list_resources_versioned(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<VersionedResource>, StoreError>;
    /// Resources by id.
    async fn list_resources(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Resource>, StoreError> {
        let page = self.list_resources_versioned(limit, cursor).await?;
        Ok(Page {
            items: page.items.into_iter().map(|r| r.resource).collect(),
            next: page.next,
        })
    }
    /// `false` when there was nothing to delete.
    async fn delete_resource(&self, id: &str) -> Result<bool, StoreError>;
    /// Deletes a resource only if it is stored at `version`; `Conflict` (nothing deleted) when it moved or is
    /// gone.
    async fn delete_resource_if(&self, id: &str, version: u64) -> Result<(), StoreError>;

    /// Records a webhook delivery id until `expires_at`; `false` if it was already recorded (a duplicate).
    async fn remember_delivery(
        &self,
        key: &str,
        expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Whether a delivery id is recorded and not expired at `now`.
    async fn delivery_seen(&self, key: &str, now: OffsetDateTime) -> Result<bool, StoreError>;

    // Reconciliation (DESIGN §2): which tickets to re-read, and where the last run stopped.

    /// The keys of `connection`'s tickets that have at least one open (pending or active) bound grant, each
    /// once, in ascending byte order of the key, strictly after `after`; at most `limit`. The order is the
    /// same in every store, so a position saved by one run means the same thing to the next.
    async fn open_bound_tickets(
        &self,
        connection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;
    /// The reconciliation position saved by the last run, if any.
    async fn reconcile_state(&self) -> Result<Option<ReconcileState>, StoreError>;
    /// Replaces the reconciliation position (one small item; runs do not overlap, see the operator guide).
    async fn save_reconcile_state(&self, state: &ReconcileState) -> Result<(), StoreError>;
}

/// The kinds of scheduled work, all handled by the expiry function (locally: the in-process scheduler).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// The grant's time bound is reached.
    Expire,
    /// Retry setting up access after approval.
    Provision,
    /// Retry (or make sure of) the side effects of a grant's end.
    Deprovision,
    /// Ask the ticket system again whether the grant's bound ticket closed: a webhook delivery whose
    /// confirmation was rate limited for longer than the sender can wait (issue 9 item 8). It ends every grant
    /// of that ticket when it is closed; it is not recorded on the grant (each one deletes itself after it
    /// fires, and a stale one finds nothing to end).
    Confirm,
    /// Send one event's notification to the channels that take it (`service/notifications.rs`); the event is
    /// the job's [`Job::event`]. Also the reminders before a time bound, armed at approval.
    Notify,
    /// A pending request's decision deadline (`requested_at + PENDING_FOR`, issue 13): still pending when it
    /// fires, the request is cancelled as `approval_timed_out`. Deciding or withdrawing the request deletes it;
    /// a stale one finds a request that is no longer pending and does nothing.
    PendingExpiry,
    /// Take out a session cut once no session it denies can still be valid: an IAM Identity Center removal
    /// with `cut_sessions` placed a deny of the user's earlier sessions in the permission set's inline policy
    /// ([`ProvisionReceipt::cut_until`]), armed for that time when the removal is recorded. Not recorded on the
    /// grant (like [`JobKind::Confirm`]): taking the cut out is idempotent, so a repeated or late one is harmless,
    /// and a failed one re-arms itself under the next arming.
    EndSessionCut,
}

/// A scheduled job: the `Input` of an EventBridge Scheduler schedule.
///
/// Every arming of a job is its own schedule, numbered per (grant, kind): arming 0 is the first (the expiry
/// armed at approval, the safety net armed when a grant ends) and keeps the name schedules had before armings
/// were numbered, so a schedule created by an older release is still arming 0. A job that re-arms itself uses a
/// higher number than the one firing, so it never updates a schedule that EventBridge is about to delete
/// (`ActionAfterCompletion: DELETE`). How the live arming is tracked and stale ones removed is in
/// `service/lifecycle.rs`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Job {
    pub job: JobKind,
    pub grant_id: String,
    /// Which arming of this (grant, kind) this is; absent in the Input of schedules armed before armings were
    /// numbered, which are arming 0.
    #[serde(default)]
    pub arming: u32,
    /// The event a [`JobKind::Notify`] job sends; absent for every other kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<NotifyEvent>,
    /// The other grants a [`JobKind::Notify`] job tells the same event of: a closing that ends many grants arms
    /// one job (named after the first) for all of their `ended` messages. Absent otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<String>,
}

impl Job {
    /// Arming 0 of a job.
    pub fn new(job: JobKind, grant_id: &str) -> Self {
        Self::armed(job, grant_id, 0)
    }

    /// A given arming of a job.
    pub fn armed(job: JobKind, grant_id: &str, arming: u32) -> Self {
        Self {
            job,
            grant_id: grant_id.to_owned(),
            arming,
            event: None,
            also: Vec::new(),
        }
    }

    /// A given arming of the notification job of `event` for a grant.
    pub fn notify(event: NotifyEvent, grant_id: &str, arming: u32) -> Self {
        Self {
            event: Some(event),
            ..Self::armed(JobKind::Notify, grant_id, arming)
        }
    }

    /// The same job under another arming.
    pub fn with_arming(&self, arming: u32) -> Self {
        Self {
            arming,
            ..self.clone()
        }
    }

    /// The schedule's name: deterministic per (grant, kind, arming), so creating one arming twice cannot make
    /// two schedules: `tb-<grant>-<exp|prv|dep>` for arming 0, `tb-<grant>-<exp|prv|dep>-<n>` after (`cnf` for
    /// a deferred confirmation, `pnd` for a pending request's deadline, `cut` for the end of a session cut). A ULID
    /// grant id gives at most 44 characters of `[0-9A-Za-z-]`, inside EventBridge's 64 and `[0-9a-zA-Z-_.]`.
    pub fn schedule_name(&self) -> String {
        let kind = match self.job {
            JobKind::Expire => "exp",
            JobKind::Provision => "prv",
            JobKind::Deprovision => "dep",
            JobKind::Confirm => "cnf",
            // One schedule per (grant, event): two writers arming one event leave one schedule.
            JobKind::Notify => match self.event {
                Some(event) => {
                    return match self.arming {
                        0 => format!("tb-{}-ntf-{}", self.grant_id, event.code()),
                        n => format!("tb-{}-ntf-{}-{n}", self.grant_id, event.code()),
                    };
                }
                None => "ntf",
            },
            JobKind::PendingExpiry => "pnd",
            JobKind::EndSessionCut => "cut",
        };
        match self.arming {
            0 => format!("tb-{}-{kind}", self.grant_id),
            n => format!("tb-{}-{kind}-{n}", self.grant_id),
        }
    }
}

/// What runs a fired job (the service's side-effect engine); the in-process scheduler calls it.
#[async_trait]
pub trait JobRunner: Send + Sync {
    /// `Err` asks for the job to be tried again a little later.
    async fn run_job(&self, job: &Job) -> Result<(), String>;
}

/// Why a schedule could not be created, moved or deleted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SchedulerError {
    /// Throttled, a server error, a timeout or an unreachable endpoint: retrying later can help.
    #[error("scheduler: {0}")]
    Unavailable(String),
    /// Refused for what it is (validation, access denied, a missing schedule group): a misconfiguration or a
    /// bug that retrying would only repeat.
    #[error("scheduler refused the call: {0}")]
    Rejected(String),
}

/// One-time schedules (DESIGN §2–3). `schedule` is an upsert keyed by [`Job::schedule_name`] (one schedule per
/// arming); `cancel` removes that one arming and succeeds when it is already gone.
#[async_trait]
pub trait Scheduler: Send + Sync {
    async fn schedule(&self, job: &Job, at: OffsetDateTime) -> Result<(), SchedulerError>;
    async fn cancel(&self, job: &Job) -> Result<(), SchedulerError>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProvisionAction {
    Grant,
    Revoke,
}

impl ProvisionAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grant => "grant",
            Self::Revoke => "revoke",
        }
    }
}

/// Why an end system did not confirm a provisioning call: a failed attempt, in the engine's one classification
/// (`domain/side_effect.rs`): a non-2xx answer by its status (with its `Retry-After`), an AWS error by its code
/// (`adapters/aws_errors.rs`), a timeout or a failed connection `retryable`. The message never holds a secret.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", .0.message)]
pub struct ProvisionError(pub crate::domain::side_effect::Failure);

impl ProvisionError {
    /// A failed attempt that later can cure (the call met a timeout, a failed connection, a missing secret).
    pub fn retryable(message: impl Into<String>) -> Self {
        Self(crate::domain::side_effect::Failure::retryable(message))
    }

    /// A failed attempt that repeating would only repeat.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self(crate::domain::side_effect::Failure::permanent(message))
    }
}

/// What a provisioner said when it did not fail the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvisionOutcome {
    /// Done (2xx), with what the answer's body reported (all empty for a contract v1 endpoint).
    Done(ProvisionReceipt),
    /// Accepted and still working (HTTP 202, or a status check that says so): check `status_url` again later.
    Accepted { status_url: String },
    /// The end system reports that the action failed, and why: not retried (the side effect is `failed`).
    Failed(String),
}

impl ProvisionOutcome {
    /// Done, with nothing reported (contract v1, `none`, a ticket opened).
    pub fn done() -> Self {
        Self::Done(ProvisionReceipt::default())
    }
}

/// What a contract v2 provisioner reported of a finished call: `{"access_removed": true, "sessions":
/// "terminated"|"will_expire"|"not_supported", "residual_until": "…"}`. Every field is optional; a finished call
/// with `access_removed: Some(false)` only asked for the removal (a `ticket` provisioner), so the grant does not
/// record it as removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProvisionReceipt {
    pub access_removed: Option<bool>,
    pub sessions: Option<SessionsOutcome>,
    pub residual_until: Option<OffsetDateTime>,
    /// A built-in provisioner cut the sessions with something that must be taken out again at this time (the
    /// IAM Identity Center deny, once no session it denies can still be valid): the engine arms a
    /// [`JobKind::EndSessionCut`] for it. Never set from a webhook's answer.
    pub cut_until: Option<OffsetDateTime>,
}

/// Calls a resource's provisioner once: no retries here, the service retries durably through the scheduler.
#[async_trait]
pub trait Provisioners: Send + Sync {
    async fn apply(
        &self,
        resource: &Resource,
        action: ProvisionAction,
        grant: &Grant,
    ) -> Result<ProvisionOutcome, ProvisionError>;

    /// Checks once on a call the provisioner accepted ([`ProvisionOutcome::Accepted`]): done, failed, or still
    /// accepted (possibly under a new status URL). Provisioners that never accept a call refuse it.
    async fn poll(
        &self,
        resource: &Resource,
        action: ProvisionAction,
        grant: &Grant,
        status_url: &str,
    ) -> Result<ProvisionOutcome, ProvisionError> {
        let _ = (resource, action, grant, status_url);
        Err(ProvisionError::retryable(
            "this provisioner has no status to check",
        ))
    }

    /// Whether this deployment can set up access with provisioners of `kind` ([`Provisioner::kind`]): a
    /// resource of a kind it cannot serve is refused when saved. Every kind, unless a provisioner says
    /// otherwise (the built-in IAM Identity Center one is only there in deployments on AWS).
    ///
    /// [`Provisioner::kind`]: crate::domain::Provisioner::kind
    fn offers(&self, kind: &str) -> bool {
        let _ = kind;
        true
    }

    /// Takes out the session cut a removal of `grant`'s access placed ([`ProvisionReceipt::cut_until`]); done
    /// when there is none. Only built-in provisioners cut sessions this way.
    async fn end_session_cut(
        &self,
        resource: &Resource,
        grant: &Grant,
    ) -> Result<(), ProvisionError> {
        let _ = (resource, grant);
        Ok(())
    }

    /// Tells `resource`'s end system who should hold access (`call`), so it can take away what a lost removal
    /// left. A webhook whose resource sets `reconcile: true` is sent the list and converges on its own; the
    /// built-in IAM Identity Center provisioner compares it with the account assignments and removes those of
    /// `call.ended` itself, answering what it found. Done at once, with nothing found, for provisioners that do
    /// not take the call. Never grants or ends a grant.
    async fn reconcile(
        &self,
        resource: &Resource,
        call: &ReconcileCall<'_>,
    ) -> Result<Convergence, ProvisionError> {
        let _ = (resource, call);
        Ok(Convergence::default())
    }
}

/// Who should hold a resource's access on a reconciliation run, and who held it through Ticketbound before.
#[derive(Clone, Copy, Debug)]
pub struct ReconcileCall<'a> {
    /// The requesters of the resource's active grants, sorted, each once: nothing of theirs is ever taken away.
    /// For a built-in provisioner, also those of every other resource that gives the same access (an IAM
    /// Identity Center account assignment named by two resources is one assignment).
    pub principals: &'a [String],
    /// Those of `principals` whose access was set up (provisioning `done`): the end system should give them
    /// access now, so one it does not is reported as missing.
    pub provisioned: &'a [String],
    /// The requesters of the resource's grants that ended lately after their access was set up, each once with
    /// their last such grant: access the end system still gives one of them who is not in `principals` outlived
    /// its grant (a lost removal, or access given again by hand).
    pub ended: &'a [EndedHolder],
    pub at: OffsetDateTime,
}

/// A requester whose grant of a resource has ended after Ticketbound had set up its access.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndedHolder {
    /// The grant whose audit trail records a removal made again.
    pub grant_id: String,
    pub requester: String,
}

/// What a provisioner's `reconcile` call found and did in the end system. Empty for a webhook (its end system
/// converges on its own and says nothing back).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Convergence {
    /// Access that outlived its grant and was taken away now, one per requester of [`ReconcileCall::ended`].
    pub removed: Vec<RemovedAgain>,
    /// Holders of access Ticketbound never gave on this resource (no grant of theirs in the call): left alone,
    /// only counted.
    pub unmanaged: usize,
    /// Of [`ReconcileCall::provisioned`], those the end system gives no access: reported, never given again
    /// (someone may have cut it on purpose).
    pub missing: Vec<String>,
    /// Removals that failed, each classified like any provisioning call; the next run finds the access again.
    pub failures: Vec<crate::domain::side_effect::Failure>,
}

/// Access an ended grant's requester still held, removed by a reconciliation run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemovedAgain {
    /// The ended grant whose access it was ([`EndedHolder::grant_id`]).
    pub grant_id: String,
    /// The end system's own id of the holder (an Identity Center user id).
    pub principal_id: String,
}

/// Why a ticket binding was refused (DESIGN §1 rule 3).
#[derive(Debug, Clone, thiserror::Error)]
pub enum TicketCheckError {
    #[error("there is no connection `{0}`")]
    UnknownConnection(String),
    #[error("ticket {0} was not found in connection `{1}`")]
    NotFound(String, String),
    #[error("ticket {0} is closed")]
    Closed(String),
    /// Somebody else is the assignee. Who is never said: the refusal answers whoever asks, and a ticket's
    /// assignee is the ticket system's to show, not ours.
    #[error("ticket {0} is not assigned to the requester")]
    NotAssigned(String),
    #[error("ticket {0} has no assignee; assign it to the requester first")]
    Unassigned(String),
    /// The assignee's address is hidden and the requester could not be matched to an account exactly; the
    /// message says how to configure a mapping. Never passed as a match.
    #[error("{1}")]
    RequesterNotVerifiable(String, String),
    /// The ticket system asks us to wait (429/503 with a `Retry-After` beyond what a caller can hold a request
    /// for, or busy through every retry): `Some` is how long it asked for.
    #[error("the ticket system is rate limiting the connection: {0}")]
    RateLimited(String, Option<std::time::Duration>),
    /// The ticket system could not be asked: the request is refused rather than passed unchecked.
    #[error("the ticket system could not be reached: {0}")]
    Unavailable(String),
}

/// Checks that a bound ticket exists, is open and is assigned to the requester.
#[async_trait]
pub trait TicketVerifier: Send + Sync {
    /// `Ok` with the ticket as the ticket system answered it: its canonical key and its stable id, which the
    /// grant keeps in place of what the requester typed (so every delivery about the ticket finds it, and a
    /// moved issue with a new key still ends it).
    async fn check_binding(
        &self,
        ticket: &TicketRef,
        requester_email: &str,
    ) -> Result<BoundTicket, TicketCheckError>;
}

/// The time, behind a trait so tests can hold it still.
pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

/// The system clock, truncated to milliseconds (what RFC 3339 in JSON and the stores keep).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        let now = OffsetDateTime::now_utc();
        now.replace_millisecond(now.millisecond()).unwrap_or(now)
    }
}

mod connections;
pub mod notify;
pub use crate::domain::ticket_writes::DestinationFields;
pub use connections::VersionedConnection;
pub use connections::{
    CheckedCredentials, ClosedStatusesDescription, ConnectionStore, DeliveryHeaders,
    DeliveryRefusal, DeliveryRules, FieldDescription, HostForm, KindDescription, ReconcileBatch,
    SecretStore, SecretStoreError, SettingsError, TicketStates, TicketSystem, TicketSystemError,
    TicketSystemKind, TicketSystems, WebhookDescription, WebhookSource,
};
