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
use crate::domain::coalesce::{coalesce, mergeable};
use crate::domain::event::{Event, OperationKind, Priority};
use crate::domain::governor::CallKind;
use crate::domain::ids::{IssueKey, JobId};
use crate::domain::job::{JobEvent, JobState};
use crate::domain::plan::{LinkState, PlanError, Step, plan};
use crate::domain::ratelimit::RateLimitSignal;
use crate::domain::response::summarize;
use crate::domain::validation::validate_event;
use crate::ports::{
    Answer, BatchStore, Clock, ElementError, JobRecord, JobStore, Leases, LinkStore,
    MAX_BULK_CREATE, NewIssueRequest, Tracker, TrackerError, TransitionDone,
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
    /// Most issues created in one call (Jira's bulk create takes 50); 1
    /// creates one at a time.
    pub bulk_create: usize,
    /// How often a paused batch's job looks whether it was resumed: each
    /// look is a queue receive, so on SQS it is kept long.
    pub paused_poll: Duration,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            worker: "executor".into(),
            lease_ttl: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            search_lag: Duration::from_secs(5),
            target_wait: Duration::from_secs(300),
            bulk_create: MAX_BULK_CREATE,
            paused_poll: Duration::from_secs(30),
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

enum Prepared {
    Ready {
        steps: Vec<Step>,
        target: Option<IssueKey>,
    },
    /// The job cannot run now (or is over); the message's fate.
    Settled(Disposition),
}

enum BulkOutcome {
    /// The create is done (or was never bundled): go on with the steps.
    Continue,
    Settled(Disposition),
}

/// Another job whose create rides in this job's bulk call.
struct Partner {
    job: JobRecord,
    steps: Vec<Step>,
    target: Option<IssueKey>,
    lease: String,
    holder: String,
    /// False when its start mark could not be written: left out of the call.
    in_call: bool,
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

/// A call's point, in the thousandths jobs count in.
const POINT: u64 = 1000;

fn short_wait() -> Duration {
    Duration::from_millis(500 + fastrand::u64(0..1000))
}

impl<S, T, C, G> Executor<'_, S, T, C, G>
where
    S: JobStore + LinkStore + Leases + BatchStore,
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
        // A paused batch keeps its place: work not yet started stays as it
        // is and looks again shortly. (Work between steps finishes.)
        if job.steps_done == 0 && job.step_started.is_none() && self.batch_paused(&job).await? {
            return Ok(RunReport::untouched(
                Disposition::RetryAfter(self.config.paused_poll),
                Some(job.state),
            ));
        }
        let lease = lease_name(&job);
        let holder = self.holder(&job);
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

    fn holder(&self, job: &JobRecord) -> String {
        format!(
            "{}/{}/{}",
            self.config.worker,
            job.id,
            uuid::Uuid::new_v4().simple()
        )
    }

    async fn run_leased(
        &self,
        job: &mut JobRecord,
        lease: &str,
        holder: &str,
    ) -> Result<Disposition, AppError> {
        let (steps, mut target) = match self.prepare(job).await? {
            Prepared::Ready { steps, target } => (steps, target),
            Prepared::Settled(d) => return Ok(d),
        };
        let next = job.steps_done as usize;
        if self.config.bulk_create > 1
            && job.step_started.is_none()
            && matches!(steps.get(next), Some(Step::CreateIssue { .. }))
        {
            match self.bulk_create(job, &steps, &mut target).await? {
                BulkOutcome::Continue => {}
                BulkOutcome::Settled(d) => return Ok(d),
            }
        }
        self.run_steps(job, &steps, target, lease, holder).await
    }

    /// Takes the job from where it stands to a plan: marks it running,
    /// reads its event, finds its issue, and folds in pending work on the
    /// same entity. Settled when the job cannot run now.
    async fn prepare(&self, job: &mut JobRecord) -> Result<Prepared, AppError> {
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
            return Ok(Prepared::Settled(Disposition::RetryAfter(short_wait())));
        }
        let event = match read_event(&job.payload) {
            Ok(event) => event,
            Err(e) => {
                let d = self
                    .fail(job, format!("stored payload is unreadable: {e}"))
                    .await?;
                return Ok(Prepared::Settled(d));
            }
        };
        let (link, target) = match self.resolve(job, &event).await? {
            Resolution::Ready { link, target } => (link, target),
            Resolution::WaitForCreator => {
                let entry = self.audit(
                    Stage::Lease,
                    "waiting for the job that creates this entity's issue",
                );
                let d = self.defer(job, short_wait() * 2, entry).await?;
                return Ok(Prepared::Settled(d));
            }
        };
        if job.issue_key.is_none() && target.is_some() {
            job.issue_key = target.clone();
        }
        let own = match plan(&event, &job.link, &link) {
            Ok(steps) => steps,
            Err(e @ PlanError::NoTarget) => {
                let d = self.fail(job, e.to_string()).await?;
                return Ok(Prepared::Settled(d));
            }
        };
        let steps = self.coalesced(job, &event, &link, own).await?;
        Ok(Prepared::Ready { steps, target })
    }

    /// The job's plan with the work merged into it. Until its first call the
    /// job takes pending work on its entity; after that the set is fixed,
    /// so every attempt runs the same plan.
    async fn coalesced(
        &self,
        job: &JobRecord,
        event: &Event,
        link: &LinkState,
        own: Vec<Step>,
    ) -> Result<Vec<Step>, AppError> {
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
            _ => return Ok(own),
        };
        if !mergeable_carrier(job.kind) {
            return Ok(own);
        }
        let same_target = |other: &Option<IssueKey>| match other {
            None => by_link,
            Some(k) => by_key.as_ref() == Some(k),
        };
        let fresh = job.steps_done == 0 && job.step_started.is_none();
        let mut plans: Vec<(JobId, Vec<Step>)> = vec![(job.id.clone(), own.clone())];
        let mut taken = Vec::new();
        for other in self.store.entity_jobs(&job.link).await? {
            if other.id == job.id {
                continue;
            }
            let already = other.merged_into.as_ref() == Some(&job.id);
            let pending = fresh
                && other.merged_into.is_none()
                && matches!(other.state, JobState::Queued | JobState::Waiting)
                && other.steps_done == 0
                && other.step_started.is_none();
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
                if self.batch_paused(&other).await? {
                    continue;
                }
                let mut merged = other.clone();
                merged.merged_into = Some(job.id.clone());
                let entry = self
                    .audit(
                        Stage::Dedup,
                        format!("merged into job {}, whose run carries its changes", job.id),
                    )
                    .state(JobState::Superseded);
                if !self
                    .transition(&mut merged, other.state, JobEvent::Supersede, entry)
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
            return Ok(own);
        }
        plans.sort_by(|a, b| a.0.cmp(&b.0));
        let plans: Vec<Vec<Step>> = plans.into_iter().map(|(_, p)| p).collect();
        Ok(coalesce(&plans))
    }

    /// Whether the job belongs to a batch an operator paused.
    async fn batch_paused(&self, job: &JobRecord) -> Result<bool, AppError> {
        let Some(batch) = &job.batch else {
            return Ok(false);
        };
        Ok(self.store.batch(batch).await?.is_some_and(|b| b.paused))
    }

    /// Creates this job's issue together with other queued creates in one
    /// bulk call. Each partner is leased and prepared like a job of its own;
    /// after the call every one of them goes on with its remaining steps.
    async fn bulk_create(
        &self,
        job: &mut JobRecord,
        steps: &[Step],
        target: &mut Option<IssueKey>,
    ) -> Result<BulkOutcome, AppError> {
        let mut partners: Vec<Partner> = Vec::new();
        let wanted = self.config.bulk_create.min(MAX_BULK_CREATE) - 1;
        let mut links = vec![job.link.clone()];
        // Workers gathering at once start at different places in the list,
        // so they do not all fight over the same leases.
        let mut candidates = self.store.queued_creates(wanted * 4).await?;
        fastrand::shuffle(&mut candidates);
        for candidate in candidates {
            if partners.len() >= wanted {
                break;
            }
            if links.contains(&candidate.link) || candidate.id == job.id {
                continue;
            }
            if self.batch_paused(&candidate).await? {
                continue;
            }
            let mut other = candidate;
            let lease = lease_name(&other);
            let holder = self.holder(&other);
            if !self
                .store
                .acquire(&lease, &holder, self.config.lease_ttl)
                .await?
            {
                continue;
            }
            // Read again under the lease: it may have moved meanwhile.
            let fresh = match self.store.job(&other.id).await? {
                Some(j) if j.state == JobState::Queued => j,
                _ => {
                    self.release(&lease, &holder).await;
                    continue;
                }
            };
            other = fresh;
            match self.prepare(&mut other).await? {
                Prepared::Ready { steps, target }
                    if other.steps_done == 0
                        && other.step_started.is_none()
                        && matches!(steps.first(), Some(Step::CreateIssue { .. })) =>
                {
                    links.push(other.link.clone());
                    partners.push(Partner {
                        job: other,
                        steps,
                        target,
                        lease,
                        holder,
                        in_call: true,
                    });
                }
                // Prepared but not a create after all: it resumes when its
                // own message comes.
                _ => self.release(&lease, &holder).await,
            }
        }
        if partners.is_empty() {
            return Ok(BulkOutcome::Continue);
        }
        let outcome = self.bulk_call(job, steps, target, &mut partners).await;
        for mut p in partners {
            if matches!(outcome, Ok(BulkOutcome::Continue))
                && p.in_call
                && p.job.state == JobState::Running
            {
                let r = self
                    .run_steps(&mut p.job, &p.steps, p.target.clone(), &p.lease, &p.holder)
                    .await;
                if let Err(e) = r {
                    tracing::warn!(job_id = %p.job.id, error = %e, "bulk partner's remaining steps failed; its message retries");
                }
            }
            self.release(&p.lease, &p.holder).await;
        }
        outcome
    }

    async fn bulk_call(
        &self,
        job: &mut JobRecord,
        steps: &[Step],
        target: &mut Option<IssueKey>,
        partners: &mut [Partner],
    ) -> Result<BulkOutcome, AppError> {
        let kind = CallKind {
            endpoint: "POST /rest/api/3/issue/bulk".into(),
            write: true,
            issue: None,
            bulk: job.priority == Priority::Bulk,
        };
        let step = &steps[job.steps_done as usize];
        if let Err(e) = self.governor.permit(&kind).await {
            for p in partners.iter_mut() {
                let s = p.steps[0].clone();
                self.on_error(&mut p.job, &s, e.clone(), Call::Step).await?;
            }
            return Ok(BulkOutcome::Settled(
                self.on_error(job, step, e, Call::Step).await?,
            ));
        }
        // Start marks first: an answer lost from here on is looked for by
        // each job's label before anything is created again.
        let now = self.clock.now();
        job.step_started = Some((job.steps_done, now));
        if !self.store.update(job, JobState::Running, None).await? {
            return Ok(BulkOutcome::Settled(Disposition::RetryAfter(short_wait())));
        }
        let mut members: Vec<usize> = Vec::new();
        for (i, p) in partners.iter_mut().enumerate() {
            p.job.step_started = Some((0, now));
            if self.store.update(&p.job, JobState::Running, None).await? {
                members.push(i);
            } else {
                // Moved by someone else meanwhile: not ours to go on with.
                p.in_call = false;
            }
        }
        let mut requests = vec![self.create_request(job, step)];
        for &i in &members {
            requests.push(self.create_request(&partners[i].job, &partners[i].steps[0]));
        }
        let result = self.tracker.create_issues(&requests).await;
        self.governor
            .observe(&kind, result.as_ref().map(|a| &a.signal))
            .await;
        let answer = match result {
            Ok(a) => a,
            Err(e) => {
                for &i in &members {
                    let p = &mut partners[i];
                    let s = p.steps[0].clone();
                    self.on_error(&mut p.job, &s, e.clone(), Call::Step).await?;
                }
                return Ok(BulkOutcome::Settled(
                    self.on_error(job, step, e, Call::Step).await?,
                ));
            }
        };
        let n = requests.len();
        // One point for the call, shared by the jobs in it.
        let share = POINT / n as u64;
        job.points_milli += share;
        for &i in &members {
            partners[i].job.points_milli += share;
        }
        let response = |r: &Result<IssueKey, ElementError>| match r {
            Ok(_) => summarize(Some(answer.status), &answer.signal, None),
            Err(e) => summarize(Some(e.status), &answer.signal, Some(e.message.clone())),
        };
        let mut own = None;
        for (slot, element) in answer.value.iter().enumerate() {
            let (member, member_step) = if slot == 0 {
                (&mut *job, step.clone())
            } else {
                let p = &mut partners[members[slot - 1]];
                (&mut p.job, p.steps[0].clone())
            };
            let index = member.steps_done;
            match element {
                Ok(key) => {
                    let entry = self
                        .audit(Stage::Jira, format!("done (bulk create of {n})"))
                        .intent(member_step.to_string())
                        .response(response(element));
                    self.checkpoint(member, index, Some(key), entry).await?;
                    if slot == 0 {
                        *target = Some(key.clone());
                    } else {
                        partners[members[slot - 1]].target = Some(key.clone());
                    }
                }
                Err(e) => {
                    let err = element_error(e);
                    if slot == 0 {
                        own = Some(self.on_error(member, &member_step, err, Call::Step).await?);
                    } else {
                        self.on_error(member, &member_step, err, Call::Step).await?;
                    }
                }
            }
        }
        Ok(match own {
            Some(d) => BulkOutcome::Settled(d),
            None => BulkOutcome::Continue,
        })
    }

    fn create_request(&self, job: &JobRecord, step: &Step) -> NewIssueRequest {
        let (fields, label) = match step {
            Step::CreateIssue { fields, label } => (fields.clone(), label.as_str()),
            _ => (Default::default(), ""),
        };
        NewIssueRequest {
            fields,
            properties: property(job, label),
        }
    }

    async fn release(&self, lease: &str, holder: &str) {
        if let Err(e) = self.store.release(lease, holder).await {
            tracing::warn!(lease, error = %e, "lease release failed; it will expire");
        }
    }

    /// Runs the plan from the job's recovery point to its end.
    async fn run_steps(
        &self,
        job: &mut JobRecord,
        steps: &[Step],
        mut target: Option<IssueKey>,
        lease: &str,
        holder: &str,
    ) -> Result<Disposition, AppError> {
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
                match &reconciled {
                    Err(e) => self.governor.observe(&kind, Err(e)).await,
                    Ok(_) => {
                        job.points_milli += POINT;
                        self.governor
                            .observe(&kind, Ok(&RateLimitSignal::default()))
                            .await;
                    }
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
            if result.is_ok() {
                job.points_milli += POINT;
            }
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
        if job.kind.confluence() {
            return Ok(Resolution::Ready {
                link: LinkState::Unlinked,
                target: None,
            });
        }
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
                    .create_page(space_id, title, body, parent_id.as_ref())
                    .await?;
                tracing::info!(job_id = %job.id, page_id = %a.value, "page created");
                Ok(a.map(|_| None))
            }
            Step::PageComment { page_id, body } => {
                let a = self.tracker.add_page_comment(page_id, body).await?;
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
            Step::CreatePage {
                space_id, title, ..
            } => Ok(match self.tracker.find_page(space_id, title).await?.value {
                Some(_) => Reconciled::Found(None),
                None => Reconciled::NotFound,
            }),
            Step::PageComment { page_id, body } => Ok(
                if self.tracker.has_page_comment(page_id, body).await?.value {
                    Reconciled::Found(None)
                } else {
                    Reconciled::NotFound
                },
            ),
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

/// The lease that makes one worker at a time act on an entity.
fn lease_name(job: &JobRecord) -> String {
    format!("link/{}", job.link)
}

fn read_event(payload: &str) -> Result<Event, String> {
    serde_json::from_str(payload)
        .map_err(|e| e.to_string())
        .and_then(|v| validate_event(&v).map_err(|e| e.to_string()))
}

/// Kinds of job whose run may carry other jobs' edits and comments.
fn mergeable_carrier(kind: OperationKind) -> bool {
    !matches!(kind, OperationKind::Transition)
}

/// The issue property set with every create: finds the issue after a lost
/// answer, and names the job that made it.
fn property(job: &JobRecord, label: &str) -> Vec<(String, serde_json::Value)> {
    vec![(
        "tollgate".to_string(),
        json!({ "link": job.link.as_str(), "job": job.id.as_str(), "label": label }),
    )]
}

/// One refused element of a bulk create, as the failure of its job's step.
fn element_error(e: &ElementError) -> TrackerError {
    match e.status {
        429 => TrackerError::Throttled {
            status: 429,
            signal: Default::default(),
        },
        400..=499 => TrackerError::Permanent {
            status: e.status,
            message: e.message.clone(),
        },
        status => TrackerError::Transient {
            status: Some(status),
            message: e.message.clone(),
            signal: Default::default(),
        },
    }
}

/// The comment property value that identifies one step of one job.
fn marker(job: &JobRecord, index: u32) -> String {
    format!("{}:{index}", job.id)
}
