//! Secrets never reach a log line: a `serve` process at trace level, with
//! every secret it can hold set to a recognisable canary, goes through
//! accepted, refused, gated, failing and sender-mapped work; its whole
//! output is then searched for each canary.

use serde_json::json;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tollgate::domain::secret::Secret;
use tollgate::domain::signature;
use tollgate_e2e::{Api, Proc, Scratch, bin, now_unix};

const WEBHOOK: &str = "whsec_CANARY_webhook_5b1f";
const JIRA_TOKEN: &str = "CANARY_jira_token_77ad";
const APPROVAL_KEY: &str = "CANARY_approval_key_0c9e";
const SLACK_PATH: &str = "T000/B000/CANARYslackpath31";
const NOTIFY_PATH: &str = "CANARY_notify_path_aa04";
const SENDER: &str = "CANARY_sender_token_e6d2";
const OPERATOR: &str = "CANARY_operator_token_9d31";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_run_at_trace_level_logs_no_secret() {
    let dir = Scratch::new("secrets-in-logs");
    let mut sim = Command::new(bin("jira-sim"));
    sim.args(["--listen", "127.0.0.1:0"])
        .env("JIRA_SIM_EMAIL", "bot@example.com")
        .env("JIRA_SIM_API_TOKEN", JIRA_TOKEN);
    let sim = Proc::start(sim, "jira-sim listening on ").unwrap();
    let sources = dir.path("sources.toml");
    std::fs::write(
        &sources,
        "[[sources]]\nname = \"alertmanager\"\nauth = \"bearer\"\npreset = \"alertmanager\"\nparams = { project = \"OPS\" }\n",
    )
    .unwrap();
    let log = dir.path("serve.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut serve = Command::new(bin("tollgate"));
    serve
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
        .args(["--jira-url", &sim.url])
        .arg("--db")
        .arg(dir.path("t.db"))
        .arg("--sources")
        .arg(&sources)
        .args(["--approvers", "lead@example.com"])
        .env(
            "TOLLGATE_WEBHOOK_SECRET",
            format!("{WEBHOOK},older_{WEBHOOK}"),
        )
        .env("TOLLGATE_JIRA_EMAIL", "bot@example.com")
        .env("TOLLGATE_JIRA_API_TOKEN", JIRA_TOKEN)
        .env("TOLLGATE_APPROVAL_KEY", APPROVAL_KEY)
        // Unreachable on purpose: failed notifications get logged.
        .env(
            "TOLLGATE_SLACK_WEBHOOK_URL",
            format!("http://127.0.0.1:9/services/{SLACK_PATH}"),
        )
        .env(
            "TOLLGATE_NOTIFY_WEBHOOK_URL",
            format!("http://127.0.0.1:9/{NOTIFY_PATH}"),
        )
        .env("TOLLGATE_SOURCE_ALERTMANAGER_SECRETS", SENDER)
        .env("TOLLGATE_OPERATOR_TOKEN", OPERATOR)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out));
    let mut child = serve.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(rest) = text.split("tollgate listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "serve did not start: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let api = Api::new(&url);

    let create = json!({"sourceSystem": "mon", "externalId": "a1", "desiredOperation": "create",
                        "projectKey": "OPS", "issueType": "Task", "summary": "Disk full"});
    let created = api
        .post_signed(&serde_json::to_vec(&create).unwrap(), WEBHOOK)
        .await
        .unwrap();
    assert_eq!(created.status, 202);
    // Refused: a wrong secret, a stale signature, an invalid event.
    assert_eq!(
        api.post_signed(b"{}", "not-the-secret")
            .await
            .unwrap()
            .status,
        401
    );
    let stale = signature::sign(&Secret::new(WEBHOOK), now_unix() - 3600, b"{}");
    assert_eq!(api.post_raw(b"{}", Some(stale)).await.unwrap().status, 401);
    assert_eq!(
        api.post_signed(br#"{"sourceSystem":"mon"}"#, WEBHOOK)
            .await
            .unwrap()
            .status,
        400
    );
    // Gated (notifications fail and are retried), and failing in Jira.
    let gated = json!({"sourceSystem": "mon", "externalId": "a1", "desiredOperation": "transition", "transition": "Done"});
    assert_eq!(
        api.post_signed(&serde_json::to_vec(&gated).unwrap(), WEBHOOK)
            .await
            .unwrap()
            .status,
        202
    );
    let failing = json!({"sourceSystem": "mon", "externalId": "b2", "desiredOperation": "create",
                         "projectKey": "NOPE", "issueType": "Task", "summary": "no such project"});
    let failed = api
        .post_signed(&serde_json::to_vec(&failing).unwrap(), WEBHOOK)
        .await
        .unwrap();
    // A sender with its own token, right and wrong.
    let payload = serde_json::to_vec(&json!({"version": "4", "status": "firing", "alerts": [
        {"status": "firing", "labels": {"alertname": "Disk"}, "annotations": {}, "startsAt": "2026-11-24T03:00:00Z", "fingerprint": "ff01"}]}))
    .unwrap();
    for token in [SENDER, "wrong"] {
        api.http
            .post(format!("{url}/v1/sources/alertmanager"))
            .header("Authorization", format!("Bearer {token}"))
            .body(payload.clone())
            .send()
            .await
            .unwrap();
    }
    // The operator routes, with the token and with a wrong one.
    for token in [OPERATOR, "wrong"] {
        api.http
            .get(format!("{url}/v1/approval-requests"))
            .header("Authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
    }
    for id in [&created.body["jobId"], &failed.body["jobId"]] {
        api.wait_terminal(id.as_str().unwrap(), Duration::from_secs(30))
            .await
            .unwrap();
    }
    // Let the approvals sweep try the unreachable notifiers at least once.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let _ = child.kill();
    let _ = child.wait();

    let mut text = String::new();
    std::fs::File::open(&log)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert!(
        text.lines().count() > 50,
        "the run logged: {} lines",
        text.lines().count()
    );
    assert!(text.contains("approval"), "the gated path ran");
    // One access-log line per request, by route template (never a path
    // with a token in it), and no Debug rendering in tollgate's own lines.
    let access: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("\"target\":\"tollgate::access\""))
        .collect();
    assert!(access.len() >= 10, "{} access lines", access.len());
    assert!(
        access
            .iter()
            .any(|l| l.contains("/v1/approval-requests") && l.contains("\"status\":401")),
        "the refused operator request is logged"
    );
    assert!(access.iter().all(|l| l.contains("request_id")));
    let debug_rendered = text
        .lines()
        .filter(|l| l.contains("\"target\":\"tollgate"))
        .find(|l| l.contains("Some(") || l.contains("None,") || l.contains("{ "));
    assert!(
        debug_rendered.is_none(),
        "a Debug rendering was logged: {}",
        debug_rendered.unwrap_or_default()
    );
    for canary in [
        OPERATOR,
        WEBHOOK,
        JIRA_TOKEN,
        APPROVAL_KEY,
        SLACK_PATH,
        NOTIFY_PATH,
        SENDER,
    ] {
        let line = text.lines().find(|l| l.contains(canary));
        assert!(
            line.is_none(),
            "{canary} was logged: {}",
            line.unwrap_or_default()
        );
    }
}
