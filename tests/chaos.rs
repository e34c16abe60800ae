//! Chaos: many events, each delivered one to three times in shuffled order,
//! into `serve` while jira-sim answers with 429s of every kind (quota,
//! burst, per-issue, gateway), 503s, 500s, slow answers and connections
//! dropped after Jira acted — and `serve` is killed with SIGKILL at random
//! moments and restarted on its database, several times. At the end: every
//! accepted event's job is over, Jira holds no duplicate issue or comment,
//! nothing was lost, and each job's audit trail says how it ended.
//!
//! Size: `CHAOS_EVENTS` distinct events (default 2,000, about two minutes
//! here; each delivered one to three times).

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tollgate_e2e::*;

const SECRET: &str = "whsec_chaos";

/// The distinct events: alerts (create, later comments and a resolve),
/// CMDB upserts with revisions, and updates by issue entity.
fn workload(n: usize) -> Vec<Value> {
    let mut events = Vec::new();
    let mut i = 0;
    while events.len() < n {
        let id = format!("chaos-{i:05}");
        events.push(
            json!({"sourceSystem": "alertmanager", "externalId": id, "desiredOperation": "create",
            "projectKey": "OPS", "issueType": "Incident", "summary": format!("Alert {i}")}),
        );
        events.push(
            json!({"sourceSystem": "alertmanager", "externalId": id, "desiredOperation": "comment",
            "comment": format!("Still firing ({i})")}),
        );
        if i % 3 == 0 {
            events.push(json!({"sourceSystem": "alertmanager", "externalId": id,
                "desiredOperation": "comment", "comment": format!("Escalated ({i})")}));
        }
        if i % 4 == 0 {
            events.push(json!({"sourceSystem": "alertmanager", "externalId": id,
                "desiredOperation": "transition", "transition": "Done"}));
        }
        if i % 5 == 0 {
            let ci = format!("ci-{i:05}");
            events.push(json!({"sourceSystem": "cmdb", "externalId": ci, "desiredOperation": "upsert",
                "projectKey": "ASSET", "issueType": "Task", "summary": format!("Server {i} in service"),
                "priority": "bulk"}));
            events.push(json!({"sourceSystem": "cmdb", "externalId": ci, "desiredOperation": "upsert",
                "projectKey": "ASSET", "issueType": "Task", "summary": format!("Server {i} retired"),
                "priority": "bulk"}));
        }
        i += 1;
    }
    events.truncate(n);
    events
}

fn chaos_sim() -> Proc {
    let mut cmd = std::process::Command::new(bin("jira-sim"));
    cmd.args(["--listen", "127.0.0.1:0", "--latency-ms", "5"])
        .args(["--quota-points", "250", "--hour-seconds", "3"])
        .args([
            "--burst-get-post",
            "60",
            "--burst-put-delete",
            "30",
            "--per-issue",
        ])
        .args([
            "--fault-gateway-429",
            "0.02",
            "--fault-503",
            "0.02",
            "--fault-500",
            "0.01",
        ])
        .args([
            "--fault-slow",
            "0.01",
            "--slow-ms",
            "1500",
            "--fault-drop",
            "0.02",
        ])
        .env("JIRA_SIM_EMAIL", SIM_EMAIL)
        .env("JIRA_SIM_API_TOKEN", SIM_TOKEN);
    Proc::start(cmd, "jira-sim listening on ").unwrap()
}

/// The current server's URL, swapped on each restart.
#[derive(Clone)]
struct Target(Arc<Mutex<String>>);

