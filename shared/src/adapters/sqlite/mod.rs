//! Embedded adapter: jobs, audit, links, leases and the work queue in one
//! SQLite file (WAL mode), for `tollgate serve`.
//!
//! Storage layout:
//! * `jobs` — one row per admitted job; `dedup` is UNIQUE, and admission is
//!   `INSERT … ON CONFLICT(dedup) DO NOTHING` (first writer wins). Mutations
//!   are `UPDATE … WHERE id = ? AND state = ?expected` (conditional).
//! * `audit` — append-only, `(job_id, seq)`; each entry is a JSON document.
//! * `links` — source entity → creating job and issue key.
//! * `leases` — `name → holder, expires_at, fence`; taken by an upsert that
//!   only overwrites an expired lease or the holder's own. `fence` (the
//!   fencing token) rises by one with every new holder; release only
//!   expires the row, so tokens never go back. A fenced write reads the
//!   lease's token in its own transaction and writes nothing when it
//!   changed. Expired entity leases are purged a day after they ended.
//! * `revisions` — `(link, field) → job_id`: the newest revision applied to
//!   each field of an entity's issue, raised by an upsert that never lowers
//!   it (job ids sort by admission).
//! * `approvals` — one row per approval request; intent and approvers as
//!   JSON arrays; the decision is written by `UPDATE … WHERE decision IS
//!   NULL` (once), with `applied = 0` until every job it covers has moved
//!   (`approvals_applying` indexes those for the sweep).
//! * `approval_jobs` — job → approval for the other jobs one decision
//!   covers (a batch chunk: `approvals.also`), written with the request.
//! * `counters` — `(key, window) → count`, bumped by an upsert.
//! * `rejected` — the manual queue: body (at most 256 KiB; `truncated`
//!   holds the size and SHA-256 of a larger one), errors (JSON), origin (JSON: a
//!   v1 event, a sender's payload and path, or a batch item), and either
//!   the job a re-submission created or an operator's discard (each set
//!   once, `WHERE resubmitted_as IS NULL AND discarded IS NULL`). Kept with
//!   `INSERT … ON CONFLICT DO NOTHING`: a batch item's id is its own.
//! * `stats` — hotspot counters, `(window, name) → n` (hourly windows),
//!   added by an upsert per counter in one transaction per flush.
//! * `batches`, `batch_posts`, `batch_pages`, `batch_rejections` — see
//!   [`batches`].
//! * `governors` — one row per Jira site: the shared governor state as JSON
//!   and a version; writes are `… WHERE version = ?expected`.
//! * `queue` — SQS semantics: a message is received by moving its
//!   `visible_at` forward in one `UPDATE … RETURNING` (no two receivers get
//!   the same message), and carries a fresh receipt per receive; delete and
//!   visibility changes go by receipt. `interactive` sorts before `bulk`.
//!
//! Each call runs on the blocking pool with its own short transaction, so
//! several processes or connections may share one file.

mod batches;

use crate::domain::approval::{ApprovalId, ApprovalRecord, Decided, Decision};
use crate::domain::audit::AuditEntry;
use crate::domain::event::{OperationKind, Priority};
use crate::domain::governor::SiteGovernor;
use crate::domain::idempotency::{DedupId, Fingerprint, IdempotencyKey, LinkId};
use crate::domain::ids::{BatchId, ExternalId, IssueKey, JobId, SourceSystem};
use crate::domain::job::JobState;
use crate::domain::rejection::{Discarded, Rejection, RejectionId};
use crate::domain::stats::CallStats;
use crate::domain::time::Timestamp;
use crate::ports::GovernorStore;
use crate::ports::{
    Admission, ApprovalStore, Clock, Counters, Delivery, Fence, FieldRevisions, JobRecord,
    JobStore, Leases, Link, LinkStore, RejectionStore, StatsStore, StoreError, SystemClock,
    WorkMessage, WorkQueue,
};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS jobs (
    id              TEXT PRIMARY KEY,
    dedup           TEXT NOT NULL UNIQUE,
    key             TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    link            TEXT NOT NULL,
    kind            TEXT NOT NULL,
    priority        TEXT NOT NULL,
    source_system   TEXT NOT NULL,
    external_id     TEXT NOT NULL,
    payload         TEXT NOT NULL,
    state           TEXT NOT NULL,
    issue_key       TEXT,
    steps_done      INTEGER NOT NULL,
    step_started    INTEGER,
    step_started_at INTEGER,
    attempts        INTEGER NOT NULL,
    throttles       INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    enqueued        INTEGER NOT NULL,
    merged_into     TEXT,
    batch           TEXT,
    points_milli    INTEGER NOT NULL DEFAULT 0,
    not_before      INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_by_key ON jobs(key);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state, created_at);
