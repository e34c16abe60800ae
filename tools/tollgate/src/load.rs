//! `tollgate load`: how much a `serve` process takes in. A real `serve`
//! child process (this same binary) on loopback, a Jira whose points quota
//! is spent for the hour so every admitted job stays held, and N signed
//! events sent by C concurrent senders. Reports accepted events per second,
//! ingest latency percentiles, and the peak resident memory of the `serve`
//! process while it holds every job (read from `/proc/<pid>/status`).

use anyhow::{Context, bail};
use indicatif::ProgressBar;
use serde::Serialize;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tollgate::adapters::sqlite::SqliteDb;
use tollgate::domain::secret::Secret;
use tollgate::domain::signature;

pub struct LoadOptions {
    pub events: usize,
    pub concurrency: usize,
    pub workers: usize,
    pub progress: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadResult {
    pub events: usize,
    pub concurrency: usize,
    pub accepted: usize,
    pub seconds: f64,
    pub accepted_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Peak resident set of the `serve` process (VmHWM), MiB.
    pub peak_rss_mib: f64,
    /// Jobs the store holds after the run (all must be there).
    pub jobs_held: u64,
    pub lost: usize,
}

/// Reads `VmHWM` (peak resident set) of a process, in MiB.
fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("reading /proc/<pid>/status (Linux only)")?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM line")?;
    Ok(kb / 1024.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[idx.saturating_sub(1).min(sorted.len() - 1)]
}

pub async fn run(opts: &LoadOptions) -> anyhow::Result<LoadResult> {
    // A Jira whose quota is spent for the (scaled) hour after one call: the
    // governor holds every job, so `serve` ends up holding all of them.
    let sim_config = jira_sim::SimConfig {
        limits: jira_sim::limits::Limits {
            quota_points: 1,
            window_seconds: 3600.0,
            ..Default::default()
        },
        ..Default::default()
    };
    let (sim_addr, _sim, sim_task) = jira_sim::spawn(sim_config, "127.0.0.1:0".parse()?).await?;
    let dir = std::env::temp_dir().join(format!(
        "tollgate-load-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir)?;
    let db_path = dir.join("load.db");
    let secret = format!("load-{}", fastrand::u64(..));
    let mut child = Command::new(std::env::current_exe()?)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--jira-url", &format!("http://{sim_addr}")])
        .arg("--db")
        .arg(&db_path)
        .args(["--workers", &opts.workers.to_string()])
        .env("TOLLGATE_WEBHOOK_SECRET", &secret)
        .env("TOLLGATE_JIRA_EMAIL", "sim@example.com")
        .env("TOLLGATE_JIRA_API_TOKEN", "sim-token")
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start tollgate serve")?;
    let pid = child.id();
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let Some(line) = lines.next() else {
            bail!("serve exited before it was ready");
        };
        if let Some(rest) = line?.strip_prefix("tollgate listening on ") {
            break rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});

    let bar = if opts.progress {
        ProgressBar::new(opts.events as u64)
    } else {
        ProgressBar::hidden()
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(opts.concurrency)
        .build()?;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let secret = Secret::new(secret);
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..opts.concurrency {
        let (http, base, secret, next, bar) = (
            http.clone(),
            base.clone(),
            secret.clone(),
            next.clone(),
            bar.clone(),
        );
        let total = opts.events;
        senders.spawn(async move {
            let mut latencies = Vec::new();
            let mut accepted = 0usize;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let body = serde_json::to_vec(&json!({
                    "sourceSystem": "load", "externalId": format!("ev-{i:06}"), "desiredOperation": "create",
                    "projectKey": "OPS", "issueType": "Task", "summary": format!("Load event {i}"),
                    "priority": "bulk"
                }))?;
                let t = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
                let sent = Instant::now();
                let resp = http
                    .post(format!("{base}/v1/events"))
                    .header("Content-Type", "application/json")
                    .header(signature::HEADER, signature::sign(&secret, t, &body))
                    .body(body)
                    .send()
                    .await?;
                let ok = resp.status().as_u16() == 202;
                let _ = resp.bytes().await?;
                latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                accepted += usize::from(ok);
                bar.inc(1);
            }
            anyhow::Ok((latencies, accepted))
        });
    }
    let mut latencies = Vec::with_capacity(opts.events);
    let mut accepted = 0;
    while let Some(r) = senders.join_next().await {
        let (l, a) = r??;
        latencies.extend(l);
        accepted += a;
    }
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    // Let the workers take their first look at everything, then measure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let peak = peak_rss_mib(pid)?;
    let db = SqliteDb::open(&db_path)?;
    let jobs_held: u64 = db.state_counts().await?.iter().map(|(_, n)| n).sum();
    let _ = child.kill();
    let _ = child.wait();
    sim_task.abort();
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
    latencies.sort_by(f64::total_cmp);
    Ok(LoadResult {
        events: opts.events,
        concurrency: opts.concurrency,
        accepted,
        seconds,
        accepted_per_second: accepted as f64 / seconds,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: latencies.last().copied().unwrap_or(0.0),
        peak_rss_mib: peak,
        jobs_held,
        lost: opts.events.saturating_sub(jobs_held as usize),
    })
}

impl LoadResult {
    pub fn markdown(&self) -> String {
        format!(
            "| events | senders | accepted | seconds | accepted/s | p50 ms | p99 ms | max ms | peak RSS of serve | jobs held | lost |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n\
             | {} | {} | {} | {:.1} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} MiB | {} | {} |\n",
            self.events,
            self.concurrency,
            self.accepted,
            self.seconds,
            self.accepted_per_second,
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.peak_rss_mib,
            self.jobs_held,
            self.lost
        )
    }
}
