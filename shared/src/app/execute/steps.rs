//! Running a plan: each step from the job's recovery point to the end.
//! Rules, per step:
//!
//! 1. Renew the lease (refused → stop: another worker has the job).
//! 2. A step with a start mark from an earlier attempt is reconciled first
//!    (`reconcile.rs`).
//! 3. The governor's permission, then — only if the call can finish before
//!    the invocation's deadline — the start mark (fenced), then the call,
//!    with the lease renewed while it is in flight.
//! 4. An edit sends only the fields whose applied revision is not newer
//!    than its own; after the call the applied revisions are raised.
//! 5. The checkpoint (fenced): refused → stop before the next call.
//! 6. At the end, `SUCCEEDED`, and the jobs it carried become `SUPERSEDED`.

use super::outcome::Call;
use super::reconcile::Reconciled;
use super::{Disposition, Executor, Held, POINT, Plan, marker, no_target, property, short_wait};
use crate::app::AppError;
use crate::app::governor::Pace;
use crate::domain::audit::{AuditEntry, Stage};
use crate::domain::event::Priority;
use crate::domain::ids::IssueKey;
use crate::domain::job::{JobEvent, JobState};
use crate::domain::plan::Step;
use crate::domain::ratelimit::RateLimitSignal;
use crate::domain::response::summarize;
use crate::ports::{
    Answer, BatchStore, Clock, FieldRevisions, JobRecord, JobStore, Leases, LinkStore, Tracker,
    TrackerError, TransitionDone,
};
use serde_json::json;

/// Whether the run goes on after a write.
pub(super) enum Next {
    Go,
    /// A fenced write was refused: the run stops, its message returns.
    Stop(Disposition),
}

