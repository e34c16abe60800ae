//! Bulk sync through the real pipeline (`serve`'s stack in process, jira-sim
//! over HTTP): batches, Jira's bulk create with partial success, coalescing
//! of pending work on one issue, pause and resume.

use jira_sim::limits::Limits;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tollgate::ports::JobStore;
use tollgate_e2e::InProcess;

const WAIT: Duration = Duration::from_secs(60);

type Rig = InProcess;

async fn rig(name: &str, workers: usize, latency: Duration) -> Rig {
    limited_rig(name, workers, latency, Limits::default()).await
}

async fn limited_rig(name: &str, workers: usize, latency: Duration, limits: Limits) -> Rig {
    InProcess::start(name, workers, latency, limits).await
}

/// What these tests do with a stack besides sending events.
trait Batches {
    async fn post_batch(&self, batch: &Value) -> Value;
    async fn batch(&self, id: &str, action: Option<&str>) -> (u16, Value);
    async fn wait_batch_done(&self, id: &str) -> Value;
}

impl Batches for Rig {
    async fn post_batch(&self, batch: &Value) -> Value {
        let sent = self
            .api
            .signed(
                Method::POST,
                "/v1/batches",
                &serde_json::to_vec(batch).unwrap(),
                &self.secret,
            )
            .await
            .unwrap();
        assert_eq!(sent.status, 202, "{}", sent.body);
        sent.body
    }

    async fn batch(&self, id: &str, action: Option<&str>) -> (u16, Value) {
        let (method, path) = match action {
            None => (Method::GET, format!("/v1/batches/{id}")),
            Some(a) => (Method::POST, format!("/v1/batches/{id}/{a}")),
        };
        let sent = self
            .api
            .signed(method, &path, b"", &self.secret)
            .await
            .unwrap();
        (sent.status, sent.body)
    }

