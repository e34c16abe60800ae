//! Delivery semantics at the front door: a sender's retry of the very same
//! request (same bytes, same signature) is a redelivery — answered `202`
//! with the first job — whatever became of the first attempt, on SQLite and
//! on DynamoDB (moto). A store that fails once after the signature check
//! stands for a crash, a timeout or a transaction conflict there.

#[path = "../shared/tests/support/moto.rs"]
mod moto;

use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tollgate::adapters::dynamodb::DynamoStore;
use tollgate::adapters::sqlite::SqliteDb;
use tollgate::adapters::sqs::SqsQueue;
use tollgate::app::ingest::{Ingest, IngestOutcome};
use tollgate::domain::admission::{AdmissionRecord, BatchPage, PostId, Tally};
use tollgate::domain::approval::{ApprovalId, ApprovalRecord, Decided};
use tollgate::domain::audit::AuditEntry;
use tollgate::domain::batch::{BatchRecord, JobSummary, RejectedItem};
use tollgate::domain::idempotency::LinkId;
use tollgate::domain::ids::{BatchId, IssueKey, JobId};
use tollgate::domain::job::JobState;
use tollgate::domain::rejection::{Discarded, Rejection, RejectionId};
use tollgate::domain::secret::Secret;
use tollgate::domain::signature;
use tollgate::domain::stats::CallStats;
use tollgate::domain::time::Timestamp;
use tollgate::ports::{
    Admission, ApprovalStore, BatchStore, Counters, Fence, FieldRevisions, IngestStore, JobRecord,
    JobStore, Leases, Link, LinkStore, RejectionStore, StatsStore, StoreError, SystemClock,
    WorkQueue,
};
use tollgate_e2e::Scratch;

/// A store whose next `failing` admissions fail, as a crash or a storage
/// fault between the signature check and the admission would.
struct Faulty<S> {
    inner: S,
    failing: AtomicUsize,
    /// State writes that still succeed; every one after them fails (a
    /// decider that stops partway through a chunk).
    updates_left: AtomicUsize,
}

impl<S> Faulty<S> {
    fn new(inner: S) -> Self {
        Faulty {
            inner,
            failing: AtomicUsize::new(0),
            updates_left: AtomicUsize::new(usize::MAX),
        }
    }
}

impl<S: JobStore> JobStore for Faulty<S> {
    async fn admit(
        &self,
        job: &JobRecord,
        audit: &[AuditEntry],
        approval: Option<&ApprovalRecord>,
    ) -> Result<Admission, StoreError> {
        if self
            .failing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StoreError::Backend("injected: the store went away".into()));
        }
        self.inner.admit(job, audit, approval).await
    }
    async fn job(&self, id: &JobId) -> Result<Option<JobRecord>, StoreError> {
        self.inner.job(id).await
    }
    async fn job_by_dedup(
        &self,
        dedup: &tollgate::domain::idempotency::DedupId,
    ) -> Result<Option<JobId>, StoreError> {
        self.inner.job_by_dedup(dedup).await
    }
    async fn update_fenced(
        &self,
        job: &JobRecord,
        expected: JobState,
        audit: Option<&AuditEntry>,
        fence: Option<&Fence>,
    ) -> Result<bool, StoreError> {
        if self
            .updates_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err()
        {
            return Err(StoreError::Backend("injected: the decider stopped".into()));
        }
        self.inner.update_fenced(job, expected, audit, fence).await
    }
    async fn mark_enqueued(&self, id: &JobId) -> Result<(), StoreError> {
        self.inner.mark_enqueued(id).await
    }
    async fn reset_outbox(&self, job: &JobRecord) -> Result<(), StoreError> {
        self.inner.reset_outbox(job).await
    }
    async fn append_audit(&self, id: &JobId, entry: &AuditEntry) -> Result<(), StoreError> {
        self.inner.append_audit(id, entry).await
    }
    async fn audit_trail(&self, id: &JobId) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.audit_trail(id).await
    }
    async fn entity_jobs(&self, link: &LinkId) -> Result<Vec<JobRecord>, StoreError> {
        self.inner.entity_jobs(link).await
    }
    async fn queued_creates(&self, limit: usize) -> Result<Vec<JobRecord>, StoreError> {
        self.inner.queued_creates(limit).await
    }
    async fn unenqueued(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<JobRecord>, StoreError> {
        self.inner.unenqueued(before, limit).await
    }
    async fn list(
        &self,
        state: Option<JobState>,
        limit: usize,
    ) -> Result<Vec<JobRecord>, StoreError> {
        self.inner.list(state, limit).await
    }
}

