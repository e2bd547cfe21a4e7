//! Reconciliation (DESIGN §2): the backstop for lost webhooks. A run re-reads, in batches, the tickets that
//! have open bound grants, and ends the grants of those the ticket system says are closed or deleted through
//! the normal pipeline ([`Ticketbound::close_ticket`]), the audit event saying `"found_by":
//! "reconciliation"`. Each such closing is a webhook that was missed: logged at warn, counted as the
//! `ClosingsFoundByReconciliation` metric, and shown on the connection (`webhook_health`).
//!
//! A run is bounded (a ticket budget, a wall-time budget, and each ticket system's calls per run) and
//! resumable: each connection's position in its sweep (tickets in key order) is saved in the store, so the
//! next run continues after the last ticket checked and a sweep checks each ticket once; a finished sweep
//! starts again from the first ticket on the next run. Ticket-system errors never end a grant: the position
//! stays, the next run asks again. A 429 pauses that connection until its `Retry-After` has passed.
//!
//! Then each resource whose webhook provisioner takes it (`reconcile: true`) is sent the `reconcile` call with
//! the requesters of its active grants ([`crate::ports::Provisioners::reconcile`]), so an end system that missed
//! a `revoke` takes the access away. The call grants and ends nothing here; its failures are counted and logged.
//! Each resource with the built-in IAM Identity Center provisioner (account assignments) takes the same call and
//! converges itself: it is also told who held the access through a grant that ended within
//! [`ENDED_LOOKBACK_DAYS`], removes the assignment of any of them who holds no active grant, and answers what it
//! found. Each removal is recorded on the trail of the grant it outlived (a `deprovisioned` event with
//! `"found_by": "reconciliation"` and `"access_removed_again": true`), logged at warn and counted as the
//! `AccessRemovedByReconciliation` metric; assignments Ticketbound never made and active grants whose
//! assignment is missing are only counted in the run's report and logged.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

use super::connections::ReconcileSession;
use super::{ServiceError, Ticketbound};
use crate::domain::connection::TicketState;
use crate::domain::reconcile::{ReconcileState, TimeValue};
use crate::domain::resource::IdentityCenterTarget;
use crate::domain::side_effect::SideEffectState;
use crate::domain::{AuditEvent, AuditKind, EndReason, GrantStatus, Provisioner, TicketRef};
use crate::ports::{Convergence, EndedHolder, GrantFilter, ReconcileCall};
use crate::telemetry;

/// Resources and grants read per page when the provisioners are reconciled.
const PAGE: usize = 100;
/// Provisioners' `reconcile` calls made at once.
const PROVISIONERS_AT_ONCE: usize = 16;
/// The longest a provisioner call takes (its timeout, and the bound on a built-in provisioner's whole call),
/// added to the run's time budget for the last group.
const PROVISIONER_CALL: Duration = Duration::from_secs(10);
/// How far back reconciliation looks for grants whose access a built-in provisioner may have to remove again:
/// grants that ended within these many days.
pub const ENDED_LOOKBACK_DAYS: i64 = 30;
/// The most ended grants (the newest requested first) a run reads to find them: ten pages, so a run stays cheap
/// however long the history.
const ENDED_GRANTS_READ: usize = 1_000;
/// The audit detail's flag on a `deprovisioned` event recording access a reconciliation run removed after the
/// grant's own removal (which a lost call, or a person giving the access again, had left).
pub const ACCESS_REMOVED_AGAIN: &str = "access_removed_again";

/// The audit detail's `found_by` for closings reconciliation found.
pub const FOUND_BY_RECONCILIATION: &str = "reconciliation";
/// The scheduled job that runs reconciliation: `{"job": "reconcile"}`.
pub const RECONCILE_JOB: &str = "reconcile";
/// The job an operator invokes once after an upgrade to move open grants bound under another spelling of their
/// ticket key to the canonical one: `{"job": "canonical_ticket_keys"}`.
pub const CANONICAL_KEYS_JOB: &str = "canonical_ticket_keys";

