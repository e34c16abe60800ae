//! The job state machine of DESIGN.md. States change only through
//! [`JobState::apply`], which refuses every transition the diagram does not
//! draw; stores make the change conditional on the state they read.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    Received,
    /// Invalid input, kept for an operator to fix and re-submit.
    Rejected,
    PendingApproval,
    Denied,
    Expired,
    Queued,
    Running,
    /// Throttled or transiently failed; back when its wait ends.
    Waiting,
    /// The retry budget is spent; re-runnable by an operator or a schedule.
    Exhausted,
    Failed,
    Succeeded,
    /// Its changes ride in another job's run (`mergedInto`, the carrier):
    /// not over until the carrier has put them in Jira, and it follows the
    /// carrier's outcome.
    Merged,
    /// Its changes are in Jira, put there by the carrier's run.
    Superseded,
    /// An operator ended it before it ran (or while it waited); nothing of
    /// it went to Jira after that.
    Cancelled,
}

/// What happened to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobEvent {
    Accept,
    Reject,
    RequireApproval,
    Approve,
    Deny,
    Expire,
    /// A worker took the lease (also a resumption after a crashed worker).
    Lease,
    /// Throttled or transient failure: wait, then run again.
    Defer,
    Exhaust,
    Fail,
    Succeed,
    /// Another job's run takes over this one's changes.
    Merge,
    /// The carrier put the merged changes in Jira.
    Supersede,
    /// An operator or the re-run schedule puts exhausted (or, by an
    /// operator, failed) work back.
    Requeue,
    /// An operator ends work that waits: queued, waiting, for approval, or
    /// riding in a carrier that was cancelled.
    Cancel,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {from} job cannot {event:?}")]
pub struct IllegalTransition {
    pub from: JobState,
    pub event: JobEvent,
}

impl JobState {
    pub const ALL: [JobState; 14] = [
        JobState::Received,
        JobState::Rejected,
        JobState::PendingApproval,
        JobState::Denied,
        JobState::Expired,
        JobState::Queued,
        JobState::Running,
        JobState::Waiting,
        JobState::Exhausted,
        JobState::Failed,
        JobState::Succeeded,
        JobState::Merged,
        JobState::Superseded,
        JobState::Cancelled,
    ];

    /// States a worker acts on (the others wait for a person, or are over).
    pub fn is_runnable(self) -> bool {
        matches!(
            self,
            JobState::Queued | JobState::Waiting | JobState::Running
        )
    }

    pub fn apply(self, event: JobEvent) -> Result<JobState, IllegalTransition> {
        use JobEvent as E;
        use JobState as S;
        let next = match (self, event) {
            (S::Received, E::Accept) => S::Queued,
            (S::Received, E::Reject) => S::Rejected,
            (S::Received, E::RequireApproval) => S::PendingApproval,
            (S::PendingApproval, E::Approve) => S::Queued,
            (S::PendingApproval, E::Deny) => S::Denied,
            (S::PendingApproval, E::Expire) => S::Expired,
            (S::Queued | S::Waiting | S::Running, E::Lease) => S::Running,
            // Only work that has not started a step is merged (checked by
            // the executor); a running one only when its worker is gone —
            // the carrier holds the entity's lease.
            (S::Queued | S::Waiting | S::Running, E::Merge) => S::Merged,
            (S::Merged, E::Supersede) => S::Superseded,
            (S::Merged, E::Fail) => S::Failed,
            (S::Running, E::Defer) => S::Waiting,
            (S::Running, E::Exhaust) => S::Exhausted,
            // Its queue message kept failing to run (the dead-letter queue).
            (S::Queued | S::Waiting, E::Exhaust) => S::Exhausted,
            (S::Running, E::Fail) => S::Failed,
            (S::Running, E::Succeed) => S::Succeeded,
            (S::Exhausted | S::Failed, E::Requeue) => S::Queued,
            (S::Queued | S::Waiting | S::PendingApproval | S::Merged, E::Cancel) => S::Cancelled,
            (from, event) => return Err(IllegalTransition { from, event }),
        };
        Ok(next)
    }

