//! Work that ends badly is followed up, on a hand-moved clock: exhausted
//! work is reported, ticketed ("Rate limit exceeded" in a project) and
//! re-run after its window, a bounded number of times, then waits for an
//! operator; a job that failed after changing Jira leaves a comment on the
//! issue saying the automation is incomplete. The tasks and comments are
//! ordinary jobs, run by the real executor against jira-sim.

use jira_sim::limits::{Faults, Limits};
use serde_json::json;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tollgate::adapters::jira::{JiraAuth, JiraClient};
use tollgate::adapters::sqlite::SqliteDb;
use tollgate::app::execute::{Executor, ExecutorConfig};
use tollgate::app::followup::FollowUps;
use tollgate::app::governor::Ungoverned;
use tollgate::app::ingest::{Ingest, IngestOutcome};
use tollgate::app::operations::{Operations, Retried};
use tollgate::domain::backoff::RetryPolicy;
use tollgate::domain::followup::FollowUpPolicy;
use tollgate::domain::ids::JobId;
use tollgate::domain::job::JobState;
use tollgate::domain::notice::Notice;
use tollgate::domain::policy::Policy;
use tollgate::domain::secret::Secret;
use tollgate::domain::time::Timestamp;
use tollgate::ports::{Clock, JobStore, Notifier, NotifyError, SystemClock, WorkQueue};
use tollgate_e2e::Scratch;

struct HandClock(AtomicI64);

impl Clock for HandClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

impl HandClock {
    fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as i64, Ordering::SeqCst);
    }
}

/// Keeps what it is told.
#[derive(Default)]
struct Inbox(Mutex<Vec<Notice>>);

impl Notifier for Inbox {
    async fn notify(&self, notice: &Notice) -> Result<(), NotifyError> {
        self.0.lock().unwrap().push(notice.clone());
        Ok(())
    }
}

struct Rig {
    db: SqliteDb,
    clock: HandClock,
    sim: std::sync::Arc<jira_sim::Sim>,
    jira: JiraClient,
    config: ExecutorConfig,
    _dir: Scratch,
}

async fn rig(name: &str) -> Rig {
    let dir = Scratch::new(name);
    let db = SqliteDb::open(dir.path("t.db")).unwrap();
    let (addr, sim, _) = jira_sim::spawn(Default::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let jira = JiraClient::new(
        &format!("http://{addr}"),
        JiraAuth::Basic {
            email: "sim@example.com".into(),
            api_token: Secret::new("sim-token"),
        },
        Duration::from_secs(5),
    )
    .unwrap();
    Rig {
        db,
        clock: HandClock(AtomicI64::new(SystemClock.now().0)),
        sim,
        jira,
        // One transient failure spends the budget: exhaustion on demand.
        config: ExecutorConfig {
            retry: RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            },
            ..ExecutorConfig::default()
        },
        _dir: dir,
    }
}

impl Rig {
    async fn admit(&self, event: serde_json::Value) -> JobId {
        let ingest = Ingest {
            store: &self.db,
            queue: &self.db,
            clock: &self.clock,
            secrets: &[],
            policy: &Policy::default(),
        };
        match ingest.admit_internal(&event).await.unwrap() {
            IngestOutcome::Accepted { job_id, .. } => job_id,
            other => panic!("{other:?}"),
        }
    }

    /// Runs every queued message through the executor (until none is left
    /// that can run now).
    async fn drain(&self) {
        let executor = Executor {
            store: &self.db,
            tracker: &self.jira,
            clock: &SystemClock,
            config: &self.config,
            governor: &Ungoverned,
            deadline: None,
        };
        for _ in 0..50 {
            let got = self.db.receive(10, Duration::from_secs(30)).await.unwrap();
            if got.is_empty() {
                return;
            }
            for d in got {
                executor.run(&d.job_id).await.unwrap();
                self.db.delete(&d.receipt).await.unwrap();
            }
        }
    }

    async fn state(&self, id: &JobId) -> JobState {
        self.db.job(id).await.unwrap().unwrap().state
    }

    fn followups<'a>(
        &'a self,
        policy: &'a FollowUpPolicy,
    ) -> FollowUps<'a, SqliteDb, SqliteDb, HandClock> {
        FollowUps {
            store: &self.db,
            queue: &self.db,
            clock: &self.clock,
            policy,
        }
    }
}

fn all_503() -> Limits {
    Limits {
        faults: Faults {
            error_503: 1.0,
            ..Faults::default()
        },
        ..Limits::default()
    }
}