/// How reconciliation runs.
#[derive(Clone, Debug)]
pub struct ReconcileSettings {
    /// The interval (`RECONCILE_EVERY`, default `PT15M`); `None` when it is off.
    pub every: Option<Duration>,
    /// Tickets checked per run, all connections together.
    pub tickets_per_run: usize,
    /// Wall time after which a run starts no new batch: well under the expiry function's 55 s timeout, leaving
    /// room for the closings of the last batch.
    pub time_budget: Duration,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        Self {
            every: Some(Duration::from_secs(15 * 60)),
            tickets_per_run: 5_000,
            time_budget: Duration::from_secs(30),
        }
    }
}

/// What one run did (the expiry function's answer, and a log line).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// Tickets whose state was read.
    pub tickets_checked: usize,
    /// Closed or deleted tickets that still had open grants: missed webhooks.
    pub closings_found: usize,
    /// Grants ended (active) or cancelled (pending) because of them.
    pub grants_ended: usize,
    /// Calls made to ticket systems.
    pub ticket_system_calls: usize,
    /// Connections whose sweep reached its last ticket in this run.
    pub sweeps_completed: usize,
    /// Connections skipped because they rate limited an earlier run.
    pub connections_paused: usize,
    /// Ticket-system or ending errors (logged; retried by the next run).
    pub errors: usize,
    /// `reconcile` calls made to the provisioners of resources that take them.
    pub provisioners_reconciled: usize,
    /// Of those, the ones that failed (logged and counted as `ProvisionerReconcileFailures`; the next run sends
    /// the list again).
    pub provisioner_errors: usize,
    /// Access that outlived its grant and that a built-in provisioner removed in this run, each recorded on the
    /// grant's trail (`AccessRemovedByReconciliation`).
    pub access_removed_again: usize,
    /// Account assignments Ticketbound never made (nobody with a grant of that resource holds them): left alone.
    pub unmanaged_assignments: usize,
    /// Active grants whose account assignment is missing: reported, never made again.
    pub missing_assignments: usize,
    /// Why the run stopped before visiting every connection: `ticket_budget` or `time_budget`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<&'static str>,
}

/// How one connection's part of a run ended.
enum Part {
    /// Its sweep is complete, or its share of calls for this run is used up, or it failed: go on.
    Next,
    /// The run's budget is used up: stop the run here, and start with this connection next time.
    OutOfBudget(&'static str),
}

impl Ticketbound {
    /// One reconciliation run. `Err` only when the store could not be read or written; ticket-system errors
    /// are counted in the report and logged.
    pub async fn reconcile(&self) -> Result<ReconcileReport, ServiceError> {
        let mut report = ReconcileReport::default();
        let connections = &self.connections;
        let started = Instant::now();
        let now = self.clock.now();
        let mut state = self.store.reconcile_state().await?.unwrap_or_default();
        let ids = connections.all_ids().await?;
        state.prune(now, |c| ids.iter().any(|id| id == c));
        let order = state.run_order(&ids);
        let mut tickets_left = self.settings.reconcile.tickets_per_run.max(1);
        for id in order {
            if state.is_paused(&id, now) {
                report.connections_paused += 1;
                continue;
            }
            let session = match connections.open_for_reconcile(&id).await {
                Ok(Some(session)) => session,
                Ok(None) => continue,
                Err(message) => {
                    tracing::warn!(connection = %id, error = %message, "reconciliation could not open the connection");
                    report.errors += 1;
                    continue;
                }
            };
            // If this run dies here, the next starts with this connection.
            state.next_connection = Some(id.clone());
            let part = self
                .reconcile_connection(
                    &id,
                    session,
                    &mut state,
                    &mut report,
                    &mut tickets_left,
                    started,
                )
                .await?;
            if let Part::OutOfBudget(why) = part {
                report.stopped_by = Some(why);
                break;
            }
            state.next_connection = None;
        }
        state.saved_at = Some(now);
        self.store.save_reconcile_state(&state).await?;
        // After the closings this run found, so the lists leave out the grants they ended.
        self.reconcile_provisioners(&mut report, started).await?;
        tracing::info!(
            tickets = report.tickets_checked,
            closings_found = report.closings_found,
            grants_ended = report.grants_ended,
            calls = report.ticket_system_calls,
            sweeps_completed = report.sweeps_completed,
            errors = report.errors,
            provisioners_reconciled = report.provisioners_reconciled,
            provisioner_errors = report.provisioner_errors,
            access_removed_again = report.access_removed_again,
            unmanaged_assignments = report.unmanaged_assignments,
            missing_assignments = report.missing_assignments,
            stopped_by = report.stopped_by.unwrap_or("done"),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "reconciliation run"
        );
        Ok(report)
    }

