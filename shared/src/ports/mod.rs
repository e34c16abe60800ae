//! The ports: small traits the use cases are written against. Adapters in
//! [`crate::adapters`] implement them on SQLite, DynamoDB, SQS and Jira.
//!
//! Futures are declared `Send` so use cases run on a multi-threaded runtime
//! and inside Lambda alike; implementations simply write `async fn`.

mod approvals;
mod batches;
mod clock;
mod figures;
mod governor;
mod jobs;
mod leases;
mod links;
mod notifier;
mod queue;
mod rejections;
mod tracker;

pub use approvals::*;
pub use batches::*;
pub use clock::*;
pub use figures::*;
pub use governor::*;
pub use jobs::*;
pub use leases::*;
pub use links::*;
pub use notifier::*;
pub use queue::*;
pub use rejections::*;
pub use tracker::*;

use crate::domain::admission::{AdmissionRecord, BatchPage, PostId, Tally};
use crate::domain::approval::{ApprovalId, ApprovalRecord, Decided};
use crate::domain::audit::AuditEntry;
use crate::domain::batch::{BatchRecord, JobSummary, RejectedItem};
use crate::domain::event::{OperationKind, Priority};
use crate::domain::idempotency::{DedupId, Fingerprint, IdempotencyKey, LinkId};
use crate::domain::ids::{BatchId, ExternalId, IssueKey, JobId, PageId, SourceSystem, SpaceId};
use crate::domain::job::JobState;
use crate::domain::notice::Notice;
use crate::domain::ratelimit::RateLimitSignal;
use crate::domain::rejection::{Discarded, Rejection, RejectionId};
use crate::domain::stats::CallStats;
use crate::domain::time::Timestamp;
use serde_json::{Map, Value};
use std::future::Future;
use std::time::Duration;

/// A failure of the storage or queue backend (not of the caller's input).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage backend failed: {0}")]
    Backend(String),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// The file is another program's database: left as it was.
    #[error("{0} is not a tollgate database; nothing was changed in it")]
    Foreign(String),
}

/// Everything ingest reads and writes, as one bound.
pub trait IngestStore:
    JobStore + LinkStore + ApprovalStore + Counters + RejectionStore + BatchStore + Leases + StatsStore
{
}

impl<T> IngestStore for T where
    T: JobStore
        + LinkStore
        + ApprovalStore
        + Counters
        + RejectionStore
        + BatchStore
        + Leases
        + StatsStore
{
}
