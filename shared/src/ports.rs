//! The ports: small traits the use cases are written against. Adapters in
//! [`crate::adapters`] implement them on SQLite, DynamoDB, SQS and Jira.
//!
//! Futures are declared `Send` so use cases run on a multi-threaded runtime
//! and inside Lambda alike; implementations simply write `async fn`.

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

/// Approval requests. A decision is written once: the first of racing
/// deciders wins, the others see the winner's decision.
pub trait ApprovalStore: Send + Sync {
    /// Creating a request that exists changes nothing (a batch chunk's
    /// request is derived from its page, and made again if the page is).
    fn create_approval(
        &self,
        approval: &ApprovalRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn approval(
        &self,
        id: &ApprovalId,
    ) -> impl Future<Output = Result<Option<ApprovalRecord>, StoreError>> + Send;

    /// The approval for a job, if it waited for one.
    fn approval_for_job(
        &self,
        job: &JobId,
    ) -> impl Future<Output = Result<Option<ApprovalRecord>, StoreError>> + Send;

    /// Records a person's decision unless one exists and while the request
    /// has not expired (`decided.at` before its expiry); true when this call
    /// decided.
    fn decide(
        &self,
        id: &ApprovalId,
        decided: &Decided,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Closes the request as expired unless it was decided, and only once
    /// its expiry has passed (`closed.at`): a decision and the expiry
    /// exclude each other. True when this call closed it.
    fn close_expired(
        &self,
        id: &ApprovalId,
        closed: &Decided,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    fn mark_notified(&self, id: &ApprovalId)
    -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Undecided approvals, oldest first (for operators, the expiry sweep
    /// and notification retries).
    fn open_approvals(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ApprovalRecord>, StoreError>> + Send {
        self.open_approvals_after(None, limit)
    }

    /// The next page of undecided approvals: oldest first, after `after`
    /// (by request time, then id).
    fn open_approvals_after(
        &self,
        after: Option<&ApprovalRecord>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ApprovalRecord>, StoreError>> + Send;

    /// Every job the request's decision (or expiry) covers has moved: it
    /// leaves the list the sweep settles.
    fn mark_applied(&self, id: &ApprovalId) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Decided or expired requests whose jobs may not all have moved yet
    /// (the decider stopped partway), oldest decision first.
    fn unapplied_approvals(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ApprovalRecord>, StoreError>> + Send;
}

/// Batches (bulk sync runs). The paused flag is kept apart from the rest of
/// the record, so a re-posted batch never un-pauses it.
pub trait BatchStore: Send + Sync {
    /// Creates the record unless the batch exists; the stored record either
    /// way (a re-post keeps its counts and its paused flag).
    fn open_batch(
        &self,
        b: &BatchRecord,
    ) -> impl Future<Output = Result<BatchRecord, StoreError>> + Send;

    /// The newest batches' ids, newest first (`tollgate batches list`).
    fn recent_batches(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<BatchId>, StoreError>> + Send;

    /// The record, with its first [`crate::domain::batch::MAX_LISTED_REJECTED`]
    /// rejected items by index and the number of all of them.
    fn batch(
        &self,
        id: &BatchId,
    ) -> impl Future<Output = Result<Option<BatchRecord>, StoreError>> + Send;

    /// Sets the paused flag; false when there is no such batch.
    fn set_batch_paused(
        &self,
        id: &BatchId,
        paused: bool,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The batch's jobs, as progress counts them.
    fn batch_jobs(
        &self,
        id: &BatchId,
    ) -> impl Future<Output = Result<Vec<JobSummary>, StoreError>> + Send;

    /// Stores a post's pages, then its admission record, unless the post
    /// is stored already (the same body posted again). True when new.
    fn store_post(
        &self,
        admission: &AdmissionRecord,
        pages: &[BatchPage],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    fn admission(
        &self,
        batch: &BatchId,
        post: &PostId,
    ) -> impl Future<Output = Result<Option<AdmissionRecord>, StoreError>> + Send;

    fn page(
        &self,
        batch: &BatchId,
        post: &PostId,
        number: u32,
    ) -> impl Future<Output = Result<Option<BatchPage>, StoreError>> + Send;

    /// Lists rejected items under their batch, one per index (writing one
    /// again changes nothing but its rejection id).
    fn note_rejected(
        &self,
        batch: &BatchId,
        items: &[RejectedItem],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Moves the post's cursor past `page` and adds the page's tally to its
    /// batch's counts, in one write; false, changing nothing, when the
    /// cursor is no longer at `page` (another admitter moved it).
    fn advance_admission(
        &self,
        batch: &BatchId,
        post: &PostId,
        page: u32,
        tally: &Tally,
        at: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Unfinished admissions that have not moved since `before`, oldest
    /// first: their continuation was lost, and the sweep resumes them.
    fn stalled_admissions(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<AdmissionRecord>, StoreError>> + Send;
}

/// Hotspot figures in hourly windows, added to atomically.
pub trait StatsStore: Send + Sync {
    fn add_stats(
        &self,
        window: i64,
        stats: &CallStats,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The figures of one window (empty when none were added).
    fn stats(&self, window: i64) -> impl Future<Output = Result<CallStats, StoreError>> + Send;

    /// Adds to a minute window's figures ([`CallStats::minute_part`]),
    /// kept for [`crate::domain::stats::MINUTES_KEPT`] minutes.
    fn add_minute_stats(
        &self,
        minute: i64,
        stats: &CallStats,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The minute windows `from..=to` that have figures, oldest first.
    fn minute_stats(
        &self,
        from: i64,
        to: i64,
    ) -> impl Future<Output = Result<Vec<(i64, CallStats)>, StoreError>> + Send;
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

/// The manual queue of rejected events.
pub trait RejectionStore: Send + Sync {
    /// Keeps the rejection; one whose id is kept already stays as it is
    /// (the same batch item posted again). True when newly kept.
    fn keep_rejection(
        &self,
        r: &Rejection,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    fn rejection(
        &self,
        id: &RejectionId,
    ) -> impl Future<Output = Result<Option<Rejection>, StoreError>> + Send;

    /// Newest first.
    fn rejections(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Rejection>, StoreError>> + Send;

    /// Records the job a re-submission created; false if it was re-submitted
    /// or discarded already (once).
    fn mark_resubmitted(
        &self,
        id: &RejectionId,
        job: &JobId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records that an operator discarded it; false if it was re-submitted
    /// or discarded already.
    fn discard_rejection(
        &self,
        id: &RejectionId,
        discarded: &Discarded,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// Counters in fixed time windows (the mass-create guard).
pub trait Counters: Send + Sync {
    /// The count of `key` in window `window` (0 when never bumped).
    fn count(&self, key: &str, window: i64)
    -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Adds one to the count of `key` in `window`, atomically.
    fn bump(&self, key: &str, window: i64) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Which issue a source system's entity owns, and which job creates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub creator: JobId,
    pub issue_key: Option<IssueKey>,
}

pub trait LinkStore: Send + Sync {
    fn link(&self, id: &LinkId) -> impl Future<Output = Result<Option<Link>, StoreError>> + Send;

    /// Makes `creator` the creator unless the link exists; returns the link
    /// as it stands after the call.
    fn claim_link(
        &self,
        id: &LinkId,
        creator: &JobId,
    ) -> impl Future<Output = Result<Link, StoreError>> + Send;

    /// Hands an unfinished claim from a job that ended without creating the
    /// issue to `to`. False when the claim changed meanwhile.
    fn take_over_link(
        &self,
        id: &LinkId,
        from: &JobId,
        to: &JobId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records the created issue; only the creator may, and only while it
    /// holds the entity's lease with `fence`'s token. False when refused.
    fn set_link_issue(
        &self,
        id: &LinkId,
        creator: &JobId,
        issue: &IssueKey,
        fence: &Fence,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The newest revision (the admitting job's id: ids sort by admission)
    /// applied to each field of the entity's issue.
    fn field_revisions(
        &self,
        id: &LinkId,
    ) -> impl Future<Output = Result<FieldRevisions, StoreError>> + Send;

    /// Raises the applied revision of each named field (never lowers one),
    /// while `fence`'s token still holds the entity's lease. False when
    /// refused.
    fn record_revisions(
        &self,
        id: &LinkId,
        revisions: &FieldRevisions,
        fence: &Fence,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// Field name → the revision (job id) whose value Jira holds.
pub type FieldRevisions = std::collections::BTreeMap<String, JobId>;

/// A held lease: its name and the fencing token it was taken with. Tokens
/// rise with every new holder of a name (a renewal keeps its token), so a
/// write carrying an older token comes from a worker that lost the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub lease: String,
    pub token: u64,
}

/// Expiring, conditional leases: one holder at a time per name, each
/// holding carrying a fencing token.
pub trait Leases: Send + Sync {
    /// Takes the lease (absent, expired, or already `holder`'s) for `ttl`
    /// from now; its fencing token, or `None` when another holder has it.
    /// A renewal by the same holder keeps the token; a new holder gets a
    /// higher one.
    fn acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// Ends the holding now. The name's token is kept, so the next
    /// holder's is higher still.
    fn release(
        &self,
        name: &str,
        holder: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A message on the work queue: which job to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkMessage {
    pub job_id: JobId,
    pub priority: Priority,
}

/// One received message. The receipt is valid until the message becomes
/// visible again (SQS semantics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub job_id: JobId,
    pub receipt: String,
    pub receive_count: u32,
}

/// At-least-once work queue with per-message visibility, as SQS has.
pub trait WorkQueue: Send + Sync {
    fn send(
        &self,
        msg: &WorkMessage,
        delay: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn receive(
        &self,
        max: usize,
        visibility: Duration,
    ) -> impl Future<Output = Result<Vec<Delivery>, StoreError>> + Send;

    fn delete(&self, receipt: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Makes the message visible again after `after`, counted from now.
    fn change_visibility(
        &self,
        receipt: &str,
        after: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// One message found in the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub receipt: String,
    pub letter: Letter,
}

/// What a dead-lettered message was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Letter {
    /// A job's message.
    Job(JobId),
    /// A batch admission's continuation (the sweep resumes stalled
    /// admissions from their cursor).
    Admission { batch: BatchId },
    /// Not tollgate's, or not readable: why.
    Unreadable(String),
}

/// The queue SQS moves a message to after too many failed receives.
pub trait DeadLetters: Send + Sync {
    /// Up to `max` messages, hidden for `visibility` meanwhile.
    fn receive(
        &self,
        max: usize,
        visibility: Duration,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, StoreError>> + Send;

    fn delete(&self, receipt: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A Jira answer that worked, with the rate-limit signals it carried.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer<T> {
    pub value: T,
    pub status: u16,
    pub signal: RateLimitSignal,
}

impl<T> Answer<T> {
    /// The same answer (status, signals) carrying another value.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Answer<U> {
        Answer {
            value: f(self.value),
            status: self.status,
            signal: self.signal,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TrackerError {
    #[error("throttled (HTTP {status})")]
    Throttled {
        status: u16,
        signal: RateLimitSignal,
    },
    /// May have taken effect: a timeout after sending counts here.
    #[error("transient failure: {message}")]
    Transient {
        status: Option<u16>,
        message: String,
        signal: RateLimitSignal,
    },
    #[error("permanent failure: {message}")]
    Permanent { status: u16, message: String },
    /// Not sent: the governor holds the call back for `wait`.
    #[error("held by the governor for {wait:?}: {reason}")]
    Held { wait: Duration, reason: String },
}

impl TrackerError {
    /// Whether the call may have changed Jira although it failed: a lost
    /// connection or timeout, or a server error mid-request. A 429, a 503 or
    /// a 4xx is Jira saying it did nothing; a held call was never sent.
    pub fn may_have_taken_effect(&self) -> bool {
        match self {
            TrackerError::Throttled { .. }
            | TrackerError::Held { .. }
            | TrackerError::Permanent { .. } => false,
            TrackerError::Transient { status, .. } => {
                !matches!(status, Some(429 | 503 | 400..=499))
            }
        }
    }
}

pub type TrackerResult<T> = Result<Answer<T>, TrackerError>;

/// Jira takes at most this many issues per bulk create.
pub const MAX_BULK_CREATE: usize = 50;

/// One issue of a bulk create: its fields and the properties set with it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewIssueRequest {
    pub fields: Map<String, Value>,
    pub properties: Vec<(String, Value)>,
}

/// Why one element of a bulk create was refused (the others may have
/// been created).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementError {
    pub status: u16,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionDone {
    Moved,
    /// The issue already had the wanted status.
    AlreadyThere,
}

/// The issue tracker (Jira Cloud).
pub trait Tracker: Send + Sync {
    /// Creates an issue; `properties` are set in the same call.
    fn create_issue(
        &self,
        fields: &Map<String, Value>,
        properties: &[(String, Value)],
    ) -> impl Future<Output = TrackerResult<IssueKey>> + Send;

    /// Creates several issues in one call (Jira's bulk create, at most
    /// [`MAX_BULK_CREATE`] a call). Each element succeeds or fails on its own:
    /// the answer says which, in the order given.
    fn create_issues(
        &self,
        issues: &[NewIssueRequest],
    ) -> impl Future<Output = TrackerResult<Vec<Result<IssueKey, ElementError>>>> + Send;

    fn edit_issue(
        &self,
        key: &IssueKey,
        fields: &Map<String, Value>,
        add_labels: &[String],
    ) -> impl Future<Output = TrackerResult<()>> + Send;

    /// Posts a comment carrying `marker` as a comment property, so that
    /// [`Tracker::has_comment`] can tell whether a lost answer took effect.
    fn add_comment(
        &self,
        key: &IssueKey,
        text: &str,
        marker: &str,
    ) -> impl Future<Output = TrackerResult<()>> + Send;

    /// Whether a comment carrying `marker` exists, looking through every
    /// comment created since `since` (a minute's slack for clock skew),
    /// however many there are.
    fn has_comment(
        &self,
        key: &IssueKey,
        marker: &str,
        since: Timestamp,
    ) -> impl Future<Output = TrackerResult<bool>> + Send;

    /// Moves the issue through the transition named `name` (or to the status
    /// of that name).
    fn transition(
        &self,
        key: &IssueKey,
        name: &str,
    ) -> impl Future<Output = TrackerResult<TransitionDone>> + Send;

    /// Issues carrying `label` (JQL search), oldest first.
    fn find_by_label(
        &self,
        label: &str,
    ) -> impl Future<Output = TrackerResult<Vec<IssueKey>>> + Send;

    /// Creates a Confluence page (`body` in storage format) carrying
    /// `marker` in the same call (an invisible anchor); its id.
    fn create_page(
        &self,
        space: &SpaceId,
        title: &str,
        body: &str,
        parent: Option<&PageId>,
        marker: &str,
    ) -> impl Future<Output = TrackerResult<PageId>> + Send;

    /// The page titled `title` in the space *that carries `marker`*: a page
    /// of that title without it is someone else's.
    fn find_page(
        &self,
        space: &SpaceId,
        title: &str,
        marker: &str,
    ) -> impl Future<Output = TrackerResult<Option<PageId>>> + Send;

    /// Adds a footer comment (`body` in storage format) carrying `marker`.
    fn add_page_comment(
        &self,
        page: &PageId,
        body: &str,
        marker: &str,
    ) -> impl Future<Output = TrackerResult<()>> + Send;

    /// Whether the page has a footer comment carrying `marker`, looking
    /// through all of them.
    fn has_page_comment(
        &self,
        page: &PageId,
        marker: &str,
    ) -> impl Future<Output = TrackerResult<bool>> + Send;
}

/// The governor's shared state, one row per Jira site, written with
/// optimistic concurrency (a version compared on write).
pub trait GovernorStore: Send + Sync {
    /// The site's state and its version (0 and the default when absent).
    fn load_governor(
        &self,
        site: &str,
    ) -> impl Future<Output = Result<(crate::domain::governor::SiteGovernor, u64), StoreError>> + Send;

    /// Writes the state if the stored version is still `expected`.
    fn save_governor(
        &self,
        site: &str,
        state: &crate::domain::governor::SiteGovernor,
        expected: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// Counts an operator's dashboard needs (`GET /metrics`, the console's
/// overview), read from the store itself, so they agree with the operator
/// commands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Census {
    pub jobs: Vec<(JobState, u64)>,
    /// Some state held more jobs than the store counts at one reading (the
    /// DynamoDB adapter stops at [`CENSUS_COUNT_LIMIT`]): those figures are
    /// lower bounds.
    pub jobs_lower_bound: bool,
    pub approvals_waiting: u64,
    /// Rejections neither re-submitted nor discarded.
    pub rejections_open: u64,
}

/// The most jobs of one state a store counts at one reading; past it the
/// census says "at least". Counting a large DynamoDB partition reads every
/// key in it, and the overview is read every 30 seconds.
pub const CENSUS_COUNT_LIMIT: u64 = 100_000;

/// Whole-store counts.
pub trait CensusStore: Send + Sync {
    fn census(&self) -> impl Future<Output = Result<Census, StoreError>> + Send;

    /// The store answers at all (`GET /readyz`).
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// How much work waits in the queue.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueDepth {
    /// Messages in the work queues, visible, delayed or in flight.
    pub messages: u64,
    /// Age of the oldest message in seconds (0 when none); `None` where the
    /// queue does not say (SQS reports it only as a CloudWatch metric,
    /// `ApproximateAgeOfOldestMessage`).
    pub oldest_age_s: Option<f64>,
}

/// Reads the work queue's depth (SQS's numbers are approximate).
pub trait QueueGauge: Send + Sync {
    fn depth(&self) -> impl Future<Output = Result<QueueDepth, StoreError>> + Send;
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("notification failed: {0}")]
pub struct NotifyError(pub String);

/// Tells people what needs them (Slack, a webhook): approval requests,
/// exhausted work.
pub trait Notifier: Send + Sync {
    fn notify(&self, notice: &Notice) -> impl Future<Output = Result<(), NotifyError>> + Send;

    /// Whether notices go anywhere. Approval requests are marked sent only
    /// through a notifier that is: those that waited while none was
    /// configured are sent once one is.
    fn configured(&self) -> bool {
        true
    }
}

/// No channel configured: approvers find requests with `tollgate approvals
/// list`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoNotifier;

impl Notifier for NoNotifier {
    async fn notify(&self, _: &Notice) -> Result<(), NotifyError> {
        Ok(())
    }

    fn configured(&self) -> bool {
        false
    }
}

pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Timestamp(ms)
    }
}
