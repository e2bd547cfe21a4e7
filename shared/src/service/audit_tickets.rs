//! Audit tickets (DESIGN §8): a ticket per request in the audit connection, the decision recorded on it, and
//! closed when access ends.
//!
//! Which connection: the connection of the request's bound ticket when it has audit settings, otherwise the
//! first connection (by id) that has them ([`super::Connections::audit_destination_for`]). The ticket is stored
//! in `grant.audit_ticket`.
//!
//! Rules:
//! - Opening and commenting are best effort and bounded by [`AUDIT_CALL_LIMIT`]: a failure is logged and
//!   recorded as an audit event (`audit_ticket_failed`, `audit_note_failed`), never an error for the person
//!   asking. An audit ticket that could not be opened at the request is tried again at the decision (the marker
//!   `tb-<grant>-audit` finds one whose answer was lost).
//! - Closing is a step of the end's side effects (`deprovisioning`), so it is retried durably like revoking
//!   access. Denied and cancelled requests have no access to remove; when they have an audit ticket, a
//!   `deprovisioning` that only closes it is started for them.
//! - Closing an audit ticket by hand changes no grant: the webhooks end only grants *bound* to a ticket.
//! - The description and every note carry the grant's link in the portal (`PORTAL_URL`, when set), so a person
//!   reading the ticket reaches the grant in one click.

use std::time::Duration as StdDuration;

use super::Ticketbound;
use crate::domain::grant::SideEffect;
use crate::domain::side_effect::Failure;
use crate::domain::ticket_writes::{CloseOutcome, NewTicket, grant_link_line, marker};
use crate::domain::{AuditEvent, AuditKind, Grant, GrantStatus, TicketRef};
use crate::ports::{Job, JobKind};

/// The longest a portal request waits for one audit-ticket call (API Gateway gives up after 29 s).
pub const AUDIT_CALL_LIMIT: StdDuration = StdDuration::from_secs(8);

impl Ticketbound {
    /// After a request is stored: opens its audit ticket when a connection asks for one. The grant as it is now.
    pub(crate) async fn audit_on_request(&self, grant: Grant) -> Grant {
        self.ensure_audit_ticket(&grant.id).await.unwrap_or(grant)
    }

    /// After a decision is stored: records it on the audit ticket (opening the ticket if the request could not);
    /// a denied request's audit ticket is then closed.
    pub(crate) async fn audit_on_decision(&self, id: &str) {
        let Some(grant) = self.ensure_audit_ticket(id).await else {
            return;
        };
        let Some(audit) = grant.audit_ticket.clone() else {
            return;
        };
        let who = grant.decided_by.as_deref().unwrap_or("?");
        let at = grant
            .decided_at
            .map(super::grants::rfc3339)
            .unwrap_or_default();
        let note = match grant.status {
            GrantStatus::Denied => format!("Denied by {who} at {at}."),
            _ => {
                let ends = match (&grant.expires_at, &grant.ticket) {
                    (Some(e), _) => super::grants::rfc3339(*e),
                    (None, Some(t)) => format!("when ticket {} ({}) closes", t.key, t.connection),
                    (None, None) => "when revoked".into(),
                };
                format!("Approved by {who} at {at}. Access ends: {ends}.")
            }
        };
        self.audit_note(&grant, &audit, &note).await;
        if grant.status == GrantStatus::Denied {
            self.close_audit_later(id).await;
        }
    }

    /// After a grant ended or a request was cancelled (the state change is durable): records why on the audit
    /// ticket; a cancelled request's audit ticket is then closed (an ended grant's is closed by its
    /// deprovisioning).
    pub(crate) async fn audit_on_end(&self, grant: &Grant) {
        let Some(audit) = grant.audit_ticket.clone() else {
            return;
        };
        let at = grant
            .ended_at
            .map(super::grants::rfc3339)
            .unwrap_or_default();
        let reason = grant.end_reason.map(|r| r.as_str()).unwrap_or("unknown");
        let by = grant
            .ended_by
            .as_deref()
            .map(|b| format!(" by {b}"))
            .unwrap_or_default();
        let what = if grant.status == GrantStatus::Cancelled {
            "Request cancelled"
        } else {
            "Access ended"
        };
        self.audit_note(grant, &audit, &format!("{what} at {at}{by}: {reason}."))
            .await;
        if grant.status == GrantStatus::Cancelled {
            self.close_audit_later(&grant.id).await;
        }
    }

