//! Whole-store counts for `GET /metrics` and `/readyz`: `jobs` grouped by
//! state, the `queue` table's depth and oldest `sent_at`, undecided
//! `approvals`, open `rejected` rows. Plain aggregate reads; nothing here
//! writes.

use super::*;
use crate::ports::{Census, CensusStore};

impl CensusStore for SqliteDb {
    async fn census(&self) -> Result<Census, StoreError> {
        let jobs = self.state_counts().await?;
        let (queued, oldest, approvals, rejections): (i64, Option<i64>, i64, i64) = self
            .with(|c| {
                let (queued, oldest) =
                    c.query_row("SELECT COUNT(*), MIN(sent_at) FROM queue", [], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?;
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
                Ok((queued, oldest, approvals, rejections))
            })
            .await?;
        Ok(Census {
            jobs,
            queued_messages: queued.max(0) as u64,
            oldest_message_age_s: oldest.map_or(0.0, |t| ((now_ms() - t).max(0)) as f64 / 1000.0),
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
