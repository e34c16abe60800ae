//! `tollgate`: run the single-machine stack, the demo, and operator commands.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tollgate::adapters::sqlite::SqliteDb;
use tollgate::app::approvals::{Approvals, DecideOutcome, Links};
use tollgate::app::ingest::{Discard, Ingest, IngestOutcome, Resubmission};
use tollgate::app::jobs::get_job;
use tollgate::domain::approval::{ApprovalId, ApprovalStatus, Decision};
use tollgate::domain::event::Event;
use tollgate::domain::job::JobState;
use tollgate::domain::policy::{Policy, PolicyDecision};
use tollgate::domain::rejection::RejectionId;
use tollgate::domain::validation::{parse_event, validate_event};
use tollgate::ports::{ApprovalStore, Clock, JobStore, RejectionStore, SystemClock};
use tollgate_cli::config::{self, FileConfig, Overrides};
use tollgate_cli::telemetry::{self, LogFormat};
use tollgate_cli::{demo, stack};

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "Governed, rate-limit-aware execution of events against Jira Cloud"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the single-machine stack: HTTP ingest + worker pool on SQLite.
    Serve(Box<ServeArgs>),
    /// Run the stack on the built-in simulator with a realistic mix of events.
    Demo {
        /// How many alerts to fire (each delivered 2-3 times).
        #[arg(long, default_value_t = 12)]
        alerts: usize,
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// Simulated Jira latency per call, in milliseconds.
        #[arg(long, default_value_t = 25)]
        latency_ms: u64,
        /// No progress bar (for logs and CI).
        #[arg(long)]
        quiet: bool,
    },
    /// Drive the same workload through tollgate and baseline clients against
    /// jira-sim limit profiles, side by side.
    Bench {
        /// Profiles to run (default: every one but smoke, chaos and nightly-sync).
        #[arg(long = "profile", value_enum)]
        profiles: Vec<tollgate_cli::bench::Profile>,
        /// Clients to run (default: all).
        #[arg(long = "client", value_enum)]
        clients: Vec<tollgate_cli::bench::Client>,
        /// tollgate workers, as a Lambda deployment's concurrency.
        #[arg(long, default_value_t = 20)]
        workers: usize,
        /// Simulated Jira latency per call, milliseconds.
        #[arg(long, default_value_t = 20)]
        latency_ms: u64,
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
        /// Write the results table into this Markdown file.
        #[arg(long)]
        write_doc: Option<PathBuf>,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
    },
    /// Load-test a `serve` process on loopback: signed events as fast as it
    /// takes them, every job held (Jira's quota spent); accepted events per
    /// second, ingest latency, peak memory of serve.
    Load {
        #[arg(long, default_value_t = 20_000)]
        events: usize,
        /// Concurrent senders.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value_t = 4)]
        workers: usize,
        #[arg(long)]
        json: bool,
        #[arg(long)]
        quiet: bool,
    },
    /// Inspect jobs in a database.
    Jobs {
        #[arg(long, env = "TOLLGATE_DB", default_value = config::DEFAULT_DB)]
        db: PathBuf,
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// Approval requests waiting in a database.
    Approvals {
        #[arg(long, env = "TOLLGATE_DB", default_value = config::DEFAULT_DB)]
        db: PathBuf,
        #[command(subcommand)]
        command: ApprovalsCommand,
    },
    /// The manual queue: events refused as invalid, kept with their reasons.
    Rejected {
        #[arg(long, env = "TOLLGATE_DB", default_value = config::DEFAULT_DB)]
        db: PathBuf,
        #[command(subcommand)]
        command: RejectedCommand,
    },
    /// Jira sites: pause, paces, degraded mode and its trail.
    Sites {
        #[arg(long, env = "TOLLGATE_DB", default_value = config::DEFAULT_DB)]
        db: PathBuf,
        #[command(subcommand)]
        command: Option<SitesCommand>,
    },
    /// Hotspots: Jira requests, 429s by reason and endpoint, points per
    /// operation, the issues throttled most.
    Stats {
        #[arg(long, env = "TOLLGATE_DB", default_value = config::DEFAULT_DB)]
        db: PathBuf,
        /// How many hourly windows, counting back from this one.
        #[arg(long, default_value_t = 24)]
        hours: u32,
        /// Print the figures as JSON (as `GET /v1/stats` answers).
        #[arg(long)]
        json: bool,
    },
    /// Batches (bulk sync runs): progress, pause, resume.
    Batches {
        #[arg(long, env = "TOLLGATE_DB", default_value = config::DEFAULT_DB)]
        db: PathBuf,
        #[command(subcommand)]
        command: BatchesCommand,
    },
    /// Approve a waiting request as an operator (recorded as such).
    Approve(DecideArgs),
    /// Deny a waiting request as an operator (recorded as such).
    Deny(DecideArgs),
    /// Senders: try a mapping on a saved payload.
    Sources {
        #[command(subcommand)]
        command: SourcesCommand,
    },
    /// Check an approval policy file.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Run the Jira simulator alone (same as the jira-sim binary).
    Sim {
        #[arg(long, default_value = "127.0.0.1:8788")]
        listen: SocketAddr,
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        #[command(flatten)]
        limits: jira_sim::cli::LimitArgs,
    },
}