impl Target {
    fn get(&self) -> String {
        self.0.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_faults_throttles_and_repeated_kills_nothing_is_lost_or_duplicated() {
    let n: usize = std::env::var("CHAOS_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir = Scratch::new("chaos");
    let db = dir.path("tollgate.db");
    let sim = chaos_sim();
    let opts = ServeOptions {
        db: &db,
        jira_url: &sim.url,
        secrets: SECRET,
        workers: 6,
        visibility_secs: 2,
    };
    let server = Arc::new(Mutex::new(start_serve(&opts).unwrap()));
    let target = Target(Arc::new(Mutex::new(server.lock().unwrap().url.clone())));

    let events = workload(n);
    let mut deliveries: Vec<usize> = Vec::new();
    for (i, _) in events.iter().enumerate() {
        deliveries.extend(std::iter::repeat_n(i, 1 + fastrand::usize(0..3)));
    }
    fastrand::shuffle(&mut deliveries);
    let total_deliveries = deliveries.len();
    let started = Instant::now();

    // Senders: retry a delivery until the server answers it, as webhook
    // senders do when the receiver is down.
    let accepted: Arc<Mutex<BTreeMap<usize, BTreeSet<String>>>> = Arc::default();
    let queue = Arc::new(Mutex::new(deliveries));
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        events
            .iter()
            .map(|e| serde_json::to_vec(e).unwrap())
            .collect(),
    );
    let mut senders = Vec::new();
    for _ in 0..8 {
        let (queue, bodies, accepted, target) = (
            queue.clone(),
            bodies.clone(),
            accepted.clone(),
            target.clone(),
        );
        senders.push(tokio::spawn(async move {
            loop {
                let Some(i) = queue.lock().unwrap().pop() else {
                    break;
                };
                loop {
                    let api = Api::new(&target.get());
                    match api.post_signed(&bodies[i], SECRET).await {
                        Ok(sent) if sent.status == 202 => {
                            let id = sent.body["jobId"].as_str().unwrap().to_string();
                            accepted.lock().unwrap().entry(i).or_default().insert(id);
                            break;
                        }
                        Ok(sent) => {
                            assert!(sent.status >= 500, "refused: {} {}", sent.status, sent.body)
                        }
                        Err(_) => {}
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }));
    }

    // The killer: SIGKILL at random moments, restart on the same database.
    let kills = 4;
    for _ in 0..kills {
        tokio::time::sleep(Duration::from_millis(700 + fastrand::u64(0..2000))).await;
        let mut s = server.lock().unwrap();
        s.kill_hard();
        *s = start_serve(&opts).unwrap();
        *target.0.lock().unwrap() = s.url.clone();
    }
    for s in senders {
        s.await.unwrap();
    }
    let sent_after = started.elapsed();

    // Every distinct event was accepted, each under one job id however many
    // times it was delivered.
    let accepted = accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), events.len(), "every event accepted");
    for (i, ids) in &accepted {
        assert_eq!(ids.len(), 1, "event {i} got several jobs: {ids:?}");
    }
    let api = Api::new(&target.get());
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut ends: BTreeMap<String, usize> = BTreeMap::new();
    let mut last: Option<Value> = None;
    for ids in accepted.values() {
        let id = ids.iter().next().unwrap();
        let left = deadline.saturating_duration_since(Instant::now());
        let job = api.wait_terminal(id, left).await.unwrap();
        let state = job["state"].as_str().unwrap().to_string();
        let audit = job["audit"].as_array().unwrap();
        assert!(
            audit.iter().any(|e| e["state"] == state.as_str()),
            "the audit trail of {id} says how it ended: {job}"
        );
        *ends.entry(state).or_default() += 1;
        if last
            .as_ref()
            .is_none_or(|l| l["updatedAt"].as_str() < job["updatedAt"].as_str())
        {
            last = Some(job);
        }
    }
    if std::env::var("CHAOS_DEBUG").is_ok() {
        use tollgate::ports::GovernorStore;
        eprintln!("the last job to end: {}", last.unwrap_or_default());
        let store = tollgate::adapters::sqlite::SqliteDb::open(&db).unwrap();
        let (governor, version) = store.load_governor(&sim.url).await.unwrap();
        eprintln!("governor v{version}: {governor:?}");
    }
    let report = sim_report(&sim.url).await.unwrap();
    let totals = &report["totals"];
    eprintln!(
        "chaos: {} events, {total_deliveries} deliveries, {kills} kills; all sent after {:.1} s, all ended after {:.1} s; ends {ends:?}; jira {totals}",
        events.len(),
        sent_after.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(totals["duplicateIssues"], 0, "{}", report["duplicates"]);
    assert_eq!(
        totals["duplicateComments"], 0,
        "{}",
        report["duplicateComments"]
    );
    for state in ends.keys() {
        assert!(
            matches!(state.as_str(), "SUCCEEDED" | "SUPERSEDED"),
            "no job may fail here: {ends:?}"
        );
    }
    let alerts = events
        .iter()
        .filter(|e| e["desiredOperation"] == "create")
        .count();
    let assets = events
        .iter()
        .filter(|e| e["desiredOperation"] == "upsert")
        .map(|e| e["externalId"].as_str().unwrap())
        .collect::<BTreeSet<_>>()
        .len();
    let comments = events
        .iter()
        .filter(|e| e["desiredOperation"] == "comment")
        .count();
    assert_eq!(
        totals["issues"],
        (alerts + assets) as u64,
        "every create landed once"
    );
    assert_eq!(
        totals["comments"], comments as u64,
        "every comment landed once"
    );
    assert!(
        totals["throttled"].as_u64().unwrap() > 0,
        "the run met Jira's limits"
    );
}
