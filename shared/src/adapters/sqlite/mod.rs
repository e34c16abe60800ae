//! Embedded adapter: jobs, audit, links, leases and the work queue in one
//! SQLite file (WAL mode), for `tollgate serve`.
//!
//! Storage layout: one module per aggregate, each opening with the tables
//! it owns — [`jobs`] (jobs, audit), [`links`] (links, revisions),
//! [`leases`], [`approvals`], [`batches`], [`rejections`], [`counters`]
//! (counters, stats), [`governor`], [`queue`]. `SCHEMA` below creates them
//! all; [`migrate`] adds what later versions added to an older file.
//!
//! Each call runs on the blocking pool with its own short transaction, so
//! several processes or connections may share one file.

mod approvals;
mod batches;
mod census;
mod counters;
mod governor;
mod jobs;
mod leases;
mod links;
mod queue;
mod rejections;

// What one aggregate's module uses of another's.
use approvals::{approval_params, insert_approval};
use leases::fence_holds;

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
CREATE TABLE IF NOT EXISTS minute_stats (
    minute INTEGER NOT NULL,
    name   TEXT NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (minute, name)
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

/// `PRAGMA application_id` of a tollgate database ("Tolg"), so another
/// program's SQLite file is recognised and never written to.
const APPLICATION_ID: i32 = 0x546f_6c67;

/// Refuses a SQLite file that is not tollgate's: another application id, or
/// none with tables that are not an older tollgate's. Read-only; the file's
/// bytes stay as they are.
fn refuse_foreign(path: &Path) -> Result<(), StoreError> {
    let foreign = || StoreError::Foreign(path.display().to_string());
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|_| foreign())?;
    let id: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|_| foreign())?;
    if id == APPLICATION_ID {
        return Ok(());
    }
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
        .map_err(|_| foreign())?;
    let older_tollgate = ["jobs", "queue", "leases"]
        .iter()
        .all(|t| tables.iter().any(|n| n == t));
    if id == 0 && (tables.is_empty() || older_tollgate) {
        Ok(())
    } else {
        Err(foreign())
    }
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
        let path = path.as_ref();
        // Before anything writes to it (WAL mode alone rewrites its header).
        if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
            refuse_foreign(path)?;
        }
        let conn = Connection::open(path).map_err(backend)?;
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
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(backend)?;
        Ok(SqliteDb {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Opens an existing tollgate database for reading only (operator
    /// commands that only look): nothing in the file changes, not even
    /// its schema; another program's file is refused.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        refuse_foreign(path)?;
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(backend)?;
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(backend)?;
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

fn corrupt(what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("unknown {what} {value:?}").into(),
    )
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tollgate-sqlite-{name}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("t.db")
    }

    #[test]
    fn another_programs_database_is_refused_and_left_as_it_was() {
        let path = scratch("foreign");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT); INSERT INTO notes (text) VALUES ('mine');")
                .unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        match SqliteDb::open(&path) {
            Err(StoreError::Foreign(p)) => assert!(p.ends_with("t.db")),
            other => panic!("{:?}", other.map(|_| ())),
        }
        assert_eq!(std::fs::read(&path).unwrap(), before, "not a byte changed");
    }

    #[test]
    fn a_read_only_open_reads_without_writing_and_refuses_a_foreign_file() {
        let path = scratch("read-only");
        drop(SqliteDb::open(&path).unwrap());
        let ro = SqliteDb::open_read_only(&path).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        assert!(rt.block_on(ro.state_counts()).unwrap().is_empty());
        let refused = rt.block_on(ro.with(|c| c.execute("DELETE FROM jobs", [])));
        assert!(refused.is_err(), "a read-only handle cannot write");
        let foreign = scratch("read-only-foreign");
        Connection::open(&foreign)
            .unwrap()
            .execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY);")
            .unwrap();
        let before = std::fs::read(&foreign).unwrap();
        assert!(matches!(
            SqliteDb::open_read_only(&foreign),
            Err(StoreError::Foreign(_))
        ));
        assert_eq!(std::fs::read(&foreign).unwrap(), before);
    }

    #[test]
    fn a_new_database_is_marked_as_tollgates_and_an_older_one_is_accepted() {
        let path = scratch("ours");
        drop(SqliteDb::open(&path).unwrap());
        let id: i32 = Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .unwrap();
        assert_eq!(id, APPLICATION_ID);
        drop(SqliteDb::open(&path).unwrap());
        // One made before the id existed: tollgate's tables, id 0.
        let older = scratch("older");
        {
            let c = Connection::open(&older).unwrap();
            c.execute_batch(SCHEMA).unwrap();
        }
        drop(SqliteDb::open(&older).unwrap());
    }
}
