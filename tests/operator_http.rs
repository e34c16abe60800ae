//! The operator's HTTP surface over a real socket: routes behind the
//! operator token (retry, cancel, approval requests, batches, rejections),
//! the probes, and `GET /metrics` read by a Prometheus text parser whose
//! figures agree with `tollgate stats` and `tollgate jobs list` for the
//! same run.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use tollgate::domain::policy::Policy;
use tollgate_e2e::InProcess;

const TOKEN: &str = "test-operator-token";

async fn call(
    s: &InProcess,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("http://{}{path}", s.running.addr);
    let mut req = match method {
        "GET" => s.api.http.get(url),
        _ => s.api.http.post(url),
    };
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn policy() -> Policy {
    Policy::parse(
        r#"approvers = ["lead@example.com"]
           [[rules]]
           name = "transitions wait"
           operations = ["transition"]
           decision = "require""#,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operator_routes_need_the_token_and_retry_and_cancel_work() {
    let s = InProcess::with_policy(
        "operator-http",
        2,
        Duration::ZERO,
        Default::default(),
        policy(),
    )
    .await;
    for token in [None, Some("wrong")] {
        let (status, body) = call(&s, "GET", "/v1/approval-requests", token, None).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"], "unauthorized");
    }

    // Work waiting for a person: its approval is found from the job.
    let created = s
        .send(
            &json!({"sourceSystem": "itsm", "externalId": "chg-1", "desiredOperation": "create",
                      "projectKey": "OPS", "issueType": "Task", "summary": "Change 1"}),
        )
        .await;
    s.api
        .wait_terminal(&created, Duration::from_secs(20))
        .await
        .unwrap();
    let waiting = s
        .send(&json!({"sourceSystem": "itsm", "externalId": "chg-1",
                      "desiredOperation": "transition", "transition": "Done"}))
        .await;
    let job = s.api.job(&waiting).await.unwrap();
    assert_eq!(job["state"], "PENDING_APPROVAL");
    let approval = job["approvalId"].as_str().expect("approvalId").to_string();
    let (status, list) = call(&s, "GET", "/v1/approval-requests", Some(TOKEN), None).await;
    assert_eq!(status, 200);
    assert_eq!(list["approvals"][0]["approvalId"], approval.as_str());
    let (_, shown) = call(
        &s,
        "GET",
        &format!("/v1/approval-requests/{approval}"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(shown["jobs"][0]["state"], "PENDING_APPROVAL");
    assert!(
        shown["links"][0]["approveUrl"]
            .as_str()
            .is_some_and(|u| u.contains("/v1/approvals/")),
        "{shown}"
    );

    // Resent from the CLI with a notifier configured (the webhook here):
    // the approvers get the request and its links again.
    let (hook, inbox) = tollgate_e2e::inbox(0).await;
    let (db, approval_id) = (s.db_path(), approval.clone());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(tollgate_e2e::bin("tollgate"))
            .args(["approvals", "resend", &approval_id, "--db"])
            .arg(db)
            .env("TOLLGATE_NOTIFY_WEBHOOK_URL", hook)
            .env("TOLLGATE_APPROVAL_KEY", "resend-key")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = inbox.received.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["approvalId"], approval.as_str());
    assert!(sent[0]["approvers"][0]["approveUrl"].as_str().is_some());

    // Cancelled: names who and why, closes the request.
    let (status, body) = call(
        &s,
        "POST",
        &format!("/v1/jobs/{waiting}/cancel"),
        Some(TOKEN),
        Some(json!({"as": "ops"})),
    )
    .await;
    assert_eq!(status, 400, "a cancel needs a reason: {body}");
    assert!(body["message"].as_str().unwrap().starts_with("reason"));
    let (status, body) = call(
        &s,
        "POST",
        &format!("/v1/jobs/{waiting}/cancel"),
        Some(TOKEN),
        Some(json!({"as": "ops", "reason": "change withdrawn"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "CANCELLED");
    assert_eq!(body["closedApprovalId"], approval.as_str());
    let (_, list) = call(&s, "GET", "/v1/approval-requests", Some(TOKEN), None).await;
    assert_eq!(list["approvals"], json!([]));
    let job = s.api.job(&waiting).await.unwrap();
    assert_eq!(job["state"], "CANCELLED");
    assert_eq!(job["lastError"], "cancelled by ops: change withdrawn");

    // A FAILED job runs again.
    let failing = s
        .send(
            &json!({"sourceSystem": "itsm", "externalId": "bad-1", "desiredOperation": "create",
                      "projectKey": "NOPE", "issueType": "Task", "summary": "no such project"}),
        )
        .await;
    let failed = s
        .api
        .wait_terminal(&failing, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(failed["state"], "FAILED", "{failed}");
    let (status, body) = call(
        &s,
        "POST",
        &format!("/v1/jobs/{failing}/retry"),
        Some(TOKEN),
        Some(json!({"as": "ops"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "QUEUED");
    let again = s
        .api
        .wait_terminal(&failing, Duration::from_secs(20))
        .await
        .unwrap();
    let trail = again["audit"].as_array().unwrap();
    assert!(trail.iter().any(|e| e["actor"] == "ops" && e["outcome"].as_str().unwrap().contains("(was FAILED)")), "{again}");
    let (status, body) = call(
        &s,
        "POST",
        &format!("/v1/jobs/{created}/retry"),
        Some(TOKEN),
        Some(json!({"as": "ops"})),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("not_retryable"))
    );

    let (status, batches) = call(&s, "GET", "/v1/batches", Some(TOKEN), None).await;
    assert_eq!((status, batches), (200, json!({"batches": []})));
    let (status, _) = call(&s, "GET", "/v1/rejections", Some(TOKEN), None).await;
    assert_eq!(status, 200);
    for probe in ["/healthz", "/readyz"] {
        let (status, body) = call(&s, "GET", probe, None, None).await;
        assert_eq!(status, 200, "{probe}: {body}");
    }
}

/// Every sample of one metric, by its label `label` (or "" when unlabelled).
fn samples(scrape: &prometheus_parse::Scrape, metric: &str, label: &str) -> BTreeMap<String, f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .map(|s| {
            let v = match s.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            };
            (s.labels.get(label).unwrap_or_default().to_string(), v)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_agree_with_tollgate_stats_for_the_same_run() {
    // A site stricter than documented, so some calls are throttled.
    let limits = jira_sim::limits::Limits::atlassian_times(0.05, 1.0);
    let s = InProcess::with_policy("metrics", 4, Duration::ZERO, limits, Policy::default()).await;
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(
            s.send(&json!({"sourceSystem": "mon", "externalId": format!("m{i}"), "desiredOperation": "create",
                           "projectKey": "OPS", "issueType": "Task", "summary": format!("alert {i}")}))
                .await,
        );
    }
    for id in &ids {
        s.api
            .wait_terminal(id, Duration::from_secs(60))
            .await
            .unwrap();
    }
    // The figures are flushed to the store every few seconds: read both
    // until they agree (they read the same rows).
    let mut last = String::new();
    for _ in 0..60 {
        let text = s
            .api
            .http
            .get(format!("http://{}/metrics", s.running.addr))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let scrape =
            prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        let (ok, stats) = s.cli(&["stats", "--output", "json"]);
        assert!(ok, "{stats}");
        let stats: Value = serde_json::from_str(&stats).unwrap();
        let (ok, jobs) = s.cli(&["jobs", "list", "--output", "json", "--limit", "500"]);
        assert!(ok, "{jobs}");
        let jobs: Value = serde_json::from_str(&jobs).unwrap();

        let requests = samples(&scrape, "tollgate_jira_requests_24h", "endpoint");
        let throttled = samples(&scrape, "tollgate_jira_throttled_24h", "endpoint");
        let points = samples(&scrape, "tollgate_jira_points_24h", "endpoint");
        let reasons = samples(&scrape, "tollgate_jira_throttled_by_reason_24h", "reason");
        let by_state = samples(&scrape, "tollgate_jobs", "state");
        let mut stat_requests = BTreeMap::new();
        let mut stat_throttled = BTreeMap::new();
        let mut stat_points = BTreeMap::new();
        for e in stats["endpoints"].as_array().unwrap() {
            let name = e["endpoint"].as_str().unwrap().to_string();
            stat_requests.insert(name.clone(), e["requests"].as_f64().unwrap());
            stat_throttled.insert(name.clone(), e["throttled"].as_f64().unwrap());
            stat_points.insert(name, e["points"].as_f64().unwrap());
        }
        let stat_reasons: BTreeMap<String, f64> = stats["throttledByReason"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
            .collect();
        let mut listed: BTreeMap<String, f64> = BTreeMap::new();
        for j in jobs["jobs"].as_array().unwrap() {
            *listed
                .entry(j["state"].as_str().unwrap().to_string())
                .or_default() += 1.0;
        }
        let agree = stats["requests"].as_f64().unwrap() > 0.0
            && requests == stat_requests
            && throttled == stat_throttled
            && points == stat_points
            && reasons == stat_reasons
            && by_state == listed
            // Messages of finished jobs (bulk members, redeliveries) leave
            // the queue as workers pick them up.
            && samples(&scrape, "tollgate_queue_messages", "").get("") == Some(&0.0);
        if agree {
            assert_eq!(by_state.get("SUCCEEDED"), Some(&30.0), "{text}");
            assert_eq!(
                samples(&scrape, "tollgate_queue_messages", "").get(""),
                Some(&0.0)
            );
            assert!(
                samples(&scrape, "tollgate_governor_pace_per_second", "endpoint")
                    .contains_key("POST /rest/api/3/issue"),
                "{text}"
            );
            return;
        }
        last = format!("metrics:\n{text}\nstats: {stats}\njobs by state: {listed:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("/metrics never agreed with tollgate stats:\n{last}");
}
