//! The clients a user would otherwise write, run on the same workload for
//! comparison. Each turns an event straight into its Jira calls (the same
//! calls tollgate's plan makes) and differs only in how it meets a 429:
//!
//! * `naive` — 20 concurrent, retries a refused call at once;
//! * `fixed3` — 3 concurrent, sleeps Retry-After (1 s without it), the usual
//!   forum advice;
//! * `atlassian-backoff` — Atlassian's published per-request algorithm:
//!   Retry-After as the minimum, else doubling from 2 s, jitter ×0.7–1.3,
//!   4 retries, then the event is dropped; no state shared between requests.
//!
//! None deduplicates: a redelivered event is sent again.

use serde_json::Value;
use std::sync::Arc;

use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use tollgate::adapters::jira::JiraClient;
use tollgate::domain::idempotency::LinkId;
use tollgate::domain::ids::IssueKey;
use tollgate::domain::plan::{LinkState, Step, plan};
use tollgate::domain::validation::validate_event;
use tollgate::ports::{Tracker, TrackerError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    Naive,
    Fixed3,
    AtlassianBackoff,
}

impl Baseline {
    pub const ALL: [Baseline; 3] = [
        Baseline::Naive,
        Baseline::Fixed3,
        Baseline::AtlassianBackoff,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Baseline::Naive => "naive",
            Baseline::Fixed3 => "fixed3",
            Baseline::AtlassianBackoff => "atlassian-backoff",
        }
    }

    fn concurrency(self) -> usize {
        match self {
            Baseline::Fixed3 => 3,
            _ => 20,
        }
    }

    /// The wait before retry number `retry` (1-based), or None to give up.
    fn wait(self, retry: u32, retry_after: Option<Duration>) -> Option<Duration> {
        match self {
            // Bounded only so a run ends; a real naive client spins forever.
            Baseline::Naive => (retry <= 200).then_some(Duration::ZERO),
            Baseline::Fixed3 => {
                (retry <= 50).then(|| retry_after.unwrap_or(Duration::from_secs(1)))
            }
            Baseline::AtlassianBackoff => {
                if retry > 4 {
                    return None;
                }
                let backoff = Duration::from_secs(2) * (1 << (retry - 1));
                let jittered = backoff.mul_f64(0.7 + 0.6 * fastrand::f64());
                Some(retry_after.map_or(jittered, |ra| ra.max(jittered)))
            }
        }
    }
}

pub struct BaselineResult {
    /// Per delivered event: (interactive, completion time since start, succeeded).
    pub outcomes: Vec<(bool, Duration, bool)>,
}

/// Runs `deliveries` (event, interactive) through the baseline.
pub async fn run(
    baseline: Baseline,
    jira: Arc<JiraClient>,
    deliveries: Vec<(Value, bool)>,
    bar: indicatif::ProgressBar,
) -> BaselineResult {
    let start = Instant::now();
    let queue = Arc::new(Mutex::new(deliveries.into_iter()));
    let outcomes = Arc::new(Mutex::new(Vec::new()));

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..baseline.concurrency() {
        let (queue, outcomes, jira, bar) =
            (queue.clone(), outcomes.clone(), jira.clone(), bar.clone());
        tasks.spawn(async move {
            loop {
                let Some((event, interactive)) = queue.lock().await.next() else {
                    break;
                };
                let ok = deliver(baseline, &jira, &event).await;
                outcomes
                    .lock()
                    .await
                    .push((interactive, start.elapsed(), ok));
                bar.inc(1);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let outcomes = std::mem::take(&mut *outcomes.lock().await);
    BaselineResult { outcomes }
}

/// One event's calls, each retried as the baseline does. True when all
/// landed.
async fn deliver(baseline: Baseline, jira: &JiraClient, event: &Value) -> bool {
    let Ok(e) = validate_event(event) else {
        return false;
    };
    let link = LinkId::of(&e.source_system, &e.external_id);
    let Ok(steps) = plan(&e, &link, &LinkState::Unlinked) else {
        return false;
    };
    let mut target: Option<IssueKey> = e.issue_key.clone();
    for step in &steps {
        let mut retry = 0;
        loop {
            let result = match step {
                Step::CreateIssue { fields, .. } => jira.create_issue(fields, &[]).await.map(|a| {
                    target = Some(a.value);
                }),
                Step::Edit { fields, add_labels } => match &target {
                    Some(k) => jira.edit_issue(k, fields, add_labels).await.map(|_| ()),
                    None => return false,
                },
                Step::Comment { text } => match &target {
                    Some(k) => jira.add_comment(k, text, "baseline").await.map(|_| ()),
                    None => return false,
                },
                _ => return false,
            };
            let retry_after = match result {
                Ok(()) => break,
                Err(TrackerError::Throttled { signal, .. })
                | Err(TrackerError::Transient { signal, .. }) => signal.retry_after,
                Err(_) => return false,
            };
            retry += 1;
            match baseline.wait(retry, retry_after) {
                Some(w) => tokio::time::sleep(w).await,
                None => return false,
            }
        }
    }
    true
}
