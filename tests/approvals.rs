//! Approvals end to end on `serve`'s stack: a gated event waits, its
//! approvers are notified with signed links, a GET of a link (what chat
//! unfurlers and mail scanners do) decides nothing, a POST decides once, and
//! the job then runs — or ends DENIED with nothing changed in Jira.

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tollgate::adapters::jira::JiraAuth;
use tollgate::adapters::sqlite::SqliteDb;
use tollgate::app::approvals::{Approvals, DecideOutcome, Links, Refusal};
use tollgate::app::ingest::{Ingest, IngestOutcome};
use tollgate::domain::approval::{
    ApprovalId, Decided, Decision, LinkClaim, derive_link_key, sign_link,
};
use tollgate::domain::job::JobState;
use tollgate::domain::policy::Policy;
use tollgate::domain::secret::Secret;
use tollgate::domain::time::Timestamp;
use tollgate::ports::{ApprovalStore, Clock, JobStore, NoNotifier, SystemClock, WorkQueue};
use tollgate_cli::config::{ApprovalSettings, JiraTarget, ServeConfig};
use tollgate_cli::stack::{self, Running};
use tollgate_e2e::webdriver::Browser;
use tollgate_e2e::{Api, Inbox, Scratch, artifacts_dir, inbox};

const SECRET: &str = "whsec_approvals";
const LEAD: &str = "lead@example.com";
const CISO: &str = "ciso@example.com";

struct Rig {
    running: Running,
    sim: Arc<jira_sim::Sim>,
    api: Api,
    webhook: Inbox,
    slack: Inbox,
    http: reqwest::Client,
    _dir: Scratch,
}

async fn rig(name: &str, webhook_failures: usize) -> Rig {
    let policy = format!("approvers = [\"{LEAD}\", \"{CISO}\"]\nexpiry_minutes = 60\n");
    rig_with(name, webhook_failures, &policy).await
}

