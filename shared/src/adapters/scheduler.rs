//! EventBridge Scheduler: one one-time schedule per job, `at(<UTC>)` in `SCHEDULE_GROUP`, targeting the expiry
//! function through `SCHEDULER_ROLE_ARN`, with a retry policy and the `SCHEDULE_DLQ_ARN` dead-letter queue, and
//! deleted by the service after it fires (`ActionAfterCompletion: DELETE`).

use async_trait::async_trait;
use aws_sdk_scheduler::Client;
use aws_sdk_scheduler::config::http::HttpResponse;
use aws_sdk_scheduler::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_scheduler::types::{
    ActionAfterCompletion, DeadLetterConfig, FlexibleTimeWindow, FlexibleTimeWindowMode,
    RetryPolicy, ScheduleState, Target,
};
use time::{Duration, OffsetDateTime, macros::format_description};

use super::aws_errors;
use crate::domain::side_effect::FailureClass;
use crate::ports::{Job, Scheduler, SchedulerError};

/// Where the schedules go and what they invoke.
#[derive(Clone, Debug)]
pub struct EventBridgeSettings {
    pub group: String,
    pub target_arn: String,
    pub role_arn: String,
    pub dlq_arn: String,
}

#[derive(Clone)]
pub struct EventBridgeScheduler {
    client: Client,
    settings: EventBridgeSettings,
}

/// How many times EventBridge Scheduler retries delivering to the function, and for how long (its maxima).
const MAX_DELIVERY_RETRIES: i32 = 185;
const MAX_EVENT_AGE_SECONDS: i32 = 86_400;
/// `at()` times in the past are refused by the service: anything sooner than this is moved to it.
const MIN_LEAD: Duration = Duration::seconds(5);

impl EventBridgeScheduler {
    pub fn new(client: Client, settings: EventBridgeSettings) -> Self {
        Self { client, settings }
    }

    /// The `at()` expression for `at`, rounded up to the whole second so a schedule never fires before it.
    pub fn expression(at: OffsetDateTime, now: OffsetDateTime) -> String {
        let at = at.max(now + MIN_LEAD);
        let at = if at.nanosecond() > 0 {
            at.replace_nanosecond(0).expect("zero is valid") + Duration::seconds(1)
        } else {
            at
        };
        let at = at.to_offset(time::UtcOffset::UTC);
        let text = at
            .format(format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]"
            ))
            .expect("formats");
        format!("at({text})")
    }

    /// The schedule's `Input`: the job with its arming (so the fired job knows which schedule it came from),
    /// plus what EventBridge substitutes at each invocation (for the logs; `attempt` counts EventBridge's
    /// deliveries of this one arming, not armings).
    pub fn input(job: &Job) -> String {
        let mut input = serde_json::json!({
            "job": job.job,
            "grant_id": job.grant_id,
            "arming": job.arming,
            "scheduled_time": "<aws.scheduler.scheduled-time>",
            "attempt": "<aws.scheduler.attempt-number>",
        });
        // A notification job names its event (absent for every other kind).
        if let Some(event) = job.event {
            input["event"] = serde_json::json!(event);
        }
        input.to_string()
    }

    fn target(&self, job: &Job) -> Result<Target, SchedulerError> {
        Target::builder()
            .arn(&self.settings.target_arn)
            .role_arn(&self.settings.role_arn)
            .input(Self::input(job))
            .retry_policy(
                RetryPolicy::builder()
                    .maximum_retry_attempts(MAX_DELIVERY_RETRIES)
                    .maximum_event_age_in_seconds(MAX_EVENT_AGE_SECONDS)
                    .build(),
            )
            .dead_letter_config(
                DeadLetterConfig::builder()
                    .arn(&self.settings.dlq_arn)
                    .build(),
            )
            .build()
            .map_err(|e| SchedulerError::Rejected(e.to_string()))
    }
}

fn window() -> Result<FlexibleTimeWindow, SchedulerError> {
    FlexibleTimeWindow::builder()
        .mode(FlexibleTimeWindowMode::Off)
        .build()
        .map_err(|e| SchedulerError::Rejected(e.to_string()))
}

/// A failed call on schedule `name`, classified (`adapters::aws_errors`): throttling (429), 5xx and timeouts
/// are `Unavailable`, client errors `Rejected`.
fn scheduler_error<E>(operation: &str, name: &str, e: SdkError<E, HttpResponse>) -> SchedulerError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let detail = format!("{operation} {name}: {}", aws_errors::describe(&e));
    match aws_errors::classify(&e) {
        FailureClass::Retryable | FailureClass::Conflict => SchedulerError::Unavailable(detail),
        FailureClass::Permanent => SchedulerError::Rejected(detail),
    }
}

