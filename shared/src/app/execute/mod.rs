//! Execute: run one job's plan against Jira, exactly once per step.
//!
//! The protocol's invariants, each with what holds it (tests in
//! `tests/exactly_once.rs` unless named otherwise; the model is
//! `tools/protocol-model`, which checks them on every interleaving):
//!
//! * **One writer per entity, fenced.** A run holds the entity's lease
//!   (source system + external id). Each new holder gets a higher fencing
//!   token; every write a run makes — state, start mark, checkpoint, link,
//!   field revisions, merged jobs — is conditional on it, and a refused
//!   write stops the run before its next Jira call. The lease is renewed
//!   before every step and while a call is in flight, and a call never
//!   starts without a whole call's time left in the lease or the
//!   invocation. (Conformance `fence_refuses_a_worker_whose_lease_was_taken_over`
//!   on SQLite and DynamoDB; `a_stalled_worker_is_fenced_out_on_*`,
//!   `a_bulk_call_slower_than_the_lease_keeps_every_members_lease`,
//!   `no_jira_call_starts_without_a_whole_call_left_before_the_deadline`;
//!   model: `no effect twice`.)
//! * **Recovery points.** After each Jira call a checkpoint records the step
//!   as done. A step not safe to repeat (create, sub-task, comment, page,
//!   page comment) records its start first; a later attempt that finds the
//!   mark looks in Jira for the effect by what the call itself set
//!   (`reconcile.rs`). (`tests/executor_recovery.rs`,
//!   `a_lost_multi_line_page_comment_is_found_by_its_anchor_not_posted_twice`,
//!   `a_lost_comment_is_found_among_more_than_a_page_of_newer_comments`.)
//! * **Honest ambiguity windows.** A call whose answer was lost may still
//!   land until its start plus the Jira timeout; a reconcile that finds
//!   nothing waits until then plus the search lag before repeating it.
//!   (`a_create_jira_finishes_after_the_client_gave_up_is_made_once`, and
//!   the bulk and comment forms; model: `no effect twice`.)
//! * **Ordered edits.** An edit never overwrites a newer revision of a
//!   field (`steps.rs`); a running job left by a dead worker is merged like
//!   queued work. (`an_older_edit_never_overwrites_a_newer_one_after_a_crash`,
//!   `an_edit_that_cannot_merge_drops_the_fields_a_newer_revision_set`;
//!   model: `no older edit after a newer`.)
//! * **Carriers answer for what they carry.** Merged jobs stay `MERGED`
//!   until their carrier ends: `SUPERSEDED` when it succeeded, `FAILED`
//!   with its reason when it failed, `MERGED` while it waits to be re-run
//!   (`coalescing.rs`). (`merged_work_fails_with_its_carrier`,
//!   `a_merged_job_ends_with_a_carrier_that_crashed_before_settling_it`;
//!   model: `a job's record agrees with Jira when it ends`.)
//! * **Throttling is not failure**: the job waits as Jira asks and its
//!   retry budget is untouched. Transient failures back off and count;
//!   permanent failures end the job (`outcome.rs`). (`tests/governed_limits.rs`.)
//! * **Every job ends.** (Model: `every job ends` — no reachable state
//!   leaves a job unfinished with nothing left to do.)

mod bulk;
mod coalescing;
mod outcome;
mod reconcile;
mod steps;

