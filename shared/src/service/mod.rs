//! The use cases: request, approve, deny and revoke grants; end grants from schedules and webhooks; run the
//! side effects of a grant's start and end; keep the resource catalog.
//!
//! The same [`Ticketbound`] runs behind every Lambda function and the local server; only the adapters differ.

mod audit_tickets;
mod chat;
mod closing;
mod confirm;
mod connections;
mod error;
mod grants;
mod jobs;
mod lifecycle;
mod notifications;
mod oversight;
mod reconcile;
mod resources;
mod ticket_writes;

use std::sync::Arc;
use time::Duration;

pub use closing::TicketClosing;
pub use confirm::Confirmation;
pub use connections::ConnectionWriteError;
pub use connections::DirectoryEntry;
pub use connections::{
    ConnectionChanges, ConnectionShown, Connections, TicketWriteError, Verification,
};
pub use error::{ErrorKind, ServiceError};
pub use grants::{
    Decision, GrantAction, GrantRequest, GrantView, ListGrants, allowed_actions, may_decide,
    may_end,
};
pub use jobs::JobOutcome;
pub use lifecycle::EndOutcome;
pub use notifications::NotifySettings;
pub use oversight::{
    CHANNEL_ERROR, END_SYSTEM_ERROR, EXPORT_COLUMNS, GrantTicket, MAX_EXPORT_ROWS,
};
pub use reconcile::{
    ACCESS_REMOVED_AGAIN, CANONICAL_KEYS_JOB, ENDED_LOOKBACK_DAYS, FOUND_BY_RECONCILIATION,
    RECONCILE_JOB, ReconcileReport, ReconcileSettings, spawn_reconciliation,
};
pub use resources::{
    EntityTag, Precondition, ResourceInput, ResourceWriteError, SavedResource,
    SecretLoadingProvisioners, merge_patch,
};
pub use ticket_writes::TicketProvisioners;

use crate::domain::{Caller, Grant, GrantStatus, IsoDuration};
use crate::ports::notify::Notifier;
use crate::ports::{
    Clock, ConnectionStore, GrantFilter, GrantStore, Provisioners, Scheduler, SecretStore,
    TicketSystems,
};

/// How durable retries of side effects back off.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// The first retry's delay; each later one doubles, up to `cap`, with jitter.
    pub base: Duration,
    pub cap: Duration,
    /// Attempts in all (the first included) before the side effect is `failed`.
    pub max_attempts: u32,
    /// How long one attempt may hold a side effect before another worker may take it over. Longer than the
    /// provisioner timeout.
    pub lease: Duration,
}

impl Default for RetryPolicy {
    /// 30 s doubling to 1 h, 16 attempts: about nine hours of retries before `failed`.
    fn default() -> Self {
        Self {
            base: Duration::seconds(30),
            cap: Duration::hours(1),
            max_attempts: 16,
            lease: Duration::seconds(60),
        }
    }
}

impl RetryPolicy {
    /// The delay after the `attempt`-th failed attempt: exponential, capped, with "equal jitter" (half fixed,
    /// half random), so a provisioner coming back is not hit by every grant at once.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1i32 << attempt.saturating_sub(1).min(20));
        let capped = if exp > self.cap { self.cap } else { exp };
        let half = capped / 2;
        half + half * fastrand::f64()
    }
}

/// Deployment settings the use cases need.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The longest grant for a resource without its own `max_duration` (`MAX_DURATION`, default `P7D`).
    pub max_duration: IsoDuration,
    pub retry: RetryPolicy,
    pub reconcile: ReconcileSettings,
    /// Where notifications link to and whom they address (`service/notifications.rs`).
    pub notifications: NotifySettings,
    /// How long a request waits for its approvals before it is cancelled as `approval_timed_out`
    /// (`PENDING_FOR`, default `P1D`).
    pub pending_for: IsoDuration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_duration: IsoDuration::parse("P7D").expect("valid literal"),
            retry: RetryPolicy::default(),
            reconcile: ReconcileSettings::default(),
            notifications: NotifySettings::default(),
            pending_for: IsoDuration::parse("P1D").expect("valid literal"),
        }
    }
}