    async fn reconcile_connection(
        &self,
        id: &str,
        mut session: ReconcileSession,
        state: &mut ReconcileState,
        report: &mut ReconcileReport,
        tickets_left: &mut usize,
        started: Instant,
    ) -> Result<Part, ServiceError> {
        let connections = &self.connections;
        let batch = session.batch();
        let mut calls_left = batch.calls_per_run.max(1);
        loop {
            if *tickets_left == 0 {
                return Ok(Part::OutOfBudget("ticket_budget"));
            }
            if started.elapsed() >= self.settings.reconcile.time_budget {
                return Ok(Part::OutOfBudget("time_budget"));
            }
            if calls_left == 0 {
                return Ok(Part::Next);
            }
            let wanted = batch.keys_per_call.max(1).min(*tickets_left);
            let keys = self
                .store
                .open_bound_tickets(id, state.positions.get(id).map(String::as_str), wanted)
                .await?;
            if keys.is_empty() {
                state.positions.remove(id);
                report.sweeps_completed += 1;
                return Ok(Part::Next);
            }
            // Grants stored under another spelling of their key (before keys were kept as the ticket system
            // answers them) move to the canonical one first, so the closing found here and every later delivery
            // find them. `asked[i]` is `keys[i]` in canonical form; the position stays on the stored key.
            let asked = self.canonicalise_keys(id, &keys).await?;
            let answer = match connections.reconcile_states(&mut session, &asked).await {
                Ok(answer) => answer,
                Err(e) => {
                    // Never a reason to end a grant: the position stays and the next run asks again.
                    tracing::warn!(connection = %id, error = %e, "reconciliation could not read ticket states");
                    report.errors += 1;
                    return Ok(Part::Next);
                }
            };
            calls_left = calls_left.saturating_sub(answer.calls.max(1));
            report.ticket_system_calls += answer.calls;
            for ((key, ticket_state), stored) in answer.states.iter().zip(&keys) {
                let reason = match ticket_state {
                    TicketState::Open => None,
                    TicketState::Closed => Some(EndReason::TicketClosed),
                    TicketState::Deleted => Some(EndReason::TicketDeleted),
                };
                if let Some(reason) = reason
                    && !self.end_found_closing(id, key, reason, report).await
                {
                    // Not ended now: leave the position before it, so the next run tries again.
                    return Ok(Part::Next);
                }
                *tickets_left = tickets_left.saturating_sub(1);
                report.tickets_checked += 1;
                state.positions.insert(id.to_owned(), stored.clone());
            }
            // Saved after every batch, so a run cut short (a Lambda timeout, a crash) loses at most one batch.
            state.saved_at = Some(self.clock.now());
            self.store.save_reconcile_state(state).await?;
            if let Some(wait) = answer.rate_limited {
                let until = self.clock.now()
                    + time::Duration::try_from(wait).unwrap_or(time::Duration::minutes(1));
                tracing::warn!(connection = %id, until = %until, "the ticket system rate limited reconciliation; pausing this connection");
                state.paused_until.insert(id.to_owned(), TimeValue(until));
                return Ok(Part::Next);
            }
            if keys.len() < wanted {
                state.positions.remove(id);
                report.sweeps_completed += 1;
                return Ok(Part::Next);
            }
        }
    }