use super::AppError;
use super::governor::{Pace, Ungoverned};
use crate::domain::audit::{AuditEntry, Stage};
use crate::domain::backoff::RetryPolicy;
use crate::domain::backoff::creator_wait;
use crate::domain::event::{Event, IfNoIssue, Priority};
use crate::domain::governor::CallKind;
use crate::domain::ids::{IssueKey, JobId};
use crate::domain::job::{JobEvent, JobState};
use crate::domain::plan::{LinkState, PlanError, Step, plan};
use crate::domain::time::Timestamp;
use crate::domain::validation::validate_event;
use crate::ports::{
    BatchStore, Clock, Fence, FieldRevisions, JobRecord, JobStore, Leases, LinkStore,
    MAX_BULK_CREATE, Tracker, TrackerError,
};
use outcome::Call;
use serde_json::json;
use std::future::Future;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// Who acts, for the audit trail (`worker-3`, a Lambda request id).
    pub worker: String,
    /// How long a lease lasts without renewal; renewed before every step
    /// and while a call is in flight, and never shorter than one call.
    pub lease_ttl: Duration,
    pub retry: RetryPolicy,
    /// How long after a create Jira's search may still miss the new issue.
    pub search_lag: Duration,
    /// The Jira client's timeout: a call whose answer was lost may still
    /// land until its start plus this.
    pub call_timeout: Duration,
    /// How long a job that names its issue only by external id waits for
    /// that issue's create to arrive (senders deliver out of order) before
    /// it fails for want of a target.
    pub target_wait: Duration,
    /// Most issues created in one call (Jira's bulk create takes 50); 1
    /// creates one at a time.
    pub bulk_create: usize,
    /// How often a paused batch's job (or a merged job whose carrier is
    /// still at work) looks again: each look is a queue receive, so on SQS
    /// it is kept long.
    pub paused_poll: Duration,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            worker: "executor".into(),
            lease_ttl: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            search_lag: Duration::from_secs(5),
            call_timeout: Duration::from_secs(30),
            target_wait: Duration::from_secs(300),
            bulk_create: MAX_BULK_CREATE,
            paused_poll: Duration::from_secs(30),
        }
    }
}

/// Time kept in hand beyond a call's timeout: a call starts only when its
/// timeout plus this fits in the lease and in the invocation.
const CALL_MARGIN: Duration = Duration::from_secs(2);

impl ExecutorConfig {
    /// The lease taken before a step: long enough for the call to finish.
    fn step_lease(&self) -> Duration {
        self.lease_ttl.max(self.call_timeout + CALL_MARGIN)
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

/// For log lines: words, not Rust's Debug rendering.
impl std::fmt::Display for Disposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Disposition::Done => f.write_str("done"),
            Disposition::RetryAfter(d) => write!(f, "back in {:.1} s", d.as_secs_f64()),
        }
    }
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
    /// When the invocation ends (Lambda): no Jira call starts unless it can
    /// finish before then. `None` on `serve`.
    pub deadline: Option<Timestamp>,
}

/// A lease as this run holds it: the fence its writes carry, and the
/// holder name it renews with.
#[derive(Debug, Clone)]
struct Held {
    fence: Fence,
    holder: String,
}

/// What a run will do: its steps, and for its composed edit the revision
/// (the job) each field's value comes from.
struct Plan {
    steps: Vec<Step>,
    revisions: FieldRevisions,
}

enum Prepared {
    Ready {
        plan: Plan,
        target: Option<IssueKey>,
    },
    /// The job cannot run now (or is over); the message's fate.
    Settled(Disposition),
}

enum Resolution {
    Ready {
        link: LinkState,
        target: Option<IssueKey>,
    },
    /// Another job is creating the entity's issue, or its create has not
    /// arrived yet: come back shortly.
    WaitForCreator,
    /// No issue and nothing on its way to create one, and the event says
    /// that means nothing to do: look in Jira once by the entity's label.
    LookUp,
}

/// What looking for an entity's issue in Jira found.
enum LookedUp {
    Found(IssueKey),
    Settled(Disposition),
}

/// A call's point, in the thousandths jobs count in.
const POINT: u64 = 1000;