#[derive(Subcommand)]
enum BatchesCommand {
    /// A batch's progress, as JSON.
    Show { batch_id: String },
    /// Hold a batch's queued work where it is.
    Pause { batch_id: String },
    /// Let a paused batch go on.
    Resume { batch_id: String },
}

#[derive(Subcommand)]
enum JobsCommand {
    /// List the newest jobs, optionally in one state.
    List {
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One job with its audit trail, as JSON.
    Show { job_id: String },
    /// Put an EXHAUSTED job back in the queue (budgets reset; recorded).
    Retry {
        job_id: String,
        /// Who re-runs it, for the audit trail.
        #[arg(long = "as", value_name = "NAME", default_value = "operator")]
        who: String,
    },
}

#[derive(Subcommand)]
enum ApprovalsCommand {
    /// Requests not decided yet, oldest first.
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

#[derive(Subcommand)]
enum RejectedCommand {
    /// Newest first.
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One rejection: its reasons and the body as received.
    Show { rejection_id: String },
    /// Run a rejection through again — as received, or corrected
    /// (`--file`) — under the approval policy `serve` uses: a v1 event is
    /// admitted, a batch item rejoins its batch, a sender's payload goes
    /// through that sender's mapping again (`--sources`).
    Resubmit {
        rejection_id: String,
        /// The corrected body (JSON): the event, the batch item, or the
        /// sender's whole payload — whatever `show` printed as the body.
        #[arg(long)]
        file: Option<PathBuf>,
        #[arg(long, env = "TOLLGATE_POLICY")]
        policy: Option<PathBuf>,
        #[arg(long, env = "TOLLGATE_APPROVERS")]
        approvers: Option<String>,
        /// The senders document (needed for a sender's rejection).
        #[arg(long, env = "TOLLGATE_SOURCES")]
        sources: Option<PathBuf>,
    },
    /// Close a rejection that needs nothing more; recorded with who and why.
    Discard {
        rejection_id: String,
        /// Who discards it (recorded).
        #[arg(long = "as")]
        by: String,
        /// Why (recorded).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum SitesCommand {
    /// Each site's state (the default).
    List,
    /// End a site's degraded mode now.
    Clear {
        /// The site's URL, as `tollgate sites` lists it.
        site: String,
        #[arg(long = "as", value_name = "NAME", default_value = "operator")]
        who: String,
    },
}

#[derive(clap::Args)]
struct DecideArgs {
    /// The approval id (`tollgate approvals list`).
    approval_id: String,
    /// Who decides, for the audit trail.
    #[arg(long = "as", value_name = "NAME")]
    who: String,
    #[arg(long, env = "TOLLGATE_DB", default_value = config::DEFAULT_DB)]
    db: PathBuf,
}

#[derive(Subcommand)]
enum SourcesCommand {
    /// Map a saved payload with source NAME's mapping and show the events
    /// it makes and what the policy decides for each. Calls nothing.
    Test {
        name: String,
        /// The payload (JSON file), as the sender posts it.
        file: PathBuf,
        /// The senders document.
        #[arg(long, env = "TOLLGATE_SOURCES", default_value = "sources.toml")]
        sources: PathBuf,
        /// The approval policy to decide with (built-in when absent).
        #[arg(long, env = "TOLLGATE_POLICY")]
        policy: Option<PathBuf>,
        #[arg(long, env = "TOLLGATE_APPROVERS")]
        approvers: Option<String>,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate a policy file and show what it decides for sample events
    /// (or for the event in --event).
    Check {
        file: PathBuf,
        /// A v1 event (JSON file) to decide instead of the samples.
        #[arg(long)]
        event: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address for the HTTP API: host:port (default 127.0.0.1:8787).
    #[arg(long)]
    listen: Option<String>,
    /// SQLite file holding jobs and the queue (default ./tollgate.db).
    #[arg(long, env = "TOLLGATE_DB")]
    db: Option<PathBuf>,
    /// The Jira site, e.g. https://your-domain.atlassian.net.
    #[arg(long, env = "TOLLGATE_JIRA_URL", conflicts_with = "sim")]
    jira_url: Option<String>,
    /// Use an in-process Jira simulator instead of a real site.
    #[arg(long)]
    sim: bool,
    /// Simulated Jira latency per call (with --sim), milliseconds.
    #[arg(long, default_value_t = 0)]
    sim_latency_ms: u64,
    /// Concurrent workers executing jobs.
    #[arg(long, env = "TOLLGATE_WORKERS")]
    workers: Option<usize>,
    /// Seconds a received message stays invisible (extended while its job runs).
    #[arg(long)]
    visibility_timeout_secs: Option<u64>,
    /// Seconds a worker's lease on an entity lasts without renewal.
    #[arg(long)]
    lease_ttl_secs: Option<u64>,
    /// Seconds before a Jira call is given up (default 30). A call whose
    /// answer was lost may still land until then: keep it no lower than
    /// the site's own request timeout.
    #[arg(long, env = "TOLLGATE_JIRA_TIMEOUT_SECS")]
    jira_timeout_secs: Option<u64>,
    /// Optional config file (default ./tollgate.toml when present).
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(
        long,
        env = "TOLLGATE_WEBHOOK_SECRET",
        hide_env_values = true,
        hide = true
    )]
    webhook_secret: Option<String>,
    #[arg(long, env = "TOLLGATE_JIRA_EMAIL", hide = true)]
    jira_email: Option<String>,
    #[arg(
        long,
        env = "TOLLGATE_JIRA_API_TOKEN",
        hide_env_values = true,
        hide = true
    )]
    jira_api_token: Option<String>,
    #[arg(
        long,
        env = "TOLLGATE_JIRA_BEARER_TOKEN",
        hide_env_values = true,
        hide = true
    )]
    jira_bearer_token: Option<String>,
    /// Approval policy file (TOML): which events wait for a person.
    #[arg(long, env = "TOLLGATE_POLICY")]
    policy: Option<PathBuf>,
    /// Senders document (TOML): who may post native payloads to
    /// /v1/sources/NAME, how they authenticate, how payloads map to events.
    #[arg(long, env = "TOLLGATE_SOURCES")]
    sources: Option<PathBuf>,
    /// Approvers (comma-separated) for the built-in policy: transitions and
    /// sensitive field edits then wait for one of them.
    #[arg(long, env = "TOLLGATE_APPROVERS")]
    approvers: Option<String>,
    /// Base URL approvers reach this server at (approval links).
    #[arg(long, env = "TOLLGATE_PUBLIC_URL")]
    public_url: Option<String>,
    #[arg(
        long,
        env = "TOLLGATE_APPROVAL_KEY",
        hide_env_values = true,
        hide = true
    )]
    approval_key: Option<String>,
    #[arg(
        long,
        env = "TOLLGATE_SLACK_WEBHOOK_URL",
        hide_env_values = true,
        hide = true
    )]
    slack_webhook_url: Option<String>,
    #[arg(
        long,
        env = "TOLLGATE_NOTIFY_WEBHOOK_URL",
        hide_env_values = true,
        hide = true
    )]
    notify_webhook_url: Option<String>,
    /// Jira project for "Rate limit exceeded" tasks when work exhausts its
    /// retries (otherwise a notification only).
    #[arg(long, env = "TOLLGATE_EXHAUSTED_PROJECT")]
    exhausted_project: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(a) => {
            let a = *a;
            telemetry::init(cli.log_format, "info");
            let file = FileConfig::load(a.config.as_deref())?;
            let config = config::resolve(
                Overrides {
                    listen: a.listen,
                    db: a.db,
                    jira_url: a.jira_url,
                    sim: a.sim,
                    workers: a.workers,
                    visibility_timeout_secs: a.visibility_timeout_secs,
                    lease_ttl_secs: a.lease_ttl_secs,
                    jira_timeout_secs: a.jira_timeout_secs,
                    webhook_secret: config::or_secret_file(
                        a.webhook_secret,
                        "TOLLGATE_WEBHOOK_SECRET",
                    )?,
                    jira_email: a.jira_email,
                    jira_api_token: config::or_secret_file(
                        a.jira_api_token,
                        "TOLLGATE_JIRA_API_TOKEN",
                    )?,
                    jira_bearer_token: config::or_secret_file(
                        a.jira_bearer_token,
                        "TOLLGATE_JIRA_BEARER_TOKEN",
                    )?,
                    sim_latency_ms: a.sim_latency_ms,
                    policy: a.policy,
                    approvers: a.approvers,
                    approval_key: config::or_secret_file(a.approval_key, "TOLLGATE_APPROVAL_KEY")?,
                    public_url: a.public_url,
                    slack_webhook_url: config::or_secret_file(
                        a.slack_webhook_url,
                        "TOLLGATE_SLACK_WEBHOOK_URL",
                    )?,
                    notify_webhook_url: config::or_secret_file(
                        a.notify_webhook_url,
                        "TOLLGATE_NOTIFY_WEBHOOK_URL",
                    )?,
                    exhausted_project: a.exhausted_project,
                    sources: a.sources,
                },
                file,
            )?;
            let running = stack::start(config).await?;
            // Scripts and tests read this line to learn the address.
            println!(
                "tollgate listening on http://{} (jira: {})",
                running.addr, running.jira_url
            );
            running.wait().await
        }
        Command::Demo {
            alerts,
            workers,
            latency_ms,
            quiet,
        } => {
            telemetry::init(cli.log_format, "warn");
            println!("tollgate demo: {alerts} alerts against the built-in Jira simulator");
            let summary = demo::run(demo::DemoOptions {
                alerts,
                workers,
                sim_latency: Duration::from_millis(latency_ms),
                progress: !quiet,
            })
            .await?;
            println!("{}", summary.table());
            for link in &summary.approval_links {
                println!(
                    "One change waited for a person. Its approval link (opened and approved by the demo):\n  {link}"
                );
            }
            if summary.duplicate_issues > 0 || summary.duplicate_comments > 0 || summary.failed > 0
            {
                anyhow::bail!("the demo saw duplicates or failures");
            }
            println!("Every alert was delivered more than once; Jira got each issue exactly once.");
            Ok(())
        }
        Command::Bench {
            profiles,
            clients,
            workers,
            latency_ms,
            json,
            write_doc,
            quiet,
        } => {
            use tollgate_cli::bench::{self, BenchOptions, Client, Profile};
            telemetry::init(cli.log_format, "error");
            let opts = BenchOptions {
                profiles: if profiles.is_empty() {
                    Profile::DEFAULT.to_vec()
                } else {
                    profiles
                },
                clients: if clients.is_empty() {
                    Client::ALL.to_vec()
                } else {
                    clients
                },
                workers,
                latency: Duration::from_millis(latency_ms),
                progress: !quiet && !json,
            };
            let results = bench::run(&opts).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&results)?);
            } else {
                println!("{}", bench::markdown(&results));
            }
            if let Some(path) = write_doc {
                let command: Vec<String> = std::env::args().collect();
                bench::write_doc(&path, &command.join(" "), &results)?;
            }
            Ok(())
        }
        Command::Load {
            events,
            concurrency,
            workers,
            json,
            quiet,
        } => {
            telemetry::init(cli.log_format, "error");
            let r = tollgate_cli::load::run(&tollgate_cli::load::LoadOptions {
                events,
                concurrency: concurrency.max(1),
                workers,
                progress: !quiet,
            })
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", r.markdown());
            }
            if r.lost > 0 {
                anyhow::bail!("{} events were answered but not held", r.lost);
            }
            Ok(())
        }
        Command::Stats { db, hours, json } => {
            telemetry::init(cli.log_format, "warn");
            let db = open_db(&db)?;
            let hours = hours.clamp(1, tollgate::app::stats::MAX_STATS_HOURS);
            let stats = tollgate::app::stats::read_stats(&db, &SystemClock, hours).await?;
            if json {
                let a = tollgate::app::api::stats_answer(&stats, hours);
                println!("{}", serde_json::to_string_pretty(&a.body)?);
            } else {
                print!("{}", stats_table(&stats, hours));
            }
            Ok(())
        }
        Command::Batches { db, command } => {
            telemetry::init(cli.log_format, "warn");
            let db = open_db(&db)?;
            let (id, action) = match &command {
                BatchesCommand::Show { batch_id } => (batch_id, None),
                BatchesCommand::Pause { batch_id } => (batch_id, Some(true)),
                BatchesCommand::Resume { batch_id } => (batch_id, Some(false)),
            };
            let id = tollgate::domain::ids::BatchId::parse(id)
                .with_context(|| format!("{id:?} is not a batch id"))?;
            let view = match action {
                None => tollgate::app::batches::view_batch(&db, &SystemClock, &id).await?,
                Some(p) => tollgate::app::batches::set_paused(&db, &SystemClock, &id, p).await?,
            };
            let view = view.with_context(|| format!("no batch {id}"))?;
            let a = tollgate::app::api::batch_view_answer(&view);
            println!("{}", serde_json::to_string_pretty(&a.body)?);
            Ok(())
        }
        Command::Jobs { db, command } => {
            telemetry::init(cli.log_format, "warn");
            let db = open_db(&db)?;
            match command {
                JobsCommand::List { state, limit } => {
                    let state = match state {
                        Some(s) => Some(JobState::parse(&s).with_context(|| {
                            let valid: Vec<&str> =
                                JobState::ALL.iter().map(|st| st.as_str()).collect();
                            format!("unknown state {s:?}; one of {}", valid.join(", "))
                        })?),
                        None => None,
                    };
                    let jobs = db.list(state, limit).await?;
                    if jobs.is_empty() {
                        println!(
                            "no jobs found{}",
                            state.map_or(String::new(), |s| format!(" in state {}", s.as_str()))
                        );
                    } else {
                        println!(
                            "{:<36}  {:<20} {:<16} {:<10} {:<14} {:<24} ISSUE",
                            "JOB", "UPDATED", "STATE", "KIND", "SOURCE", "EXTERNAL ID"
                        );
                    }
                    for job in jobs {
                        println!(
                            "{}  {:<20} {:<16} {:<10} {:<14} {:<24} {}",
                            job.id,
                            job.updated_at.to_rfc3339(),
                            job.state.as_str(),
                            job.kind.as_str(),
                            job.source_system.as_str(),
                            job.external_id.as_str(),
                            job.issue_key.as_ref().map(|k| k.as_str()).unwrap_or("-")
                        );
                    }
                }
                JobsCommand::Retry { job_id, who } => {
                    let id = tollgate::domain::ids::JobId::parse(&job_id)
                        .with_context(|| format!("{job_id:?} is not a job id"))?;
                    let policy = tollgate::domain::followup::FollowUpPolicy::default();
                    let followups = tollgate::app::followup::FollowUps {
                        store: &db,
                        queue: &db,
                        clock: &SystemClock,
                        policy: &policy,
                    };
                    match followups.requeue(&id, &who).await? {
                        tollgate::app::followup::Requeued::Queued(job) => {
                            println!("job {} is {} again", job.id, job.state.as_str())
                        }
                        tollgate::app::followup::Requeued::NotExhausted(state) => {
                            anyhow::bail!("job {job_id} is {}, not EXHAUSTED", state.as_str())
                        }
                        tollgate::app::followup::Requeued::NotFound => {
                            anyhow::bail!("no job {job_id}")
                        }
                    }
                }
                JobsCommand::Show { job_id } => {
                    let answer = get_job(&db, &job_id).await?;
                    anyhow::ensure!(answer.status == 200, "no job {job_id}");
                    println!("{}", serde_json::to_string_pretty(&answer.body)?);
                }
            }
            Ok(())
        }
        Command::Approvals { db, command } => {
            telemetry::init(cli.log_format, "warn");
            let db = open_db(&db)?;
            match command {
                ApprovalsCommand::List { limit } => {
                    let now = SystemClock.now();
                    for a in db.open_approvals(limit).await? {
                        let status = match a.status(now) {
                            ApprovalStatus::Pending => "pending",
                            _ => "expired",
                        };
                        println!(
                            "{}  {:<8} job {}  asked by {:<14} expires {}  approvers {}\n    {}\n    {}",
                            a.id,
                            status,
                            a.job_id,
                            a.requested_by,
                            a.expires_at.to_rfc3339(),
                            a.approvers.join(", "),
                            a.rule,
                            a.intent.join(" ")
                        );
                    }
                }
            }
            Ok(())
        }
        Command::Rejected { db, command } => {
            telemetry::init(cli.log_format, "warn");
            let db = open_db(&db)?;
            let parse = |raw: &str| {
                RejectionId::parse(raw).with_context(|| format!("{raw:?} is not a rejection id"))
            };
            match command {
                RejectedCommand::List { limit } => {
                    for r in db.rejections(limit).await? {
                        let first = r
                            .errors
                            .first()
                            .map(ToString::to_string)
                            .unwrap_or_default();
                        println!(
                            "{}  {}  {:<14} {:<10} {:<11} {}{}",
                            r.id,
                            r.received_at.to_rfc3339(),
                            r.source_system.as_deref().unwrap_or("-"),
                            r.origin.kind(),
                            r.status(),
                            first,
                            if r.errors.len() > 1 {
                                format!(" (+{} more)", r.errors.len() - 1)
                            } else {
                                String::new()
                            }
                        );
                    }
                }
                RejectedCommand::Show { rejection_id } => {
                    let r = db
                        .rejection(&parse(&rejection_id)?)
                        .await?
                        .with_context(|| format!("no rejection {rejection_id}"))?;
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&serde_json::json!({
                            "rejectionId": r.id, "receivedAt": r.received_at.to_rfc3339(),
                            "sourceSystem": r.source_system, "origin": r.origin,
                            "status": r.status(), "errors": r.errors,
                            "resubmittedAs": r.resubmitted_as,
                            "discarded": r.discarded.as_ref().map(|d| serde_json::json!({
                                "by": d.by, "reason": d.reason, "at": d.at.to_rfc3339()})),
                            "body": r.body,
                        }))?
                    );
                }
                RejectedCommand::Discard {
                    rejection_id,
                    by,
                    reason,
                } => {
                    let ingest = Ingest {
                        store: &db,
                        queue: &db,
                        clock: &SystemClock,
                        secrets: &[],
                        policy: &Default::default(),
                    };
                    match ingest.discard(&parse(&rejection_id)?, &by, &reason).await? {
                        Discard::Done => println!("discarded by {by}: {reason}"),
                        Discard::AlreadyResubmitted(job) => {
                            anyhow::bail!("already re-submitted as job {job}")
                        }
                        Discard::AlreadyDiscarded(d) => anyhow::bail!(
                            "already discarded by {} at {}: {}",
                            d.by,
                            d.at.to_rfc3339(),
                            d.reason
                        ),
                        Discard::NotFound => anyhow::bail!("no rejection {rejection_id}"),
                    }
                }
                RejectedCommand::Resubmit {
                    rejection_id,
                    file,
                    policy,
                    approvers,
                    sources,
                } => {
                    let sources = sources
                        .map(|path| config::load_sources(&path))
                        .transpose()?;
                    let policy =
                        config::ApprovalSettings::load(policy.as_deref(), approvers.as_deref())?;
                    let body = file
                        .map(|f| {
                            std::fs::read(&f)
                                .with_context(|| format!("cannot read {}", f.display()))
                        })
                        .transpose()?;
                    let ingest = Ingest {
                        store: &db,
                        queue: &db,
                        clock: &SystemClock,
                        secrets: &[],
                        policy: &policy,
                    };
                    match ingest
                        .resubmit(&parse(&rejection_id)?, body.as_deref(), sources.as_ref())
                        .await?
                    {
                        Resubmission::Done(IngestOutcome::Accepted {
                            job_id,
                            state,
                            duplicate,
                            ..
                        }) => println!(
                            "re-submitted: job {job_id} is {}{}",
                            state.as_str(),
                            if duplicate {
                                " (an earlier delivery of the same event)"
                            } else {
                                ""
                            }
                        ),
                        Resubmission::Done(other) => anyhow::bail!("not accepted: {other:?}"),
                        Resubmission::StillInvalid(errors) => anyhow::bail!(
                            "still invalid: {}",
                            errors
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join("; ")
                        ),
                        Resubmission::AlreadyResubmitted(job) => {
                            anyhow::bail!("already re-submitted as job {job}")
                        }
                        Resubmission::Discarded(d) => anyhow::bail!(
                            "discarded by {} at {}: {}",
                            d.by,
                            d.at.to_rfc3339(),
                            d.reason
                        ),
                        Resubmission::NeedsSender(source) => anyhow::bail!(
                            "this rejection came from sender {source:?}: give the senders document (--sources or TOLLGATE_SOURCES) to run its mapping again"
                        ),
                        Resubmission::NotFound => anyhow::bail!("no rejection {rejection_id}"),
                    }
                }
            }
            Ok(())
        }
        Command::Sites { db, command } => {
            telemetry::init(cli.log_format, "warn");
            let db = open_db(&db)?;
            match command.unwrap_or(SitesCommand::List) {
                SitesCommand::List => {
                    let now = SystemClock.now();
                    for (site, g) in db.sites().await? {
                        let mode = match &g.health.degraded {
                            Some(d) => {
                                format!("DEGRADED since {} ({})", d.since.to_rfc3339(), d.reason)
                            }
                            None => "healthy".into(),
                        };
                        let paused = if g.paused_until > now {
                            format!("paused until {}", g.paused_until.to_rfc3339())
                        } else {
                            "not paused".into()
                        };
                        println!("{site}  {mode}; {paused}");
                        for (endpoint, p) in &g.endpoints {
                            println!("    {endpoint:<45} {:>8.1}/s", p.rate);
                        }
                        for c in &g.health.changes {
                            println!(
                                "    {}  {}  {}",
                                c.at.to_rfc3339(),
                                if c.degraded { "degraded" } else { "recovered" },
                                c.why
                            );
                        }
                    }
                }
                SitesCommand::Clear { site, who } => {
                    if tollgate::app::governor::clear_degraded(&db, &site, &who, SystemClock.now())
                        .await?
                    {
                        println!("{site}: degraded mode cleared by {who}");
                    } else {
                        anyhow::bail!("{site} is not degraded (see tollgate sites)");
                    }
                }
            }
            Ok(())
        }
        Command::Approve(args) => operator_decision(args, Decision::Approve).await,
        Command::Deny(args) => operator_decision(args, Decision::Deny).await,
        Command::Policy {
            command: PolicyCommand::Check { file, event },
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let policy = Policy::parse(&text)
                .with_context(|| format!("{} is not a valid policy", file.display()))?;
            println!(
                "{}: valid ({} rules, {} approvers, requests expire after {} min)",
                file.display(),
                policy.rules.len(),
                policy.approvers.len(),
                policy.expiry_minutes
            );
            let samples = match event {
                Some(path) => {
                    let raw = std::fs::read(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    let (event, _) = parse_event(&raw).map_err(|e| {
                        anyhow::anyhow!("{} is not a valid event: {}", path.display(), e)
                    })?;
                    vec![(path.display().to_string(), event)]
                }
                None => sample_events()?,
            };
            for (name, event) in samples {
                let verdict = match policy.decide(&event, 0) {
                    PolicyDecision::Run { rule } => format!("runs at once ({rule})"),
                    PolicyDecision::NeedsApproval {
                        rule, approvers, ..
                    } => format!("waits for {} ({rule})", approvers.join(" or ")),
                };
                println!("  {name:<34} {verdict}");
            }
            Ok(())
        }
        Command::Sources {
            command:
                SourcesCommand::Test {
                    name,
                    file,
                    sources,
                    policy,
                    approvers,
                },
        } => {
            let all = config::load_sources(&sources)?;
            let source = all
                .get(&name)
                .with_context(|| format!("{} has no source named {name:?}", sources.display()))?;
            let raw =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let payload: serde_json::Value = serde_json::from_slice(&raw)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let policy = config::ApprovalSettings::load(policy.as_deref(), approvers.as_deref())?;
            let out = source.mapping.apply(&payload, &source.name, &source.params);
            let what_unmatched = match source.unmatched {
                tollgate::domain::source::UnmatchedPolicy::Keep => "kept in the manual queue",
                tollgate::domain::source::UnmatchedPolicy::Ignore => "ignored",
            };
            println!(
                "{name} ({}, {} auth): {} item(s) mapped, {} matched no rule ({what_unmatched})",
                source.preset.as_deref().unwrap_or("own mapping"),
                source.auth.as_str(),
                out.mapped.len(),
                out.unmatched.len()
            );
            for u in &out.unmatched {
                println!("  {}: no rule of sender {name} matched", u.path);
            }
            for m in out.mapped {
                match m.event {
                    Ok(event) => {
                        let verdict = match tollgate::domain::validation::validate_event(&event) {
                            Ok(e) => match policy.decide(&e, 0) {
                                PolicyDecision::Run { rule } => format!("runs at once ({rule})"),
                                PolicyDecision::NeedsApproval {
                                    rule, approvers, ..
                                } => format!("waits for {} ({rule})", approvers.join(" or ")),
                            },
                            Err(e) => format!("invalid: {e}"),
                        };
                        println!(
                            "\n{}: {verdict}\n{}",
                            m.path,
                            serde_json::to_string_pretty(&event)?
                        );
                    }
                    Err(errors) => {
                        println!(
                            "\n{}: rejected (kept in the manual queue when posted)",
                            m.path
                        );
                        for e in errors {
                            println!("  {}: {}", e.field, e.message);
                        }
                    }
                }
            }
            Ok(())
        }
        Command::Sim {
            listen,
            latency_ms,
            limits,
        } => {
            telemetry::init(cli.log_format, "info");
            let config = jira_sim::SimConfig {
                latency: Duration::from_millis(latency_ms),
                limits: limits.to_limits(),
                ..Default::default()
            };
            let (addr, _sim, handle) = jira_sim::spawn(config, listen).await?;
            println!("jira-sim listening on http://{addr} (basic auth sim@example.com:sim-token)");
            handle.await?;
            Ok(())
        }
    }
}

