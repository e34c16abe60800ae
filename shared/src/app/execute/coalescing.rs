//! Coalescing and carriers: before its first call, a run takes the pending
//! work on its entity that has not touched Jira and carries it. Rules:
//!
//! * Pending means: no step done or started, not paused, not itself a
//!   carrier of other jobs, and `QUEUED`, `WAITING` — or `RUNNING` with a
//!   dead worker: this run holds the entity's lease, so whoever ran it last
//!   has lost it (and is fenced out).
//! * Merged jobs move to `MERGED` (non-terminal) with `mergedInto`; the
//!   carrier's set is fixed from its first call on, so every attempt runs
//!   the same plan.
//! * Each field of the composed edit keeps the revision (job) its value
//!   came from: the newest job that set it.
//! * When the carrier ends, so do they: `SUPERSEDED` when it succeeded,
//!   `FAILED` with its reason when it failed. An exhausted carrier keeps
//!   them `MERGED` (its re-run carries them again). A merged job's own
//!   message keeps looking at its carrier until then, so a crash between
//!   the carrier's end and its settling loses nothing.

use super::{Disposition, Executor, Held, Plan, read_event};
use crate::app::AppError;
use crate::app::governor::Pace;
use crate::domain::audit::Stage;
use crate::domain::coalesce::{coalesce, mergeable};
use crate::domain::event::{Event, OperationKind};
use crate::domain::ids::{IssueKey, JobId};
use crate::domain::job::{JobEvent, JobState};
use crate::domain::plan::{LinkState, Step, plan};
use crate::ports::{
    BatchStore, Clock, FieldRevisions, JobRecord, JobStore, Leases, LinkStore, Tracker,
};
use std::time::Duration;

/// How often a merged job whose carrier waits for a re-run looks again.
const EXHAUSTED_CARRIER_POLL: Duration = Duration::from_secs(300);

