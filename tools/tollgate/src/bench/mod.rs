//! `tollgate bench`: the same workload through tollgate's real pipeline and
//! through the clients a user would otherwise write, against jira-sim with a
//! chosen limit profile, side by side in one run.
//!
//! For each client: makespan, the ideal makespan the limits allow (see
//! [`ideal`]), goodput (ideal ÷ makespan), requests sent, 429s, points per
//! event, duplicate issues, events lost, and the p95 latency of
//! `interactive` events while `bulk` work runs.

pub mod baseline;
pub mod ideal;
pub mod nightly;
pub mod profiles;

pub use profiles::Profile;

use crate::config::{JiraTarget, ServeConfig};
use crate::stack;
use anyhow::Context;
use baseline::Baseline;
use ideal::ideal_makespan;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use jira_sim::limits::Limits;
use profiles::spec;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tollgate::adapters::jira::{JiraAuth, JiraClient};
use tollgate::domain::ids::JobId;
use tollgate::domain::job::JobState;
use tollgate::domain::secret::Secret;
use tollgate::domain::signature;
use tollgate::ports::{JobStore, Tracker};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Client {
    Tollgate,
    Naive,
    Fixed3,
    AtlassianBackoff,
    AwsAdaptive,
}

impl Client {
    pub const ALL: [Client; 5] = [
        Client::Tollgate,
        Client::Naive,
        Client::Fixed3,
        Client::AtlassianBackoff,
        Client::AwsAdaptive,
    ];

    fn name(self) -> &'static str {
        match self {
            Client::Tollgate => "tollgate",
            Client::Naive => Baseline::Naive.name(),
            Client::Fixed3 => Baseline::Fixed3.name(),
            Client::AtlassianBackoff => Baseline::AtlassianBackoff.name(),
            Client::AwsAdaptive => Baseline::AwsAdaptive.name(),
        }
    }
}

