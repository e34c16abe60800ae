//! The README's local Lambda run, headless: `scripts/lambda-local` starts
//! moto, jira-sim, the stack's resources, `cargo lambda watch` and the SQS
//! event-source emulator; a signed event sent to the URL it prints becomes
//! an issue with no further command; a transition waits for approval, the
//! link it prints approves it under the `/lambda-url/` prefix (the page's
//! button posts next to the page), and the issue moves; the console on the
//! approval function signs in with the printed operator token and counts
//! both jobs. Then Ctrl-C stops everything it started.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tollgate::domain::secret::Secret;
use tollgate::domain::signature;

struct Stack {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Stack {
    /// The first printed line that starts with `prefix`, within `wait`.
    fn line(&self, prefix: &str, wait: Duration) -> String {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.trim_start().starts_with(prefix) => return l,
                Ok(_) => {}
                Err(_) => panic!("no line starting {prefix:?} within {wait:?}"),
            }
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Ctrl-C, as a person would; then make sure.
        unsafe_interrupt(self.child.id());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
    }
}

fn unsafe_interrupt(pid: u32) {
    let _ = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn field<'a>(ready: &'a str, name: &str) -> &'a str {
    ready
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{name} in {ready}"))
}

async fn send(http: &reqwest::Client, url: &str, secret: &str, event: Value) -> Value {
    let body = event.to_string();
    let sig = signature::sign(
        &Secret::new(secret),
        tollgate_e2e::signing_time(body.as_bytes()),
        body.as_bytes(),
    );
    let r = http
        .post(url)
        .header("Content-Type", "application/json")
        .header("Tollgate-Signature", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    r.json().await.unwrap()
}

async fn report(http: &reqwest::Client, jira: &str) -> Value {
    http.get(format!("{jira}/_sim/report"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn until(what: &str, wait: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + wait;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within {wait:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_lambda_stack_takes_an_event_to_jira_and_an_approval_link_moves_the_issue() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut child = Command::new(root.join("scripts/lambda-local"))
        .args(["--port", &free_port().to_string()])
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("scripts/lambda-local starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let stack = Stack { child, lines };
    let ready = stack.line("lambda-local ready", Duration::from_secs(600));
    let (ingest, secret, jira) = (
        field(&ready, "ingest").to_string(),
        field(&ready, "secret").to_string(),
        field(&ready, "jira").to_string(),
    );
    assert!(ingest.contains("/lambda-url/tollgate-ingest/"), "{ingest}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap();

    // A create becomes an issue: ingest, the queue, the event source, the
    // executor — no further command.
    let created = send(
        &http,
        &ingest,
        &secret,
        json!({"sourceSystem": "monitoring",
        "externalId": "disk-db7", "desiredOperation": "create", "projectKey": "OPS",
        "issueType": "Incident", "summary": "Disk 95% full on db-7"}),
    )
    .await;
    assert_eq!(created["state"], "QUEUED", "{created}");
    until(
        "the issue is created",
        Duration::from_secs(600),
        async || report(&http, &jira).await["totals"]["issues"] == 1,
    )
    .await;

    // A transition waits; its link (printed by the local notify webhook)
    // approves it through the approval function under its prefix.
    let gated = send(
        &http,
        &ingest,
        &secret,
        json!({"sourceSystem": "monitoring",
        "externalId": "disk-db7", "desiredOperation": "transition", "transition": "Done"}),
    )
    .await;
    assert_eq!(gated["state"], "PENDING_APPROVAL", "{gated}");
    let approve = stack.line("lead@example.com approve:", Duration::from_secs(300));
    let link = approve.split_whitespace().last().unwrap().to_string();
    assert!(
        link.contains("/lambda-url/tollgate-approval/v1/approvals/"),
        "{link}"
    );
    let page = http.get(&link).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.unwrap();
    let action = html
        .split("action=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page has a form")
        .replace("&amp;", "&");
    let token = action.trim_start_matches("./");
    let post_to = format!("{}/{token}", link.rsplit_once('/').unwrap().0);
    let decided = http.post(&post_to).send().await.unwrap();
    assert_eq!(decided.status().as_u16(), 200, "posted to {post_to}");
    until(
        "the issue moves to Done",
        Duration::from_secs(300),
        async || {
            let r = report(&http, &jira).await;
            r["totals"]["transitions"] == 1 && r["issues"][0]["status"] == "Done"
        },
    )
    .await;
    assert_eq!(report(&http, &jira).await["totals"]["duplicateIssues"], 0);

    // The console on the approval function, under the same prefix, with
    // the operator token lambda-local put in the secret.
    let (console, operator) = (
        field(&ready, "console").to_string(),
        field(&ready, "operator").to_string(),
    );
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap();
    let signed_in = browser
        .post(format!("{console}/sign-in"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("operator=ops&token={operator}"))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status().as_u16(), 303);
    let set_cookie = signed_in.headers()["set-cookie"].to_str().unwrap();
    assert!(
        set_cookie.contains("Path=/lambda-url/tollgate-approval/ui"),
        "the cookie's path carries the prefix: {set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let overview = browser
        .get(&console)
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(overview.status().as_u16(), 200);
    let html = overview.text().await.unwrap();
    assert!(
        html.contains("data-state=\"SUCCEEDED\">2<"),
        "both jobs, counted from the stack's table: {html}"
    );
    assert!(html.contains("href=\"/lambda-url/tollgate-approval/ui/jobs\""));
}