#[tokio::test]
async fn exhausted_work_is_reported_ticketed_rerun_after_its_window_then_left_to_an_operator() {
    let r = rig("exhausted").await;
    let policy = FollowUpPolicy {
        rerun_after: Duration::from_secs(600),
        max_reruns: 1,
        ticket_project: Some("OPS".into()),
    };
    r.sim.set_limits(all_503());
    let job = r
        .admit(
            json!({"sourceSystem": "cmdb", "externalId": "ci-1", "desiredOperation": "create",
                      "projectKey": "ASSET", "issueType": "Task", "summary": "Server 1"}),
        )
        .await;
    r.drain().await;
    assert_eq!(r.state(&job).await, JobState::Exhausted);

    let inbox = Inbox::default();
    let f = r.followups(&policy);
    assert_eq!(
        f.sweep(&inbox, true).await.unwrap(),
        1,
        "site paused: the notice only"
    );
    assert_eq!(f.sweep(&inbox, false).await.unwrap(), 1, "then the task");
    assert_eq!(f.sweep(&inbox, false).await.unwrap(), 0, "each once");
    let notices = inbox.0.lock().unwrap().clone();
    let Notice::JobExhausted(n) = &notices[0] else {
        panic!("{notices:?}")
    };
    assert_eq!(
        (n.source_system.as_str(), n.external_id.as_str()),
        ("cmdb", "ci-1")
    );
    assert!(n.rerun_at.is_some());

    // Jira recovers; the task runs; the job waits out its window.
    r.sim.set_limits(Limits::default());
    r.drain().await;
    assert_eq!(r.state(&job).await, JobState::Exhausted);
    let issues = r.sim.report()["issues"].clone();
    assert_eq!(issues.as_array().unwrap().len(), 1);
    assert!(
        issues[0]["summary"]
            .as_str()
            .unwrap()
            .starts_with("Rate limit exceeded: create from cmdb ci-1"),
        "{issues}"
    );
    r.clock.advance(Duration::from_secs(700));
    assert_eq!(f.sweep(&inbox, false).await.unwrap(), 1, "the re-run");
    assert_eq!(r.state(&job).await, JobState::Queued);
    r.drain().await;
    assert_eq!(r.state(&job).await, JobState::Succeeded);
    assert_eq!(r.sim.report()["totals"]["issues"], 2);

    // Exhausted again past its last automatic re-run: reported, then an
    // operator's to re-run.
    let again = r
        .admit(
            json!({"sourceSystem": "cmdb", "externalId": "ci-2", "desiredOperation": "create",
                      "projectKey": "ASSET", "issueType": "Task", "summary": "Server 2"}),
        )
        .await;
    r.sim.set_limits(all_503());
    r.drain().await;
    r.clock.advance(Duration::from_secs(700));
    f.sweep(&inbox, true).await.unwrap();
    assert_eq!(r.state(&again).await, JobState::Queued, "first re-run");
    r.drain().await;
    assert_eq!(r.state(&again).await, JobState::Exhausted);
    r.clock.advance(Duration::from_secs(700));
    f.sweep(&inbox, true).await.unwrap();
    assert_eq!(
        r.state(&again).await,
        JobState::Exhausted,
        "no second automatic re-run"
    );
    r.sim.set_limits(Limits::default());
    // An operator runs it again, whatever its automatic re-runs.
    let ops = Operations {
        store: &r.db,
        queue: &r.db,
        clock: &r.clock,
    };
    match ops.retry(&again, "dana").await.unwrap() {
        Retried::Queued(job) => assert_eq!((job.attempts, job.throttles), (0, 0)),
        other => panic!("{other:?}"),
    }
    r.drain().await;
    assert_eq!(r.state(&again).await, JobState::Succeeded);
    let trail = r.db.audit_trail(&again).await.unwrap();
    assert!(
        trail
            .iter()
            .any(|e| e.outcome == "re-queued by operator dana (was EXHAUSTED)")
    );
    assert_eq!(
        ops.retry(&again, "dana").await.unwrap(),
        Retried::NotRetryable(JobState::Succeeded)
    );
    assert_eq!(r.sim.report()["totals"]["duplicateIssues"], 0);
}

#[tokio::test]
async fn a_failure_after_jira_changed_leaves_a_comment_on_the_issue() {
    let r = rig("compensate").await;
    let policy = FollowUpPolicy::default();
    // The parent is created; its sub-task's issue type does not exist.
    let job = r
        .admit(
            json!({"sourceSystem": "itsm", "externalId": "CHG-3", "desiredOperation": "create",
                      "projectKey": "OPS", "issueType": "Task", "summary": "Migrate the database",
                      "children": [{"issueType": "NoSuchType", "summary": "Freeze writes"}]}),
        )
        .await;
    r.drain().await;
    let failed = r.db.job(&job).await.unwrap().unwrap();
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(failed.steps_done, 1, "the parent exists in Jira");
    let f = r.followups(&policy);
    assert_eq!(f.sweep(&Inbox::default(), false).await.unwrap(), 1);
    assert_eq!(f.sweep(&Inbox::default(), false).await.unwrap(), 0, "once");
    r.drain().await;
    let issue = r.sim.report()["issues"][0].clone();
    let comments = issue["comments"].as_array().unwrap();
    assert_eq!(comments.len(), 1, "{issue}");
    assert!(
        comments[0]
            .as_str()
            .unwrap()
            .starts_with("Automation incomplete; pending retry."),
        "{issue}"
    );
}
