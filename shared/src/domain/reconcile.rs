//! Where reconciliation stands (DESIGN §2): the position of the current sweep in each connection, and the
//! connections that asked us to wait. Kept as one small item so that a run that stops (out of budget, out of
//! time, or a crash) is continued by the next one.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// The saved position of reconciliation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileState {
    /// Per connection, the last ticket key checked in the current sweep; absent when the next run starts a
    /// new sweep of that connection from its first ticket.
    #[serde(default)]
    pub positions: BTreeMap<String, String>,
    /// Per connection, the time before which it is not asked again (its `Retry-After` after a 429).
    #[serde(default)]
    pub paused_until: BTreeMap<String, TimeValue>,
    /// The connection the next run starts with: the one where the last run ran out of budget, so that a
    /// connection late in the order is not starved by those before it.
    #[serde(default)]
    pub next_connection: Option<String>,
    /// When a run last saved this state.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub saved_at: Option<OffsetDateTime>,
}

/// A point in time, RFC 3339 in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TimeValue(#[serde(with = "time::serde::rfc3339")] pub OffsetDateTime);

impl ReconcileState {
    /// Whether `connection` asked us to wait and the wait is not over at `now`.
    pub fn is_paused(&self, connection: &str, now: OffsetDateTime) -> bool {
        self.paused_until
            .get(connection)
            .is_some_and(|until| until.0 > now)
    }

    /// Forgets waits that are over and connections that no longer exist, so the item stays small.
    pub fn prune(&mut self, now: OffsetDateTime, exists: impl Fn(&str) -> bool) {
        self.paused_until
            .retain(|c, until| until.0 > now && exists(c));
        self.positions.retain(|c, _| exists(c));
        if self.next_connection.as_deref().is_some_and(|c| !exists(c)) {
            self.next_connection = None;
        }
    }

    /// `ids` (in their order) rotated to start at [`Self::next_connection`] when it is among them.
    pub fn run_order(&self, ids: &[String]) -> Vec<String> {
        let start = self
            .next_connection
            .as_ref()
            .and_then(|next| ids.iter().position(|id| id == next))
            .unwrap_or(0);
        ids[start..].iter().chain(&ids[..start]).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_pause_holds_until_its_time_and_is_then_pruned() {
        let now = datetime!(2026-01-01 00:00 UTC);
        let mut state = ReconcileState::default();
        state
            .paused_until
            .insert("fs".into(), TimeValue(now + time::Duration::seconds(30)));
        state.positions.insert("gone".into(), "SEC-1".into());
        assert!(state.is_paused("fs", now));
        assert!(!state.is_paused("jira", now));
        state.prune(now + time::Duration::seconds(31), |c| c != "gone");
        assert!(state.paused_until.is_empty());
        assert!(state.positions.is_empty());
    }

    #[test]
    fn a_run_starts_with_the_connection_the_last_one_did_not_finish() {
        let ids: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let mut state = ReconcileState::default();
        assert_eq!(state.run_order(&ids), ids);
        state.next_connection = Some("b".into());
        assert_eq!(state.run_order(&ids), ["b", "c", "a"].map(String::from));
        state.next_connection = Some("gone".into());
        assert_eq!(state.run_order(&ids), ids);
    }

    #[test]
    fn the_state_round_trips_through_json_and_tolerates_missing_fields() {
        let now = datetime!(2026-01-01 00:00 UTC);
        let mut state = ReconcileState::default();
        state.positions.insert("jira".into(), "SEC-42".into());
        state.paused_until.insert("fs".into(), TimeValue(now));
        state.saved_at = Some(now);
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(
            serde_json::from_str::<ReconcileState>(&json).unwrap(),
            state
        );
        assert_eq!(
            serde_json::from_str::<ReconcileState>("{}").unwrap(),
            ReconcileState::default()
        );
    }
}
