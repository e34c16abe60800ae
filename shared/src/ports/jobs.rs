//! Jobs, their dedup records and audit trails: what ingest admits and the
//! executor and operators move.

use super::*;

/// Everything tollgate keeps about one job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub id: JobId,
    pub key: IdempotencyKey,
    pub fingerprint: Fingerprint,
    pub dedup: DedupId,
    pub link: LinkId,
    pub kind: OperationKind,
    pub priority: Priority,
    pub source_system: SourceSystem,
    pub external_id: ExternalId,
    /// The event as canonical JSON; re-validated when the job runs.
    pub payload: String,
    pub state: JobState,
    pub issue_key: Option<IssueKey>,
    /// Recovery point: steps of the plan already done.
    pub steps_done: u32,
    /// A non-repeatable step was started at this time and its answer not
    /// recorded: reconcile before repeating it.
    pub step_started: Option<(u32, Timestamp)>,
    /// Transient failures so far (throttles are counted apart).
    pub attempts: u32,
    pub throttles: u32,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Whether the queue message was sent (the outbox flag): a job admitted
    /// but not enqueued is sent again by the sweep or by a redelivery.
    pub enqueued: bool,
    /// The job whose run carries this one's changes (coalescing); set
    /// together with the move to MERGED.
    pub merged_into: Option<JobId>,
    /// The bulk sync run the job came in with.
    pub batch: Option<BatchId>,
    /// Jira points this job spent, in thousandths: a bulk create's point is
    /// shared by the issues it creates.
    pub points_milli: u64,
    /// A waiting job runs no earlier than this (the wait Jira asked for):
    /// any message for it that arrives sooner goes back for the rest of the
    /// wait, without a Jira call.
    pub not_before: Option<Timestamp>,
}

pub enum Admission {
    New,
    /// The dedup id was taken: this is the job that took it.
    Existing(Box<JobRecord>),
}

/// Jobs, their dedup records and their audit trails.
pub trait JobStore: Send + Sync {
    /// Inserts the job unless its dedup id exists (first writer wins), with
    /// its first audit entries and, for a job that waits for a person, its
    /// approval request — all or nothing.
    fn admit(
        &self,
        job: &JobRecord,
        audit: &[AuditEntry],
        approval: Option<&ApprovalRecord>,
    ) -> impl Future<Output = Result<Admission, StoreError>> + Send;

    fn job(&self, id: &JobId)
    -> impl Future<Output = Result<Option<JobRecord>, StoreError>> + Send;

    /// The job admitted under a dedup id, if any (a batch's re-posted item
    /// is known before anything is created for it).
    fn job_by_dedup(
        &self,
        dedup: &DedupId,
    ) -> impl Future<Output = Result<Option<JobId>, StoreError>> + Send;

    /// Writes the job's mutable fields if its state is still `expected`.
    /// Returns false, changing nothing, when another writer got there first.
    /// (Writers outside a lease: ingest, approvals, operators.)
    fn update(
        &self,
        job: &JobRecord,
        expected: JobState,
        audit: Option<&AuditEntry>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        self.update_fenced(job, expected, audit, None)
    }

    /// [`JobStore::update`], and — with a fence — only while the lease still
    /// carries the fencing token the writer took it with: a worker whose
    /// lease was taken over writes nothing more.
    fn update_fenced(
        &self,
        job: &JobRecord,
        expected: JobState,
        audit: Option<&AuditEntry>,
        fence: Option<&Fence>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Sets the outbox flag alone: the queue message was sent. Touches no
    /// other field, so it cannot undo a worker's concurrent checkpoint.
    fn mark_enqueued(&self, id: &JobId) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Clears the outbox flag before a job is queued again (an operator's
    /// or the schedule's re-run), so a crash before its message is sent
    /// leaves it to the outbox sweep.
    fn reset_outbox(&self, job: &JobRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn append_audit(
        &self,
        id: &JobId,
        entry: &AuditEntry,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn audit_trail(
        &self,
        id: &JobId,
    ) -> impl Future<Output = Result<Vec<AuditEntry>, StoreError>> + Send;

    /// Every job of one entity (source system + external id), oldest
    /// first: the jobs a run may coalesce.
    fn entity_jobs(
        &self,
        link: &LinkId,
    ) -> impl Future<Output = Result<Vec<JobRecord>, StoreError>> + Send;

    /// Queued jobs that may create an issue, oldest first: the partners of
    /// a bulk create.
    fn queued_creates(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<JobRecord>, StoreError>> + Send;

    /// Jobs admitted before `before` whose queue message may never have been
    /// sent (the outbox sweep).
    fn unenqueued(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<JobRecord>, StoreError>> + Send;

    fn list(
        &self,
        state: Option<JobState>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<JobRecord>, StoreError>> + Send;
}
