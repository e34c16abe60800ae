//! The bulk carrier: queued creates leave together in one bulk create call
//! (Jira takes 50). Rules:
//!
//! * Each partner is leased on its own entity (with its own fence) and
//!   prepared like a job of its own; a partner whose start mark cannot be
//!   written stays out of the call.
//! * Every lease in the call — the carrier's and each partner's — is renewed
//!   while the call is in flight.
//! * Every element's outcome is written under its own job's fence; after the
//!   call each partner goes on with its remaining steps under its lease.
//! * An answer lost as a whole leaves every member's start mark: each
//!   reconciles by its own label before anything is created again.
//! * Partners are distinct entities, so their store work — gathering,
//!   start marks, outcomes, remaining steps — runs [`PARTNER_CONCURRENCY`]
//!   at a time; each partner's own writes keep their order. (One by one, a
//!   carrier of 50 spent ~20 s in store round trips on a slow store.)

use super::outcome::Call;
use super::steps::Next;
use super::{Disposition, Executor, Held, POINT, Prepared, property, short_wait};
use crate::app::AppError;
use crate::app::governor::Pace;
use crate::domain::audit::Stage;
use crate::domain::event::Priority;
use crate::domain::governor::CallKind;
use crate::domain::ids::IssueKey;
use crate::domain::job::JobState;
use crate::domain::plan::Step;
use crate::domain::response::summarize;
use crate::ports::{
    BatchStore, Clock, ElementError, JobRecord, JobStore, Leases, LinkStore, MAX_BULK_CREATE,
    NewIssueRequest, Tracker, TrackerError,
};
use futures_util::{StreamExt, TryStreamExt};

/// Partners whose store work is in flight at once.
pub const PARTNER_CONCURRENCY: usize = 8;

pub(super) enum BulkOutcome {
    /// The create is done (or was never bundled): go on with the steps.
    Continue,
    Settled(Disposition),
}

/// Another job whose create rides in this job's bulk call.
struct Partner {
    job: JobRecord,
    plan: super::Plan,
    target: Option<IssueKey>,
    held: Held,
    /// False when its start mark could not be written: left out of the call.
    in_call: bool,
}