impl<S: LinkStore> LinkStore for Faulty<S> {
    async fn link(&self, id: &LinkId) -> Result<Option<Link>, StoreError> {
        self.inner.link(id).await
    }
    async fn claim_link(&self, id: &LinkId, creator: &JobId) -> Result<Link, StoreError> {
        self.inner.claim_link(id, creator).await
    }
    async fn take_over_link(
        &self,
        id: &LinkId,
        from: &JobId,
        to: &JobId,
    ) -> Result<bool, StoreError> {
        self.inner.take_over_link(id, from, to).await
    }
    async fn set_link_issue(
        &self,
        id: &LinkId,
        creator: &JobId,
        issue: &IssueKey,
        fence: &Fence,
    ) -> Result<bool, StoreError> {
        self.inner.set_link_issue(id, creator, issue, fence).await
    }
    async fn field_revisions(&self, id: &LinkId) -> Result<FieldRevisions, StoreError> {
        self.inner.field_revisions(id).await
    }
    async fn record_revisions(
        &self,
        id: &LinkId,
        revisions: &FieldRevisions,
        fence: &Fence,
    ) -> Result<bool, StoreError> {
        self.inner.record_revisions(id, revisions, fence).await
    }
}

impl<S: ApprovalStore> ApprovalStore for Faulty<S> {
    async fn mark_applied(&self, id: &ApprovalId) -> Result<(), StoreError> {
        self.inner.mark_applied(id).await
    }
    async fn unapplied_approvals(&self, limit: usize) -> Result<Vec<ApprovalRecord>, StoreError> {
        self.inner.unapplied_approvals(limit).await
    }
    async fn create_approval(&self, a: &ApprovalRecord) -> Result<(), StoreError> {
        self.inner.create_approval(a).await
    }
    async fn approval(&self, id: &ApprovalId) -> Result<Option<ApprovalRecord>, StoreError> {
        self.inner.approval(id).await
    }
    async fn approval_for_job(&self, job: &JobId) -> Result<Option<ApprovalRecord>, StoreError> {
        self.inner.approval_for_job(job).await
    }
    async fn decide(&self, id: &ApprovalId, decided: &Decided) -> Result<bool, StoreError> {
        self.inner.decide(id, decided).await
    }
    async fn close_expired(&self, id: &ApprovalId, closed: &Decided) -> Result<bool, StoreError> {
        self.inner.close_expired(id, closed).await
    }
    async fn mark_notified(&self, id: &ApprovalId) -> Result<(), StoreError> {
        self.inner.mark_notified(id).await
    }
    async fn open_approvals_after(
        &self,
        after: Option<&ApprovalRecord>,
        limit: usize,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        self.inner.open_approvals_after(after, limit).await
    }
}

impl<S: Counters> Counters for Faulty<S> {
    async fn count(&self, key: &str, window: i64) -> Result<u64, StoreError> {
        self.inner.count(key, window).await
    }
    async fn bump(&self, key: &str, window: i64) -> Result<(), StoreError> {
        self.inner.bump(key, window).await
    }
}

impl<S: RejectionStore> RejectionStore for Faulty<S> {
    async fn keep_rejection(&self, r: &Rejection) -> Result<bool, StoreError> {
        self.inner.keep_rejection(r).await
    }
    async fn rejection(&self, id: &RejectionId) -> Result<Option<Rejection>, StoreError> {
        self.inner.rejection(id).await
    }
    async fn rejections(&self, limit: usize) -> Result<Vec<Rejection>, StoreError> {
        self.inner.rejections(limit).await
    }
    async fn mark_resubmitted(&self, id: &RejectionId, job: &JobId) -> Result<bool, StoreError> {
        self.inner.mark_resubmitted(id, job).await
    }
    async fn discard_rejection(&self, id: &RejectionId, d: &Discarded) -> Result<bool, StoreError> {
        self.inner.discard_rejection(id, d).await
    }
}

