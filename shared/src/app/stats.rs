//! Hotspot figures: every Jira call the executor makes is counted as it is
//! observed (a [`Pace`] wrapper around the governor), held in memory, and
//! added to the store in one write per flush — per batch of messages on
//! Lambda, every few seconds on `serve` — so counting never costs a store
//! write per call.

use super::AppError;
use super::api::{self, HttpAnswer};
use super::governor::Pace;
use super::ingest::Ingest;
use crate::domain::governor::CallKind;
use crate::domain::ratelimit::RateLimitSignal;
use crate::domain::stats::{CallOutcome, CallStats, hour_window, minute_window};
use crate::ports::{Clock, IngestStore, StatsStore, StoreError, TrackerError, WorkQueue};
use std::sync::Mutex;

/// Calls counted since the last flush.
#[derive(Debug, Default)]
pub struct StatsRecorder {
    pending: Mutex<CallStats>,
}

impl StatsRecorder {
    pub fn record(&self, call: &CallKind, result: Result<&RateLimitSignal, &TrackerError>) {
        let (outcome, reason) = match result {
            // A read costs 1 + the objects it returns; the answer's size is
            // not known here, so reads count 1 (a lower bound).
            Ok(_) | Err(TrackerError::Permanent { .. }) => {
                (CallOutcome::Answered { points: 1 }, None)
            }
            Err(TrackerError::Throttled { signal, .. }) => (
                CallOutcome::Throttled,
                signal.reason.as_ref().map(|r| r.as_str().to_string()),
            ),
            Err(TrackerError::Transient { .. }) => (CallOutcome::Failed, None),
            // Never sent.
            Err(TrackerError::Held { .. }) => return,
        };
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.record(
            &call.endpoint,
            call.issue.as_deref(),
            outcome,
            reason.as_deref(),
        );
    }

    /// Takes what was counted since the last flush.
    pub fn take(&self) -> CallStats {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Adds what was counted to the store's current hour (and minute). On
    /// failure the figures are put back for the next flush.
    pub async fn flush<S: StatsStore, C: Clock>(
        &self,
        store: &S,
        clock: &C,
    ) -> Result<CallStats, StoreError> {
        let stats = self.take();
        if stats.is_empty() {
            return Ok(stats);
        }
        let now = clock.now().0;
        if let Err(e) = store.add_stats(hour_window(now), &stats).await {
            self.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .merge(&stats);
            return Err(e);
        }
        // The console's last hour. Best effort: the hourly figures are the
        // record, and putting these back would count the hour twice.
        if let Err(e) = store.add_minute_stats(minute_window(now), &stats).await {
            tracing::warn!(error = %e, "per-minute figures not saved");
        }
        Ok(stats)
    }
}

/// The governor, with every observed call counted.
pub struct Metered<'a, G> {
    pub inner: &'a G,
    pub recorder: &'a StatsRecorder,
}

impl<G: Pace> Pace for Metered<'_, G> {
    async fn permit(&self, call: &CallKind) -> Result<(), TrackerError> {
        self.inner.permit(call).await
    }

    async fn observe(&self, call: &CallKind, result: Result<&RateLimitSignal, &TrackerError>) {
        self.recorder.record(call, result);
        self.inner.observe(call, result).await
    }
}

/// The figures of the last `hours` hourly windows up to now, added up.
pub async fn read_stats<S: StatsStore, C: Clock>(
    store: &S,
    clock: &C,
    hours: u32,
) -> Result<CallStats, StoreError> {
    let now = hour_window(clock.now().0);
    let mut total = CallStats::default();
    for h in 0..i64::from(hours.max(1)) {
        total.merge(&store.stats(now - h).await?);
    }
    Ok(total)
}

/// `GET /v1/stats?hours=N` (signed, over the empty body): 1 to 168 hours.
/// Takes the raw query string, so every entrypoint answers a malformed one
/// (`hours=a&hours=b`) the same way, after the signature check.
pub async fn stats_request<S, Q, C>(
    ingest: &Ingest<'_, S, Q, C>,
    query: Option<&str>,
    signature: Option<&str>,
) -> Result<HttpAnswer, AppError>
where
    S: IngestStore + StatsStore,
    Q: WorkQueue,
    C: Clock,
{
    if let Err(e) = ingest.authenticate(b"", signature) {
        return Ok(api::unauthorized(&e));
    }
    let mut given = query
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.strip_prefix("hours="));
    // A repeated parameter is as invalid as a bad value.
    let hours = match (given.next(), given.next()) {
        (first, None) => first,
        (Some(_), Some(_)) => Some("repeated"),
        (None, Some(_)) => None,
    };
    let hours = match hours.map(str::parse::<u32>) {
        None => 1,
        Some(Ok(h)) if (1..=MAX_STATS_HOURS).contains(&h) => h,
        Some(_) => {
            return Ok(HttpAnswer::new(
                400,
                serde_json::json!({
                    "error": "invalid_query",
                    "message": format!("hours must be a whole number from 1 to {MAX_STATS_HOURS}"),
                    "errors": [{"field": "hours", "message": format!("must be 1–{MAX_STATS_HOURS}")}],
                }),
            ));
        }
    };
    let stats = read_stats(ingest.store, ingest.clock, hours).await?;
    Ok(api::stats_answer(&stats, hours))
}

/// A week of hourly windows at most.
pub const MAX_STATS_HOURS: u32 = 168;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ratelimit::LimitReason;

    fn kind(endpoint: &str, issue: Option<&str>) -> CallKind {
        CallKind {
            endpoint: endpoint.into(),
            write: true,
            issue: issue.map(String::from),
            bulk: false,
        }
    }

    #[test]
    fn held_calls_are_not_counted_and_throttles_keep_their_reason() {
        let r = StatsRecorder::default();
        let c = kind("PUT /rest/api/3/issue/{key}", Some("OPS-1"));
        r.record(&c, Ok(&RateLimitSignal::default()));
        r.record(
            &c,
            Err(&TrackerError::Held {
                wait: std::time::Duration::from_secs(1),
                reason: "paced".into(),
            }),
        );
        let signal = RateLimitSignal {
            reason: Some(LimitReason::PerIssueWrite),
            ..Default::default()
        };
        r.record(
            &c,
            Err(&TrackerError::Throttled {
                status: 429,
                signal,
            }),
        );
        let s = r.take();
        assert_eq!((s.requests, s.throttled, s.points), (2, 1, 1));
        assert_eq!(s.throttled_by_reason["jira-per-issue-on-write"], 1);
        assert_eq!(s.throttled_issues["OPS-1"], 1);
        assert!(r.take().is_empty(), "taken once");
    }
}