impl<S, T, C, G> Executor<'_, S, T, C, G>
where
    S: JobStore + LinkStore + Leases + BatchStore,
    T: Tracker,
    C: Clock,
    G: Pace,
{
    /// Runs the plan from the job's recovery point to its end.
    pub(super) async fn run_steps(
        &self,
        job: &mut JobRecord,
        held: &Held,
        plan: &Plan,
        mut target: Option<IssueKey>,
    ) -> Result<Disposition, AppError> {
        for (i, planned) in plan.steps.iter().enumerate().skip(job.steps_done as usize) {
            if !self.renew(held).await? {
                // Our lease lapsed and another worker holds it now: leave
                // the job to it.
                return Ok(Disposition::RetryAfter(short_wait()));
            }
            let index = i as u32;
            if planned.needs_reconcile()
                && let Some((started, at)) = job.step_started
                && started == index
            {
                match self
                    .reconcile_step(job, held, planned, target.as_ref(), index, at)
                    .await?
                {
                    Reconciled::Found(created) => {
                        let entry = self
                            .audit(
                                Stage::Reconcile,
                                "found the effect of an earlier attempt; not repeating it",
                            )
                            .intent(planned.to_string());
                        if let Next::Stop(d) = self
                            .checkpoint(job, held, index, created.as_ref(), entry)
                            .await?
                        {
                            return Ok(d);
                        }
                        if let (Step::CreateIssue { .. }, Some(key)) = (planned, created) {
                            target = Some(key);
                        }
                        continue;
                    }
                    Reconciled::Repeat => {}
                    Reconciled::Settled(d) => return Ok(d),
                }
            }
            // An edit sends only what no newer revision has overwritten.
            let (step, revisions) = match planned {
                Step::Edit { .. } => match self.newest_only(job, planned, &plan.revisions).await? {
                    Some(kept) => kept,
                    None => {
                        let entry = self
                            .audit(
                                Stage::Jira,
                                "nothing left to edit: newer revisions hold every field",
                            )
                            .intent(planned.to_string());
                        if let Next::Stop(d) =
                            self.checkpoint(job, held, index, None, entry).await?
                        {
                            return Ok(d);
                        }
                        continue;
                    }
                },
                _ => (planned.clone(), FieldRevisions::new()),
            };
            // Permission first: a call held back never started, so it must
            // not leave a mark that sends the next attempt reconciling.
            let kind = step.call_kind(target.as_ref(), job.priority == Priority::Bulk);
            if let Err(e) = self.governor.permit(&kind).await {
                return self.on_error(job, held, &step, e, Call::Step).await;
            }
            if !self.call_fits() {
                let entry = self.audit(
                    Stage::Jira,
                    "no time left in this invocation for a whole Jira call; resuming from the checkpoint",
                );
                return self.defer(job, held, short_wait(), entry).await;
            }
            if step.needs_reconcile() {
                job.step_started = Some((index, self.clock.now()));
                if !self.save_progress(job, held).await? {
                    return Ok(Disposition::RetryAfter(short_wait()));
                }
            }
            let result = self
                .held_through(&[held], self.call(&step, target.as_ref(), job, index))
                .await;
            self.governor
                .observe(&kind, result.as_ref().map(|a| &a.signal))
                .await;
            let answer = match result {
                Ok(answer) => answer,
                Err(e) => return self.on_error(job, held, &step, e, Call::Step).await,
            };
            job.points_milli += POINT;
            if !revisions.is_empty()
                && !self
                    .store
                    .record_revisions(&job.link, &revisions, &held.fence)
                    .await?
            {
                return Ok(Disposition::RetryAfter(short_wait()));
            }
            let entry = self
                .audit(Stage::Jira, "done")
                .intent(step.to_string())
                .response(summarize(Some(answer.status), &answer.signal, None));
            if let Next::Stop(d) = self
                .checkpoint(job, held, index, answer.value.as_ref(), entry)
                .await?
            {
                return Ok(d);
            }
            if let (Step::CreateIssue { .. }, Some(key)) = (&step, answer.value) {
                target = Some(key);
            }
        }
        let entry = self
            .audit(Stage::Outcome, "all steps done")
            .state(JobState::Succeeded);
        job.last_error = None;
        if self
            .transition(job, held, JobState::Running, JobEvent::Succeed, entry)
            .await?
        {
            self.settle_merged(job, held).await?;
        }
        Ok(Disposition::Done)
    }

    /// The edit without the fields a newer revision already set in Jira
    /// (recorded in the audit trail), and the revisions it sends; `None`
    /// when nothing is left to send.
    async fn newest_only(
        &self,
        job: &JobRecord,
        step: &Step,
        ours: &FieldRevisions,
    ) -> Result<Option<(Step, FieldRevisions)>, AppError> {
        let Step::Edit { fields, add_labels } = step else {
            return Ok(Some((step.clone(), FieldRevisions::new())));
        };
        let applied = self.store.field_revisions(&job.link).await?;
        let mut kept = serde_json::Map::new();
        let mut sent = FieldRevisions::new();
        let mut dropped = Vec::new();
        for (name, value) in fields {
            let own = ours.get(name).unwrap_or(&job.id);
            match applied.get(name) {
                Some(newer) if newer > own => dropped.push(format!("{name} (job {newer})")),
                _ => {
                    kept.insert(name.clone(), value.clone());
                    sent.insert(name.clone(), own.clone());
                }
            }
        }
        if !dropped.is_empty() {
            let entry = self.audit(
                Stage::Jira,
                format!(
                    "not sending older values: newer revisions already applied to {}",
                    dropped.join(", ")
                ),
            );
            self.store.append_audit(&job.id, &entry).await?;
        }
        if kept.is_empty() && add_labels.is_empty() {
            return Ok(None);
        }
        Ok(Some((
            Step::Edit {
                fields: kept,
                add_labels: add_labels.clone(),
            },
            sent,
        )))
    }

    pub(super) async fn call(
        &self,
        step: &Step,
        target: Option<&IssueKey>,
        job: &JobRecord,
        index: u32,
    ) -> Result<Answer<Option<IssueKey>>, TrackerError> {
        let property = |label: &str| property(job, label);
        match step {
            Step::CreateIssue { fields, label } => {
                let a = self.tracker.create_issue(fields, &property(label)).await?;
                Ok(a.map(Some))
            }
            Step::CreateChild { fields, label, .. } => {
                let mut fields = fields.clone();
                fields.insert(
                    "parent".into(),
                    json!({ "key": target.ok_or_else(no_target)?.as_str() }),
                );
                let a = self.tracker.create_issue(&fields, &property(label)).await?;
                Ok(a.map(|_| None))
            }
            Step::Edit { fields, add_labels } => {
                let a = self
                    .tracker
                    .edit_issue(target.ok_or_else(no_target)?, fields, add_labels)
                    .await?;
                Ok(a.map(|_| None))
            }
            Step::Comment { text } => {
                let a = self
                    .tracker
                    .add_comment(target.ok_or_else(no_target)?, text, &marker(job, index))
                    .await?;
                Ok(a.map(|_| None))
            }
            Step::Transition { name } => {
                let a = self
                    .tracker
                    .transition(target.ok_or_else(no_target)?, name)
                    .await?;
                if a.value == TransitionDone::AlreadyThere {
                    tracing::info!(job_id = %job.id, transition = %name, "issue already had the wanted status");
                }
                Ok(a.map(|_| None))
            }
            Step::CreatePage {
                space_id,
                title,
                body,
                parent_id,
            } => {
                let a = self
                    .tracker
                    .create_page(
                        space_id,
                        title,
                        body,
                        parent_id.as_ref(),
                        &marker(job, index),
                    )
                    .await?;
                tracing::info!(job_id = %job.id, page_id = %a.value, "page created");
                Ok(a.map(|_| None))
            }
            Step::PageComment { page_id, body } => {
                let a = self
                    .tracker
                    .add_page_comment(page_id, body, &marker(job, index))
                    .await?;
                Ok(a.map(|_| None))
            }
        }
    }

    /// Records step `index` as done (and the issue it created), fenced:
    /// a refused write stops the run before its next call.
    pub(super) async fn checkpoint(
        &self,
        job: &mut JobRecord,
        held: &Held,
        index: u32,
        created: Option<&IssueKey>,
        entry: AuditEntry,
    ) -> Result<Next, AppError> {
        if let Some(key) = created {
            if !self
                .store
                .set_link_issue(&job.link, &job.id, key, &held.fence)
                .await?
            {
                tracing::warn!(job_id = %job.id, "link write refused: the lease was taken over; stopping");
                return Ok(Next::Stop(Disposition::RetryAfter(short_wait())));
            }
            job.issue_key = Some(key.clone());
        }
        job.steps_done = index + 1;
        job.step_started = None;
        job.updated_at = self.clock.now();
        if !self
            .store
            .update_fenced(job, JobState::Running, Some(&entry), Some(&held.fence))
            .await?
        {
            tracing::warn!(job_id = %job.id, "checkpoint refused: the lease was taken over; stopping");
            return Ok(Next::Stop(Disposition::RetryAfter(short_wait())));
        }
        Ok(Next::Go)
    }

    /// Counts and reports a reconcile read to the governor.
    pub(super) async fn observe_read(
        &self,
        job: &mut JobRecord,
        kind: &crate::domain::governor::CallKind,
        result: Result<(), &TrackerError>,
    ) {
        match result {
            Err(e) => self.governor.observe(kind, Err(e)).await,
            Ok(()) => {
                job.points_milli += POINT;
                self.governor
                    .observe(kind, Ok(&RateLimitSignal::default()))
                    .await;
            }
        }
    }
}