pub struct BenchOptions {
    pub profiles: Vec<Profile>,
    pub clients: Vec<Client>,
    /// Workers of the tollgate pipeline (as a Lambda deployment's concurrency).
    pub workers: usize,
    /// Simulated Jira latency per call.
    pub latency: Duration,
    pub progress: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunResult {
    pub profile: String,
    pub client: String,
    pub events: usize,
    pub deliveries: usize,
    pub makespan_s: f64,
    pub ideal_s: f64,
    /// None when the client lost events: its makespan is then the time it
    /// took to give up, not to do the work.
    pub goodput: Option<f64>,
    pub requests: u64,
    pub throttled: u64,
    pub throttled_pct: f64,
    pub throttled_by_reason: Value,
    pub points_per_event: f64,
    pub duplicates: u64,
    pub lost: usize,
    pub p95_interactive_s: Option<f64>,
    /// Profiles whose limits change: the longest time from a change until
    /// two seconds passed without a 429.
    pub settle_s: Option<f64>,
    pub window_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nightly: Option<nightly::NightlyFigures>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn p95(mut xs: Vec<f64>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let idx = ((xs.len() as f64) * 0.95).ceil() as usize;
    Some(xs[idx.saturating_sub(1).min(xs.len() - 1)])
}

/// Runs every requested client on every requested profile.
pub async fn run(opts: &BenchOptions) -> anyhow::Result<Vec<RunResult>> {
    let multi = if opts.progress {
        MultiProgress::new()
    } else {
        MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden())
    };
    let mut results = Vec::new();
    for &profile in &opts.profiles {
        if profile == Profile::NightlySync {
            let bar = |name: &str| {
                let bar = multi.add(ProgressBar::new(0));
                if let Ok(style) =
                    ProgressStyle::with_template("{prefix:>28} [{bar:30}] {pos}/{len} {elapsed}")
                {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar.set_prefix(format!("nightly-sync / {name}"));
                bar
            };
            results.extend(nightly::run(&opts.clients, opts.workers, opts.latency, &bar).await?);
            continue;
        }
        for &client in &opts.clients {
            let bar = multi.add(ProgressBar::new(0));
            bar.set_style(
                ProgressStyle::with_template("{prefix:>28} [{bar:30}] {pos}/{len} {elapsed}")?
                    .progress_chars("=> "),
            );
            bar.set_prefix(format!("{} / {}", profile.name(), client.name()));
            let r = run_one(profile, client, opts, bar.clone())
                .await
                .with_context(|| format!("{} on {}", client.name(), profile.name()))?;
            bar.finish();
            results.push(r);
        }
    }
    Ok(results)
}

async fn run_one(
    profile: Profile,
    client: Client,
    opts: &BenchOptions,
    bar: ProgressBar,
) -> anyhow::Result<RunResult> {
    let spec = spec(profile).context("nightly-sync runs through bench::nightly")?;
    // The issues the workload targets are created with every limit off;
    // the profile's limits apply from the run's start.
    let sim_config = jira_sim::SimConfig {
        latency: opts.latency,
        limits: Limits::default(),
        ..Default::default()
    };
    let (addr, sim, sim_task) = jira_sim::spawn(sim_config, "127.0.0.1:0".parse()?).await?;
    let url = format!("http://{addr}");
    let auth = JiraAuth::Basic {
        email: "sim@example.com".into(),
        api_token: Secret::new("sim-token"),
    };
    let jira = Arc::new(JiraClient::new(
        &url,
        auth.clone(),
        Duration::from_secs(10),
    )?);
    for i in 0..spec.setup_issues {
        let fields = json!({"project": {"key": "OPS"}, "issuetype": {"name": "Task"}, "summary": format!("Hot issue {i}")});
        jira.create_issue(fields.as_object().context("fields")?, &[])
            .await
            .map_err(|e| anyhow::anyhow!("setup: {e}"))?;
    }
    sim.set_limits(spec.limits.clone());
    // Start every client at the same phase of the quota window.
    if spec.limits.quota_points > 0 {
        let w = spec.limits.window_seconds;
        let into = unix_now() % w;
        tokio::time::sleep(Duration::from_secs_f64(w - into + 0.05)).await;
    }
    let (setup_throttled, setup_points) = sim.counters();
    let setup_requests = sim.report()["totals"]["requests"].as_u64().unwrap_or(0);
    let start_unix = unix_now();
    // A perfect client still waits one answer for its last call.
    let ideal = ideal_makespan(&spec.needs, &spec.limits, start_unix, &spec.shifts)
        + opts.latency.as_secs_f64();

    // Samples 429s over time (for the settle time after a change of
    // limits), and applies the changes.
    let throttle_times = Arc::new(std::sync::Mutex::new(Vec::<f64>::new()));
    let sampler = {
        let sim = sim.clone();
        let throttle_times = throttle_times.clone();
        let shifts: Vec<(f64, Limits)> = spec
            .shifts
            .iter()
            .map(|s| (s.at, s.limits.clone()))
            .collect();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut seen = sim.counters().0;
            let mut applied = 0;
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let t = started.elapsed().as_secs_f64();
                if let Some((at, limits)) = shifts.get(applied)
                    && t >= *at
                {
                    sim.set_limits(limits.clone());
                    applied += 1;
                }
                let (throttled, _) = sim.counters();
                if throttled > seen {
                    throttle_times
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(t);
                    seen = throttled;
                }
            }
        })
    };

    let deliveries: Vec<(Value, bool)> = {
        let mut d: Vec<(Value, bool)> = Vec::new();
        for e in &spec.events {
            for _ in 0..e.deliveries {
                d.push((e.body.clone(), e.interactive));
            }
        }
        fastrand::shuffle(&mut d);
        d
    };
    let delivered = deliveries.len();
    let started = Instant::now();
    let (makespan, lost, latencies) = match client {
        Client::Tollgate => run_tollgate(&url, auth, deliveries, opts.workers, &bar).await?,
        other => {
            let baseline = match other {
                Client::Naive => Baseline::Naive,
                Client::Fixed3 => Baseline::Fixed3,
                Client::AwsAdaptive => Baseline::AwsAdaptive,
                _ => Baseline::AtlassianBackoff,
            };
            bar.set_length(delivered as u64);
            // Which deliveries belong to which event, to count lost events.
            let keys: Vec<String> = deliveries
                .iter()
                .map(|(v, _)| v["externalId"].to_string())
                .collect();
            let r = baseline::run(baseline, jira.clone(), deliveries, bar.clone()).await;
            let makespan = r
                .outcomes
                .iter()
                .map(|o| o.1)
                .max()
                .unwrap_or_default()
                .as_secs_f64();
            let mut ok_by_event: BTreeMap<&str, bool> = BTreeMap::new();
            for (k, o) in keys.iter().zip(&r.outcomes) {
                *ok_by_event.entry(k).or_default() |= o.2;
            }
            let lost = ok_by_event.values().filter(|ok| !**ok).count();
            let latencies = r
                .outcomes
                .iter()
                .filter(|o| o.0 && o.2)
                .map(|o| o.1.as_secs_f64())
                .collect();
            (makespan, lost, latencies)
        }
    };
    let _ = started;
    sampler.abort();
    let throttle_times = throttle_times
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let report = sim.report();
    sim_task.abort();
    let totals = &report["totals"];
    let requests = totals["requests"].as_u64().unwrap_or(0) - setup_requests;
    let (throttled_now, points_now) = sim.counters();
    let throttled = throttled_now - setup_throttled;
    let points = points_now - setup_points;
    let changes: Vec<f64> = spec.shifts.iter().map(|s| s.at).collect();
    let settle_s = (!changes.is_empty()).then(|| settle_time(&changes, &throttle_times));
    Ok(RunResult {
        profile: profile.name().into(),
        client: client.name().into(),
        events: spec.events.len(),
        deliveries: delivered,
        makespan_s: makespan,
        ideal_s: ideal,
        goodput: (makespan > 0.0 && lost == 0).then(|| ideal / makespan),
        requests,
        throttled,
        throttled_pct: if requests > 0 {
            100.0 * throttled as f64 / requests as f64
        } else {
            0.0
        },
        throttled_by_reason: report["throttledByReason"].clone(),
        points_per_event: points as f64 / spec.events.len() as f64,
        duplicates: totals["duplicateIssues"].as_u64().unwrap_or(0)
            + totals["duplicateComments"].as_u64().unwrap_or(0),
        lost,
        p95_interactive_s: p95(latencies),
        settle_s,
        window_s: spec.limits.window_seconds,
        nightly: None,
    })
}