    async fn wait_batch_done(&self, id: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let (_, b) = self.batch(id, None).await;
            if b["remaining"] == 0 && b["finished"].as_u64() > Some(0) {
                return b;
            }
            assert!(Instant::now() < deadline, "batch did not finish: {b}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn create(id: &str, project: &str) -> Value {
    json!({"externalId": id, "desiredOperation": "create", "projectKey": project,
           "issueType": "Task", "summary": format!("Server {id}")})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bulk_create_with_refused_elements_creates_the_others_once_and_fails_only_the_refused() {
    let r = rig("bulk-partial", 1, Duration::ZERO).await;
    let mut events: Vec<Value> = (0..40)
        .map(|i| create(&format!("ok-{i}"), "ASSET"))
        .collect();
    // Projects Jira does not have: valid to tollgate, refused by Jira.
    for i in [3, 17, 31] {
        events[i] = create(&format!("bad-{i}"), "NOPE");
    }
    // Held while it is being admitted, so the creates meet in bulk calls.
    let paused = r
        .post_batch(&json!({"batchId": "partial", "sourceSystem": "cmdb", "events": events[..1]}))
        .await;
    assert_eq!(paused["accepted"], 1);
    assert_eq!(r.batch("partial", Some("pause")).await.0, 200);
    let sent = r
        .post_batch(&json!({"batchId": "partial", "sourceSystem": "cmdb", "events": events}))
        .await;
    assert_eq!(sent["accepted"], 39, "{sent}");
    assert_eq!(sent["duplicates"], 1, "the first item came before: {sent}");
    let (_, resumed) = r.batch("partial", Some("resume")).await;
    assert_eq!(resumed["paused"], false);
    let done = r.wait_batch_done("partial").await;
    assert_eq!(done["counts"]["SUCCEEDED"], 37, "{done}");
    assert_eq!(done["counts"]["FAILED"], 3, "{done}");

    let report = r.sim.report();
    assert_eq!(report["totals"]["issues"], 37);
    assert_eq!(report["totals"]["duplicateIssues"], 0);
    let bulk_calls = report["requestsByEndpoint"]["POST /rest/api/3/issue/bulk"]
        .as_u64()
        .unwrap_or(0);
    let single = report["requestsByEndpoint"]["POST /rest/api/3/issue"]
        .as_u64()
        .unwrap_or(0);
    assert!(bulk_calls >= 1, "{report}");
    assert!(
        bulk_calls + single <= 4,
        "40 creates in at most a few calls: {bulk_calls} bulk + {single} single"
    );
    // Each refused element failed its own job with Jira's reason.
    let jobs = r.running.db.list(None, 100).await.unwrap();
    let failed: Vec<_> = jobs
        .iter()
        .filter(|j| j.state.as_str() == "FAILED")
        .collect();
    assert_eq!(failed.len(), 3);
    for j in failed {
        assert!(j.external_id.as_str().starts_with("bad-"), "{j:?}");
        assert!(
            j.last_error.as_deref().unwrap_or("").contains("project"),
            "{j:?}"
        );
    }
    assert!(
        done["pointsSpent"].as_f64().unwrap() <= 4.0,
        "a bulk call's point is shared: {done}"
    );
    r.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pending_updates_coalesce_the_last_value_wins_and_comments_are_all_kept_in_order() {
    // One worker, and a slow Jira: while an unrelated create holds the
    // worker, the entity's create, updates and comments all queue up.
    let r = rig("coalesce", 1, Duration::from_millis(1500)).await;
    let blocker = r
        .send(
            &json!({"sourceSystem": "cmdb", "externalId": "blocker", "desiredOperation": "create",
                      "projectKey": "OPS", "issueType": "Task", "summary": "occupies the worker"}),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ids = vec![
        r.send(
            &json!({"sourceSystem": "cmdb", "externalId": "ci-7", "desiredOperation": "create",
                        "projectKey": "ASSET", "issueType": "Task", "summary": "web-7",
                        "fields": {"customfield_10050": "rack 1", "customfield_10051": "keep me"}}),
        )
        .await,
    ];
    let updates = [
        json!({"summary": "web-7 (first rename)", "fields": {"customfield_10050": "rack 2"}, "labels": ["moved"]}),
        json!({"comment": "first note"}),
        json!({"summary": "web-7 (final name)", "labels": ["audited"]}),
        json!({"comment": "second note"}),
        json!({"fields": {"customfield_10050": "rack 3"}}),
    ];
    for (n, u) in updates.iter().enumerate() {
        let mut e =
            json!({"sourceSystem": "cmdb", "externalId": "ci-7", "desiredOperation": "update"});
        if u.get("comment").is_some() && u.as_object().unwrap().len() == 1 {
            e["desiredOperation"] = json!("comment");
        }
        for (k, v) in u.as_object().unwrap() {
            e[k] = v.clone();
        }
        e["fields"]
            .as_object_mut()
            .map(|f| f.insert("customfield_10099".into(), json!(n)));
        ids.push(r.send(&e).await);
    }
    r.api.wait_terminal(&blocker, WAIT).await.unwrap();
    for id in &ids {
        let job = r.api.wait_terminal(id, WAIT).await.unwrap();
        assert_eq!(job["state"], "SUCCEEDED", "{job}");
    }
    let report = r.sim.report();
    let issue = report["issues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["fields"]["customfield_10051"] == "keep me")
        .cloned()
        .unwrap();
    assert_eq!(issue["summary"], "web-7 (final name)", "{issue}");
    assert_eq!(issue["fields"]["customfield_10050"], "rack 3", "{issue}");
    assert_eq!(issue["fields"]["customfield_10099"], 4, "{issue}");
    let labels = issue["labels"].as_array().unwrap();
    assert!(labels.contains(&json!("moved")) && labels.contains(&json!("audited")));
    assert_eq!(issue["comments"], json!(["first note", "second note"]));
    assert_eq!(
        issue["edits"], 0,
        "the updates were folded into the create: {issue}"
    );
    assert_eq!(report["totals"]["issues"], 2);
    // Every merged job names the one that carried its changes.
    let mut carriers = Vec::new();
    for id in &ids {
        carriers.push(r.api.wait_own_terminal(id, WAIT).await.unwrap());
    }
    let merged = carriers
        .iter()
        .filter(|j| j["state"] == "SUPERSEDED" && j["mergedInto"].is_string())
        .count();
    assert_eq!(merged, updates.len(), "{carriers:?}");
    r.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_batch_holds_its_place_and_resume_finishes_it() {
    let r = rig("pause", 4, Duration::ZERO).await;
    let first = r
        .post_batch(&json!({"batchId": "night-1", "sourceSystem": "cmdb", "events": [create("p-0", "ASSET")]}))
        .await;
    assert_eq!(first["accepted"], 1);
    let (status, paused) = r.batch("night-1", Some("pause")).await;
    assert_eq!((status, &paused["paused"]), (200, &json!(true)), "{paused}");
    let events: Vec<Value> = (1..30)
        .map(|i| create(&format!("p-{i}"), "ASSET"))
        .chain([json!({"externalId": "p-bad", "desiredOperation": "create"})])
        .collect();
    let sent = r
        .post_batch(&json!({"batchId": "night-1", "sourceSystem": "cmdb", "events": events}))
        .await;
    assert_eq!(sent["paused"], true, "a re-post keeps the pause");
    assert_eq!(sent["rejected"][0]["index"], 29, "{sent}");
    assert_eq!(
        sent["rejected"][0]["errors"][0]["field"],
        "events[29].projectKey"
    );
    let issues_before = r.sim.report()["totals"]["issues"].as_u64().unwrap();
    assert!(
        issues_before <= 1,
        "only work admitted before the pause may run"
    );
    // Held: a second later nothing more reached Jira.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, held) = r.batch("night-1", Some("pause")).await;
    assert_eq!(r.sim.report()["totals"]["issues"], issues_before, "{held}");
    assert!(held["counts"]["QUEUED"].as_u64().unwrap() >= 29, "{held}");
    assert_eq!(held["etaSeconds"], Value::Null);

    let (_, resumed) = r.batch("night-1", Some("resume")).await;
    assert_eq!(resumed["paused"], false);
    let done = r.wait_batch_done("night-1").await;
    assert_eq!(done["counts"]["SUCCEEDED"], 30, "{done}");
    assert_eq!(done["received"], 31);
    assert_eq!(done["rejected"].as_array().unwrap().len(), 1);
    let report = r.sim.report();
    assert_eq!(report["totals"]["issues"], 30);
    assert_eq!(report["totals"]["duplicateIssues"], 0);

    // Unknown batches, unsigned requests and unknown actions are refused.
    assert_eq!(r.batch("no-such", None).await.0, 404);
    let unsigned = reqwest::get(format!("{}/v1/batches/night-1", r.api.base))
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    assert_eq!(r.batch("night-1", Some("explode")).await.0, 404);
    r.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hotspots_show_requests_429s_by_reason_and_the_issue_throttled_most() {
    let limits = Limits {
        per_issue: true,
        short_writes: 3,
        short_seconds: 2.0,
        long_writes: 1000,
        long_seconds: 30.0,
        ..Limits::default()
    };
    let r = limited_rig("hotspots", 2, Duration::ZERO, limits).await;
    let created = r
        .send(
            &json!({"sourceSystem": "mon", "externalId": "hot", "desiredOperation": "create",
                      "projectKey": "OPS", "issueType": "Incident", "summary": "hot issue"}),
        )
        .await;
    let key = r.api.wait_terminal(&created, WAIT).await.unwrap()["issueKey"]
        .as_str()
        .unwrap()
        .to_string();
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(
            r.send(
                &json!({"sourceSystem": "mon", "externalId": format!("note-{i}"), "issueKey": key,
                           "desiredOperation": "comment", "comment": format!("note {i}")}),
            )
            .await,
        );
    }
    for id in &ids {
        assert_eq!(
            r.api.wait_terminal(id, WAIT).await.unwrap()["state"],
            "SUCCEEDED"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let stats = loop {
        let s = r
            .api
            .signed(Method::GET, "/v1/stats?hours=2", b"", &r.secret)
            .await
            .unwrap();
        assert_eq!(s.status, 200, "{}", s.body);
        // Workers flush their counts every couple of seconds.
        let comment_points = s.body["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["endpoint"] == "POST /rest/api/3/issue/{key}/comment")
            .filter_map(|e| e["points"].as_u64())
            .sum::<u64>();
        if comment_points >= 8 {
            break s.body;
        }
        assert!(
            Instant::now() < deadline,
            "figures never arrived: {}",
            s.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        stats["throttledByReason"]["jira-per-issue-on-write"].as_u64() >= Some(1),
        "{stats}"
    );
    assert_eq!(
        stats["topThrottledIssues"][0]["issue"],
        key.as_str(),
        "{stats}"
    );
    let comments = stats["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["endpoint"] == "POST /rest/api/3/issue/{key}/comment")
        .cloned()
        .unwrap();
    assert_eq!(comments["operation"], "add comment");
    assert_eq!(
        comments["points"], 8,
        "one point per comment posted: {comments}"
    );
    // The sim saw what tollgate counted.
    let report = r.sim.report();
    assert_eq!(
        report["throttledByReason"]["jira-per-issue-on-write"],
        stats["throttledByReason"]["jira-per-issue-on-write"]
    );
    // Unsigned and out-of-range requests are refused.
    let unsigned = reqwest::get(format!("{}/v1/stats", r.api.base))
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    let bad = r
        .api
        .signed(Method::GET, "/v1/stats?hours=0", b"", &r.secret)
        .await
        .unwrap();
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["errors"][0]["field"], "hours");
    r.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_over_the_threshold_waits_for_approval_chunk_by_chunk() {
    use tollgate::app::approvals::{Approvals, Links};
    use tollgate::domain::approval::Decision;
    use tollgate::domain::policy::Policy;
    use tollgate::ports::{ApprovalStore, SystemClock};
    let policy = Policy::parse(
        "approvers = [\"lead@example.com\"]\nbatch_approval = { over = 10, chunk = 5 }",
    )
    .unwrap();
    let r = InProcess::with_policy("chunks", 2, Duration::ZERO, Limits::default(), policy).await;
    let small: Vec<Value> = (0..10)
        .map(|i| create(&format!("s-{i}"), "ASSET"))
        .collect();
    r.post_batch(&json!({"batchId": "small", "sourceSystem": "cmdb", "events": small}))
        .await;
    let small_done = r.wait_batch_done("small").await;
    assert_eq!(
        small_done["counts"]["SUCCEEDED"], 10,
        "at the threshold nothing waits"
    );

    let events: Vec<Value> = (0..12)
        .map(|i| create(&format!("c-{i}"), "ASSET"))
        .collect();
    r.post_batch(&json!({"batchId": "large", "sourceSystem": "cmdb", "events": events}))
        .await;
    let (_, held) = r.batch("large", None).await;
    assert_eq!(held["counts"]["PENDING_APPROVAL"], 12, "{held}");
    let mut open = r.running.db.open_approvals(10).await.unwrap();
    open.sort_by(|a, b| a.job_id.cmp(&b.job_id));
    assert_eq!(open.len(), 3, "chunks of 5, 5 and 2");
    assert!(
        open[0].intent[0].contains("chunk 1 of 3: items 0–4, 5 changes"),
        "{:?}",
        open[0].intent
    );
    assert_eq!(open[2].jobs().count(), 2);
    let approvals = Approvals {
        store: &r.running.db,
        queue: &r.running.db,
        clock: &SystemClock,
        links: Links {
            keys: &[],
            base_url: "http://unused",
        },
    };
    approvals
        .decide_as(&open[0].id, Decision::Approve, "lead@example.com", "test")
        .await
        .unwrap();
    approvals
        .decide_as(&open[1].id, Decision::Deny, "lead@example.com", "test")
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let progress = loop {
        let (_, b) = r.batch("large", None).await;
        if b["counts"]["SUCCEEDED"] == 5 {
            break b;
        }
        assert!(Instant::now() < deadline, "approved chunk did not run: {b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(progress["counts"]["DENIED"], 5, "{progress}");
    assert_eq!(progress["counts"]["PENDING_APPROVAL"], 2, "{progress}");
    let report = r.sim.report();
    assert_eq!(
        report["totals"]["issues"], 15,
        "10 small + the approved chunk"
    );
    r.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_past_the_mass_creation_guard_waits_on_one_request_per_chunk_and_an_operator_approves_it_whole()
 {
    use tollgate::domain::policy::Policy;
    use tollgate::ports::ApprovalStore;
    let policy = Policy::parse(
        "approvers = [\"lead@example.com\"]\nmass_create = { max = 5, window_minutes = 10 }",
    )
    .unwrap();
    let r =
        InProcess::with_policy("mass-batch", 2, Duration::ZERO, Limits::default(), policy).await;
    let events: Vec<Value> = (0..60)
        .map(|i| create(&format!("m-{i}"), "ASSET"))
        .collect();
    let answer = r
        .post_batch(&json!({"batchId": "nightly", "sourceSystem": "cmdb", "events": events}))
        .await;
    assert_eq!(answer["waitingForApproval"], 55, "{answer}");
    let opened = answer["approvalRequestsOpened"].as_u64().unwrap();
    let open = r.running.db.open_approvals(100).await.unwrap();
    assert_eq!(open.len() as u64, opened, "{answer}");
    assert!(
        (1..=2).contains(&open.len()),
        "one request per chunk, not one per item: {}",
        open.len()
    );
    assert_eq!(
        open.iter().map(|a| a.jobs().count()).sum::<usize>(),
        55,
        "the requests cover every held item"
    );
    let (_, held) = r.batch("nightly", None).await;
    assert_eq!(held["counts"]["PENDING_APPROVAL"], 55, "{held}");

    // The operator approves the batch at once from the CLI.
    let (ok, out) = r.cli(&["approve", "--batch", "nightly", "--as", "ops-lead"]);
    assert!(ok, "{out}");
    let done = r.wait_batch_done("nightly").await;
    assert_eq!(done["counts"]["SUCCEEDED"], 60, "{done}");
    assert_eq!(r.sim.report()["totals"]["issues"], 60);
    assert_eq!(r.sim.report()["totals"]["duplicateIssues"], 0);
    // Watching a finished batch shows where it ended and returns.
    let (ok, watched) = r.cli(&["batches", "watch", "nightly"]);
    assert!(
        ok && watched.contains("nightly") && watched.contains("done"),
        "{watched}"
    );
    let (ok, listed) = r.cli(&["batches", "list"]);
    assert!(ok && listed.starts_with("BATCH"), "{listed}");
    r.running.shutdown().await;
}
