//! Batches and their admission in pages.
//!
//! * `batches` — one row per batch: the record (counts) as JSON and the
//!   paused flag apart; created once (`INSERT … ON CONFLICT DO NOTHING`), so
//!   a re-post never resets a count or the flag. A batch's jobs are found
//!   by `jobs.batch`.
//! * `batch_posts` — `(batch, post)` → the admission record (JSON), its
//!   cursor `next_page` and `pages` apart; the cursor moves by `UPDATE …
//!   WHERE next_page = ?page`, in one transaction with the batch's counts.
//!   `batch_posts_open` indexes the unfinished ones for the sweep.
//! * `batch_pages` — `(batch, post, number)` → the page (JSON), written
//!   once with the post.
//! * `batch_rejections` — `(batch, idx)` → the rejection of that item: one
//!   per index, so a re-posted bad item is listed once.

use super::SqliteDb;
use crate::domain::admission::{AdmissionRecord, BatchPage, PostId, Tally};
use crate::domain::batch::{BatchRecord, JobSummary, MAX_LISTED_REJECTED, RejectedItem};
use crate::domain::ids::BatchId;
use crate::domain::job::JobState;
use crate::domain::rejection::RejectionId;
use crate::domain::time::Timestamp;
use crate::ports::{BatchStore, StoreError};
use rusqlite::{OptionalExtension, params};

/// A batch row: paused, the record, the first rejected items (index,
/// rejection id), and how many rejected items there are.
type StoredBatch = (bool, String, Vec<(u32, String)>, u32);

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(corrupt)
}

impl BatchStore for SqliteDb {
    async fn open_batch(&self, b: &BatchRecord) -> Result<BatchRecord, StoreError> {
        let record = json(b)?;
        let (id, paused) = (b.id.clone(), b.paused);
        self.with(move |c| {
            c.execute(
                "INSERT INTO batches (id, paused, record) VALUES (?1, ?2, ?3) ON CONFLICT(id) DO NOTHING",
                params![id.as_str(), paused, record],
            )
            .map(|_| ())
        })
        .await?;
        self.batch(&b.id)
            .await?
            .ok_or_else(|| corrupt("a batch row vanished after its insert"))
    }

    async fn recent_batches(&self, limit: usize) -> Result<Vec<BatchId>, StoreError> {
        let ids: Vec<String> = self
            .with(move |c| {
                let mut st =
                    c.prepare_cached("SELECT id FROM batches ORDER BY rowid DESC LIMIT ?1")?;
                st.query_map([limit as i64], |r| r.get(0))?.collect()
            })
            .await?;
        Ok(ids.into_iter().map(BatchId::from_stored).collect())
    }