/// For each change of limits (seconds into the run), the time until the
/// first two seconds without a 429 began; the longest of them.
fn settle_time(changes: &[f64], throttles: &[f64]) -> f64 {
    changes
        .iter()
        .map(|&at| {
            let mut quiet_from = at;
            for &t in throttles.iter().filter(|&&t| t >= at) {
                if t - quiet_from >= 2.0 {
                    break;
                }
                quiet_from = t;
            }
            quiet_from - at
        })
        .fold(0.0, f64::max)
}

/// Sends every delivery to a real tollgate stack and waits for every job.
/// Returns (makespan, lost events, interactive latencies).
async fn run_tollgate(
    url: &str,
    auth: JiraAuth,
    deliveries: Vec<(Value, bool)>,
    workers: usize,
    bar: &ProgressBar,
) -> anyhow::Result<(f64, usize, Vec<f64>)> {
    let (running, secret, dir) = start_stack("bench", url, auth, workers).await?;
    let start = tollgate::ports::SystemClock;
    let t0 = tollgate::ports::Clock::now(&start);
    let base = format!("http://{}/v1/events", running.addr);
    let http = reqwest::Client::new();
    let mut senders = tokio::task::JoinSet::new();
    let chunks: Vec<Vec<(Value, bool)>> = {
        let per = deliveries.len().div_ceil(16).max(1);
        deliveries.chunks(per).map(<[_]>::to_vec).collect()
    };
    for chunk in chunks {
        let (http, base, secret) = (http.clone(), base.clone(), secret.clone());
        senders.spawn(async move {
            let mut ids = Vec::new();
            for (event, _) in chunk {
                let body = serde_json::to_vec(&event)?;
                // As webhook senders do: a failed delivery is sent again
                // (the same body; tollgate deduplicates it).
                let mut tries = 0;
                let id = loop {
                    tries += 1;
                    let t = crate::signing::signing_time(&body);
                    let sent = http
                        .post(&base)
                        .header("Content-Type", "application/json")
                        .header(signature::HEADER, signature::sign(&secret, t, &body))
                        .body(body.clone())
                        .send()
                        .await;
                    let answer = match sent {
                        Ok(resp) => resp.json::<Value>().await.ok(),
                        Err(_) => None,
                    };
                    match answer.as_ref().and_then(|a| a["jobId"].as_str()) {
                        Some(id) => break id.to_string(),
                        None if tries < 5 => {
                            eprintln!(
                                "bench: delivery {tries} not accepted ({answer:?}); sending again"
                            );
                            tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                        }
                        None => anyhow::bail!("a delivery was refused five times: {answer:?}"),
                    }
                };
                ids.push(id);
            }
            anyhow::Ok(ids)
        });
    }
    let mut jobs: Vec<String> = Vec::new();
    while let Some(r) = senders.join_next().await {
        jobs.extend(r??);
    }
    jobs.sort();
    jobs.dedup();
    bar.set_length(jobs.len() as u64);
    let ids: Vec<JobId> = jobs.iter().filter_map(|j| JobId::parse(j)).collect();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let counts = running.db.state_counts().await?;
        let done: u64 = counts
            .iter()
            .filter(|(s, _)| s.is_terminal())
            .map(|(_, n)| n)
            .sum();
        bar.set_position(done);
        if done as usize >= ids.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut end = t0;
    let mut lost = 0;
    let mut latencies = Vec::new();
    for id in &ids {
        let Some(job) = running.db.job(id).await? else {
            continue;
        };
        if job.state == JobState::Succeeded {
            end = end.max(job.updated_at);
            if job.priority == tollgate::domain::event::Priority::Interactive {
                latencies.push((job.updated_at.0 - job.created_at.0) as f64 / 1000.0);
            }
        } else {
            lost += 1;
        }
    }
    if std::env::var_os("TOLLGATE_BENCH_TRAILS").is_some() {
        // The slowest jobs' audit trails, for finding where time went.
        let mut slow = Vec::new();
        for id in &ids {
            if let Some(job) = running.db.job(id).await? {
                slow.push((job.updated_at.0 - job.created_at.0, id.clone()));
            }
        }
        slow.sort_by_key(|(ms, _)| std::cmp::Reverse(*ms));
        for (ms, id) in slow.iter().take(3) {
            eprintln!("job {id}: {ms} ms");
            for e in running.db.audit_trail(id).await? {
                eprintln!("  {} {:?} {}", e.at, e.stage, e.outcome);
            }
        }
    }
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(((end.0 - t0.0) as f64 / 1000.0, lost, latencies))
}

