//! The `ticket` provisioner (DESIGN §7): access is set up and removed by a person, asked through a ticket.
//!
//! [`TicketProvisioners`] implements the [`Provisioners`] port: `webhook` and `none` go to the inner
//! provisioners (the signed HTTP call), `ticket` opens a ticket in the resource's connection asking a person
//! to grant (on approval) or remove (at the end) the access. An opened ticket is done; the durable retries of
//! the lifecycle run unchanged.
//!
//! Idempotency: each ticket carries a marker derived from the grant and the action (`tb-<grant>-grant`,
//! `tb-<grant>-revoke`, a Jira label or a Freshservice tag), and every attempt first searches for it. A retry
//! after a lost answer therefore finds the ticket instead of opening a second one. (Jira's search is eventually
//! consistent; the retry backoff, 30 s at first, is far longer than its usual lag.)
//!
//! Each ticket links to the grant in the portal (`PORTAL_URL`, when set), so the person doing the work sees
//! the request, its approvals and its state in one click.

use async_trait::async_trait;
use std::sync::Arc;

use super::{Connections, ServiceError, Ticketbound};
use crate::domain::ticket_writes::{DestinationFields, NewTicket, grant_link_line, marker};
use crate::domain::{Grant, Provisioner, Resource};
use crate::ports::{
    Convergence, ProvisionAction, ProvisionError, ProvisionOutcome, ProvisionReceipt, Provisioners,
    ReconcileCall,
};

/// The longest one provisioning attempt may take (a marker search and a create, each with its own bounded
/// retries): shorter than the retry lease (60 s), so two attempts never overlap. A ticket created by an attempt
/// cut short is found by its marker on the next one.
pub const CALL_LIMIT: std::time::Duration = std::time::Duration::from_secs(25);

/// Dispatches by provisioner kind: `ticket` to the connections, everything else to `inner`.
#[derive(Clone)]
pub struct TicketProvisioners {
    inner: Arc<dyn Provisioners>,
    connections: Connections,
    /// The portal's public base URL, which the tickets link to.
    portal_url: Option<String>,
}

impl TicketProvisioners {
    pub fn new(
        inner: Arc<dyn Provisioners>,
        connections: Connections,
        portal_url: Option<String>,
    ) -> Self {
        Self {
            inner,
            connections,
            portal_url,
        }
    }
}

#[async_trait]
impl Provisioners for TicketProvisioners {
    async fn apply(
        &self,
        resource: &Resource,
        action: ProvisionAction,
        grant: &Grant,
    ) -> Result<ProvisionOutcome, ProvisionError> {
        let Provisioner::Ticket {
            connection,
            project,
            issue_type,
            group_id,
            priority,
        } = &resource.provisioner
        else {
            return self.inner.apply(resource, action, grant).await;
        };
        let settings = self
            .connections
            .settings(connection)
            .await
            .map_err(|e| ProvisionError::retryable(format!("reading connection `{connection}`: {e}")))?
            .ok_or_else(|| {
                ProvisionError::retryable(format!(
                    "connection `{connection}` no longer exists; point the resource at another connection"
                ))
            })?;
        let fields = DestinationFields {
            project: project.as_deref(),
            issue_type: issue_type.as_deref(),
            group_id: *group_id,
            priority: *priority,
        };
        let destination = self
            .connections
            .destination(&settings, &fields)
            .map_err(|m| {
                ProvisionError::retryable(format!("the resource's ticket provisioner: {m}"))
            })?;
        let (summary, description) =
            provisioning_text(resource, action, grant, self.portal_url.as_deref());
        let ticket = NewTicket {
            destination,
            summary,
            description,
            requester_email: grant.requester.clone(),
            marker: marker(&grant.id, action.as_str()),
        };
        let created = tokio::time::timeout(
            CALL_LIMIT,
            self.connections.open_ticket(connection, &ticket),
        )
        .await
        .map_err(|_| {
            ProvisionError::retryable(format!(
                "connection `{connection}` did not answer within {CALL_LIMIT:?}"
            ))
        })?
        .map_err(|e| ProvisionError(e.as_failure()))?;
        tracing::info!(grant = %grant.id, action = action.as_str(), connection = %connection, key = %created.key, "provisioning ticket opened");
        // A person acts on the ticket later: the removal is asked for, not confirmed.
        Ok(ProvisionOutcome::Done(ProvisionReceipt {
            access_removed: (action == ProvisionAction::Revoke).then_some(false),
            ..ProvisionReceipt::default()
        }))
    }

