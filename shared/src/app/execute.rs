//! Execute: run one job's plan against Jira, exactly once per step.
//!
//! * A lease on the job's entity (source system + external id) makes one
//!   worker at a time act on it, whichever queue delivered the message.
//! * After each Jira call a checkpoint records the step as done (a recovery
//!   point). Before a step that is not safe to repeat (create, comment) the
//!   executor records that it started; a later attempt that finds that mark
//!   looks in Jira for the effect (label search, comment property) before
//!   calling again, and waits out Jira's search lag before concluding the
//!   call never landed.
//! * Throttling is not failure: the job waits as Jira asks and its retry
//!   budget is untouched. Transient failures back off and count. Permanent
//!   failures end the job.

use super::AppError;
use super::governor::{Pace, Ungoverned};
use crate::domain::audit::{AuditEntry, Stage};
use crate::domain::backoff::RetryPolicy;
use crate::domain::event::Event;
use crate::domain::event::Priority;
use crate::domain::ids::{IssueKey, JobId};
use crate::domain::job::{JobEvent, JobState};
use crate::domain::plan::{LinkState, PlanError, Step, plan};
use crate::domain::response::summarize;
use crate::domain::validation::validate_event;
use crate::ports::{
    Answer, Clock, JobRecord, JobStore, Leases, LinkStore, Tracker, TrackerError, TransitionDone,
};
use serde_json::json;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// Who acts, for the audit trail (`worker-3`, a Lambda request id).
    pub worker: String,
    /// How long a lease lasts without renewal; renewed before every step.
    pub lease_ttl: Duration,
    pub retry: RetryPolicy,
    /// How long after a create Jira's search may still miss the new issue.
    pub search_lag: Duration,
    /// How long a job that names its issue only by external id waits for
    /// that issue's create to arrive (senders deliver out of order) before
    /// it fails for want of a target.
    pub target_wait: Duration,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            worker: "executor".into(),
            lease_ttl: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            search_lag: Duration::from_secs(5),
            target_wait: Duration::from_secs(300),
        }
    }
}

/// What to do with the queue message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Delete it: the job is finished, or the message was stale.
    Done,
    /// Make it visible again after this long.
    RetryAfter(Duration),
}

/// What one run did, for metrics: the message's disposition, the job's
/// state after it, and whether Jira throttled it this time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunReport {
    pub disposition: Disposition,
    pub state: Option<JobState>,
    pub throttled: bool,
}

impl RunReport {
    fn untouched(disposition: Disposition, state: Option<JobState>) -> Self {
        RunReport {
            disposition,
            state,
            throttled: false,
        }
    }
}

pub struct Executor<'a, S, T, C, G = Ungoverned> {
    pub store: &'a S,
    pub tracker: &'a T,
    pub clock: &'a C,
    pub config: &'a ExecutorConfig,
    /// Asked before every Jira call, told every answer.
    pub governor: &'a G,
}

enum Resolution {
    Ready {
        link: LinkState,
        target: Option<IssueKey>,
    },
    /// Another job is creating the entity's issue, or its create has not
    /// arrived yet: come back shortly.
    WaitForCreator,
}

/// Which call failed: the step's own, or the read that looks for the
/// effect of an earlier attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Step,
    Reconcile,
}

enum Reconciled {
    Found(Option<IssueKey>),
    NotFound,
}

fn short_wait() -> Duration {
    Duration::from_millis(500 + fastrand::u64(0..1000))
}

