//! Test harness for black-box tests: starts the real `tollgate` and
//! `jira-sim` binaries on free loopback ports, signs and sends events, and
//! reads jobs and the simulator's report back over HTTP.
//!
//! The binaries come from the same target directory as the test; the
//! README's test command builds them first (`cargo build --workspace --bins`).

#[path = "webdriver.rs"]
pub mod webdriver;

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tollgate::domain::secret::Secret;
use tollgate::domain::signature;

pub const SIM_EMAIL: &str = "e2e@example.com";
pub const SIM_TOKEN: &str = "e2e-token";

/// `target/debug` (or wherever this test binary lives).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("target profile dir").to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the black-box tests",
        p.display()
    );
    p
}

/// A child process killed (SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
    pub url: String,
}

impl Proc {
    /// Starts `cmd` and waits for its "listening on http://ADDR" line.
    pub fn start(mut cmd: Command, ready_marker: &str) -> anyhow::Result<Proc> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {cmd:?}"))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            let Some(line) = lines.next() else {
                let status = child.wait()?;
                bail!("{cmd:?} exited ({status}) before it was ready");
            };
            let line = line?;
            if let Some(rest) = line.strip_prefix(ready_marker) {
                let url = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                break url;
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Proc { child, url })
    }

    /// SIGKILL: no shutdown hook, no flush, as a crash.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

pub fn start_sim(latency_ms: u64) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(bin("jira-sim"));
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--latency-ms",
        &latency_ms.to_string(),
    ])
    .env("JIRA_SIM_EMAIL", SIM_EMAIL)
    .env("JIRA_SIM_API_TOKEN", SIM_TOKEN);
    Proc::start(cmd, "jira-sim listening on ")
}

pub struct ServeOptions<'a> {
    pub db: &'a Path,
    pub jira_url: &'a str,
    pub secrets: &'a str,
    pub workers: usize,
    pub visibility_secs: u64,
}

pub fn start_serve(o: &ServeOptions<'_>) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(bin("tollgate"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--jira-url", o.jira_url])
        .arg("--db")
        .arg(o.db)
        .args(["--workers", &o.workers.to_string()])
        .args(["--visibility-timeout-secs", &o.visibility_secs.to_string()])
        .args(["--lease-ttl-secs", &o.visibility_secs.to_string()])
        .env("TOLLGATE_WEBHOOK_SECRET", o.secrets)
        .env("TOLLGATE_JIRA_EMAIL", SIM_EMAIL)
        .env("TOLLGATE_JIRA_API_TOKEN", SIM_TOKEN)
        .env(
            "RUST_LOG",
            std::env::var("E2E_LOG").unwrap_or_else(|_| "warn".into()),
        );
    Proc::start(cmd, "tollgate listening on ")
}

/// A scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "tollgate-e2e-{name}-{}-{}",
            std::process::id(),
            fastrand_u32()
        ));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fastrand_u32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