    async fn poll(
        &self,
        resource: &Resource,
        action: ProvisionAction,
        grant: &Grant,
        status_url: &str,
    ) -> Result<ProvisionOutcome, ProvisionError> {
        // Only webhook provisioners accept a call to finish later; a ticket is done once it is opened.
        self.inner.poll(resource, action, grant, status_url).await
    }

    fn offers(&self, kind: &str) -> bool {
        self.inner.offers(kind)
    }

    async fn end_session_cut(
        &self,
        resource: &Resource,
        grant: &Grant,
    ) -> Result<(), ProvisionError> {
        self.inner.end_session_cut(resource, grant).await
    }

    async fn reconcile(
        &self,
        resource: &Resource,
        call: &ReconcileCall<'_>,
    ) -> Result<Convergence, ProvisionError> {
        // A person keeps a ticket provisioner's end system: there is nothing to converge automatically.
        self.inner.reconcile(resource, call).await
    }
}

/// The summary and description of a ticket asking a person to grant or remove access. Only what the grant and
/// the catalog say: never a secret.
fn provisioning_text(
    resource: &Resource,
    action: ProvisionAction,
    grant: &Grant,
    portal_url: Option<&str>,
) -> (String, String) {
    let when = |t: Option<time::OffsetDateTime>| t.map(super::grants::rfc3339);
    let ends = match (&grant.expires_at, &grant.ticket) {
        (Some(at), _) => super::grants::rfc3339(*at),
        (None, Some(t)) => format!("when ticket {} ({}) closes", t.key, t.connection),
        (None, None) => "when revoked".into(),
    };
    let mut lines = Vec::new();
    let summary = match action {
        ProvisionAction::Grant => {
            lines.push(format!(
                "Ticketbound asks you to GRANT {} access to {}. The request was approved; set up the access, then resolve this ticket.",
                grant.requester, resource.name
            ));
            format!(
                "Grant access to {} for {} (Ticketbound)",
                resource.name, grant.requester
            )
        }
        ProvisionAction::Revoke => {
            lines.push(format!(
                "Ticketbound asks you to REMOVE the access of {} to {}. The grant has ended; remove the access, then resolve this ticket.",
                grant.requester, resource.name
            ));
            format!(
                "Remove access to {} for {} (Ticketbound)",
                resource.name, grant.requester
            )
        }
    };
    lines.push(format!("Requester: {}", grant.requester));
    lines.push(format!("Resource: {} ({})", resource.name, resource.id));
    lines.push(format!("Grant: {}", grant.id));
    lines.push(format!("Reason: {}", grant.reason));
    if let Some(by) = &grant.decided_by {
        lines.push(format!("Approved by: {by}"));
    }
    if let Some(t) = &grant.ticket {
        lines.push(format!("Bound ticket: {} ({})", t.key, t.connection));
    }
    match action {
        ProvisionAction::Grant => lines.push(format!("Access ends: {ends}")),
        ProvisionAction::Revoke => {
            if let Some(ended) = when(grant.ended_at) {
                lines.push(format!("Ended at: {ended}"));
            }
            if let Some(reason) = grant.end_reason {
                lines.push(format!("End reason: {}", reason.as_str()));
            }
        }
    }
    lines.extend(grant_link_line(portal_url, &grant.id));
    (summary, lines.join("\n"))
}

impl Ticketbound {
    /// Validates a `ticket` provisioner for `PUT /v1/resources/{id}`: the connection exists and the
    /// kind-specific fields fit it (Jira: `project`, `issue_type`; Freshservice: `group_id`, `priority`). The
    /// answer is the provisioner with its defaults filled in.
    pub(crate) async fn checked_ticket_provisioner(
        &self,
        provisioner: Provisioner,
    ) -> Result<Provisioner, ServiceError> {
        let Provisioner::Ticket {
            connection,
            project,
            issue_type,
            group_id,
            priority,
        } = provisioner
        else {
            return Ok(provisioner);
        };
        let connections = &self.connections;
        let settings = connections.settings(&connection).await?.ok_or_else(|| {
            ServiceError::unprocessable(
                "unknown_connection",
                format!(
                    "there is no connection `{connection}`; create it first (POST /v1/connections)"
                ),
            )
        })?;
        let fields = DestinationFields {
            project: project.as_deref(),
            issue_type: issue_type.as_deref(),
            group_id,
            priority,
        };
        let checked = connections
            .destination(&settings, &fields)
            .map_err(|m| ServiceError::unprocessable("invalid_provisioner", m))?;
        Ok(Provisioner::Ticket {
            connection,
            project: checked.project,
            issue_type: checked.issue_type,
            group_id: checked.group_id,
            priority: checked.priority,
        })
    }
}