impl<S, T, C, G> Executor<'_, S, T, C, G>
where
    S: JobStore + LinkStore + Leases,
    T: Tracker,
    C: Clock,
    G: Pace,
{
    pub async fn run(&self, job_id: &JobId) -> Result<Disposition, AppError> {
        Ok(self.run_reported(job_id).await?.disposition)
    }

    /// Runs the job and says what became of it (for metrics).
    pub async fn run_reported(&self, job_id: &JobId) -> Result<RunReport, AppError> {
        let Some(mut job) = self.store.job(job_id).await? else {
            tracing::warn!(%job_id, "message for an unknown job dropped");
            return Ok(RunReport::untouched(Disposition::Done, None));
        };
        if !job.state.is_runnable() {
            return Ok(RunReport::untouched(Disposition::Done, Some(job.state)));
        }
        // Only a revision that has not touched Jira may be superseded: no
        // step done, none started (an ambiguous create must be reconciled by
        // its own job, or the newer revision would create a second issue).
        if job.kind.revisable()
            && job.steps_done == 0
            && job.step_started.is_none()
            && job.state != JobState::Running
            && self.store.has_newer_revision(&job).await?
        {
            let from = job.state;
            let entry = self
                .audit(
                    Stage::Dedup,
                    "superseded by a newer revision of the same key",
                )
                .state(JobState::Superseded);
            self.transition(&mut job, from, JobEvent::Supersede, entry)
                .await?;
            return Ok(RunReport::untouched(Disposition::Done, Some(job.state)));
        }
        let lease = format!("link/{}", job.link);
        let holder = format!(
            "{}/{}/{}",
            self.config.worker,
            job.id,
            uuid::Uuid::new_v4().simple()
        );
        if !self
            .store
            .acquire(&lease, &holder, self.config.lease_ttl)
            .await?
        {
            return Ok(RunReport::untouched(
                Disposition::RetryAfter(short_wait()),
                Some(job.state),
            ));
        }
        let throttles_before = job.throttles;
        let result = self.run_leased(&mut job, &lease, &holder).await;
        if let Err(e) = self.store.release(&lease, &holder).await {
            tracing::warn!(job_id = %job.id, error = %e, "lease release failed; it will expire");
        }
        Ok(RunReport {
            disposition: result?,
            state: Some(job.state),
            throttled: job.throttles > throttles_before,
        })
    }

    async fn run_leased(
        &self,
        job: &mut JobRecord,
        lease: &str,
        holder: &str,
    ) -> Result<Disposition, AppError> {
        let from = job.state;
        let entry = self
            .audit(
                Stage::Lease,
                if from == JobState::Running {
                    "resumed"
                } else {
                    "leased"
                },
            )
            .state(JobState::Running);
        if !self.transition(job, from, JobEvent::Lease, entry).await? {
            return Ok(Disposition::RetryAfter(short_wait()));
        }
        let event = match serde_json::from_str(&job.payload)
            .map_err(|e| e.to_string())
            .and_then(|v| validate_event(&v).map_err(|e| e.to_string()))
        {
            Ok(event) => event,
            Err(e) => {
                return self
                    .fail(job, format!("stored payload is unreadable: {e}"))
                    .await;
            }
        };
        let (link, mut target) = match self.resolve(job, &event).await? {
            Resolution::Ready { link, target } => (link, target),
            Resolution::WaitForCreator => {
                let entry = self.audit(
                    Stage::Lease,
                    "waiting for the job that creates this entity's issue",
                );
                return self.defer(job, short_wait() * 2, entry).await;
            }
        };
        if job.issue_key.is_none() && target.is_some() {
            job.issue_key = target.clone();
        }
        let steps = match plan(&event, &job.link, &link) {
            Ok(steps) => steps,
            Err(e @ PlanError::NoTarget) => return self.fail(job, e.to_string()).await,
        };

        for (i, step) in steps.iter().enumerate().skip(job.steps_done as usize) {
            if !self
                .store
                .acquire(lease, holder, self.config.lease_ttl)
                .await?
            {
                // Our lease lapsed and another worker holds it now: leave
                // the job to it.
                return Ok(Disposition::RetryAfter(short_wait()));
            }
            let index = i as u32;
            if step.needs_reconcile()
                && let Some((started, at)) = job.step_started
                && started == index
            {
                let kind =
                    step.reconcile_call_kind(target.as_ref(), job.priority == Priority::Bulk);
                if let Err(e) = self.governor.permit(&kind).await {
                    return self.on_error(job, step, e, Call::Reconcile).await;
                }
                let reconciled = self.reconcile(step, target.as_ref(), job, index).await;
                if let Err(e) = &reconciled {
                    self.governor.observe(&kind, Err(e)).await;
                }
                match reconciled {
                    Ok(Reconciled::Found(created)) => {
                        let entry = self
                            .audit(
                                Stage::Reconcile,
                                "found the effect of an earlier attempt; not repeating it",
                            )
                            .intent(step.to_string());
                        self.checkpoint(job, index, created.as_ref(), entry).await?;
                        if let (Step::CreateIssue { .. }, Some(key)) = (step, created) {
                            target = Some(key);
                        }
                        continue;
                    }
                    Ok(Reconciled::NotFound) => {
                        let lag_ends = at.plus(self.config.search_lag);
                        let now = self.clock.now();
                        if now < lag_ends {
                            let entry = self.audit(
                                    Stage::Reconcile,
                                    "earlier attempt not visible yet; waiting out search lag before repeating",
                                );
                            return self.defer(job, now.until(lag_ends), entry).await;
                        }
                    }
                    Err(e) => return self.on_error(job, step, e, Call::Reconcile).await,
                }
            }
            // Permission first: a call held back never started, so it must
            // not leave a mark that sends the next attempt reconciling.
            let kind = step.call_kind(target.as_ref(), job.priority == Priority::Bulk);
            if let Err(e) = self.governor.permit(&kind).await {
                return self.on_error(job, step, e, Call::Step).await;
            }
            if step.needs_reconcile() {
                job.step_started = Some((index, self.clock.now()));
                if !self.store.update(job, JobState::Running, None).await? {
                    return Ok(Disposition::RetryAfter(short_wait()));
                }
            }
            let result = self.call(step, target.as_ref(), job, index).await;
            self.governor
                .observe(&kind, result.as_ref().map(|a| &a.signal))
                .await;
            match result {
                Ok(answer) => {
                    let entry = self
                        .audit(Stage::Jira, "done")
                        .intent(step.to_string())
                        .response(summarize(Some(answer.status), &answer.signal, None));
                    self.checkpoint(job, index, answer.value.as_ref(), entry)
                        .await?;
                    if let (Step::CreateIssue { .. }, Some(key)) = (step, answer.value) {
                        target = Some(key);
                    }
                }
                Err(e) => return self.on_error(job, step, e, Call::Step).await,
            }
        }
        let entry = self
            .audit(Stage::Outcome, "all steps done")
            .state(JobState::Succeeded);
        job.last_error = None;
        self.transition(job, JobState::Running, JobEvent::Succeed, entry)
            .await?;
        Ok(Disposition::Done)
    }

    /// Finds which issue the job acts on, claiming the entity for creates.
    async fn resolve(&self, job: &JobRecord, event: &Event) -> Result<Resolution, AppError> {
        let creates = job.kind.creates();
        let link = if creates {
            Some(self.store.claim_link(&job.link, &job.id).await?)
        } else if event.issue_key.is_some() {
            None
        } else {
            self.store.link(&job.link).await?
        };
        let Some(link) = link else {
            let waited_enough = self.clock.now() >= job.created_at.plus(self.config.target_wait);
            if !creates && event.issue_key.is_none() && !waited_enough {
                return Ok(Resolution::WaitForCreator);
            }
            return Ok(Resolution::Ready {
                link: LinkState::Unlinked,
                target: event.issue_key.clone(),
            });
        };
        if link.creator == job.id {
            let target = link.issue_key.or_else(|| job.issue_key.clone());
            return Ok(Resolution::Ready {
                link: LinkState::Unlinked,
                target,
            });
        }
        if let Some(key) = link.issue_key {
            let target = event.issue_key.clone().unwrap_or_else(|| key.clone());
            return Ok(Resolution::Ready {
                link: LinkState::Linked(key),
                target: Some(target),
            });
        }
        // Another job claimed the entity and has not created its issue yet.
        let creator = self.store.job(&link.creator).await?;
        let creator_gave_up =
            creator.is_none_or(|c| c.state.is_terminal() && c.state != JobState::Exhausted);
        if !creator_gave_up {
            return Ok(Resolution::WaitForCreator);
        }
        if creates {
            if self
                .store
                .take_over_link(&job.link, &link.creator, &job.id)
                .await?
            {
                return Ok(Resolution::Ready {
                    link: LinkState::Unlinked,
                    target: None,
                });
            }
            return Ok(Resolution::WaitForCreator);
        }
        Ok(Resolution::Ready {
            link: LinkState::Unlinked,
            target: None,
        })
    }

    async fn call(
        &self,
        step: &Step,
        target: Option<&IssueKey>,
        job: &JobRecord,
        index: u32,
    ) -> Result<Answer<Option<IssueKey>>, TrackerError> {
        let property = |label: &str| {
            vec![(
                "tollgate".to_string(),
                json!({ "link": job.link.as_str(), "job": job.id.as_str(), "label": label }),
            )]
        };
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
        }
    }

    async fn reconcile(
        &self,
        step: &Step,
        target: Option<&IssueKey>,
        job: &JobRecord,
        index: u32,
    ) -> Result<Reconciled, TrackerError> {
        match step {
            Step::CreateIssue { label, .. } => {
                let found = self.tracker.find_by_label(label).await?.value;
                Ok(found
                    .into_iter()
                    .next()
                    .map_or(Reconciled::NotFound, |k| Reconciled::Found(Some(k))))
            }
            Step::CreateChild { label, .. } => {
                let found = self.tracker.find_by_label(label).await?.value;
                Ok(if found.is_empty() {
                    Reconciled::NotFound
                } else {
                    Reconciled::Found(None)
                })
            }
            Step::Comment { .. } => match target {
                Some(key)
                    if self
                        .tracker
                        .has_comment(key, &marker(job, index))
                        .await?
                        .value =>
                {
                    Ok(Reconciled::Found(None))
                }
                _ => Ok(Reconciled::NotFound),
            },
            Step::Edit { .. } | Step::Transition { .. } => Ok(Reconciled::NotFound),
        }
    }

    /// Records step `index` as done (and the issue it created).
    async fn checkpoint(
        &self,
        job: &mut JobRecord,
        index: u32,
        created: Option<&IssueKey>,
        entry: AuditEntry,
    ) -> Result<(), AppError> {
        if let Some(key) = created {
            job.issue_key = Some(key.clone());
            self.store.set_link_issue(&job.link, &job.id, key).await?;
        }
        job.steps_done = index + 1;
        job.step_started = None;
        job.updated_at = self.clock.now();
        self.store
            .update(job, JobState::Running, Some(&entry))
            .await?;
        Ok(())
    }

    async fn on_error(
        &self,
        job: &mut JobRecord,
        step: &Step,
        err: TrackerError,
        failed: Call,
    ) -> Result<Disposition, AppError> {
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
                self.defer(job, wait, entry).await
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
                    return self.exhaust(job, entry).await;
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
                self.defer(job, wait, entry).await
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
                    return self.exhaust(job, entry).await;
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
                self.defer(job, wait, entry).await
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
                self.transition(job, JobState::Running, JobEvent::Fail, entry)
                    .await?;
                Ok(Disposition::Done)
            }
        }
    }

    async fn fail(&self, job: &mut JobRecord, message: String) -> Result<Disposition, AppError> {
        let entry = self
            .audit(Stage::Outcome, message.clone())
            .state(JobState::Failed);
        job.last_error = Some(message);
        self.transition(job, JobState::Running, JobEvent::Fail, entry)
            .await?;
        Ok(Disposition::Done)
    }

    async fn exhaust(
        &self,
        job: &mut JobRecord,
        entry: AuditEntry,
    ) -> Result<Disposition, AppError> {
        self.transition(
            job,
            JobState::Running,
            JobEvent::Exhaust,
            entry.state(JobState::Exhausted),
        )
        .await?;
        Ok(Disposition::Done)
    }

    async fn defer(
        &self,
        job: &mut JobRecord,
        wait: Duration,
        entry: AuditEntry,
    ) -> Result<Disposition, AppError> {
        self.transition(
            job,
            JobState::Running,
            JobEvent::Defer,
            entry.state(JobState::Waiting),
        )
        .await?;
        Ok(Disposition::RetryAfter(wait))
    }

    /// Applies `event` to the job if it is still in `from`; false if another
    /// writer moved it first.
    async fn transition(
        &self,
        job: &mut JobRecord,
        from: JobState,
        event: JobEvent,
        entry: AuditEntry,
    ) -> Result<bool, AppError> {
        let to = from.apply(event)?;
        job.state = to;
        job.updated_at = self.clock.now();
        Ok(self.store.update(job, from, Some(&entry)).await?)
    }

    fn audit(&self, stage: Stage, outcome: impl Into<String>) -> AuditEntry {
        AuditEntry::new(self.clock.now(), stage, &self.config.worker, outcome)
    }
}

fn no_target() -> TrackerError {
    TrackerError::Permanent {
        status: 0,
        message: PlanError::NoTarget.to_string(),
    }
}

/// The comment property value that identifies one step of one job.
fn marker(job: &JobRecord, index: u32) -> String {
    format!("{}:{index}", job.id)
}
