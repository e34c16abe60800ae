//! `tollgate demo`: the whole stack on the simulator, fed the way real
//! senders feed it — every alert delivered two or three times, some at once,
//! comments and transitions racing the creates they refer to — then a table
//! of what happened. Offline, in a temporary database.

use crate::config::{ApprovalSettings, JiraTarget, ServeConfig};
use crate::stack;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tollgate::domain::approval::{Decision, LinkClaim, derive_link_key, sign_link};
use tollgate::domain::policy::Policy;
use tollgate::domain::secret::Secret;
use tollgate::domain::signature;
use tollgate::ports::ApprovalStore;

pub struct DemoOptions {
    pub alerts: usize,
    pub workers: usize,
    pub sim_latency: Duration,
    pub progress: bool,
}

#[derive(Debug, Default)]
pub struct DemoSummary {
    pub deliveries: usize,
    pub duplicates_suppressed: usize,
    pub jobs: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub issues_created: u64,
    pub duplicate_issues: u64,
    pub duplicate_comments: u64,
    pub comments: u64,
    pub transitions: u64,
    pub edits: u64,
    pub jira_requests: u64,
    pub elapsed: Duration,
    /// Approval links the demo's approver used (one per gated event).
    pub approval_links: Vec<String>,
}

impl DemoSummary {
    pub fn table(&self) -> String {
        let rows = [
            ("events delivered", self.deliveries.to_string()),
            (
                "duplicate deliveries suppressed",
                self.duplicates_suppressed.to_string(),
            ),
            ("jobs", self.jobs.to_string()),
            ("jobs succeeded", self.succeeded.to_string()),
            ("failures", self.failed.to_string()),
            ("issues created in Jira", self.issues_created.to_string()),
            (
                "duplicate issues in Jira",
                self.duplicate_issues.to_string(),
            ),
            ("comments", self.comments.to_string()),
            ("duplicate comments", self.duplicate_comments.to_string()),
            ("transitions", self.transitions.to_string()),
            ("edits", self.edits.to_string()),
            (
                "approvals asked and given",
                self.approval_links.len().to_string(),
            ),
            ("Jira requests", self.jira_requests.to_string()),
            ("elapsed", format!("{:.1} s", self.elapsed.as_secs_f64())),
        ];
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (k, v) in rows {
            out.push_str(&format!("  {k:<width$}  {v:>8}\n"));
        }
        out
    }
}

/// The events of the demo, each with how many times it is delivered.
pub fn workload(alerts: usize) -> Vec<(Value, usize)> {
    let mut events = Vec::new();
    for i in 0..alerts {
        let host = format!("db-{i}");
        let id = format!("alert-{i:03}");
        events.push((
            json!({
                "sourceSystem": "alertmanager", "externalId": id, "desiredOperation": "create",
                "projectKey": "OPS", "issueType": "Incident",
                "summary": format!("Disk 95% full on {host}"),
                "description": format!("Filesystem /var/lib/postgresql at 95% on {host}.\nRunbook: https://runbooks.example/disk"),
                "labels": ["alert", "storage"]
            }),
            2 + i % 2,
        ));
        if i % 3 == 0 {
            events.push((
                json!({"sourceSystem": "alertmanager", "externalId": id, "desiredOperation": "comment",
                       "comment": "Still firing after 30 minutes."}),
                2,
            ));
        }
        if i % 4 == 0 {
            events.push((
                json!({"sourceSystem": "alertmanager", "externalId": id, "desiredOperation": "transition",
                       "transition": "Done", "comment": "Resolved: usage back to 70%."}),
                2,
            ));
        }
    }
    // A change that waits for a person: retiring an asset (a transition the
    // policy does not let the CMDB make alone).
    events.push((
        json!({"sourceSystem": "cmdb", "externalId": "ci-00000", "desiredOperation": "transition",
               "transition": "Done", "comment": "Decommissioned: rack B4 emptied."}),
        2,
    ));
    for c in 0..alerts.div_ceil(2) {
        let id = format!("ci-{c:05}");
        let upsert = |summary: String| {
            json!({"sourceSystem": "cmdb", "externalId": id, "desiredOperation": "upsert",
                   "projectKey": "ASSET", "issueType": "Task", "summary": summary,
                   "fields": {"customfield_10050": format!("web-{c}")}, "priority": "bulk"})
        };
        events.push((upsert(format!("Server web-{c} in service")), 2));
        if c % 2 == 0 {
            events.push((upsert(format!("Server web-{c} decommissioned")), 1));
        }
    }
    events
}

/// The demo's policy: alerts resolve their own incidents; any other
/// transition waits for the change manager.
const POLICY: &str = r#"
approvers = ["change-manager@example.com"]

[[rules]]
name = "alerts resolve their own incidents"
sources = ["alertmanager"]
operations = ["transition"]
decision = "approve"
"#;

