//! What people see of grants beyond the grant itself: the actions the caller may take on each
//! ([`GrantView`]), the bound ticket as its ticket system has it now, the connection directory, and the CSV
//! export of a filtered list of grants with each one's timeline (for admins, approvers and auditors).
//!
//! What went wrong in an end system (a provisioner's or a channel's last error, a provisioner's status URL) names
//! internals: the provisioner's address, the host that refused. The deployment-wide roles (admins, who fix those
//! systems, the approver group and auditors) see it as recorded; everyone else reads the same fields with a plain
//! sentence in place of the detail ([`without_internals`]), so a requester learns that something failed and who
//! can tell them why.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::grants::{GrantView, allowed_actions};
use super::{ListGrants, ServiceError, Ticketbound};
use crate::domain::grant::SideEffectState;
use crate::domain::{AuditKind, Caller, Grant, GrantStatus, Resource};
use crate::ports::Page;
use crate::service::connections::DirectoryEntry;

/// The most rows one CSV export holds; a larger export is refused with a request to narrow the filters, never
/// cut short silently.
pub const MAX_EXPORT_ROWS: usize = 10_000;

/// How many grants one store read of an export asks for.
const EXPORT_PAGE: usize = 200;

/// The bound ticket of a grant, read live through its connection.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GrantTicket {
    pub key: String,
    pub summary: String,
    /// The status as people read it (`In Progress`).
    pub status: String,
    /// Where a person opens the ticket.
    pub url: String,
    /// Closed by the connection's rule (a deleted ticket is not found instead).
    pub closed: bool,
}

/// What a person who may not see an end system's detail reads in place of a provisioner's last error.
pub const END_SYSTEM_ERROR: &str = "The system that grants this access did not accept the change or could not be reached. An administrator can see why.";

/// What such a person reads in place of a notification channel's last error.
pub const CHANNEL_ERROR: &str = "The message could not be delivered. An administrator can see why.";

/// Whether `caller` sees what end systems answered as recorded: the deployment-wide roles (admins, who fix those
/// systems; the approver group, who run access day to day; auditors). A requester, and an approver a resource
/// lists without being in the approver group, read the plain sentence.
pub(crate) fn sees_internals(caller: &Caller) -> bool {
    caller.sees_all_grants()
}

/// `grant` with every end-system detail replaced: a last error by a plain sentence (its presence still says
/// that something failed), a provisioner's status URL removed.
pub(crate) fn without_internals(mut grant: Grant) -> Grant {
    for effect in [grant.provisioning.as_mut(), grant.deprovisioning.as_mut()]
        .into_iter()
        .flatten()
    {
        if effect.last_error.is_some() {
            effect.last_error = Some(END_SYSTEM_ERROR.to_owned());
        }
        effect.status_url = None;
    }
    for notification in &mut grant.notifications {
        if notification.last_error.is_some() {
            notification.last_error = Some(CHANNEL_ERROR.to_owned());
        }
    }
    grant
}

/// An audit event as `without_internals` shows its grant: an `error` it records is the plain sentence.
pub(crate) fn event_without_internals(
    mut event: crate::domain::AuditEvent,
) -> crate::domain::AuditEvent {
    if let Some(detail) = event.detail.as_object_mut() {
        if detail.get("error").is_some_and(|e| !e.is_null()) {
            detail.insert("error".into(), END_SYSTEM_ERROR.into());
        }
        detail.remove("status_url");
    }
    event
}

/// The header row of the CSV export, in column order.
pub const EXPORT_COLUMNS: [&str; 15] = [
    "id",
    "requester",
    "resource",
    "ticket",
    "status",
    "requested_at",
    "decided_by",
    "decided_at",
    "activated_at",
    "ended_at",
    "end_reason",
    "ended_by",
    "access_removed_at",
    "deprovisioning",
    // Until when sessions opened before the removal may still work, when the provisioner said so: the access
    // really ended then, not at `access_removed_at`.
    "residual_until",
];

impl Ticketbound {
    /// The grants as the API answers them to `caller`, each with what the caller may do with it now.
    pub async fn views(
        &self,
        caller: &Caller,
        grants: Vec<Grant>,
    ) -> Result<Vec<GrantView>, ServiceError> {
        let mut resources: HashMap<String, Option<Resource>> = HashMap::new();
        let mut views = Vec::with_capacity(grants.len());
        for grant in grants {
            if !resources.contains_key(&grant.resource) {
                let resource = self.store.get_resource(&grant.resource).await?;
                resources.insert(grant.resource.clone(), resource);
            }
            let resource = resources.get(&grant.resource).and_then(Option::as_ref);
            let actions = allowed_actions(caller, &grant, resource);
            let grant = if sees_internals(caller) {
                grant
            } else {
                without_internals(grant)
            };
            views.push(GrantView { grant, actions });
        }
        Ok(views)
    }

