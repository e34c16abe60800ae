//! How a run ends or pauses: a Jira error becomes a wait, a retry, an
//! exhausted budget or a failure. Rules:
//!
//! * A 429 (or the governor holding a call back) is a wait, never a failure
//!   and never a use of the retry budget (only its own, larger, throttle
//!   budget).
//! * A transient failure (5xx, timeout, dropped connection) backs off with
//!   jitter and counts; at the budget the job is `EXHAUSTED`.
//! * A permanent failure ends the job `FAILED`, and with it the jobs merged
//!   into it (their changes were never sent).
//! * Every state write is fenced: a refused one leaves the job to the
//!   worker that holds its lease now.

use super::{Executor, Held, short_wait};
use crate::app::AppError;
use crate::app::governor::Pace;
use crate::domain::audit::{AuditEntry, Stage};
use crate::domain::job::{JobEvent, JobState};
use crate::domain::response::summarize;
use crate::ports::{
    BatchStore, Clock, JobRecord, JobStore, Leases, LinkStore, Tracker, TrackerError,
};
use std::time::Duration;

/// Which call failed: the step's own, or the read that looks for the
/// effect of an earlier attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Call {
    Step,
    Reconcile,
}

impl<S, T, C, G> Executor<'_, S, T, C, G>
where
    S: JobStore + LinkStore + Leases + BatchStore,
    T: Tracker,
    C: Clock,
    G: Pace,
{
    pub(super) async fn on_error(
        &self,
        job: &mut JobRecord,
        held: &Held,
        step: &(dyn std::fmt::Display + Sync),
        err: TrackerError,
        failed: Call,
    ) -> Result<super::Disposition, AppError> {
        let now = self.clock.now();
        let retry = &self.config.retry;
        if failed == Call::Step && !err.may_have_taken_effect() {
            // Jira answered the step itself and did nothing: no effect to
            // look for. (A failed reconcile says nothing about the step: an
            // earlier attempt may still have landed.)
            job.step_started = None;
        }
        match err {
            TrackerError::Held { wait, reason } => {
                // The governor's wait, not Jira's refusal: no budget is used.
                let wait = wait + Duration::from_millis(fastrand::u64(0..250));
                let entry = self
                    .audit(
                        Stage::Jira,
                        format!("held: {reason}; waiting {} ms", wait.as_millis()),
                    )
                    .intent(step.to_string());
                self.defer(job, held, wait, entry).await
            }
            TrackerError::Throttled { status, signal } => {
                job.throttles += 1;
                let summary = summarize(Some(status), &signal, None);
                let reason = summary
                    .reason
                    .clone()
                    .unwrap_or_else(|| "no reason given".into());
                job.last_error = Some(format!("throttled by Jira ({reason})"));
                if job.throttles > retry.max_throttles {
                    let entry = self
                        .audit(Stage::Jira, "throttled too often; retry budget spent")
                        .intent(step.to_string())
                        .response(summary);
                    return self.exhaust(job, held, entry).await;
                }
                let wait = retry.throttle_delay(
                    &signal,
                    now,
                    job.throttles.saturating_sub(1),
                    fastrand::f64(),
                );
                let entry = self
                    .audit(
                        Stage::Jira,
                        format!("throttled; waiting {} ms", wait.as_millis()),
                    )
                    .intent(step.to_string())
                    .response(summary);
                self.defer(job, held, wait, entry).await
            }
            TrackerError::Transient {
                status,
                message,
                signal,
            } => {
                job.attempts += 1;
                job.last_error = Some(message.clone());
                let summary = summarize(status, &signal, Some(message));
                if job.attempts >= retry.max_attempts {
                    let entry = self
                        .audit(Stage::Jira, "transient failures; retry budget spent")
                        .intent(step.to_string())
                        .response(summary);
                    return self.exhaust(job, held, entry).await;
                }
                let backoff = retry.transient_delay(job.attempts, fastrand::f64());
                let wait = signal
                    .wait_hint(now)
                    .map_or(backoff, |hint| hint.max(backoff));
                let entry = self
                    .audit(
                        Stage::Jira,
                        format!(
                            "transient failure; retry {} in {} ms",
                            job.attempts,
                            wait.as_millis()
                        ),
                    )
                    .intent(step.to_string())
                    .response(summary);
                self.defer(job, held, wait, entry).await
            }
            TrackerError::Permanent { status, message } => {
                let summary = summarize(
                    (status != 0).then_some(status),
                    &Default::default(),
                    Some(message.clone()),
                );
                job.last_error = Some(message);
                let entry = self
                    .audit(Stage::Jira, "permanent failure")
                    .intent(step.to_string())
                    .response(summary)
                    .state(JobState::Failed);
                if self
                    .transition(job, held, JobState::Running, JobEvent::Fail, entry)
                    .await?
                {
                    self.settle_merged(job, held).await?;
                }
                Ok(super::Disposition::Done)
            }
        }
    }

    pub(super) async fn fail(
        &self,
        job: &mut JobRecord,
        held: &Held,
        message: String,
    ) -> Result<super::Disposition, AppError> {
        let entry = self
            .audit(Stage::Outcome, message.clone())
            .state(JobState::Failed);
        job.last_error = Some(message);
        if self
            .transition(job, held, JobState::Running, JobEvent::Fail, entry)
            .await?
        {
            tracing::warn!(job_id = %job.id, kind = %job.kind, source = %job.source_system, error = job.last_error.as_deref().unwrap_or_default(), "job FAILED");
            self.settle_merged(job, held).await?;
        }
        Ok(super::Disposition::Done)
    }

    /// The budget is spent. Jobs merged into this one stay `MERGED`: a
    /// re-run of this job carries them again.
    pub(super) async fn exhaust(
        &self,
        job: &mut JobRecord,
        held: &Held,
        entry: AuditEntry,
    ) -> Result<super::Disposition, AppError> {
        let reason = entry.outcome.clone();
        if self
            .transition(
                job,
                held,
                JobState::Running,
                JobEvent::Exhaust,
                entry.state(JobState::Exhausted),
            )
            .await?
        {
            tracing::warn!(job_id = %job.id, kind = %job.kind, source = %job.source_system, %reason, "job EXHAUSTED: its retry budget is spent");
        }
        Ok(super::Disposition::Done)
    }

    pub(super) async fn defer(
        &self,
        job: &mut JobRecord,
        held: &Held,
        wait: Duration,
        entry: AuditEntry,
    ) -> Result<super::Disposition, AppError> {
        self.defer_noting(job, held, wait, Some(entry)).await
    }

    /// `defer`, with an audit entry only when there is something new to
    /// say (a wait already recorded is not recorded again at each look).
    pub(super) async fn defer_noting(
        &self,
        job: &mut JobRecord,
        held: &Held,
        wait: Duration,
        entry: Option<AuditEntry>,
    ) -> Result<super::Disposition, AppError> {
        // The wait lives in the record: any message for the job that comes
        // sooner (a duplicate, a recycled one) goes back for the rest of it.
        job.not_before = Some(self.clock.now().plus(wait));
        if !self
            .transition_noting(
                job,
                held,
                JobState::Running,
                JobEvent::Defer,
                entry.map(|e| e.state(JobState::Waiting)),
            )
            .await?
        {
            // Another worker holds the job now: its message returns soon
            // and finds that worker's state.
            return Ok(super::Disposition::RetryAfter(short_wait()));
        }
        Ok(super::Disposition::RetryAfter(wait))
    }

    /// Applies `event` to the job if it is still in `from` and the lease
    /// still carries this run's token; false if another writer moved it
    /// first, or the lease was taken over.
    pub(super) async fn transition(
        &self,
        job: &mut JobRecord,
        held: &Held,
        from: JobState,
        event: JobEvent,
        entry: AuditEntry,
    ) -> Result<bool, AppError> {
        self.transition_noting(job, held, from, event, Some(entry))
            .await
    }

    pub(super) async fn transition_noting(
        &self,
        job: &mut JobRecord,
        held: &Held,
        from: JobState,
        event: JobEvent,
        entry: Option<AuditEntry>,
    ) -> Result<bool, AppError> {
        let to = from.apply(event)?;
        let before = job.state;
        job.state = to;
        job.updated_at = self.clock.now();
        let written = self
            .store
            .update_fenced(job, from, entry.as_ref(), Some(&held.fence))
            .await?;
        if !written {
            job.state = before;
            tracing::info!(job_id = %job.id, from = %from, to = %to, "state write refused: another worker holds the job now (fencing did its job; this run stops)");
        }
        Ok(written)
    }

    /// Writes the job's progress (start marks) under the fence; false when
    /// refused, and then the run stops before its next call.
    pub(super) async fn save_progress(
        &self,
        job: &JobRecord,
        held: &Held,
    ) -> Result<bool, AppError> {
        Ok(self
            .store
            .update_fenced(job, JobState::Running, None, Some(&held.fence))
            .await?)
    }
}
