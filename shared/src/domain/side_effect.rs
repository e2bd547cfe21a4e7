//! Side effects (granting, removing, notifying) as the durable engine sees them: where one stands, the lease an
//! attempt holds, and what a failure means.
//!
//! Everything a grant tracks about a side effect (its `provisioning`, its `deprovisioning`, each notification to
//! each channel) is one [`Tracked`] record: a state, the attempts made, the last error, the next attempt's time,
//! the lease of the attempt in flight and the live arming of its retry schedule. Claiming, recording and
//! retrying are written once, here and in `service/jobs.rs`, whatever the side effect is.
//!
//! A failure is classified once ([`FailureClass`]): `retryable` (later can work: throttling, a server error, a
//! timeout, a connection that failed), `conflict` (the other side is busy with a concurrent change to the same
//! thing: retried like `retryable`), or `permanent` (the same call fails the same way: not retried). HTTP answers
//! are classified by [`classify_http_status`], the one table every outbound side effect uses ([`Failure::from_http`]
//! adds the `Retry-After` wait); AWS errors by `adapters/aws_errors.rs`, which reads the codes AWS names and falls
//! back to the same table for the status.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Where a side effect stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SideEffectState {
    Pending,
    Done,
    Skipped,
    Failed,
}

/// A tracked provisioning or deprovisioning on the grant:
/// `{"state": "pending|done|skipped|failed", "attempts": 1, "last_error": null}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideEffect {
    pub state: SideEffectState,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Why it was skipped (rule 8), when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the next retry (or the next status check of an accepted call) is scheduled, while one is.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub next_attempt_at: Option<OffsetDateTime>,
    /// An attempt in progress holds this lease so that a retry schedule firing meanwhile does not call the
    /// end system a second time.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub lease_until: Option<OffsetDateTime>,
    /// The end system has confirmed the provisioner call; later retries only finish the remaining steps.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub provisioner_done: bool,
    /// The live arming of this side effect's retry schedule (`ports::Job::arming`), so that finishing it
    /// deletes exactly that schedule. 0, the safety net's arming, is not written.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub arming: u32,
    /// The provisioner accepted the call and works on it (HTTP 202): the status URL the next attempts check
    /// instead of calling again. Not written otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_url: Option<String>,
    /// What the provisioner said of the live sessions when it removed access (contract v2):
    /// `terminated`, `will_expire` or `not_supported`. Not written when it said nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<SessionsOutcome>,
}

/// `serde`'s `skip_serializing_if` for counters written only when set.
pub(crate) fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl SideEffect {
    pub fn pending() -> Self {
        Self {
            state: SideEffectState::Pending,
            attempts: 0,
            last_error: None,
            reason: None,
            next_attempt_at: None,
            lease_until: None,
            provisioner_done: false,
            arming: 0,
            status_url: None,
            sessions: None,
        }
    }
}

/// What became of the sessions a removal could not end by itself, as a provisioner reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionsOutcome {
    /// The end system cut every session: nothing outlives the removal.
    Terminated,
    /// Sessions stay valid until they expire (`residual_until`, when the provisioner knows).
    WillExpire,
    /// The end system cannot tell or cut sessions.
    NotSupported,
}

/// What the engine needs of every tracked side effect, so that one claim and one record serve them all.
pub trait Tracked {
    fn state(&self) -> SideEffectState;
    fn attempts_mut(&mut self) -> &mut u32;
    fn lease_until_mut(&mut self) -> &mut Option<OffsetDateTime>;
    fn lease_until(&self) -> Option<OffsetDateTime>;

    /// Until when another worker's attempt holds it, if a lease still runs at `now`.
    fn leased_until(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.lease_until().filter(|until| *until > now)
    }

    /// Takes the lease for one attempt at `now` (counting the attempt), unless the side effect is finished or
    /// another worker's lease still runs.
    fn claim(&mut self, now: OffsetDateTime, lease: time::Duration) -> Claim {
        if self.state() != SideEffectState::Pending {
            return Claim::Finished;
        }
        if let Some(until) = self.leased_until(now) {
            return Claim::Busy(until);
        }
        *self.attempts_mut() += 1;
        *self.lease_until_mut() = Some(now + lease);
        Claim::Claimed
    }

    /// Gives the lease back with the attempt's outcome (or when nothing is waiting any more).
    fn release(&mut self) {
        *self.lease_until_mut() = None;
    }
}

/// What [`Tracked::claim`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The lease is ours: run the attempt.
    Claimed,
    /// Another worker holds it until then: come back after it, in case that worker died.
    Busy(OffsetDateTime),
    /// Done, skipped or failed: nothing to do.
    Finished,
}