impl<S: BatchStore> BatchStore for Faulty<S> {
    async fn open_batch(&self, b: &BatchRecord) -> Result<BatchRecord, StoreError> {
        self.inner.open_batch(b).await
    }
    async fn recent_batches(&self, limit: usize) -> Result<Vec<BatchId>, StoreError> {
        self.inner.recent_batches(limit).await
    }
    async fn store_post(
        &self,
        a: &AdmissionRecord,
        pages: &[BatchPage],
    ) -> Result<bool, StoreError> {
        self.inner.store_post(a, pages).await
    }
    async fn admission(
        &self,
        b: &BatchId,
        p: &PostId,
    ) -> Result<Option<AdmissionRecord>, StoreError> {
        self.inner.admission(b, p).await
    }
    async fn page(&self, b: &BatchId, p: &PostId, n: u32) -> Result<Option<BatchPage>, StoreError> {
        self.inner.page(b, p, n).await
    }
    async fn note_rejected(&self, b: &BatchId, items: &[RejectedItem]) -> Result<(), StoreError> {
        self.inner.note_rejected(b, items).await
    }
    async fn advance_admission(
        &self,
        b: &BatchId,
        p: &PostId,
        page: u32,
        tally: &Tally,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        self.inner.advance_admission(b, p, page, tally, at).await
    }
    async fn stalled_admissions(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<AdmissionRecord>, StoreError> {
        self.inner.stalled_admissions(before, limit).await
    }
    async fn batch(&self, id: &BatchId) -> Result<Option<BatchRecord>, StoreError> {
        self.inner.batch(id).await
    }
    async fn set_batch_paused(&self, id: &BatchId, paused: bool) -> Result<bool, StoreError> {
        self.inner.set_batch_paused(id, paused).await
    }
    async fn batch_jobs(&self, id: &BatchId) -> Result<Vec<JobSummary>, StoreError> {
        self.inner.batch_jobs(id).await
    }
}

impl<S: StatsStore> StatsStore for Faulty<S> {
    async fn add_stats(&self, window: i64, stats: &CallStats) -> Result<(), StoreError> {
        self.inner.add_stats(window, stats).await
    }
    async fn stats(&self, window: i64) -> Result<CallStats, StoreError> {
        self.inner.stats(window).await
    }
    async fn add_minute_stats(&self, minute: i64, stats: &CallStats) -> Result<(), StoreError> {
        self.inner.add_minute_stats(minute, stats).await
    }
    async fn minute_stats(&self, from: i64, to: i64) -> Result<Vec<(i64, CallStats)>, StoreError> {
        self.inner.minute_stats(from, to).await
    }
}

impl<S: Leases> Leases for Faulty<S> {
    async fn acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, StoreError> {
        self.inner.acquire(name, holder, ttl).await
    }
    async fn release(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.inner.release(name, holder).await
    }
}

const SECRET: &str = "delivery-secret";

fn request() -> (Vec<u8>, String) {
    let body = serde_json::to_vec(&json!({
        "sourceSystem": "alertmanager", "externalId": "retry-1", "desiredOperation": "create",
        "projectKey": "OPS", "issueType": "Incident", "summary": "Disk full on db-7"}))
    .unwrap();
    let header = signature::sign(&Secret::new(SECRET), tollgate_e2e::now_unix(), &body);
    (body, header)
}

async fn a_retry_after_a_failed_admission_is_accepted<S, Q>(store: &Faulty<S>, queue: &Q)
where
    S: IngestStore,
    Q: WorkQueue,
{
    let secrets = [Secret::new(SECRET)];
    let ingest = Ingest {
        store,
        queue,
        clock: &SystemClock,
        secrets: &secrets,
        policy: &Default::default(),
    };
    let (body, header) = request();
    store.failing.store(1, Ordering::SeqCst);
    assert!(
        ingest.handle(&body, Some(&header)).await.is_err(),
        "the first attempt fails after its signature was checked (503)"
    );
    // The sender's HTTP client sends the very same request again.
    let first = match ingest.handle(&body, Some(&header)).await.unwrap() {
        IngestOutcome::Accepted {
            job_id, duplicate, ..
        } => {
            assert!(!duplicate, "nothing was admitted the first time");
            job_id
        }
        other => panic!("the retry must be accepted, not refused: {other:?}"),
    };
    // And once more, now that it was admitted: a duplicate of that job.
    match ingest.handle(&body, Some(&header)).await.unwrap() {
        IngestOutcome::Accepted {
            job_id, duplicate, ..
        } => {
            assert!(duplicate);
            assert_eq!(job_id, first);
        }
        other => panic!("{other:?}"),
    }
    assert!(store.job(&first).await.unwrap().is_some());
}

async fn identical_requests_racing_are_one_job<S, Q>(store: &Faulty<S>, queue: &Q)
where
    S: IngestStore,
    Q: WorkQueue,
{
    let secrets = [Secret::new(SECRET)];
    let ingest = Ingest {
        store,
        queue,
        clock: &SystemClock,
        secrets: &secrets,
        policy: &Default::default(),
    };
    let body = serde_json::to_vec(&json!({
        "sourceSystem": "alertmanager", "externalId": "race-1", "desiredOperation": "create",
        "projectKey": "OPS", "issueType": "Incident", "summary": "Racing copies"}))
    .unwrap();
    let header = signature::sign(&Secret::new(SECRET), tollgate_e2e::now_unix(), &body);
    let answers = futures_join(
        ingest.handle(&body, Some(&header)),
        ingest.handle(&body, Some(&header)),
    )
    .await;
    let ids: Vec<(JobId, bool)> = [answers.0, answers.1]
        .into_iter()
        .map(|a| match a.unwrap() {
            IngestOutcome::Accepted {
                job_id, duplicate, ..
            } => (job_id, duplicate),
            other => panic!("both copies are accepted: {other:?}"),
        })
        .collect();
    assert_eq!(ids[0].0, ids[1].0, "one job");
    assert_eq!(
        ids.iter().filter(|(_, d)| !d).count(),
        1,
        "one is new, the other its duplicate"
    );
}

/// A chunk's decision is recorded before its jobs move; a decider that
/// stops partway (a timeout, a crash) leaves the rest to the sweep, which
/// moves every job however many the chunk has, and only once.
async fn a_chunk_decision_stopped_partway_is_finished_by_the_sweep<S, Q>(
    store: &Faulty<S>,
    queue: &Q,
) where
    S: IngestStore,
    Q: WorkQueue,
{
    use tollgate::app::approvals::{Approvals, DecideOutcome, Links};
    use tollgate::app::batches::BatchOutcome;
    use tollgate::domain::approval::Decision;
    use tollgate::domain::policy::Policy;
    let secrets = [Secret::new(SECRET)];
    let policy = Policy::parse(
        "approvers = [\"lead@example.com\"]\n[batch_approval]\nover = 5\nchunk = 250",
    )
    .unwrap();
    let ingest = Ingest {
        store,
        queue,
        clock: &SystemClock,
        secrets: &secrets,
        policy: &policy,
    };
    let events: Vec<serde_json::Value> = (0..250)
        .map(|i| {
            json!({"externalId": format!("ci-{i}"), "desiredOperation": "create",
                   "projectKey": "ASSET", "issueType": "Task", "summary": format!("CI {i}")})
        })
        .collect();
    let body = serde_json::to_vec(
        &json!({"batchId": format!("partway-{}", JobId::generate()), "sourceSystem": "cmdb", "events": events}),
    )
    .unwrap();
    let header = signature::sign(&Secret::new(SECRET), tollgate_e2e::now_unix(), &body);
    let outcome = ingest
        .submit_batch(&body, Some(&header), None)
        .await
        .unwrap();
    let BatchOutcome::Accepted { batch, .. } = outcome else {
        panic!("{outcome:?}");
    };
    let keys = [Secret::new("link-key")];
    let approvals = Approvals {
        store,
        queue,
        clock: &SystemClock,
        links: Links {
            keys: &keys,
            base_url: "http://tollgate.test",
        },
    };
    let open = store.open_approvals(100).await.unwrap();
    let chunk = open
        .iter()
        .find(|a| a.intent[0].contains(batch.id.as_str()))
        .expect("the chunk's request");
    assert_eq!(chunk.jobs().count(), 250);
    // The decider moves thirty jobs, then stops.
    store.updates_left.store(30, Ordering::SeqCst);
    assert!(
        approvals
            .decide_as(&chunk.id, Decision::Approve, "lead@example.com", "link")
            .await
            .is_err()
    );
    store.updates_left.store(usize::MAX, Ordering::SeqCst);
    let state = |id: JobId| async move { store.job(&id).await.unwrap().unwrap().state };
    let mut queued = 0;
    for id in chunk.jobs() {
        if state(id.clone()).await == JobState::Queued {
            queued += 1;
        }
    }
    assert!((30..150).contains(&queued), "stopped partway: {queued}");
    // Newer work waits for approval meanwhile: more than a page of it.
    let later: Vec<serde_json::Value> = (0..150)
        .map(|i| {
            json!({"externalId": format!("later-{i}"), "desiredOperation": "create",
                   "projectKey": "ASSET", "issueType": "Task", "summary": format!("Later {i}")})
        })
        .collect();
    let body = serde_json::to_vec(
        &json!({"batchId": format!("later-{}", JobId::generate()), "sourceSystem": "cmdb", "events": later}),
    )
    .unwrap();
    let header = signature::sign(&Secret::new(SECRET), tollgate_e2e::now_unix(), &body);
    ingest
        .submit_batch(&body, Some(&header), None)
        .await
        .unwrap();
    // The second click is told it is decided; the sweep moves the rest.
    assert!(matches!(
        approvals
            .decide_as(&chunk.id, Decision::Approve, "lead@example.com", "link")
            .await
            .unwrap(),
        DecideOutcome::Refused(_)
    ));
    approvals.sweep(&tollgate::ports::NoNotifier).await.unwrap();
    for id in chunk.jobs() {
        assert_eq!(state(id.clone()).await, JobState::Queued, "{id}");
        let trail = store.audit_trail(id).await.unwrap();
        let approved = trail
            .iter()
            .filter(|e| e.outcome.starts_with("approved"))
            .count();
        assert_eq!(approved, 1, "each job moved once: {trail:?}");
    }
    assert!(
        !store
            .unapplied_approvals(1000)
            .await
            .unwrap()
            .iter()
            .any(|a| a.id == chunk.id),
        "applied, so the sweep leaves it"
    );
}

/// Both futures polled together on this task.
async fn futures_join<A: std::future::Future, B: std::future::Future>(
    a: A,
    b: B,
) -> (A::Output, B::Output) {
    tokio::join!(a, b)
}

#[tokio::test]
async fn a_failure_after_the_signature_check_never_turns_the_retry_into_a_401_on_sqlite() {
    let dir = Scratch::new("delivery-sqlite");
    let db = SqliteDb::open(dir.path("t.db")).unwrap();
    let store = Faulty::new(db.clone());
    a_retry_after_a_failed_admission_is_accepted(&store, &db).await;
    identical_requests_racing_are_one_job(&store, &db).await;
}

#[tokio::test]
async fn a_chunk_decision_stopped_partway_is_finished_by_the_sweep_on_sqlite() {
    let dir = Scratch::new("partway-sqlite");
    let db = SqliteDb::open(dir.path("t.db")).unwrap();
    a_chunk_decision_stopped_partway_is_finished_by_the_sweep(&Faulty::new(db.clone()), &db).await;
}

#[tokio::test]
async fn a_chunk_decision_stopped_partway_is_finished_by_the_sweep_on_dynamodb() {
    let config = moto::sdk_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&config);
    let table = moto::unique("partway");
    DynamoStore::create_table(&dynamo, &table).await.unwrap();
    let sqs = aws_sdk_sqs::Client::new(&config);
    let interactive = SqsQueue::create_queue(&sqs, &moto::unique("i"))
        .await
        .unwrap();
    let bulk = SqsQueue::create_queue(&sqs, &moto::unique("b"))
        .await
        .unwrap();
    let store = Faulty::new(DynamoStore::new(dynamo, table));
    let queue = SqsQueue::new(sqs, &interactive, &bulk);
    a_chunk_decision_stopped_partway_is_finished_by_the_sweep(&store, &queue).await;
}

