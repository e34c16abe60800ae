//! One test per kind of Jira limit: the real pipeline (`serve`'s stack, in
//! process) against jira-sim enforcing that limit. Every job must land once;
//! the governor must have reacted the way DESIGN.md says.

use jira_sim::limits::{Faults, Limits};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tollgate::adapters::jira::JiraAuth;
use tollgate::domain::governor::Tunables;
use tollgate::domain::secret::Secret;
use tollgate::ports::GovernorStore;
use tollgate_cli::config::{JiraTarget, ServeConfig};
use tollgate_cli::stack::{self, Running};
use tollgate_e2e::{Api, Scratch};

const SECRET: &str = "whsec_limits";

struct Rig {
    running: Running,
    sim: Arc<jira_sim::Sim>,
    api: Api,
    site: String,
    _dir: Scratch,
}

async fn rig(name: &str, limits: Limits, workers: usize) -> Rig {
    let dir = Scratch::new(name);
    let config = jira_sim::SimConfig {
        limits,
        ..Default::default()
    };
    let (addr, sim, _) = jira_sim::spawn(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let site = format!("http://{addr}");
    let running = stack::start(ServeConfig {
        operator_tokens: Vec::new(),
        listen: "127.0.0.1:0".parse().unwrap(),
        db: dir.path("t.db"),
        jira: JiraTarget::Site {
            url: site.clone(),
            auth: JiraAuth::Basic {
                email: "sim@example.com".into(),
                api_token: Secret::new("sim-token"),
            },
        },
        webhook_secrets: vec![Secret::new(SECRET)],
        workers,
        visibility_timeout: Duration::from_secs(30),
        lease_ttl: Duration::from_secs(30),
        jira_timeout: Duration::from_secs(5),
        sim_latency: Duration::ZERO,
        approvals: Default::default(),
        followups: Default::default(),
        // These measure the governor on single creates; bulk create has
        // its own tests.
        bulk_create: 1,
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
        site,
        _dir: dir,
    }
}

impl Rig {
    async fn send_all(&self, events: &[Value]) -> Vec<String> {
        let mut ids = Vec::new();
        for e in events {
            let sent = self
                .api
                .post_signed(&serde_json::to_vec(e).unwrap(), SECRET)
                .await
                .unwrap();
            assert_eq!(sent.status, 202, "{}", sent.body);
            ids.push(sent.body["jobId"].as_str().unwrap().to_string());
        }
        ids
    }

    /// Waits for every job; all must succeed. Returns their audit trails.
    async fn all_succeed(&self, ids: &[String]) -> Vec<Value> {
        let mut jobs = Vec::new();
        for id in ids {
            let job = self
                .api
                .wait_terminal(id, Duration::from_secs(120))
                .await
                .unwrap();
            assert_eq!(job["state"], "SUCCEEDED", "{job}");
            jobs.push(job);
        }
        jobs
    }

    fn report(&self) -> Value {
        self.sim.report()
    }
}

fn creates(n: usize, priority: &str) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({"sourceSystem": "limits", "externalId": format!("e-{i}"), "desiredOperation": "create",
                   "projectKey": "OPS", "issueType": "Task", "summary": format!("Event {i}"), "priority": priority})
        })
        .collect()
}

