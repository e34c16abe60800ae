//! `tollgate approvals` (list, show, resend) and `tollgate approve|deny`
//! (one request, or every open request of a batch or of one chunk).

use super::backend::{Access, on_backend};
use super::{Global, operator_name, print_json};
use anyhow::Context;
use tollgate::app::api::HttpAnswer;
use tollgate::app::approvals::{Approvals, DecideOutcome, Links, open_batch_requests, past_tense};
use tollgate::app::operator_api::{OperatorApi, approval_json, approval_status};
use tollgate::domain::approval::{ApprovalId, ApprovalRecord, Decision};
use tollgate::domain::ids::BatchId;
use tollgate::domain::secret::Secret;
use tollgate::ports::{ApprovalStore, Clock, IngestStore, NoNotifier, SystemClock, WorkQueue};
use tollgate_cli::config;

#[derive(clap::Subcommand)]
pub enum ApprovalsCommand {
    /// Requests not decided yet, oldest first.
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One request: what it changes, its jobs and their states, its links
    /// (when TOLLGATE_APPROVAL_KEY or TOLLGATE_WEBHOOK_SECRET is set).
    Show { approval_id: String },
    /// Send a waiting request to its approvers again (Slack or the notify
    /// webhook from the environment, as `serve` is configured).
    Resend { approval_id: String },
}

#[derive(clap::Args)]
pub struct DecideArgs {
    /// The approval id (`tollgate approvals list`).
    #[arg(required_unless_present = "batch", conflicts_with = "batch")]
    approval_id: Option<String>,
    /// Every open request of this batch instead.
    #[arg(long)]
    batch: Option<String>,
    /// Only this chunk of the batch (counted from 1, as its request says).
    #[arg(long, requires = "batch")]
    chunk: Option<u32>,
    /// Who decides, for the audit trail.
    #[arg(long = "as", value_name = "NAME")]
    who: String,
}

pub async fn run(command: ApprovalsCommand, g: &Global) -> anyhow::Result<()> {
    let access = match command {
        ApprovalsCommand::Resend { .. } => Access::Write,
        _ => Access::Read,
    };
    let backend = g.backend(access).await?;
    on_backend!(backend, |store, queue| match &command {
        ApprovalsCommand::List { limit } => list(store, g, *limit).await,
        ApprovalsCommand::Show { approval_id } => show(store, queue, g, approval_id).await,
        ApprovalsCommand::Resend { approval_id } => resend(store, queue, g, approval_id).await,
    })
}

fn approval_id(raw: &str) -> anyhow::Result<ApprovalId> {
    ApprovalId::parse(raw).with_context(|| format!("{raw:?} is not an approval id"))
}

/// Link keys and base URL from the environment and tollgate.toml, as
/// `serve` has them; none when no key is configured.
struct LinkSettings {
    keys: Vec<Secret>,
    base_url: String,
}

fn link_settings(g: &Global) -> anyhow::Result<LinkSettings> {
    let file = config::FileConfig::load(g.config.as_deref())?;
    let keys = match config::env_secret("TOLLGATE_APPROVAL_KEY")? {
        Some(k) => tollgate::domain::secret::secret_list(&k),
        None => config::env_secret("TOLLGATE_WEBHOOK_SECRET")?
            .map(|s| {
                tollgate::domain::secret::secret_list(&s)
                    .first()
                    .map(tollgate::domain::approval::derive_link_key)
                    .into_iter()
                    .collect()
            })
            .unwrap_or_default(),
    };
    let base_url = std::env::var("TOLLGATE_PUBLIC_URL")
        .ok()
        .or(file.public_url)
        .unwrap_or_else(|| format!("http://{}", config::DEFAULT_LISTEN));
    Ok(LinkSettings { keys, base_url })
}

fn approvals<'a, S, Q>(
    store: &'a S,
    queue: &'a Q,
    links: &'a LinkSettings,
) -> Approvals<'a, S, Q, SystemClock> {
    Approvals {
        store,
        queue,
        clock: &SystemClock,
        links: Links {
            keys: &links.keys,
            base_url: &links.base_url,
        },
    }
}

