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
            let Some(partner_held) = self.take_lease(&candidate).await? else {
                continue;
            };
            // Read again under the lease: it may have moved meanwhile.
            let mut other = match self.store.job(&candidate.id).await? {
                Some(j) if j.state == JobState::Queued => j,
                _ => {
                    self.release(&partner_held).await;
                    continue;
                }
            };
            match self.prepare(&mut other, &partner_held).await? {
                Prepared::Ready { plan, target }
                    if other.steps_done == 0
                        && other.step_started.is_none()
                        && matches!(plan.steps.first(), Some(Step::CreateIssue { .. })) =>
                {
                    links.push(other.link.clone());
                    partners.push(Partner {
                        job: other,
                        plan,
                        target,
                        held: partner_held,
                        in_call: true,
                    });
                }
                // Prepared but not a create after all: it resumes when its
                // own message comes.
                _ => self.release(&partner_held).await,
            }
        }
        if partners.is_empty() {
            return Ok(BulkOutcome::Continue);
        }
        let outcome = self
            .bulk_call(job, held, steps, target, &mut partners)
            .await;
        for mut p in partners {
            if matches!(outcome, Ok(BulkOutcome::Continue))
                && p.in_call
                && p.job.state == JobState::Running
            {
                let r = self
                    .run_steps(&mut p.job, &p.held, &p.plan, p.target.clone())
                    .await;
                if let Err(e) = r {
                    tracing::warn!(job_id = %p.job.id, error = %e, "bulk partner's remaining steps failed; its message retries");
                }
            }
            self.release(&p.held).await;
        }
        outcome
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
        let mut members: Vec<usize> = Vec::new();
        for (i, p) in partners.iter_mut().enumerate() {
            p.job.step_started = Some((0, now));
            if self.save_progress(&p.job, &p.held).await? {
                members.push(i);
            } else {
                // Moved by someone else meanwhile: not ours to go on with.
                p.in_call = false;
            }
        }
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
        let mut own = None;
        for (slot, element) in answer.value.iter().enumerate() {
            let (member, member_held, member_step) = if slot == 0 {
                (&mut *job, held, step.clone())
            } else {
                let p = &mut partners[members[slot - 1]];
                (&mut p.job, &p.held, p.plan.steps[0].clone())
            };
            let index = member.steps_done;
            match element {
                Ok(key) => {
                    let entry = self
                        .audit(Stage::Jira, format!("done (bulk create of {n})"))
                        .intent(member_step.to_string())
                        .response(response(element));
                    let next = self
                        .checkpoint(member, member_held, index, Some(key), entry)
                        .await?;
                    match (slot, next) {
                        (0, Next::Go) => *target = Some(key.clone()),
                        (0, Next::Stop(d)) => own = Some(d),
                        (_, Next::Go) => partners[members[slot - 1]].target = Some(key.clone()),
                        // The partner's lease was taken over: its new
                        // holder reconciles by the label.
                        (_, Next::Stop(_)) => partners[members[slot - 1]].in_call = false,
                    }
                }
                Err(e) => {
                    let err = element_error(e);
                    let d = self
                        .on_error(member, member_held, &member_step, err, Call::Step)
                        .await?;
                    if slot == 0 {
                        own = Some(d);
                    }
                }
            }
        }
        Ok(match own {
            Some(d) => BulkOutcome::Settled(d),
            None => BulkOutcome::Continue,
        })
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
