//! Figures: hotspot counters by hour and minute, rate counters, and the
//! whole-store census operators read.

use super::*;

/// Hotspot figures in hourly windows, added to atomically.
pub trait StatsStore: Send + Sync {
    fn add_stats(
        &self,
        window: i64,
        stats: &CallStats,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The figures of one window (empty when none were added).
    fn stats(&self, window: i64) -> impl Future<Output = Result<CallStats, StoreError>> + Send;

    /// Adds to a minute window's figures ([`CallStats::minute_part`]),
    /// kept for [`crate::domain::stats::MINUTES_KEPT`] minutes.
    fn add_minute_stats(
        &self,
        minute: i64,
        stats: &CallStats,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The minute windows `from..=to` that have figures, oldest first.
    fn minute_stats(
        &self,
        from: i64,
        to: i64,
    ) -> impl Future<Output = Result<Vec<(i64, CallStats)>, StoreError>> + Send;
}

/// Counters in fixed time windows (the mass-create guard).
pub trait Counters: Send + Sync {
    /// The count of `key` in window `window` (0 when never bumped).
    fn count(&self, key: &str, window: i64)
    -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Adds one to the count of `key` in `window`, atomically.
    fn bump(&self, key: &str, window: i64) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Counts an operator's dashboard needs (`GET /metrics`, the console's
/// overview), read from the store itself, so they agree with the operator
/// commands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Census {
    pub jobs: Vec<(JobState, u64)>,
    /// Some state held more jobs than the store counts at one reading (the
    /// DynamoDB adapter stops at [`CENSUS_COUNT_LIMIT`]): those figures are
    /// lower bounds.
    pub jobs_lower_bound: bool,
    pub approvals_waiting: u64,
    /// Rejections neither re-submitted nor discarded.
    pub rejections_open: u64,
}

/// The most jobs of one state a store counts at one reading; past it the
/// census says "at least". Counting a large DynamoDB partition reads every
/// key in it, and the overview is read every 30 seconds.
pub const CENSUS_COUNT_LIMIT: u64 = 100_000;

/// Whole-store counts.
pub trait CensusStore: Send + Sync {
    fn census(&self) -> impl Future<Output = Result<Census, StoreError>> + Send;

    /// The store answers at all (`GET /readyz`).
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}