#[async_trait]
impl Scheduler for EventBridgeScheduler {
    async fn schedule(&self, job: &Job, at: OffsetDateTime) -> Result<(), SchedulerError> {
        let name = job.schedule_name();
        let expression = Self::expression(at, OffsetDateTime::now_utc());
        let description = format!("Ticketbound {:?} for grant {}", job.job, job.grant_id);
        let created = self
            .client
            .create_schedule()
            .name(&name)
            .group_name(&self.settings.group)
            .schedule_expression(&expression)
            .schedule_expression_timezone("UTC")
            .flexible_time_window(window()?)
            .action_after_completion(ActionAfterCompletion::Delete)
            .state(ScheduleState::Enabled)
            .description(&description)
            .target(self.target(job)?)
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conflict_exception()) =>
            {
                // Same name: this job is already scheduled. Move it to the new time (an upsert).
                self.client
                    .update_schedule()
                    .name(&name)
                    .group_name(&self.settings.group)
                    .schedule_expression(&expression)
                    .schedule_expression_timezone("UTC")
                    .flexible_time_window(window()?)
                    .action_after_completion(ActionAfterCompletion::Delete)
                    .state(ScheduleState::Enabled)
                    .description(&description)
                    .target(self.target(job)?)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| match e.as_service_error() {
                        // Gone between the create and the update (it fired and was deleted): not a
                        // misconfiguration, since the create just found the group; the next try creates it.
                        Some(s) if s.is_resource_not_found_exception() => {
                            SchedulerError::Unavailable(format!(
                                "UpdateSchedule {name}: {}",
                                aws_errors::describe(&e)
                            ))
                        }
                        _ => scheduler_error("UpdateSchedule", &name, e),
                    })
            }
            Err(e) => Err(scheduler_error("CreateSchedule", &name, e)),
        }
    }

    async fn cancel(&self, job: &Job) -> Result<(), SchedulerError> {
        let name = job.schedule_name();
        match self
            .client
            .delete_schedule()
            .name(&name)
            .group_name(&self.settings.group)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(scheduler_error("DeleteSchedule", &name, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::JobKind;
    use time::macros::datetime;

    #[test]
    fn expression_is_utc_and_rounded_up_to_the_second() {
        let now = datetime!(2026-01-01 09:00 UTC);
        assert_eq!(
            EventBridgeScheduler::expression(datetime!(2026-03-01 09:00:00.250 UTC), now),
            "at(2026-03-01T09:00:01)"
        );
        assert_eq!(
            EventBridgeScheduler::expression(datetime!(2026-03-01 10:00:00 +1), now),
            "at(2026-03-01T09:00:00)"
        );
    }

    #[test]
    fn past_times_move_a_few_seconds_ahead() {
        let now = datetime!(2026-01-01 09:00 UTC);
        assert_eq!(
            EventBridgeScheduler::expression(datetime!(2025-01-01 00:00 UTC), now),
            "at(2026-01-01T09:00:05)"
        );
    }

    #[test]
    fn input_is_json_naming_the_job_and_grant() {
        let input =
            EventBridgeScheduler::input(&Job::new(JobKind::Expire, "01JD3AAAAAAAAAAAAAAAAAAAAA"));
        let json: serde_json::Value = serde_json::from_str(&input).unwrap();
        assert_eq!(json["job"], "expire");
        assert_eq!(json["grant_id"], "01JD3AAAAAAAAAAAAAAAAAAAAA");
        let job: Job = serde_json::from_value(json).unwrap();
        assert_eq!(job.schedule_name(), "tb-01JD3AAAAAAAAAAAAAAAAAAAAA-exp");
    }

    #[test]
    fn each_arming_has_its_own_name_and_travels_in_the_input() {
        let third = Job::armed(JobKind::Deprovision, "01JD3AAAAAAAAAAAAAAAAAAAAA", 3);
        let input: serde_json::Value =
            serde_json::from_str(&EventBridgeScheduler::input(&third)).unwrap();
        assert_eq!(input["arming"], 3);
        let fired: Job = serde_json::from_value(input).unwrap();
        assert_eq!(fired, third);
        assert_eq!(fired.schedule_name(), "tb-01JD3AAAAAAAAAAAAAAAAAAAAA-dep-3");
        assert_ne!(fired.schedule_name(), third.with_arming(4).schedule_name());
        let longest = third.with_arming(u32::MAX).schedule_name();
        assert!(
            longest.len() <= 64
                && longest
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "{longest}"
        );
    }

    #[test]
    fn an_input_from_before_armings_were_numbered_is_arming_zero() {
        // What schedules in deployed stacks carry: no `arming` field.
        let old = serde_json::json!({
            "job": "deprovision",
            "grant_id": "01JD3AAAAAAAAAAAAAAAAAAAAA",
            "scheduled_time": "2026-03-01T09:00:00Z",
            "attempt": "1",
        });
        let job: Job = serde_json::from_value(old).unwrap();
        assert_eq!(job.arming, 0);
        assert_eq!(job.schedule_name(), "tb-01JD3AAAAAAAAAAAAAAAAAAAAA-dep");
    }
}
