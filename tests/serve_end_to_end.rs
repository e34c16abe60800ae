//! `tollgate serve` end to end over HTTP, against the jira-sim binary.

use serde_json::{Value, json};
use std::time::Duration;
use tollgate::domain::secret::Secret;
use tollgate::domain::signature;
use tollgate_e2e::*;

const SECRET: &str = "whsec_e2e";
const WAIT: Duration = Duration::from_secs(30);

struct Stack {
    sim: Proc,
    _serve: Proc,
    api: Api,
    _dir: Scratch,
}

fn stack_with_secrets(name: &str, secrets: &str) -> Stack {
    let dir = Scratch::new(name);
    let sim = start_sim(0).unwrap();
    let serve = start_serve(&ServeOptions {
        db: &dir.path("tollgate.db"),
        jira_url: &sim.url,
        secrets,
        workers: 2,
        visibility_secs: 10,
    })
    .unwrap();
    let api = Api::new(&serve.url);
    Stack {
        sim,
        _serve: serve,
        api,
        _dir: dir,
    }
}

fn stack(name: &str) -> Stack {
    stack_with_secrets(name, SECRET)
}

#[tokio::test]
async fn a_signed_create_is_accepted_executed_once_and_audited() {
    let s = stack("create");
    let sent = s
        .api
        .post_signed(&fixture("create.json"), SECRET)
        .await
        .unwrap();
    assert_eq!(sent.status, 202, "{}", sent.body);
    assert_eq!(sent.body["duplicate"], false);
    assert_eq!(sent.body["state"], "QUEUED");
    assert_eq!(sent.body["idempotencyKey"].as_str().unwrap().len(), 64);
    let id = sent.body["jobId"].as_str().unwrap();

    let job = s.api.wait_terminal(id, WAIT).await.unwrap();
    assert_eq!(job["state"], "SUCCEEDED", "{job}");
    let key = job["issueKey"].as_str().unwrap();
    assert!(key.starts_with("OPS-"));
    let stages: Vec<&str> = job["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["validation", "queue", "lease", "jira", "outcome"]);
    let jira = &job["audit"][3];
    assert_eq!(
        jira["intent"],
        "create Incident in OPS: Disk 95% full on db-7"
    );
    assert_eq!(jira["response"]["status"], 201);

    let report = sim_report(&s.sim.url).await.unwrap();
    assert_eq!(report["totals"]["issues"], 1);
    let issue = &report["issues"][0];
    assert_eq!(issue["key"], key);
    let labels: Vec<&str> = issue["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        labels.contains(&"alert") && labels.iter().any(|l| l.starts_with("tollgate-")),
        "{labels:?}"
    );
}

#[tokio::test]
async fn a_redelivered_event_answers_with_the_original_job_and_creates_nothing_more() {
    let s = stack("dup");
    let body = fixture("create.json");
    let first = s.api.post_signed(&body, SECRET).await.unwrap();
    // The same event again, re-serialised with other key order and spacing.
    let reordered: Value = serde_json::from_slice(&body).unwrap();
    let pretty = serde_json::to_vec_pretty(&reordered).unwrap();
    let second = s.api.post_signed(&pretty, SECRET).await.unwrap();
    assert_eq!(second.status, 202);
    assert_eq!(second.body["duplicate"], true);
    assert_eq!(second.body["jobId"], first.body["jobId"]);
    let job = s
        .api
        .wait_terminal(first.body["jobId"].as_str().unwrap(), WAIT)
        .await
        .unwrap();
    assert_eq!(job["state"], "SUCCEEDED");
    let third = s.api.post_signed(&body, SECRET).await.unwrap();
    assert_eq!(
        (third.body["duplicate"].clone(), third.body["state"].clone()),
        (json!(true), json!("SUCCEEDED"))
    );
    let report = sim_report(&s.sim.url).await.unwrap();
    assert_eq!(report["totals"]["issues"], 1);
    let audit = job["audit"].as_array().unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e["outcome"] == "duplicate delivery suppressed")
    );
}

