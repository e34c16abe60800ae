//! Whole-store counts for the console and `GET /metrics`, read from `gsi1`
//! with `Select=COUNT` (keys only, nothing fetched):
//!
//! * jobs: each state's 8 shards (`STATE#<state>#<shard>`), counted
//!   concurrently; a shard stops at its part of [`CENSUS_COUNT_LIMIT`] and
//!   the census then says the figures are lower bounds;
//! * approvals waiting: `APPROVALS#OPEN`;
//! * rejections open: `REJECTED` (a rejection moves to `REJECTED#CLOSED`
//!   once re-submitted or discarded; see [`super::rejections`]).
//!
//! The index is eventually consistent: a job that just moved may be counted
//! in its old state for a moment.

use super::approvals::OPEN_APPROVALS;
use super::rejections::REJECTED_INDEX;
use super::*;
use crate::ports::{CENSUS_COUNT_LIMIT, Census, CensusStore};
use aws_sdk_dynamodb::types::Select;
use futures_util::{StreamExt, TryStreamExt};

/// Index queries in flight at once while counting.
const CONCURRENT_COUNTS: usize = 16;

impl DynamoStore {
    /// Keys under `pk` in `gsi1`, up to about `cap` (whole pages are
    /// counted): the count and whether it stopped at the cap.
    async fn count_index(&self, pk: String, cap: u64) -> Result<(u64, bool), StoreError> {
        let mut total = 0u64;
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(GSI_BY_STATE)
                .key_condition_expression("gsi1pk = :pk")
                .expression_attribute_values(":pk", s(pk.clone()))
                .select(Select::Count)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(backend)?;
            total += out.count.max(0) as u64;
            match out.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(_) if total >= cap => return Ok((total, true)),
                Some(k) => start = Some(k),
                None => return Ok((total, false)),
            }
        }
    }
}

impl CensusStore for DynamoStore {
    async fn census(&self) -> Result<Census, StoreError> {
        let per_shard = CENSUS_COUNT_LIMIT / u64::from(SHARDS);
        let partitions: Vec<(JobState, u32)> = JobState::ALL
            .iter()
            .flat_map(|st| (0..SHARDS).map(move |sh| (*st, sh)))
            .collect();
        let counted: Vec<(JobState, u64, bool)> = futures_util::stream::iter(partitions)
            .map(|(st, sh)| async move {
                let (n, capped) = self.count_index(by_state_pk(st, sh), per_shard).await?;
                Ok::<_, StoreError>((st, n, capped))
            })
            .buffer_unordered(CONCURRENT_COUNTS)
            .try_collect()
            .await?;
        let mut jobs: Vec<(JobState, u64)> = Vec::new();
        let mut lower_bound = false;
        for st in JobState::ALL {
            let n: u64 = counted
                .iter()
                .filter(|(s, _, _)| *s == st)
                .map(|(_, n, _)| n)
                .sum();
            lower_bound |= counted.iter().any(|(s, _, c)| *s == st && *c);
            if n > 0 {
                jobs.push((st, n));
            }
        }
        let (approvals_waiting, _) = self.count_index(OPEN_APPROVALS.into(), u64::MAX).await?;
        let (rejections_open, _) = self.count_index(REJECTED_INDEX.into(), u64::MAX).await?;
        Ok(Census {
            jobs,
            jobs_lower_bound: lower_bound,
            approvals_waiting,
            rejections_open,
        })
    }

    /// One read of a key nothing stores: the table answers, and the
    /// function's role may read it.
    async fn ping(&self) -> Result<(), StoreError> {
        self.get("PING".to_string(), "PING").await.map(|_| ())
    }
}
