//! What happens after a job ends badly, decided from the job and its audit
//! trail alone (each follow-up leaves a marker there, so it happens once):
//!
//! * EXHAUSTED — its retry budget spent: tell people (a notification), file
//!   a "Rate limit exceeded" task in the configured project unless the site
//!   is paused (Jira would refuse it too; the task follows once it is not),
//!   and after a re-run window put the job back in the queue, a bounded
//!   number of times; past that it waits for an operator.
//! * FAILED after a step already changed Jira — compensate: a comment on the
//!   issue saying the automation is incomplete, so nobody trusts a half
//!   update.

use super::job::JobState;
use super::time::Timestamp;
use std::time::Duration;

/// Audit outcomes that mark a follow-up as done.
pub const REPORTED: &str = "exhaustion reported";
pub const TICKET_FILED: &str = "rate-limit task requested";
pub const RERUN: &str = "re-run automatically";
pub const COMPENSATED: &str = "compensation requested";
pub const OPERATOR_RERUN: &str = "re-queued by operator";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUpPolicy {
    /// How long an exhausted job rests before it is re-run.
    pub rerun_after: Duration,
    /// Automatic re-runs per job (operators may re-run any time).
    pub max_reruns: u32,
    /// Where "Rate limit exceeded" tasks go; none: notifications only.
    pub ticket_project: Option<String>,
}

impl Default for FollowUpPolicy {
    fn default() -> Self {
        FollowUpPolicy {
            rerun_after: Duration::from_secs(30 * 60),
            max_reruns: 3,
            ticket_project: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUp {
    Notify,
    /// File the task in the policy's project.
    Ticket,
    /// The `nth` automatic re-run.
    Rerun {
        nth: u32,
    },
    Compensate,
}

/// For log lines and audit entries: words.
impl std::fmt::Display for FollowUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FollowUp::Notify => f.write_str("notify"),
            FollowUp::Ticket => f.write_str("ticket"),
            FollowUp::Rerun { nth } => write!(f, "re-run {nth}"),
            FollowUp::Compensate => f.write_str("compensate"),
        }
    }
}

/// What a job needs, from the facts the planner reads.
pub struct Ended<'a> {
    pub state: JobState,
    /// When it entered its current state.
    pub since: Timestamp,
    pub steps_done: u32,
    pub has_issue: bool,
    /// Raised by tollgate itself (a follow-up task or comment): never
    /// ticketed, or a failing site would breed tasks about tasks.
    pub internal: bool,
    /// Its audit trail's outcomes, oldest first.
    pub outcomes: &'a [&'a str],
}

fn count(outcomes: &[&str], marker: &str) -> usize {
    outcomes.iter().filter(|o| o.starts_with(marker)).count()
}