impl<S, T, C, G> Executor<'_, S, T, C, G>
where
    S: JobStore + LinkStore + Leases + BatchStore,
    T: Tracker,
    C: Clock,
    G: Pace,
{
    /// The job's plan with the work merged into it.
    pub(super) async fn coalesced(
        &self,
        job: &JobRecord,
        held: &Held,
        event: &Event,
        link: &LinkState,
        own: Vec<Step>,
    ) -> Result<Plan, AppError> {
        let alone = |steps: Vec<Step>| {
            let revisions = edit_revisions(&[(job.id.clone(), steps.clone())]);
            Plan { steps, revisions }
        };
        // The issue this run acts on, and which other jobs' targets are
        // that same issue: the entity's issue (by external id, or named by
        // key), the one this run creates (by external id only), or an issue
        // named by key (by that key only).
        let creates = matches!(own.first(), Some(Step::CreateIssue { .. }));
        let (placeholder, by_link, by_key) = match (link, &event.issue_key) {
            (LinkState::Linked(key), None) => (key.clone(), true, Some(key.clone())),
            (LinkState::Linked(key), Some(named)) if named == key => {
                (key.clone(), true, Some(key.clone()))
            }
            (LinkState::Unlinked, None) if creates => {
                (IssueKey::from_stored(String::new()), true, None)
            }
            (LinkState::Unlinked, Some(named)) if !creates => {
                (named.clone(), false, Some(named.clone()))
            }
            _ => return Ok(alone(own)),
        };
        if !mergeable_carrier(job.kind) {
            return Ok(alone(own));
        }
        let same_target = |other: &Option<IssueKey>| match other {
            None => by_link,
            Some(k) => by_key.as_ref() == Some(k),
        };
        let fresh = job.steps_done == 0 && job.step_started.is_none();
        let entity = self.store.entity_jobs(&job.link).await?;
        let carriers: Vec<&JobId> = entity
            .iter()
            .filter_map(|j| j.merged_into.as_ref())
            .collect();
        let mut plans: Vec<(JobId, Vec<Step>)> = vec![(job.id.clone(), own.clone())];
        let mut taken = Vec::new();
        for other in &entity {
            if other.id == job.id {
                continue;
            }
            let already = other.merged_into.as_ref() == Some(&job.id);
            let pending = fresh
                && other.merged_into.is_none()
                && matches!(
                    other.state,
                    JobState::Queued | JobState::Waiting | JobState::Running
                )
                && other.steps_done == 0
                && other.step_started.is_none()
                // A carrier answers for its own merged jobs.
                && !carriers.contains(&&other.id);
            if !already && !pending {
                continue;
            }
            let Ok(other_event) = read_event(&other.payload) else {
                continue;
            };
            if !same_target(&other_event.issue_key) {
                continue;
            }
            let Ok(steps) = plan(
                &other_event,
                &other.link,
                &LinkState::Linked(placeholder.clone()),
            ) else {
                continue;
            };
            if !mergeable(other.kind, &steps) {
                continue;
            }
            if !already {
                if self.batch_paused(other).await? {
                    continue;
                }
                let mut merged = other.clone();
                merged.merged_into = Some(job.id.clone());
                let entry = self
                    .audit(
                        Stage::Dedup,
                        format!(
                            "merged into job {}, whose run carries its changes{}",
                            job.id,
                            if other.state == JobState::Running {
                                " (its last worker is gone)"
                            } else {
                                ""
                            }
                        ),
                    )
                    .state(JobState::Merged);
                if !self
                    .transition(&mut merged, held, other.state, JobEvent::Merge, entry)
                    .await?
                {
                    continue;
                }
                taken.push(other.id.to_string());
            }
            plans.push((other.id.clone(), steps));
        }
        if !taken.is_empty() {
            let entry = self.audit(
                Stage::Dedup,
                format!("carries the changes of {}", taken.join(", ")),
            );
            self.store.append_audit(&job.id, &entry).await?;
        }
        if plans.len() == 1 {
            return Ok(alone(own));
        }
        plans.sort_by(|a, b| a.0.cmp(&b.0));
        let revisions = edit_revisions(&plans);
        let plans: Vec<Vec<Step>> = plans.into_iter().map(|(_, p)| p).collect();
        Ok(Plan {
            steps: coalesce(&plans),
            revisions,
        })
    }

    /// Ends the jobs this one carried, as it ended.
    pub(super) async fn settle_merged(
        &self,
        carrier: &JobRecord,
        held: &Held,
    ) -> Result<(), AppError> {
        for other in self.store.entity_jobs(&carrier.link).await? {
            if other.merged_into.as_ref() != Some(&carrier.id) || other.state != JobState::Merged {
                continue;
            }
            let mut other = other;
            if let Some((event, entry)) = self.carrier_outcome(carrier, &mut other) {
                other.state = JobState::Merged.apply(event)?;
                other.updated_at = self.clock.now();
                // Refused when the merged job's own message settled it first
                // (it follows its carrier too): nothing more to do.
                self.store
                    .update_fenced(&other, JobState::Merged, Some(&entry), Some(&held.fence))
                    .await?;
            }
        }
        Ok(())
    }

    /// A merged job's own message: it ends when its carrier has.
    pub(super) async fn follow_carrier(
        &self,
        job: &mut JobRecord,
    ) -> Result<Disposition, AppError> {
        let carrier = match &job.merged_into {
            Some(id) => self.store.job(id).await?,
            None => None,
        };
        let Some(carrier) = carrier else {
            // Cannot happen through the executor (merging sets the carrier
            // with the state); kept from hanging forever all the same.
            let mut failed = job.clone();
            failed.last_error = Some("its carrier job is gone".into());
            failed.state = JobState::Merged.apply(JobEvent::Fail)?;
            let entry = self
                .audit(Stage::Outcome, "its carrier job is gone")
                .state(JobState::Failed);
            if self
                .store
                .update(&failed, JobState::Merged, Some(&entry))
                .await?
            {
                *job = failed;
            }
            return Ok(Disposition::Done);
        };
        let mut settled = job.clone();
        match self.carrier_outcome(&carrier, &mut settled) {
            Some((event, entry)) => {
                settled.state = JobState::Merged.apply(event)?;
                settled.updated_at = self.clock.now();
                if self
                    .store
                    .update(&settled, JobState::Merged, Some(&entry))
                    .await?
                {
                    *job = settled;
                }
                Ok(Disposition::Done)
            }
            None if carrier.state == JobState::Exhausted => {
                Ok(Disposition::RetryAfter(EXHAUSTED_CARRIER_POLL))
            }
            None => Ok(Disposition::RetryAfter(self.config.paused_poll)),
        }
    }

    /// The event that ends a merged job, given its carrier; `None` while
    /// the carrier's outcome is still open.
    fn carrier_outcome(
        &self,
        carrier: &JobRecord,
        merged: &mut JobRecord,
    ) -> Option<(JobEvent, crate::domain::audit::AuditEntry)> {
        match carrier.state {
            JobState::Succeeded => {
                merged.issue_key = carrier.issue_key.clone().or(merged.issue_key.take());
                Some((
                    JobEvent::Supersede,
                    self.audit(
                        Stage::Outcome,
                        format!("its changes are in Jira: carried by job {}", carrier.id),
                    )
                    .state(JobState::Superseded),
                ))
            }
            JobState::Failed => {
                let why = format!(
                    "carried by job {}, which failed: {}",
                    carrier.id,
                    carrier
                        .last_error
                        .as_deref()
                        .unwrap_or("no reason recorded")
                );
                merged.last_error = Some(why.clone());
                Some((
                    JobEvent::Fail,
                    self.audit(Stage::Outcome, why).state(JobState::Failed),
                ))
            }
            JobState::Cancelled => {
                let why = format!("carried by job {}, which was cancelled", carrier.id);
                merged.last_error = Some(why.clone());
                Some((
                    JobEvent::Cancel,
                    self.audit(Stage::Outcome, why).state(JobState::Cancelled),
                ))
            }
            _ => None,
        }
    }
}

/// Kinds of job whose run may carry other jobs' edits and comments.
fn mergeable_carrier(kind: OperationKind) -> bool {
    !matches!(kind, OperationKind::Transition)
}

/// For each field a composed edit sets, the newest job that set it (plans
/// given oldest first, as coalescing takes them).
fn edit_revisions(plans: &[(JobId, Vec<Step>)]) -> FieldRevisions {
    let mut out = FieldRevisions::new();
    for (id, steps) in plans {
        for step in steps {
            if let Step::Edit { fields, .. } = step {
                for name in fields.keys() {
                    out.insert(name.clone(), id.clone());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, json};

    fn edit(pairs: &[(&str, &str)]) -> Step {
        let fields: Map<String, serde_json::Value> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        Step::Edit {
            fields,
            add_labels: vec![],
        }
    }

    #[test]
    fn each_field_keeps_the_revision_of_the_newest_job_that_set_it() {
        let a = JobId::from_stored("0001".into());
        let b = JobId::from_stored("0002".into());
        let revs = edit_revisions(&[
            (
                a.clone(),
                vec![edit(&[("summary", "old"), ("priority", "P3")])],
            ),
            (b.clone(), vec![edit(&[("summary", "new")])]),
        ]);
        assert_eq!(revs.get("summary"), Some(&b));
        assert_eq!(revs.get("priority"), Some(&a), "only the older job set it");
    }
}
