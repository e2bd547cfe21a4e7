//! Requesting, deciding, revoking and reading grants (DESIGN §1, §5), under each resource's approval policy
//! (issue 13).
//!
//! The policy is checked here, in the service, and every refusal names its rule in a §5 error:
//! - `requesters`: only members of the listed groups may request (403 `not_a_requester`);
//! - `approvers`: only the listed groups and people decide the resource's requests, instead of the approver
//!   group (403 `not_a_resource_approver`); they also see and may revoke its grants;
//! - `approvals_required`: distinct approvers, never the requester (403 `self_approval`), each once (409
//!   `already_approved`). Each approval is one conditional write of the grant with the approval appended; the
//!   one that completes the quorum also activates the grant, so approvers racing for the last slot activate it
//!   once and provision once. A loser re-reads and retries while its approval still counts; otherwise it is
//!   told why (409 `grant_not_pending`, naming who decided). A denial by any approver denies;
//! - `auto_approve`: a request bound to a checked ticket, for a bounded duration within the rule's limit, is
//!   active at once, decided by `policy`.
//!
//! A request may extend the requester's own active grant (`extends`): same resource, same ticket when bound.
//! When the extension becomes active, the old grant ends as `superseded`, after the new one is active and its
//! access is set up, so access has no gap; the old grant's removal is then skipped by rule 8 (another active
//! grant still gives the access), so the end system sees one grant call per grant and no revoke.
//!
//! What a caller may do with a grant now ([`GrantAction`]) is answered by [`allowed_actions`], from the same
//! predicates the routes check ([`may_decide`], [`may_end`]), so what the portal offers is what the API accepts.
//!
//! Every request also gets a deadline, `decide_by = requested_at + PENDING_FOR`, armed as a one-time
//! [`JobKind::PendingExpiry`] schedule before the request is stored; a decision or a withdrawal deletes it.

use serde::Deserialize;

use super::{ServiceError, Ticketbound};
use crate::domain::grant::{POLICY_ACTOR, TransitionError};
use crate::domain::ids::{GrantId, Slug, TicketKey};
use crate::domain::notification::NotifyEvent;
use crate::domain::resource::Deciders;
use crate::domain::text::{self, Lines};
use crate::domain::{
    AuditEvent, AuditKind, Caller, EndReason, Grant, GrantDuration, GrantStatus, Resource,
    TicketRef,
};
use crate::ports::{GrantFilter, Job, JobKind, Page, StoreError};

/// The body of `POST /v1/grants`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    pub resource: String,
    pub reason: String,
    pub duration: String,
    /// Absent for an unbound request; `null` is refused (400) rather than read as absent, as the API describes.
    #[serde(default, deserialize_with = "object_when_present")]
    pub ticket: Option<TicketRef>,
    /// The id of the caller's own active grant this request extends (see the module docs).
    #[serde(default)]
    pub extends: Option<String>,
}

/// A field that is an object when present: `null` is malformed.
fn object_when_present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<TicketRef>, D::Error> {
    TicketRef::deserialize(d).map(Some)
}

/// The optional body of `POST /v1/grants/{id}/approve` and `/deny`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// What the approver says with the decision; kept in its audit event (and the approval's entry).
    #[serde(default)]
    pub comment: Option<String>,
}

impl Decision {
    /// The comment, trimmed, once it is within the rules for text people write: at most [`MAX_REASON`]
    /// characters and no control characters (which could forge lines in an audit trail or a ticket). An
    /// empty comment is none.
    pub fn comment(&self) -> Result<Option<String>, ServiceError> {
        let Some(text) = self
            .comment
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        else {
            return Ok(None);
        };
        if text.chars().count() > MAX_REASON || text.chars().any(char::is_control) {
            return Err(ServiceError::unprocessable(
                "invalid_comment",
                format!(
                    "a comment is plain text of at most {MAX_REASON} characters, without control characters"
                ),
            ));
        }
        // Invisible formatting (bidirectional overrides and the like) could make an approver's comment read
        // differently from what it says, as for reasons.
        text::check("comment", text, Lines::Multi)?;
        Ok(Some(text.to_owned()))
    }
}

/// What a caller may do with a grant now, as `actions` in the API's grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantAction {
    /// `POST /v1/grants/{id}/approve`.
    Approve,
    /// `POST /v1/grants/{id}/deny`.
    Deny,
    /// `POST /v1/grants/{id}/revoke` on someone else's open grant.
    Revoke,
    /// `POST /v1/grants/{id}/revoke` on one's own pending request.
    Withdraw,
    /// `POST /v1/grants/{id}/revoke` on one's own active grant ("I'm done").
    Done,
    /// `POST /v1/grants` with `extends` naming this grant.
    Extend,
}

