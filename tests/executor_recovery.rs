//! Recovery points, deterministically: the executor is run on a job whose
//! previous worker died after starting a call that cannot be repeated
//! blindly. Real SQLite, real Jira adapter, real simulator (in-process).

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tollgate::adapters::jira::{JiraAuth, JiraClient};
use tollgate::adapters::sqlite::SqliteDb;
use tollgate::app::execute::{Disposition, Executor, ExecutorConfig};
use tollgate::app::governor::Ungoverned;
use tollgate::app::ingest::{Ingest, IngestOutcome};
use tollgate::domain::idempotency::LinkId;
use tollgate::domain::ids::JobId;
use tollgate::domain::job::JobState;
use tollgate::domain::plan::{LinkState, Step, plan};
use tollgate::domain::secret::Secret;
use tollgate::domain::signature;
use tollgate::domain::time::Timestamp;
use tollgate::domain::validation::validate_event;
use tollgate::ports::{Clock, JobStore, LinkStore, SystemClock, Tracker, WorkQueue};
use tollgate_e2e::Scratch;

struct Rig {
    db: SqliteDb,
    jira: JiraClient,
    sim: Arc<jira_sim::Sim>,
    config: ExecutorConfig,
    _dir: Scratch,
}

async fn rig(name: &str) -> Rig {
    let dir = Scratch::new(name);
    let db = SqliteDb::open(dir.path("t.db")).unwrap();
    let (addr, sim, _) = jira_sim::spawn(
        jira_sim::SimConfig::default(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let auth = JiraAuth::Basic {
        email: "sim@example.com".into(),
        api_token: Secret::new("sim-token"),
    };
    let jira = JiraClient::new(&format!("http://{addr}"), auth, Duration::from_secs(5)).unwrap();
    let config = ExecutorConfig {
        search_lag: Duration::from_secs(3),
        // The client's timeout above: a lost call may land until then.
        call_timeout: Duration::from_secs(5),
        ..ExecutorConfig::default()
    };
    Rig {
        db,
        jira,
        sim,
        config,
        _dir: dir,
    }
}

impl Rig {
    async fn ingest(&self, event: &Value) -> JobId {
        let secret = [Secret::new("s")];
        let body = serde_json::to_vec(event).unwrap();
        let sig = signature::sign(&secret[0], tollgate_e2e::signing_time(&body), &body);
        let ingest = Ingest {
            store: &self.db,
            queue: &self.db,
            clock: &SystemClock,
            secrets: &secret,
            policy: &Default::default(),
        };
        match ingest.handle(&body, Some(&sig)).await.unwrap() {
            IngestOutcome::Accepted { job_id, .. } => job_id,
            other => panic!("{other:?}"),
        }
    }

    async fn run(&self, id: &JobId) -> Disposition {
        let ex = Executor {
            store: &self.db,
            tracker: &self.jira,
            clock: &SystemClock,
            config: &self.config,
            governor: &Ungoverned,
            deadline: None,
        };
        ex.run(id).await.unwrap()
    }

    /// Leaves the job as a worker that died mid-step `step` would: running,
    /// with the step marked started at `started`.
    async fn crash_during_step(&self, id: &JobId, step: u32, started: Timestamp) {
        let mut job = self.db.job(id).await.unwrap().unwrap();
        let from = job.state;
        job.state = JobState::Running;
        job.steps_done = step;
        job.step_started = Some((step, started));
        assert!(self.db.update(&job, from, None).await.unwrap());
        // Drain the queue message; the test drives the executor itself.
        for d in self.db.receive(10, Duration::from_secs(60)).await.unwrap() {
            self.db.delete(&d.receipt).await.unwrap();
        }
    }

    fn totals(&self) -> Value {
        self.sim.report()["totals"].clone()
    }
}

fn create_event() -> Value {
    json!({"sourceSystem": "alertmanager", "externalId": "r-1", "desiredOperation": "create",
           "projectKey": "OPS", "issueType": "Incident", "summary": "Recovery", "comment": "Opened."})
}

fn planned_create(event: &Value) -> (serde_json::Map<String, Value>, String) {
    let e = validate_event(event).unwrap();
    let link = LinkId::of(&e.source_system, &e.external_id);
    match plan(&e, &link, &LinkState::Unlinked).unwrap().remove(0) {
        Step::CreateIssue { fields, label } => (fields, label),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_found_by_its_label_not_repeated() {
    let r = rig("lost-answer").await;
    let event = create_event();
    let id = r.ingest(&event).await;
    // The dead worker's create reached Jira; its answer never came back.
    let (fields, _) = planned_create(&event);
    let created = r.jira.create_issue(&fields, &[]).await.unwrap().value;
    r.crash_during_step(&id, 0, Timestamp(SystemClock.now().0 - 10_000))
        .await;

    assert_eq!(r.run(&id).await, Disposition::Done);
    let job = r.db.job(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.issue_key.as_ref(), Some(&created));
    assert_eq!(r.totals()["issues"], 1, "no second create");
    assert_eq!(r.totals()["comments"], 1);
    let link = r.db.link(&job.link).await.unwrap().unwrap();
    assert_eq!(link.issue_key, Some(created));
    let trail = r.db.audit_trail(&id).await.unwrap();
    assert!(trail.iter().any(|e| {
        e.outcome
            .starts_with("found the effect of an earlier attempt")
    }));
}

#[tokio::test]
async fn a_create_that_never_reached_jira_is_made_once_its_ambiguity_window_has_passed() {
    let r = rig("never-sent").await;
    let id = r.ingest(&create_event()).await;
    r.crash_during_step(&id, 0, Timestamp(SystemClock.now().0 - 10_000))
        .await;
    assert_eq!(r.run(&id).await, Disposition::Done);
    assert_eq!(
        r.db.job(&id).await.unwrap().unwrap().state,
        JobState::Succeeded
    );
    assert_eq!(r.totals()["issues"], 1);
}

#[tokio::test]
async fn within_its_ambiguity_window_an_unseen_create_is_waited_for_not_repeated() {
    let r = rig("lag").await;
    let id = r.ingest(&create_event()).await;
    r.crash_during_step(&id, 0, SystemClock.now()).await;
    match r.run(&id).await {
        // The call may land until its start + the 5 s timeout; search may
        // miss it for 3 s after that.
        Disposition::RetryAfter(wait) => assert!(
            wait <= Duration::from_secs(8) && wait > Duration::from_secs(6),
            "{wait:?}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        r.db.job(&id).await.unwrap().unwrap().state,
        JobState::Waiting
    );
    assert_eq!(
        r.totals()["issues"],
        0,
        "nothing created while the search may lag"
    );
}

#[tokio::test]
async fn a_comment_whose_answer_was_lost_is_not_posted_twice() {
    let r = rig("comment").await;
    let create = r.ingest(&create_event()).await;
    assert_eq!(r.run(&create).await, Disposition::Done);
    let issue = r.db.job(&create).await.unwrap().unwrap().issue_key.unwrap();
    let comment = r
        .ingest(&json!({"sourceSystem": "alertmanager", "externalId": "r-1", "desiredOperation": "comment", "comment": "Once only."}))
        .await;
    // The dead worker posted the comment with its marker; the answer was lost.
    r.jira
        .add_comment(&issue, "Once only.", &format!("{comment}:0"))
        .await
        .unwrap();
    r.crash_during_step(&comment, 0, SystemClock.now()).await;
    assert_eq!(r.run(&comment).await, Disposition::Done);
    assert_eq!(
        r.db.job(&comment).await.unwrap().unwrap().state,
        JobState::Succeeded
    );
    assert_eq!(
        r.totals()["comments"],
        2,
        "the create's comment and this one, once"
    );
    assert_eq!(r.totals()["duplicateComments"], 0);
}

#[tokio::test]
async fn a_finished_job_redelivered_does_nothing() {
    let r = rig("redelivered").await;
    let id = r.ingest(&create_event()).await;
    assert_eq!(r.run(&id).await, Disposition::Done);
    assert_eq!(r.run(&id).await, Disposition::Done);
    assert_eq!(r.totals()["issues"], 1);
    assert_eq!(r.totals()["requests"], 2, "one create, one comment");
}
