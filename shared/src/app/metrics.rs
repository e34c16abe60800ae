//! What `GET /metrics` reports, read at scrape time from the same ports the
//! operator commands read (so the two agree): jobs by state, the queue, the
//! Jira call figures of `tollgate stats` (the last 24 hourly windows, and
//! the points of this one), the governor's paces and the site's pause and
//! degraded mode, approvals waiting, rejections kept. Encoding to the
//! Prometheus text format is the entrypoint's business.

use super::stats::read_stats;
use crate::domain::governor::SiteGovernor;
use crate::domain::stats::CallStats;
use crate::ports::{
    Census, CensusStore, Clock, GovernorStore, QueueDepth, QueueGauge, StatsStore, StoreError,
};

/// Hours `GET /metrics` sums Jira figures over, as `tollgate stats` does by
/// default.
pub const METRIC_HOURS: u32 = 24;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSnapshot {
    pub census: Census,
    pub queue: QueueDepth,
    pub calls: CallStats,
    /// Points spent in the current hourly window.
    pub points_this_hour: u64,
    pub site: String,
    pub governor: SiteGovernor,
    pub paused: bool,
}

pub async fn snapshot<S, Q, C>(
    store: &S,
    queue: &Q,
    clock: &C,
    site: &str,
) -> Result<MetricsSnapshot, StoreError>
where
    S: CensusStore + StatsStore + GovernorStore,
    Q: QueueGauge,
    C: Clock,
{
    let census = store.census().await?;
    let queue = queue.depth().await?;
    let calls = read_stats(store, clock, METRIC_HOURS).await?;
    let points_this_hour = read_stats(store, clock, 1).await?.points;
    let (governor, _) = store.load_governor(site).await?;
    let paused = governor.paused_until > clock.now();
    Ok(MetricsSnapshot {
        census,
        queue,
        calls,
        points_this_hour,
        site: site.to_string(),
        governor,
        paused,
    })
}