#[tokio::test]
async fn an_event_missing_fields_gets_400_naming_each_and_nothing_is_stored() {
    let s = stack("invalid");
    let sent = s
        .api
        .post_signed(&fixture("invalid-missing-fields.json"), SECRET)
        .await
        .unwrap();
    assert_eq!(sent.status, 400);
    let fields: Vec<&str> = sent.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for f in ["externalId", "projectKey", "issueType"] {
        assert!(fields.contains(&f), "{f} not in {fields:?}");
    }
    let garbage = s.api.post_signed(b"{not json", SECRET).await.unwrap();
    assert_eq!(garbage.status, 400);
    assert_eq!(garbage.body["errors"][0]["field"], "body");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sim_report(&s.sim.url).await.unwrap()["totals"]["requests"],
        0
    );
}

#[tokio::test]
async fn signatures_are_checked_before_anything_else() {
    let s = stack_with_secrets("sig", "new-secret,old-secret");
    let body = fixture("create.json");
    let unsigned = s.api.post_raw(&body, None).await.unwrap();
    assert_eq!(unsigned.status, 401);
    assert!(
        unsigned.body["message"]
            .as_str()
            .unwrap()
            .contains("missing")
    );
    let forged = s.api.post_signed(&body, "guess").await.unwrap();
    assert_eq!(forged.status, 401);
    let stale = signature::sign(&Secret::new("new-secret"), now_unix() - 600, &body);
    let expired = s.api.post_raw(&body, Some(stale)).await.unwrap();
    assert_eq!(expired.status, 401);
    assert!(
        expired.body["message"]
            .as_str()
            .unwrap()
            .contains("tolerance")
    );
    // An unsigned invalid body is refused for its signature, not parsed.
    let unsigned_invalid = s.api.post_raw(b"{", None).await.unwrap();
    assert_eq!(unsigned_invalid.status, 401);
    let rotated = s.api.post_signed(&body, "old-secret").await.unwrap();
    assert_eq!(
        rotated.status, 202,
        "a secret being rotated out still works"
    );
}

#[tokio::test]
async fn a_byte_identical_retry_is_a_duplicate_and_a_seen_signature_over_other_bytes_is_refused() {
    let s = stack("replay");
    let body = fixture("create.json");
    let header = signature::sign(&Secret::new(SECRET), now_unix(), &body);
    let first = s.api.post_raw(&body, Some(header.clone())).await.unwrap();
    assert_eq!(first.status, 202, "{}", first.body);
    // An HTTP client's retry: the same bytes, the same headers.
    for _ in 0..2 {
        let again = s.api.post_raw(&body, Some(header.clone())).await.unwrap();
        assert_eq!(again.status, 202, "never 401: {}", again.body);
        assert_eq!(again.body["duplicate"], true);
        assert_eq!(again.body["jobId"], first.body["jobId"]);
    }
    // A sender's re-signed retry is deduplicated the same way.
    let resigned = signature::sign(&Secret::new(SECRET), now_unix() - 1, &body);
    let retry = s.api.post_raw(&body, Some(resigned)).await.unwrap();
    assert_eq!(retry.status, 202);
    assert_eq!(retry.body["duplicate"], true);
    assert_eq!(retry.body["jobId"], first.body["jobId"]);
    // A header carrying signatures of two bodies: once seen over one, it is
    // refused over the other.
    let other = fixture("upsert-cmdb.json");
    let t = now_unix();
    let sig = |b: &[u8]| {
        signature::sign(&Secret::new(SECRET), t, b)
            .split_once("v1=")
            .unwrap()
            .1
            .to_string()
    };
    let both = format!("t={t},v1={},v1={}", sig(&body), sig(&other));
    let seen = s.api.post_raw(&body, Some(both.clone())).await.unwrap();
    assert_eq!(seen.status, 202, "{}", seen.body);
    let swapped = s.api.post_raw(&other, Some(both)).await.unwrap();
    assert_eq!(swapped.status, 401, "{}", swapped.body);
    assert!(
        swapped.body["message"]
            .as_str()
            .unwrap()
            .contains("already used for another body")
    );
}

