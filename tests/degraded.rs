//! Degraded mode on `serve`'s stack: when Jira keeps failing, transitions
//! and field edits wait while comments go on; the site recovers after a run
//! of successes; entering and leaving are kept in the site's trail and
//! announced once each.

use jira_sim::limits::{Faults, Limits};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate::adapters::jira::JiraAuth;
use tollgate::domain::secret::Secret;
use tollgate::ports::GovernorStore;
use tollgate_cli::config::{ApprovalSettings, JiraTarget, ServeConfig};
use tollgate_cli::stack::{self, Running};
use tollgate_e2e::{Api, Scratch, inbox};

const SECRET: &str = "whsec_degraded";

async fn send(api: &Api, event: Value) -> String {
    let sent = api
        .post_signed(&serde_json::to_vec(&event).unwrap(), SECRET)
        .await
        .unwrap();
    assert_eq!(sent.status, 202, "{}", sent.body);
    sent.body["jobId"].as_str().unwrap().to_string()
}

async fn state(api: &Api, id: &str) -> Value {
    api.job(id).await.unwrap()
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_site_holds_risky_writes_lets_comments_through_and_recovers() {
    let dir = Scratch::new("degraded");
    let (addr, sim, _) = jira_sim::spawn(Default::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let site = format!("http://{addr}");
    let (hook, notices) = inbox(0).await;
    let running: Running = stack::start(ServeConfig {
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
        workers: 2,
        visibility_timeout: Duration::from_secs(30),
        lease_ttl: Duration::from_secs(30),
        jira_timeout: Duration::from_secs(5),
        sim_latency: Duration::ZERO,
        approvals: ApprovalSettings {
            notify_webhook_url: Some(Secret::new(hook)),
            ..ApprovalSettings::default()
        },
        followups: Default::default(),
        bulk_create: tollgate::ports::MAX_BULK_CREATE,
        intake: Default::default(),
        retry_cap: tollgate::domain::backoff::DEFAULT_RETRY_CAP,
    })
    .await
    .unwrap();
    let api = Api::new(&format!("http://{}", running.addr));
    let sim: Arc<jira_sim::Sim> = sim;

    let created = send(
        &api,
        json!({"sourceSystem": "itsm", "externalId": "INC-1", "desiredOperation": "create",
        "projectKey": "OPS", "issueType": "Incident", "summary": "Payments down"}),
    )
    .await;
    api.wait_terminal(&created, Duration::from_secs(20))
        .await
        .unwrap();

    // Jira starts failing every call: eight failures within a minute.
    sim.set_limits(Limits {
        faults: Faults {
            error_500: 1.0,
            ..Faults::default()
        },
        ..Limits::default()
    });
    for i in 0..8 {
        send(
            &api,
            json!({"sourceSystem": "itsm", "externalId": "INC-1", "desiredOperation": "comment",
            "comment": format!("update {i}")}),
        )
        .await;
    }
    let db = running.db.clone();
    let site_for_wait = site.clone();
    wait_for("the site to degrade", async || {
        db.load_governor(&site_for_wait)
            .await
            .unwrap()
            .0
            .health
            .is_degraded()
    })
    .await;

    // A transition sent now waits (held before any call, so whatever the
    // comments are doing); then Jira answers again, comments go on and
    // restore the site, and the transition runs.
    let transition = send(
        &api,
        json!({"sourceSystem": "itsm", "externalId": "INC-1",
        "desiredOperation": "transition", "transition": "Done"}),
    )
    .await;
    wait_for("the transition to be held", async || {
        state(&api, &transition).await["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["outcome"].as_str().unwrap().contains("site degraded"))
    })
    .await;
    assert_eq!(sim.report()["totals"]["transitions"], 0);
    sim.set_limits(Limits::default());
    wait_for("the site to recover", async || {
        !db.load_governor(&site)
            .await
            .unwrap()
            .0
            .health
            .is_degraded()
    })
    .await;
    let done = api
        .wait_terminal(&transition, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(done["state"], "SUCCEEDED", "{done}");
    assert_eq!(sim.report()["totals"]["transitions"], 1);

    // The trail and the announcements: entered, then left, once each.
    let health = db.load_governor(&site).await.unwrap().0.health;
    let kinds: Vec<bool> = health.changes.iter().map(|c| c.degraded).collect();
    assert_eq!(kinds, [true, false], "{health:?}");
    wait_for("both changes announced", async || {
        notices
            .received
            .lock()
            .unwrap()
            .iter()
            .filter(|n| n["type"] == "site.health")
            .count()
            == 2
    })
    .await;
    let announced: Vec<Value> = notices.received.lock().unwrap().clone();
    let degraded: Vec<&Value> = announced
        .iter()
        .filter(|n| n["type"] == "site.health")
        .collect();
    assert_eq!(degraded[0]["degraded"], true);
    assert_eq!(degraded[1]["degraded"], false);
    running.shutdown().await;
}