    /// One grant as the API answers it to `caller`.
    pub async fn view(&self, caller: &Caller, grant: Grant) -> Result<GrantView, ServiceError> {
        let mut views = self.views(caller, vec![grant]).await?;
        views
            .pop()
            .ok_or_else(|| ServiceError::internal("a view of one grant is one view"))
    }

    /// A page of grants as the API answers it to `caller`.
    pub async fn page_view(
        &self,
        caller: &Caller,
        page: Page<Grant>,
    ) -> Result<Page<GrantView>, ServiceError> {
        Ok(Page {
            items: self.views(caller, page.items).await?,
            next: page.next,
        })
    }

    /// `GET /v1/grants/{id}/ticket`: the bound ticket as its ticket system has it now, for anyone who may see
    /// the grant. 404 `grant_not_found` for a grant the caller may not see, 404 `no_ticket` when it is unbound,
    /// 404 `ticket_not_found` when the ticket was deleted.
    pub async fn grant_ticket(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<GrantTicket, ServiceError> {
        let grant = self.get_grant(caller, id).await?;
        let Some(ticket) = &grant.ticket else {
            return Err(ServiceError::not_found(
                "no_ticket",
                format!("grant `{id}` is not bound to a ticket"),
            ));
        };
        let found = self.connections.read_ticket(ticket).await?;
        let Some(found) = found else {
            return Err(ServiceError::not_found(
                "ticket_not_found",
                format!("{} no longer exists in `{}`", ticket.key, ticket.connection),
            ));
        };
        Ok(GrantTicket {
            key: found.key,
            summary: found.summary,
            status: found.status,
            url: found.url,
            closed: found.closed,
        })
    }

    /// `GET /v1/connection-directory`: the connections anyone signed in may pick from.
    pub async fn connection_directory(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<DirectoryEntry>, ServiceError> {
        self.connections.directory(limit, cursor).await
    }

    /// `GET /v1/grants/export.csv`: every grant `query` selects that the caller may see (the same rules and
    /// filters as the list, without paging), as RFC 4180 CSV with a header row ([`EXPORT_COLUMNS`]), newest
    /// first. More than [`MAX_EXPORT_ROWS`] grants: 422 `export_too_large`.
    pub async fn export_grants(
        &self,
        caller: &Caller,
        mut query: ListGrants,
    ) -> Result<String, ServiceError> {
        query.limit = EXPORT_PAGE;
        query.cursor = None;
        let mut grants = Vec::new();
        loop {
            let page = self.list_grants(caller, query.clone()).await?;
            grants.extend(page.items);
            if grants.len() > MAX_EXPORT_ROWS {
                return Err(ServiceError::unprocessable(
                    "export_too_large",
                    format!(
                        "the export would hold more than {MAX_EXPORT_ROWS} grants; narrow it with `resource`, `requester`, `status` or a shorter `from`–`to` range"
                    ),
                ));
            }
            match page.next {
                Some(next) => query.cursor = Some(next),
                None => break,
            }
        }
        let mut out = String::new();
        push_row(&mut out, EXPORT_COLUMNS.iter().map(|c| (*c).to_owned()));
        for grant in &grants {
            let removed_at = self.access_removed_at(grant).await?;
            push_row(&mut out, timeline(grant, removed_at).into_iter());
        }
        Ok(out)
    }

    /// When the end system confirmed the removal of the grant's access (its `deprovisioned` event), if it did.
    async fn access_removed_at(
        &self,
        grant: &Grant,
    ) -> Result<Option<time::OffsetDateTime>, ServiceError> {
        if grant
            .deprovisioning
            .as_ref()
            .is_none_or(|d| d.state != SideEffectState::Done)
        {
            return Ok(None);
        }
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .store
                .list_events(&grant.id, 200, cursor.as_deref())
                .await?;
            if let Some(event) = page
                .items
                .iter()
                .find(|e| e.kind == AuditKind::Deprovisioned)
            {
                return Ok(Some(event.at));
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(None),
            }
        }
    }
}

/// One grant's row of the export, in [`EXPORT_COLUMNS`] order.
fn timeline(grant: &Grant, removed_at: Option<time::OffsetDateTime>) -> Vec<String> {
    let time = |t: Option<time::OffsetDateTime>| t.map(super::grants::rfc3339).unwrap_or_default();
    // Only an approval activates: a denial is a decision too, but never gave access.
    let activated_at = matches!(grant.status, GrantStatus::Active | GrantStatus::Ended)
        .then_some(grant.decided_at)
        .flatten();
    vec![
        grant.id.clone(),
        grant.requester.clone(),
        grant.resource.clone(),
        grant
            .ticket
            .as_ref()
            .map(|t| format!("{}:{}", t.connection, t.key))
            .unwrap_or_default(),
        grant.status.as_str().to_owned(),
        time(Some(grant.requested_at)),
        grant.decided_by.clone().unwrap_or_default(),
        time(grant.decided_at),
        time(activated_at),
        time(grant.ended_at),
        grant
            .end_reason
            .map(|r| r.as_str().to_owned())
            .unwrap_or_default(),
        grant.ended_by.clone().unwrap_or_default(),
        time(removed_at),
        grant
            .deprovisioning
            .as_ref()
            .map(|d| side_effect_state(d.state).to_owned())
            .unwrap_or_default(),
        time(grant.residual_until),
    ]
}

fn side_effect_state(state: SideEffectState) -> &'static str {
    match state {
        SideEffectState::Pending => "pending",
        SideEffectState::Done => "done",
        SideEffectState::Skipped => "skipped",
        SideEffectState::Failed => "failed",
    }
}