fn open_db(path: &std::path::Path) -> anyhow::Result<SqliteDb> {
    anyhow::ensure!(
        path.exists(),
        "no database at {} (pass --db)",
        path.display()
    );
    Ok(SqliteDb::open(path)?)
}

async fn operator_decision(args: DecideArgs, decision: Decision) -> anyhow::Result<()> {
    let id = ApprovalId::parse(&args.approval_id)
        .with_context(|| format!("{:?} is not an approval id", args.approval_id))?;
    anyhow::ensure!(
        !args.who.trim().is_empty() && !args.who.starts_with("tollgate:"),
        "--as needs a name (not starting with \"tollgate:\")"
    );
    let db = open_db(&args.db)?;
    let approvals = Approvals {
        store: &db,
        queue: &db,
        clock: &SystemClock,
        links: Links {
            keys: &[],
            base_url: "",
        },
    };
    match approvals
        .decide_as(&id, decision, args.who.trim(), "cli")
        .await?
    {
        DecideOutcome::Decided { job, .. } => {
            println!(
                "{} {id}: job {} is now {}",
                tollgate::app::approvals::past_tense(decision),
                job.id,
                job.state.as_str()
            );
            Ok(())
        }
        DecideOutcome::Refused(r) => anyhow::bail!("{}", r.message()),
    }
}

