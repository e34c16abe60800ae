//! Jobs and their audit trails.
//!
//! * `jobs` — one row per admitted job; `dedup` is UNIQUE, and admission is
//!   `INSERT … ON CONFLICT(dedup) DO NOTHING` (first writer wins), with the
//!   job's first audit entries and its approval request in one
//!   transaction. Mutations are `UPDATE … WHERE id = ? AND state =
//!   ?expected` (conditional), fenced ones in the same transaction as the
//!   lease check.
//! * `audit` — append-only, `(job_id, seq)`; each entry is a JSON document.

use super::*;

pub(super) const JOB_COLUMNS: &str = "id, dedup, key, fingerprint, link, kind, priority, source_system, external_id, payload, state, issue_key, steps_done, step_started, step_started_at, attempts, throttles, last_error, created_at, updated_at, enqueued, merged_into, batch, points_milli, not_before";

pub(super) fn job_from_row(r: &Row<'_>) -> rusqlite::Result<JobRecord> {
    let kind: String = r.get(5)?;
    let priority: String = r.get(6)?;
    let state: String = r.get(10)?;
    let step_started: Option<i64> = r.get(13)?;
    let step_started_at: Option<i64> = r.get(14)?;
    Ok(JobRecord {
        id: JobId::from_stored(r.get(0)?),
        dedup: DedupId::from_stored(r.get(1)?),
        key: IdempotencyKey::from_stored(r.get(2)?),
        fingerprint: Fingerprint::from_stored(r.get(3)?),
        link: LinkId::from_stored(r.get(4)?),
        kind: OperationKind::parse(&kind).ok_or_else(|| corrupt("operation", &kind))?,
        priority: Priority::parse(&priority).ok_or_else(|| corrupt("priority", &priority))?,
        source_system: SourceSystem::from_stored(r.get(7)?),
        external_id: ExternalId::from_stored(r.get(8)?),
        payload: r.get(9)?,
        state: JobState::parse(&state).ok_or_else(|| corrupt("state", &state))?,
        issue_key: r.get::<_, Option<String>>(11)?.map(IssueKey::from_stored),
        steps_done: r.get(12)?,
        step_started: step_started
            .zip(step_started_at)
            .map(|(i, at)| (i as u32, Timestamp(at))),
        attempts: r.get(15)?,
        throttles: r.get(16)?,
        last_error: r.get(17)?,
        created_at: Timestamp(r.get(18)?),
        updated_at: Timestamp(r.get(19)?),
        enqueued: r.get(20)?,
        merged_into: r.get::<_, Option<String>>(21)?.map(JobId::from_stored),
        batch: r.get::<_, Option<String>>(22)?.map(BatchId::from_stored),
        points_milli: r.get::<_, i64>(23)?.max(0) as u64,
        not_before: r.get::<_, Option<i64>>(24)?.map(Timestamp),
    })
}

pub(super) fn insert_audit(
    c: &Connection,
    job: &str,
    entries: &[AuditEntry],
) -> rusqlite::Result<()> {
    let mut st = c.prepare_cached("INSERT INTO audit (job_id, entry) VALUES (?1, ?2)")?;
    for e in entries {
        let json = serde_json::to_string(e)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
        st.execute(params![job, json])?;
    }
    Ok(())
}

pub(super) fn select_jobs(
    c: &Connection,
    where_clause: &str,
    p: impl rusqlite::Params,
) -> rusqlite::Result<Vec<JobRecord>> {
    let mut st = c.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs {where_clause}"))?;
    st.query_map(p, job_from_row)?.collect()
}

