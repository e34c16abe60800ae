//! The manual queue of rejected events.
//!
//! * `rejected` — body (at most 256 KiB; `truncated` holds the size and
//!   SHA-256 of a larger one), errors (JSON), origin (JSON: a v1 event, a
//!   sender's payload and path, or a batch item), and either the job a
//!   re-submission created or an operator's discard (each set once, `WHERE
//!   resubmitted_as IS NULL AND discarded IS NULL`). Kept with `INSERT … ON
//!   CONFLICT DO NOTHING`: a batch item's id is its own.

use super::*;

pub(super) fn rejection_from_row(r: &Row<'_>) -> rusqlite::Result<Rejection> {
    pub(super) fn json<T: serde::de::DeserializeOwned>(
        col: usize,
        text: &str,
    ) -> rusqlite::Result<T> {
        serde_json::from_str(text).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, e.into())
        })
    }
    let errors: String = r.get(3)?;
    let origin: String = r.get(6)?;
    let discarded: Option<String> = r.get(7)?;
    let truncated: Option<String> = r.get(8)?;
    Ok(Rejection {
        id: RejectionId::from_stored(r.get(0)?),
        received_at: Timestamp(r.get(1)?),
        source_system: r.get(2)?,
        errors: json(3, &errors)?,
        body: r.get(4)?,
        truncated: truncated.map(|t| json(8, &t)).transpose()?,
        resubmitted_as: r.get::<_, Option<String>>(5)?.map(JobId::from_stored),
        origin: json(6, &origin)?,
        discarded: discarded.map(|d| json(7, &d)).transpose()?,
    })
}

pub(super) const REJECTION_COLUMNS: &str =
    "id, received_at, source_system, errors, body, resubmitted_as, origin, discarded, truncated";

impl RejectionStore for SqliteDb {
    async fn keep_rejection(&self, r: &Rejection) -> Result<bool, StoreError> {
        let r = r.clone();
        let errors = to_json(&r.errors)?;
        let origin = to_json(&r.origin)?;
        let discarded = r.discarded.as_ref().map(to_json).transpose()?;
        let truncated = r.truncated.as_ref().map(to_json).transpose()?;
        self.with(move |c| {
            c.execute(
                &format!(
                    "INSERT INTO rejected ({REJECTION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT(id) DO NOTHING"
                ),
                params![
                    r.id.as_str(),
                    r.received_at.0,
                    r.source_system,
                    errors,
                    r.body,
                    r.resubmitted_as.as_ref().map(JobId::as_str),
                    origin,
                    discarded,
                    truncated,
                ],
            )
            .map(|n| n == 1)
        })
        .await
    }

    async fn rejection(&self, id: &RejectionId) -> Result<Option<Rejection>, StoreError> {
        let id = id.clone();
        self.with(move |c| {
            c.query_row(
                &format!("SELECT {REJECTION_COLUMNS} FROM rejected WHERE id = ?1"),
                [id.as_str()],
                rejection_from_row,
            )
            .optional()
        })
        .await
    }

    async fn rejections(&self, limit: usize) -> Result<Vec<Rejection>, StoreError> {
        self.with(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {REJECTION_COLUMNS} FROM rejected ORDER BY received_at DESC, id DESC LIMIT ?1"
            ))?;
            st.query_map([limit as i64], rejection_from_row)?.collect()
        })
        .await
    }

    async fn mark_resubmitted(&self, id: &RejectionId, job: &JobId) -> Result<bool, StoreError> {
        let (id, job) = (id.clone(), job.clone());
        self.with(move |c| {
            Ok(c.execute(
                "UPDATE rejected SET resubmitted_as = ?2 WHERE id = ?1 AND resubmitted_as IS NULL AND discarded IS NULL",
                params![id.as_str(), job.as_str()],
            )? == 1)
        })
        .await
    }

    async fn discard_rejection(
        &self,
        id: &RejectionId,
        discarded: &Discarded,
    ) -> Result<bool, StoreError> {
        let id = id.clone();
        let d = serde_json::to_string(discarded).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.with(move |c| {
            Ok(c.execute(
                "UPDATE rejected SET discarded = ?2 WHERE id = ?1 AND resubmitted_as IS NULL AND discarded IS NULL",
                params![id.as_str(), d],
            )? == 1)
        })
        .await
    }
}