/// What a job waiting for its entity's issue says it waits for.
const WAITING_FOR_ISSUE: &str = "waiting for this entity's issue to be created";

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
        if job.state == JobState::Merged {
            let d = self.follow_carrier(&mut job).await?;
            return Ok(RunReport::untouched(d, Some(job.state)));
        }
        if !job.state.is_runnable() {
            return Ok(RunReport::untouched(Disposition::Done, Some(job.state)));
        }
        // A wait holds whichever message brings the job back early.
        if job.state == JobState::Waiting
            && let Some(not_before) = job.not_before
        {
            let now = self.clock.now();
            if now < not_before {
                return Ok(RunReport::untouched(
                    Disposition::RetryAfter(now.until(not_before)),
                    Some(job.state),
                ));
            }
        }
        // A paused batch keeps its place: work not yet started stays as it
        // is and looks again shortly. (Work between steps finishes.)
        if job.steps_done == 0 && job.step_started.is_none() && self.batch_paused(&job).await? {
            return Ok(RunReport::untouched(
                Disposition::RetryAfter(self.config.paused_poll),
                Some(job.state),
            ));
        }
        let Some(held) = self.take_lease(&job).await? else {
            return Ok(RunReport::untouched(
                Disposition::RetryAfter(short_wait()),
                Some(job.state),
            ));
        };
        let throttles_before = job.throttles;
        let result = self.run_leased(&mut job, &held).await;
        self.release(&held).await;
        Ok(RunReport {
            disposition: result?,
            state: Some(job.state),
            throttled: job.throttles > throttles_before,
        })
    }

    /// Takes the lease on the job's entity under a holder name of its own.
    async fn take_lease(&self, job: &JobRecord) -> Result<Option<Held>, AppError> {
        let lease = lease_name(job);
        let holder = format!(
            "{}/{}/{}",
            self.config.worker,
            job.id,
            uuid::Uuid::new_v4().simple()
        );
        let token = self
            .store
            .acquire(&lease, &holder, self.config.step_lease())
            .await?;
        Ok(token.map(|token| Held {
            fence: Fence { lease, token },
            holder,
        }))
    }

    /// Renews the lease; false when another holder has it now.
    async fn renew(&self, held: &Held) -> Result<bool, AppError> {
        let token = self
            .store
            .acquire(&held.fence.lease, &held.holder, self.config.step_lease())
            .await?;
        Ok(token == Some(held.fence.token))
    }

    async fn release(&self, held: &Held) {
        if let Err(e) = self.store.release(&held.fence.lease, &held.holder).await {
            tracing::warn!(lease = %held.fence.lease, error = %e, "lease release failed; it will expire");
        }
    }

    /// Runs a Jira call while keeping the leases alive: a call outliving
    /// the lease must not let another worker in beside it.
    async fn held_through<F: Future>(&self, held: &[&Held], call: F) -> F::Output {
        let every = (self.config.step_lease() / 3).max(Duration::from_millis(50));
        tokio::pin!(call);
        loop {
            tokio::select! {
                out = &mut call => return out,
                () = tokio::time::sleep(every) => {
                    for h in held {
                        match self.renew(h).await {
                            Ok(true) => {}
                            Ok(false) => tracing::warn!(lease = %h.fence.lease, "lease lost while a Jira call was in flight; this run's next write will be refused"),
                            Err(e) => tracing::warn!(lease = %h.fence.lease, error = %e, "lease renewal failed while a Jira call was in flight"),
                        }
                    }
                }
            }
        }
    }

    /// Whether one more Jira call can finish before the invocation ends.
    fn call_fits(&self) -> bool {
        self.deadline.is_none_or(|d| {
            self.clock
                .now()
                .plus(self.config.call_timeout + CALL_MARGIN)
                <= d
        })
    }

    async fn run_leased(&self, job: &mut JobRecord, held: &Held) -> Result<Disposition, AppError> {
        let (plan, mut target) = match self.prepare(job, held).await? {
            Prepared::Ready { plan, target } => (plan, target),
            Prepared::Settled(d) => return Ok(d),
        };
        let next = job.steps_done as usize;
        if self.config.bulk_create > 1
            && job.step_started.is_none()
            && matches!(plan.steps.get(next), Some(Step::CreateIssue { .. }))
        {
            match self
                .bulk_create(job, held, &plan.steps, &mut target)
                .await?
            {
                bulk::BulkOutcome::Continue => {}
                bulk::BulkOutcome::Settled(d) => return Ok(d),
            }
        }
        self.run_steps(job, held, &plan, target).await
    }

    /// Takes the job from where it stands to a plan: marks it running,
    /// reads its event, finds its issue, and folds in pending work on the
    /// same entity. Settled when the job cannot run now.
    async fn prepare(&self, job: &mut JobRecord, held: &Held) -> Result<Prepared, AppError> {
        let from = job.state;
        job.not_before = None;
        // Another look of a job waiting for its entity's issue is not news:
        // its wait was recorded once.
        let looking_again = from == JobState::Waiting
            && job
                .last_error
                .as_deref()
                .is_some_and(|e| e.starts_with(WAITING_FOR_ISSUE));
        let entry = (!looking_again).then(|| {
            self.audit(
                Stage::Lease,
                if from == JobState::Running {
                    "resumed"
                } else {
                    "leased"
                },
            )
            .state(JobState::Running)
        });
        if !self
            .transition_noting(job, held, from, JobEvent::Lease, entry)
            .await?
        {
            return Ok(Prepared::Settled(Disposition::RetryAfter(short_wait())));
        }
        let event = match read_event(&job.payload) {
            Ok(event) => event,
            Err(e) => {
                let d = self
                    .fail(job, held, format!("stored payload is unreadable: {e}"))
                    .await?;
                return Ok(Prepared::Settled(d));
            }
        };
        let (link, target) = match self.resolve(job, &event).await? {
            Resolution::Ready { link, target } => (link, target),
            Resolution::LookUp => match self.look_up_entity(job, held).await? {
                LookedUp::Found(key) => (LinkState::Linked(key.clone()), Some(key)),
                LookedUp::Settled(d) => return Ok(Prepared::Settled(d)),
            },
            Resolution::WaitForCreator => {
                // Recorded once (and shown as the job's last word while it
                // waits), not at every look.
                let reason = format!(
                    "{WAITING_FOR_ISSUE}, until {}",
                    job.created_at.plus(self.config.target_wait).to_rfc3339()
                );
                let entry = (job.last_error.as_deref() != Some(reason.as_str()))
                    .then(|| self.audit(Stage::Lease, reason.clone()));
                job.last_error = Some(reason);
                let waited = job.created_at.until(self.clock.now());
                let wait = creator_wait(waited, short_wait() * 2);
                let d = self.defer_noting(job, held, wait, entry).await?;
                return Ok(Prepared::Settled(d));
            }
        };
        if job.issue_key.is_none() && target.is_some() {
            job.issue_key = target.clone();
        }
        let own = match plan(&event, &job.link, &link) {
            Ok(steps) => steps,
            Err(e @ PlanError::NoTarget) => {
                let d = self.fail(job, held, e.to_string()).await?;
                return Ok(Prepared::Settled(d));
            }
        };
        let plan = self.coalesced(job, held, &event, &link, own).await?;
        Ok(Prepared::Ready { plan, target })
    }

    /// Whether the job belongs to a batch an operator paused.
    async fn batch_paused(&self, job: &JobRecord) -> Result<bool, AppError> {
        let Some(batch) = &job.batch else {
            return Ok(false);
        };
        Ok(self.store.batch(batch).await?.is_some_and(|b| b.paused))
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
            if !creates
                && event.issue_key.is_none()
                && event.if_no_issue == IfNoIssue::Skip
                && !self.creator_on_its_way(job).await?
            {
                return Ok(Resolution::LookUp);
            }
            let waited_enough = self.clock.now() >= job.created_at.plus(self.config.target_wait);
            if !creates && event.issue_key.is_none() && !waited_enough {
                return Ok(Resolution::WaitForCreator);
            }
            return Ok(Resolution::Ready {
                link: LinkState::Unlinked,
                target: event.issue_key.clone(),
            });
        };
        if link.creator == job.id && creates {
            let target = link.issue_key.or_else(|| job.issue_key.clone());
            return Ok(Resolution::Ready {
                link: LinkState::Unlinked,
                target,
            });
        }
        if link.creator == job.id && link.issue_key.is_none() {
            // Its own look-up claimed the entity and did not get to record
            // the issue: look again.
            return Ok(Resolution::LookUp);
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

    /// Whether another job of the entity may still create its issue.
    async fn creator_on_its_way(&self, job: &JobRecord) -> Result<bool, AppError> {
        Ok(self.store.entity_jobs(&job.link).await?.iter().any(|j| {
            j.id != job.id
                && j.kind.creates()
                && (!j.state.is_terminal() || j.state == JobState::Exhausted)
        }))
    }

    /// Looks for the entity's issue in Jira once, by its label (an issue
    /// made before tollgate, or by another instance). None there: the job
    /// is over, with nothing to do.
    async fn look_up_entity(&self, job: &mut JobRecord, held: &Held) -> Result<LookedUp, AppError> {
        let label = job.link.label();
        let what = format!("look for the issue labelled {label}");
        let kind = CallKind {
            endpoint: "POST /rest/api/3/search/jql".into(),
            write: false,
            issue: None,
            bulk: job.priority == Priority::Bulk,
        };
        if let Err(e) = self.governor.permit(&kind).await {
            let d = self.on_error(job, held, &what, e, Call::Reconcile).await?;
            return Ok(LookedUp::Settled(d));
        }
        if !self.call_fits() {
            let entry = self.audit(
                Stage::Jira,
                "no time left in this invocation for a whole Jira call",
            );
            return Ok(LookedUp::Settled(
                self.defer(job, held, short_wait(), entry).await?,
            ));
        }
        let found = self
            .held_through(&[held], self.tracker.find_by_label(&label))
            .await;
        self.observe_read(job, &kind, found.as_ref().map(|_| ()))
            .await;
        match found {
            Ok(a) => match a.value.into_iter().next() {
                Some(key) => {
                    let entry = self.audit(
                        Stage::Reconcile,
                        format!(
                            "no issue was made through tollgate; found {key} in Jira by its label"
                        ),
                    );
                    self.store.append_audit(&job.id, &entry).await?;
                    // Later work on the entity finds it without a search.
                    let link = self.store.claim_link(&job.link, &job.id).await?;
                    if link.creator == job.id && link.issue_key.is_none() {
                        self.store
                            .set_link_issue(&job.link, &job.id, &key, &held.fence)
                            .await?;
                    }
                    Ok(LookedUp::Found(key))
                }
                None => {
                    let entry = self
                        .audit(
                            Stage::Outcome,
                            format!("nothing to resolve: no issue exists for this entity, in tollgate or in Jira (label {label})"),
                        )
                        .state(JobState::Succeeded);
                    job.last_error = None;
                    self.transition(job, held, JobState::Running, JobEvent::Succeed, entry)
                        .await?;
                    Ok(LookedUp::Settled(Disposition::Done))
                }
            },
            Err(e) => Ok(LookedUp::Settled(
                self.on_error(job, held, &what, e, Call::Reconcile).await?,
            )),
        }
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

/// The issue property set with every create: finds the issue after a lost
/// answer, and names the job that made it.
fn property(job: &JobRecord, label: &str) -> Vec<(String, serde_json::Value)> {
    vec![(
        "tollgate".to_string(),
        json!({ "link": job.link.as_str(), "job": job.id.as_str(), "label": label }),
    )]
}

/// The comment property value that identifies one step of one job.
fn marker(job: &JobRecord, index: u32) -> String {
    format!("{}:{index}", job.id)
}
