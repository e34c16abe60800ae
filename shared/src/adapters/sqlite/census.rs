//! Whole-store counts for `GET /metrics`, the console and `/readyz`:
//! `jobs` grouped by state, undecided `approvals`, open `rejected` rows, and
//! the `queue` table's depth and oldest `sent_at`. Plain aggregate reads;
//! nothing here writes.

use super::*;
use crate::ports::{Census, CensusStore, QueueDepth, QueueGauge};

impl CensusStore for SqliteDb {
    async fn census(&self) -> Result<Census, StoreError> {
        let jobs = self.state_counts().await?;
        let (approvals, rejections): (i64, i64) = self
            .with(|c| {
                let approvals = c.query_row(
                    "SELECT COUNT(*) FROM approvals WHERE decision IS NULL",
                    [],
                    |r| r.get(0),
                )?;
                let rejections = c.query_row(
                    "SELECT COUNT(*) FROM rejected WHERE resubmitted_as IS NULL AND discarded IS NULL",
                    [],
                    |r| r.get(0),
                )?;
                Ok((approvals, rejections))
            })
            .await?;
        Ok(Census {
            jobs,
            jobs_lower_bound: false,
            approvals_waiting: approvals.max(0) as u64,
            rejections_open: rejections.max(0) as u64,
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with(|c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)))
            .await
            .map(|_| ())
    }
}

impl QueueGauge for SqliteDb {
    async fn depth(&self) -> Result<QueueDepth, StoreError> {
        let (queued, oldest): (i64, Option<i64>) = self
            .with(|c| {
                c.query_row("SELECT COUNT(*), MIN(sent_at) FROM queue", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
            })
            .await?;
        Ok(QueueDepth {
            messages: queued.max(0) as u64,
            oldest_age_s: Some(oldest.map_or(0.0, |t| ((now_ms() - t).max(0)) as f64 / 1000.0)),
        })
    }
}