/// The application core, shared by every entry point. Built only through [`Ticketbound::build`], by the
/// wiring of every `main` and by the test harness alike, so what tests run is what production runs.
#[derive(Clone)]
pub struct Ticketbound {
    pub(crate) store: Arc<dyn GrantStore>,
    pub(crate) scheduler: Arc<dyn Scheduler>,
    /// `webhook` and `none` provisioners, with `ticket` ones through the connections (DESIGN §7).
    pub(crate) provisioners: Arc<dyn Provisioners>,
    /// Ticket-system connections (DESIGN §6); they also check ticket bindings (rule 3). A deployment without
    /// ticket systems has connections over a [`TicketSystems`] that refuses.
    pub(crate) connections: Connections,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) settings: Settings,
    /// The deployment's notification channels (none is a valid configuration).
    pub(crate) notifier: Arc<dyn Notifier>,
    /// Where webhook provisioners' signing secrets are kept (beside the connections' secrets).
    pub(crate) secrets: Arc<dyn SecretStore>,
}

/// Every port the application needs, none optional. Production wiring fills it with the AWS or the embedded
/// adapters; a test swaps one field for another real adapter.
pub struct Ports {
    pub grants: Arc<dyn GrantStore>,
    pub connections: Arc<dyn ConnectionStore>,
    pub scheduler: Arc<dyn Scheduler>,
    pub secrets: Arc<dyn SecretStore>,
    /// Builds a connection's client; `NoTicketSystems` where a deployment (or a test) has none.
    pub ticket_systems: Arc<dyn TicketSystems>,
    /// The `webhook` and `none` provisioners; [`Ticketbound::build`] routes `ticket` ones through the
    /// connections.
    pub provisioners: Arc<dyn Provisioners>,
    pub clock: Arc<dyn Clock>,
    /// The notification channels; `adapters::notify::NotifyChannels::none()` where a deployment has none.
    pub notifier: Arc<dyn Notifier>,
}

impl Ticketbound {
    /// The one composition root: the application over `ports` with `settings`.
    pub fn build(ports: Ports, settings: Settings) -> Self {
        let connections = Connections::new(
            ports.connections,
            ports.secrets.clone(),
            ports.ticket_systems,
            ports.grants.clone(),
            ports.clock.clone(),
        );
        Self {
            store: ports.grants,
            scheduler: ports.scheduler,
            provisioners: Arc::new(TicketProvisioners::new(
                Arc::new(SecretLoadingProvisioners::new(
                    ports.provisioners,
                    ports.secrets.clone(),
                )),
                connections.clone(),
                settings.notifications.portal_url.clone(),
            )),
            secrets: ports.secrets,
            connections,
            clock: ports.clock,
            settings,
            notifier: ports.notifier,
        }
    }

    /// The grant store (tests read state back through it).
    pub fn store(&self) -> &Arc<dyn GrantStore> {
        &self.store
    }

    /// The scheduler the grants' end and retry jobs go to.
    pub fn scheduler(&self) -> &Arc<dyn Scheduler> {
        &self.scheduler
    }

    /// The ticket-system connections.
    pub fn connections(&self) -> &Connections {
        &self.connections
    }

    /// The clock every decision reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The deployment settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The same application under other settings (a second deployment over the same ports).
    #[must_use]
    pub fn with_settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }
}

/// 403 unless the caller is an admin; `what` names what only admins may do ("change resources").
pub(crate) fn require_admin(caller: &Caller, what: &str) -> Result<(), ServiceError> {
    if caller.admin {
        Ok(())
    } else {
        Err(ServiceError::forbidden(
            "not_an_admin",
            format!("only members of the admin group may {what}"),
        ))
    }
}

/// The first pending or active grant for which `matches` holds (what deleting a resource or a connection would
/// orphan), paging through the open grants.
pub(crate) async fn first_open_grant(
    store: &dyn GrantStore,
    matches: impl Fn(&Grant) -> bool,
) -> Result<Option<Grant>, ServiceError> {
    for status in [GrantStatus::Pending, GrantStatus::Active] {
        let filter = GrantFilter {
            status: Some(status),
            ..GrantFilter::default()
        };
        let mut cursor: Option<String> = None;
        loop {
            let page = store.list_grants(&filter, 100, cursor.as_deref()).await?;
            if let Some(grant) = page.items.into_iter().find(|g| matches(g)) {
                return Ok(Some(grant));
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_stay_under_the_cap() {
        let policy = RetryPolicy::default();
        let first = policy.delay_after(1);
        assert!(
            first >= Duration::seconds(15) && first <= Duration::seconds(30),
            "{first}"
        );
        let fourth = policy.delay_after(4);
        assert!(
            fourth >= Duration::seconds(120) && fourth <= Duration::seconds(240),
            "{fourth}"
        );
        for attempt in 1..100 {
            assert!(policy.delay_after(attempt) <= policy.cap);
        }
    }
}