CREATE INDEX IF NOT EXISTS jobs_by_link ON jobs(link);
CREATE INDEX IF NOT EXISTS jobs_by_batch ON jobs(batch) WHERE batch IS NOT NULL;
CREATE TABLE IF NOT EXISTS approval_jobs (
    job_id      TEXT PRIMARY KEY,
    approval_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS stats (
    window INTEGER NOT NULL,
    name   TEXT NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (window, name)
);
CREATE TABLE IF NOT EXISTS batches (
    id     TEXT PRIMARY KEY,
    paused INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_posts (
    batch      TEXT NOT NULL,
    post       TEXT NOT NULL,
    record     TEXT NOT NULL,
    next_page  INTEGER NOT NULL,
    pages      INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (batch, post)
);
CREATE INDEX IF NOT EXISTS batch_posts_open ON batch_posts(updated_at) WHERE next_page < pages;
CREATE TABLE IF NOT EXISTS batch_pages (
    batch  TEXT NOT NULL,
    post   TEXT NOT NULL,
    number INTEGER NOT NULL,
    page   TEXT NOT NULL,
    PRIMARY KEY (batch, post, number)
);
CREATE TABLE IF NOT EXISTS batch_rejections (
    batch        TEXT NOT NULL,
    idx          INTEGER NOT NULL,
    rejection_id TEXT NOT NULL,
    PRIMARY KEY (batch, idx)
);
CREATE TABLE IF NOT EXISTS audit (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    entry  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_job ON audit(job_id, seq);
CREATE TABLE IF NOT EXISTS links (
    link      TEXT PRIMARY KEY,
    creator   TEXT NOT NULL,
    issue_key TEXT
);
CREATE TABLE IF NOT EXISTS leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    fence      INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS revisions (
    link   TEXT NOT NULL,
    field  TEXT NOT NULL,
    job_id TEXT NOT NULL,
    PRIMARY KEY (link, field)
);
CREATE TABLE IF NOT EXISTS queue (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id        TEXT NOT NULL,
    priority      INTEGER NOT NULL,
    visible_at    INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt       TEXT,
    sent_at       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_by_visibility ON queue(visible_at, priority);
CREATE UNIQUE INDEX IF NOT EXISTS queue_by_receipt ON queue(receipt);
CREATE TABLE IF NOT EXISTS approvals (
    id           TEXT PRIMARY KEY,
    job_id       TEXT NOT NULL UNIQUE,
    rule         TEXT NOT NULL,
    intent       TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    approvers    TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    decision     TEXT,
    decided_by   TEXT,
    decided_at   INTEGER,
    notified     INTEGER NOT NULL,
    also         TEXT NOT NULL DEFAULT '[]',
    applied      INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS approvals_open ON approvals(decision, requested_at);
CREATE INDEX IF NOT EXISTS approvals_applying ON approvals(decided_at) WHERE decision IS NOT NULL AND applied = 0;
CREATE TABLE IF NOT EXISTS rejected (
    id             TEXT PRIMARY KEY,
    received_at    INTEGER NOT NULL,
    source_system  TEXT,
    errors         TEXT NOT NULL,
    body           TEXT NOT NULL,
    resubmitted_as TEXT,
    origin         TEXT NOT NULL DEFAULT '{"kind":"event"}',
    discarded      TEXT,
    truncated      TEXT
);
CREATE INDEX IF NOT EXISTS rejected_by_time ON rejected(received_at);
CREATE TABLE IF NOT EXISTS counters (
    key    TEXT NOT NULL,
    window INTEGER NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (key, window)
);
CREATE TABLE IF NOT EXISTS governors (
    site    TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    state   TEXT NOT NULL
);
"#;

/// One SQLite database holding store and queue.
#[derive(Clone)]
pub struct SqliteDb {
    conn: Arc<Mutex<Connection>>,
}

/// Adds the columns later versions introduced to a database file an
/// earlier version created (`CREATE TABLE IF NOT EXISTS` leaves it as is).
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let added = [
        ("jobs", "merged_into", "TEXT"),
        ("jobs", "batch", "TEXT"),
        ("jobs", "points_milli", "INTEGER NOT NULL DEFAULT 0"),
        ("jobs", "not_before", "INTEGER"),
        ("approvals", "also", "TEXT NOT NULL DEFAULT '[]'"),
        ("approvals", "applied", "INTEGER NOT NULL DEFAULT 1"),
        ("leases", "fence", "INTEGER NOT NULL DEFAULT 1"),
        (
            "rejected",
            "origin",
            "TEXT NOT NULL DEFAULT '{\"kind\":\"event\"}'",
        ),
        ("rejected", "discarded", "TEXT"),
        ("rejected", "truncated", "TEXT"),
    ];
    for (table, column, decl) in added {
        let exists: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
            [table],
            |r| r.get(0),
        )?;
        if !exists {
            continue;
        }
        let has: bool = conn.query_row(
            &format!("SELECT EXISTS (SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1)"),
            [column],
            |r| r.get(0),
        )?;
        if !has {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
        }
    }
    Ok(())
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn now_ms() -> i64 {
    SystemClock.now().0
}

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

impl SqliteDb {
    /// Opens (creating if needed) the database file and its schema.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let conn = Connection::open(path.as_ref()).map_err(backend)?;
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(backend)?;
        // WAL survives a killed process with every committed transaction;
        // NORMAL sync only risks the last commits on power loss.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(backend)?;
        migrate(&conn).map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        Ok(SqliteDb {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| backend("connection mutex poisoned"))?;
            f(&mut guard).map_err(backend)
        })
        .await
        .map_err(backend)?
    }

    /// Every site's governor row (`tollgate sites`).
    pub async fn sites(&self) -> Result<Vec<(String, SiteGovernor)>, StoreError> {
        let rows: Vec<(String, String)> = self
            .with(|c| {
                let mut st = c.prepare("SELECT site, state FROM governors ORDER BY site")?;
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
            })
            .await?;
        rows.into_iter()
            .map(|(site, state)| {
                serde_json::from_str(&state)
                    .map(|g| (site, g))
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect()
    }

    /// Deletes leases that expired (used signatures' marks above all: one
    /// per delivery); DynamoDB's TTL does the same there.
    /// An entity's lease is kept a day after it ended: its fencing token
    /// must outlive any worker that could still write with an older one.
    pub async fn purge_expired_leases(&self) -> Result<usize, StoreError> {
        self.with(|c| {
            let now = now_ms();
            c.execute(
                "DELETE FROM leases WHERE (expires_at <= ?1 AND name NOT LIKE 'link/%') OR expires_at <= ?2",
                params![now, now - 86_400_000],
            )
        })
        .await
    }

    /// Jobs per state (the benchmark watches them drain).
    pub async fn state_counts(&self) -> Result<Vec<(JobState, u64)>, StoreError> {
        let rows: Vec<(String, i64)> = self
            .with(|c| {
                let mut st = c.prepare("SELECT state, COUNT(*) FROM jobs GROUP BY state")?;
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
            })
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(s, n)| JobState::parse(&s).map(|st| (st, n as u64)))
            .collect())
    }
}

const JOB_COLUMNS: &str = "id, dedup, key, fingerprint, link, kind, priority, source_system, external_id, payload, state, issue_key, steps_done, step_started, step_started_at, attempts, throttles, last_error, created_at, updated_at, enqueued, merged_into, batch, points_milli, not_before";

fn corrupt(what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("unknown {what} {value:?}").into(),
    )
}

fn job_from_row(r: &Row<'_>) -> rusqlite::Result<JobRecord> {
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

fn insert_audit(c: &Connection, job: &str, entries: &[AuditEntry]) -> rusqlite::Result<()> {
    let mut st = c.prepare_cached("INSERT INTO audit (job_id, entry) VALUES (?1, ?2)")?;
    for e in entries {
        let json = serde_json::to_string(e)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
        st.execute(params![job, json])?;
    }
    Ok(())
}

fn select_jobs(
    c: &Connection,
    where_clause: &str,
    p: impl rusqlite::Params,
) -> rusqlite::Result<Vec<JobRecord>> {
    let mut st = c.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs {where_clause}"))?;
    st.query_map(p, job_from_row)?.collect()
}

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

fn link_from_row(r: &Row<'_>) -> rusqlite::Result<Link> {
    Ok(Link {
        creator: JobId::from_stored(r.get(0)?),
        issue_key: r.get::<_, Option<String>>(1)?.map(IssueKey::from_stored),
    })
}

impl LinkStore for SqliteDb {
    async fn link(&self, id: &LinkId) -> Result<Option<Link>, StoreError> {
        let id = id.clone();
        self.with(move |c| {
            c.query_row(
                "SELECT creator, issue_key FROM links WHERE link = ?1",
                [id.as_str()],
                link_from_row,
            )
            .optional()
        })
        .await
    }

    async fn claim_link(&self, id: &LinkId, creator: &JobId) -> Result<Link, StoreError> {
        let (id, creator) = (id.clone(), creator.clone());
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO links (link, creator) VALUES (?1, ?2) ON CONFLICT(link) DO NOTHING",
                params![id.as_str(), creator.as_str()],
            )?;
            let link = tx.query_row(
                "SELECT creator, issue_key FROM links WHERE link = ?1",
                [id.as_str()],
                link_from_row,
            )?;
            tx.commit()?;
            Ok(link)
        })
        .await
    }

    async fn take_over_link(
        &self,
        id: &LinkId,
        from: &JobId,
        to: &JobId,
    ) -> Result<bool, StoreError> {
        let (id, from, to) = (id.clone(), from.clone(), to.clone());
        self.with(move |c| {
            Ok(c.execute(
                "UPDATE links SET creator = ?3 WHERE link = ?1 AND creator = ?2 AND issue_key IS NULL",
                params![id.as_str(), from.as_str(), to.as_str()],
            )? == 1)
        })
        .await
    }

    async fn set_link_issue(
        &self,
        id: &LinkId,
        creator: &JobId,
        issue: &IssueKey,
        fence: &Fence,
    ) -> Result<bool, StoreError> {
        let (id, creator, issue) = (id.clone(), creator.clone(), issue.clone());
        let fence = fence.clone();
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if !fence_holds(&tx, Some(&fence))? {
                return Ok(false);
            }
            let changed = tx.execute(
                "UPDATE links SET issue_key = ?3 WHERE link = ?1 AND creator = ?2",
                params![id.as_str(), creator.as_str(), issue.as_str()],
            )? == 1;
            tx.commit()?;
            Ok(changed)
        })
        .await
    }

    async fn field_revisions(&self, id: &LinkId) -> Result<FieldRevisions, StoreError> {
        let id = id.clone();
        let rows: Vec<(String, String)> = self
            .with(move |c| {
                let mut st =
                    c.prepare_cached("SELECT field, job_id FROM revisions WHERE link = ?1")?;
                st.query_map([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|(field, job)| (field, JobId::from_stored(job)))
            .collect())
    }

    async fn record_revisions(
        &self,
        id: &LinkId,
        revisions: &FieldRevisions,
        fence: &Fence,
    ) -> Result<bool, StoreError> {
        let id = id.clone();
        let revisions = revisions.clone();
        let fence = fence.clone();
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if !fence_holds(&tx, Some(&fence))? {
                return Ok(false);
            }
            for (field, job) in &revisions {
                tx.execute(
                    "INSERT INTO revisions (link, field, job_id) VALUES (?1, ?2, ?3)
                     ON CONFLICT(link, field) DO UPDATE SET job_id = excluded.job_id
                     WHERE excluded.job_id > revisions.job_id",
                    params![id.as_str(), field, job.as_str()],
                )?;
            }
            tx.commit()?;
            Ok(true)
        })
        .await
    }
}

