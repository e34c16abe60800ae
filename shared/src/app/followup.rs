//! Follow-ups for jobs that ended badly (rules in
//! [`crate::domain::followup`]): notify people of exhausted work, file a
//! "Rate limit exceeded" task, re-run it after a window; compensate a
//! failure that left Jira half-updated. Run by the sweep (`serve`'s worker
//! loop, the executor's scheduled invocation); each follow-up leaves its
//! marker in the job's audit trail so it happens once, and the tasks and
//! comments it raises are ordinary jobs — governed, deduplicated, audited.

use super::AppError;
use super::ingest::{Ingest, IngestOutcome};
use super::operations::requeue;
use crate::domain::audit::{AuditEntry, Stage};
use crate::domain::followup::{
    COMPENSATED, Ended, FollowUp, FollowUpPolicy, REPORTED, RERUN, TICKET_FILED, plan,
};
use crate::domain::ids::JobId;
use crate::domain::job::JobState;
use crate::domain::notice::{ExhaustedNotice, Notice};
use crate::domain::policy::Policy;
use crate::ports::{Clock, IngestStore, JobRecord, Notifier, WorkQueue};
use serde_json::json;

/// The source system of the jobs tollgate raises itself.
pub const INTERNAL_SOURCE: &str = "tollgate";

pub struct FollowUps<'a, S, Q, C> {
    pub store: &'a S,
    pub queue: &'a Q,
    pub clock: &'a C,
    pub policy: &'a FollowUpPolicy,
}

