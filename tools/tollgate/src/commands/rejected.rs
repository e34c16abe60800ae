//! `tollgate rejected`: the manual queue — events refused as invalid, kept
//! with their reasons; list, show, resubmit (as received or corrected),
//! discard.

use super::backend::{Access, on_backend};
use super::{Global, operator_name, print_json};
use anyhow::Context;
use std::path::PathBuf;
use tollgate::app::ingest::{Discard, Ingest, IngestOutcome, Resubmission};
use tollgate::domain::rejection::{Rejection, RejectionId};
use tollgate::ports::{IngestStore, SystemClock, WorkQueue};
use tollgate_cli::config;

#[derive(clap::Subcommand)]
pub enum RejectedCommand {
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

/// A rejection with the body as received (what `resubmit --file` corrects).
fn rejection_json(r: &Rejection) -> serde_json::Value {
    let mut v = tollgate::app::operator_api::rejection_json(r);
    v["body"] = serde_json::json!(r.body);
    v
}

pub async fn run(command: RejectedCommand, g: &Global) -> anyhow::Result<()> {
    let access = match command {
        RejectedCommand::List { .. } | RejectedCommand::Show { .. } => Access::Read,
        _ => Access::Write,
    };
    let backend = g.backend(access).await?;
    on_backend!(backend, |store, queue| run_on(command, store, queue, g)
        .await)
}

async fn run_on<S: IngestStore, Q: WorkQueue>(
    command: RejectedCommand,
    store: &S,
    queue: &Q,
    g: &Global,
) -> anyhow::Result<()> {
    let parse = |raw: &str| {
        RejectionId::parse(raw).with_context(|| format!("{raw:?} is not a rejection id"))
    };
    match command {
        RejectedCommand::List { limit } => {
            let found = store.rejections(limit).await?;
            if g.json() {
                let all: Vec<_> = found.iter().map(rejection_json).collect();
                return print_json(&serde_json::json!({ "rejections": all }));
            }
            if found.is_empty() {
                println!("no rejections found");
                return Ok(());
            }
            println!(
                "{:<36}  {:<25} {:<14} {:<10} {:<11} FIRST ERROR",
                "REJECTION", "RECEIVED", "SOURCE", "ORIGIN", "STATUS"
            );
            for r in found {
                let first = r
                    .errors
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                println!(
                    "{}  {:<25} {:<14} {:<10} {:<11} {}{}",
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
            let r = store
                .rejection(&parse(&rejection_id)?)
                .await?
                .with_context(|| format!("no rejection {rejection_id}"))?;
            print_json(&rejection_json(&r))?;
        }
        RejectedCommand::Discard {
            rejection_id,
            by,
            reason,
        } => {
            let by = operator_name(&by)?.to_string();
            let ingest = Ingest {
                store,
                queue,
                clock: &SystemClock,
                secrets: &[],
                policy: &Default::default(),
            };
            match ingest.discard(&parse(&rejection_id)?, &by, &reason).await? {
                Discard::Done => println!("rejection {rejection_id} discarded by {by}: {reason}"),
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
            let policy = config::ApprovalSettings::load(policy.as_deref(), approvers.as_deref())?;
            let body = file
                .map(|f| std::fs::read(&f).with_context(|| format!("cannot read {}", f.display())))
                .transpose()?;
            let ingest = Ingest {
                store,
                queue,
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