impl JobStore for SqliteDb {
    async fn admit(
        &self,
        job: &JobRecord,
        audit: &[AuditEntry],
        approval: Option<&ApprovalRecord>,
    ) -> Result<Admission, StoreError> {
        let job = job.clone();
        let audit = audit.to_vec();
        let approval = approval.map(approval_params).transpose()?;
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let inserted = tx.execute(
                &format!(
                    "INSERT INTO jobs ({JOB_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25) ON CONFLICT(dedup) DO NOTHING"
                ),
                params![
                    job.id.as_str(),
                    job.dedup.as_str(),
                    job.key.as_str(),
                    job.fingerprint.as_str(),
                    job.link.as_str(),
                    job.kind.as_str(),
                    job.priority.as_str(),
                    job.source_system.as_str(),
                    job.external_id.as_str(),
                    job.payload,
                    job.state.as_str(),
                    job.issue_key.as_ref().map(IssueKey::as_str),
                    job.steps_done,
                    job.step_started.map(|(i, _)| i),
                    job.step_started.map(|(_, at)| at.0),
                    job.attempts,
                    job.throttles,
                    job.last_error,
                    job.created_at.0,
                    job.updated_at.0,
                    job.enqueued,
                    job.merged_into.as_ref().map(JobId::as_str),
                    job.batch.as_ref().map(BatchId::as_str),
                    job.points_milli as i64,
                    job.not_before.map(|t| t.0),
                ],
            )?;
            let admission = if inserted == 1 {
                insert_audit(&tx, job.id.as_str(), &audit)?;
                if let Some(a) = &approval {
                    insert_approval(&tx, a)?;
                }
                Admission::New
            } else {
                let existing = select_jobs(&tx, "WHERE dedup = ?1", [job.dedup.as_str()])?
                    .into_iter()
                    .next()
                    .ok_or(rusqlite::Error::QueryReturnedNoRows)?;
                Admission::Existing(Box::new(existing))
            };
            tx.commit()?;
            Ok(admission)
        })
        .await
    }

    async fn job_by_dedup(&self, dedup: &DedupId) -> Result<Option<JobId>, StoreError> {
        let dedup = dedup.clone();
        self.with(move |c| {
            c.query_row(
                "SELECT id FROM jobs WHERE dedup = ?1",
                [dedup.as_str()],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .map(|id| id.map(JobId::from_stored))
        })
        .await
    }

    async fn job(&self, id: &JobId) -> Result<Option<JobRecord>, StoreError> {
        let id = id.clone();
        self.with(move |c| {
            Ok(select_jobs(c, "WHERE id = ?1", [id.as_str()])?
                .into_iter()
                .next())
        })
        .await
    }

    async fn update_fenced(
        &self,
        job: &JobRecord,
        expected: JobState,
        audit: Option<&AuditEntry>,
        fence: Option<&Fence>,
    ) -> Result<bool, StoreError> {
        let job = job.clone();
        let audit = audit.cloned();
        let fence = fence.cloned();
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if !fence_holds(&tx, fence.as_ref())? {
                return Ok(false);
            }
            let changed = tx.execute(
                "UPDATE jobs SET state = ?1, issue_key = ?2, steps_done = ?3, step_started = ?4, step_started_at = ?5, attempts = ?6, throttles = ?7, last_error = ?8, updated_at = ?9, enqueued = (enqueued OR ?10), merged_into = ?13, points_milli = ?14, not_before = ?15 WHERE id = ?11 AND state = ?12",
                params![
                    job.state.as_str(),
                    job.issue_key.as_ref().map(IssueKey::as_str),
                    job.steps_done,
                    job.step_started.map(|(i, _)| i),
                    job.step_started.map(|(_, at)| at.0),
                    job.attempts,
                    job.throttles,
                    job.last_error,
                    job.updated_at.0,
                    job.enqueued,
                    job.id.as_str(),
                    expected.as_str(),
                    job.merged_into.as_ref().map(JobId::as_str),
                    job.points_milli as i64,
                    job.not_before.map(|t| t.0),
                ],
            )? == 1;
            if changed && let Some(entry) = audit {
                insert_audit(&tx, job.id.as_str(), &[entry])?;
            }
            tx.commit()?;
            Ok(changed)
        })
        .await
    }

    async fn mark_enqueued(&self, id: &JobId) -> Result<(), StoreError> {
        let id = id.clone();
        self.with(move |c| {
            c.execute("UPDATE jobs SET enqueued = 1 WHERE id = ?1", [id.as_str()])
                .map(|_| ())
        })
        .await
    }

    async fn reset_outbox(&self, job: &JobRecord) -> Result<(), StoreError> {
        let id = job.id.clone();
        self.with(move |c| {
            c.execute("UPDATE jobs SET enqueued = 0 WHERE id = ?1", [id.as_str()])
                .map(|_| ())
        })
        .await
    }

    async fn append_audit(&self, id: &JobId, entry: &AuditEntry) -> Result<(), StoreError> {
        let id = id.clone();
        let entry = entry.clone();
        self.with(move |c| insert_audit(c, id.as_str(), &[entry]))
            .await
    }

    async fn audit_trail(&self, id: &JobId) -> Result<Vec<AuditEntry>, StoreError> {
        let id = id.clone();
        let raw: Vec<String> = self
            .with(move |c| {
                let mut st =
                    c.prepare_cached("SELECT entry FROM audit WHERE job_id = ?1 ORDER BY seq")?;
                st.query_map([id.as_str()], |r| r.get(0))?.collect()
            })
            .await?;
        raw.iter()
            .map(|s| serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect()
    }

    async fn entity_jobs(&self, link: &LinkId) -> Result<Vec<JobRecord>, StoreError> {
        let link = link.clone();
        self.with(move |c| select_jobs(c, "WHERE link = ?1 ORDER BY id", [link.as_str()]))
            .await
    }

    async fn queued_creates(&self, limit: usize) -> Result<Vec<JobRecord>, StoreError> {
        self.with(move |c| {
            select_jobs(
                c,
                "WHERE state = 'QUEUED' AND kind IN ('create', 'upsert') ORDER BY created_at LIMIT ?1",
                [limit as i64],
            )
        })
        .await
    }

    async fn unenqueued(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<JobRecord>, StoreError> {
        self.with(move |c| {
            select_jobs(
                c,
                "WHERE enqueued = 0 AND state IN ('QUEUED', 'WAITING', 'RUNNING') AND created_at < ?1 ORDER BY created_at LIMIT ?2",
                params![before.0, limit as i64],
            )
        })
        .await
    }

    async fn list(
        &self,
        state: Option<JobState>,
        limit: usize,
    ) -> Result<Vec<JobRecord>, StoreError> {
        self.with(move |c| match state {
            Some(s) => select_jobs(
                c,
                "WHERE state = ?1 ORDER BY created_at DESC LIMIT ?2",
                params![s.as_str(), limit as i64],
            ),
            None => select_jobs(
                c,
                "ORDER BY created_at DESC LIMIT ?1",
                params![limit as i64],
            ),
        })
        .await
    }
}