    /// Sends each resource whose webhook provisioner takes it (`reconcile: true`), and each with the built-in IAM
    /// Identity Center provisioner (account assignments), the `reconcile` call: the requesters of its active
    /// grants, who should hold access now. A failure is logged, counted in the report and as the
    /// `ProvisionerReconcileFailures` metric, and changes no grant: the call only lets the end system converge,
    /// and the next run sends the list again. What a built-in provisioner found is recorded
    /// ([`Self::record_convergence`]).
    async fn reconcile_provisioners(
        &self,
        report: &mut ReconcileReport,
        started: Instant,
    ) -> Result<(), ServiceError> {
        let mut resources = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.store.list_resources(PAGE, cursor.as_deref()).await?;
            resources.extend(
                page.items
                    .into_iter()
                    .filter(|r| takes_reconcile(&r.provisioner)),
            );
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        if resources.is_empty() {
            return Ok(());
        }
        let holders = self.active_holders().await?;
        let at = self.clock.now();
        let built_in: BTreeSet<&str> = resources
            .iter()
            .filter(|r| matches!(r.provisioner, Provisioner::AwsIdentityCenter { .. }))
            .map(|r| r.id.as_str())
            .collect();
        let ended = self.ended_holders(&built_in, at).await?;
        // Resources naming the same account assignment share it: nobody's is removed through one of them while
        // another grants it.
        let mut sharing: BTreeMap<AssignmentKey, BTreeSet<String>> = BTreeMap::new();
        for resource in &resources {
            if let Some(key) = assignment_of(&resource.provisioner) {
                sharing.entry(key).or_default().extend(
                    holders
                        .get(resource.id.as_str())
                        .into_iter()
                        .flat_map(|h| h.principals.iter().cloned()),
                );
            }
        }
        // At most PROVISIONERS_AT_ONCE calls in flight, each bounded by PROVISIONER_CALL; no new group once the
        // run is past its time budget plus one call, so the run ends inside the function's timeout. Resources
        // are taken in id order; those left wait for a run with time to spare.
        for group in resources.chunks(PROVISIONERS_AT_ONCE) {
            if started.elapsed() >= self.settings.reconcile.time_budget + PROVISIONER_CALL {
                let left = resources.len() - report.provisioners_reconciled;
                tracing::warn!(
                    left,
                    "reconciliation ran out of time before calling every provisioner; the next run calls them"
                );
                report.stopped_by.get_or_insert("time_budget");
                break;
            }
            let mut calls = JoinSet::new();
            for resource in group {
                let held = holders.get(resource.id.as_str());
                let principals: Vec<String> = match assignment_of(&resource.provisioner) {
                    Some(key) => sharing
                        .get(&key)
                        .map(|p| p.iter().cloned().collect())
                        .unwrap_or_default(),
                    None => held
                        .map(|h| h.principals.iter().cloned().collect())
                        .unwrap_or_default(),
                };
                let provisioned: Vec<String> = held
                    .map(|h| h.provisioned.iter().cloned().collect())
                    .unwrap_or_default();
                let ended: Vec<EndedHolder> = ended
                    .get(resource.id.as_str())
                    .map(|by_requester| by_requester.values().cloned().collect())
                    .unwrap_or_default();
                let provisioners = self.provisioners.clone();
                let resource = resource.clone();
                calls.spawn(async move {
                    let call = ReconcileCall {
                        principals: &principals,
                        provisioned: &provisioned,
                        ended: &ended,
                        at,
                    };
                    let result = tokio::time::timeout(
                        PROVISIONER_CALL,
                        provisioners.reconcile(&resource, &call),
                    )
                    .await;
                    (resource.id, principals.len(), result)
                });
            }
            while let Some(joined) = calls.join_next().await {
                report.provisioners_reconciled += 1;
                match joined {
                    Ok((resource, _, Ok(Ok(found)))) => {
                        if self.record_convergence(&resource, found, report).await {
                            continue;
                        }
                    }
                    Ok((resource, principals, Ok(Err(e)))) => {
                        tracing::warn!(%resource, principals, class = ?e.0.class, error = %e, "the provisioner's reconcile call failed; the next run sends it again");
                    }
                    Ok((resource, principals, Err(_))) => {
                        tracing::warn!(%resource, principals, "the provisioner's reconcile call took longer than its bound; the next run sends it again");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "a provisioner's reconcile call panicked");
                    }
                }
                telemetry::metric("ProvisionerReconcileFailures", 1.0);
                report.provisioner_errors += 1;
            }
        }
        Ok(())
    }