/// Whether the lease still carries the writer's fencing token (always, for
/// a write without a fence).
fn fence_holds(c: &Connection, fence: Option<&Fence>) -> rusqlite::Result<bool> {
    let Some(f) = fence else {
        return Ok(true);
    };
    let token: Option<i64> = c
        .query_row(
            "SELECT fence FROM leases WHERE name = ?1",
            [f.lease.as_str()],
            |r| r.get(0),
        )
        .optional()?;
    Ok(token == Some(f.token as i64))
}

impl Leases for SqliteDb {
    async fn acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, StoreError> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.with(move |c| {
            let now = now_ms();
            c.query_row(
                "INSERT INTO leases (name, holder, expires_at, fence) VALUES (?1, ?2, ?3, 1)
                 ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at,
                   fence = CASE WHEN leases.holder = excluded.holder THEN leases.fence ELSE leases.fence + 1 END
                 WHERE leases.expires_at <= ?4 OR leases.holder = excluded.holder
                 RETURNING fence",
                params![name, holder, now + ms(ttl), now],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|t| t.map(|t| t as u64))
        })
        .await
    }

    async fn release(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.with(move |c| {
            c.execute(
                "UPDATE leases SET expires_at = MIN(expires_at, ?3) WHERE name = ?1 AND holder = ?2",
                params![name, holder, now_ms()],
            )
            .map(|_| ())
        })
        .await
    }
}

