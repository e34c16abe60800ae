//! `tollgate jobs`: list, show, retry, cancel.

use super::backend::{Access, on_backend};
use super::{Global, operator_name, print_json};
use anyhow::Context;
use tollgate::app::api::{cancel_answer, retry_answer};
use tollgate::app::jobs::get_job;
use tollgate::app::operations::{Cancelled, Operations, Retried};
use tollgate::domain::ids::JobId;
use tollgate::domain::job::JobState;
use tollgate::ports::{IngestStore, JobStore, SystemClock, WorkQueue};

#[derive(clap::Subcommand)]
pub enum JobsCommand {
    /// The newest jobs, optionally in one state.
    List {
        /// QUEUED, WAITING, PENDING_APPROVAL, EXHAUSTED, FAILED, CANCELLED, … (any case).
        #[arg(long, value_parser = parse_state)]
        state: Option<JobState>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One job with its audit trail.
    Show { job_id: String },
    /// Run a FAILED or EXHAUSTED job again: a fresh attempt under the same
    /// job, budgets reset, recorded with your name.
    Retry {
        job_id: String,
        /// Who re-runs it, for the audit trail.
        #[arg(long = "as", value_name = "NAME")]
        who: String,
    },
    /// End QUEUED, WAITING or PENDING_APPROVAL work (CANCELLED; its
    /// approval request closed), recorded with your name and reason.
    Cancel {
        job_id: String,
        #[arg(long = "as", value_name = "NAME")]
        who: String,
        #[arg(long)]
        reason: String,
    },
}

/// `--state` takes a state name in any case, and names them all when wrong.
fn parse_state(s: &str) -> Result<JobState, String> {
    JobState::parse(s).ok_or_else(|| {
        let valid: Vec<&str> = JobState::ALL.iter().map(|st| st.as_str()).collect();
        format!("unknown state {s:?}; one of {}", valid.join(", "))
    })
}

fn job_id(raw: &str) -> anyhow::Result<JobId> {
    JobId::parse(raw).with_context(|| format!("{raw:?} is not a job id"))
}

pub async fn run(command: JobsCommand, g: &Global) -> anyhow::Result<()> {
    let access = match command {
        JobsCommand::List { .. } | JobsCommand::Show { .. } => Access::Read,
        _ => Access::Write,
    };
    let backend = g.backend(access).await?;
    on_backend!(backend, |store, queue| run_on(command, store, queue, g)
        .await)
}

async fn run_on<S: IngestStore, Q: WorkQueue>(
    command: JobsCommand,
    store: &S,
    queue: &Q,
    g: &Global,
) -> anyhow::Result<()> {
    let ops = Operations {
        store,
        queue,
        clock: &SystemClock,
    };
    match command {
        JobsCommand::List { state, limit } => list(store, g, state, limit).await,
        JobsCommand::Show { job_id } => {
            let answer = get_job(store, &job_id).await?;
            anyhow::ensure!(answer.status == 200, "no job {job_id}");
            if g.json() {
                return print_json(&answer.body);
            }
            print!("{}", show_table(&answer.body));
            Ok(())
        }
        JobsCommand::Retry { job_id: raw, who } => {
            let who = operator_name(&who)?;
            let outcome = ops.retry(&job_id(&raw)?, who).await?;
            if g.json() {
                return print_json(&retry_answer(&outcome).body);
            }
            match outcome {
                Retried::Queued(job) => {
                    println!("job {} is {} again (re-run by {who})", job.id, job.state);
                    Ok(())
                }
                Retried::NotRetryable(state) => {
                    anyhow::bail!("job {raw} is {state}: only FAILED and EXHAUSTED jobs run again")
                }
                Retried::NotFound => anyhow::bail!("no job {raw}"),
            }
        }
        JobsCommand::Cancel {
            job_id: raw,
            who,
            reason,
        } => {
            let who = operator_name(&who)?;
            anyhow::ensure!(!reason.trim().is_empty(), "--reason needs some words");
            let outcome = ops.cancel(&job_id(&raw)?, who, reason.trim()).await?;
            if g.json() {
                return print_json(&cancel_answer(&outcome).body);
            }
            match outcome {
                Cancelled::Cancelled {
                    job,
                    merged,
                    closed_approval,
                } => {
                    println!("job {} is CANCELLED (by {who}: {})", job.id, reason.trim());
                    if !merged.is_empty() {
                        println!(
                            "  {} merged job(s) rode in it and are cancelled too",
                            merged.len()
                        );
                    }
                    if let Some(a) = closed_approval {
                        println!("  approval request {a} is closed");
                    }
                    Ok(())
                }
                Cancelled::NotCancellable(state) => anyhow::bail!(
                    "job {raw} is {state}: only QUEUED, WAITING and PENDING_APPROVAL jobs can be cancelled"
                ),
                Cancelled::NotFound => anyhow::bail!("no job {raw}"),
            }
        }
    }
}

async fn list<S: JobStore>(
    store: &S,
    g: &Global,
    state: Option<JobState>,
    limit: usize,
) -> anyhow::Result<()> {
    let jobs = store.list(state, limit).await?;
    if g.json() {
        let rows: Vec<serde_json::Value> = jobs
            .iter()
            .map(|j| {
                serde_json::json!({
                    "jobId": j.id, "state": j.state, "operation": j.kind.as_str(),
                    "sourceSystem": j.source_system.as_str(), "externalId": j.external_id.as_str(),
                    "issueKey": j.issue_key.as_ref().map(|k| k.as_str()),
                    "updatedAt": j.updated_at.to_rfc3339(), "lastError": j.last_error,
                })
            })
            .collect();
        return print_json(&serde_json::json!({ "jobs": rows }));
    }
    if jobs.is_empty() {
        println!(
            "no jobs found{}",
            state.map_or(String::new(), |s| format!(" in state {s}"))
        );
        return Ok(());
    }
    println!(
        "{:<36}  {:<24} {:<16} {:<10} {:<14} {:<24} ISSUE",
        "JOB", "UPDATED", "STATE", "KIND", "SOURCE", "EXTERNAL ID"
    );
    for job in jobs {
        println!(
            "{}  {:<24} {:<16} {:<10} {:<14} {:<24} {}",
            job.id,
            job.updated_at.to_rfc3339(),
            job.state.as_str(),
            job.kind.as_str(),
            job.source_system.as_str(),
            job.external_id.as_str(),
            job.issue_key.as_ref().map(|k| k.as_str()).unwrap_or("-")
        );
    }
    Ok(())
}

/// A job for people: its fields, then its trail one line per entry.
fn show_table(job: &serde_json::Value) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let field = |k: &str| match &job[k] {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        v => Some(v.to_string()),
    };
    for (label, key) in tollgate::app::api::JOB_FIELDS {
        if key == "lastError" && job["lastError"] == job["waitingFor"] {
            continue;
        }
        if let Some(v) = field(key) {
            let _ = writeln!(out, "{label:<12} {v}");
        }
    }
    if let Some(trail) = job["audit"].as_array() {
        let _ = writeln!(out, "\n{:<25} {:<12} {:<18} OUTCOME", "AT", "STAGE", "BY");
        for e in trail {
            let _ = writeln!(
                out,
                "{:<25} {:<12} {:<18} {}{}",
                e["at"].as_str().unwrap_or(""),
                e["stage"].as_str().unwrap_or(""),
                e["actor"].as_str().unwrap_or(""),
                e["outcome"].as_str().unwrap_or(""),
                e["state"]
                    .as_str()
                    .map_or(String::new(), |s| format!(" → {s}"))
            );
        }
    }
    out
}