/// Markers since the last re-run: a re-run job that exhausts again is
/// reported again.
fn since_last_rerun<'a>(outcomes: &'a [&'a str]) -> &'a [&'a str] {
    match outcomes
        .iter()
        .rposition(|o| o.starts_with(RERUN) || o.starts_with(OPERATOR_RERUN))
    {
        Some(i) => &outcomes[i + 1..],
        None => outcomes,
    }
}

pub fn plan(
    job: &Ended<'_>,
    now: Timestamp,
    site_paused: bool,
    policy: &FollowUpPolicy,
) -> Vec<FollowUp> {
    let mut todo = Vec::new();
    match job.state {
        JobState::Exhausted => {
            let current = since_last_rerun(job.outcomes);
            if count(current, REPORTED) == 0 {
                todo.push(FollowUp::Notify);
            }
            if policy.ticket_project.is_some()
                && !job.internal
                && !site_paused
                && count(current, TICKET_FILED) == 0
            {
                todo.push(FollowUp::Ticket);
            }
            let reruns = count(job.outcomes, RERUN) as u32;
            if reruns < policy.max_reruns && now >= job.since.plus(policy.rerun_after) {
                todo.push(FollowUp::Rerun { nth: reruns + 1 });
            }
        }
        JobState::Failed
            if job.steps_done > 0 && job.has_issue && count(job.outcomes, COMPENSATED) == 0 =>
        {
            todo.push(FollowUp::Compensate);
        }
        _ => {}
    }
    todo
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> FollowUpPolicy {
        FollowUpPolicy {
            rerun_after: Duration::from_secs(600),
            max_reruns: 2,
            ticket_project: Some("OPS".into()),
        }
    }

    fn exhausted<'a>(outcomes: &'a [&'a str]) -> Ended<'a> {
        Ended {
            state: JobState::Exhausted,
            since: Timestamp(1_000_000),
            steps_done: 0,
            has_issue: false,
            internal: false,
            outcomes,
        }
    }

    #[test]
    fn an_exhausted_job_is_reported_and_ticketed_at_once_and_rerun_after_the_window() {
        let job = exhausted(&["leased", "throttled too often; retry budget spent"]);
        assert_eq!(
            plan(&job, Timestamp(1_000_000), false, &policy()),
            [FollowUp::Notify, FollowUp::Ticket]
        );
        let reported = exhausted(&["leased", REPORTED, TICKET_FILED]);
        assert_eq!(plan(&reported, Timestamp(1_599_999), false, &policy()), []);
        assert_eq!(
            plan(&reported, Timestamp(1_600_000), false, &policy()),
            [FollowUp::Rerun { nth: 1 }]
        );
    }

    #[test]
    fn while_the_site_is_paused_only_the_notification_goes_and_the_task_follows_later() {
        let job = exhausted(&[]);
        assert_eq!(
            plan(&job, Timestamp(1_000_000), true, &policy()),
            [FollowUp::Notify]
        );
        let reported = exhausted(&[REPORTED]);
        assert_eq!(
            plan(&reported, Timestamp(1_000_001), false, &policy()),
            [FollowUp::Ticket]
        );
    }

    #[test]
    fn reruns_stop_at_the_limit_and_each_new_exhaustion_is_reported_again() {
        let twice = exhausted(&[
            REPORTED,
            TICKET_FILED,
            "re-run automatically (1 of 2)",
            REPORTED,
            TICKET_FILED,
            "re-run automatically (2 of 2)",
        ]);
        assert_eq!(
            plan(&twice, Timestamp(9_000_000), false, &policy()),
            [FollowUp::Notify, FollowUp::Ticket],
            "reported anew, not re-run a third time"
        );
        let after_operator = exhausted(&[REPORTED, TICKET_FILED, "re-queued by operator dana"]);
        assert_eq!(
            plan(&after_operator, Timestamp(1_000_000), false, &policy()),
            [FollowUp::Notify, FollowUp::Ticket]
        );
    }

    #[test]
    fn tollgates_own_tasks_are_never_ticketed() {
        let own = Ended {
            internal: true,
            ..exhausted(&[])
        };
        assert_eq!(
            plan(&own, Timestamp(0), false, &policy()),
            [FollowUp::Notify]
        );
    }

    #[test]
    fn without_a_project_exhaustion_is_only_notified() {
        let p = FollowUpPolicy {
            ticket_project: None,
            ..policy()
        };
        assert_eq!(
            plan(&exhausted(&[]), Timestamp(0), false, &p),
            [FollowUp::Notify]
        );
    }

    #[test]
    fn a_failure_after_jira_changed_is_compensated_once() {
        let failed = |steps_done, has_issue, outcomes: &'static [&'static str]| Ended {
            state: JobState::Failed,
            since: Timestamp(0),
            steps_done,
            has_issue,
            internal: false,
            outcomes,
        };
        assert_eq!(
            plan(&failed(1, true, &[]), Timestamp(0), false, &policy()),
            [FollowUp::Compensate]
        );
        assert_eq!(
            plan(
                &failed(1, true, &[COMPENSATED]),
                Timestamp(0),
                false,
                &policy()
            ),
            []
        );
        assert_eq!(
            plan(&failed(0, true, &[]), Timestamp(0), false, &policy()),
            [],
            "nothing changed"
        );
        assert_eq!(
            plan(&failed(1, false, &[]), Timestamp(0), false, &policy()),
            [],
            "no issue to tell"
        );
    }

    #[test]
    fn succeeded_jobs_need_nothing() {
        let done = Ended {
            state: JobState::Succeeded,
            since: Timestamp(0),
            steps_done: 3,
            has_issue: true,
            internal: false,
            outcomes: &[],
        };
        assert_eq!(plan(&done, Timestamp(i64::MAX / 2), false, &policy()), []);
    }
}
