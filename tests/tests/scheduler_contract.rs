//! The `Scheduler` contract: EventBridge Scheduler (on moto) and the in-process scheduler of the local server
//! pass the same cases. Each adapter is read back through its own probe (the schedule group's schedules, the
//! local scheduler's stored schedules), so the cases assert what the port promises: an upsert per arming, a
//! cancel that removes one arming and succeeds when it is already gone.

use std::sync::Arc;

use async_trait::async_trait;
use time::{Duration, OffsetDateTime};

use ticketbound::adapters::local_scheduler::LocalScheduler;
use ticketbound::adapters::scheduler::EventBridgeScheduler;
use ticketbound::ports::{Job, JobKind, Scheduler};
use ticketbound_tests::{embedded_store, eventbridge_scheduler, unique};

/// What a scheduler holds: schedule names and when each fires, sorted by name.
#[async_trait]
trait Probe: Send + Sync {
    async fn pending(&self) -> Vec<(String, OffsetDateTime)>;
}

/// The scheduler under test and its probe.
struct Subject {
    scheduler: Arc<dyn Scheduler>,
    probe: Box<dyn Probe>,
}

struct LocalProbe(LocalScheduler);

#[async_trait]
impl Probe for LocalProbe {
    async fn pending(&self) -> Vec<(String, OffsetDateTime)> {
        let mut pending = self.0.pending().await.expect("stored schedules");
        pending.sort();
        pending
    }
}

/// The local scheduler over a fresh in-memory store, not started: schedules are stored and never fire.
fn local() -> Subject {
    let scheduler = LocalScheduler::new(embedded_store());
    Subject {
        scheduler: Arc::new(scheduler.clone()),
        probe: Box::new(LocalProbe(scheduler)),
    }
}

struct EventBridgeProbe {
    client: aws_sdk_scheduler::Client,
    group: String,
}

#[async_trait]
impl Probe for EventBridgeProbe {
    async fn pending(&self) -> Vec<(String, OffsetDateTime)> {
        let mut pending = Vec::new();
        for name in ticketbound_tests::schedule_names(&self.client, &self.group).await {
            let schedule = self
                .client
                .get_schedule()
                .group_name(&self.group)
                .name(&name)
                .send()
                .await
                .expect("get schedule");
            let expression = schedule.schedule_expression().expect("an expression");
            pending.push((name, at_of(expression)));
        }
        pending.sort();
        pending
    }
}

