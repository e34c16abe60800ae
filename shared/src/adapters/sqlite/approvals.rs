//! Approval requests.
//!
//! * `approvals` — one row per approval request; intent and approvers as
//!   JSON arrays; the decision is written by `UPDATE … WHERE decision IS
//!   NULL` (once), with `applied = 0` until every job it covers has moved
//!   (`approvals_applying` indexes those for the sweep).
//! * `approval_jobs` — job → approval for the other jobs one decision
//!   covers (a batch chunk: `approvals.also`), written with the request.

use super::*;

pub(super) const APPROVAL_COLUMNS: &str = "id, job_id, rule, intent, requested_by, approvers, requested_at, expires_at, decision, decided_by, decided_at, notified, also";

pub(super) fn json_list(raw: String) -> rusqlite::Result<Vec<String>> {
    serde_json::from_str(&raw).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
    })
}

/// An approval as the values of its row, JSON lists encoded.
pub(super) struct ApprovalRow {
    record: ApprovalRecord,
    intent: String,
    approvers: String,
    also: String,
}

pub(super) fn approval_params(a: &ApprovalRecord) -> Result<ApprovalRow, StoreError> {
    let json =
        |v: &Vec<String>| serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()));
    Ok(ApprovalRow {
        record: a.clone(),
        intent: json(&a.intent)?,
        approvers: json(&a.approvers)?,
        also: json(&a.also.iter().map(|j| j.to_string()).collect())?,
    })
}

pub(super) fn insert_approval(c: &Connection, row: &ApprovalRow) -> rusqlite::Result<()> {
    let a = &row.record;
    c.prepare_cached(&format!(
        "INSERT INTO approvals ({APPROVAL_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) ON CONFLICT(id) DO NOTHING"
    ))?
    .execute(params![
        a.id.as_str(),
        a.job_id.as_str(),
        a.rule,
        row.intent,
        a.requested_by,
        row.approvers,
        a.requested_at.0,
        a.expires_at.0,
        a.decided.as_ref().map(|d| d.decision.as_str()),
        a.decided.as_ref().map(|d| d.by.clone()),
        a.decided.as_ref().map(|d| d.at.0),
        a.notified,
        row.also,
    ])?;
    let mut st = c.prepare_cached(
        "INSERT INTO approval_jobs (job_id, approval_id) VALUES (?1, ?2) ON CONFLICT(job_id) DO NOTHING",
    )?;
    for job in &a.also {
        st.execute(params![job.as_str(), a.id.as_str()])?;
    }
    Ok(())
}

pub(super) fn approval_from_row(r: &Row<'_>) -> rusqlite::Result<ApprovalRecord> {
    let decision: Option<String> = r.get(8)?;
    let decided = match decision.as_deref() {
        None => None,
        Some(d) => Some(Decided {
            decision: match d {
                "approve" => Decision::Approve,
                "deny" => Decision::Deny,
                other => return Err(corrupt("decision", other)),
            },
            by: r.get::<_, Option<String>>(9)?.unwrap_or_default(),
            at: Timestamp(r.get::<_, Option<i64>>(10)?.unwrap_or_default()),
        }),
    };
    Ok(ApprovalRecord {
        id: ApprovalId::from_stored(r.get(0)?),
        job_id: JobId::from_stored(r.get(1)?),
        rule: r.get(2)?,
        intent: json_list(r.get(3)?)?,
        requested_by: r.get(4)?,
        approvers: json_list(r.get(5)?)?,
        requested_at: Timestamp(r.get(6)?),
        expires_at: Timestamp(r.get(7)?),
        decided,
        notified: r.get(11)?,
        also: json_list(r.get(12)?)?
            .into_iter()
            .map(JobId::from_stored)
            .collect(),
    })
}

pub(super) fn select_approvals(
    c: &Connection,
    where_clause: &str,
    p: impl rusqlite::Params,
) -> rusqlite::Result<Vec<ApprovalRecord>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {APPROVAL_COLUMNS} FROM approvals {where_clause}"
    ))?;
    st.query_map(p, approval_from_row)?.collect()
}

impl ApprovalStore for SqliteDb {
    async fn create_approval(&self, a: &ApprovalRecord) -> Result<(), StoreError> {
        let row = approval_params(a)?;
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            insert_approval(&tx, &row)?;
            tx.commit()
        })
        .await
    }

    async fn approval(&self, id: &ApprovalId) -> Result<Option<ApprovalRecord>, StoreError> {
        let id = id.clone();
        self.with(move |c| {
            Ok(select_approvals(c, "WHERE id = ?1", [id.as_str()])?
                .into_iter()
                .next())
        })
        .await
    }

    async fn approval_for_job(&self, job: &JobId) -> Result<Option<ApprovalRecord>, StoreError> {
        let job = job.clone();
        self.with(move |c| {
            Ok(select_approvals(
                c,
                "WHERE job_id = ?1 OR id = (SELECT approval_id FROM approval_jobs WHERE job_id = ?1)",
                [job.as_str()],
            )?
                .into_iter()
                .next())
        })
        .await
    }

    async fn decide(&self, id: &ApprovalId, decided: &Decided) -> Result<bool, StoreError> {
        let (id, d) = (id.clone(), decided.clone());
        self.with(move |c| {
            Ok(c.execute(
                "UPDATE approvals SET decision = ?2, decided_by = ?3, decided_at = ?4, applied = 0 WHERE id = ?1 AND decision IS NULL AND expires_at > ?4",
                params![id.as_str(), d.decision.as_str(), d.by, d.at.0],
            )? == 1)
        })
        .await
    }

    async fn close_expired(&self, id: &ApprovalId, closed: &Decided) -> Result<bool, StoreError> {
        let (id, d) = (id.clone(), closed.clone());
        self.with(move |c| {
            Ok(c.execute(
                "UPDATE approvals SET decision = ?2, decided_by = ?3, decided_at = ?4, applied = 0 WHERE id = ?1 AND decision IS NULL AND expires_at <= ?4",
                params![id.as_str(), d.decision.as_str(), d.by, d.at.0],
            )? == 1)
        })
        .await
    }

    async fn mark_notified(&self, id: &ApprovalId) -> Result<(), StoreError> {
        let id = id.clone();
        self.with(move |c| {
            c.execute(
                "UPDATE approvals SET notified = 1 WHERE id = ?1",
                [id.as_str()],
            )
            .map(|_| ())
        })
        .await
    }

    async fn mark_applied(&self, id: &ApprovalId) -> Result<(), StoreError> {
        let id = id.clone();
        self.with(move |c| {
            c.execute(
                "UPDATE approvals SET applied = 1 WHERE id = ?1",
                [id.as_str()],
            )
            .map(|_| ())
        })
        .await
    }

    async fn unapplied_approvals(&self, limit: usize) -> Result<Vec<ApprovalRecord>, StoreError> {
        self.with(move |c| {
            select_approvals(
                c,
                "WHERE decision IS NOT NULL AND applied = 0 ORDER BY decided_at, id LIMIT ?1",
                [limit as i64],
            )
        })
        .await
    }

    async fn open_approvals_after(
        &self,
        after: Option<&ApprovalRecord>,
        limit: usize,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        let (at, id) = after.map_or((i64::MIN, String::new()), |a| {
            (a.requested_at.0, a.id.as_str().to_string())
        });
        self.with(move |c| {
            select_approvals(
                c,
                "WHERE decision IS NULL AND (requested_at > ?2 OR (requested_at = ?2 AND id > ?3)) ORDER BY requested_at, id LIMIT ?1",
                params![limit as i64, at, id],
            )
        })
        .await
    }
}