#[tokio::test]
async fn a_failure_after_the_signature_check_never_turns_the_retry_into_a_401_on_dynamodb() {
    let config = moto::sdk_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&config);
    let table = moto::unique("delivery");
    DynamoStore::create_table(&dynamo, &table).await.unwrap();
    let sqs = aws_sdk_sqs::Client::new(&config);
    let interactive = SqsQueue::create_queue(&sqs, &moto::unique("i"))
        .await
        .unwrap();
    let bulk = SqsQueue::create_queue(&sqs, &moto::unique("b"))
        .await
        .unwrap();
    let store = Faulty::new(DynamoStore::new(dynamo, table));
    let queue = SqsQueue::new(sqs, &interactive, &bulk);
    a_retry_after_a_failed_admission_is_accepted(&store, &queue).await;
    identical_requests_racing_are_one_job(&store, &queue).await;
}

/// A sender's payload larger than what a rejection keeps cannot be
/// re-submitted "as received": the operator is told what was kept and must
/// give the body.
#[tokio::test]
async fn a_rejection_kept_in_part_is_not_resubmitted_as_received() {
    use tollgate::app::ingest::Resubmission;
    use tollgate::domain::rejection::MAX_KEPT_BODY_BYTES;
    let dir = Scratch::new("truncated-rejection");
    let db = SqliteDb::open(dir.path("t.db")).unwrap();
    let big = format!("{{\"alerts\": [\"{}\"]}}", "x".repeat(MAX_KEPT_BODY_BYTES));
    let rejection = Rejection::from_sender(
        "alertmanager",
        "alerts[0]",
        big.as_bytes(),
        vec![],
        Timestamp(1_000),
    );
    db.keep_rejection(&rejection).await.unwrap();
    let ingest = Ingest {
        store: &db,
        queue: &db,
        clock: &SystemClock,
        secrets: &[],
        policy: &Default::default(),
    };
    match ingest.resubmit(&rejection.id, None, None).await.unwrap() {
        Resubmission::StillInvalid(errors) => {
            assert_eq!(errors[0].field, "body");
            assert!(
                errors[0].message.contains(&big.len().to_string()),
                "{errors:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        db.rejection(&rejection.id)
            .await
            .unwrap()
            .unwrap()
            .resubmitted_as,
        None
    );
}

/// A chunk decided before any of its jobs was admitted (its page is still
/// on its way) stays unapplied for the sweep, and never stops the sweep.
#[tokio::test]
async fn a_decision_that_names_no_admitted_job_yet_stays_for_the_sweep() {
    use std::time::Duration;
    use tollgate::app::approvals::{Approvals, Links};
    use tollgate::domain::approval::Decision;
    let dir = Scratch::new("unapplied-early");
    let db = SqliteDb::open(dir.path("t.db")).unwrap();
    let now = tollgate::ports::Clock::now(&SystemClock);
    let request = ApprovalRecord {
        id: ApprovalId::generate(),
        job_id: JobId::generate(),
        also: vec![JobId::generate()],
        rule: "batch_approval (over 5 items)".into(),
        intent: vec!["batch b, chunk 1 of 1".into()],
        requested_by: "cmdb".into(),
        approvers: vec!["lead@example.com".into()],
        requested_at: now,
        expires_at: now.plus(Duration::from_secs(3600)),
        decided: None,
        notified: true,
    };
    db.create_approval(&request).await.unwrap();
    let keys = [Secret::new("link-key")];
    let approvals = Approvals {
        store: &db,
        queue: &db,
        clock: &SystemClock,
        links: Links {
            keys: &keys,
            base_url: "http://tollgate.test",
        },
    };
    assert!(
        approvals
            .decide_as(&request.id, Decision::Approve, "lead@example.com", "link")
            .await
            .is_err(),
        "decided, but nothing to move yet"
    );
    let unapplied = db.unapplied_approvals(10).await.unwrap();
    assert!(
        unapplied.iter().any(|a| a.id == request.id),
        "{unapplied:?}"
    );
    approvals
        .sweep(&tollgate::ports::NoNotifier)
        .await
        .expect("the sweep goes on");
    assert!(
        db.unapplied_approvals(10)
            .await
            .unwrap()
            .iter()
            .any(|a| a.id == request.id),
        "still waiting for its jobs"
    );
}
