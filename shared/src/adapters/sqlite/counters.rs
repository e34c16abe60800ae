//! Counters and hourly hotspot figures.
//!
//! * `counters` — `(key, window) → count`, bumped by an upsert.
//! * `stats` — hotspot counters, `(window, name) → n` (hourly windows),
//!   added by an upsert per counter in one transaction per flush.
//! * `minute_stats` — the same per minute, `(minute, name) → n`; each flush
//!   deletes minutes older than `MINUTES_KEPT`.

use super::*;
use crate::domain::stats::MINUTES_KEPT;

impl StatsStore for SqliteDb {
    async fn add_stats(&self, window: i64, stats: &CallStats) -> Result<(), StoreError> {
        let counters = stats.to_counters();
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO stats (window, name, n) VALUES (?1, ?2, ?3) ON CONFLICT(window, name) DO UPDATE SET n = n + excluded.n",
                )?;
                for (name, n) in &counters {
                    st.execute(params![window, name, *n as i64])?;
                }
            }
            tx.commit()
        })
        .await
    }

    async fn stats(&self, window: i64) -> Result<CallStats, StoreError> {
        let rows: Vec<(String, i64)> = self
            .with(move |c| {
                let mut st = c.prepare_cached("SELECT name, n FROM stats WHERE window = ?1")?;
                st.query_map([window], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .await?;
        Ok(CallStats::from_counters(
            rows.iter().map(|(k, n)| (k.as_str(), (*n).max(0) as u64)),
        ))
    }

    async fn add_minute_stats(&self, minute: i64, stats: &CallStats) -> Result<(), StoreError> {
        let counters = stats.minute_part().to_counters();
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO minute_stats (minute, name, n) VALUES (?1, ?2, ?3) ON CONFLICT(minute, name) DO UPDATE SET n = n + excluded.n",
                )?;
                for (name, n) in &counters {
                    st.execute(params![minute, name, *n as i64])?;
                }
            }
            tx.execute(
                "DELETE FROM minute_stats WHERE minute < ?1",
                [minute - MINUTES_KEPT],
            )?;
            tx.commit()
        })
        .await
    }

    async fn minute_stats(&self, from: i64, to: i64) -> Result<Vec<(i64, CallStats)>, StoreError> {
        let rows: Vec<(i64, String, i64)> = self
            .with(move |c| {
                let mut st = c.prepare_cached(
                    "SELECT minute, name, n FROM minute_stats WHERE minute BETWEEN ?1 AND ?2 ORDER BY minute",
                )?;
                st.query_map([from, to], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .await?;
        let mut out: Vec<(i64, CallStats)> = Vec::new();
        let mut i = 0;
        while i < rows.len() {
            let minute = rows[i].0;
            let end = rows[i..]
                .iter()
                .position(|r| r.0 != minute)
                .map_or(rows.len(), |p| i + p);
            out.push((
                minute,
                CallStats::from_counters(
                    rows[i..end]
                        .iter()
                        .map(|(_, k, n)| (k.as_str(), (*n).max(0) as u64)),
                ),
            ));
            i = end;
        }
        Ok(out)
    }
}

impl Counters for SqliteDb {
    async fn count(&self, key: &str, window: i64) -> Result<u64, StoreError> {
        let key = key.to_string();
        self.with(move |c| {
            c.query_row(
                "SELECT count FROM counters WHERE key = ?1 AND window = ?2",
                params![key, window],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|n| n.unwrap_or(0).max(0) as u64)
        })
        .await
    }

    async fn bump(&self, key: &str, window: i64) -> Result<(), StoreError> {
        let key = key.to_string();
        self.with(move |c| {
            // Old windows are of no further use.
            c.execute(
                "DELETE FROM counters WHERE key = ?1 AND window < ?2 - 1",
                params![key, window],
            )?;
            c.execute(
                "INSERT INTO counters (key, window, count) VALUES (?1, ?2, 1)
                 ON CONFLICT(key, window) DO UPDATE SET count = count + 1",
                params![key, window],
            )
            .map(|_| ())
        })
        .await
    }
}