/// A grant as the API answers it: the grant and what the caller may do with it now.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GrantView {
    #[serde(flatten)]
    pub grant: Grant,
    pub actions: Vec<GrantAction>,
}

/// Whether `caller` may approve or deny requests under `policy` (the resource's approvers, or the approver
/// group when it lists none). Auditors never decide.
pub fn may_decide(caller: &Caller, policy: &crate::domain::resource::ApprovalPolicy) -> bool {
    policy.may_decide(caller)
}

/// Whether `caller` may end `grant` (`POST /v1/grants/{id}/revoke`): their own, or any as an approver or admin,
/// or a resource's grants as one of the approvers it lists (`lists_caller`). Auditors only look.
pub fn may_end(caller: &Caller, grant: &Grant, lists_caller: bool) -> bool {
    grant.requester == caller.email || caller.ends_any_grant() || lists_caller
}

/// What `caller` may do with `grant` now, given its resource (`None` when it was deleted). The routes refuse
/// exactly what this leaves out (`tests/tests/grant_actions.rs` holds them to it).
pub fn allowed_actions(
    caller: &Caller,
    grant: &Grant,
    resource: Option<&Resource>,
) -> Vec<GrantAction> {
    let policy = resource.map(|r| r.policy.clone()).unwrap_or_default();
    let own = grant.requester == caller.email;
    let lists_caller = policy
        .approvers
        .as_ref()
        .is_some_and(|a| a.includes(caller));
    let mut actions = Vec::new();
    match grant.status {
        GrantStatus::Pending => {
            if !own && may_decide(caller, &policy) {
                if resource.is_some() && !grant.approvals.iter().any(|a| a.by == caller.email) {
                    actions.push(GrantAction::Approve);
                }
                actions.push(GrantAction::Deny);
            }
            if own {
                actions.push(GrantAction::Withdraw);
            } else if may_end(caller, grant, lists_caller) {
                actions.push(GrantAction::Revoke);
            }
        }
        GrantStatus::Active => {
            if own {
                actions.push(GrantAction::Done);
                if resource.is_some_and(|r| r.policy.may_request(caller)) {
                    actions.push(GrantAction::Extend);
                }
            } else if may_end(caller, grant, lists_caller) {
                actions.push(GrantAction::Revoke);
            }
        }
        GrantStatus::Ended | GrantStatus::Denied | GrantStatus::Cancelled => {}
    }
    actions
}

/// The query of `GET /v1/grants`: what the store filters on, and what the service checks on its pages.
#[derive(Clone, Debug, Default)]
pub struct ListGrants {
    pub filter: GrantFilter,
    /// Only this resource's grants.
    pub resource: Option<String>,
    /// Any of these statuses (none: all). One status is asked of the store.
    pub statuses: Vec<GrantStatus>,
    /// Requested at or after this time.
    pub from: Option<time::OffsetDateTime>,
    /// Requested at or before this time.
    pub to: Option<time::OffsetDateTime>,
    pub limit: usize,
    pub cursor: Option<String>,
}

impl ListGrants {
    /// Whether `grant` passes the filters the store does not apply.
    fn matches(&self, grant: &Grant) -> bool {
        self.resource.as_ref().is_none_or(|r| *r == grant.resource)
            && (self.statuses.is_empty() || self.statuses.contains(&grant.status))
            && self.from.is_none_or(|from| grant.requested_at >= from)
            && self.to.is_none_or(|to| grant.requested_at <= to)
    }
}

const MAX_REASON: usize = 2_000;

/// How many times a decision is tried again when another writer moved the grant in between.
const RACE_RETRIES: usize = 8;

/// How many store pages one list call of a resource's own approver reads at most before answering with what
/// it found and the cursor to go on from.
const MAX_SCAN_PAGES: usize = 10;

impl From<TransitionError> for ServiceError {
    fn from(e: TransitionError) -> Self {
        match e {
            TransitionError::NotPending(_) => ServiceError::conflict(
                "grant_not_pending",
                format!("{e}; only a pending request can be decided"),
            ),
            TransitionError::AlreadyClosed(_) => {
                ServiceError::conflict("grant_already_closed", e.to_string())
            }
            TransitionError::SelfDecision => {
                ServiceError::forbidden("self_approval", e.to_string())
            }
            TransitionError::AlreadyApproved { .. } => {
                ServiceError::conflict("already_approved", e.to_string())
            }
        }
    }
}