pub async fn run(opts: DemoOptions) -> anyhow::Result<DemoSummary> {
    let dir = std::env::temp_dir().join(format!(
        "tollgate-demo-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir).context("cannot create a temporary directory")?;
    let result = run_in(&dir, opts).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_in(dir: &std::path::Path, opts: DemoOptions) -> anyhow::Result<DemoSummary> {
    let secret = Secret::new(format!("demo-{}", fastrand::u64(..)));
    let config = ServeConfig {
        operator_tokens: Vec::new(),
        listen: "127.0.0.1:0".parse()?,
        db: PathBuf::from(dir).join("demo.db"),
        jira: JiraTarget::InProcessSim,
        webhook_secrets: vec![secret.clone()],
        workers: opts.workers,
        visibility_timeout: Duration::from_secs(30),
        lease_ttl: Duration::from_secs(30),
        jira_timeout: Duration::from_secs(10),
        sim_latency: opts.sim_latency,
        approvals: ApprovalSettings {
            policy: Policy::parse(POLICY)?,
            ..Default::default()
        },
        followups: Default::default(),
        bulk_create: tollgate::ports::MAX_BULK_CREATE,
        intake: Default::default(),
        retry_cap: tollgate::domain::backoff::DEFAULT_RETRY_CAP,
    };
    let running = stack::start(config).await?;
    let base = format!("http://{}", running.addr);
    let started = Instant::now();

    // Every delivery, interleaved so redeliveries arrive close together.
    let mut deliveries: Vec<Vec<u8>> = Vec::new();
    for (event, times) in workload(opts.alerts) {
        let body = serde_json::to_vec(&event)?;
        deliveries.extend(std::iter::repeat_n(body, times));
    }
    fastrand::shuffle(&mut deliveries);

    let bar = if opts.progress {
        ProgressBar::new(deliveries.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len}")?.progress_chars("=> "),
    );
    bar.set_message("sending");

    let http = reqwest::Client::new();
    let mut summary = DemoSummary {
        deliveries: deliveries.len(),
        ..Default::default()
    };
    let mut job_ids = BTreeSet::new();
    let mut in_flight = tokio::task::JoinSet::new();
    let mut pending = deliveries.into_iter();
    loop {
        while in_flight.len() < 8 {
            let Some(body) = pending.next() else { break };
            let (http, url, secret) = (http.clone(), format!("{base}/v1/events"), secret.clone());
            in_flight.spawn(async move { send(&http, &url, &secret, body).await });
        }
        let Some(answer) = in_flight.join_next().await else {
            break;
        };
        let answer = answer??;
        if answer["duplicate"] == true {
            summary.duplicates_suppressed += 1;
        }
        if let Some(id) = answer["jobId"].as_str() {
            job_ids.insert(id.to_string());
        }
        bar.inc(1);
    }

    summary.jobs = job_ids.len();
    // The change manager opens the link from the notification and approves.
    summary.approval_links = approve_waiting(&running, &secret, &http).await?;
    bar.set_position(0);
    bar.set_length(job_ids.len() as u64);
    bar.set_message("executing");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut open: Vec<String> = job_ids.into_iter().collect();
    while !open.is_empty() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "jobs did not finish within 2 minutes: {open:?}"
        );
        let mut still = Vec::new();
        for id in open {
            let job: Value = http
                .get(format!("{base}/v1/jobs/{id}"))
                .send()
                .await?
                .json()
                .await?;
            match job["state"].as_str() {
                Some("SUCCEEDED") | Some("SUPERSEDED") => summary.succeeded += 1,
                Some("FAILED") | Some("EXHAUSTED") | Some("DENIED") | Some("EXPIRED")
                | Some("REJECTED") => {
                    summary.failed += 1;
                    tracing::warn!(job = %id, error = %job["lastError"], "job did not succeed");
                }
                _ => {
                    still.push(id);
                    continue;
                }
            }
            bar.inc(1);
        }
        open = still;
        if !open.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    bar.finish_and_clear();
    summary.elapsed = started.elapsed();

    let report = match &running.sim {
        Some(sim) => sim.report(),
        None => Value::Null,
    };
    let totals = &report["totals"];
    let n = |k: &str| totals[k].as_u64().unwrap_or(0);
    summary.issues_created = n("issues");
    summary.duplicate_issues = n("duplicateIssues");
    summary.duplicate_comments = n("duplicateComments");
    summary.comments = n("comments");
    summary.transitions = n("transitions");
    summary.edits = n("edits");
    summary.jira_requests = n("requests");
    running.shutdown().await;
    Ok(summary)
}

/// Approves every waiting request through its signed link, as a person
/// pressing Approve on the page would; returns the links.
async fn approve_waiting(
    running: &stack::Running,
    secret: &Secret,
    http: &reqwest::Client,
) -> anyhow::Result<Vec<String>> {
    let key = derive_link_key(secret);
    let deadline = Instant::now() + Duration::from_secs(10);
    let waiting = loop {
        let open = running.db.open_approvals(10).await?;
        if !open.is_empty() || Instant::now() > deadline {
            break open;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut links = Vec::new();
    for a in waiting {
        let approver = a.approvers.first().cloned().unwrap_or_default();
        let token = sign_link(
            &key,
            &LinkClaim {
                approval: a.id.clone(),
                decision: Decision::Approve,
                approver,
                expires: a.expires_at,
            },
        );
        let link = format!("{}/v1/approvals/{token}", running.public_url);
        let page = http.get(&link).send().await?;
        anyhow::ensure!(
            page.status() == 200,
            "approval page answered {}",
            page.status()
        );
        let decided = http.post(&link).send().await?;
        anyhow::ensure!(
            decided.status() == 200,
            "approval answered {}",
            decided.status()
        );
        links.push(link);
    }
    Ok(links)
}

async fn send(
    http: &reqwest::Client,
    url: &str,
    secret: &Secret,
    body: Vec<u8>,
) -> anyhow::Result<Value> {
    let t = crate::signing::signing_time(&body);
    let resp = http
        .post(url)
        .header("Content-Type", "application/json")
        .header(signature::HEADER, signature::sign(secret, t, &body))
        .body(body)
        .send()
        .await?;
    let status = resp.status();
    let answer: Value = resp.json().await?;
    anyhow::ensure!(
        status.as_u16() == 202,
        "event refused with {status}: {answer}"
    );
    Ok(answer)
}
