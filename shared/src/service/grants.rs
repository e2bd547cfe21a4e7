//! Requesting, deciding, revoking and reading grants (DESIGN §1, §5).

use serde::Deserialize;

use super::{ServiceError, Ticketbound};
use crate::domain::grant::TransitionError;
use crate::domain::ids::{GrantId, Slug, TicketKey};
use crate::domain::{
    AuditEvent, AuditKind, Caller, EndReason, Grant, GrantDuration, GrantStatus, TicketRef,
};
use crate::ports::{GrantFilter, Job, JobKind, Page, StoreError};

/// The body of `POST /v1/grants`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    pub resource: String,
    pub reason: String,
    pub duration: String,
    #[serde(default)]
    pub ticket: Option<TicketRef>,
}

/// The query of `GET /v1/grants`.
#[derive(Clone, Debug, Default)]
pub struct ListGrants {
    pub filter: GrantFilter,
    pub limit: usize,
    pub cursor: Option<String>,
}

const MAX_REASON: usize = 2_000;

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
        }
    }
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
        let ticket_id = match &req.ticket {
            Some(ticket) => {
                self.check_ticket(ticket, &caller.email, &caller.claimed)
                    .await?
            }
            None => None,
        };
        let now = self.clock.now();
        let mut grant = Grant::request(
            GrantId::new(now).into_string(),
            caller.email.clone(),
            resource.id,
            reason.to_owned(),
            duration,
            req.ticket,
            now,
        );
        grant.ticket_id = ticket_id;
        if grant.ticket.is_some() {
            grant.requester_claims = caller.claimed.clone();
        }
        let event = AuditEvent::of(
            &grant,
            AuditKind::Requested,
            Some(&caller.email),
            now,
            serde_json::json!({"reason": grant.reason, "duration": grant.duration}),
        );
        self.store
            .insert_grant(&grant, &event)
            .await
            .map_err(|e| match e {
                StoreError::AlreadyExists => ServiceError::internal("grant id collision"),
                other => other.into(),
            })?;
        tracing::info!(grant = %grant.id, requester = %grant.requester, resource = %grant.resource, "grant requested");
        Ok(self.audit_on_request(grant).await)
    }

    /// `POST /v1/grants/{id}/approve`.
    pub async fn approve_grant(&self, caller: &Caller, id: &str) -> Result<Grant, ServiceError> {
        if !caller.approver {
            return Err(ServiceError::forbidden(
                "not_an_approver",
                "only members of the approver group may approve requests",
            ));
        }
        let grant = self.visible_grant(caller, id).await?;
        let now = self.clock.now();
        let approved = grant.approve(&caller.email, now)?;
        if self.store.get_resource(&grant.resource).await?.is_none() {
            return Err(ServiceError::conflict(
                "resource_missing",
                format!(
                    "resource `{}` no longer exists; deny the request instead",
                    grant.resource
                ),
            ));
        }
        if let Some(ticket) = &grant.ticket {
            // The id was recorded at the request (the stores index it once, with the grant's insert).
            self.check_ticket(ticket, &grant.requester, &grant.requester_claims)
                .await?;
        }
        // The expiry schedule exists before the grant is active, so an active grant always has one. A loser of
        // the race below leaves it behind; it names the same schedule, and it finds an active grant or nothing.
        if let Some(expires_at) = approved.expires_at {
            self.scheduler
                .schedule(&Job::new(JobKind::Expire, &grant.id), expires_at)
                .await?;
        }
        let event = AuditEvent::of(
            &approved,
            AuditKind::Approved,
            Some(&caller.email),
            now,
            serde_json::json!({"expires_at": approved.expires_at.map(rfc3339)}),
        );
        match self
            .store
            .update_grant(&approved, grant.expected(), Some(&event))
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict) => {
                return Err(ServiceError::conflict(
                    "grant_not_pending",
                    "the request was decided or withdrawn at the same moment; reload it",
                ));
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(grant = %id, approver = %caller.email, expires_at = ?approved.expires_at, "grant approved");
        self.provision_attempt(id).await;
        self.audit_on_decision(id).await;
        Ok(self.store.get_grant(id).await?.unwrap_or(approved))
    }

    /// `POST /v1/grants/{id}/deny`.
    pub async fn deny_grant(&self, caller: &Caller, id: &str) -> Result<Grant, ServiceError> {
        if !caller.approver {
            return Err(ServiceError::forbidden(
                "not_an_approver",
                "only members of the approver group may deny requests",
            ));
        }
        let grant = self.visible_grant(caller, id).await?;
        let now = self.clock.now();
        let denied = grant.deny(&caller.email, now)?;
        let event = AuditEvent::of(
            &denied,
            AuditKind::Denied,
            Some(&caller.email),
            now,
            serde_json::Value::Null,
        );
        match self
            .store
            .update_grant(&denied, grant.expected(), Some(&event))
            .await
        {
            Ok(()) => {
                self.audit_on_decision(id).await;
                Ok(self.store.get_grant(id).await?.unwrap_or(denied))
            }
            Err(StoreError::Conflict) => Err(ServiceError::conflict(
                "grant_not_pending",
                "the request was decided or withdrawn at the same moment; reload it",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// `POST /v1/grants/{id}/revoke`: the requester ends their own grant, or an approver or admin ends any.
    pub async fn revoke_grant(&self, caller: &Caller, id: &str) -> Result<Grant, ServiceError> {
        let grant = self.visible_grant(caller, id).await?;
        let own = grant.requester == caller.email;
        if !own && !caller.sees_all_grants() {
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
        match self.end_grant(id, reason, Some(&caller.email)).await? {
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

    /// `GET /v1/grants`: callers who are neither approvers nor admins see only their own.
    pub async fn list_grants(
        &self,
        caller: &Caller,
        mut query: ListGrants,
    ) -> Result<Page<Grant>, ServiceError> {
        if !caller.sees_all_grants() {
            match &query.filter.requester {
                Some(r) if *r != caller.email => {
                    return Err(ServiceError::forbidden(
                        "not_allowed",
                        "you can list only your own grants",
                    ));
                }
                _ => query.filter.requester = Some(caller.email.clone()),
            }
        }
        Ok(self
            .store
            .list_grants(&query.filter, query.limit, query.cursor.as_deref())
            .await?)
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
        Ok(self.store.list_events(id, limit, cursor).await?)
    }

    /// The grant, if the caller may see it; a grant they may not see is "not found", so ids cannot be probed.
    async fn visible_grant(&self, caller: &Caller, id: &str) -> Result<Grant, ServiceError> {
        if GrantId::parse(id).is_err() {
            return Err(ServiceError::grant_not_found(id));
        }
        match self.store.get_grant(id).await? {
            Some(g) if caller.sees_all_grants() || g.requester == caller.email => Ok(g),
            _ => Err(ServiceError::grant_not_found(id)),
        }
    }

    /// Rule 3, through the ticket system; `Ok` carries the ticket's stable id where it has one.
    async fn check_ticket(
        &self,
        ticket: &TicketRef,
        requester: &str,
        claimed: &crate::domain::identity::ClaimedIdentity,
    ) -> Result<Option<String>, ServiceError> {
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
