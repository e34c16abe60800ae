//! The clients a user would otherwise write, run on the same workload for
//! comparison. Each turns an event straight into its Jira calls (the same
//! calls tollgate's plan makes) and differs only in how it meets a 429:
//!
//! * `naive` — 20 concurrent, retries a refused call at once;
//! * `fixed3` — 3 concurrent, sleeps Retry-After (1 s without it), the usual
//!   forum advice;
//! * `atlassian-backoff` — Atlassian's published per-request algorithm:
//!   Retry-After as the minimum, else doubling from 2 s, jitter ×0.7–1.3,
//!   4 retries, then the event is dropped; no state shared between requests;
//! * `aws-adaptive` — the AWS SDKs' `adaptive` retry mode: a client-side
//!   token bucket, off until the first throttle, whose rate follows CUBIC
//!   (×0.7 on a throttle, cubic growth back towards the rate before it,
//!   never above twice the measured send rate); 3 attempts per call with
//!   exponential backoff and full jitter (base 1 s, cap 20 s), 20 concurrent.
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
    AwsAdaptive,
}

impl Baseline {
    pub const ALL: [Baseline; 4] = [
        Baseline::Naive,
        Baseline::Fixed3,
        Baseline::AtlassianBackoff,
        Baseline::AwsAdaptive,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Baseline::Naive => "naive",
            Baseline::Fixed3 => "fixed3",
            Baseline::AtlassianBackoff => "atlassian-backoff",
            Baseline::AwsAdaptive => "aws-adaptive",
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
            // The SDK ignores Retry-After; its bucket does the pacing.
            Baseline::AwsAdaptive => (retry < 3).then(|| {
                let ceiling = Duration::from_secs(1) * (1 << (retry - 1));
                ceiling
                    .min(Duration::from_secs(20))
                    .mul_f64(fastrand::f64())
            }),
        }
    }
}

/// The AWS SDKs' client-side rate limiter (`adaptive` retry mode), as
/// their public source describes it.
pub struct AdaptiveBucket {
    state: std::sync::Mutex<Adaptive>,
}

struct Adaptive {
    enabled: bool,
    fill_rate: f64,
    capacity: f64,
    tokens: f64,
    last_refill: Instant,
    last_max_rate: f64,
    last_throttle: Instant,
    /// Measured send rate (smoothed), and its one-second count.
    measured: f64,
    bucket_start: Instant,
    count: f64,
}

const ADAPTIVE_BETA: f64 = 0.7;
const ADAPTIVE_C: f64 = 0.4;
const ADAPTIVE_SMOOTH: f64 = 0.8;

impl AdaptiveBucket {
    pub fn new() -> Self {
        let now = Instant::now();
        AdaptiveBucket {
            state: std::sync::Mutex::new(Adaptive {
                enabled: false,
                fill_rate: 0.5,
                capacity: 1.0,
                tokens: 1.0,
                last_refill: now,
                last_max_rate: 0.0,
                last_throttle: now,
                measured: 0.0,
                bucket_start: now,
                count: 0.0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Adaptive> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a token (once throttling was seen).
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut s = self.lock();
                if !s.enabled {
                    return;
                }
                let now = Instant::now();
                s.tokens = (s.tokens
                    + now.duration_since(s.last_refill).as_secs_f64() * s.fill_rate)
                    .min(s.capacity);
                s.last_refill = now;
                if s.tokens >= 1.0 {
                    s.tokens -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - s.tokens) / s.fill_rate)
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// After each answer: measure, then decrease on a throttle or grow.
    pub fn update(&self, throttled: bool) {
        let mut s = self.lock();
        let now = Instant::now();
        s.count += 1.0;
        let elapsed = now.duration_since(s.bucket_start).as_secs_f64();
        if elapsed >= 0.5 {
            let rate = s.count / elapsed;
            s.measured = rate * ADAPTIVE_SMOOTH + s.measured * (1.0 - ADAPTIVE_SMOOTH);
            s.count = 0.0;
            s.bucket_start = now;
        }
        let calculated = if throttled {
            let rate = if s.enabled {
                s.fill_rate.min(s.measured.max(0.5))
            } else {
                s.measured.max(0.5)
            };
            s.last_max_rate = rate;
            s.last_throttle = now;
            s.enabled = true;
            rate * ADAPTIVE_BETA
        } else {
            let k = (s.last_max_rate * (1.0 - ADAPTIVE_BETA) / ADAPTIVE_C).cbrt();
            let t = now.duration_since(s.last_throttle).as_secs_f64();
            ADAPTIVE_C * (t - k).powi(3) + s.last_max_rate
        };
        let rate = calculated.min(2.0 * s.measured).max(0.5);
        s.fill_rate = rate;
        s.capacity = rate.max(1.0);
        s.tokens = s.tokens.min(s.capacity);
    }
}

impl Default for AdaptiveBucket {
    fn default() -> Self {
        Self::new()
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
    let bucket = Arc::new(AdaptiveBucket::new());
    let queue = Arc::new(Mutex::new(deliveries.into_iter()));
    let outcomes = Arc::new(Mutex::new(Vec::new()));

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..baseline.concurrency() {
        let (queue, outcomes, jira, bar, bucket) = (
            queue.clone(),
            outcomes.clone(),
            jira.clone(),
            bar.clone(),
            bucket.clone(),
        );
        tasks.spawn(async move {
            loop {
                let Some((event, interactive)) = queue.lock().await.next() else {
                    break;
                };
                let ok = deliver(baseline, &jira, &bucket, &event).await;
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
async fn deliver(
    baseline: Baseline,
    jira: &JiraClient,
    bucket: &AdaptiveBucket,
    event: &Value,
) -> bool {
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
            if baseline == Baseline::AwsAdaptive {
                bucket.acquire().await;
            }
            let result = match step {
                Step::CreateIssue { fields, .. } => jira.create_issue(fields, &[]).await.map(|a| {
                    target = Some(a.value);
                }),
                Step::Edit { fields, add_labels } => match &target {
                    Some(k) => jira.edit_issue(k, fields, add_labels).await.map(|_| ()),
                    None => return false,
                },
                Step::Comment { text } => match &target {
                    Some(k) => jira
                        .add_comment(k, text, &format!("baseline-{}", e.external_id))
                        .await
                        .map(|_| ()),
                    None => return false,
                },
                Step::Transition { name } => match &target {
                    Some(k) => jira.transition(k, name).await.map(|_| ()),
                    None => return false,
                },
                _ => return false,
            };
            if baseline == Baseline::AwsAdaptive {
                bucket.update(matches!(result, Err(TrackerError::Throttled { .. })));
            }
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