/// Events that show what a policy does with each kind of work.
fn sample_events() -> anyhow::Result<Vec<(String, Event)>> {
    let samples = [
        (
            "create in OPS",
            serde_json::json!({"sourceSystem": "alertmanager", "externalId": "a", "desiredOperation": "create", "projectKey": "OPS", "issueType": "Incident", "summary": "s"}),
        ),
        (
            "comment",
            serde_json::json!({"sourceSystem": "alertmanager", "externalId": "a", "desiredOperation": "comment", "comment": "c"}),
        ),
        (
            "update priority",
            serde_json::json!({"sourceSystem": "itsm", "externalId": "a", "desiredOperation": "update", "issueKey": "OPS-1", "fields": {"priority": {"name": "High"}}}),
        ),
        (
            "update security level",
            serde_json::json!({"sourceSystem": "itsm", "externalId": "a", "desiredOperation": "update", "issueKey": "OPS-1", "fields": {"security": {"id": "10001"}}}),
        ),
        (
            "transition OPS-1 to Done",
            serde_json::json!({"sourceSystem": "itsm", "externalId": "a", "desiredOperation": "transition", "issueKey": "OPS-1", "transition": "Done"}),
        ),
        (
            "transition from cmdb",
            serde_json::json!({"sourceSystem": "cmdb", "externalId": "a", "desiredOperation": "transition", "issueKey": "ASSET-1", "transition": "Done"}),
        ),
    ];
    samples
        .into_iter()
        .map(|(name, v)| {
            validate_event(&v)
                .map(|e| (name.to_string(), e))
                .map_err(|e| anyhow::anyhow!("sample {name}: {e}"))
        })
        .collect()
}