    /// Records what `resource`'s provisioner found: each removal on the trail of the grant it outlived (a
    /// `deprovisioned` event, `"found_by": "reconciliation"`, `"access_removed_again": true`), logged at warn and
    /// counted as `AccessRemovedByReconciliation`; assignments nobody was granted and active grants without
    /// theirs in the report and the log. `false` when a removal failed (each logged with its class).
    async fn record_convergence(
        &self,
        resource: &str,
        found: Convergence,
        report: &mut ReconcileReport,
    ) -> bool {
        for removed in &found.removed {
            tracing::warn!(%resource, grant = %removed.grant_id, principal = %removed.principal_id, "access that outlived its grant was still in the end system; reconciliation removed it");
            telemetry::metric("AccessRemovedByReconciliation", 1.0);
            report.access_removed_again += 1;
            let at = self.clock.now();
            let written = self
                .modify_grant(&removed.grant_id, |current| {
                    let next = current.touched();
                    let detail = serde_json::json!({
                        "found_by": FOUND_BY_RECONCILIATION,
                        ACCESS_REMOVED_AGAIN: true,
                        "principal_id": removed.principal_id,
                    });
                    let event = AuditEvent::of(&next, AuditKind::Deprovisioned, None, at, detail);
                    Some((next, Some(event)))
                })
                .await;
            if let Err(e) = written {
                tracing::error!(%resource, grant = %removed.grant_id, error = %e, "the removal reconciliation made could not be recorded on the grant");
                report.errors += 1;
            }
        }
        if found.unmanaged > 0 {
            tracing::info!(%resource, unmanaged = found.unmanaged, "account assignments Ticketbound never made; left as they are");
            report.unmanaged_assignments += found.unmanaged;
        }
        if !found.missing.is_empty() {
            tracing::warn!(%resource, missing = found.missing.len(), "active grants whose account assignment is missing; not made again (it may have been cut on purpose)");
            report.missing_assignments += found.missing.len();
        }
        for failure in &found.failures {
            tracing::warn!(%resource, class = ?failure.class, error = %failure.message, "reconciliation could not remove access that outlived its grant; the next run tries again");
        }
        found.failures.is_empty()
    }

    /// Who holds each resource's access through an active grant: every requester, and those whose access was
    /// set up; sorted, each once.
    async fn active_holders(&self) -> Result<BTreeMap<String, Holders>, ServiceError> {
        let filter = GrantFilter {
            status: Some(GrantStatus::Active),
            ..GrantFilter::default()
        };
        let mut holders: BTreeMap<String, Holders> = BTreeMap::new();
        let mut cursor = None;
        loop {
            let page = self
                .store
                .list_grants(&filter, PAGE, cursor.as_deref())
                .await?;
            for grant in page.items {
                let held = holders.entry(grant.resource).or_default();
                if grant
                    .provisioning
                    .as_ref()
                    .is_some_and(|p| p.state == SideEffectState::Done)
                {
                    held.provisioned.insert(grant.requester.clone());
                }
                held.principals.insert(grant.requester);
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(holders),
            }
        }
    }

