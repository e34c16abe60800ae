//! Exactly once when Jira is slow, leases expire and workers stall: each
//! window the executor's protocol closes, reproduced against jira-sim
//! (which can slow a route, finish a write after the client gave up, lose
//! an answer after the work, or refuse a route) with the real Jira adapter
//! and real stores — SQLite, and DynamoDB on moto where the store is what
//! keeps the promise (fencing).
//!
//! The executor is driven by hand: every retry comes back as soon as the
//! executor allows (a queue may redeliver early), which is when the old
//! windows bit.

#[path = "../shared/tests/support/moto.rs"]
mod moto;

use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tollgate::adapters::dynamodb::DynamoStore;
use tollgate::adapters::jira::{JiraAuth, JiraClient};
use tollgate::adapters::sqlite::SqliteDb;
use tollgate::adapters::sqs::SqsQueue;
use tollgate::app::execute::{Disposition, Executor, ExecutorConfig};
use tollgate::app::governor::Ungoverned;
use tollgate::app::ingest::{Ingest, IngestOutcome};
use tollgate::domain::ids::{IssueKey, JobId, PageId, SpaceId};
use tollgate::domain::job::JobState;
use tollgate::domain::secret::Secret;
use tollgate::domain::signature;
use tollgate::domain::time::Timestamp;
use tollgate::ports::{
    BatchStore, Clock, ElementError, IngestStore, JobStore, Leases, LinkStore, NewIssueRequest,
    SystemClock, Tracker, TrackerResult, TransitionDone, WorkQueue,
};
use tollgate_e2e::Scratch;

/// The Jira client's timeout in these tests: short, so Jira can outlive it.
const TIMEOUT: Duration = Duration::from_millis(1000);

struct Sim {
    url: String,
    sim: Arc<jira_sim::Sim>,
}

async fn sim() -> Sim {
    let (addr, sim, _) = jira_sim::spawn(
        jira_sim::SimConfig::default(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    Sim {
        url: format!("http://{addr}"),
        sim,
    }
}

impl Sim {
    fn client(&self) -> JiraClient {
        let auth = JiraAuth::Basic {
            email: "sim@example.com".into(),
            api_token: Secret::new("sim-token"),
        };
        JiraClient::new(&self.url, auth, TIMEOUT).unwrap()
    }

    /// Adds a fault on one route for its next `times` requests.
    fn fault(&self, fault: Value) {
        let mut limits = self.sim.limits();
        limits
            .faults
            .routes
            .push(serde_json::from_value(fault).unwrap());
        self.sim.set_limits(limits);
    }

    fn report(&self) -> Value {
        self.sim.report()
    }

    fn issue(&self, key: &IssueKey) -> Value {
        self.report()["issues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["key"] == key.as_str())
            .cloned()
            .unwrap()
    }
}

fn config() -> ExecutorConfig {
    ExecutorConfig {
        worker: "test".into(),
        lease_ttl: Duration::from_millis(500),
        call_timeout: TIMEOUT,
        search_lag: Duration::from_millis(1000),
        bulk_create: 1,
        // Retries come back quickly: before a late write lands, which is
        // when the old windows bit.
        retry: tollgate::domain::backoff::RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(200),
            ..Default::default()
        },
        ..ExecutorConfig::default()
    }
}

async fn ingest<S: IngestStore, Q: WorkQueue>(store: &S, queue: &Q, event: &Value) -> JobId {
    let secret = [Secret::new("s")];
    let body = serde_json::to_vec(event).unwrap();
    let sig = signature::sign(&secret[0], tollgate_e2e::signing_time(&body), &body);
    let ingest = Ingest {
        store,
        queue,
        clock: &SystemClock,
        secrets: &secret,
        policy: &Default::default(),
    };
    match ingest.handle(&body, Some(&sig)).await.unwrap() {
        IngestOutcome::Accepted { job_id, .. } => job_id,
        other => panic!("{other:?}"),
    }
}

/// An executor on `store` and `tracker`, ungoverned, with no deadline.
fn executor<'a, S, T>(
    store: &'a S,
    tracker: &'a T,
    config: &'a ExecutorConfig,
) -> Executor<'a, S, T, SystemClock> {
    Executor {
        store,
        tracker,
        clock: &SystemClock,
        config,
        governor: &Ungoverned,
        deadline: None,
    }
}

/// Runs the job until its message would be deleted, coming back early
/// (at most 100 ms) after every wait.
async fn drive<S, T>(store: &S, tracker: &T, config: &ExecutorConfig, id: &JobId) -> JobState
where
    S: JobStore + LinkStore + Leases + BatchStore,
    T: Tracker,
{
    let ex = executor(store, tracker, config);
    for _ in 0..400 {
        match ex.run(id).await.unwrap() {
            Disposition::Done => return store.job(id).await.unwrap().unwrap().state,
            Disposition::RetryAfter(d) => {
                tokio::time::sleep(d.min(Duration::from_millis(100))).await
            }
        }
    }
    panic!("job {id} did not finish");
}