fn priority_rank(p: Priority) -> i64 {
    match p {
        Priority::Interactive => 0,
        Priority::Bulk => 1,
    }
}

impl WorkQueue for SqliteDb {
    async fn send(&self, msg: &WorkMessage, delay: Duration) -> Result<(), StoreError> {
        let msg = msg.clone();
        self.with(move |c| {
            let now = now_ms();
            c.execute(
                "INSERT INTO queue (job_id, priority, visible_at, sent_at) VALUES (?1, ?2, ?3, ?4)",
                params![
                    msg.job_id.as_str(),
                    priority_rank(msg.priority),
                    now + ms(delay),
                    now
                ],
            )
            .map(|_| ())
        })
        .await
    }

    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Delivery>, StoreError> {
        self.with(move |c| {
            let now = now_ms();
            let nonce = uuid::Uuid::new_v4().simple().to_string();
            let mut st = c.prepare_cached(
                "UPDATE queue SET visible_at = ?1, receive_count = receive_count + 1, receipt = ?2 || '.' || id
                 WHERE id IN (SELECT id FROM queue WHERE visible_at <= ?3 ORDER BY priority, visible_at, id LIMIT ?4)
                 RETURNING job_id, receipt, receive_count",
            )?;
            let rows = st.query_map(params![now + ms(visibility), nonce, now, max as i64], |r| {
                Ok(Delivery {
                    job_id: JobId::from_stored(r.get(0)?),
                    receipt: r.get(1)?,
                    receive_count: r.get(2)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn delete(&self, receipt: &str) -> Result<(), StoreError> {
        let receipt = receipt.to_string();
        self.with(move |c| {
            c.execute("DELETE FROM queue WHERE receipt = ?1", [receipt])
                .map(|_| ())
        })
        .await
    }

    async fn change_visibility(&self, receipt: &str, after: Duration) -> Result<(), StoreError> {
        let receipt = receipt.to_string();
        self.with(move |c| {
            c.execute(
                "UPDATE queue SET visible_at = ?1 WHERE receipt = ?2",
                params![now_ms() + ms(after), receipt],
            )
            .map(|_| ())
        })
        .await
    }
}

impl GovernorStore for SqliteDb {
    async fn load_governor(&self, site: &str) -> Result<(SiteGovernor, u64), StoreError> {
        let site = site.to_string();
        let row: Option<(i64, String)> = self
            .with(move |c| {
                c.query_row(
                    "SELECT version, state FROM governors WHERE site = ?1",
                    [site],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
            })
            .await?;
        match row {
            None => Ok((SiteGovernor::default(), 0)),
            Some((version, state)) => {
                let g =
                    serde_json::from_str(&state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok((g, version as u64))
            }
        }
    }

    async fn save_governor(
        &self,
        site: &str,
        state: &SiteGovernor,
        expected: u64,
    ) -> Result<bool, StoreError> {
        let site = site.to_string();
        let json = serde_json::to_string(state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.with(move |c| {
            let changed = if expected == 0 {
                c.execute(
                    "INSERT INTO governors (site, version, state) VALUES (?1, 1, ?2) ON CONFLICT(site) DO NOTHING",
                    params![site, json],
                )?
            } else {
                c.execute(
                    "UPDATE governors SET version = version + 1, state = ?2 WHERE site = ?1 AND version = ?3",
                    params![site, json, expected as i64],
                )?
            };
            Ok(changed == 1)
        })
        .await
    }
}

const APPROVAL_COLUMNS: &str = "id, job_id, rule, intent, requested_by, approvers, requested_at, expires_at, decision, decided_by, decided_at, notified, also";

fn json_list(raw: String) -> rusqlite::Result<Vec<String>> {
    serde_json::from_str(&raw).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
    })
}

/// An approval as the values of its row, JSON lists encoded.
struct ApprovalRow {
    record: ApprovalRecord,
    intent: String,
    approvers: String,
    also: String,
}

fn approval_params(a: &ApprovalRecord) -> Result<ApprovalRow, StoreError> {
    let json =
        |v: &Vec<String>| serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()));
    Ok(ApprovalRow {
        record: a.clone(),
        intent: json(&a.intent)?,
        approvers: json(&a.approvers)?,
        also: json(&a.also.iter().map(|j| j.to_string()).collect())?,
    })
}

fn insert_approval(c: &Connection, row: &ApprovalRow) -> rusqlite::Result<()> {
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

fn approval_from_row(r: &Row<'_>) -> rusqlite::Result<ApprovalRecord> {
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

fn select_approvals(
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

fn rejection_from_row(r: &Row<'_>) -> rusqlite::Result<Rejection> {
    fn json<T: serde::de::DeserializeOwned>(col: usize, text: &str) -> rusqlite::Result<T> {
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

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

const REJECTION_COLUMNS: &str =
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