/// `serve`'s stack in this process on a fresh database in a scratch
/// directory (removed by the caller), against the Jira at `url`, with a
/// random webhook secret.
pub(crate) async fn start_stack(
    name: &str,
    url: &str,
    auth: JiraAuth,
    workers: usize,
) -> anyhow::Result<(stack::Running, Secret, PathBuf)> {
    let dir = std::env::temp_dir().join(format!(
        "tollgate-{name}-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir)?;
    let secret = Secret::new(format!("bench-{}", fastrand::u64(..)));
    let running = stack::start(ServeConfig {
        operator_tokens: Vec::new(),
        listen: "127.0.0.1:0".parse()?,
        db: dir.join(format!("{name}.db")),
        jira: JiraTarget::Site {
            url: url.to_string(),
            auth,
        },
        webhook_secrets: vec![secret.clone()],
        workers,
        visibility_timeout: Duration::from_secs(30),
        lease_ttl: Duration::from_secs(30),
        jira_timeout: Duration::from_secs(10),
        sim_latency: Duration::ZERO,
        approvals: Default::default(),
        followups: Default::default(),
        bulk_create: tollgate::ports::MAX_BULK_CREATE,
        intake: Default::default(),
        retry_cap: tollgate::domain::backoff::DEFAULT_RETRY_CAP,
    })
    .await?;
    Ok((running, secret, dir))
}

/// The results as a Markdown table per profile.
pub fn markdown(results: &[RunResult]) -> String {
    let mut out = String::new();
    let mut profiles: Vec<&str> = results.iter().map(|r| r.profile.as_str()).collect();
    profiles.dedup();
    for p in profiles {
        let rows: Vec<&RunResult> = results.iter().filter(|r| r.profile == p).collect();
        let first = rows[0];
        if let Some(n) = &first.nightly {
            out.push_str(&format!(
                "\n### {p} — {} events ({} valid, {} invalid), as batches of 1,000\n\n",
                first.events, n.valid_events, n.invalid_sent
            ));
            out.push_str("| client | makespan s | ideal s | requests | calls/event | points/event | create calls/create | edit calls/updated issue | 429s | duplicates | lost | invalid reported |\n");
            out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
            for r in &rows {
                let Some(n) = &r.nightly else { continue };
                out.push_str(&format!(
                    "| {} | {:.1} | {:.1} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} | {} | {}/{} |\n",
                    r.client,
                    r.makespan_s,
                    r.ideal_s,
                    r.requests,
                    n.calls_per_event,
                    r.points_per_event,
                    n.create_calls_per_create,
                    n.edit_calls_per_updated_issue,
                    r.throttled,
                    r.duplicates,
                    r.lost,
                    n.invalid_reported,
                    n.invalid_sent,
                ));
            }
            continue;
        }
        out.push_str(&format!(
            "\n### {p} — {} events, {} deliveries\n\n",
            first.events, first.deliveries
        ));
        out.push_str("| client | makespan s | ideal s | goodput | requests | 429s | 429 % | points/event | duplicates | lost | p95 interactive s |");
        if first.settle_s.is_some() {
            out.push_str(" settled after s |");
        }
        out.push_str("\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        if first.settle_s.is_some() {
            out.push_str("---:|");
        }
        out.push('\n');
        for r in rows {
            out.push_str(&format!(
                "| {} | {:.1} | {:.1} | {} | {} | {} | {:.1} | {:.2} | {} | {} | {} |",
                r.client,
                r.makespan_s,
                r.ideal_s,
                r.goodput
                    .map_or("— (lost events)".to_string(), |g| format!("{g:.2}")),
                r.requests,
                r.throttled,
                r.throttled_pct,
                r.points_per_event,
                r.duplicates,
                r.lost,
                r.p95_interactive_s
                    .map_or("-".into(), |v| format!("{v:.2}")),
            ));
            if let Some(s) = r.settle_s {
                out.push_str(&format!(" {s:.1} |"));
            }
            out.push('\n');
        }
    }
    out
}

/// The targets of the pacing profiles, met or not, from one run.
pub fn summary(results: &[RunResult]) -> String {
    let strict = [
        "undocumented-burst",
        "comment-storm",
        "burst-shift",
        "hot-issue",
    ];
    let rough = ["noise", "faults"];
    let mut out = String::from(
        "\n## Targets\n\n\
         | profile | tollgate 429 % (target ≤ 1) | 429s vs atlassian-backoff (target ≥ 98 % fewer) | goodput (target) | settled after s (target ≤ 2) | duplicates, lost |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    let mark = |ok: bool| if ok { "" } else { " ✗" };
    for p in strict.iter().chain(&rough) {
        let Some(t) = results
            .iter()
            .find(|r| r.profile == *p && r.client == "tollgate")
        else {
            continue;
        };
        let is_strict = strict.contains(p);
        let pct = if is_strict {
            format!("{:.1}{}", t.throttled_pct, mark(t.throttled_pct <= 1.0))
        } else {
            format!("{:.1} (noise injected)", t.throttled_pct)
        };
        let versus = results
            .iter()
            .find(|r| r.profile == *p && r.client == "atlassian-backoff")
            .map_or("—".to_string(), |a| {
                if a.throttled == 0 {
                    format!("{} vs 0", t.throttled)
                } else {
                    let fewer = 100.0 * (1.0 - t.throttled as f64 / a.throttled as f64);
                    format!(
                        "{} vs {}: {fewer:.0} % fewer{}",
                        t.throttled,
                        a.throttled,
                        mark(!is_strict || fewer >= 98.0)
                    )
                }
            });
        let target = if is_strict { 0.95 } else { 0.8 };
        let goodput = t.goodput.map_or("— (lost events) ✗".to_string(), |g| {
            format!("{g:.2} (≥ {target}){}", mark(g >= target))
        });
        let settle = t
            .settle_s
            .map_or("—".to_string(), |s| format!("{s:.1}{}", mark(s <= 2.0)));
        out.push_str(&format!(
            "| {p} | {pct} | {versus} | {goodput} | {settle} | {}, {}{} |\n",
            t.duplicates,
            t.lost,
            mark(t.duplicates == 0 && t.lost == 0)
        ));
    }
    out.push_str("\n✗ marks a target missed; the note under the tables says why.\n");
    out
}

/// Everything from this line on in the benchmarks document is kept when the
/// bench rewrites it (other measurements live there).
pub const DOC_TAIL_MARKER: &str = "<!-- end of tollgate bench output; kept below: -->";

pub fn write_doc(path: &PathBuf, command: &str, results: &[RunResult]) -> anyhow::Result<()> {
    let tail = std::fs::read_to_string(path)
        .ok()
        .and_then(|old| old.find(DOC_TAIL_MARKER).map(|i| old[i..].to_string()))
        .unwrap_or_else(|| format!("{DOC_TAIL_MARKER}\n"));
    let text = format!(
        "# Benchmarks\n\nProduced by `{command}`, one run of one release binary; every table below comes from it.\n\n\
         Each profile runs every client against a fresh jira-sim with the profile's limits (the issues it targets are\n\
         created first, with limits off), starting at the same phase of the quota window. Every profile mixes creates with\n\
         writes that cannot be bulked or folded: comments, edits and transitions of existing issues, each event its own\n\
         entity. *ideal* is the physical limit: the makespan of a perfect client that knows every limit and makes the\n\
         cheapest calls they allow — creates in bulk (50 a call), one call per edit, comment and transition — plus one\n\
         answer's latency (see `tools/tollgate/src/bench/ideal.rs`); no client can beat it. *goodput* is ideal ÷ makespan,\n\
         shown only for clients that lost nothing (a client that drops work finishes early without having done it).\n\
         *settled after* (profiles whose limits change) is the longest time from a change until two seconds passed\n\
         without a 429. *lost* counts events that never reached Jira; *duplicates* counts extra issues and comments\n\
         Jira holds for one event. One create in ten is delivered twice, as webhook senders do; one event in ten is\n\
         `interactive`, the rest `bulk`.\n\n\
         The baselines: `naive` retries a refused call at once (20 concurrent); `fixed3` is the forum's advice (3\n\
         concurrent, sleep Retry-After); `atlassian-backoff` is Atlassian's published per-request algorithm (Retry-After\n\
         as the minimum, else doubling from 2 s with jitter, 4 retries); `aws-adaptive` is the AWS SDKs' `adaptive`\n\
         retry mode (a client-side token bucket whose rate follows CUBIC on throttles, 3 attempts, 20 concurrent). None\n\
         deduplicates.\n{}\n{}\n{tail}",
        summary(results),
        markdown(results)
    );
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
