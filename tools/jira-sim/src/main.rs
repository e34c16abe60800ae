//! `jira-sim`: run the Jira Cloud simulator on its own.

use clap::Parser;
use jira_sim::SimConfig;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "A Jira Cloud simulator for tollgate's tests, demo and benchmarks")]
struct Args {
    /// Address to listen on; port 0 picks a free one (printed on start).
    #[arg(long, default_value = "127.0.0.1:8788")]
    listen: SocketAddr,
    /// Account email accepted by basic auth.
    #[arg(long, env = "JIRA_SIM_EMAIL", default_value = "sim@example.com")]
    email: String,
    /// API token accepted by basic auth (and as a bearer token).
    #[arg(
        long,
        env = "JIRA_SIM_API_TOKEN",
        default_value = "sim-token",
        hide_env_values = true
    )]
    api_token: String,
    /// Project keys that exist, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "OPS,ASSET,ITSM,INC,DEMO,SEC"
    )]
    projects: Vec<String>,
    /// Milliseconds added to every answer.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    #[command(flatten)]
    limits: jira_sim::cli::LimitArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .init();
    let args = Args::parse();
    let config = SimConfig {
        email: args.email,
        api_token: args.api_token,
        projects: args.projects,
        latency: Duration::from_millis(args.latency_ms),
        limits: args.limits.to_limits(),
    };
    let (addr, _sim, handle) = jira_sim::spawn(config, args.listen).await?;
    // Tests read this line to learn the port.
    println!("jira-sim listening on http://{addr}");
    handle.await?;
    Ok(())
}