/// The answer to an approver whose write lost a race and who finds the request no longer pending.
fn decided_meanwhile(grant: &Grant) -> ServiceError {
    let by = grant
        .decided_by
        .as_deref()
        .or(grant.ended_by.as_deref())
        .map(|b| format!(" by {b}"))
        .unwrap_or_default();
    ServiceError::conflict(
        "grant_not_pending",
        format!(
            "while your decision was being recorded the request became {}{by}; yours was not recorded and is not needed",
            grant.status.as_str()
        ),
    )
}

/// The quorum a pending grant needs now: what it was requested under, raised if its resource asks for more.
fn with_quorum(grant: &mut Grant, resource: &Resource) {
    grant.approvals_required = grant
        .approvals_required
        .max(resource.policy.approvals_required);
}

impl Ticketbound {
    /// `POST /v1/grants`: validates against the resource and the rules, checks the ticket, stores a pending grant.
    pub async fn request_grant(
        &self,
        caller: &Caller,
        req: GrantRequest,
    ) -> Result<Grant, ServiceError> {
        let reason = req.reason.trim();
        if reason.is_empty() || reason.len() > MAX_REASON {
            return Err(ServiceError::unprocessable(
                "invalid_reason",
                format!("`reason` must say why access is needed, in 1 to {MAX_REASON} characters"),
            ));
        }
        text::check("reason", reason, Lines::Multi)?;
        let duration = GrantDuration::parse(&req.duration)
            .map_err(|e| ServiceError::unprocessable("invalid_duration", e.to_string()))?;
        if let Some(ticket) = &req.ticket {
            validate_ticket_ref(ticket)?;
        }
        if Slug::parse(&req.resource).is_err() {
            return Err(ServiceError::unprocessable(
                "unknown_resource",
                format!("there is no resource `{}`", req.resource),
            ));
        }
        let resource = self
            .store
            .get_resource(&req.resource)
            .await?
            .ok_or_else(|| {
                ServiceError::unprocessable(
                    "unknown_resource",
                    format!(
                        "there is no resource `{}`; GET /v1/resources lists them",
                        req.resource
                    ),
                )
            })?;
        if !resource.policy.may_request(caller) {
            return Err(ServiceError::forbidden(
                "not_a_requester",
                format!(
                    "`{}` may be requested only by members of {}; ask an admin to add you to one of them",
                    resource.id,
                    resource
                        .policy
                        .requesters
                        .as_deref()
                        .unwrap_or_default()
                        .join(", ")
                ),
            ));
        }
        if let Some(others) = resource.policy.unreachable_quorum_for(&caller.email) {
            return Err(ServiceError::unprocessable(
                "quorum_unreachable",
                format!(
                    "`{}` needs {} approvals from the people it lists, and only {others} of them may approve your request (nobody approves their own); ask an admin to list more approvers",
                    resource.id, resource.policy.approvals_required
                ),
            ));
        }
        match (&duration, &req.ticket) {
            (GrantDuration::Indefinite, None) => {
                return Err(ServiceError::unprocessable(
                    "indefinite_requires_ticket",
                    "an `indefinite` grant must be bound to a ticket, whose closing ends it; give a `ticket` or a duration such as PT4H",
                ));
            }
            (GrantDuration::Bounded(d), _) => {
                let max = resource
                    .max_duration
                    .as_ref()
                    .unwrap_or(&self.settings.max_duration);
                if d.seconds() > max.seconds() {
                    return Err(ServiceError::unprocessable(
                        "duration_too_long",
                        format!(
                            "`{d}` is longer than the {max} allowed for `{}`",
                            resource.id
                        ),
                    ));
                }
            }
            (GrantDuration::Indefinite, Some(_)) => {}
        }
        if resource.require_ticket && req.ticket.is_none() {
            return Err(ServiceError::unprocessable(
                "ticket_required",
                format!("`{}` can only be requested with a ticket", resource.id),
            ));
        }
        // The grant keeps the ticket as the ticket system answered the check, never the spelling typed.
        let (ticket, ticket_id) = match req.ticket {
            Some(typed) => {
                let bound = self
                    .check_ticket(&typed, &caller.email, &caller.claimed)
                    .await?;
                let ticket = TicketRef {
                    connection: typed.connection,
                    key: bound.key,
                };
                (Some(ticket), bound.id)
            }
            None => (None, None),
        };
        // Compared with the canonical key, so an extension typed in another spelling still matches.
        let extends = match req.extends.as_deref() {
            Some(old) => Some(
                self.grant_to_extend(caller, old, &resource, ticket.as_ref())
                    .await?,
            ),
            None => None,
        };
        let now = self.clock.now();
        let mut grant = Grant::request(
            GrantId::new(now).into_string(),
            caller.email.clone(),
            resource.id.clone(),
            reason.to_owned(),
            duration,
            ticket,
            now,
        );
        grant.ticket_id = ticket_id;
        grant.extends = extends;
        if grant.ticket.is_some() {
            grant.requester_claims = caller.claimed.clone();
        }
        grant.approvals_required = resource.policy.approvals_required.max(1);
        let decide_by = now + self.settings.pending_for.as_duration();
        grant.decide_by = Some(decide_by);
        // The deadline exists before the request does, so a pending request always has one. If the insert below
        // fails, it fires once and finds no grant.
        self.scheduler
            .schedule(&Job::new(JobKind::PendingExpiry, &grant.id), decide_by)
            .await?;
        let event = AuditEvent::of(
            &grant,
            AuditKind::Requested,
            Some(&caller.email),
            now,
            serde_json::json!({
                "reason": grant.reason,
                "duration": grant.duration,
                "approvals_required": grant.approvals_required,
                "decide_by": rfc3339(decide_by),
                "extends": grant.extends,
            }),
        );
        self.store
            .insert_grant(&grant, &event)
            .await
            .map_err(|e| match e {
                StoreError::AlreadyExists => ServiceError::internal("grant id collision"),
                other => other.into(),
            })?;
        tracing::info!(grant = %grant.id, requester = %grant.requester, resource = %grant.resource, "grant requested");
        let mut grant = self.audit_on_request(grant).await;
        if resource
            .policy
            .auto_approves(&grant.duration, grant.ticket.is_some())
        {
            grant = self.approve_by_policy(grant, &resource).await;
        }
        if grant.status == GrantStatus::Pending {
            // Approvers hear of requests that wait for them; an auto-approved one was announced as approved.
            self.notify(&grant, NotifyEvent::ApprovalRequested).await;
        }
        Ok(grant)
    }