impl<S, Q, C> FollowUps<'_, S, Q, C>
where
    S: IngestStore,
    Q: WorkQueue,
    C: Clock,
{
    /// One pass over exhausted and failed jobs. `site_paused`: the Jira site
    /// refuses everything now (its task would be refused too). Returns how
    /// many follow-ups it did.
    pub async fn sweep<N: Notifier>(
        &self,
        notifier: &N,
        site_paused: bool,
    ) -> Result<usize, AppError> {
        let mut done = 0;
        let now = self.clock.now();
        for state in [JobState::Exhausted, JobState::Failed] {
            for job in self.store.list(Some(state), 200).await? {
                // Only a failure that changed Jira can need a follow-up: skip
                // the rest without reading their trails.
                if job.state == JobState::Failed && (job.steps_done == 0 || job.issue_key.is_none())
                {
                    continue;
                }
                let trail = self.store.audit_trail(&job.id).await?;
                let outcomes: Vec<&str> = trail.iter().map(|e| e.outcome.as_str()).collect();
                let ended = Ended {
                    state: job.state,
                    since: job.updated_at,
                    steps_done: job.steps_done,
                    has_issue: job.issue_key.is_some(),
                    internal: job.source_system.as_str() == INTERNAL_SOURCE,
                    outcomes: &outcomes,
                };
                for step in plan(&ended, now, site_paused, self.policy) {
                    match self.apply(&job, step, &outcomes, notifier).await {
                        Ok(true) => done += 1,
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(job_id = %job.id, step = %step, error = %e, "follow-up failed; the next sweep retries it")
                        }
                    }
                }
            }
        }
        Ok(done)
    }

    async fn apply<N: Notifier>(
        &self,
        job: &JobRecord,
        step: FollowUp,
        outcomes: &[&str],
        notifier: &N,
    ) -> Result<bool, AppError> {
        match step {
            FollowUp::Notify => {
                let reruns = outcomes.iter().filter(|o| o.starts_with(RERUN)).count() as u32;
                let rerun_at = (reruns < self.policy.max_reruns)
                    .then(|| job.updated_at.plus(self.policy.rerun_after).to_rfc3339());
                let notice = Notice::JobExhausted(ExhaustedNotice {
                    job_id: job.id.to_string(),
                    operation: job.kind.as_str().into(),
                    source_system: job.source_system.to_string(),
                    external_id: job.external_id.to_string(),
                    issue_key: job.issue_key.as_ref().map(ToString::to_string),
                    last_error: job.last_error.clone(),
                    rerun_at,
                });
                if let Err(e) = notifier.notify(&notice).await {
                    tracing::warn!(job_id = %job.id, error = %e, "exhaustion notice not sent; the next sweep retries it");
                    return Ok(false);
                }
                self.mark(&job.id, REPORTED.to_string()).await?;
                Ok(true)
            }
            FollowUp::Ticket => {
                let Some(project) = &self.policy.ticket_project else {
                    return Ok(false);
                };
                let n = outcomes
                    .iter()
                    .filter(|o| o.starts_with(TICKET_FILED))
                    .count();
                let event = json!({
                    "sourceSystem": INTERNAL_SOURCE,
                    "externalId": format!("exhausted-{}-{n}", job.id),
                    "desiredOperation": "create",
                    "projectKey": project,
                    "issueType": "Task",
                    "summary": format!("Rate limit exceeded: {} from {} {}", job.kind.as_str(), job.source_system, job.external_id),
                    "description": format!(
                        "tollgate gave up on job {} after its retry budget was spent.\nLast error: {}\nTarget: {}\nSee: tollgate jobs show {}",
                        job.id,
                        job.last_error.as_deref().unwrap_or("none recorded"),
                        job.issue_key.as_ref().map_or("no issue yet".to_string(), ToString::to_string),
                        job.id
                    ),
                    "labels": ["tollgate-exhausted"],
                    "priority": "bulk"
                });
                let ticket = self.raise(&event).await?;
                self.mark(&job.id, format!("{TICKET_FILED} (job {ticket})"))
                    .await?;
                Ok(true)
            }
            FollowUp::Rerun { nth } => {
                let outcome = format!("{RERUN} ({nth} of {})", self.policy.max_reruns);
                Ok(self
                    .requeue_as(&job.id, "tollgate", &outcome)
                    .await?
                    .is_some())
            }
            FollowUp::Compensate => {
                let Some(issue) = &job.issue_key else {
                    return Ok(false);
                };
                let event = json!({
                    "sourceSystem": INTERNAL_SOURCE,
                    "externalId": format!("compensate-{}", job.id),
                    "desiredOperation": "comment",
                    "issueKey": issue.as_str(),
                    "comment": format!(
                        "Automation incomplete; pending retry. tollgate job {} ({} from {} {}) stopped after {} of its steps: {}",
                        job.id, job.kind.as_str(), job.source_system, job.external_id, job.steps_done,
                        job.last_error.as_deref().unwrap_or("no error recorded")
                    )
                });
                let comment = self.raise(&event).await?;
                self.mark(&job.id, format!("{COMPENSATED} (job {comment})"))
                    .await?;
                Ok(true)
            }
        }
    }

    /// Admits a job tollgate raises itself; its id.
    async fn raise(&self, event: &serde_json::Value) -> Result<JobId, AppError> {
        let ingest = Ingest {
            store: self.store,
            queue: self.queue,
            clock: self.clock,
            secrets: &[],
            // tollgate's own follow-ups are not held for approval.
            policy: &Policy::default(),
        };
        match ingest.admit_internal(event).await? {
            IngestOutcome::Accepted { job_id, .. } | IngestOutcome::Conflict { job_id, .. } => {
                Ok(job_id)
            }
            other => Err(AppError::Store(crate::ports::StoreError::Corrupt(format!(
                "a follow-up event was refused: {other:?}"
            )))),
        }
    }

    async fn mark(&self, id: &JobId, outcome: String) -> Result<(), AppError> {
        let entry = AuditEntry::new(self.clock.now(), Stage::Outcome, "tollgate", outcome);
        Ok(self.store.append_audit(id, &entry).await?)
    }

    /// An automatic re-run of an exhausted job (see [`super::operations::requeue`]).
    async fn requeue_as(
        &self,
        id: &JobId,
        actor: &str,
        outcome: &str,
    ) -> Result<Option<JobRecord>, AppError> {
        match self.store.job(id).await? {
            Some(job) if job.state == JobState::Exhausted => {
                requeue(self.store, self.queue, self.clock, job, actor, outcome).await
            }
            _ => Ok(None),
        }
    }
}