    async fn batch(&self, id: &BatchId) -> Result<Option<BatchRecord>, StoreError> {
        let id = id.clone();
        let row: Option<StoredBatch> = self
            .with(move |c| {
                let Some((paused, record)) = c
                    .query_row(
                        "SELECT paused, record FROM batches WHERE id = ?1",
                        [id.as_str()],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?
                else {
                    return Ok(None);
                };
                let mut st = c.prepare_cached(
                    "SELECT idx, rejection_id FROM batch_rejections WHERE batch = ?1 ORDER BY idx LIMIT ?2",
                )?;
                let listed = st
                    .query_map(params![id.as_str(), MAX_LISTED_REJECTED as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let total: u32 = c.query_row(
                    "SELECT COUNT(*) FROM batch_rejections WHERE batch = ?1",
                    [id.as_str()],
                    |r| r.get(0),
                )?;
                Ok(Some((paused, record, listed, total)))
            })
            .await?;
        let Some((paused, record, listed, total)) = row else {
            return Ok(None);
        };
        let b: BatchRecord = serde_json::from_str(&record).map_err(corrupt)?;
        // A record from before rejections had rows of their own lists them
        // itself.
        let rejected = if listed.is_empty() {
            b.rejected
        } else {
            listed
                .into_iter()
                .map(|(index, id)| RejectedItem {
                    index,
                    rejection_id: RejectionId::from_stored(id),
                })
                .collect()
        };
        Ok(Some(BatchRecord {
            paused,
            rejected_total: total.max(b.rejected_total),
            rejected,
            ..b
        }))
    }

    async fn set_batch_paused(&self, id: &BatchId, paused: bool) -> Result<bool, StoreError> {
        let id = id.clone();
        self.with(move |c| {
            c.execute(
                "UPDATE batches SET paused = ?1 WHERE id = ?2",
                params![paused, id.as_str()],
            )
            .map(|n| n == 1)
        })
        .await
    }

    async fn batch_jobs(&self, id: &BatchId) -> Result<Vec<JobSummary>, StoreError> {
        let id = id.clone();
        let rows: Vec<(String, i64, i64)> = self
            .with(move |c| {
                let mut st = c.prepare_cached(
                    "SELECT state, points_milli, updated_at FROM jobs WHERE batch = ?1",
                )?;
                st.query_map([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .await?;
        rows.into_iter()
            .map(|(state, points, at)| {
                Ok(JobSummary {
                    state: JobState::parse(&state)
                        .ok_or_else(|| StoreError::Corrupt(format!("state {state}")))?,
                    points_milli: points.max(0) as u64,
                    updated_at: Timestamp(at),
                })
            })
            .collect()
    }

    async fn store_post(
        &self,
        admission: &AdmissionRecord,
        pages: &[BatchPage],
    ) -> Result<bool, StoreError> {
        let record = json(admission)?;
        let pages: Vec<(u32, String)> = pages
            .iter()
            .map(|p| Ok((p.number, json(p)?)))
            .collect::<Result<_, StoreError>>()?;
        let a = admission.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let new = tx.execute(
                "INSERT INTO batch_posts (batch, post, record, next_page, pages, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
                params![a.batch.as_str(), a.post.as_str(), record, a.next_page, a.pages, a.updated_at.0],
            )? == 1;
            if new {
                let mut st = tx.prepare_cached(
                    "INSERT OR REPLACE INTO batch_pages (batch, post, number, page) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for (number, page) in &pages {
                    st.execute(params![a.batch.as_str(), a.post.as_str(), number, page])?;
                }
            }
            tx.commit()?;
            Ok(new)
        })
        .await
    }

    async fn admission(
        &self,
        batch: &BatchId,
        post: &PostId,
    ) -> Result<Option<AdmissionRecord>, StoreError> {
        let (batch, post) = (batch.clone(), post.clone());
        let row: Option<(String, u32, i64)> = self
            .with(move |c| {
                c.query_row(
                    "SELECT record, next_page, updated_at FROM batch_posts WHERE batch = ?1 AND post = ?2",
                    params![batch.as_str(), post.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
            })
            .await?;
        row.map(|(record, next_page, updated_at)| {
            let a: AdmissionRecord = serde_json::from_str(&record).map_err(corrupt)?;
            Ok(AdmissionRecord {
                next_page,
                updated_at: Timestamp(updated_at),
                ..a
            })
        })
        .transpose()
    }

    async fn page(
        &self,
        batch: &BatchId,
        post: &PostId,
        number: u32,
    ) -> Result<Option<BatchPage>, StoreError> {
        let (batch, post) = (batch.clone(), post.clone());
        let row: Option<String> = self
            .with(move |c| {
                c.query_row(
                    "SELECT page FROM batch_pages WHERE batch = ?1 AND post = ?2 AND number = ?3",
                    params![batch.as_str(), post.as_str(), number],
                    |r| r.get(0),
                )
                .optional()
            })
            .await?;
        row.map(|p| serde_json::from_str(&p).map_err(corrupt))
            .transpose()
    }

    async fn note_rejected(
        &self,
        batch: &BatchId,
        items: &[RejectedItem],
    ) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let (batch, items) = (batch.clone(), items.to_vec());
        self.with(move |c| {
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO batch_rejections (batch, idx, rejection_id) VALUES (?1, ?2, ?3) ON CONFLICT(batch, idx) DO UPDATE SET rejection_id = excluded.rejection_id",
                )?;
                for r in &items {
                    st.execute(params![batch.as_str(), r.index, r.rejection_id.as_str()])?;
                }
            }
            tx.commit()
        })
        .await
    }

    async fn advance_admission(
        &self,
        batch: &BatchId,
        post: &PostId,
        page: u32,
        tally: &Tally,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let (batch, post, tally) = (batch.clone(), post.clone(), *tally);
        let moved: Option<String> = self
            .with(move |c| {
                let tx = c.transaction()?;
                let moved = tx.execute(
                    "UPDATE batch_posts SET next_page = ?3 + 1, updated_at = ?4 WHERE batch = ?1 AND post = ?2 AND next_page = ?3",
                    params![batch.as_str(), post.as_str(), page, at.0],
                )? == 1;
                if !moved {
                    return Ok(None);
                }
                let record: String = tx.query_row(
                    "SELECT record FROM batches WHERE id = ?1",
                    [batch.as_str()],
                    |r| r.get(0),
                )?;
                let Ok(mut b) = serde_json::from_str::<BatchRecord>(&record) else {
                    return Ok(Some(record));
                };
                b.received += tally.received;
                b.accepted += tally.accepted;
                b.duplicates += tally.duplicates;
                b.updated_at = at;
                let Ok(updated) = serde_json::to_string(&b) else {
                    return Ok(Some(record));
                };
                tx.execute(
                    "UPDATE batches SET record = ?2 WHERE id = ?1",
                    params![batch.as_str(), updated],
                )?;
                tx.commit()?;
                Ok(Some(String::new()))
            })
            .await?;
        match moved {
            None => Ok(false),
            Some(bad) if !bad.is_empty() => Err(corrupt(format!("batch record: {bad}"))),
            Some(_) => Ok(true),
        }
    }

    async fn stalled_admissions(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<AdmissionRecord>, StoreError> {
        let rows: Vec<(String, u32, i64)> = self
            .with(move |c| {
                let mut st = c.prepare_cached(
                    "SELECT record, next_page, updated_at FROM batch_posts WHERE next_page < pages AND updated_at < ?1 ORDER BY updated_at LIMIT ?2",
                )?;
                st.query_map(params![before.0, limit as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect()
            })
            .await?;
        rows.into_iter()
            .map(|(record, next_page, updated_at)| {
                let a: AdmissionRecord = serde_json::from_str(&record).map_err(corrupt)?;
                Ok(AdmissionRecord {
                    next_page,
                    updated_at: Timestamp(updated_at),
                    ..a
                })
            })
            .collect()
    }
}