    /// The resource's `auto_approve` rule holds for a stored request: make it active, decided by `policy`. The
    /// ticket was checked a moment ago by the request itself. When this cannot be done now (the scheduler or
    /// the store is unreachable), the request stays pending for a person, with its deadline: it is never
    /// refused for it.
    async fn approve_by_policy(&self, grant: Grant, resource: &Resource) -> Grant {
        let id = grant.id.clone();
        let now = self.clock.now();
        let limit = resource
            .policy
            .auto_approve
            .as_ref()
            .map(|rule| rule.max_duration.to_string());
        let ticket = grant.ticket.as_ref().map(|t| t.key.clone());
        let approved = async {
            if let Some(expires_at) = grant.bound_from(now) {
                self.scheduler
                    .schedule(&Job::new(JobKind::Expire, &id), expires_at)
                    .await?;
            }
            self.modify_grant(&id, |g| {
                let next = g.approve_by_policy(now).ok()?;
                let event = AuditEvent::of(
                    &next,
                    AuditKind::Approved,
                    Some(POLICY_ACTOR),
                    now,
                    serde_json::json!({
                        "rule": "auto_approve",
                        "max_duration": limit,
                        "ticket": ticket,
                        "expires_at": next.expires_at.map(rfc3339),
                    }),
                );
                Some((next, Some(event)))
            })
            .await
        }
        .await;
        match approved {
            Ok(Some(active)) => {
                tracing::info!(grant = %id, expires_at = ?active.expires_at, "grant approved by the resource's auto_approve rule");
                self.after_decision(&active).await;
            }
            // Withdrawn in the meantime: nothing to approve.
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(grant = %id, error = %e, "could not approve by policy; the request waits for an approver");
            }
        }
        match self.store.get_grant(&id).await {
            Ok(Some(latest)) => latest,
            _ => grant,
        }
    }

    /// What follows a decision once it is durable: the request's deadline is deleted, the decision is announced
    /// (`service/notifications.rs`), access is set up when it became active, and the decision is noted on the
    /// audit ticket.
    async fn after_decision(&self, decided: &Grant) {
        self.cancel_pending_expiry(decided).await;
        match decided.status {
            GrantStatus::Active => {
                self.notify(decided, NotifyEvent::Approved).await;
                self.arm_reminders(decided).await;
                self.provision_attempt(&decided.id).await;
                if let Some(old) = &decided.extends {
                    self.supersede(old, decided).await;
                }
            }
            GrantStatus::Denied => self.notify(decided, NotifyEvent::Denied).await,
            _ => {}
        }
        self.audit_on_decision(&decided.id).await;
    }

    /// The grant a request of `caller` for `resource` (bound to `ticket`) may extend: the caller's own active
    /// grant of the same resource, and of the same ticket when that one is bound. 422 `invalid_extends`
    /// otherwise, in the same words whether the grant is someone else's or does not exist.
    async fn grant_to_extend(
        &self,
        caller: &Caller,
        old: &str,
        resource: &Resource,
        ticket: Option<&TicketRef>,
    ) -> Result<String, ServiceError> {
        let invalid =
            |why: &str| ServiceError::unprocessable("invalid_extends", format!("`extends` {why}"));
        let found = match GrantId::parse(old) {
            Ok(_) => self.store.get_grant(old).await?,
            Err(_) => None,
        };
        let Some(old) = found.filter(|g| g.requester == caller.email) else {
            return Err(invalid("must name one of your own grants"));
        };
        if old.status != GrantStatus::Active {
            return Err(invalid(&format!(
                "must name an active grant; {} is {}, so request access anew instead",
                old.id,
                old.status.as_str()
            )));
        }
        if old.resource != resource.id {
            return Err(invalid(&format!(
                "must name a grant of the same resource; {} is for `{}`",
                old.id, old.resource
            )));
        }
        if let Some(bound) = &old.ticket
            && ticket != Some(bound)
        {
            return Err(invalid(&format!(
                "must keep the ticket of the grant it extends: {} is bound to {}",
                old.id, bound.key
            )));
        }
        Ok(old.id)
    }

    /// Ends `old` as superseded by `new`, now active (see the module docs). A failure is logged: the old grant
    /// then ends by its own time bound or ticket, and rule 8 still keeps the access of the new one.
    async fn supersede(&self, old: &str, new: &Grant) {
        match self
            .end_grant(old, EndReason::Superseded, Some(&new.requester))
            .await
        {
            Ok(_) => {
                tracing::info!(grant = %old, by = %new.id, "grant superseded by its extension");
            }
            Err(e) => {
                tracing::warn!(grant = %old, by = %new.id, error = %e, "could not end the grant its extension supersedes; it ends by its own bound");
            }
        }
    }

    /// The grant `caller` wants to approve or deny (`verb`), with its resource, once the caller may decide it:
    /// the resource's `approvers`, or the approver group when it lists none. A caller who may not is told
    /// which rule refuses them when they can see the grant, and gets the same 403 for every id otherwise, so
    /// ids cannot be probed.
    async fn grant_to_decide(
        &self,
        caller: &Caller,
        id: &str,
        verb: &str,
    ) -> Result<(Grant, Option<Resource>), ServiceError> {
        let refused = || {
            ServiceError::forbidden(
                "not_an_approver",
                format!(
                    "only members of the approver group, or the approvers a resource lists, may {verb} requests"
                ),
            )
        };
        let unknown = || {
            if caller.approver {
                ServiceError::grant_not_found(id)
            } else {
                refused()
            }
        };
        if GrantId::parse(id).is_err() {
            return Err(unknown());
        }
        let Some(grant) = self.store.get_grant(id).await? else {
            return Err(unknown());
        };
        let resource = self.store.get_resource(&grant.resource).await?;
        let policy = resource
            .as_ref()
            .map(|r| r.policy.clone())
            .unwrap_or_default();
        if may_decide(caller, &policy) {
            return Ok((grant, resource));
        }
        let sees = caller.sees_all_grants() || grant.requester == caller.email;
        Err(match policy.deciders() {
            Deciders::Listed(listed) if sees => ServiceError::forbidden(
                "not_a_resource_approver",
                format!(
                    "requests for `{}` are decided by its own approvers ({}), not by the approver group; you are not one of them",
                    grant.resource,
                    listed.describe()
                ),
            ),
            _ => refused(),
        })
    }

    /// `POST /v1/grants/{id}/approve`: records the caller's approval; the one that completes the resource's quorum
    /// makes the grant active (see the module docs).
    pub async fn approve_grant(
        &self,
        caller: &Caller,
        id: &str,
        decision: &Decision,
    ) -> Result<Grant, ServiceError> {
        let comment = decision.comment()?;
        let (mut grant, resource) = self.grant_to_decide(caller, id, "approve").await?;
        if let Some(resource) = &resource {
            with_quorum(&mut grant, resource);
        }
        // Refusals (not pending, own request, approved already) before anything is called.
        grant.approve(&caller.email, self.clock.now())?;
        let Some(resource) = resource else {
            return Err(ServiceError::conflict(
                "resource_missing",
                format!(
                    "resource `{}` no longer exists; deny the request instead",
                    grant.resource
                ),
            ));
        };
        let mut canonical_ticket = None;
        if let Some(ticket) = &grant.ticket {
            // The id was recorded at the request (the stores index it once, with the grant's insert). The key is
            // compared on its canonical form: a grant stored under another spelling before keys were kept as the
            // ticket system answers them takes the canonical one with this write, so its webhook finds it.
            let bound = self
                .check_ticket(ticket, &grant.requester, &grant.requester_claims)
                .await?;
            let canonical = self
                .connections
                .canonical_key(&ticket.connection, &ticket.key)
                .await?;
            if canonical == bound.key && ticket.key != bound.key {
                canonical_ticket = Some(TicketRef {
                    connection: ticket.connection.clone(),
                    key: bound.key,
                });
                grant.ticket.clone_from(&canonical_ticket);
            }
        }
        let mut raced = false;
        for _ in 0..RACE_RETRIES {
            let now = self.clock.now();
            let approved = match grant.approve(&caller.email, now) {
                Ok(mut approved) => {
                    if let Some(mine) = approved.approvals.last_mut() {
                        mine.comment.clone_from(&comment);
                    }
                    approved
                }
                Err(TransitionError::NotPending(_)) if raced => {
                    return Err(decided_meanwhile(&grant));
                }
                Err(e) => return Err(e.into()),
            };
            let active = approved.status == GrantStatus::Active;
            // The expiry schedule exists before the grant is active, so an active grant always has one. A loser
            // of the race below leaves it behind; it names the same schedule, and it finds an active grant or
            // nothing.
            if let (true, Some(expires_at)) = (active, approved.expires_at) {
                self.scheduler
                    .schedule(&Job::new(JobKind::Expire, &grant.id), expires_at)
                    .await?;
            }
            let counts = (approved.approvals.len(), approved.approvals_required);
            let event = if active {
                AuditEvent::of(
                    &approved,
                    AuditKind::Approved,
                    Some(&caller.email),
                    now,
                    serde_json::json!({
                        "expires_at": approved.expires_at.map(rfc3339),
                        "approvals": counts.0,
                        "approvals_required": counts.1,
                        "comment": comment,
                    }),
                )
            } else {
                AuditEvent::of(
                    &approved,
                    AuditKind::ApprovalRecorded,
                    Some(&caller.email),
                    now,
                    serde_json::json!({
                        "approvals": counts.0,
                        "approvals_required": counts.1,
                        "missing": approved.approvals_missing(),
                        "comment": comment,
                    }),
                )
            };
            match self
                .store
                .update_grant(&approved, grant.expected(), Some(&event))
                .await
            {
                Ok(()) => {
                    if active {
                        tracing::info!(grant = %id, approver = %caller.email, expires_at = ?approved.expires_at, approvals = counts.0, "grant approved");
                        self.after_decision(&approved).await;
                    } else {
                        tracing::info!(grant = %id, approver = %caller.email, approvals = counts.0, required = counts.1, "approval recorded; more are needed");
                        self.show_approval_progress(&approved).await;
                    }
                    return Ok(self.store.get_grant(id).await?.unwrap_or(approved));
                }
                Err(StoreError::Conflict) => {
                    // Somebody else wrote the grant first: read it again and see whether this approval still
                    // counts (another approval landed) or is no longer needed (the request was decided).
                    raced = true;
                    grant = self
                        .store
                        .get_grant(id)
                        .await?
                        .ok_or_else(|| ServiceError::grant_not_found(id))?;
                    with_quorum(&mut grant, &resource);
                    if canonical_ticket.is_some() {
                        // The same ticket, spelled as its ticket system does (a grant's ticket changes no other way).
                        grant.ticket.clone_from(&canonical_ticket);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::conflict(
            "grant_busy",
            "the request kept changing while your approval was being recorded; try again",
        ))
    }

    /// `POST /v1/grants/{id}/deny`: any one approver's denial denies, whatever approvals were recorded.
    pub async fn deny_grant(
        &self,
        caller: &Caller,
        id: &str,
        decision: &Decision,
    ) -> Result<Grant, ServiceError> {
        let comment = decision.comment()?;
        let (grant, _) = self.grant_to_decide(caller, id, "deny").await?;
        // Refusals (not pending, own request) before anything is written.
        grant.deny(&caller.email, self.clock.now())?;
        // A write that loses to another one re-reads: still pending, the denial lands; decided meanwhile, the
        // caller is told by whom.
        let mut decided = None;
        let denied = self
            .modify_loaded(grant, |current| {
                let now = self.clock.now();
                match current.deny(&caller.email, now) {
                    Ok(denied) => {
                        let event = AuditEvent::of(
                            &denied,
                            AuditKind::Denied,
                            Some(&caller.email),
                            now,
                            serde_json::json!({
                                "approvals": denied.approvals.len(),
                                "comment": comment,
                            }),
                        );
                        Some((denied, Some(event)))
                    }
                    Err(_) => {
                        decided = Some(decided_meanwhile(current));
                        None
                    }
                }
            })
            .await?;
        let Some(denied) = denied else {
            return Err(decided.unwrap_or_else(|| ServiceError::grant_not_found(id)));
        };
        tracing::info!(grant = %id, approver = %caller.email, "grant denied");
        self.after_decision(&denied).await;
        Ok(self.store.get_grant(id).await?.unwrap_or(denied))
    }

    /// `POST /v1/grants/{id}/revoke`: the requester ends their own grant, or an approver or admin ends any.
    /// `POST /v1/grants/{id}/revoke`: ends a grant now. `decision`'s comment (why it was revoked) is kept in the
    /// `ended` audit event.
    pub async fn revoke_grant(
        &self,
        caller: &Caller,
        id: &str,
        decision: &Decision,
    ) -> Result<Grant, ServiceError> {
        let comment = decision.comment()?;
        // Visible means: their own, every grant for approvers and admins, and a resource's grants for the
        // approvers it lists (who may revoke them too).
        let grant = self.visible_grant(caller, id).await?;
        let own = grant.requester == caller.email;
        let lists_caller =
            !own && !caller.ends_any_grant() && self.decides_for(caller, &grant.resource).await?;
        if !may_end(caller, &grant, lists_caller) {
            return Err(ServiceError::forbidden(
                "not_allowed",
                "only the requester, an approver or an admin may revoke a grant",
            ));
        }
        if !grant.status.is_open() {
            return Err(ServiceError::conflict(
                "grant_already_closed",
                format!("the grant is already {}", grant.status.as_str()),
            ));
        }
        let reason = if own && grant.status == GrantStatus::Pending {
            EndReason::Withdrawn
        } else {
            EndReason::Revoked
        };
        match self
            .end_grant_commented(id, reason, &caller.email, comment.as_deref())
            .await?
        {
            super::EndOutcome::Ended(g) => Ok(g),
            super::EndOutcome::AlreadyClosed(g) => Err(ServiceError::conflict(
                "grant_already_closed",
                format!("the grant is already {}", g.status.as_str()),
            )),
        }
    }

    /// `GET /v1/grants/{id}`.
    pub async fn get_grant(&self, caller: &Caller, id: &str) -> Result<Grant, ServiceError> {
        self.visible_grant(caller, id).await
    }

    /// `GET /v1/grants`: approvers, admins and auditors see every grant; the approvers a resource lists see
    /// their own and that resource's; everyone else sees only their own.
    ///
    /// `requester`, one `status` and `ticket` are asked of the store, which indexes them. `resource`, several
    /// statuses and the time range are checked here on the store's pages, newest first, reading at most
    /// [`MAX_SCAN_PAGES`] of them per call; a page may then hold fewer than `limit` grants, and `next` goes on
    /// where the reading stopped. Reading stops for good at the first grant requested before `from`.
    pub async fn list_grants(
        &self,
        caller: &Caller,
        mut query: ListGrants,
    ) -> Result<Page<Grant>, ServiceError> {
        if let Some(ticket) = query.filter.ticket.as_mut() {
            // Grants are stored under the ticket's canonical key: a filter spelled another way finds them too.
            ticket.key = self
                .connections
                .canonical_key(&ticket.connection, &ticket.key)
                .await?;
        }
        let own_only = query
            .filter
            .requester
            .as_ref()
            .is_some_and(|r| *r == caller.email);
        let decided = if caller.sees_all_grants() || own_only {
            None
        } else {
            let decided = self.resources_decided_by(caller).await?;
            if decided.is_empty() {
                if query.filter.requester.is_some() {
                    return Err(ServiceError::forbidden(
                        "not_allowed",
                        "you can list only your own grants",
                    ));
                }
                query.filter.requester = Some(caller.email.clone());
                None
            } else {
                Some(decided)
            }
        };
        if let [only] = query.statuses.as_slice() {
            query.filter.status = Some(*only);
        }
        let narrowed = query.resource.is_some()
            || query.statuses.len() > 1
            || query.from.is_some()
            || query.to.is_some();
        if decided.is_none() && !narrowed {
            return Ok(self
                .store
                .list_grants(&query.filter, query.limit, query.cursor.as_deref())
                .await?);
        }
        let visible = |g: &Grant| {
            decided
                .as_ref()
                .is_none_or(|d| g.requester == caller.email || d.contains(&g.resource))
        };
        // Each store page is asked for what is still missing, so the cursor handed out is exactly where the
        // reading stopped.
        let mut items = Vec::new();
        let mut cursor = query.cursor.take();
        for _ in 0..MAX_SCAN_PAGES {
            let page = self
                .store
                .list_grants(&query.filter, query.limit - items.len(), cursor.as_deref())
                .await?;
            cursor = page.next;
            let mut before_range = false;
            for g in page.items {
                if query.from.is_some_and(|from| g.requested_at < from) {
                    before_range = true;
                    break;
                }
                if visible(&g) && query.matches(&g) {
                    items.push(g);
                }
            }
            if before_range {
                cursor = None;
            }
            if items.len() >= query.limit || cursor.is_none() {
                break;
            }
        }
        Ok(Page {
            items,
            next: cursor,
        })
    }

    /// The ids of the resources whose `approvers` list `caller` (not the ones the approver group decides).
    async fn resources_decided_by(&self, caller: &Caller) -> Result<Vec<String>, ServiceError> {
        let mut decided = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self.store.list_resources(200, cursor.as_deref()).await?;
            decided.extend(
                page.items
                    .into_iter()
                    .filter(|r| {
                        r.policy
                            .approvers
                            .as_ref()
                            .is_some_and(|a| a.includes(caller))
                    })
                    .map(|r| r.id),
            );
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(decided),
            }
        }
    }

    /// Whether `caller` is one of the approvers `resource` lists.
    async fn decides_for(&self, caller: &Caller, resource: &str) -> Result<bool, ServiceError> {
        Ok(self.store.get_resource(resource).await?.is_some_and(|r| {
            r.policy
                .approvers
                .as_ref()
                .is_some_and(|a| a.includes(caller))
        }))
    }

    /// `GET /v1/grants/{id}/events`.
    pub async fn grant_events(
        &self,
        caller: &Caller,
        id: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<AuditEvent>, ServiceError> {
        self.visible_grant(caller, id).await?;
        let mut page = self.store.list_events(id, limit, cursor).await?;
        if !super::oversight::sees_internals(caller) {
            page.items = page
                .items
                .into_iter()
                .map(super::oversight::event_without_internals)
                .collect();
        }
        Ok(page)
    }

    /// The grant, if the caller may see it (their own; every grant for approvers and admins; a resource's
    /// grants for the approvers it lists); a grant they may not see is "not found", so ids cannot be probed.
    async fn visible_grant(&self, caller: &Caller, id: &str) -> Result<Grant, ServiceError> {
        if GrantId::parse(id).is_err() {
            return Err(ServiceError::grant_not_found(id));
        }
        match self.store.get_grant(id).await? {
            Some(g) if caller.sees_all_grants() || g.requester == caller.email => Ok(g),
            Some(g) if self.decides_for(caller, &g.resource).await? => Ok(g),
            _ => Err(ServiceError::grant_not_found(id)),
        }
    }

    /// Rule 3, through the ticket system; `Ok` is the ticket as it answered: its canonical key and stable id.
    async fn check_ticket(
        &self,
        ticket: &TicketRef,
        requester: &str,
        claimed: &crate::domain::identity::ClaimedIdentity,
    ) -> Result<crate::domain::grant::BoundTicket, ServiceError> {
        Ok(self
            .connections
            .check_requester_binding(ticket, requester, claimed)
            .await?)
    }
}

fn validate_ticket_ref(ticket: &TicketRef) -> Result<(), ServiceError> {
    if Slug::parse(&ticket.connection).is_err() {
        return Err(ServiceError::unprocessable(
            "unknown_connection",
            format!("there is no connection `{}`", ticket.connection),
        ));
    }
    if TicketKey::parse(&ticket.key).is_err() {
        return Err(ServiceError::unprocessable(
            "invalid_ticket_key",
            "`ticket.key` must be a ticket key such as SEC-42 (Jira) or 1234 (Freshservice)",
        ));
    }
    Ok(())
}

pub(crate) fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
