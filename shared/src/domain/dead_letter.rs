//! Work whose queue message reached the dead-letter queue.
//!
//! SQS moves a message there after `maxReceiveCount` receives that did not
//! end in a delete: its job never finished a run. A job that may still run
//! is sent again a few times (a bad deploy, a store outage); after that it
//! is EXHAUSTED with the reason, so it is announced, ticketed and waits for
//! an operator like work that spent its retries. Nothing is parked silently.

use super::job::JobState;

/// Times one job is sent again from the dead-letter queue before it is
/// given up on.
pub const MAX_REDRIVES: usize = 3;

/// The audit outcome of a re-drive; counted to know how often it happened.
pub const REDRIVEN: &str = "re-driven from the dead-letter queue";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterAction {
    /// Sent to the work queue again.
    Redrive,
    /// Ended EXHAUSTED, with the reason.
    GiveUp,
    /// Nothing to run (the job ended, or is gone): the message is removed.
    Drop,
}

/// What becomes of a job found in the dead-letter queue, re-driven
/// `redrives` times before.
pub fn action(state: Option<JobState>, redrives: usize) -> DeadLetterAction {
    match state {
        Some(s) if s.is_runnable() && redrives < MAX_REDRIVES => DeadLetterAction::Redrive,
        Some(s) if s.is_runnable() => DeadLetterAction::GiveUp,
        _ => DeadLetterAction::Drop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runnable_work_is_sent_again_a_few_times_then_given_up_with_a_reason() {
        assert_eq!(action(Some(JobState::Queued), 0), DeadLetterAction::Redrive);
        assert_eq!(
            action(Some(JobState::Waiting), MAX_REDRIVES - 1),
            DeadLetterAction::Redrive
        );
        assert_eq!(
            action(Some(JobState::Running), MAX_REDRIVES),
            DeadLetterAction::GiveUp
        );
    }

    #[test]
    fn finished_or_missing_work_is_dropped() {
        assert_eq!(action(Some(JobState::Succeeded), 0), DeadLetterAction::Drop);
        assert_eq!(action(Some(JobState::Merged), 0), DeadLetterAction::Drop);
        assert_eq!(action(None, 0), DeadLetterAction::Drop);
    }
}