/// Appends one CSV record (RFC 4180: CRLF line ends; a field holding a comma, a quote or a line break is
/// quoted, its quotes doubled).
fn push_row(out: &mut String, cells: impl Iterator<Item = String>) {
    for (i, cell) in cells.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let cell = defused(cell);
        if cell.contains([',', '"', '\r', '\n']) {
            let _ = write!(out, "\"{}\"", cell.replace('"', "\"\""));
        } else {
            out.push_str(&cell);
        }
    }
    out.push_str("\r\n");
}

/// A cell a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage return)
/// gets a leading `'`, so opening the export runs nothing a requester typed.
fn defused(cell: String) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> String {
        let mut out = String::new();
        push_row(&mut out, cells.iter().map(|c| (*c).to_owned()));
        out
    }

    #[test]
    fn fields_with_commas_quotes_or_line_breaks_are_quoted() {
        assert_eq!(
            row(&["a", "b,c", "say \"hi\"", "two\nlines"]),
            "a,\"b,c\",\"say \"\"hi\"\"\",\"two\nlines\"\r\n"
        );
    }

    #[test]
    fn without_internals_keeps_that_something_failed_and_drops_what_the_end_system_said() {
        use crate::domain::grant::SideEffect;
        use crate::domain::notification::{NotificationState, NotifyEvent};
        let mut grant = Grant::request(
            "01JD3AAAAAAAAAAAAAAAAAAAAA".into(),
            "alice@example.com".into(),
            "prod-db".into(),
            "INC-7".into(),
            crate::domain::GrantDuration::parse("PT1H").unwrap(),
            None,
            time::macros::datetime!(2026-01-01 10:00 UTC),
        );
        let mut failing = SideEffect::pending();
        failing.last_error = Some("https://hooks.internal:8443/grant answered HTTP 500".into());
        failing.status_url = Some("https://hooks.internal:8443/jobs/1".into());
        grant.provisioning = Some(failing);
        grant.deprovisioning = Some(SideEffect::pending());
        let mut slack = NotificationState::pending(NotifyEvent::Approved, "slack");
        slack.last_error = Some("hooks.slack.com answered HTTP 404".into());
        grant.notifications = vec![
            slack,
            NotificationState::pending(NotifyEvent::Approved, "mail"),
        ];

        let shown = without_internals(grant);

        let p = shown.provisioning.unwrap();
        assert_eq!(p.last_error.as_deref(), Some(END_SYSTEM_ERROR));
        assert_eq!(p.status_url, None);
        assert_eq!(
            shown.deprovisioning.unwrap().last_error,
            None,
            "no failure, no sentence"
        );
        assert_eq!(
            shown.notifications[0].last_error.as_deref(),
            Some(CHANNEL_ERROR)
        );
        assert_eq!(shown.notifications[1].last_error, None);
    }

    #[test]
    fn cells_a_spreadsheet_would_run_as_formulas_are_defused() {
        assert_eq!(
            row(&["=HYPERLINK(\"x\")", "+1", "-2", "@SUM(A1)", "ok"]),
            "\"'=HYPERLINK(\"\"x\"\")\",'+1,'-2,'@SUM(A1),ok\r\n"
        );
    }
}