    /// For each of `resources`, the requesters of its grants that ended within [`ENDED_LOOKBACK_DAYS`] of `now`
    /// after their access was set up and whose removal is not still under way, each with their last such grant.
    /// Reads at most [`ENDED_GRANTS_READ`] ended grants, the newest requested first; none when `resources` is
    /// empty.
    async fn ended_holders(
        &self,
        resources: &BTreeSet<&str>,
        now: time::OffsetDateTime,
    ) -> Result<BTreeMap<String, BTreeMap<String, EndedHolder>>, ServiceError> {
        let mut ended: BTreeMap<String, BTreeMap<String, (time::OffsetDateTime, EndedHolder)>> =
            BTreeMap::new();
        if resources.is_empty() {
            return Ok(BTreeMap::new());
        }
        let since = now - time::Duration::days(ENDED_LOOKBACK_DAYS);
        let filter = GrantFilter {
            status: Some(GrantStatus::Ended),
            ..GrantFilter::default()
        };
        let mut read = 0;
        let mut cursor = None;
        while read < ENDED_GRANTS_READ {
            let page = self
                .store
                .list_grants(&filter, PAGE, cursor.as_deref())
                .await?;
            read += page.items.len().max(1);
            for grant in page.items {
                let Some(ended_at) = grant.ended_at.filter(|at| *at >= since) else {
                    continue;
                };
                let provisioned = grant
                    .provisioning
                    .as_ref()
                    .is_some_and(|p| p.state == SideEffectState::Done);
                // A removal still pending is the engine's: it finishes or fails on its own.
                let removing = grant
                    .deprovisioning
                    .as_ref()
                    .is_some_and(|d| d.state == SideEffectState::Pending);
                if !resources.contains(grant.resource.as_str()) || !provisioned || removing {
                    continue;
                }
                let holder = EndedHolder {
                    grant_id: grant.id,
                    requester: grant.requester.clone(),
                };
                ended
                    .entry(grant.resource)
                    .or_default()
                    .entry(grant.requester.to_lowercase())
                    .and_modify(|last| {
                        if ended_at > last.0 {
                            *last = (ended_at, holder.clone());
                        }
                    })
                    .or_insert((ended_at, holder));
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        Ok(ended
            .into_iter()
            .map(|(resource, by)| (resource, by.into_iter().map(|(k, (_, h))| (k, h)).collect()))
            .collect())
    }

    /// Ends the open grants of a ticket reconciliation found closed; `false` when they could not be ended now.
    async fn end_found_closing(
        &self,
        connection: &str,
        key: &str,
        reason: EndReason,
        report: &mut ReconcileReport,
    ) -> bool {
        let ticket = TicketRef {
            connection: connection.to_owned(),
            key: key.to_owned(),
        };
        match self
            .close_ticket_found_by(&ticket, None, reason, Some(FOUND_BY_RECONCILIATION), None)
            .await
        {
            Ok(outcome) if outcome.ended + outcome.cancelled > 0 => {
                tracing::warn!(%connection, ticket = %key, reason = reason.as_str(), ended = outcome.ended, cancelled = outcome.cancelled, "reconciliation found a closing no webhook delivered; check the connection's webhook");
                telemetry::metric("ClosingsFoundByReconciliation", 1.0);
                report.closings_found += 1;
                report.grants_ended += outcome.ended + outcome.cancelled;
                self.connections.note_missed_closing(connection, key).await;
                true
            }
            // Ended meanwhile by a delivery, a schedule or a person: nothing was missed.
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(%connection, ticket = %key, error = %e, "reconciliation could not end the grants of a closed ticket; the next run tries again");
                report.errors += 1;
                false
            }
        }
    }
}

/// Who holds one resource's access through its active grants.
#[derive(Default)]
struct Holders {
    /// Every requester.
    principals: BTreeSet<String>,
    /// Those whose access was set up.
    provisioned: BTreeSet<String>,
}

/// An IAM Identity Center account assignment as a resource names it: instance, account, permission set.
type AssignmentKey = (String, String, String);

/// The account assignment a built-in IAM Identity Center provisioner gives, if it gives one.
fn assignment_of(provisioner: &Provisioner) -> Option<AssignmentKey> {
    let Provisioner::AwsIdentityCenter { instance_arn, .. } = provisioner else {
        return None;
    };
    match provisioner.identity_center_target() {
        Ok(Some(IdentityCenterTarget::AccountAssignment {
            account_id,
            permission_set_arn,
        })) => Some((instance_arn.clone(), account_id, permission_set_arn)),
        _ => None,
    }
}

/// Whether a resource's provisioner takes the `reconcile` call: a webhook that asks for it, or the built-in IAM
/// Identity Center provisioner giving account assignments (group memberships are not compared).
fn takes_reconcile(provisioner: &Provisioner) -> bool {
    match provisioner {
        Provisioner::Webhook { reconcile, .. } => *reconcile,
        other => assignment_of(other).is_some(),
    }
}

/// How many keys of open bound grants [`Ticketbound::canonicalise_ticket_keys`] reads at once.
const KEYS_PER_PAGE: usize = 100;

impl Ticketbound {
    /// Moves every open grant bound under a key spelled otherwise than its ticket system answers it (`sec-42`
    /// for `SEC-42`, `053263` for `53263`: stored so before the binding check kept the ticket system's answer)
    /// to the canonical key, so the ticket's webhook finds it. Idempotent; answers how many stored keys moved. The
    /// local server runs it at start; on AWS each reconciliation run does the same for the keys it sweeps, and
    /// the expiry function runs it whole on `{"job": "canonical_ticket_keys"}` (docs/operator-guide.md).
    /// Ended grants keep the key they were bound under: nothing ends them again.
    pub async fn canonicalise_ticket_keys(&self) -> Result<usize, ServiceError> {
        let mut moved = 0;
        for connection in self.connections.all_ids().await? {
            let mut after: Option<String> = None;
            loop {
                let keys = self
                    .store
                    .open_bound_tickets(&connection, after.as_deref(), KEYS_PER_PAGE)
                    .await?;
                let canonical = self.canonicalise_keys(&connection, &keys).await?;
                moved += keys.iter().zip(&canonical).filter(|(k, c)| k != c).count();
                match keys.last() {
                    Some(last) if keys.len() == KEYS_PER_PAGE => after = Some(last.clone()),
                    _ => break,
                }
            }
        }
        if moved > 0 {
            tracing::warn!(
                tickets = moved,
                "bound ticket keys stored in another spelling were moved to the ticket system's own"
            );
        }
        Ok(moved)
    }