async fn rig_with(name: &str, webhook_failures: usize, policy: &str) -> Rig {
    let dir = Scratch::new(name);
    let (addr, sim, _) = jira_sim::spawn(Default::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (webhook_url, webhook) = inbox(webhook_failures).await;
    let (slack_url, slack) = inbox(0).await;
    let policy = Policy::parse(policy).unwrap();
    let running = stack::start(ServeConfig {
        operator_tokens: Vec::new(),
        listen: "127.0.0.1:0".parse().unwrap(),
        db: dir.path("t.db"),
        jira: JiraTarget::Site {
            url: format!("http://{addr}"),
            auth: JiraAuth::Basic {
                email: "sim@example.com".into(),
                api_token: Secret::new("sim-token"),
            },
        },
        webhook_secrets: vec![Secret::new(SECRET)],
        workers: 2,
        visibility_timeout: Duration::from_secs(30),
        lease_ttl: Duration::from_secs(30),
        jira_timeout: Duration::from_secs(5),
        sim_latency: Duration::ZERO,
        approvals: ApprovalSettings {
            policy,
            link_keys: Vec::new(),
            public_url: None,
            slack_webhook_url: Some(Secret::new(slack_url)),
            notify_webhook_url: Some(Secret::new(webhook_url)),
        },
        followups: Default::default(),
        bulk_create: tollgate::ports::MAX_BULK_CREATE,
        intake: Default::default(),
        retry_cap: tollgate::domain::backoff::DEFAULT_RETRY_CAP,
    })
    .await
    .unwrap();
    let api = Api::new(&format!("http://{}", running.addr));
    Rig {
        running,
        sim,
        api,
        webhook,
        slack,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        _dir: dir,
    }
}

struct Page {
    status: u16,
    html: String,
}

impl Rig {
    async fn send(&self, event: Value) -> Value {
        let sent = self
            .api
            .post_signed(&serde_json::to_vec(&event).unwrap(), SECRET)
            .await
            .unwrap();
        assert_eq!(sent.status, 202, "{}", sent.body);
        sent.body
    }

    /// An issue created (no approval needed) and a transition of it that
    /// waits for one. Returns the transition's job id.
    async fn gated_transition(&self, id: &str) -> String {
        let created = self
            .send(json!({"sourceSystem": "itsm", "externalId": id, "desiredOperation": "create",
                         "projectKey": "OPS", "issueType": "Incident", "summary": format!("Outage {id}")}))
            .await;
        assert_eq!(created["state"], "QUEUED");
        self.api
            .wait_terminal(created["jobId"].as_str().unwrap(), Duration::from_secs(20))
            .await
            .unwrap();
        let gated = self
            .send(
                json!({"sourceSystem": "itsm", "externalId": id, "desiredOperation": "transition",
                         "transition": "Done"}),
            )
            .await;
        assert_eq!(gated["state"], "PENDING_APPROVAL", "{gated}");
        gated["jobId"].as_str().unwrap().to_string()
    }

    /// The generic webhook's notice for a job, once it arrives.
    async fn notice(&self, job_id: &str) -> Value {
        for _ in 0..400 {
            if let Some(n) = self
                .webhook
                .received
                .lock()
                .unwrap()
                .iter()
                .find(|n| n["jobId"] == job_id)
            {
                return n.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no notification for {job_id}");
    }

    fn link(notice: &Value, approver: &str, decision: &str) -> String {
        let a = notice["approvers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["approver"] == approver)
            .unwrap();
        a[format!("{decision}Url")].as_str().unwrap().to_string()
    }

    async fn get(&self, url: &str) -> Page {
        let r = self.http.get(url).send().await.unwrap();
        Page {
            status: r.status().as_u16(),
            html: r.text().await.unwrap(),
        }
    }

    async fn post(&self, url: &str) -> Page {
        let r = self.http.post(url).send().await.unwrap();
        Page {
            status: r.status().as_u16(),
            html: r.text().await.unwrap(),
        }
    }

    async fn state(&self, job_id: &str) -> String {
        self.api.job(job_id).await.unwrap()["state"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn transitions_in_jira(&self) -> usize {
        self.sim.report()["totals"]["transitions"].as_u64().unwrap() as usize
    }

    /// A link for `approval` signed with the server's key.
    fn forge(&self, approval: &str, approver: &str, expires: Timestamp) -> String {
        let key = derive_link_key(&Secret::new(SECRET));
        let token = sign_link(
            &key,
            &LinkClaim {
                approval: ApprovalId::parse(approval).unwrap(),
                decision: Decision::Approve,
                approver: approver.into(),
                expires,
            },
        );
        format!("{}/v1/approvals/{token}", self.running.public_url)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_prefetched_link_decides_nothing_and_an_approval_then_runs_the_job_once() {
    let r = rig("approve", 0).await;
    let job = r.gated_transition("CHG-1").await;
    let notice = r.notice(&job).await;
    assert_eq!(notice["type"], "approval.requested");
    assert!(
        notice["intent"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("transition to \"Done\"")),
        "{notice}"
    );
    let approve = Rig::link(&notice, LEAD, "approve");

    // What Slack's unfurler or a mail scanner does: fetch the link.
    for _ in 0..3 {
        let page = r.get(&approve).await;
        assert_eq!(page.status, 200);
        assert!(
            page.html.contains("transition to &quot;Done&quot;"),
            "{}",
            page.html
        );
        assert!(page.html.contains(LEAD));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        r.state(&job).await,
        "PENDING_APPROVAL",
        "a GET never decides"
    );
    assert_eq!(r.transitions_in_jira(), 0);

    let decided = r.post(&approve).await;
    assert_eq!(decided.status, 200, "{}", decided.html);
    assert!(decided.html.contains("Approved"));
    let done = r
        .api
        .wait_terminal(&job, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(done["state"], "SUCCEEDED", "{done}");
    let trail: Vec<String> = done["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap().to_string())
        .collect();
    assert!(
        trail
            .iter()
            .any(|o| o.starts_with(&format!("approved by {LEAD} at "))),
        "{trail:?}"
    );
    assert_eq!(r.transitions_in_jira(), 1);

    // The link is spent: a second POST changes nothing.
    let again = r.post(&approve).await;
    assert_eq!(again.status, 409);
    assert!(
        again.html.contains("already approved by lead@example.com"),
        "{}",
        again.html
    );
    assert_eq!(r.transitions_in_jira(), 1);

    // Slack got a Block Kit message with both buttons for each approver.
    let slack = r.slack.received.lock().unwrap().clone();
    let blocks = slack[0]["blocks"].as_array().unwrap();
    let urls: Vec<&str> = blocks
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().unwrap())
        .map(|e| e["url"].as_str().unwrap())
        .collect();
    assert_eq!(urls.len(), 4, "approve + deny for two approvers");
    assert!(urls.contains(&approve.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_denied_request_ends_denied_and_changes_nothing_in_jira() {
    let r = rig("deny", 0).await;
    let job = r.gated_transition("CHG-2").await;
    let notice = r.notice(&job).await;
    let deny = Rig::link(&notice, CISO, "deny");
    let page = r.post(&deny).await;
    assert_eq!(page.status, 200);
    assert!(page.html.contains("Denied"));
    let done = r
        .api
        .wait_terminal(&job, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(done["state"], "DENIED");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(r.transitions_in_jira(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_racing_decisions_make_exactly_one() {
    let r = rig("race", 0).await;
    let job = r.gated_transition("CHG-3").await;
    let notice = r.notice(&job).await;
    let approve = Rig::link(&notice, LEAD, "approve");
    let deny = Rig::link(&notice, CISO, "deny");
    let (a, d) = tokio::join!(r.post(&approve), r.post(&deny));
    let mut statuses = [a.status, d.status];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{} / {}", a.html, d.html);
    let done = r
        .api
        .wait_terminal(&job, Duration::from_secs(20))
        .await
        .unwrap();
    let expected = if a.status == 200 {
        "SUCCEEDED"
    } else {
        "DENIED"
    };
    assert_eq!(done["state"], expected);
    let decisions = done["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["stage"] == "approval" && e["outcome"].as_str().unwrap().contains(" by "))
        .count();
    assert_eq!(decisions, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tampered_foreign_and_expired_links_are_refused_and_change_nothing() {
    let r = rig("refuse", 0).await;
    let job = r.gated_transition("CHG-4").await;
    let notice = r.notice(&job).await;
    let approval = notice["approvalId"].as_str().unwrap();
    let approve = Rig::link(&notice, LEAD, "approve");

    // One character of the signature changed.
    let mut tampered = approve.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    for page in [r.get(&tampered).await, r.post(&tampered).await] {
        assert_eq!(page.status, 403);
        assert!(page.html.contains("not valid"));
    }
    // Genuinely signed, but for someone who is not an approver.
    let foreign = r.forge(
        approval,
        "mallory@example.com",
        Timestamp(4_000_000_000_000),
    );
    assert_eq!(r.post(&foreign).await.status, 403);
    // Genuinely signed for an approver, but expired.
    let expired = r.forge(approval, LEAD, Timestamp(1_000_000_000_000));
    let page = r.post(&expired).await;
    assert_eq!(page.status, 410);
    assert!(page.html.contains("expired"));
    // Garbage and oversized tokens.
    let base = format!("{}/v1/approvals/", r.running.public_url);
    assert_eq!(r.get(&format!("{base}not-a-token")).await.status, 403);
    assert_eq!(
        r.post(&format!("{base}{}", "x".repeat(2000))).await.status,
        403
    );

    assert_eq!(r.state(&job).await, "PENDING_APPROVAL");
    assert_eq!(r.transitions_in_jira(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_notification_is_retried_and_the_request_is_never_lost() {
    let r = rig("notify-retry", 2).await;
    let job = r.gated_transition("CHG-5").await;
    // The first two deliveries fail; the sweep retries every few seconds.
    let notice = r.notice(&job).await;
    assert_eq!(*r.webhook.fail_first.lock().unwrap(), 0);
    let approve = Rig::link(&notice, LEAD, "approve");
    assert_eq!(r.post(&approve).await.status, 200);
    let done = r
        .api
        .wait_terminal(&job, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(done["state"], "SUCCEEDED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_a_real_browser_the_page_shows_the_intent_and_approve_runs_the_job() {
    let r = rig("browser-approve", 0).await;
    let job = r.gated_transition("CHG-6").await;
    let notice = r.notice(&job).await;
    let link = Rig::link(&notice, LEAD, "approve");
    let browser = Browser::start().await.unwrap();
    browser.open(&link).await.unwrap();
    assert_eq!(
        browser.title().await.unwrap(),
        "Approval requested — tollgate"
    );
    let intent = browser.text("#intent").await.unwrap();
    assert!(intent.contains("transition to \"Done\""), "{intent}");
    assert_eq!(browser.text("#requested-by").await.unwrap(), "itsm");
    assert_eq!(browser.text("#approver").await.unwrap(), LEAD);
    browser
        .screenshot(&artifacts_dir().join("approval-page.png"))
        .await
        .unwrap();
    assert_eq!(
        r.state(&job).await,
        "PENDING_APPROVAL",
        "opening the page decides nothing"
    );

    browser.click("button.approve").await.unwrap();
    assert_eq!(browser.text("#outcome").await.unwrap(), "Approved");
    browser
        .screenshot(&artifacts_dir().join("approval-approved.png"))
        .await
        .unwrap();
    let done = r
        .api
        .wait_terminal(&job, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(done["state"], "SUCCEEDED", "{done}");
    let issue = &r.sim.report()["issues"][0];
    assert_eq!(issue["status"], "Done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_a_real_browser_deny_closes_the_request_and_jira_is_untouched() {
    let r = rig("browser-deny", 0).await;
    let job = r.gated_transition("CHG-7").await;
    let notice = r.notice(&job).await;
    // The approve link's page offers Deny too.
    let link = Rig::link(&notice, CISO, "approve");
    let browser = Browser::start().await.unwrap();
    browser.open(&link).await.unwrap();
    browser.click("button.deny").await.unwrap();
    assert_eq!(browser.text("#outcome").await.unwrap(), "Denied");
    let done = r
        .api
        .wait_terminal(&job, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(done["state"], "DENIED");
    assert_eq!(r.transitions_in_jira(), 0);
    // Opening the link again shows it is over, with no buttons.
    browser.open(&link).await.unwrap();
    let page = r.get(&link).await;
    assert!(
        page.html.contains("Already denied by ciso@example.com"),
        "{}",
        page.html
    );
    assert!(!page.html.contains("<button"));
}

/// A clock the test moves by hand.
struct HandClock(std::sync::atomic::AtomicI64);

impl Clock for HandClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
}

impl HandClock {
    fn advance(&self, d: Duration) {
        self.0
            .fetch_add(d.as_millis() as i64, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Ingests a signed transition of `external_id` (a gated kind of work).
async fn admit_transition<C: Clock>(
    db: &SqliteDb,
    clock: &C,
    policy: &Policy,
    external_id: &str,
) -> (tollgate::domain::ids::JobId, JobState) {
    let secrets = [Secret::new(SECRET)];
    let ingest = Ingest {
        store: db,
        queue: db,
        clock,
        secrets: &secrets,
        policy,
    };
    let body = serde_json::to_vec(&json!({"sourceSystem": "itsm", "externalId": external_id,
        "desiredOperation": "transition", "issueKey": "OPS-9", "transition": "Done"}))
    .unwrap();
    let sig = tollgate::domain::signature::sign(&secrets[0], clock.now().unix_seconds(), &body);
    match ingest.handle(&body, Some(&sig)).await.unwrap() {
        IngestOutcome::Accepted { job_id, state, .. } => (job_id, state),
        other => panic!("not accepted: {other:?}"),
    }
}

#[tokio::test]
async fn an_undecided_request_expires_its_job_and_a_late_decision_changes_nothing() {
    let dir = Scratch::new("expiry");
    let db = SqliteDb::open(dir.path("t.db")).unwrap();
    let clock = HandClock(std::sync::atomic::AtomicI64::new(SystemClock.now().0));
    let policy = Policy::parse("approvers = [\"lead@example.com\"]\nexpiry_minutes = 30").unwrap();
    let (job_id, state) = admit_transition(&db, &clock, &policy, "CHG-9").await;
    assert_eq!(state, JobState::PendingApproval);
    let keys = [Secret::new("k")];
    let approvals = Approvals {
        store: &db,
        queue: &db,
        clock: &clock,
        links: Links {
            keys: &keys,
            base_url: "http://x",
        },
    };
    assert_eq!(
        approvals.sweep(&NoNotifier).await.unwrap(),
        0,
        "no notifier: nothing sent"
    );
    let approval = db.approval_for_job(&job_id).await.unwrap().unwrap();
    assert!(!approval.notified, "left for a notifier configured later");
    let sent = Recorded::default();
    assert_eq!(approvals.sweep(&sent).await.unwrap(), 1, "sent once one is");
    assert_eq!(sent.0.lock().unwrap().len(), 1);
    clock.advance(Duration::from_secs(29 * 60));
    assert_eq!(approvals.sweep(&sent).await.unwrap(), 0, "not due yet");
    assert_eq!(sent.0.lock().unwrap().len(), 1, "sent once");
    assert_eq!(
        db.job(&job_id).await.unwrap().unwrap().state,
        JobState::PendingApproval
    );
    clock.advance(Duration::from_secs(2 * 60));
    assert_eq!(approvals.sweep(&NoNotifier).await.unwrap(), 1);
    let job = db.job(&job_id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Expired);
    let trail = db.audit_trail(&job_id).await.unwrap();
    assert!(
        trail
            .iter()
            .any(|e| e.outcome.starts_with("approval request expired"))
    );
    assert!(db.open_approvals(10).await.unwrap().is_empty(), "closed");
    // An approver who comes late is told so; nothing runs.
    let approval = db.approval_for_job(&job_id).await.unwrap().unwrap();
    let late = approvals
        .decide_as(&approval.id, Decision::Approve, "lead@example.com", "link")
        .await
        .unwrap();
    assert_eq!(late, DecideOutcome::Refused(Refusal::RequestExpired));
    assert_eq!(
        db.job(&job_id).await.unwrap().unwrap().state,
        JobState::Expired
    );
    assert!(
        db.receive(10, Duration::from_secs(1))
            .await
            .unwrap()
            .is_empty(),
        "nothing queued"
    );
}

#[tokio::test]
async fn a_decision_whose_job_did_not_move_is_applied_by_the_sweep() {
    // A crash between recording the decision and moving the job.
    let dir = Scratch::new("recovery");
    let db = SqliteDb::open(dir.path("t.db")).unwrap();
    let policy = Policy::parse("approvers = [\"lead@example.com\"]").unwrap();
    let (job_id, _) = admit_transition(&db, &SystemClock, &policy, "CHG-10").await;
    let approval = db.approval_for_job(&job_id).await.unwrap().unwrap();
    let decided = Decided {
        decision: Decision::Approve,
        by: "lead@example.com".into(),
        at: SystemClock.now(),
    };
    assert!(db.decide(&approval.id, &decided).await.unwrap());
    assert_eq!(
        db.job(&job_id).await.unwrap().unwrap().state,
        JobState::PendingApproval
    );
    let keys = [Secret::new("k")];
    let approvals = Approvals {
        store: &db,
        queue: &db,
        clock: &SystemClock,
        links: Links {
            keys: &keys,
            base_url: "http://x",
        },
    };
    approvals.sweep(&NoNotifier).await.unwrap();
    assert_eq!(
        db.job(&job_id).await.unwrap().unwrap().state,
        JobState::Queued
    );
    let queued = db.receive(10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].job_id, job_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storm_of_creates_from_one_source_waits_past_the_limit_and_redeliveries_do_not_count() {
    let r = rig_with(
        "storm",
        0,
        &format!("approvers = [\"{LEAD}\"]\nmass_create = {{ max = 3, window_minutes = 60 }}\n"),
    )
    .await;
    let create = |i: usize| {
        json!({"sourceSystem": "cmdb", "externalId": format!("ci-{i}"), "desiredOperation": "create",
               "projectKey": "ASSET", "issueType": "Task", "summary": format!("Server {i}")})
    };
    let mut states = Vec::new();
    let mut jobs = Vec::new();
    for i in 0..5 {
        // Each delivered twice: the redelivery must not use up the allowance.
        let first = r.send(create(i)).await;
        let again = r.send(create(i)).await;
        assert_eq!(again["duplicate"], true);
        states.push(first["state"].as_str().unwrap().to_string());
        jobs.push(first["jobId"].as_str().unwrap().to_string());
    }
    assert_eq!(
        states,
        [
            "QUEUED",
            "QUEUED",
            "QUEUED",
            "PENDING_APPROVAL",
            "PENDING_APPROVAL"
        ]
    );
    // Another source has its own allowance.
    let other = r
        .send(json!({"sourceSystem": "alertmanager", "externalId": "a-1", "desiredOperation": "create",
                     "projectKey": "OPS", "issueType": "Incident", "summary": "Disk full"}))
        .await;
    assert_eq!(other["state"], "QUEUED");
    let notice = r.notice(&jobs[3]).await;
    assert_eq!(
        notice["rule"],
        "built-in: more than 3 creates from cmdb within 60 min"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn markup_in_an_event_is_shown_as_text_on_the_approval_page() {
    let r = rig("escaping", 0).await;
    let created = r
        .send(json!({"sourceSystem": "itsm", "externalId": "xss", "desiredOperation": "create",
                     "projectKey": "OPS", "issueType": "Incident", "summary": "Outage <b>bold</b>"}))
        .await;
    r.api
        .wait_terminal(created["jobId"].as_str().unwrap(), Duration::from_secs(20))
        .await
        .unwrap();
    let gated = r
        .send(
            json!({"sourceSystem": "itsm", "externalId": "xss", "desiredOperation": "transition",
                     "transition": "<script>alert(document.cookie)</script>",
                     "comment": "<img src=x onerror=alert(1)> & \"quoted\""}),
        )
        .await;
    let job = gated["jobId"].as_str().unwrap();
    let notice = r.notice(job).await;
    let page = r.get(&Rig::link(&notice, LEAD, "approve")).await;
    assert_eq!(page.status, 200);
    assert!(!page.html.contains("<script"), "{}", page.html);
    assert!(!page.html.contains("<img"), "{}", page.html);
    assert!(
        page.html
            .contains("&lt;script&gt;alert(document.cookie)&lt;/script&gt;"),
        "{}",
        page.html
    );
    assert!(
        page.html.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{}",
        page.html
    );
}

/// A notifier that keeps what it was asked to send.
#[derive(Default)]
struct Recorded(std::sync::Mutex<Vec<tollgate::domain::notice::Notice>>);

impl tollgate::ports::Notifier for Recorded {
    async fn notify(
        &self,
        notice: &tollgate::domain::notice::Notice,
    ) -> Result<(), tollgate::ports::NotifyError> {
        self.0.lock().unwrap().push(notice.clone());
        Ok(())
    }
}