/// The timestamp to sign one delivery of `body` with: the same body's
/// timestamps step back a second per send, so two deliveries in one second
/// carry different signatures, as a sender's re-signed retry does (the
/// same header twice is answered as a redelivery too).
pub fn signing_time(body: &[u8]) -> i64 {
    tollgate_cli::signing::signing_time(body)
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// An HTTP client for one tollgate instance.
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

pub struct Sent {
    pub status: u16,
    pub body: Value,
}

impl Api {
    pub fn new(base: &str) -> Api {
        Api {
            base: base.to_string(),
            http: reqwest::Client::new(),
        }
    }

    /// Posts `body` exactly as given, with an optional signature header.
    pub async fn post_raw(
        &self,
        body: &[u8],
        signature_header: Option<String>,
    ) -> anyhow::Result<Sent> {
        let mut req = self
            .http
            .post(format!("{}/v1/events", self.base))
            .header("Content-Type", "application/json");
        if let Some(sig) = signature_header {
            req = req.header(signature::HEADER, sig);
        }
        let resp = req.body(body.to_vec()).send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Sent { status, body })
    }

    /// Posts an event with the given headers (Standard Webhooks' three, say).
    pub async fn post_with_headers(
        &self,
        body: &[u8],
        headers: &[(&str, String)],
    ) -> anyhow::Result<Sent> {
        let mut req = self
            .http
            .post(format!("{}/v1/events", self.base))
            .header("Content-Type", "application/json");
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let resp = req.body(body.to_vec()).send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Sent { status, body })
    }

    /// Sends `method path` with `body` signed now with `secret` (batch
    /// reads and controls are signed over their empty body).
    pub async fn signed(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &[u8],
        secret: &str,
    ) -> anyhow::Result<Sent> {
        let sig = signature::sign(&Secret::new(secret), signing_time(body), body);
        let resp = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("Content-Type", "application/json")
            .header(signature::HEADER, sig)
            .body(body.to_vec())
            .send()
            .await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Sent { status, body })
    }

    /// Posts `body` signed now with `secret`.
    pub async fn post_signed(&self, body: &[u8], secret: &str) -> anyhow::Result<Sent> {
        let sig = signature::sign(&Secret::new(secret), signing_time(body), body);
        self.post_raw(body, Some(sig)).await
    }

    pub async fn job(&self, id: &str) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(format!("{}/v1/jobs/{id}", self.base))
            .send()
            .await?
            .json()
            .await?)
    }

    /// Polls until the job's changes reach a terminal state (or
    /// `timeout`): a job merged into another is followed to the job that
    /// carries its changes, whose answer is returned.
    pub async fn wait_terminal(&self, id: &str, timeout: Duration) -> anyhow::Result<Value> {
        let mut job = self.wait_own_terminal(id, timeout).await?;
        while let Some(carrier) = job["mergedInto"].as_str() {
            job = self.wait_own_terminal(carrier, timeout).await?;
        }
        Ok(job)
    }

    /// Polls until the job itself reaches a terminal state (or `timeout`).
    pub async fn wait_own_terminal(&self, id: &str, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let job = self.job(id).await?;
            let state = job["state"].as_str().unwrap_or_default();
            if matches!(
                state,
                "SUCCEEDED"
                    | "FAILED"
                    | "EXHAUSTED"
                    | "DENIED"
                    | "EXPIRED"
                    | "REJECTED"
                    | "SUPERSEDED"
            ) {
                return Ok(job);
            }
            if Instant::now() > deadline {
                bail!("job {id} still {state} after {timeout:?}: {job}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub async fn sim_report(sim_url: &str) -> anyhow::Result<Value> {
    Ok(reqwest::get(format!("{sim_url}/_sim/report"))
        .await?
        .json()
        .await?)
}

/// The project's copies of the contract examples.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/contract")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// Where tests leave artifacts for people to look at (screenshots):
/// `<target>/test-artifacts`.
pub fn artifacts_dir() -> PathBuf {
    bin_dir()
        .parent()
        .map(|t| t.join("test-artifacts"))
        .unwrap_or_else(|| PathBuf::from("test-artifacts"))
}

/// A webhook receiver standing in for Slack or a chat bridge: keeps what it
/// is sent, and refuses the first `fail_first` deliveries.
#[derive(Clone, Default)]
pub struct Inbox {
    pub received: Arc<Mutex<Vec<Value>>>,
    pub fail_first: Arc<Mutex<usize>>,
}

async fn receive_notice(State(inbox): State<Inbox>, body: axum::Json<Value>) -> StatusCode {
    let mut fail = inbox.fail_first.lock().unwrap();
    if *fail > 0 {
        *fail -= 1;
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    inbox.received.lock().unwrap().push(body.0);
    StatusCode::OK
}

pub async fn inbox(fail_first: usize) -> (String, Inbox) {
    let inbox = Inbox {
        fail_first: Arc::new(Mutex::new(fail_first)),
        ..Inbox::default()
    };
    let app = Router::new()
        .route("/hook", post(receive_notice))
        .with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, inbox)
}

/// `serve`'s stack in this process, on a fresh database, against an
/// in-process jira-sim with `limits`: for tests that read the store or the
/// simulator directly.
pub struct InProcess {
    pub running: tollgate_cli::stack::Running,
    pub sim: Arc<jira_sim::Sim>,
    pub api: Api,
    pub secret: String,
    _dir: Scratch,
}

impl InProcess {
    /// The SQLite file the stack runs on (operator commands open it too).
    pub fn db_path(&self) -> PathBuf {
        self._dir.path("t.db")
    }

    /// Runs the built `tollgate` binary (an operator command) on this
    /// stack's database: whether it succeeded, and what it printed.
    pub fn cli(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(bin("tollgate"))
            .arg(args[0])
            .arg("--db")
            .arg(self.db_path())
            .args(&args[1..])
            .output()
            .expect("tollgate runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
    pub async fn start(
        name: &str,
        workers: usize,
        latency: Duration,
        limits: jira_sim::limits::Limits,
    ) -> InProcess {
        Self::with_policy(name, workers, latency, limits, Default::default()).await
    }

    /// As [`InProcess::start`], deciding approvals by `policy`.
    pub async fn with_policy(
        name: &str,
        workers: usize,
        latency: Duration,
        limits: jira_sim::limits::Limits,
        policy: tollgate::domain::policy::Policy,
    ) -> InProcess {
        Self::configured(name, workers, latency, limits, policy, Default::default()).await
    }

    /// As [`InProcess::start`], with senders configured (`intake`).
    pub async fn with_sources(
        name: &str,
        limits: jira_sim::limits::Limits,
        intake: tollgate_cli::config::IntakeSettings,
    ) -> InProcess {
        Self::configured(name, 4, Duration::ZERO, limits, Default::default(), intake).await
    }

    async fn configured(
        name: &str,
        workers: usize,
        latency: Duration,
        limits: jira_sim::limits::Limits,
        policy: tollgate::domain::policy::Policy,
        intake: tollgate_cli::config::IntakeSettings,
    ) -> InProcess {
        let dir = Scratch::new(name);
        let secret = format!("whsec_{name}");
        let config = jira_sim::SimConfig {
            limits,
            latency,
            ..Default::default()
        };
        let (addr, sim, _) = jira_sim::spawn(config, "127.0.0.1:0".parse().expect("address"))
            .await
            .expect("jira-sim starts");
        let running = tollgate_cli::stack::start(tollgate_cli::config::ServeConfig {
            operator_tokens: vec![tollgate::domain::secret::Secret::new("test-operator-token")],
            listen: "127.0.0.1:0".parse().expect("address"),
            db: dir.path("t.db"),
            jira: tollgate_cli::config::JiraTarget::Site {
                url: format!("http://{addr}"),
                auth: tollgate::adapters::jira::JiraAuth::Basic {
                    email: "sim@example.com".into(),
                    api_token: Secret::new("sim-token"),
                },
            },
            webhook_secrets: vec![Secret::new(&secret)],
            workers,
            visibility_timeout: Duration::from_secs(30),
            lease_ttl: Duration::from_secs(30),
            jira_timeout: Duration::from_secs(5),
            sim_latency: Duration::ZERO,
            approvals: tollgate_cli::config::ApprovalSettings {
                policy,
                ..Default::default()
            },
            followups: Default::default(),
            bulk_create: tollgate::ports::MAX_BULK_CREATE,
            intake,
            retry_cap: tollgate::domain::backoff::DEFAULT_RETRY_CAP,
        })
        .await
        .expect("serve starts");
        let api = Api::new(&format!("http://{}", running.addr));
        InProcess {
            running,
            sim,
            api,
            secret,
            _dir: dir,
        }
    }

    /// Sends one event, signed; its job id (the answer must be 202).
    pub async fn send(&self, event: &Value) -> String {
        let sent = self
            .api
            .post_signed(&serde_json::to_vec(event).expect("json"), &self.secret)
            .await
            .expect("event sent");
        assert_eq!(sent.status, 202, "{}", sent.body);
        sent.body["jobId"].as_str().expect("jobId").to_string()
    }
}

/// A notifier that takes every notice, as a working Slack or webhook
/// would: approval requests count as sent. (`NoNotifier` is "none
/// configured", and leaves them unsent.)
pub struct Delivered;

impl tollgate::ports::Notifier for Delivered {
    async fn notify(
        &self,
        _: &tollgate::domain::notice::Notice,
    ) -> Result<(), tollgate::ports::NotifyError> {
        Ok(())
    }
}