    /// The deprovisioning step: closes the audit ticket, if the grant has one. Closed already, or deleted, is
    /// success. An error is retried by the lifecycle.
    pub(crate) async fn close_audit_ticket(&self, grant: &Grant) -> Result<(), Failure> {
        let Some(audit) = &grant.audit_ticket else {
            return Ok(());
        };
        let connections = &self.connections;
        match connections.close(audit).await {
            Ok(outcome) => {
                if outcome != CloseOutcome::Closed {
                    tracing::info!(grant = %grant.id, key = %audit.key, ?outcome, "audit ticket needed no closing");
                } else {
                    tracing::info!(grant = %grant.id, key = %audit.key, "audit ticket closed");
                }
                Ok(())
            }
            Err(e) => {
                let mut failure = e.as_failure();
                failure.message =
                    format!("closing audit ticket {}: {}", audit.key, failure.message);
                Err(failure)
            }
        }
    }

    /// The grant with its audit ticket opened, when a connection asks for one; `None` when the grant is
    /// missing or could not be read. Best effort: failures are logged and recorded.
    async fn ensure_audit_ticket(&self, id: &str) -> Option<Grant> {
        let connections = &self.connections;
        let grant = match self.store.get_grant(id).await {
            Ok(Some(g)) => g,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(grant = %id, error = %e, "could not read the grant for its audit ticket");
                return None;
            }
        };
        if grant.audit_ticket.is_some() {
            return Some(grant);
        }
        let (settings, destination) = match connections.audit_destination_for(&grant).await {
            Ok(Some(found)) => found,
            Ok(None) => return Some(grant),
            Err(e) => {
                self.record_audit_failure(&grant, AuditKind::AuditTicketFailed, &e.to_string())
                    .await;
                return Some(grant);
            }
        };
        let ticket = NewTicket {
            destination,
            summary: format!(
                "Access request: {} to {} (Ticketbound)",
                grant.requester, grant.resource
            ),
            description: request_text(&grant, self.portal_url()),
            requester_email: grant.requester.clone(),
            marker: marker(&grant.id, "audit"),
        };
        let opened = tokio::time::timeout(
            AUDIT_CALL_LIMIT,
            connections.open_ticket(&settings.id, &ticket),
        )
        .await;
        let created = match opened {
            Ok(Ok(created)) => created,
            Ok(Err(e)) => {
                self.record_audit_failure(&grant, AuditKind::AuditTicketFailed, &e.to_string())
                    .await;
                return Some(grant);
            }
            Err(_) => {
                self.record_audit_failure(
                    &grant,
                    AuditKind::AuditTicketFailed,
                    &format!(
                        "connection `{}` did not answer within {AUDIT_CALL_LIMIT:?}",
                        settings.id
                    ),
                )
                .await;
                return Some(grant);
            }
        };
        let audit = TicketRef {
            connection: settings.id.clone(),
            key: created.key.clone(),
        };
        let now = self.clock.now();
        let written = self
            .modify_grant(id, |g| {
                if g.audit_ticket.is_some() {
                    return None;
                }
                let mut next = g.touched();
                next.audit_ticket = Some(audit.clone());
                let event = AuditEvent::of(
                    &next,
                    AuditKind::AuditTicketOpened,
                    None,
                    now,
                    serde_json::json!({"connection": audit.connection, "key": audit.key, "url": created.url}),
                );
                Some((next, Some(event)))
            })
            .await;
        match written {
            Ok(Some(g)) => {
                tracing::info!(grant = %id, connection = %audit.connection, key = %audit.key, "audit ticket opened");
                Some(g)
            }
            Ok(None) => self.store.get_grant(id).await.ok().flatten(),
            Err(e) => {
                // The ticket exists and carries the marker: the next attempt finds it.
                tracing::warn!(grant = %id, key = %audit.key, error = %e, "could not record the audit ticket on the grant");
                Some(grant)
            }
        }
    }

    /// The portal's public base URL, which tickets link to, when the deployment has one.
    pub(crate) fn portal_url(&self) -> Option<&str> {
        self.settings.notifications.portal_url.as_deref()
    }

    /// Comments on the audit ticket, best effort; the comment ends with the grant's link.
    async fn audit_note(&self, grant: &Grant, audit: &TicketRef, text: &str) {
        let connections = &self.connections;
        let text = match grant_link_line(self.portal_url(), &grant.id) {
            Some(link) => format!("{text}\n{link}"),
            None => text.to_owned(),
        };
        let result =
            tokio::time::timeout(AUDIT_CALL_LIMIT, connections.comment(audit, &text)).await;
        let error = match result {
            Ok(Ok(true)) => return,
            Ok(Ok(false)) => format!("audit ticket {} no longer exists", audit.key),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!(
                "connection `{}` did not answer within {AUDIT_CALL_LIMIT:?}",
                audit.connection
            ),
        };
        self.record_audit_failure(grant, AuditKind::AuditNoteFailed, &error)
            .await;
    }

    /// Starts a `deprovisioning` that only closes the audit ticket of a denied or cancelled request (they have
    /// no access to remove), with the same safety schedule and retries as the end of an active grant.
    async fn close_audit_later(&self, id: &str) {
        let now = self.clock.now();
        let job = Job::new(JobKind::Deprovision, id);
        if let Err(e) = self
            .scheduler
            .schedule(&job, now + self.settings.retry.lease)
            .await
        {
            tracing::warn!(grant = %id, error = %e, "could not arm the schedule that closes the audit ticket; closing now");
        }
        let started = self
            .modify_grant(id, |g| {
                let closed_request =
                    matches!(g.status, GrantStatus::Denied | GrantStatus::Cancelled);
                if !closed_request || g.audit_ticket.is_none() || g.deprovisioning.is_some() {
                    return None;
                }
                let mut next = g.touched();
                next.deprovisioning = Some(SideEffect {
                    // Nothing was provisioned for a request that never became active.
                    provisioner_done: true,
                    ..SideEffect::pending()
                });
                Some((next, None))
            })
            .await;
        match started {
            Ok(Some(_)) => {
                if let Err(e) = self.deprovision_attempt(id).await {
                    tracing::warn!(grant = %id, error = %e, "closing the audit ticket could not run; the schedule will retry");
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(grant = %id, error = %e, "could not start closing the audit ticket")
            }
        }
    }

    /// Logs an audit-ticket failure and records it on the grant's trail (best effort: a failure to record is
    /// only logged).
    async fn record_audit_failure(&self, grant: &Grant, kind: AuditKind, error: &str) {
        tracing::warn!(grant = %grant.id, kind = kind.as_str(), error, "audit ticket call failed; the request goes on");
        let now = self.clock.now();
        let detail = serde_json::json!({"error": error});
        if let Err(e) = self
            .modify_grant(&grant.id, |g| {
                let next = g.touched();
                let event = AuditEvent::of(&next, kind, None, now, detail.clone());
                Some((next, Some(event)))
            })
            .await
        {
            tracing::warn!(grant = %grant.id, error = %e, "could not record the audit-ticket failure");
        }
    }
}

/// The description of a request's audit ticket.
fn request_text(grant: &Grant, portal_url: Option<&str>) -> String {
    let mut lines = vec![
        "Ticketbound records an access request here. This ticket is closed when the access ends; closing it by hand does not end the access.".to_owned(),
        format!("Requester: {}", grant.requester),
        format!("Resource: {}", grant.resource),
        format!("Reason: {}", grant.reason),
        format!("Duration: {}", grant.duration),
        format!("Requested at: {}", super::grants::rfc3339(grant.requested_at)),
        format!("Grant: {}", grant.id),
    ];
    if let Some(t) = &grant.ticket {
        lines.push(format!("Bound ticket: {} ({})", t.key, t.connection));
    }
    lines.extend(grant_link_line(portal_url, &grant.id));
    lines.join("\n")
}
