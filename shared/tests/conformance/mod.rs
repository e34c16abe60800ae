//! Behaviour every store and queue adapter must share. Each function takes a
//! factory that opens a fresh handle on the *same* backing store, so races
//! run across separate connections, as separate workers would.

#![allow(dead_code)]

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;
use tollgate::domain::approval::{ApprovalId, ApprovalRecord, Decided, Decision};
use tollgate::domain::audit::{AuditEntry, Stage};
use tollgate::domain::event::{OperationKind, Priority};
use tollgate::domain::idempotency::{DedupId, Fingerprint, IdempotencyKey, LinkId};
use tollgate::domain::ids::{ExternalId, IssueKey, JobId, SourceSystem};
use tollgate::domain::job::JobState;
use tollgate::domain::rejection::{Discarded, Rejection};
use tollgate::domain::time::Timestamp;
use tollgate::domain::validation::FieldError;
use tollgate::ports::{
    Admission, ApprovalStore, BatchStore, CensusStore, Counters, Fence, FieldRevisions,
    GovernorStore, JobRecord, JobStore, Leases, LinkStore, QueueGauge, RejectionStore, StatsStore,
    WorkMessage, WorkQueue,
};

mod approvals;
mod batches;
mod figures;
mod governor;
mod jobs;
mod leases;
mod links;
mod queue;
mod rejections;

pub use approvals::*;
pub use batches::*;
pub use figures::*;
pub use governor::*;
pub use jobs::*;
pub use leases::*;
pub use links::*;
pub use queue::*;
pub use rejections::*;

pub fn job(dedup: &str, key: &str) -> JobRecord {
    let source = SourceSystem::parse("test").unwrap();
    let external = ExternalId::parse(key).unwrap();
    JobRecord {
        id: JobId::generate(),
        key: IdempotencyKey::from_stored(key.to_string()),
        fingerprint: Fingerprint::from_stored(dedup.to_string()),
        dedup: DedupId::from_stored(dedup.to_string()),
        link: LinkId::of(&source, &external),
        kind: OperationKind::Update,
        priority: Priority::Interactive,
        source_system: source,
        external_id: external,
        payload: "{}".into(),
        state: JobState::Queued,
        issue_key: None,
        steps_done: 0,
        step_started: None,
        attempts: 0,
        throttles: 0,
        last_error: None,
        created_at: Timestamp(1),
        updated_at: Timestamp(1),
        enqueued: false,
        merged_into: None,
        batch: None,
        points_milli: 0,
        not_before: None,
    }
}

fn entry(what: &str) -> AuditEntry {
    AuditEntry::new(Timestamp(1), Stage::Queue, "test", what)
}

pub fn approval(job: &JobId) -> ApprovalRecord {
    ApprovalRecord {
        id: ApprovalId::generate(),
        job_id: job.clone(),
        also: Vec::new(),
        rule: "built-in: transitions need approval".into(),
        intent: vec!["move OPS-1 to Done".into(), "then comment".into()],
        requested_by: "itsm".into(),
        approvers: vec!["lead@example.com".into(), "ciso@example.com".into()],
        requested_at: Timestamp(1_000),
        expires_at: Timestamp(9_000_000_000_000),
        decided: None,
        notified: false,
    }
}
