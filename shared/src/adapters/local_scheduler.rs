//! The in-process scheduler for `ticketbound-local`: one tokio timer per schedule, each also written to the
//! embedded database, so a restart re-arms every pending time bound and retry (and runs at once those whose
//! time passed while the server was down).
//!
//! A fired timer hands its job to a fresh task before running it, so a job that cancels or re-arms its own
//! schedule (as the side-effect retries do) never aborts itself.
//!
//! Schedules follow the EventBridge model: one row and timer per arming, named by [`Job::schedule_name`], so a
//! job re-arming itself adds the next arming and deletes the one that fired (see "Armings" in
//! `service/lifecycle.rs`). A job whose run fails with a retryable error is delivered again under the same
//! name, as EventBridge and Lambda retry the same invocation of one arming: that is a redelivery, not a
//! re-arming, and nothing here deletes a schedule after it fires except the success of that very run.

use async_trait::async_trait;
use rusqlite::params;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::embedded::EmbeddedStore;
pub use crate::ports::JobRunner;
use crate::ports::{Job, Scheduler, SchedulerError, StoreError};

/// How long a job that failed with a retryable error waits before it runs again.
const RETRY_AFTER: time::Duration = time::Duration::seconds(5);

#[derive(Clone)]
pub struct LocalScheduler {
    inner: Arc<Inner>,
}

struct Inner {
    store: EmbeddedStore,
    timers: Mutex<HashMap<String, (u64, tokio::task::AbortHandle)>>,
    generation: AtomicU64,
    runner: OnceLock<Arc<dyn JobRunner>>,
}

impl LocalScheduler {
    /// A scheduler persisting to `store`'s database. Nothing fires until [`LocalScheduler::start`].
    pub fn new(store: EmbeddedStore) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                timers: Mutex::new(HashMap::new()),
                generation: AtomicU64::new(0),
                runner: OnceLock::new(),
            }),
        }
    }

    /// Binds the runner and arms every stored schedule. Returns how many were armed.
    ///
    /// First it releases the side-effect leases the previous process held (it is gone: only one server uses a
    /// data directory) and runs at once the side effects that were in flight or never finished a first attempt,
    /// instead of waiting for the lease and the safety-net schedule (a minute) after a crash.
    pub async fn start(&self, runner: Arc<dyn JobRunner>) -> Result<usize, StoreError> {
        let _ = self.inner.runner.set(runner);
        let resume = self.inner.store.release_leases().await?;
        let rows: Vec<(String, String, String)> = self
            .inner
            .store
            .with(|conn| {
                let mut stmt = conn
                    .prepare("SELECT name, at, job FROM schedules")
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                Ok(rows)
            })
            .await?;
        let mut armed = 0;
        for (name, at, job) in rows {
            match (
                OffsetDateTime::parse(&at, &Rfc3339),
                serde_json::from_str::<Job>(&job),
            ) {
                (Ok(at), Ok(job)) => {
                    self.arm(name, job, at);
                    armed += 1;
                }
                _ => tracing::error!(schedule = %name, "unreadable stored schedule skipped"),
            }
        }
        if !resume.is_empty() {
            tracing::info!(
                side_effects = resume.len(),
                "resuming side effects left unfinished by a stopped server"
            );
        }
        let now = OffsetDateTime::now_utc();
        for job in resume {
            // The live arming, moved to now (an upsert of its row and timer, so still one schedule).
            self.schedule(&job, now)
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        }
        Ok(armed)
    }

    /// The schedules currently stored (name and time), for tests and diagnostics.
    pub async fn pending(&self) -> Result<Vec<(String, OffsetDateTime)>, StoreError> {
        self.inner
            .store
            .with(|conn| {
                let mut stmt = conn
                    .prepare("SELECT name, at FROM schedules ORDER BY at")
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                Ok(rows
                    .into_iter()
                    .filter_map(|(n, at)| Some((n, OffsetDateTime::parse(&at, &Rfc3339).ok()?)))
                    .collect())
            })
            .await
    }

    fn arm(&self, name: String, job: Job, at: OffsetDateTime) {
        let Some(runner) = self.inner.runner.get().cloned() else {
            return;
        };
        let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed);
        let this = self.clone();
        let timer_name = name.clone();
        let at_text = at.format(&Rfc3339).unwrap_or_default();
        let task = tokio::spawn(async move {
            let wait = at - OffsetDateTime::now_utc();
            if wait.is_positive() {
                tokio::time::sleep(wait.unsigned_abs()).await;
            }
            {
                let mut timers = this.inner.timers.lock().expect("timer map lock");
                if timers
                    .get(&timer_name)
                    .is_some_and(|(g, _)| *g == generation)
                {
                    timers.remove(&timer_name);
                }
            }
            // Detached: the job may cancel or re-arm its own schedule.
            tokio::spawn(async move {
                match runner.run_job(&job).await {
                    Ok(()) => {
                        let _ = this
                            .inner
                            .store
                            .with(move |conn| {
                                conn.execute(
                                    "DELETE FROM schedules WHERE name = ?1 AND at = ?2",
                                    params![timer_name, at_text],
                                )
                                .map_err(|e| StoreError::Unavailable(e.to_string()))
                            })
                            .await;
                    }
                    Err(error) => {
                        tracing::warn!(?job, %error, "job failed; retrying shortly");
                        let _ = this
                            .schedule(&job, OffsetDateTime::now_utc() + RETRY_AFTER)
                            .await;
                    }
                }
            });
        });
        let mut timers = self.inner.timers.lock().expect("timer map lock");
        if let Some((_, old)) = timers.insert(name, (generation, task.abort_handle())) {
            old.abort();
        }
    }
}

#[async_trait]
impl Scheduler for LocalScheduler {
    async fn schedule(&self, job: &Job, at: OffsetDateTime) -> Result<(), SchedulerError> {
        let name = job.schedule_name();
        let (row_name, at_text, job_text) = (
            name.clone(),
            at.format(&Rfc3339)
                .map_err(|e| SchedulerError::Unavailable(e.to_string()))?,
            serde_json::to_string(job).map_err(|e| SchedulerError::Unavailable(e.to_string()))?,
        );
        self.inner
            .store
            .with(move |conn| {
                conn.execute(
                    "INSERT INTO schedules (name, at, job) VALUES (?1, ?2, ?3) ON CONFLICT(name) DO UPDATE SET at = excluded.at, job = excluded.job",
                    params![row_name, at_text, job_text],
                )
                .map_err(|e| StoreError::Unavailable(e.to_string()))
            })
            .await
            .map_err(|e| SchedulerError::Unavailable(e.to_string()))?;
        self.arm(name, job.clone(), at);
        Ok(())
    }

    async fn cancel(&self, job: &Job) -> Result<(), SchedulerError> {
        let name = job.schedule_name();
        if let Some((_, timer)) = self
            .inner
            .timers
            .lock()
            .expect("timer map lock")
            .remove(&name)
        {
            timer.abort();
        }
        self.inner
            .store
            .with(move |conn| {
                conn.execute("DELETE FROM schedules WHERE name = ?1", [name])
                    .map_err(|e| StoreError::Unavailable(e.to_string()))
            })
            .await
            .map_err(|e| SchedulerError::Unavailable(e.to_string()))?;
        Ok(())
    }
}