    /// No event moves a terminal job (an exhausted one only by an operator).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Rejected
                | JobState::Denied
                | JobState::Expired
                | JobState::Failed
                | JobState::Succeeded
                | JobState::Superseded
                | JobState::Exhausted
                | JobState::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Received => "RECEIVED",
            JobState::Rejected => "REJECTED",
            JobState::PendingApproval => "PENDING_APPROVAL",
            JobState::Denied => "DENIED",
            JobState::Expired => "EXPIRED",
            JobState::Queued => "QUEUED",
            JobState::Running => "RUNNING",
            JobState::Waiting => "WAITING",
            JobState::Exhausted => "EXHAUSTED",
            JobState::Failed => "FAILED",
            JobState::Succeeded => "SUCCEEDED",
            JobState::Merged => "MERGED",
            JobState::Superseded => "SUPERSEDED",
            JobState::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobEvent as E;
    use JobState as S;

    #[test]
    fn the_happy_path_goes_from_received_to_succeeded() {
        let s = S::Received.apply(E::Accept).unwrap();
        let s = s.apply(E::Lease).unwrap();
        assert_eq!(s.apply(E::Succeed), Ok(S::Succeeded));
    }

    #[test]
    fn a_throttled_job_waits_and_runs_again() {
        let s = S::Running.apply(E::Defer).unwrap();
        assert_eq!(s, S::Waiting);
        assert_eq!(s.apply(E::Lease), Ok(S::Running));
    }

    #[test]
    fn approval_leads_to_queued_or_a_terminal_state() {
        let p = S::Received.apply(E::RequireApproval).unwrap();
        assert_eq!(p.apply(E::Approve), Ok(S::Queued));
        assert_eq!(p.apply(E::Deny), Ok(S::Denied));
        assert_eq!(p.apply(E::Expire), Ok(S::Expired));
        assert!(p.apply(E::Lease).is_err(), "unapproved work must never run");
    }

    #[test]
    fn terminal_states_accept_no_event_except_an_operators_requeue_of_exhausted_or_failed_work() {
        let all_events = [
            E::Accept,
            E::Reject,
            E::RequireApproval,
            E::Approve,
            E::Deny,
            E::Expire,
            E::Lease,
            E::Defer,
            E::Exhaust,
            E::Fail,
            E::Succeed,
            E::Merge,
            E::Supersede,
            E::Requeue,
            E::Cancel,
        ];
        for state in S::ALL.into_iter().filter(|s| s.is_terminal()) {
            for event in all_events {
                let allowed = matches!(state, S::Exhausted | S::Failed) && event == E::Requeue;
                assert_eq!(state.apply(event).is_ok(), allowed, "{state} {event:?}");
            }
        }
    }

    #[test]
    fn only_work_that_has_not_started_a_call_can_be_cancelled() {
        for from in [S::Queued, S::Waiting, S::PendingApproval, S::Merged] {
            assert_eq!(from.apply(E::Cancel), Ok(S::Cancelled), "{from}");
        }
        assert!(
            S::Running.apply(E::Cancel).is_err(),
            "a running job's call may be in Jira already"
        );
        assert!(S::Cancelled.is_terminal());
        assert!(
            S::Cancelled.apply(E::Requeue).is_err(),
            "cancelled is final"
        );
    }

    #[test]
    fn merged_work_is_over_only_when_its_carrier_is() {
        for from in [S::Queued, S::Waiting, S::Running] {
            assert_eq!(from.apply(E::Merge), Ok(S::Merged));
        }
        assert!(!S::Merged.is_terminal(), "its changes are not in Jira yet");
        assert!(!S::Merged.is_runnable(), "its carrier runs it");
        assert_eq!(S::Merged.apply(E::Supersede), Ok(S::Superseded));
        assert_eq!(S::Merged.apply(E::Fail), Ok(S::Failed));
        assert!(
            S::Queued.apply(E::Supersede).is_err(),
            "only a carrier's success supersedes"
        );
        assert!(S::PendingApproval.apply(E::Merge).is_err());
    }

    #[test]
    fn state_names_round_trip_and_serialize_as_in_the_design() {
        for s in S::ALL {
            assert_eq!(S::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
        }
    }
}