fn status(a: &ApprovalRecord) -> &'static str {
    approval_status(a, SystemClock.now())
}

fn summary(a: &ApprovalRecord) -> serde_json::Value {
    approval_json(a, SystemClock.now())
}

async fn list<S: ApprovalStore>(store: &S, g: &Global, limit: usize) -> anyhow::Result<()> {
    let open = store.open_approvals(limit).await?;
    if g.json() {
        let all: Vec<_> = open.iter().map(summary).collect();
        return print_json(&serde_json::json!({ "approvals": all }));
    }
    if open.is_empty() {
        println!("no approval requests found waiting");
        return Ok(());
    }
    println!(
        "{:<36}  {:<8} {:<24} {:>5}  {:<14} {:<9} RULE",
        "APPROVAL", "STATUS", "EXPIRES", "JOBS", "ASKED BY", "NOTIFIED"
    );
    for a in open {
        println!(
            "{}  {:<8} {:<24} {:>5}  {:<14} {:<9} {}\n    {}",
            a.id,
            status(&a),
            a.expires_at.to_rfc3339(),
            1 + a.also.len(),
            a.requested_by,
            if a.notified { "yes" } else { "not yet" },
            a.rule,
            a.intent.join(" ")
        );
    }
    Ok(())
}

/// The operator API over this backend, with these links and notifier.
fn operator_api<'a, S, Q, N>(
    store: &'a S,
    queue: &'a Q,
    links: &'a LinkSettings,
    notifier: &'a N,
    policy: &'a tollgate::domain::policy::Policy,
) -> OperatorApi<'a, S, Q, SystemClock, N> {
    OperatorApi {
        store,
        queue,
        clock: &SystemClock,
        links: Links {
            keys: &links.keys,
            base_url: &links.base_url,
        },
        notifier,
        policy,
        sources: None,
    }
}

/// The answer's body, or its message as the command's error.
fn body_of(answer: HttpAnswer) -> anyhow::Result<serde_json::Value> {
    if answer.status < 300 {
        return Ok(answer.body);
    }
    anyhow::bail!("{}", answer.body["message"].as_str().unwrap_or("refused"))
}