impl Tracked for SideEffect {
    fn state(&self) -> SideEffectState {
        self.state
    }
    fn attempts_mut(&mut self) -> &mut u32 {
        &mut self.attempts
    }
    fn lease_until_mut(&mut self) -> &mut Option<OffsetDateTime> {
        &mut self.lease_until
    }
    fn lease_until(&self) -> Option<OffsetDateTime> {
        self.lease_until
    }
}

/// How a failure of a side effect is treated (the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    Retryable,
    Conflict,
    Permanent,
}

/// A failed attempt at a side effect: what it means, why (never a secret or a URL's query), and how long the
/// other side asked us to wait (`Retry-After`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub class: FailureClass,
    pub message: String,
    pub retry_after: Option<std::time::Duration>,
}

impl Failure {
    /// A failure that later can cure.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            class: FailureClass::Retryable,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A failure that repeating would only repeat.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            class: FailureClass::Permanent,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The failure a non-2xx HTTP answer means ([`classify_http_status`]), with the wait its `Retry-After`
    /// header asks for (delay-seconds; kept only on a failure that is retried). `None` for a 2xx.
    pub fn from_http(
        status: u16,
        retry_after: Option<&str>,
        message: impl Into<String>,
    ) -> Option<Self> {
        let class = classify_http_status(status)?;
        let retry_after = retry_after
            .filter(|_| class != FailureClass::Permanent)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(std::time::Duration::from_secs);
        Some(Self {
            class,
            message: message.into(),
            retry_after,
        })
    }

    /// Whether the engine tries again (budget permitting).
    pub fn is_retried(&self) -> bool {
        self.class != FailureClass::Permanent
    }
}

/// The class of a non-2xx HTTP answer: 408, 425, 429 and 5xx are `retryable`, 409 is a `conflict`, every other
/// status is `permanent`. `None` for a 2xx.
pub fn classify_http_status(status: u16) -> Option<FailureClass> {
    match status {
        200..=299 => None,
        408 | 425 | 429 | 500..=599 => Some(FailureClass::Retryable),
        409 => Some(FailureClass::Conflict),
        _ => Some(FailureClass::Permanent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn http_answers_are_classified_once() {
        assert_eq!(classify_http_status(204), None);
        for s in [408, 425, 429, 500, 502, 503] {
            assert_eq!(
                classify_http_status(s),
                Some(FailureClass::Retryable),
                "{s}"
            );
        }
        assert_eq!(classify_http_status(409), Some(FailureClass::Conflict));
        for s in [400, 401, 403, 404, 410, 301] {
            assert_eq!(
                classify_http_status(s),
                Some(FailureClass::Permanent),
                "{s}"
            );
        }
    }

    #[test]
    fn an_http_answer_becomes_one_failure_with_the_wait_it_asked_for() {
        assert_eq!(Failure::from_http(200, Some("60"), "fine"), None);
        let throttled = Failure::from_http(429, Some(" 120 "), "HTTP 429").unwrap();
        assert_eq!(throttled.class, FailureClass::Retryable);
        assert_eq!(
            throttled.retry_after,
            Some(std::time::Duration::from_secs(120))
        );
        let unavailable = Failure::from_http(503, None, "HTTP 503").unwrap();
        assert_eq!(unavailable.class, FailureClass::Retryable);
        assert_eq!(unavailable.retry_after, None);
        let busy = Failure::from_http(409, Some("5"), "HTTP 409").unwrap();
        assert_eq!(busy.class, FailureClass::Conflict);
        assert!(busy.is_retried());
        // A refusal is not retried, so a wait it names means nothing.
        let refused = Failure::from_http(403, Some("60"), "HTTP 403").unwrap();
        assert_eq!(refused.class, FailureClass::Permanent);
        assert_eq!(refused.retry_after, None);
        assert!(!refused.is_retried());
        // An HTTP-date or garbage is read as no wait (the backoff applies).
        let dated = Failure::from_http(503, Some("Wed, 21 Oct 2015 07:28:00 GMT"), "x").unwrap();
        assert_eq!(dated.retry_after, None);
    }

    #[test]
    fn a_claim_counts_the_attempt_and_holds_off_a_second_worker_until_the_lease_ends() {
        let now = datetime!(2026-01-01 10:00 UTC);
        let lease = time::Duration::seconds(60);
        let mut effect = SideEffect::pending();
        assert_eq!(effect.claim(now, lease), Claim::Claimed);
        assert_eq!(effect.attempts, 1);
        assert_eq!(effect.claim(now, lease), Claim::Busy(now + lease));
        assert_eq!(effect.attempts, 1);
        assert_eq!(effect.claim(now + lease, lease), Claim::Claimed);
        assert_eq!(effect.attempts, 2);
        effect.state = SideEffectState::Done;
        assert_eq!(effect.claim(now + lease * 3, lease), Claim::Finished);
    }
}
