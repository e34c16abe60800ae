//! What an operator does to one job: run it again, or cancel it. Both are
//! conditional moves on the state the operator saw (a worker or a decider
//! that moved the job first wins, and the operator is told), recorded in
//! the job's trail with the operator's name; the same calls serve the CLI,
//! the HTTP routes and every store.

use super::AppError;
use super::ingest::enqueue;
use crate::domain::approval::{Decided, Decision};
use crate::domain::audit::{AuditEntry, Stage};
use crate::domain::followup::OPERATOR_RERUN;
use crate::domain::ids::JobId;
use crate::domain::job::{JobEvent, JobState};
use crate::ports::{ApprovalStore, Clock, JobRecord, JobStore, WorkQueue};

pub struct Operations<'a, S, Q, C> {
    pub store: &'a S,
    pub queue: &'a Q,
    pub clock: &'a C,
}

/// What `retry` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Retried {
    Queued(Box<JobRecord>),
    /// Only FAILED and EXHAUSTED work runs again.
    NotRetryable(JobState),
    NotFound,
}

/// What `cancel` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Cancelled {
    /// The job, and the merged jobs that rode in it.
    Cancelled {
        job: Box<JobRecord>,
        merged: Vec<JobId>,
        /// The approval request it waited on, closed because no job of it
        /// waits any more.
        closed_approval: Option<String>,
    },
    /// Only QUEUED, WAITING and PENDING_APPROVAL work can be cancelled
    /// (a running job's call may be in Jira already).
    NotCancellable(JobState),
    NotFound,
}

/// The states `cancel` ends.
pub const CANCELLABLE: [JobState; 3] = [
    JobState::Queued,
    JobState::Waiting,
    JobState::PendingApproval,
];

impl<S, Q, C> Operations<'_, S, Q, C>
where
    S: JobStore + ApprovalStore,
    Q: WorkQueue,
    C: Clock,
{
    /// A fresh attempt under the same job: budgets reset, its recovery
    /// point kept (steps already in Jira are not repeated; one whose answer
    /// was lost is reconciled first), recorded with who asked.
    pub async fn retry(&self, id: &JobId, who: &str) -> Result<Retried, AppError> {
        let Some(job) = self.store.job(id).await? else {
            return Ok(Retried::NotFound);
        };
        let from = job.state;
        if from.apply(JobEvent::Requeue).is_err() {
            return Ok(Retried::NotRetryable(from));
        }
        let outcome = format!("{OPERATOR_RERUN} {who} (was {from})");
        match requeue(self.store, self.queue, self.clock, job, who, &outcome).await? {
            Some(job) => {
                tracing::info!(job_id = %id, by = who, was = %from, "job re-run by an operator");
                Ok(Retried::Queued(Box::new(job)))
            }
            None => {
                let now = self.store.job(id).await?.map_or(from, |j| j.state);
                Ok(Retried::NotRetryable(now))
            }
        }
    }

    /// Ends work that has not started a call: the job becomes CANCELLED
    /// with the reason, the jobs merged into it follow, and an approval
    /// request none of whose jobs waits any more is closed (denied, in the
    /// operator's name) so nobody is asked about it.
    pub async fn cancel(&self, id: &JobId, who: &str, reason: &str) -> Result<Cancelled, AppError> {
        let Some(mut job) = self.store.job(id).await? else {
            return Ok(Cancelled::NotFound);
        };
        let from = job.state;
        if !CANCELLABLE.contains(&from) {
            return Ok(Cancelled::NotCancellable(from));
        }
        let why = format!("cancelled by {who}: {reason}");
        job.state = from.apply(JobEvent::Cancel)?;
        job.last_error = Some(why.clone());
        job.updated_at = self.clock.now();
        let entry = AuditEntry::new(self.clock.now(), Stage::Outcome, who, why.clone())
            .state(JobState::Cancelled);
        if !self.store.update(&job, from, Some(&entry)).await? {
            let now = self.store.job(id).await?.map_or(from, |j| j.state);
            return Ok(Cancelled::NotCancellable(now));
        }
        tracing::info!(job_id = %id, by = who, was = %from, reason, "job cancelled by an operator");
        let merged = self.cancel_merged(&job, who).await?;
        let closed_approval = if from == JobState::PendingApproval {
            self.close_approval(&job, who).await?
        } else {
            None
        };
        Ok(Cancelled::Cancelled {
            job: Box::new(job),
            merged,
            closed_approval,
        })
    }

    /// Jobs whose changes were to ride in the cancelled one end with it.
    async fn cancel_merged(&self, carrier: &JobRecord, who: &str) -> Result<Vec<JobId>, AppError> {
        let mut cancelled = Vec::new();
        for mut other in self.store.entity_jobs(&carrier.link).await? {
            if other.state != JobState::Merged || other.merged_into.as_ref() != Some(&carrier.id) {
                continue;
            }
            let why = format!("carried by job {}, which {who} cancelled", carrier.id);
            other.state = JobState::Merged.apply(JobEvent::Cancel)?;
            other.last_error = Some(why.clone());
            other.updated_at = self.clock.now();
            let entry = AuditEntry::new(self.clock.now(), Stage::Outcome, who, why)
                .state(JobState::Cancelled);
            if self
                .store
                .update(&other, JobState::Merged, Some(&entry))
                .await?
            {
                cancelled.push(other.id);
            }
        }
        Ok(cancelled)
    }

    /// Closes the job's request when none of its jobs waits for it now.
    async fn close_approval(&self, job: &JobRecord, who: &str) -> Result<Option<String>, AppError> {
        let Some(approval) = self.store.approval_for_job(&job.id).await? else {
            return Ok(None);
        };
        if approval.decided.is_some() {
            return Ok(None);
        }
        for other in approval.jobs().filter(|j| **j != job.id) {
            if let Some(o) = self.store.job(other).await?
                && o.state == JobState::PendingApproval
            {
                return Ok(None);
            }
        }
        let closed = Decided {
            decision: Decision::Deny,
            by: format!("{who} (cancelled)"),
            at: self.clock.now(),
        };
        if self.store.decide(&approval.id, &closed).await? {
            self.store.mark_applied(&approval.id).await?;
            return Ok(Some(approval.id.to_string()));
        }
        Ok(None)
    }
}

/// The one move back to the queue, for an operator's retry and the
/// follow-ups' automatic re-runs: a fresh attempt under the same job
/// (budgets reset, waits and merge forgotten, the recovery point kept),
/// conditional on the state it was read in, then sent. The outbox flag goes
/// down first: a crash between the state change and the send leaves a
/// QUEUED job the outbox sweep sends. `None` when another writer moved it.
pub(crate) async fn requeue<S, Q, C>(
    store: &S,
    queue: &Q,
    clock: &C,
    mut job: JobRecord,
    actor: &str,
    outcome: &str,
) -> Result<Option<JobRecord>, AppError>
where
    S: JobStore,
    Q: WorkQueue,
    C: Clock,
{
    let from = job.state;
    let to = from.apply(JobEvent::Requeue)?;
    store.reset_outbox(&job).await?;
    job.enqueued = false;
    job.state = to;
    job.attempts = 0;
    job.throttles = 0;
    job.last_error = None;
    job.not_before = None;
    // A merged job that failed with its carrier runs on its own now.
    job.merged_into = None;
    job.updated_at = clock.now();
    let entry = AuditEntry::new(clock.now(), Stage::Queue, actor, outcome).state(to);
    if !store.update(&job, from, Some(&entry)).await? {
        return Ok(None);
    }
    enqueue(store, queue, &job).await?;
    Ok(Some(job))
}
