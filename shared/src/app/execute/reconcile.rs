//! Reconciling an ambiguous call: a step whose start mark is set and whose
//! answer was never recorded may or may not have changed Jira. Rules:
//!
//! * Look for the effect first, by what the call itself set: the label and
//!   issue property of a create or sub-task, the comment property of a
//!   comment, the anchor a page or page comment carries. Never by title or
//!   body alone: another writer's page or comment is not ours.
//! * Found → the step is done (its checkpoint is written).
//! * Not found → the call may still land until its start plus the Jira
//!   timeout (Jira keeps working after the client gave up), and Jira's
//!   search may miss it for the search lag after that: wait until both have
//!   passed, then repeat the call.

use super::outcome::Call;
use super::{Disposition, Executor, Held, marker};
use crate::app::AppError;
use crate::app::governor::Pace;
use crate::domain::audit::Stage;
use crate::domain::event::Priority;
use crate::domain::ids::IssueKey;
use crate::domain::plan::Step;
use crate::domain::time::Timestamp;
use crate::ports::{
    BatchStore, Clock, JobRecord, JobStore, Leases, LinkStore, Tracker, TrackerError,
};

pub(super) enum Reconciled {
    /// The earlier attempt landed (with the issue it created, for a create).
    Found(Option<IssueKey>),
    /// It did not, and cannot land any more: make the call.
    Repeat,
    /// Not known yet, or the read failed: the message's fate.
    Settled(Disposition),
}

/// What a read found.
enum Looked {
    Found(Option<IssueKey>),
    NotFound,
}

/// When a call started at `started` can no longer land unseen: its timeout
/// (the server may finish it after the client gave up) plus the time Jira's
/// search takes to show it.
pub fn ambiguity_ends(
    started: Timestamp,
    call_timeout: std::time::Duration,
    search_lag: std::time::Duration,
) -> Timestamp {
    started.plus(call_timeout).plus(search_lag)
}

impl<S, T, C, G> Executor<'_, S, T, C, G>
where
    S: JobStore + LinkStore + Leases + BatchStore,
    T: Tracker,
    C: Clock,
    G: Pace,
{
    pub(super) async fn reconcile_step(
        &self,
        job: &mut JobRecord,
        held: &Held,
        step: &Step,
        target: Option<&IssueKey>,
        index: u32,
        started: Timestamp,
    ) -> Result<Reconciled, AppError> {
        let kind = step.reconcile_call_kind(target, job.priority == Priority::Bulk);
        if let Err(e) = self.governor.permit(&kind).await {
            return Ok(Reconciled::Settled(
                self.on_error(job, held, step, e, Call::Reconcile).await?,
            ));
        }
        let looked = self
            .held_through(&[held], self.look(step, target, job, index, started))
            .await;
        self.observe_read(job, &kind, looked.as_ref().map(|_| ()))
            .await;
        match looked {
            Ok(Looked::Found(created)) => Ok(Reconciled::Found(created)),
            Ok(Looked::NotFound) => {
                let ends =
                    ambiguity_ends(started, self.config.call_timeout, self.config.search_lag);
                let now = self.clock.now();
                if now < ends {
                    let entry = self.audit(
                        Stage::Reconcile,
                        format!(
                            "earlier attempt not visible yet; it may still land until {} ms from now (call timeout + search lag): waiting before repeating it",
                            now.until(ends).as_millis()
                        ),
                    );
                    return Ok(Reconciled::Settled(
                        self.defer(job, held, now.until(ends), entry).await?,
                    ));
                }
                Ok(Reconciled::Repeat)
            }
            Err(e) => Ok(Reconciled::Settled(
                self.on_error(job, held, step, e, Call::Reconcile).await?,
            )),
        }
    }

    /// Looks in Jira (or Confluence) for the effect of the step's earlier
    /// attempt, by the marks that attempt set.
    async fn look(
        &self,
        step: &Step,
        target: Option<&IssueKey>,
        job: &JobRecord,
        index: u32,
        started: Timestamp,
    ) -> Result<Looked, TrackerError> {
        let marker = marker(job, index);
        match step {
            Step::CreateIssue { label, .. } => {
                let found = self.tracker.find_by_label(label).await?.value;
                Ok(found
                    .into_iter()
                    .next()
                    .map_or(Looked::NotFound, |k| Looked::Found(Some(k))))
            }
            Step::CreateChild { label, .. } => {
                let found = self.tracker.find_by_label(label).await?.value;
                Ok(if found.is_empty() {
                    Looked::NotFound
                } else {
                    Looked::Found(None)
                })
            }
            Step::Comment { .. } => match target {
                Some(key) if self.tracker.has_comment(key, &marker, started).await?.value => {
                    Ok(Looked::Found(None))
                }
                _ => Ok(Looked::NotFound),
            },
            Step::CreatePage {
                space_id, title, ..
            } => Ok(
                match self
                    .tracker
                    .find_page(space_id, title, &marker)
                    .await?
                    .value
                {
                    Some(_) => Looked::Found(None),
                    None => Looked::NotFound,
                },
            ),
            Step::PageComment { page_id, .. } => Ok(
                if self.tracker.has_page_comment(page_id, &marker).await?.value {
                    Looked::Found(None)
                } else {
                    Looked::NotFound
                },
            ),
            Step::Edit { .. } | Step::Transition { .. } => Ok(Looked::NotFound),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_lost_call_may_land_until_its_timeout_and_the_search_lag_have_passed() {
        let started = Timestamp(1_000_000);
        let ends = ambiguity_ends(started, Duration::from_secs(30), Duration::from_secs(5));
        assert_eq!(ends, Timestamp(1_035_000));
        // The old rule counted the lag alone from the start mark: a create
        // Jira finished at 31 s was repeated at 30 s.
        assert!(Timestamp(1_031_000) < ends);
    }
}
