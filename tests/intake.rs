//! Intake from real senders over HTTP (`POST /v1/sources/{name}`): each
//! sender's own payload format and authentication, through `serve`'s stack
//! to jira-sim.

use jira_sim::limits::Limits;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tollgate::domain::secret::Secret;
use tollgate::domain::sender_auth::{Scheme, sign};
use tollgate::domain::source::Sources;
use tollgate::ports::{JobStore, RejectionStore, SystemClock};
use tollgate_cli::config::IntakeSettings;
use tollgate_e2e::{InProcess, now_unix};

const WAIT: Duration = Duration::from_secs(60);

fn intake(document: &str, secrets: &[(&str, &[&str])]) -> IntakeSettings {
    IntakeSettings {
        sources: Sources::parse(document).unwrap(),
        secrets: secrets
            .iter()
            .map(|(name, list)| {
                (
                    name.to_string(),
                    list.iter().map(|s| Secret::new(*s)).collect(),
                )
            })
            .collect::<HashMap<_, _>>(),
    }
}

/// Posts `body` to a source route with one header (or none).
async fn post(
    s: &InProcess,
    name: &str,
    body: &[u8],
    header: Option<(&str, String)>,
) -> (u16, Value) {
    let mut req = s
        .api
        .http
        .post(format!("{}/v1/sources/{name}", s.api.base))
        .header("Content-Type", "application/json")
        .body(body.to_vec());
    if let Some((h, v)) = header {
        req = req.header(h, v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn alert(n: usize, status: &str) -> Value {
    json!({
        "status": status,
        "labels": {"alertname": "HighErrorRate", "instance": format!("web-{n:02}"), "severity": "critical", "job": "web"},
        "annotations": {"summary": format!("5xx above 5% on web-{n:02}")},
        "startsAt": "2026-11-24T03:00:00Z",
        "endsAt": if status == "resolved" { "2026-11-24T03:20:00Z" } else { "0001-01-01T00:00:00Z" },
        "generatorURL": "http://prometheus:9090/graph?g0.expr=rate",
        "fingerprint": format!("{:016x}", 0xa1b2_c3d4_0000_u64 + n as u64)
    })
}

/// Alertmanager's webhook (version 4) for a group.
fn group(alerts: Vec<Value>) -> Vec<u8> {
    let status = if alerts.iter().any(|a| a["status"] == "firing") {
        "firing"
    } else {
        "resolved"
    };
    serde_json::to_vec(&json!({
        "version": "4", "groupKey": "{}:{alertname=\"HighErrorRate\"}", "truncatedAlerts": 0,
        "status": status, "receiver": "tollgate", "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": {"alertname": "HighErrorRate", "severity": "critical"}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093", "alerts": alerts
    }))
    .unwrap()
}

async fn wait_all(s: &InProcess, answers: &[Value]) {
    for a in answers {
        for item in a["accepted"].as_array().unwrap() {
            let job = s
                .api
                .wait_terminal(item["jobId"].as_str().unwrap(), WAIT)
                .await
                .unwrap();
            assert_eq!(job["state"], "SUCCEEDED", "{job}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_alertmanager_group_of_30_then_10_resolved_makes_each_issue_once_and_closes_the_resolved()
 {
    let document = r#"
[[sources]]
name = "alertmanager"
auth = "bearer"
preset = "alertmanager"
params = { project = "OPS" }
"#;
    let s = InProcess::with_sources(
        "intake-am",
        Limits::default(),
        intake(document, &[("alertmanager", &["am-token"])]),
    )
    .await;
    let bearer = || Some(("Authorization", "Bearer am-token".to_string()));
    let firing = group((0..30).map(|n| alert(n, "firing")).collect());
    let (status, first) = post(&s, "alertmanager", &firing, bearer()).await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["accepted"].as_array().unwrap().len(), 30);
    assert_eq!(first["accepted"][7]["item"], "alerts[7]");
    // Alertmanager repeats the notification: every item is a duplicate.
    let (_, again) = post(&s, "alertmanager", &firing, bearer()).await;
    assert!(
        again["accepted"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["duplicate"] == true),
        "{again}"
    );
    wait_all(&s, &[first]).await;

    // Ten resolve; the group still carries the twenty firing ones.
    let later = group(
        (0..30)
            .map(|n| alert(n, if n % 3 == 0 { "resolved" } else { "firing" }))
            .collect(),
    );
    let (status, second) = post(&s, "alertmanager", &later, bearer()).await;
    assert_eq!(status, 202, "{second}");
    let accepted = second["accepted"].as_array().unwrap();
    assert_eq!(accepted.len(), 30);
    assert_eq!(
        accepted.iter().filter(|a| a["duplicate"] == false).count(),
        10,
        "{second}"
    );
    let (_, repeated) = post(&s, "alertmanager", &later, bearer()).await;
    assert!(
        repeated["accepted"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["duplicate"] == true)
    );
    wait_all(&s, &[second]).await;

    let report = s.sim.report();
    assert_eq!(
        report["totals"]["issues"], 30,
        "each alert's issue created once"
    );
    assert_eq!(report["totals"]["duplicateIssues"], 0);
    assert_eq!(report["totals"]["duplicateComments"], 0);
    let issues = report["issues"].as_array().unwrap();
    let done: Vec<&Value> = issues.iter().filter(|i| i["status"] == "Done").collect();
    assert_eq!(done.len(), 10);
    for issue in &done {
        assert_eq!(
            issue["comments"],
            json!(["Resolved at 2026-11-24T03:20:00Z (HighErrorRate)."])
        );
    }
    let web_04 = issues
        .iter()
        .find(|i| i["summary"] == "HighErrorRate on web-04")
        .unwrap();
    assert_eq!(web_04["status"], "To Do");
    assert_eq!(web_04["labels"][0], "alertmanager");
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_scheme_accepts_valid_and_rotated_secrets_and_refuses_the_rest() {
    let document = r#"
[[sources]]
name = "hooks"
auth = "tollgate"
preset = "generic"
[[sources]]
name = "pagerduty"
auth = "pagerduty"
preset = "pagerduty"
params = { project = "INC" }
[[sources]]
name = "github"
auth = "github"
preset = "github"
params = { project = "OPS" }
[[sources]]
name = "grafana"
auth = "basic"
preset = "grafana"
params = { project = "OPS" }
[[sources]]
name = "alerts"
auth = "bearer"
preset = "alertmanager"
params = { project = "OPS" }
"#;
    let secrets: &[(&str, &[&str])] = &[
        ("hooks", &["new-h", "old-h"]),
        ("pagerduty", &["new-p", "old-p"]),
        ("github", &["new-g", "old-g"]),
        ("grafana", &["tollgate:new-pass", "tollgate:old-pass"]),
        ("alerts", &["new-b", "old-b"]),
    ];
    let s =
        InProcess::with_sources("intake-auth", Limits::default(), intake(document, secrets)).await;
    let pd = |kind: &str, id: &str| {
        serde_json::to_vec(&json!({"event": {"id": format!("ev-{id}-{kind}"), "event_type": kind, "resource_type": "incident",
            "occurred_at": "2026-11-24T03:00:00Z", "agent": {"summary": "Ada"},
            "data": {"id": id, "number": 7, "title": "Checkout down", "urgency": "high", "html_url": "https://pd.example/i/1"}}}))
        .unwrap()
    };
    let gh = serde_json::to_vec(&json!({"action": "opened", "issue": {"number": 3, "title": "Crash", "body": "trace",
        "html_url": "https://github.com/acme/app/issues/3"}, "repository": {"full_name": "acme/app"}, "sender": {"login": "octo"}}))
    .unwrap();
    let gf = serde_json::to_vec(
        &json!({"receiver": "tollgate", "status": "firing", "alerts": [{"status": "firing",
        "labels": {"alertname": "Latency"}, "annotations": {}, "startsAt": "2026-11-24T03:00:00Z",
        "fingerprint": "ffee", "dashboardURL": "http://grafana/d/1"}]}),
    )
    .unwrap();
    let generic = serde_json::to_vec(
        &json!({"externalId": "h-1", "desiredOperation": "create", "projectKey": "OPS",
        "issueType": "Task", "summary": "from a hook"}),
    )
    .unwrap();
    let am = group(vec![alert(1, "firing")]);
    let cases: [(&str, Scheme, Vec<u8>, &str, &str); 5] = [
        ("hooks", Scheme::Tollgate, generic, "new-h", "old-h"),
        (
            "pagerduty",
            Scheme::PagerDuty,
            pd("incident.triggered", "P1"),
            "new-p",
            "old-p",
        ),
        ("github", Scheme::GitHub, gh, "new-g", "old-g"),
        (
            "grafana",
            Scheme::Basic,
            gf,
            "tollgate:new-pass",
            "tollgate:old-pass",
        ),
        ("alerts", Scheme::Bearer, am, "new-b", "old-b"),
    ];
    let mut answers = Vec::new();
    for (name, scheme, body, new, old) in cases {
        let header = |secret: &str, body: &[u8]| {
            Some((
                scheme.header(),
                sign(scheme, &Secret::new(secret), body, now_unix()),
            ))
        };
        let (status, ok) = post(&s, name, &body, header(new, &body)).await;
        assert_eq!(status, 202, "{name}: valid: {ok}");
        assert_eq!(ok["accepted"].as_array().unwrap().len(), 1, "{name}: {ok}");
        let (status, rotated) = post(&s, name, &body, header(old, &body)).await;
        assert_eq!(status, 202, "{name}: rotated secret");
        assert_eq!(
            rotated["accepted"][0]["duplicate"], true,
            "{name}: {rotated}"
        );
        let (status, wrong) = post(&s, name, &body, header("not-the-secret", &body)).await;
        assert_eq!(status, 401, "{name}: wrong secret: {wrong}");
        let (status, _) = post(&s, name, &body, None).await;
        assert_eq!(status, 401, "{name}: missing header");
        if matches!(
            scheme,
            Scheme::Tollgate | Scheme::PagerDuty | Scheme::GitHub
        ) {
            let mut tampered = body.clone();
            tampered.extend_from_slice(b" ");
            let (status, _) = post(&s, name, &tampered, header(new, &body)).await;
            assert_eq!(status, 401, "{name}: tampered body");
        }
        // The same answer, whatever was wrong: no oracle.
        assert_eq!(
            wrong["message"],
            "the request is not authenticated for this source"
        );
        answers.push(ok);
    }
    wait_all(&s, &answers).await;
    let report = s.sim.report();
    assert_eq!(report["totals"]["issues"], 5, "{}", report["issues"]);
    let summaries: Vec<&str> = report["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["summary"].as_str().unwrap())
        .collect();
    for expected in [
        "from a hook",
        "[PD #7] Checkout down",
        "Crash",
        "Latency",
        "HighErrorRate on web-01",
    ] {
        assert!(summaries.contains(&expected), "{summaries:?}");
    }
    // PagerDuty resolves the incident it opened.
    let body = pd("incident.resolved", "P1");
    let (status, resolved) = post(
        &s,
        "pagerduty",
        &body,
        Some((
            Scheme::PagerDuty.header(),
            sign(Scheme::PagerDuty, &Secret::new("new-p"), &body, now_unix()),
        )),
    )
    .await;
    assert_eq!(status, 202);
    wait_all(&s, &[resolved]).await;
    let report = s.sim.report();
    let incident = report["issues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["summary"] == "[PD #7] Checkout down")
        .unwrap()
        .clone();
    assert_eq!(incident["status"], "Done", "{incident}");
    assert_eq!(post(&s, "nobody", b"{}", None).await.0, 404);
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payload_that_does_not_map_is_kept_with_the_field_path_and_nothing_is_lost() {
    let document = r#"
[[sources]]
name = "alertmanager"
auth = "bearer"
preset = "alertmanager"
params = { project = "OPS" }
"#;
    let s = InProcess::with_sources(
        "intake-errors",
        Limits::default(),
        intake(document, &[("alertmanager", &["t"])]),
    )
    .await;
    let bearer = || Some(("Authorization", "Bearer t".to_string()));
    let mut broken = alert(2, "firing");
    broken.as_object_mut().unwrap().remove("fingerprint");
    let mut bad_summary = alert(3, "firing");
    bad_summary["labels"]["alertname"] = json!("x".repeat(300));
    let body = group(vec![alert(1, "firing"), broken, bad_summary]);
    let (status, answer) = post(&s, "alertmanager", &body, bearer()).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["accepted"].as_array().unwrap().len(), 1);
    let rejected = answer["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2, "{answer}");
    assert_eq!(rejected[0]["item"], "alerts[1]");
    assert_eq!(
        rejected[0]["errors"][0]["field"], "alerts[1].externalId",
        "{answer}"
    );
    assert_eq!(
        rejected[1]["errors"][0]["field"], "alerts[2].summary",
        "{answer}"
    );
    // Both are in the manual queue, with the same reasons.
    let kept = s.running.db.rejections(10).await.unwrap();
    for r in rejected {
        let id = r["rejectionId"].as_str().unwrap();
        let k = kept.iter().find(|k| k.id.as_str() == id).expect("kept");
        assert_eq!(k.errors[0].field, r["errors"][0]["field"].as_str().unwrap());
    }
    // Not JSON at all: 400, and kept too.
    let (status, unreadable) = post(&s, "alertmanager", b"<html>oops</html>", bearer()).await;
    assert_eq!(status, 400, "{unreadable}");
    assert_eq!(unreadable["errors"][0]["field"], "body");
    assert!(s.running.db.rejections(10).await.unwrap().len() >= 3);
    let deadline = Instant::now() + WAIT;
    while s
        .running
        .db
        .list(Some(tollgate::domain::job::JobState::Succeeded), 10)
        .await
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.running.shutdown().await;
}

#[test]
fn the_example_sources_document_loads_and_maps_its_sample_payload() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("examples/sources.toml")).unwrap();
    let sources = Sources::parse(&text).unwrap();
    assert_eq!(sources.iter().count(), 5);
    let payload: Value = serde_json::from_slice(
        &std::fs::read(root.join("examples/payloads/alertmanager.json")).unwrap(),
    )
    .unwrap();
    let am = sources.get("alertmanager").unwrap();
    let out = am.mapping.apply(&payload, &am.name, &am.params);
    let ops: Vec<&str> = out
        .mapped
        .iter()
        .map(|m| {
            m.event.as_ref().unwrap()["desiredOperation"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(ops, ["upsert", "transition"]);
    let inventory = sources.get("inventory").unwrap();
    let out = inventory.mapping.apply(
        &json!({"changes": [{"kind": "server", "id": "srv-1", "name": "web-1", "rack": "r7"}, {"kind": "switch", "id": "sw-1"}]}),
        &inventory.name,
        &inventory.params,
    );
    assert_eq!(out.unmatched.len(), 1, "the switch matches no rule");
    let e = out.mapped[0].event.as_ref().unwrap();
    assert_eq!(e["summary"], "web-1 (unknown)");
    assert_eq!(e["fields"]["customfield_10050"], "r7");
}

#[tokio::test]
async fn a_payload_no_rule_takes_is_kept_unless_its_sender_says_ignore() {
    let document = r#"
[[sources]]
name = "alertmanager"
auth = "bearer"
preset = "alertmanager"
params = { project = "OPS" }

[[sources]]
name = "inventory"
auth = "bearer"
unmatched = "ignore"
[sources.mapping]
items = "changes"
[[sources.mapping.rules]]
when = "item.kind == 'server'"
event = { externalId = "{{ item.id }}", desiredOperation = "upsert", projectKey = "ASSET", issueType = "Task", summary = "{{ item.name }}" }
"#;
    let s = InProcess::with_sources(
        "intake-unmatched",
        Limits::default(),
        intake(document, &[("alertmanager", &["t"]), ("inventory", &["i"])]),
    )
    .await;
    let am = || Some(("Authorization", "Bearer t".to_string()));
    // An empty object, and a PagerDuty body sent to the Alertmanager
    // sender: nothing maps, and both are kept with the reason.
    let pagerduty = json!({"event": {"event_type": "incident.triggered", "data": {"id": "P1"}}});
    for body in [json!({}), pagerduty] {
        let (status, answer) = post(&s, "alertmanager", body.to_string().as_bytes(), am()).await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["accepted"], json!([]));
        assert_eq!(answer["ignored"], json!([]));
        let rejected = answer["rejected"].as_array().unwrap();
        assert_eq!(rejected.len(), 1, "{answer}");
        assert_eq!(rejected[0]["item"], "body");
        assert_eq!(
            rejected[0]["errors"][0]["message"],
            "no rule of sender alertmanager matched"
        );
        let id = rejected[0]["rejectionId"].as_str().unwrap();
        let kept = s.running.db.rejections(20).await.unwrap();
        let k = kept.iter().find(|k| k.id.as_str() == id).expect("kept");
        assert_eq!(
            k.origin,
            tollgate::domain::rejection::Origin::Sender {
                source: "alertmanager".into(),
                path: "body".into()
            },
            "kept with its sender and the whole payload"
        );
        assert_eq!(k.body, body.to_string());
    }
    // A sender whose entry says "ignore": listed with the reason, not kept.
    let inv = || Some(("Authorization", "Bearer i".to_string()));
    let before = s.running.db.rejections(50).await.unwrap().len();
    let changes = json!({"changes": [
        {"kind": "server", "id": "srv-1", "name": "web-1"},
        {"kind": "switch", "id": "sw-1"}]});
    let (status, answer) = post(&s, "inventory", changes.to_string().as_bytes(), inv()).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["accepted"].as_array().unwrap().len(), 1);
    assert_eq!(
        answer["ignored"],
        json!([{"item": "changes[1]", "reason": "no rule of sender inventory matched"}])
    );
    assert_eq!(s.running.db.rejections(50).await.unwrap().len(), before);
    // Counted per sender, as `tollgate stats` and GET /v1/stats show them.
    let stats = tollgate::app::stats::read_stats(&s.running.db, &SystemClock, 1)
        .await
        .unwrap();
    let inventory = &stats.senders["inventory"];
    assert_eq!((inventory.accepted, inventory.ignored), (1, 1));
    assert_eq!(stats.senders["alertmanager"].rejected, 2);
    s.running.shutdown().await;
}

#[tokio::test]
async fn a_standard_webhooks_sender_is_verified_with_rotation() {
    use tollgate::domain::standard_webhooks::headers;
    let document = r#"
[[sources]]
name = "svix"
auth = "standard-webhooks"
preset = "generic"
"#;
    let (new, old) = (
        "whsec_bmV3LXN0YW5kYXJkLXNlY3JldA==",
        "whsec_b2xkLXN0YW5kYXJkLXNlY3JldA==",
    );
    let s = InProcess::with_sources(
        "intake-standard",
        Limits::default(),
        intake(document, &[("svix", &[new, old])]),
    )
    .await;
    let body = serde_json::to_vec(&json!({"externalId": "sw-1", "desiredOperation": "create",
        "projectKey": "OPS", "issueType": "Task", "summary": "from a Standard Webhooks sender"}))
    .unwrap();
    let send = |secret: &str, id: &str, body: &[u8]| {
        let hs = headers(&Secret::new(secret), id, now_unix(), body);
        let mut req = s
            .api
            .http
            .post(format!("{}/v1/sources/svix", s.api.base))
            .header("Content-Type", "application/json")
            .body(body.to_vec());
        for (name, value) in hs {
            req = req.header(name, value);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, ok) = send(new, "msg_1", &body).await;
    assert_eq!(status, 202, "{ok}");
    assert_eq!(ok["accepted"].as_array().unwrap().len(), 1, "{ok}");
    let (status, rotated) = send(old, "msg_2", &body).await;
    assert_eq!(status, 202, "a secret being rotated out still works");
    assert_eq!(rotated["accepted"][0]["duplicate"], true);
    let (status, wrong) = send("whsec_bm90LWl0", "msg_3", &body).await;
    assert_eq!(status, 401, "{wrong}");
    assert_eq!(
        wrong["message"],
        "the request is not authenticated for this source"
    );
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    let hs = headers(&Secret::new(new), "msg_4", now_unix(), &body);
    let mut req = s
        .api
        .http
        .post(format!("{}/v1/sources/svix", s.api.base))
        .header("Content-Type", "application/json")
        .body(tampered);
    for (name, value) in hs {
        req = req.header(name, value);
    }
    assert_eq!(
        req.send().await.unwrap().status().as_u16(),
        401,
        "tampered body"
    );
    s.running.shutdown().await;
}

#[tokio::test]
async fn rejections_keep_their_context_and_each_kind_is_resubmitted_or_discarded() {
    let document = r#"
[[sources]]
name = "alertmanager"
auth = "bearer"
preset = "alertmanager"
params = { project = "OPS" }
"#;
    let s = InProcess::with_sources(
        "intake-resubmit",
        Limits::default(),
        intake(document, &[("alertmanager", &["t"])]),
    )
    .await;
    let sources_file = s.db_path().with_file_name("sources.toml");
    std::fs::write(&sources_file, document).unwrap();
    let bearer = || Some(("Authorization", "Bearer t".to_string()));

    // A sender's item without a fingerprint: kept with the sender, the path
    // and the whole payload.
    let mut broken = alert(7, "firing");
    broken.as_object_mut().unwrap().remove("fingerprint");
    let body = group(vec![alert(6, "firing"), broken]);
    let (status, answer) = post(&s, "alertmanager", &body, bearer()).await;
    assert_eq!(status, 202, "{answer}");
    let rejection = answer["rejected"][0]["rejectionId"]
        .as_str()
        .unwrap()
        .to_string();
    let (ok, shown) = s.cli(&["rejected", "show", &rejection]);
    assert!(ok, "{shown}");
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["sourceSystem"], "alertmanager");
    assert_eq!(
        shown["origin"],
        json!({"kind": "sender", "source": "alertmanager", "path": "alerts[1]"})
    );
    let kept: Value = serde_json::from_str(shown["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        kept["alerts"].as_array().unwrap().len(),
        2,
        "the whole payload"
    );
    // Without the senders document it cannot be run again; with it, the
    // corrected payload goes through the mapping.
    let (ok, needs) = s.cli(&["rejected", "resubmit", &rejection]);
    assert!(
        !ok && needs.contains("came from sender \"alertmanager\""),
        "{needs}"
    );
    let mut fixed = kept.clone();
    fixed["alerts"][1]["fingerprint"] = json!("00000000fixed007");
    let fixed_file = s.db_path().with_file_name("fixed-payload.json");
    std::fs::write(&fixed_file, serde_json::to_vec(&fixed).unwrap()).unwrap();
    let (ok, done) = s.cli(&[
        "rejected",
        "resubmit",
        &rejection,
        "--file",
        fixed_file.to_str().unwrap(),
        "--sources",
        sources_file.to_str().unwrap(),
    ]);
    assert!(ok && done.contains("re-submitted: job"), "{done}");

    // A batch item: kept with its batch and index; posting the batch again
    // keeps no second rejection; corrected, it rejoins its batch.
    let batch = json!({"batchId": "cmdb-night-1", "sourceSystem": "cmdb", "events": [
        {"externalId": "srv-1", "desiredOperation": "create", "projectKey": "ASSET", "issueType": "Task", "summary": "srv-1"},
        {"externalId": "srv-2", "desiredOperation": "create", "projectKey": "ASSET", "issueType": "Task"}]});
    let batch_body = serde_json::to_vec(&batch).unwrap();
    let mut batch_rejection = String::new();
    for _ in 0..2 {
        let sent = s
            .api
            .http
            .post(format!("{}/v1/batches", s.api.base))
            .header("Content-Type", "application/json")
            .header(
                tollgate::domain::signature::HEADER,
                tollgate::domain::signature::sign(
                    &Secret::new(&s.secret),
                    tollgate_e2e::signing_time(&batch_body),
                    &batch_body,
                ),
            )
            .body(batch_body.clone())
            .send()
            .await
            .unwrap();
        let answer: Value = sent.json().await.unwrap();
        batch_rejection = answer["rejected"][0]["rejectionId"]
            .as_str()
            .unwrap_or_else(|| panic!("{answer}"))
            .to_string();
    }
    let (ok, listed) = s.cli(&["rejected", "list"]);
    assert!(ok, "{listed}");
    assert_eq!(
        listed.matches(&batch_rejection).count(),
        1,
        "one rejection for the item, however often the batch is posted: {listed}"
    );
    let (_, shown) = s.cli(&["rejected", "show", &batch_rejection]);
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(
        shown["origin"],
        json!({"kind": "batchItem", "batch": "cmdb-night-1", "index": 1,
               "sourceSystem": "cmdb", "priority": "bulk"})
    );
    let item_file = s.db_path().with_file_name("fixed-item.json");
    std::fs::write(
        &item_file,
        br#"{"externalId": "srv-2", "desiredOperation": "create", "projectKey": "ASSET", "issueType": "Task", "summary": "srv-2"}"#,
    )
    .unwrap();
    let (ok, done) = s.cli(&[
        "rejected",
        "resubmit",
        &batch_rejection,
        "--file",
        item_file.to_str().unwrap(),
    ]);
    assert!(ok, "{done}");
    let job = done
        .split("job ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap();
    let rec = s
        .running
        .db
        .job(&tollgate::domain::ids::JobId::parse(job).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.batch.as_ref().map(|b| b.as_str()), Some("cmdb-night-1"));
    assert_eq!(
        rec.source_system.as_str(),
        "cmdb",
        "the batch's source system"
    );

    // An event nobody needs: discarded, with who and why; then it cannot
    // be re-submitted.
    let (status, junk) = post(&s, "alertmanager", b"{}", bearer()).await;
    assert_eq!(status, 202);
    let junk = junk["rejected"][0]["rejectionId"]
        .as_str()
        .unwrap()
        .to_string();
    let (ok, out) = s.cli(&[
        "rejected", "discard", &junk, "--as", "dana", "--reason", "a probe",
    ]);
    assert!(ok && out.contains("discarded by dana"), "{out}");
    let (ok, out) = s.cli(&[
        "rejected",
        "resubmit",
        &junk,
        "--sources",
        sources_file.to_str().unwrap(),
    ]);
    assert!(!ok && out.contains("discarded by dana"), "{out}");
    let (_, listed) = s.cli(&["rejected", "list"]);
    assert!(
        listed
            .lines()
            .any(|l| l.contains(&junk) && l.contains("discarded")),
        "{listed}"
    );
    s.running.shutdown().await;
}