impl<S, T, C, G> Executor<'_, S, T, C, G>
where
    S: JobStore + LinkStore + Leases + BatchStore,
    T: Tracker,
    C: Clock,
    G: Pace,
{
    /// Creates this job's issue together with other queued creates in one
    /// bulk call. Each partner is leased and prepared like a job of its own;
    /// after the call every one of them goes on with its remaining steps.
    pub(super) async fn bulk_create(
        &self,
        job: &mut JobRecord,
        held: &Held,
        steps: &[Step],
        target: &mut Option<IssueKey>,
    ) -> Result<BulkOutcome, AppError> {
        let mut partners: Vec<Partner> = Vec::new();
        let wanted = self.config.bulk_create.min(MAX_BULK_CREATE) - 1;
        // Workers gathering at once start at different places in the list,
        // so they do not all fight over the same leases.
        let mut candidates = self.store.queued_creates(wanted * 4).await?;
        fastrand::shuffle(&mut candidates);
        // One job per entity in a call (the carrier's entity is taken).
        let mut links = vec![job.link.clone()];
        candidates.retain(|c| {
            let fresh = c.id != job.id && !links.contains(&c.link);
            if fresh {
                links.push(c.link.clone());
            }
            fresh
        });
        let mut pending = candidates.into_iter();
        while partners.len() < wanted {
            // Never more at once than still wanted: nobody is prepared in
            // vain.
            let chunk: Vec<JobRecord> = pending.by_ref().take(wanted - partners.len()).collect();
            if chunk.is_empty() {
                break;
            }
            let tries: Vec<_> = chunk.into_iter().map(|c| self.partner(c)).collect();
            let tried: Vec<Result<Option<Partner>, AppError>> = futures_util::stream::iter(tries)
                .buffer_unordered(PARTNER_CONCURRENCY)
                .collect()
                .await;
            let mut failed = None;
            for t in tried {
                match t {
                    Ok(Some(p)) => partners.push(p),
                    Ok(None) => {}
                    Err(e) => failed = Some(e),
                }
            }
            if let Some(e) = failed {
                for p in &partners {
                    self.release(&p.held).await;
                }
                return Err(e);
            }
        }
        if partners.is_empty() {
            return Ok(BulkOutcome::Continue);
        }
        let outcome = self
            .bulk_call(job, held, steps, target, &mut partners)
            .await;
        let go_on = matches!(outcome, Ok(BulkOutcome::Continue));
        let finishing: Vec<_> = partners
            .into_iter()
            .map(|p| self.finish_partner(p, go_on))
            .collect();
        futures_util::stream::iter(finishing)
            .buffer_unordered(PARTNER_CONCURRENCY)
            .collect::<Vec<()>>()
            .await;
        outcome
    }

    /// After the call: a partner in it goes on with its remaining steps
    /// (when the call went through), then its lease is let go.
    async fn finish_partner(&self, mut p: Partner, go_on: bool) {
        if go_on && p.in_call && p.job.state == JobState::Running {
            let r = self
                .run_steps(&mut p.job, &p.held, &p.plan, p.target.clone())
                .await;
            if let Err(e) = r {
                tracing::warn!(job_id = %p.job.id, error = %e, "bulk partner's remaining steps failed; its message retries");
            }
        }
        self.release(&p.held).await;
    }

    /// A partner's start mark; false (and out of the call) when another
    /// writer moved it meanwhile.
    async fn mark_start(
        &self,
        p: &mut Partner,
        now: crate::domain::time::Timestamp,
    ) -> Result<bool, AppError> {
        p.job.step_started = Some((0, now));
        let saved = self.save_progress(&p.job, &p.held).await?;
        p.in_call = saved;
        Ok(saved)
    }

    /// A partner's element of the answer, under its own fence.
    async fn record_partner(
        &self,
        p: &mut Partner,
        element: &Result<IssueKey, ElementError>,
        n: usize,
        response: &(
             dyn Fn(&Result<IssueKey, ElementError>) -> crate::domain::audit::ResponseSummary + Sync
         ),
    ) -> Result<(), AppError> {
        let step = p.plan.steps[0].clone();
        let mut key = None;
        let settled = self
            .record_element(&mut p.job, &p.held, step, element, n, response, &mut key)
            .await?;
        match (element, settled) {
            (Ok(_), None) => p.target = key,
            // The partner's lease was taken over: its new holder
            // reconciles by the label.
            (Ok(_), Some(_)) => p.in_call = false,
            (Err(_), _) => {}
        }
        Ok(())
    }

    /// A queued create leased and prepared to ride in the call, or `None`
    /// (paused batch, lease taken, moved meanwhile, not a fresh create) with
    /// nothing held.
    async fn partner(&self, candidate: JobRecord) -> Result<Option<Partner>, AppError> {
        if self.batch_paused(&candidate).await? {
            return Ok(None);
        }
        let Some(held) = self.take_lease(&candidate).await? else {
            return Ok(None);
        };
        // Read again under the lease: it may have moved meanwhile.
        let mut other = match self.store.job(&candidate.id).await {
            Ok(Some(j)) if j.state == JobState::Queued => j,
            Ok(_) => {
                self.release(&held).await;
                return Ok(None);
            }
            Err(e) => {
                self.release(&held).await;
                return Err(e.into());
            }
        };
        match self.prepare(&mut other, &held).await {
            Ok(Prepared::Ready { plan, target })
                if other.steps_done == 0
                    && other.step_started.is_none()
                    && matches!(plan.steps.first(), Some(Step::CreateIssue { .. })) =>
            {
                Ok(Some(Partner {
                    job: other,
                    plan,
                    target,
                    held,
                    in_call: true,
                }))
            }
            // Prepared but not a create after all: it resumes when its own
            // message comes.
            Ok(_) => {
                self.release(&held).await;
                Ok(None)
            }
            Err(e) => {
                self.release(&held).await;
                Err(e)
            }
        }
    }

    async fn bulk_call(
        &self,
        job: &mut JobRecord,
        held: &Held,
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
        let refused = if let Err(e) = self.governor.permit(&kind).await {
            Some(e)
        } else if !self.call_fits() {
            Some(TrackerError::Held {
                wait: short_wait(),
                reason: "no time left in this invocation for a whole Jira call".into(),
            })
        } else {
            None
        };
        if let Some(e) = refused {
            for p in partners.iter_mut() {
                let s = p.plan.steps[0].clone();
                self.on_error(&mut p.job, &p.held, &s, e.clone(), Call::Step)
                    .await?;
            }
            return Ok(BulkOutcome::Settled(
                self.on_error(job, held, step, e, Call::Step).await?,
            ));
        }
        // Start marks first: an answer lost from here on is looked for by
        // each job's label before anything is created again.
        let now = self.clock.now();
        job.step_started = Some((job.steps_done, now));
        if !self.save_progress(job, held).await? {
            return Ok(BulkOutcome::Settled(Disposition::RetryAfter(short_wait())));
        }
        let marking: Vec<_> = partners
            .iter_mut()
            .map(|p| self.mark_start(p, now))
            .collect();
        let marked: Vec<bool> = futures_util::stream::iter(marking)
            .buffered(PARTNER_CONCURRENCY)
            .try_collect()
            .await?;
        let members: Vec<usize> = (0..partners.len()).filter(|&i| marked[i]).collect();
        let mut requests = vec![create_request(job, step)];
        for &i in &members {
            requests.push(create_request(&partners[i].job, &partners[i].plan.steps[0]));
        }
        let mut holdings: Vec<&Held> = vec![held];
        holdings.extend(members.iter().map(|&i| &partners[i].held));
        let result = self
            .held_through(&holdings, self.tracker.create_issues(&requests))
            .await;
        self.governor
            .observe(&kind, result.as_ref().map(|a| &a.signal))
            .await;
        let answer = match result {
            Ok(a) => a,
            Err(e) => {
                for &i in &members {
                    let p = &mut partners[i];
                    let s = p.plan.steps[0].clone();
                    self.on_error(&mut p.job, &p.held, &s, e.clone(), Call::Step)
                        .await?;
                }
                return Ok(BulkOutcome::Settled(
                    self.on_error(job, held, step, e, Call::Step).await?,
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
        // The carrier's own element, then its partners' (each under its
        // own fence, several at once).
        let own = match answer.value.first() {
            Some(element) => {
                self.record_element(job, held, step.clone(), element, n, &response, target)
                    .await?
            }
            None => None,
        };
        let riding = partners
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| members.contains(i))
            .map(|(_, p)| p)
            .zip(answer.value.iter().skip(1));
        let recording: Vec<_> = riding
            .map(|(p, element)| self.record_partner(p, element, n, &response))
            .collect();
        futures_util::stream::iter(recording)
            .buffer_unordered(PARTNER_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(match own {
            Some(d) => BulkOutcome::Settled(d),
            None => BulkOutcome::Continue,
        })
    }

    /// One element of the answer, written under its job's fence: the issue
    /// recorded (and `target` set when the job goes on), or the refusal as
    /// the step's failure. `Some` when the job stops here.
    #[allow(clippy::too_many_arguments)]
    async fn record_element(
        &self,
        member: &mut JobRecord,
        member_held: &Held,
        member_step: Step,
        element: &Result<IssueKey, ElementError>,
        n: usize,
        response: &(
             dyn Fn(&Result<IssueKey, ElementError>) -> crate::domain::audit::ResponseSummary + Sync
         ),
        target: &mut Option<IssueKey>,
    ) -> Result<Option<Disposition>, AppError> {
        let index = member.steps_done;
        match element {
            Ok(key) => {
                let entry = self
                    .audit(Stage::Jira, format!("done (bulk create of {n})"))
                    .intent(member_step.to_string())
                    .response(response(element));
                match self
                    .checkpoint(member, member_held, index, Some(key), entry)
                    .await?
                {
                    Next::Go => {
                        *target = Some(key.clone());
                        Ok(None)
                    }
                    Next::Stop(d) => Ok(Some(d)),
                }
            }
            Err(e) => {
                let err = element_error(e);
                Ok(Some(
                    self.on_error(member, member_held, &member_step, err, Call::Step)
                        .await?,
                ))
            }
        }
    }
}

fn create_request(job: &JobRecord, step: &Step) -> NewIssueRequest {
    let (fields, label) = match step {
        Step::CreateIssue { fields, label } => (fields.clone(), label.as_str()),
        _ => (Default::default(), ""),
    };
    NewIssueRequest {
        fields,
        properties: property(job, label),
    }
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