/// The time of an `at(yyyy-mm-ddThh:mm:ss)` expression (UTC).
fn at_of(expression: &str) -> OffsetDateTime {
    let inner = expression
        .strip_prefix("at(")
        .and_then(|e| e.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not a one-time expression: {expression}"));
    OffsetDateTime::parse(
        &format!("{inner}Z"),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap_or_else(|e| panic!("{expression}: {e}"))
}

/// EventBridge Scheduler on moto with a schedule group of its own.
async fn eventbridge() -> Subject {
    let (scheduler, client, group): (EventBridgeScheduler, _, _) = eventbridge_scheduler().await;
    Subject {
        scheduler: Arc::new(scheduler),
        probe: Box::new(EventBridgeProbe { client, group }),
    }
}

/// A whole second a day from now: both adapters keep it exactly (EventBridge rounds up to the second and
/// moves past times forward).
fn tomorrow(plus_minutes: i64) -> OffsetDateTime {
    // One base for the whole run: a case calls this when it schedules and again when it checks, and a busy
    // machine may cross a second boundary in between.
    static BASE: std::sync::OnceLock<OffsetDateTime> = std::sync::OnceLock::new();
    let now = *BASE.get_or_init(OffsetDateTime::now_utc);
    now.replace_nanosecond(0).expect("zero is valid")
        + Duration::days(1)
        + Duration::minutes(plus_minutes)
}

fn grant_id() -> String {
    unique("g").to_ascii_uppercase()
}

mod suite {
    use super::*;

    pub async fn a_scheduled_job_is_held_under_its_name_and_time(s: Subject) {
        let job = Job::new(JobKind::Expire, &grant_id());
        let at = tomorrow(0);

        s.scheduler.schedule(&job, at).await.expect("schedule");

        assert_eq!(s.probe.pending().await, vec![(job.schedule_name(), at)]);
    }

    pub async fn scheduling_one_arming_twice_keeps_one_schedule_at_the_new_time(s: Subject) {
        let job = Job::new(JobKind::Expire, &grant_id());

        s.scheduler
            .schedule(&job, tomorrow(0))
            .await
            .expect("first");
        s.scheduler
            .schedule(&job, tomorrow(30))
            .await
            .expect("upsert");

        assert_eq!(
            s.probe.pending().await,
            vec![(job.schedule_name(), tomorrow(30))]
        );
    }

    pub async fn a_cancelled_job_is_gone(s: Subject) {
        let job = Job::new(JobKind::Deprovision, &grant_id());
        s.scheduler
            .schedule(&job, tomorrow(0))
            .await
            .expect("schedule");

        s.scheduler.cancel(&job).await.expect("cancel");

        assert_eq!(s.probe.pending().await, vec![]);
    }

    pub async fn cancelling_a_job_that_was_never_scheduled_succeeds(s: Subject) {
        let job = Job::new(JobKind::Provision, &grant_id());

        let cancelled = s.scheduler.cancel(&job).await;

        assert!(cancelled.is_ok(), "{cancelled:?}");
        assert_eq!(s.probe.pending().await, vec![]);
    }

    pub async fn each_arming_is_its_own_schedule_and_cancels_alone(s: Subject) {
        let first = Job::new(JobKind::Expire, &grant_id());
        let second = first.with_arming(1);
        s.scheduler
            .schedule(&first, tomorrow(0))
            .await
            .expect("arming 0");
        s.scheduler
            .schedule(&second, tomorrow(5))
            .await
            .expect("arming 1");
        let mut both = vec![
            (first.schedule_name(), tomorrow(0)),
            (second.schedule_name(), tomorrow(5)),
        ];
        both.sort();
        assert_eq!(s.probe.pending().await, both);

        s.scheduler.cancel(&first).await.expect("cancel arming 0");

        assert_eq!(
            s.probe.pending().await,
            vec![(second.schedule_name(), tomorrow(5))]
        );
    }

    pub async fn jobs_of_other_kinds_and_grants_do_not_collide(s: Subject) {
        let grant = grant_id();
        let expire = Job::new(JobKind::Expire, &grant);
        let deprovision = Job::new(JobKind::Deprovision, &grant);
        let other = Job::new(JobKind::Expire, &grant_id());
        for job in [&expire, &deprovision, &other] {
            s.scheduler
                .schedule(job, tomorrow(0))
                .await
                .expect("schedule");
        }

        s.scheduler.cancel(&deprovision).await.expect("cancel");

        let mut left = vec![
            (expire.schedule_name(), tomorrow(0)),
            (other.schedule_name(), tomorrow(0)),
        ];
        left.sort();
        assert_eq!(s.probe.pending().await, left);
    }
}

/// One test per case, each with a fresh scheduler from `$make`, in module `$name`.
macro_rules! contract {
    ($name:ident, $make:expr) => {
        mod $name {
            use super::*;
            macro_rules! case {
                ($case:ident) => {
                    #[tokio::test]
                    async fn $case() {
                        suite::$case($make).await;
                    }
                };
            }
            case!(a_scheduled_job_is_held_under_its_name_and_time);
            case!(scheduling_one_arming_twice_keeps_one_schedule_at_the_new_time);
            case!(a_cancelled_job_is_gone);
            case!(cancelling_a_job_that_was_never_scheduled_succeeds);
            case!(each_arming_is_its_own_schedule_and_cancels_alone);
            case!(jobs_of_other_kinds_and_grants_do_not_collide);
        }
    };
}

contract!(in_process, local());
contract!(eventbridge_on_moto, eventbridge().await);