/// The hotspot figures as a table for people.
fn stats_table(s: &tollgate::domain::stats::CallStats, hours: u32) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let share = |n: u64| {
        if s.requests == 0 {
            0.0
        } else {
            100.0 * n as f64 / s.requests as f64
        }
    };
    let _ = writeln!(
        out,
        "Jira calls, last {hours} h: {} requests, {} throttled ({:.1} %), {} points",
        s.requests,
        s.throttled,
        share(s.throttled),
        s.points
    );
    let _ = writeln!(
        out,
        "\n{:<46} {:<18} {:>9} {:>6} {:>7}",
        "endpoint", "operation", "requests", "429s", "points"
    );
    let mut endpoints: Vec<_> = s.endpoints.iter().collect();
    endpoints.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then(a.0.cmp(b.0)));
    for (endpoint, e) in endpoints {
        let _ = writeln!(
            out,
            "{:<46} {:<18} {:>9} {:>6} {:>7}",
            endpoint,
            tollgate::domain::stats::operation_name(endpoint),
            e.requests,
            e.throttled,
            e.points
        );
    }
    if !s.throttled_by_reason.is_empty() {
        let _ = writeln!(out, "\n429s by reason");
        for (reason, n) in &s.throttled_by_reason {
            let _ = writeln!(out, "  {reason:<32} {n:>6}");
        }
    }
    if !s.senders.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<24} {:>9} {:>10} {:>9} {:>8}",
            "sender", "accepted", "duplicate", "rejected", "ignored"
        );
        for (name, st) in &s.senders {
            let _ = writeln!(
                out,
                "{name:<24} {:>9} {:>10} {:>9} {:>8}",
                st.accepted, st.duplicate, st.rejected, st.ignored
            );
        }
    }
    let top = s.top_issues(10);
    if !top.is_empty() {
        let _ = writeln!(out, "\nissues throttled most");
        for (issue, n) in top {
            let _ = writeln!(out, "  {issue:<16} {n:>6}");
        }
    }
    out
}