fn outcomes(jobs: &[Value]) -> Vec<String> {
    jobs.iter()
        .flat_map(|j| j["audit"].as_array().cloned().unwrap_or_default())
        .map(|e| e["outcome"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_spent_points_quota_holds_work_until_the_reset_and_wastes_no_point() {
    let limits = Limits {
        quota_points: 40,
        window_seconds: 3.0,
        ..Limits::default()
    };
    let r = rig("quota", limits, 4).await;
    let ids = r.send_all(&creates(90, "bulk")).await;
    let jobs = r.all_succeed(&ids).await;
    let report = r.report();
    assert_eq!(report["totals"]["issues"], 90);
    assert_eq!(report["totals"]["duplicateIssues"], 0);
    assert_eq!(
        report["totals"]["pointsSpent"], 90,
        "one point per create, nothing spent on retries"
    );
    // The work needed three windows: it waited for the quota rather than
    // hammering it.
    let outcomes = outcomes(&jobs);
    assert!(
        outcomes
            .iter()
            .any(|o| o.contains("kept for interactive work") || o.contains("quota")),
        "{outcomes:?}"
    );
    let quota_429s = report["throttledByReason"]["jira-quota-global-based"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        quota_429s <= 8,
        "the governor stops before the quota, not after: {quota_429s} quota 429s"
    );
    r.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_throttle_slows_that_endpoint_and_loses_nothing() {
    let limits = Limits {
        burst_get_post: 15.0,
        burst_put_delete: 5.0,
        ..Limits::default()
    };
    let r = rig("burst", limits, 8).await;
    let ids = r.send_all(&creates(120, "bulk")).await;
    r.all_succeed(&ids).await;
    let report = r.report();
    assert_eq!(report["totals"]["issues"], 120);
    assert_eq!(report["totals"]["duplicateIssues"], 0);
    assert!(
        report["throttledByReason"]["jira-burst-based"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "the profile must throttle"
    );
    let (g, _) = r.running.db.load_governor(&r.site).await.unwrap();
    let pace = g.endpoints["POST /rest/api/3/issue"].rate;
    assert!(
        pace < Tunables::default().initial_rate,
        "the create endpoint slowed: {pace}"
    );
    assert!(!g.endpoints["POST /rest/api/3/issue"].slow_start);
    assert_eq!(
        g.paused_until.0, 0,
        "a burst throttle never pauses the site"
    );
    r.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_per_issue_throttle_holds_writes_to_that_issue_only() {
    let limits = Limits {
        per_issue: true,
        short_writes: 3,
        short_seconds: 2.0,
        ..Limits::default()
    };
    let r = rig("per-issue", limits, 6).await;
    let setup = r.send_all(&creates(2, "interactive")).await;
    let created = r.all_succeed(&setup).await;
    let hot = created[0]["issueKey"].as_str().unwrap().to_string();
    let updates: Vec<Value> = (0..12)
        .map(|i| json!({"sourceSystem": "limits", "externalId": format!("u-{i}"), "desiredOperation": "update",
                         "issueKey": hot, "fields": {"customfield_10100": i}}))
        .collect();
    let ids = r.send_all(&updates).await;
    let jobs = r.all_succeed(&ids).await;
    let report = r.report();
    let hot_issue = report["issues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["key"] == hot.as_str())
        .unwrap()
        .clone();
    assert_eq!(hot_issue["edits"], 12);
    let outcomes = outcomes(&jobs);
    assert!(
        outcomes
            .iter()
            .any(|o| o.contains(&format!("writes to {hot} held by Jira"))
                || o.starts_with("throttled")),
        "{outcomes:?}"
    );
    let (g, _) = r.running.db.load_governor(&r.site).await.unwrap();
    assert_eq!(
        g.paused_until.0, 0,
        "a per-issue throttle never pauses the site"
    );
    r.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sustained_unexplained_429s_back_off_the_site_and_every_job_lands_once() {
    let limits = Limits {
        faults: Faults {
            // Every other request: far more than noise.
            gateway_429_every: 2,
            ..Faults::default()
        },
        ..Limits::default()
    };
    let r = rig("gateway", limits, 4).await;
    let ids = r.send_all(&creates(20, "interactive")).await;
    let jobs = r.all_succeed(&ids).await;
    let report = r.report();
    assert_eq!(report["totals"]["issues"], 20);
    assert_eq!(report["totals"]["duplicateIssues"], 0);
    assert!(report["throttledByReason"]["gateway"].as_u64().unwrap_or(0) > 0);
    let outcomes = outcomes(&jobs);
    assert!(
        outcomes.iter().any(|o| o.contains("429 without a reason")),
        "{outcomes:?}"
    );
    assert!(
        jobs.iter().all(|j| j["attempts"] == 0),
        "throttles never use the retry budget"
    );
    r.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bare_429s_among_good_answers_are_noise_and_never_pause_the_site() {
    let limits = Limits {
        faults: Faults {
            // Every 25th request, whatever the load: 4 %.
            gateway_429_every: 25,
            ..Faults::default()
        },
        ..Limits::default()
    };
    let r = rig("noise", limits, 4).await;
    let ids = r.send_all(&creates(100, "bulk")).await;
    let jobs = r.all_succeed(&ids).await;
    let report = r.report();
    assert_eq!(report["totals"]["issues"], 100);
    assert_eq!(report["totals"]["duplicateIssues"], 0);
    assert!(report["throttledByReason"]["gateway"].as_u64().unwrap_or(0) >= 3);
    let outcomes = outcomes(&jobs);
    assert!(
        !outcomes.iter().any(|o| o.contains("site paused")),
        "noise paused the site: {outcomes:?}"
    );
    let (g, _) = r.running.db.load_governor(&r.site).await.unwrap();
    assert_eq!(g.paused_until.0, 0, "noise never pauses the site");
    assert_eq!(g.unexplained, 0);
    r.running.shutdown().await;
}

/// Calls of `endpoint` Jira refused as burst over the run so far.
fn burst_429s(r: &Rig) -> u64 {
    r.report()["throttledByReason"]["jira-burst-based"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_site_five_times_stricter_than_documented_the_pace_converges_with_few_429s() {
    // 20 creates a second where Atlassian documents 100; the governor
    // starts from its prior (80/s) and must learn the real rate.
    let limits = Limits {
        quota_points: 0,
        per_issue: false,
        ..Limits::atlassian_times(0.2, 1.0)
    };
    let r = rig("undocumented", limits, 8).await;
    let ids = r.send_all(&creates(160, "bulk")).await;
    r.all_succeed(&ids).await;
    let report = r.report();
    assert_eq!(report["totals"]["issues"], 160);
    assert_eq!(report["totals"]["duplicateIssues"], 0);
    let refused = burst_429s(&r);
    assert!(refused > 0, "the prior must overshoot this site");
    assert!(refused <= 12, "{refused} burst 429s for 160 creates");
    let (g, _) = r.running.db.load_governor(&r.site).await.unwrap();
    let create = &g.endpoints["POST /rest/api/3/issue"];
    let ceiling = create.ceiling.expect("a learned ceiling");
    assert!(
        (15.0..=26.0).contains(&ceiling),
        "learned {ceiling}/s for a 20/s limit: {create:?}"
    );
    assert!(create.rate <= 26.0, "{create:?}");
    r.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_the_limit_halves_mid_run_the_pace_follows_it_down() {
    let limits = Limits {
        burst_get_post: 30.0,
        burst_put_delete: 15.0,
        ..Limits::default()
    };
    let r = rig("halved", limits.clone(), 8).await;
    let first = r.send_all(&creates(90, "bulk")).await;
    r.all_succeed(&first).await;
    r.sim.set_limits(limits.scaled(0.5));
    let before = burst_429s(&r);
    let second: Vec<Value> = (100..250)
        .map(|i| json!({"sourceSystem": "limits", "externalId": format!("e-{i}"), "desiredOperation": "create",
                         "projectKey": "OPS", "issueType": "Task", "summary": format!("Event {i}"), "priority": "bulk"}))
        .collect();
    let ids = r.send_all(&second).await;
    r.all_succeed(&ids).await;
    let report = r.report();
    assert_eq!(report["totals"]["issues"], 240);
    assert_eq!(report["totals"]["duplicateIssues"], 0);
    let after = burst_429s(&r) - before;
    assert!(after <= 12, "{after} burst 429s after the limit halved");
    let (g, _) = r.running.db.load_governor(&r.site).await.unwrap();
    let create = &g.endpoints["POST /rest/api/3/issue"];
    assert!(
        create.ceiling.is_some_and(|c| c <= 20.0),
        "the ceiling follows the halved limit: {create:?}"
    );
    r.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_answers_and_server_errors_are_retried_without_a_duplicate() {
    let faults = Faults {
        drop: 0.15,
        error_503: 0.05,
        error_500: 0.05,
        ..Faults::default()
    };
    let r = rig(
        "faults",
        Limits {
            faults,
            ..Limits::default()
        },
        4,
    )
    .await;
    let mut events = creates(30, "interactive");
    for e in events.iter_mut().step_by(3) {
        e["comment"] = json!("Opened by tollgate.");
    }
    let ids = r.send_all(&events).await;
    let jobs = r.all_succeed(&ids).await;
    let report = r.report();
    assert_eq!(report["totals"]["issues"], 30, "{}", report["issues"]);
    assert_eq!(
        report["totals"]["duplicateIssues"], 0,
        "{}",
        report["duplicates"]
    );
    assert_eq!(report["totals"]["comments"], 10, "{}", report["issues"]);
    assert_eq!(report["totals"]["duplicateComments"], 0);
    let outcomes = outcomes(&jobs);
    assert!(
        outcomes.iter().any(|o| o.starts_with("transient failure")),
        "faults were injected: {outcomes:?}"
    );
    r.running.shutdown().await;
}
