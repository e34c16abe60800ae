//! `tollgate serve`: the single-machine stack.

use super::Global;
use std::path::PathBuf;
use tollgate_cli::config::{self, FileConfig, Overrides};
use tollgate_cli::stack;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address for the HTTP API: host:port [default: 127.0.0.1:8787].
    #[arg(long)]
    listen: Option<String>,
    /// The Jira site, e.g. https://your-domain.atlassian.net.
    #[arg(long, env = "TOLLGATE_JIRA_URL", conflicts_with = "sim")]
    jira_url: Option<String>,
    /// Use an in-process Jira simulator instead of a real site.
    #[arg(long)]
    sim: bool,
    /// Simulated Jira latency per call (with --sim), milliseconds.
    #[arg(long, default_value_t = 0)]
    sim_latency_ms: u64,
    /// Concurrent workers executing jobs [default: 4].
    #[arg(long, env = "TOLLGATE_WORKERS")]
    workers: Option<usize>,
    /// Seconds a received message stays invisible, extended while its job
    /// runs [default: 30].
    #[arg(long)]
    visibility_timeout_secs: Option<u64>,
    /// Seconds a worker's lease on an entity lasts without renewal
    /// [default: the visibility timeout].
    #[arg(long)]
    lease_ttl_secs: Option<u64>,
    /// Seconds before a Jira call is given up [default: 30]. A call whose
    /// answer was lost may still land until then: keep it no lower than
    /// the site's own request timeout.
    #[arg(long, env = "TOLLGATE_JIRA_TIMEOUT_SECS")]
    jira_timeout_secs: Option<u64>,
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
    /// Base URL approvers and operators reach this server at: approval
    /// links, and the console's prefix behind a proxy that strips one.
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

pub async fn run(a: ServeArgs, g: &Global) -> anyhow::Result<()> {
    let file = FileConfig::load(g.config.as_deref())?;
    let config = config::resolve(
        Overrides {
            listen: a.listen,
            db: g.db.clone(),
            jira_url: a.jira_url,
            sim: a.sim,
            workers: a.workers,
            visibility_timeout_secs: a.visibility_timeout_secs,
            lease_ttl_secs: a.lease_ttl_secs,
            jira_timeout_secs: a.jira_timeout_secs,
            webhook_secret: config::or_secret_file(a.webhook_secret, "TOLLGATE_WEBHOOK_SECRET")?,
            jira_email: a.jira_email,
            jira_api_token: config::or_secret_file(a.jira_api_token, "TOLLGATE_JIRA_API_TOKEN")?,
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
            operator_token: config::env_secret("TOLLGATE_OPERATOR_TOKEN")?,
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
