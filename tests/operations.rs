//! What an operator does to a job — run a failed or exhausted one again,
//! cancel one that waits — on SQLite and on DynamoDB + SQS (moto), with
//! the real Jira adapter against jira-sim; and a follow-up waiting for an
//! issue that never comes records its wait once and ends with the reason.

#[path = "../shared/tests/support/moto.rs"]
mod moto;

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tollgate::adapters::dynamodb::DynamoStore;
use tollgate::adapters::jira::{JiraAuth, JiraClient};
use tollgate::adapters::sqlite::SqliteDb;
use tollgate::adapters::sqs::SqsQueue;
use tollgate::app::execute::{Disposition, Executor, ExecutorConfig};
use tollgate::app::governor::Ungoverned;
use tollgate::app::ingest::{Ingest, IngestOutcome};
use tollgate::app::operations::{Cancelled, Operations, Retried};
use tollgate::domain::ids::JobId;
use tollgate::domain::job::JobState;
use tollgate::domain::policy::Policy;
use tollgate::domain::secret::Secret;
use tollgate::domain::signature;
use tollgate::ports::{IngestStore, SystemClock, WorkQueue};
use tollgate_e2e::Scratch;

async fn sim() -> (String, Arc<jira_sim::Sim>) {
    let (addr, sim, _) = jira_sim::spawn(
        jira_sim::SimConfig::default(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    (format!("http://{addr}"), sim)
}

fn client(url: &str) -> JiraClient {
    let auth = JiraAuth::Basic {
        email: "sim@example.com".into(),
        api_token: Secret::new("sim-token"),
    };
    JiraClient::new(url, auth, Duration::from_secs(5)).unwrap()
}

async fn ingest<S: IngestStore, Q: WorkQueue>(
    store: &S,
    queue: &Q,
    policy: &Policy,
    event: &Value,
) -> (JobId, JobState) {
    let secret = [Secret::new("s")];
    let body = serde_json::to_vec(event).unwrap();
    let sig = signature::sign(&secret[0], tollgate_e2e::signing_time(&body), &body);
    let ingest = Ingest {
        store,
        queue,
        clock: &SystemClock,
        secrets: &secret,
        policy,
    };
    match ingest.handle(&body, Some(&sig)).await.unwrap() {
        IngestOutcome::Accepted { job_id, state, .. } => (job_id, state),
        other => panic!("{other:?}"),
    }
}

fn config() -> ExecutorConfig {
    ExecutorConfig {
        worker: "test".into(),
        lease_ttl: Duration::from_secs(5),
        target_wait: Duration::from_secs(5),
        ..ExecutorConfig::default()
    }
}

/// Runs the job until its message would be deleted, coming back early
/// (at most 100 ms) after every wait.
async fn drive<S: IngestStore>(store: &S, jira: &JiraClient, id: &JobId) -> JobState {
    let config = config();
    let ex = Executor {
        store,
        tracker: jira,
        clock: &SystemClock,
        config: &config,
        governor: &Ungoverned,
        deadline: None,
    };
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

/// Takes every visible message off the queue; the job ids they carry.
async fn drain<Q: WorkQueue>(queue: &Q) -> Vec<JobId> {
    let mut ids = Vec::new();
    for d in queue.receive(10, Duration::from_secs(30)).await.unwrap() {
        queue.delete(&d.receipt).await.unwrap();
        ids.push(d.job_id);
    }
    ids
}

fn create(id: &str) -> Value {
    json!({"sourceSystem": "monitoring", "externalId": id, "desiredOperation": "create",
           "projectKey": "OPS", "issueType": "Incident", "summary": format!("alert {id}")})
}

async fn a_failed_job_runs_again_when_an_operator_retries_it<S, Q>(store: &S, queue: &Q)
where
    S: IngestStore,
    Q: WorkQueue,
{
    let (url, sim) = sim().await;
    let jira = client(&url);
    let mut limits = sim.limits();
    limits.faults.routes.push(
        serde_json::from_value(
            json!({"route": "POST /rest/api/3/issue", "refuseStatus": 400, "times": 1}),
        )
        .unwrap(),
    );
    sim.set_limits(limits);
    let ops = Operations {
        store,
        queue,
        clock: &SystemClock,
    };
    let (id, _) = ingest(store, queue, &Policy::default(), &create("retry-me")).await;
    drain(queue).await;
    assert_eq!(drive(store, &jira, &id).await, JobState::Failed);
    assert_eq!(sim.report()["totals"]["issues"], 0);

    let Retried::Queued(job) = ops.retry(&id, "alice").await.unwrap() else {
        panic!("a FAILED job is retried")
    };
    assert_eq!(job.state, JobState::Queued);
    assert_eq!((job.attempts, job.last_error.as_deref()), (0, None));
    assert_eq!(drain(queue).await, vec![id.clone()], "its message is sent");
    assert_eq!(drive(store, &jira, &id).await, JobState::Succeeded);
    assert_eq!(sim.report()["totals"]["issues"], 1);
    let trail = store.audit_trail(&id).await.unwrap();
    assert!(
        trail
            .iter()
            .any(|e| e.actor == "alice" && e.outcome.contains("(was FAILED)")),
        "{trail:#?}"
    );
    assert_eq!(
        ops.retry(&id, "alice").await.unwrap(),
        Retried::NotRetryable(JobState::Succeeded),
        "done work is not run again"
    );
}

async fn waiting_work_is_cancelled_and_never_runs<S, Q>(store: &S, queue: &Q)
where
    S: IngestStore,
    Q: WorkQueue,
{
    let (url, sim) = sim().await;
    let jira = client(&url);
    let ops = Operations {
        store,
        queue,
        clock: &SystemClock,
    };
    // Queued work.
    let (queued, _) = ingest(store, queue, &Policy::default(), &create("cancel-me")).await;
    let Cancelled::Cancelled { job, .. } = ops
        .cancel(&queued, "bob", "duplicate of OPS-1")
        .await
        .unwrap()
    else {
        panic!("a QUEUED job is cancelled")
    };
    assert_eq!(job.state, JobState::Cancelled);
    assert_eq!(drive(store, &jira, &queued).await, JobState::Cancelled);
    assert_eq!(
        sim.report()["totals"]["requests"],
        0,
        "nothing reached Jira"
    );
    let trail = store.audit_trail(&queued).await.unwrap();
    let last = trail.last().unwrap();
    assert_eq!(last.actor, "bob");
    assert_eq!(last.outcome, "cancelled by bob: duplicate of OPS-1");

    // Work waiting for a person: its request closes with it.
    let policy = Policy::parse(
        r#"approvers = ["carol"]
           [[rules]]
           name = "every create"
           operations = ["create"]
           decision = "require""#,
    )
    .unwrap();
    let (pending, state) = ingest(store, queue, &policy, &create("needs-ok")).await;
    assert_eq!(state, JobState::PendingApproval);
    let approval = store.approval_for_job(&pending).await.unwrap().unwrap();
    let Cancelled::Cancelled {
        closed_approval, ..
    } = ops.cancel(&pending, "bob", "not needed").await.unwrap()
    else {
        panic!("a PENDING_APPROVAL job is cancelled")
    };
    assert_eq!(closed_approval.as_deref(), Some(approval.id.as_str()));
    let closed = store.approval(&approval.id).await.unwrap().unwrap();
    assert!(closed.decided.is_some(), "the request is closed");
    assert!(
        store.open_approvals(10).await.unwrap().is_empty(),
        "nobody is asked about it"
    );

    // Work that ended is not cancelled.
    let (done, _) = ingest(store, queue, &Policy::default(), &create("done")).await;
    assert_eq!(drive(store, &jira, &done).await, JobState::Succeeded);
    assert_eq!(
        ops.cancel(&done, "bob", "late").await.unwrap(),
        Cancelled::NotCancellable(JobState::Succeeded)
    );
}

async fn a_follow_up_with_no_issue_records_its_wait_once_and_fails_with_the_reason<S, Q>(
    store: &S,
    queue: &Q,
) where
    S: IngestStore,
    Q: WorkQueue,
{
    let (url, _sim) = sim().await;
    let jira = client(&url);
    let comment = json!({"sourceSystem": "alertmanager", "externalId": "never-fired",
        "desiredOperation": "comment", "comment": "resolved", "ifNoIssue": "wait"});
    let (id, _) = ingest(store, queue, &Policy::default(), &comment).await;
    assert_eq!(drive(store, &jira, &id).await, JobState::Failed);
    let trail = store.audit_trail(&id).await.unwrap();
    let waits = trail
        .iter()
        .filter(|e| e.outcome.starts_with("waiting for this entity's issue"))
        .count();
    assert_eq!(waits, 1, "one entry for the whole wait: {trail:#?}");
    let leases = trail.iter().filter(|e| e.outcome == "leased").count();
    assert!(
        leases <= 2,
        "its looks are not recorded one by one: {trail:#?}"
    );
    let job = store.job(&id).await.unwrap().unwrap();
    assert!(
        job.last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("no issue to act on")),
        "{job:?}"
    );
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

async fn aws() -> (DynamoStore, SqsQueue) {
    let config = moto::sdk_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&config);
    let table = moto::unique("ops");
    DynamoStore::create_table(&dynamo, &table).await.unwrap();
    let sqs = aws_sdk_sqs::Client::new(&config);
    let interactive = SqsQueue::create_queue(&sqs, &moto::unique("i"))
        .await
        .unwrap();
    let bulk = SqsQueue::create_queue(&sqs, &moto::unique("b"))
        .await
        .unwrap();
    (
        DynamoStore::new(dynamo, table),
        SqsQueue::new(sqs, &interactive, &bulk),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_job_runs_again_when_an_operator_retries_it_on_sqlite() {
    let l = local("ops-retry");
    a_failed_job_runs_again_when_an_operator_retries_it(&l.db, &l.db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_job_runs_again_when_an_operator_retries_it_on_dynamodb() {
    let (store, queue) = aws().await;
    a_failed_job_runs_again_when_an_operator_retries_it(&store, &queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiting_work_is_cancelled_and_never_runs_on_sqlite() {
    let l = local("ops-cancel");
    waiting_work_is_cancelled_and_never_runs(&l.db, &l.db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiting_work_is_cancelled_and_never_runs_on_dynamodb() {
    let (store, queue) = aws().await;
    waiting_work_is_cancelled_and_never_runs(&store, &queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follow_up_with_no_issue_records_its_wait_once_on_sqlite() {
    let l = local("ops-wait");
    a_follow_up_with_no_issue_records_its_wait_once_and_fails_with_the_reason(&l.db, &l.db).await;
}