struct Local {
    db: SqliteDb,
    _dir: Scratch,
}

fn local(name: &str) -> Local {
    let dir = Scratch::new(name);
    Local {
        db: SqliteDb::open(dir.path("t.db")).unwrap(),
        _dir: dir,
    }
}

fn create(id: &str) -> Value {
    json!({"sourceSystem": "alertmanager", "externalId": id, "desiredOperation": "create",
           "projectKey": "OPS", "issueType": "Incident", "summary": format!("Alert {id}")})
}

async fn created_issue(l: &Local, jira: &JiraClient, id: &str) -> IssueKey {
    let job = ingest(&l.db, &l.db, &create(id)).await;
    assert_eq!(
        drive(&l.db, jira, &config(), &job).await,
        JobState::Succeeded
    );
    l.db.job(&job).await.unwrap().unwrap().issue_key.unwrap()
}

// ── 1. Honest ambiguity windows ─────────────────────────────────────────

/// Waits until every late write of these tests (1.3 s after its request)
/// has landed, so the counts include them.
async fn jira_has_finished() {
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_create_jira_finishes_after_the_client_gave_up_is_made_once() {
    let s = sim().await;
    let jira = s.client();
    let l = local("late-create");
    // Jira creates the issue 1.3 s after the request: the client gave up
    // at 1 s, and the first retry comes before the issue exists.
    s.fault(json!({"route": "POST /rest/api/3/issue", "workDelayMs": 1300, "times": 1}));
    let job = ingest(&l.db, &l.db, &create("late-1")).await;
    assert_eq!(
        drive(&l.db, &jira, &config(), &job).await,
        JobState::Succeeded
    );
    jira_has_finished().await;
    let totals = &s.report()["totals"];
    assert_eq!(totals["issues"], 1, "one event, one issue");
    assert_eq!(totals["duplicateIssues"], 0);
    let rec = l.db.job(&job).await.unwrap().unwrap();
    let link = l.db.link(&rec.link).await.unwrap().unwrap();
    assert_eq!(rec.issue_key, link.issue_key, "the job names the one issue");
    let trail = l.db.audit_trail(&job).await.unwrap();
    assert!(
        trail.iter().any(|e| e
            .outcome
            .starts_with("found the effect of an earlier attempt")),
        "the retry found the late create instead of making another: {trail:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bulk_create_jira_finishes_late_is_made_once_per_member() {
    let s = sim().await;
    let jira = s.client();
    let l = local("late-bulk");
    let bulk = ExecutorConfig {
        bulk_create: 50,
        ..config()
    };
    let jobs = [
        ingest(&l.db, &l.db, &create("bulk-1")).await,
        ingest(&l.db, &l.db, &create("bulk-2")).await,
        ingest(&l.db, &l.db, &create("bulk-3")).await,
    ];
    s.fault(json!({"route": "POST /rest/api/3/issue/bulk", "workDelayMs": 1300, "times": 1}));
    for job in &jobs {
        assert_eq!(drive(&l.db, &jira, &bulk, job).await, JobState::Succeeded);
    }
    jira_has_finished().await;
    let totals = &s.report()["totals"];
    assert_eq!(totals["issues"], 3);
    assert_eq!(totals["duplicateIssues"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_comment_jira_posts_after_the_client_gave_up_is_posted_once() {
    let s = sim().await;
    let jira = s.client();
    let l = local("late-comment");
    let key = created_issue(&l, &jira, "c-1").await;
    s.fault(
        json!({"route": "POST /rest/api/3/issue/{key}/comment", "workDelayMs": 1300, "times": 1}),
    );
    let job = ingest(
        &l.db,
        &l.db,
        &json!({"sourceSystem": "alertmanager", "externalId": "c-1", "desiredOperation": "comment",
                "comment": "Still firing."}),
    )
    .await;
    assert_eq!(
        drive(&l.db, &jira, &config(), &job).await,
        JobState::Succeeded
    );
    jira_has_finished().await;
    assert_eq!(s.issue(&key)["comments"], json!(["Still firing."]));
    assert_eq!(s.report()["totals"]["duplicateComments"], 0);
}

// ── 2. Fencing ───────────────────────────────────────────────────────────

/// The real Jira client, except that once armed, the next create is made
/// and then the worker's whole task stops (the thread sleeps, as a process
/// paused by the OS or a long GC would): its lease cannot be renewed.
struct Stalling {
    inner: JiraClient,
    armed: AtomicBool,
    stall: Duration,
}

impl Tracker for Stalling {
    async fn create_issue(
        &self,
        fields: &serde_json::Map<String, Value>,
        properties: &[(String, Value)],
    ) -> TrackerResult<IssueKey> {
        let r = self.inner.create_issue(fields, properties).await;
        if self.armed.swap(false, Ordering::SeqCst) {
            std::thread::sleep(self.stall);
        }
        r
    }
    async fn create_issues(
        &self,
        issues: &[NewIssueRequest],
    ) -> TrackerResult<Vec<Result<IssueKey, ElementError>>> {
        self.inner.create_issues(issues).await
    }
    async fn edit_issue(
        &self,
        key: &IssueKey,
        fields: &serde_json::Map<String, Value>,
        add_labels: &[String],
    ) -> TrackerResult<()> {
        self.inner.edit_issue(key, fields, add_labels).await
    }
    async fn add_comment(&self, key: &IssueKey, text: &str, marker: &str) -> TrackerResult<()> {
        self.inner.add_comment(key, text, marker).await
    }
    async fn has_comment(
        &self,
        key: &IssueKey,
        marker: &str,
        since: Timestamp,
    ) -> TrackerResult<bool> {
        self.inner.has_comment(key, marker, since).await
    }
    async fn transition(&self, key: &IssueKey, name: &str) -> TrackerResult<TransitionDone> {
        self.inner.transition(key, name).await
    }
    async fn find_by_label(&self, label: &str) -> TrackerResult<Vec<IssueKey>> {
        self.inner.find_by_label(label).await
    }
    async fn create_page(
        &self,
        space: &SpaceId,
        title: &str,
        body: &str,
        parent: Option<&PageId>,
        marker: &str,
    ) -> TrackerResult<PageId> {
        self.inner
            .create_page(space, title, body, parent, marker)
            .await
    }
    async fn find_page(
        &self,
        space: &SpaceId,
        title: &str,
        marker: &str,
    ) -> TrackerResult<Option<PageId>> {
        self.inner.find_page(space, title, marker).await
    }
    async fn add_page_comment(&self, page: &PageId, body: &str, marker: &str) -> TrackerResult<()> {
        self.inner.add_page_comment(page, body, marker).await
    }
    async fn has_page_comment(&self, page: &PageId, marker: &str) -> TrackerResult<bool> {
        self.inner.has_page_comment(page, marker).await
    }
}

/// Worker A makes the create and stalls past its lease before recording
/// it; worker B takes the lease over, finds A's issue, and goes on with the
/// comment. A wakes while B is still at work, with Jira's answer: its
/// checkpoint is refused, and it stops before its next call (the comment),
/// instead of posting it a second time beside B's.
async fn a_stalled_worker_is_fenced_out<S, Q>(store: &S, queue: &Q, s: &Sim)
where
    S: IngestStore + BatchStore + Clone + Sync + 'static,
    Q: WorkQueue,
{
    let stalling = Stalling {
        inner: s.client(),
        armed: AtomicBool::new(true),
        stall: Duration::from_millis(4500),
    };
    let jira = s.client();
    let event = json!({"sourceSystem": "cmdb", "externalId": "fenced-1", "desiredOperation": "create",
                       "projectKey": "OPS", "issueType": "Task", "summary": "Fenced",
                       "comment": "Created by the CMDB sync."});
    let job = ingest(store, queue, &event).await;
    // B's reads and writes take a while, so A wakes while B is mid-job.
    s.fault(json!({"route": "POST /rest/api/3/search/jql", "answerDelayMs": 900, "times": 1}));
    s.fault(
        json!({"route": "POST /rest/api/3/issue/{key}/comment", "answerDelayMs": 900, "times": 1}),
    );
    // Worker A on a task (and, once stalled, a thread) of its own.
    let a = {
        let (store, job) = (store.clone(), job.clone());
        tokio::spawn(async move {
            let cfg = config();
            let a = executor(&store, &stalling, &cfg);
            a.run(&job).await.unwrap()
        })
    };
    // The lease A took lasts the call timeout plus a margin (3 s).
    tokio::time::sleep(Duration::from_millis(3300)).await;
    let b_cfg = ExecutorConfig {
        worker: "worker-b".into(),
        ..config()
    };
    assert_eq!(
        drive(store, &jira, &b_cfg, &job).await,
        JobState::Succeeded,
        "B finished the job"
    );
    assert!(
        matches!(a.await.unwrap(), Disposition::RetryAfter(_)),
        "A stopped: its writes were refused"
    );
    let totals = &s.report()["totals"];
    assert_eq!(
        totals["issues"], 1,
        "B found A's issue instead of creating one"
    );
    assert_eq!(
        totals["comments"], 1,
        "A made no call after it was fenced out"
    );
    let rec = store.job(&job).await.unwrap().unwrap();
    assert_eq!(rec.state, JobState::Succeeded);
    let link = store.link(&rec.link).await.unwrap().unwrap();
    assert_eq!(rec.issue_key, link.issue_key, "the job and the link agree");
    // A's checkpoint, written while B was mid-job, would have overwritten
    // B's progress: it was refused, so the trail has none of A's outcomes.
    let trail = store.audit_trail(&job).await.unwrap();
    assert!(
        !trail
            .iter()
            .any(|e| e.actor == "test" && e.outcome.starts_with("done")),
        "{trail:#?}"
    );
    assert!(
        trail
            .iter()
            .any(|e| e.actor == "worker-b" && e.outcome == "resumed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_worker_is_fenced_out_on_sqlite() {
    let s = sim().await;
    let l = local("fenced");
    a_stalled_worker_is_fenced_out(&l.db, &l.db, &s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_worker_is_fenced_out_on_dynamodb() {
    let s = sim().await;
    let config = moto::sdk_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&config);
    let table = moto::unique("fence");
    DynamoStore::create_table(&dynamo, &table).await.unwrap();
    let sqs = aws_sdk_sqs::Client::new(&config);
    let interactive = SqsQueue::create_queue(&sqs, &moto::unique("i"))
        .await
        .unwrap();
    let bulk = SqsQueue::create_queue(&sqs, &moto::unique("b"))
        .await
        .unwrap();
    let store = DynamoStore::new(dynamo, table);
    let queue = SqsQueue::new(sqs, &interactive, &bulk);
    a_stalled_worker_is_fenced_out(&store, &queue, &s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bulk_call_slower_than_the_lease_keeps_every_members_lease() {
    let s = sim().await;
    let l = local("slow-bulk");
    // Jira takes 4 s over the bulk call. The executor is told calls end
    // within 0.5 s, so its step leases last 2.5 s: only the heartbeat keeps
    // the members' leases while the call is in flight, and without it each
    // member's own worker would take its lease, find nothing yet, and
    // create its issue a second time.
    s.fault(json!({"route": "POST /rest/api/3/issue/bulk", "workDelayMs": 4000, "times": 1}));
    let slow_client = JiraClient::new(
        &s.url,
        JiraAuth::Basic {
            email: "sim@example.com".into(),
            api_token: Secret::new("sim-token"),
        },
        Duration::from_secs(10),
    )
    .unwrap();
    let mut jobs = Vec::new();
    for i in 0..8 {
        jobs.push(ingest(&l.db, &l.db, &create(&format!("slow-{i}"))).await);
    }
    // Every job's message is picked up by a worker of its own at once.
    let mut runs = Vec::new();
    for (i, j) in jobs.iter().enumerate() {
        let (db, client, j) = (l.db.clone(), slow_client.clone(), j.clone());
        runs.push(tokio::spawn(async move {
            let cfg = ExecutorConfig {
                worker: format!("worker-{i}"),
                bulk_create: 50,
                call_timeout: Duration::from_millis(500),
                ..config()
            };
            drive(&db, &client, &cfg, &j).await
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for r in runs {
        assert_eq!(r.await.unwrap(), JobState::Succeeded);
    }
    let totals = &s.report()["totals"];
    assert_eq!(totals["issues"], 8);
    assert_eq!(totals["duplicateIssues"], 0);
    for j in &jobs {
        let rec = l.db.job(j).await.unwrap().unwrap();
        let link = l.db.link(&rec.link).await.unwrap().unwrap();
        assert_eq!(rec.issue_key, link.issue_key);
    }
}

// ── 3. Ordered edits ────────────────────────────────────────────────────

/// Leaves a job as a worker killed mid-call would: running, nothing
/// recorded, its message drained (it comes back later).
async fn killed_mid_call(l: &Local, id: &JobId) {
    let mut job = l.db.job(id).await.unwrap().unwrap();
    let from = job.state;
    job.state = JobState::Running;
    assert!(l.db.update(&job, from, None).await.unwrap());
    for d in l.db.receive(50, Duration::from_secs(60)).await.unwrap() {
        l.db.delete(&d.receipt).await.unwrap();
    }
}

fn update(id: &str, summary: &str) -> Value {
    json!({"sourceSystem": "alertmanager", "externalId": id, "desiredOperation": "update",
           "fields": {"summary": summary}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_older_edit_never_overwrites_a_newer_one_after_a_crash() {
    let s = sim().await;
    let jira = s.client();
    let l = local("ordered");
    let key = created_issue(&l, &jira, "o-1").await;
    // A's PUT reached Jira; its worker was killed before recording it.
    let a = ingest(&l.db, &l.db, &update("o-1", "OLD-A")).await;
    let mut old = serde_json::Map::new();
    old.insert("summary".into(), json!("OLD-A"));
    jira.edit_issue(&key, &old, &[]).await.unwrap();
    killed_mid_call(&l, &a).await;
    // B arrives and runs; then A's message comes back.
    let b = ingest(&l.db, &l.db, &update("o-1", "NEW-B")).await;
    assert_eq!(
        drive(&l.db, &jira, &config(), &b).await,
        JobState::Succeeded
    );
    drive(&l.db, &jira, &config(), &a).await;
    assert_eq!(s.issue(&key)["summary"], "NEW-B", "the newer value stays");
    let a_rec = l.db.job(&a).await.unwrap().unwrap();
    assert_eq!(a_rec.state, JobState::Superseded, "B carried A: {a_rec:?}");
    assert_eq!(a_rec.merged_into.as_ref(), Some(&b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_edit_that_cannot_merge_drops_the_fields_a_newer_revision_set() {
    let s = sim().await;
    let jira = s.client();
    let l = local("revisions");
    let key = created_issue(&l, &jira, "r-1").await;
    // A edits the issue and adds a sub-task (not mergeable: it creates),
    // and dies mid-PUT; B, newer, sets the summary; then A resumes.
    let a = ingest(
        &l.db,
        &l.db,
        &json!({"sourceSystem": "alertmanager", "externalId": "r-1", "desiredOperation": "upsert",
                "projectKey": "OPS", "issueType": "Incident", "summary": "OLD-A",
                "fields": {"customfield_10001": "from A"},
                "children": [{"issueType": "Sub-task", "summary": "Check the disk"}]}),
    )
    .await;
    killed_mid_call(&l, &a).await;
    let b = ingest(&l.db, &l.db, &update("r-1", "NEW-B")).await;
    assert_eq!(
        drive(&l.db, &jira, &config(), &b).await,
        JobState::Succeeded
    );
    assert_eq!(
        drive(&l.db, &jira, &config(), &a).await,
        JobState::Succeeded
    );
    let issue = s.issue(&key);
    assert_eq!(
        issue["summary"], "NEW-B",
        "A did not send its older summary"
    );
    assert_eq!(
        issue["fields"]["customfield_10001"], "from A",
        "A's other field went"
    );
    assert_eq!(s.report()["totals"]["issues"], 2, "and its sub-task");
    let trail = l.db.audit_trail(&a).await.unwrap();
    assert!(
        trail.iter().any(|e| e
            .outcome
            .contains("newer revisions already applied to summary")),
        "{trail:#?}"
    );
}

// ── 4. Carriers answer for what they carry ──────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn merged_work_fails_with_its_carrier() {
    let s = sim().await;
    let jira = s.client();
    let l = local("carrier-fails");
    let key = created_issue(&l, &jira, "m-1").await;
    let carrier = ingest(&l.db, &l.db, &update("m-1", "carrier")).await;
    let merged = ingest(
        &l.db,
        &l.db,
        &json!({"sourceSystem": "alertmanager", "externalId": "m-1", "desiredOperation": "comment",
                "comment": "rides along"}),
    )
    .await;
    // Jira refuses the carrier's edit for good.
    s.fault(json!({"route": "PUT /rest/api/3/issue/{key}", "refuseStatus": 400, "times": 1}));
    assert_eq!(
        drive(&l.db, &jira, &config(), &carrier).await,
        JobState::Failed
    );
    let m = l.db.job(&merged).await.unwrap().unwrap();
    assert_eq!(
        m.state,
        JobState::Failed,
        "never SUPERSEDED with its work undone"
    );
    assert!(
        m.last_error
            .as_deref()
            .is_some_and(|e| e.contains(&format!("carried by job {carrier}"))),
        "{m:?}"
    );
    assert_eq!(
        s.issue(&key)["comments"],
        json!([]),
        "the comment was never sent"
    );
    // Its own message finds it over.
    assert_eq!(
        drive(&l.db, &jira, &config(), &merged).await,
        JobState::Failed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_merged_job_waits_for_its_carrier_and_ends_with_it() {
    let s = sim().await;
    let jira = s.client();
    let l = local("carrier-wait");
    created_issue(&l, &jira, "f-1").await;
    let carrier = ingest(&l.db, &l.db, &update("f-1", "one")).await;
    let merged = ingest(&l.db, &l.db, &update("f-1", "two")).await;
    // The carrier takes the other job, then Jira asks it to come back.
    s.fault(json!({"route": "PUT /rest/api/3/issue/{key}", "refuseStatus": 503, "times": 1}));
    let ex_cfg = config();
    let ex = executor(&l.db, &jira, &ex_cfg);
    assert!(matches!(
        ex.run(&carrier).await.unwrap(),
        Disposition::RetryAfter(_)
    ));
    let m = l.db.job(&merged).await.unwrap().unwrap();
    assert_eq!(
        m.state,
        JobState::Merged,
        "not over while the carrier is not"
    );
    assert!(
        matches!(ex.run(&merged).await.unwrap(), Disposition::RetryAfter(_)),
        "its own message keeps looking"
    );
    assert_eq!(
        drive(&l.db, &jira, &config(), &carrier).await,
        JobState::Succeeded
    );
    assert_eq!(
        drive(&l.db, &jira, &config(), &merged).await,
        JobState::Superseded
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_merged_job_ends_with_a_carrier_that_crashed_before_settling_it() {
    let s = sim().await;
    let jira = s.client();
    let l = local("carrier-crash");
    created_issue(&l, &jira, "g-1").await;
    let carrier = ingest(&l.db, &l.db, &update("g-1", "one")).await;
    let merged = ingest(&l.db, &l.db, &update("g-1", "two")).await;
    s.fault(json!({"route": "PUT /rest/api/3/issue/{key}", "refuseStatus": 503, "times": 1}));
    let ex_cfg = config();
    let ex = executor(&l.db, &jira, &ex_cfg);
    ex.run(&carrier).await.unwrap();
    // The carrier's worker recorded its success and died before it could
    // settle the job it carried.
    let mut done = l.db.job(&carrier).await.unwrap().unwrap();
    let from = done.state;
    done.state = JobState::Succeeded;
    assert!(l.db.update(&done, from, None).await.unwrap());
    assert_eq!(
        l.db.job(&merged).await.unwrap().unwrap().state,
        JobState::Merged
    );
    assert_eq!(
        drive(&l.db, &jira, &config(), &merged).await,
        JobState::Superseded
    );
}

// ── 5. Confluence exactness ─────────────────────────────────────────────

async fn page(l: &Local, jira: &JiraClient, title: &str) -> String {
    let job = ingest(
        &l.db,
        &l.db,
        &json!({"sourceSystem": "docs", "externalId": title, "desiredOperation": "createPage",
                "spaceId": "65538", "title": title, "body": "Runbook"}),
    )
    .await;
    assert_eq!(
        drive(&l.db, jira, &config(), &job).await,
        JobState::Succeeded
    );
    jira.find_page(
        &SpaceId::parse("65538").unwrap(),
        title,
        &format!("{job}:0"),
    )
    .await
    .unwrap()
    .value
    .expect("the page carries its job's anchor")
    .to_string()
}

fn page_comment(external: &str, page: &str, text: &str) -> Value {
    json!({"sourceSystem": "docs", "externalId": external, "desiredOperation": "pageComment",
           "pageId": page, "comment": text})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_multi_line_page_comment_is_found_by_its_anchor_not_posted_twice() {
    let s = sim().await;
    let jira = s.client();
    let l = local("page-comment");
    let page_id = page(&l, &jira, "Runbook A").await;
    s.fault(json!({"route": "POST /wiki/api/v2/footer-comments", "dropAnswer": true, "times": 1}));
    let job = ingest(
        &l.db,
        &l.db,
        &page_comment(
            "pc-1",
            &page_id,
            "Deployed.\nChecks green.\n\nNext: monitor.",
        ),
    )
    .await;
    assert_eq!(
        drive(&l.db, &jira, &config(), &job).await,
        JobState::Succeeded
    );
    assert_eq!(s.report()["totals"]["pageComments"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_jobs_posting_the_same_text_both_post() {
    let s = sim().await;
    let jira = s.client();
    let l = local("same-text");
    let page_id = page(&l, &jira, "Runbook B").await;
    let first = ingest(&l.db, &l.db, &page_comment("same-1", &page_id, "Ack.")).await;
    assert_eq!(
        drive(&l.db, &jira, &config(), &first).await,
        JobState::Succeeded
    );
    // The second's answer is lost: the first's identical comment is not it.
    s.fault(json!({"route": "POST /wiki/api/v2/footer-comments", "answerDelayMs": 1500, "refuseStatus": 503, "times": 1}));
    let second = ingest(&l.db, &l.db, &page_comment("same-2", &page_id, "Ack.")).await;
    assert_eq!(
        drive(&l.db, &jira, &config(), &second).await,
        JobState::Succeeded
    );
    assert_eq!(
        s.report()["totals"]["pageComments"],
        2,
        "each job posted its own"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_title_held_by_someone_elses_page_is_not_taken_for_ours() {
    let s = sim().await;
    let jira = s.client();
    let l = local("foreign-title");
    // Someone made a page of that title by hand (no tollgate anchor).
    reqwest::Client::new()
        .post(format!("{}/wiki/api/v2/pages", s.url))
        .basic_auth("sim@example.com", Some("sim-token"))
        .json(
            &json!({"spaceId": "65538", "status": "current", "title": "Postmortem",
                      "body": {"representation": "storage", "value": "<p>theirs</p>"}}),
        )
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    // Our create's answer comes after the client gave up: ambiguous.
    s.fault(json!({"route": "POST /wiki/api/v2/pages", "answerDelayMs": 1500, "times": 1}));
    let job = ingest(
        &l.db,
        &l.db,
        &json!({"sourceSystem": "docs", "externalId": "pm", "desiredOperation": "createPage",
                "spaceId": "65538", "title": "Postmortem", "body": "ours"}),
    )
    .await;
    assert_eq!(
        drive(&l.db, &jira, &config(), &job).await,
        JobState::Failed,
        "Confluence refuses the title; the job does not claim the other page"
    );
    assert_eq!(s.report()["totals"]["pages"], 1);
}

// ── 6. Checkpoints, comment paging, the invocation's deadline ───────────

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_comment_is_found_among_more_than_a_page_of_newer_comments() {
    let s = sim().await;
    let jira = s.client();
    let l = local("comment-paging");
    let key = created_issue(&l, &jira, "p-1").await;
    s.fault(
        json!({"route": "POST /rest/api/3/issue/{key}/comment", "dropAnswer": true, "times": 1}),
    );
    let job = ingest(
        &l.db,
        &l.db,
        &json!({"sourceSystem": "alertmanager", "externalId": "p-1", "desiredOperation": "comment",
                "comment": "ours"}),
    )
    .await;
    let ex_cfg = config();
    let ex = executor(&l.db, &jira, &ex_cfg);
    assert!(matches!(
        ex.run(&job).await.unwrap(),
        Disposition::RetryAfter(_)
    ));
    // 150 newer comments from elsewhere bury ours below the first page.
    for i in 0..150 {
        jira.add_comment(&key, &format!("chatter {i}"), &format!("other:{i}"))
            .await
            .unwrap();
    }
    assert_eq!(
        drive(&l.db, &jira, &config(), &job).await,
        JobState::Succeeded
    );
    let comments = s.issue(&key)["comments"].as_array().unwrap().clone();
    assert_eq!(comments.len(), 151);
    assert_eq!(comments.iter().filter(|c| *c == "ours").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_jira_call_starts_without_a_whole_call_left_before_the_deadline() {
    let s = sim().await;
    let jira = s.client();
    let l = local("deadline");
    let job = ingest(&l.db, &l.db, &create("d-1")).await;
    let cfg = config();
    let ex = Executor {
        // Half a second left; a call may take the 1 s timeout.
        deadline: Some(SystemClock.now().plus(Duration::from_millis(500))),
        ..executor(&l.db, &jira, &cfg)
    };
    assert!(matches!(
        ex.run(&job).await.unwrap(),
        Disposition::RetryAfter(_)
    ));
    assert_eq!(s.report()["totals"]["requests"], 0, "no call was started");
    let rec = l.db.job(&job).await.unwrap().unwrap();
    assert_eq!(rec.state, JobState::Waiting);
    assert_eq!(
        rec.step_started, None,
        "no start mark for a call never made"
    );
    // The next invocation, with time, makes it.
    assert_eq!(
        drive(&l.db, &jira, &config(), &job).await,
        JobState::Succeeded
    );
}

// ── Every write kind, its answer lost after the work ────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_write_kind_has_one_effect_when_its_answer_is_lost_after_the_work() {
    let s = sim().await;
    let jira = s.client();
    let l = local("lost-answers");
    let lose = |route: &str| {
        s.fault(json!({"route": route, "dropAnswer": true, "times": 1}));
    };
    // Create (label + issue property set in the call).
    lose("POST /rest/api/3/issue");
    let key = created_issue(&l, &jira, "w-1").await;
    // Comment (comment property).
    lose("POST /rest/api/3/issue/{key}/comment");
    let comment = ingest(
        &l.db,
        &l.db,
        &json!({"sourceSystem": "alertmanager", "externalId": "w-1", "desiredOperation": "comment",
                "comment": "Paged the on-call."}),
    )
    .await;
    assert_eq!(
        drive(&l.db, &jira, &config(), &comment).await,
        JobState::Succeeded
    );
    // Edit and labels (idempotent by content).
    lose("PUT /rest/api/3/issue/{key}");
    let edit = ingest(
        &l.db,
        &l.db,
        &json!({"sourceSystem": "alertmanager", "externalId": "w-1", "desiredOperation": "update",
                "fields": {"summary": "Disk full on db-7 (escalated)"}, "labels": ["escalated"]}),
    )
    .await;
    assert_eq!(
        drive(&l.db, &jira, &config(), &edit).await,
        JobState::Succeeded
    );
    // Transition through a global "any → Done" transition (offered from
    // Done too): by the issue already being in its target.
    lose("POST /rest/api/3/issue/{key}/transitions");
    let close = ingest(
        &l.db,
        &l.db,
        &json!({"sourceSystem": "alertmanager", "externalId": "w-1", "desiredOperation": "transition",
                "transition": "Close"}),
    )
    .await;
    assert_eq!(
        drive(&l.db, &jira, &config(), &close).await,
        JobState::Succeeded
    );
    // A Confluence page and a comment on it (anchors).
    lose("POST /wiki/api/v2/pages");
    let page_id = page(&l, &jira, "Postmortem db-7").await;
    lose("POST /wiki/api/v2/footer-comments");
    let pc = ingest(
        &l.db,
        &l.db,
        &page_comment("w-pc", &page_id, "Root cause: log rotation."),
    )
    .await;
    assert_eq!(
        drive(&l.db, &jira, &config(), &pc).await,
        JobState::Succeeded
    );

    let report = s.report();
    let totals = &report["totals"];
    assert_eq!(totals["issues"], 1);
    assert_eq!(totals["duplicateIssues"], 0);
    assert_eq!(totals["comments"], 1);
    assert_eq!(totals["duplicateComments"], 0);
    let issue = s.issue(&key);
    assert_eq!(issue["summary"], "Disk full on db-7 (escalated)");
    let labels = issue["labels"].as_array().unwrap();
    assert_eq!(labels.iter().filter(|l| *l == "escalated").count(), 1);
    assert_eq!(issue["transitions"], json!(["Done"]), "moved to Done once");
    assert_eq!(issue["status"], "Done");
    assert_eq!(totals["pages"], 1);
    assert_eq!(totals["pageComments"], 1);
    assert_eq!(totals["duplicatePageComments"], 0);
}

// ── Follow-ups with no issue to follow ──────────────────────────────────

fn resolved(id: &str) -> Value {
    json!({"sourceSystem": "alertmanager", "externalId": id, "desiredOperation": "transition",
           "transition": "Done", "comment": "Resolved.", "ifNoIssue": "skip"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resolution_of_an_alert_never_seen_firing_ends_with_nothing_to_resolve() {
    let s = sim().await;
    let jira = s.client();
    let l = local("nothing-to-resolve");
    let job = ingest(&l.db, &l.db, &resolved("never-fired")).await;
    assert_eq!(
        drive(&l.db, &jira, &config(), &job).await,
        JobState::Succeeded
    );
    let trail = l.db.audit_trail(&job).await.unwrap();
    assert!(
        trail
            .iter()
            .any(|e| e.outcome.starts_with("nothing to resolve")),
        "{trail:#?}"
    );
    let requests = &s.report()["requestsByEndpoint"];
    assert_eq!(
        requests["POST /rest/api/3/search/jql"], 1,
        "looked once: {requests}"
    );
    assert_eq!(s.report()["totals"]["issues"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resolution_finds_an_issue_made_before_tollgate_by_its_label() {
    let s = sim().await;
    let jira = s.client();
    let l = local("found-by-label");
    let event = resolved("fired-before");
    let parsed = tollgate::domain::validation::validate_event(&event).unwrap();
    let link =
        tollgate::domain::idempotency::LinkId::of(&parsed.source_system, &parsed.external_id);
    let keys = s
        .sim
        .seed_issues(&[json!({"project": {"key": "OPS"}, "issuetype": {"name": "Incident"},
                              "summary": "Made by an earlier deployment", "labels": [link.label()]})])
        .unwrap();
    let job = ingest(&l.db, &l.db, &event).await;
    assert_eq!(
        drive(&l.db, &jira, &config(), &job).await,
        JobState::Succeeded
    );
    let issue = s.report()["issues"][0].clone();
    assert_eq!(issue["key"], keys[0]);
    assert_eq!(issue["status"], "Done");
    assert_eq!(issue["comments"], json!(["Resolved."]));
    // Later work on the entity finds the issue through the link.
    assert_eq!(
        l.db.link(&link)
            .await
            .unwrap()
            .unwrap()
            .issue_key
            .unwrap()
            .as_str(),
        keys[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resolution_waits_for_a_create_already_on_its_way() {
    let s = sim().await;
    let jira = s.client();
    let l = local("create-on-its-way");
    let firing = ingest(&l.db, &l.db, &create("racing")).await;
    let resolution = ingest(&l.db, &l.db, &resolved("racing")).await;
    let ex_cfg = config();
    let ex = executor(&l.db, &jira, &ex_cfg);
    // The resolution runs first: the create is queued, so it waits.
    assert!(matches!(
        ex.run(&resolution).await.unwrap(),
        Disposition::RetryAfter(_)
    ));
    assert_eq!(s.report()["totals"]["requests"], 0);
    assert_eq!(
        drive(&l.db, &jira, &config(), &firing).await,
        JobState::Succeeded
    );
    assert_eq!(
        drive(&l.db, &jira, &config(), &resolution).await,
        JobState::Succeeded
    );
    assert_eq!(s.report()["issues"][0]["status"], "Done");
}