    /// `keys` (stored keys of `connection`'s open bound grants) in canonical form, in the same order; the open
    /// grants of each key that is not are rewritten under the canonical key first (a conditional write each,
    /// re-read on a race, so a grant that changes meanwhile is never overwritten with an older copy).
    async fn canonicalise_keys(
        &self,
        connection: &str,
        keys: &[String],
    ) -> Result<Vec<String>, ServiceError> {
        let Some(kind) = self.connections.kind_of(connection).await? else {
            return Ok(keys.to_vec());
        };
        let mut canonical = Vec::with_capacity(keys.len());
        for key in keys {
            let wanted = kind.canonical_key(key);
            if wanted != *key {
                let stored = TicketRef {
                    connection: connection.to_owned(),
                    key: key.clone(),
                };
                let rekeyed = TicketRef {
                    connection: connection.to_owned(),
                    key: wanted.clone(),
                };
                for grant in self.store.grants_for_ticket(&stored).await? {
                    if !grant.status.is_open() {
                        continue;
                    }
                    self.modify_loaded(grant, |current| {
                        (current.ticket.as_ref() == Some(&stored)).then(|| {
                            let mut next = current.touched();
                            next.ticket = Some(rekeyed.clone());
                            (next, None)
                        })
                    })
                    .await?;
                }
                tracing::info!(%connection, stored = %key, canonical = %wanted, "open grants moved to the canonical ticket key");
            }
            canonical.push(wanted);
        }
        Ok(canonical)
    }
}

/// Runs reconciliation every `every` in this process (the local server's timer; on AWS a recurring schedule
/// invokes the expiry function instead). Runs never overlap: the next waits for the last to finish.
pub fn spawn_reconciliation(app: Ticketbound, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(e) = app.reconcile().await {
                tracing::warn!(error = %e, "reconciliation run failed; the next one tries again");
            }
        }
    })
}