#[tokio::test]
async fn standard_webhooks_deliveries_are_accepted_and_a_webhook_id_names_one_delivery() {
    use tollgate::domain::standard_webhooks::headers;
    let s = stack("standard-webhooks");
    let secret = Secret::new(SECRET);
    let body = fixture("create.json");
    let t = now_unix();
    let first = s
        .api
        .post_with_headers(&body, &headers(&secret, "msg_2Kv1", t, &body))
        .await
        .unwrap();
    assert_eq!(first.status, 202, "{}", first.body);
    let job_id = first.body["jobId"].as_str().unwrap().to_string();
    let job = s.api.job(&job_id).await.unwrap();
    assert!(
        job["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["outcome"] == "delivered with webhook-id msg_2Kv1"),
        "the webhook-id is recorded with the job: {job}"
    );
    // The same message again — as sent, and re-signed later — is a
    // redelivery.
    for ts in [t, t - 7] {
        let again = s
            .api
            .post_with_headers(&body, &headers(&secret, "msg_2Kv1", ts, &body))
            .await
            .unwrap();
        assert_eq!(again.status, 202, "{}", again.body);
        assert_eq!(again.body["duplicate"], true);
        assert_eq!(again.body["jobId"], job_id);
    }
    // The same webhook-id over other bytes is refused.
    let other = fixture("upsert-cmdb.json");
    let reused = s
        .api
        .post_with_headers(&other, &headers(&secret, "msg_2Kv1", t, &other))
        .await
        .unwrap();
    assert_eq!(reused.status, 401, "{}", reused.body);
    // A wrong secret, or a missing header, is refused like any bad signature.
    let forged = s
        .api
        .post_with_headers(&other, &headers(&Secret::new("not-it"), "msg_9", t, &other))
        .await
        .unwrap();
    assert_eq!(forged.status, 401);
    let mut partial = headers(&secret, "msg_10", t, &other).to_vec();
    partial.retain(|(name, _)| *name != "webhook-timestamp");
    let missing = s.api.post_with_headers(&other, &partial).await.unwrap();
    assert_eq!(missing.status, 401);
}

#[tokio::test]
async fn a_deeply_nested_body_gets_400_naming_the_limit_and_nothing_is_stored() {
    let s = stack("nested");
    let body = format!(
        r#"{{"sourceSystem":"a","externalId":"1","desiredOperation":"update","issueKey":"OPS-1","fields":{{"x":{}1{}}}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let sent = s.api.post_signed(body.as_bytes(), SECRET).await.unwrap();
    assert_eq!(sent.status, 400, "{}", sent.body);
    assert!(
        sent.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("deeper than 32 levels")
    );
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_naming_it() {
    let s = stack("large");
    let mut body =
        br#"{"sourceSystem":"a","externalId":"1","desiredOperation":"comment","comment":""#
            .to_vec();
    body.extend(std::iter::repeat_n(b'x', 300 * 1024));
    body.extend(br#""}"#);
    let sent = s.api.post_signed(&body, SECRET).await.unwrap();
    assert_eq!(sent.status, 413);
    assert_eq!(sent.body["limit"], 262144);
}

#[tokio::test]
async fn a_create_resent_with_another_payload_is_a_conflict() {
    let s = stack("conflict");
    let first = s
        .api
        .post_signed(&fixture("create.json"), SECRET)
        .await
        .unwrap();
    let mut changed: Value = serde_json::from_slice(&fixture("create.json")).unwrap();
    changed["summary"] = json!("Disk 99% full on db-7");
    let second = s
        .api
        .post_signed(&serde_json::to_vec(&changed).unwrap(), SECRET)
        .await
        .unwrap();
    assert_eq!(second.status, 409);
    assert_eq!(second.body["jobId"], first.body["jobId"]);
}

#[tokio::test]
async fn comments_and_transitions_by_external_id_land_on_the_issue_created_for_it() {
    let s = stack("follow-up");
    // The comment is sent first, as an out-of-order sender would: it waits
    // for the create instead of failing.
    let comment = s
        .api
        .post_signed(&fixture("comment-by-external-id.json"), SECRET)
        .await
        .unwrap();
    let create = s
        .api
        .post_signed(&fixture("create.json"), SECRET)
        .await
        .unwrap();
    let c = s
        .api
        .wait_terminal(create.body["jobId"].as_str().unwrap(), WAIT)
        .await
        .unwrap();
    let m = s
        .api
        .wait_terminal(comment.body["jobId"].as_str().unwrap(), WAIT)
        .await
        .unwrap();
    assert_eq!(
        (c["state"].as_str(), m["state"].as_str()),
        (Some("SUCCEEDED"), Some("SUCCEEDED")),
        "{m}"
    );
    assert_eq!(m["issueKey"], c["issueKey"]);
    let t = s
        .api
        .post_signed(&fixture("transition.json"), SECRET)
        .await
        .unwrap();
    let t = s
        .api
        .wait_terminal(t.body["jobId"].as_str().unwrap(), WAIT)
        .await
        .unwrap();
    assert_eq!(t["state"], "SUCCEEDED", "{t}");

    let report = sim_report(&s.sim.url).await.unwrap();
    let issue = &report["issues"][0];
    assert_eq!(issue["status"], "Done");
    assert_eq!(
        issue["comments"],
        json!(["Still firing after 30 minutes.", "Resolved at 10:42 UTC."])
    );
    assert_eq!(report["totals"]["duplicateComments"], 0);
}

#[tokio::test]
async fn an_upsert_creates_once_and_then_edits() {
    let s = stack("upsert");
    let first = s
        .api
        .post_signed(&fixture("upsert-cmdb.json"), SECRET)
        .await
        .unwrap();
    let a = s
        .api
        .wait_terminal(first.body["jobId"].as_str().unwrap(), WAIT)
        .await
        .unwrap();
    let mut revised: Value = serde_json::from_slice(&fixture("upsert-cmdb.json")).unwrap();
    revised["summary"] = json!("Server web-12 decommissioned and wiped");
    let second = s
        .api
        .post_signed(&serde_json::to_vec(&revised).unwrap(), SECRET)
        .await
        .unwrap();
    assert_eq!(second.body["duplicate"], false, "a revision is new work");
    let b = s
        .api
        .wait_terminal(second.body["jobId"].as_str().unwrap(), WAIT)
        .await
        .unwrap();
    assert_eq!(b["state"], "SUCCEEDED", "{b}");
    assert_eq!(a["issueKey"], b["issueKey"]);
    let report = sim_report(&s.sim.url).await.unwrap();
    assert_eq!(report["totals"]["issues"], 1);
    assert_eq!(
        report["issues"][0]["summary"],
        "Server web-12 decommissioned and wiped"
    );
    assert_eq!(report["issues"][0]["fields"]["customfield_10050"], "web-12");
}

#[tokio::test]
async fn a_permanent_jira_error_fails_the_job_with_jiras_reason() {
    let s = stack("permanent");
    let mut event: Value = serde_json::from_slice(&fixture("create.json")).unwrap();
    event["projectKey"] = json!("NOPE");
    let sent = s
        .api
        .post_signed(&serde_json::to_vec(&event).unwrap(), SECRET)
        .await
        .unwrap();
    let job = s
        .api
        .wait_terminal(sent.body["jobId"].as_str().unwrap(), WAIT)
        .await
        .unwrap();
    assert_eq!(job["state"], "FAILED");
    assert!(
        job["lastError"]
            .as_str()
            .unwrap()
            .contains("project: valid project is required"),
        "{job}"
    );
    assert_eq!(job["attempts"], 0, "a permanent error is not retried");
}

#[tokio::test]
async fn an_unknown_job_is_404() {
    let s = stack("404");
    let a = s
        .api
        .job("01a20743-0530-759f-a61d-e3a182380920")
        .await
        .unwrap();
    assert_eq!(a["error"], "not_found");
    let b = s.api.job("..%2F..%2Fetc").await.unwrap();
    assert_eq!(b["error"], "not_found");
}

/// `tollgate <group> --db DB <rest…>`.
fn tollgate_cli(args: &[&str], db: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(bin("tollgate"))
        .arg(args[0])
        .arg("--db")
        .arg(db)
        .args(&args[1..])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn an_invalid_event_is_kept_for_an_operator_and_a_corrected_resubmission_runs_once() {
    let dir = Scratch::new("manual-queue");
    let db = dir.path("tollgate.db");
    let sim = start_sim(0).unwrap();
    let serve = start_serve(&ServeOptions {
        db: &db,
        jira_url: &sim.url,
        secrets: SECRET,
        workers: 2,
        visibility_secs: 10,
    })
    .unwrap();
    let api = Api::new(&serve.url);
    let bad = json!({"sourceSystem": "cmdb", "externalId": "ci-7", "desiredOperation": "create",
                     "issueType": "Task", "summary": "Server 7 in service"});
    let sent = api
        .post_signed(&serde_json::to_vec(&bad).unwrap(), SECRET)
        .await
        .unwrap();
    assert_eq!(sent.status, 400);
    let rejection = sent.body["rejectionId"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", sent.body))
        .to_string();
    // Unsigned junk is refused and not kept.
    let unsigned = api.post_raw(b"{\"x\": 1}", None).await.unwrap();
    assert_eq!(unsigned.status, 401);

    let (ok, listed) = tollgate_cli(&["rejected", "list"], &db);
    assert!(ok, "{listed}");
    assert_eq!(
        listed.lines().count(),
        2,
        "a header and one rejection: {listed}"
    );
    assert!(listed.starts_with("REJECTION"), "{listed}");
    assert!(
        listed.contains(&rejection) && listed.contains("projectKey"),
        "{listed}"
    );
    let (ok, shown) = tollgate_cli(&["rejected", "show", &rejection], &db);
    assert!(ok && shown.contains("Server 7 in service"), "{shown}");

    // As received it is still invalid; corrected, it runs.
    let (ok, again) = tollgate_cli(&["rejected", "resubmit", &rejection], &db);
    assert!(
        !ok && again.contains("still invalid: projectKey"),
        "{again}"
    );
    let mut fixed = bad.clone();
    fixed["projectKey"] = json!("ASSET");
    let file = dir.path("fixed.json");
    std::fs::write(&file, serde_json::to_vec(&fixed).unwrap()).unwrap();
    let (ok, done) = tollgate_cli(
        &[
            "rejected",
            "resubmit",
            &rejection,
            "--file",
            file.to_str().unwrap(),
        ],
        &db,
    );
    assert!(ok, "{done}");
    let job = done
        .split("job ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();
    let finished = api.wait_terminal(&job, WAIT).await.unwrap();
    assert_eq!(finished["state"], "SUCCEEDED", "{finished}");
    let (ok, twice) = tollgate_cli(
        &[
            "rejected",
            "resubmit",
            &rejection,
            "--file",
            file.to_str().unwrap(),
        ],
        &db,
    );
    assert!(!ok && twice.contains("already re-submitted"), "{twice}");
    assert_eq!(sim_report(&sim.url).await.unwrap()["totals"]["issues"], 1);
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_with_the_contracts_error_body() {
    let s = stack("fallbacks");
    let http = reqwest::Client::new();
    let missing = http
        .get(format!("{}/v1/nothing-here", s.api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"], "not_found", "{body}");
    assert!(body["message"].is_string(), "{body}");
    let wrong = http
        .delete(format!("{}/v1/events", s.api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 405);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["error"], "method_not_allowed", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("DELETE"),
        "{body}"
    );
}

#[test]
fn jobs_list_names_the_valid_states_has_a_header_and_says_when_it_is_empty() {
    let dir = Scratch::new("jobs-list");
    let db = dir.path("t.db");
    drop(tollgate::adapters::sqlite::SqliteDb::open(&db).unwrap());
    let run = |args: &[&str]| {
        std::process::Command::new(bin("tollgate"))
            .arg("jobs")
            .arg("--db")
            .arg(&db)
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let bogus = run(&["list", "--state", "bogus"]);
    assert!(!bogus.status.success());
    let err = String::from_utf8_lossy(&bogus.stderr);
    assert!(
        err.contains("\"bogus\"") && err.contains("QUEUED") && err.contains("EXHAUSTED"),
        "{err}"
    );
    let empty = run(&["list"]);
    assert!(empty.status.success());
    assert_eq!(
        String::from_utf8_lossy(&empty.stdout).trim(),
        "no jobs found"
    );
    let none = run(&["list", "--state", "failed"]);
    assert_eq!(
        String::from_utf8_lossy(&none.stdout).trim(),
        "no jobs found in state FAILED"
    );
}

#[test]
fn an_operator_command_on_another_programs_database_refuses_it_and_changes_nothing() {
    let dir = Scratch::new("foreign-db");
    let db = dir.path("notes.db");
    let python = std::env::var("TOLLGATE_PYTHON").unwrap_or_else(|_| "python3".into());
    let made = std::process::Command::new(python)
        .args([
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('CREATE TABLE notes (t TEXT)'); c.execute(\"INSERT INTO notes VALUES ('mine')\"); c.commit()",
        ])
        .arg(&db)
        .status()
        .unwrap();
    assert!(made.success());
    let before = std::fs::read(&db).unwrap();
    let out = std::process::Command::new(bin("tollgate"))
        .args(["jobs", "--db"])
        .arg(&db)
        .arg("list")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a tollgate database"), "{err}");
    assert_eq!(std::fs::read(&db).unwrap(), before, "not a byte changed");
}