async fn show<S: IngestStore, Q: WorkQueue>(
    store: &S,
    queue: &Q,
    g: &Global,
    raw: &str,
) -> anyhow::Result<()> {
    let settings = link_settings(g)?;
    let policy = Default::default();
    let api = operator_api(store, queue, &settings, &NoNotifier, &policy);
    let a = body_of(api.approval_request(raw).await?)?;
    if g.json() {
        return print_json(&a);
    }
    let text = |k: &str| a[k].as_str().unwrap_or("").to_string();
    for (label, key) in [
        ("approval", "approvalId"),
        ("status", "status"),
        ("rule", "rule"),
        ("asked by", "requestedBy"),
        ("requested", "requestedAt"),
        ("expires", "expiresAt"),
    ] {
        println!("{label:<10} {}", text(key));
    }
    let approvers: Vec<&str> = a["approvers"]
        .as_array()
        .map(|v| v.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    println!("{:<10} {}", "approvers", approvers.join(", "));
    println!(
        "{:<10} {}",
        "notified",
        if a["notified"] == true {
            "yes"
        } else {
            "not yet"
        }
    );
    if let Some(d) = a["decided"].as_object() {
        println!(
            "{:<10} {} by {} at {}",
            "decided",
            d["decision"].as_str().unwrap_or(""),
            d["by"].as_str().unwrap_or(""),
            d["at"].as_str().unwrap_or("")
        );
    }
    println!("\nintent");
    for line in a["intent"].as_array().into_iter().flatten() {
        println!("  {}", line.as_str().unwrap_or(""));
    }
    println!("\n{:<36}  STATE", "JOB");
    for j in a["jobs"].as_array().into_iter().flatten() {
        println!(
            "{:<36}  {}",
            j["jobId"].as_str().unwrap_or(""),
            j["state"].as_str().unwrap_or("not admitted yet")
        );
    }
    let links = a["links"].as_array().cloned().unwrap_or_default();
    if links.is_empty() {
        println!(
            "\nlinks: none (set TOLLGATE_APPROVAL_KEY, or TOLLGATE_WEBHOOK_SECRET, as serve has it)"
        );
    } else {
        println!("\nlinks");
        for l in links {
            println!(
                "  {}\n    approve: {}\n    deny:    {}",
                l["approver"].as_str().unwrap_or(""),
                l["approveUrl"].as_str().unwrap_or(""),
                l["denyUrl"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

async fn resend<S: IngestStore, Q: WorkQueue>(
    store: &S,
    queue: &Q,
    g: &Global,
    raw: &str,
) -> anyhow::Result<()> {
    let settings = link_settings(g)?;
    anyhow::ensure!(
        !settings.keys.is_empty(),
        "no approval key: set TOLLGATE_APPROVAL_KEY (or TOLLGATE_WEBHOOK_SECRET) as serve has it, so the links are valid"
    );
    let notifiers = config::notifiers_from_env(settings.keys.first().cloned())?;
    let policy = Default::default();
    let api = operator_api(store, queue, &settings, &notifiers, &policy);
    let sent = body_of(api.resend(raw).await?)?;
    if g.json() {
        return print_json(&sent);
    }
    println!("approval request {raw} sent to {}", sent["sentTo"]);
    Ok(())
}

/// `tollgate approve|deny`.
pub async fn decide(args: DecideArgs, decision: Decision, g: &Global) -> anyhow::Result<()> {
    let backend = g.backend(Access::Write).await?;
    on_backend!(backend, |store, queue| decide_on(
        &args, decision, store, queue, g
    )
    .await)
}

async fn decide_on<S: IngestStore, Q: WorkQueue>(
    args: &DecideArgs,
    decision: Decision,
    store: &S,
    queue: &Q,
    g: &Global,
) -> anyhow::Result<()> {
    let who = operator_name(&args.who)?;
    let none = LinkSettings {
        keys: Vec::new(),
        base_url: String::new(),
    };
    let approvals = approvals(store, queue, &none);
    let ids: Vec<ApprovalId> = match (&args.approval_id, &args.batch) {
        (Some(raw), _) => vec![approval_id(raw)?],
        (None, Some(raw)) => {
            let batch =
                BatchId::parse(raw).with_context(|| format!("{raw:?} is not a batch id"))?;
            let found = open_batch_requests(store, &batch, args.chunk).await?;
            anyhow::ensure!(
                !found.is_empty(),
                "no open approval requests for batch {batch}{}",
                args.chunk.map_or(String::new(), |c| format!(" chunk {c}"))
            );
            found.into_iter().map(|a| a.id).collect()
        }
        (None, None) => anyhow::bail!("give an approval id or --batch"),
    };
    let mut refused = 0;
    let mut results = Vec::new();
    for id in &ids {
        match approvals.decide_as(id, decision, who, "cli").await? {
            DecideOutcome::Decided { job, .. } => {
                let covered = store.approval(id).await?.map_or(1, |a| 1 + a.also.len());
                if !g.json() {
                    println!(
                        "{} {id}: {covered} job(s); job {} is now {}",
                        past_tense(decision),
                        job.id,
                        job.state
                    );
                }
                results.push(serde_json::json!({"approvalId": id, "decided": decision.as_str(), "jobs": covered}));
            }
            DecideOutcome::Refused(r) => {
                refused += 1;
                if !g.json() {
                    eprintln!("{id}: {}", r.message());
                }
                results.push(serde_json::json!({"approvalId": id, "refused": r.message()}));
            }
        }
    }
    if g.json() {
        print_json(&serde_json::json!({ "results": results }))?;
    }
    anyhow::ensure!(
        refused == 0,
        "{refused} of {} request(s) were not decided",
        ids.len()
    );
    Ok(())
}
