//! `tollgate sim`: the Jira simulator alone (as the jira-sim binary).

use std::net::SocketAddr;
use std::time::Duration;

#[derive(clap::Args)]
pub struct SimArgs {
    #[arg(long, default_value = "127.0.0.1:8788")]
    listen: SocketAddr,
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    #[command(flatten)]
    limits: jira_sim::cli::LimitArgs,
}

pub async fn run(a: SimArgs) -> anyhow::Result<()> {
    let config = jira_sim::SimConfig {
        latency: Duration::from_millis(a.latency_ms),
        limits: a.limits.to_limits(),
        ..Default::default()
    };
    let (addr, _sim, handle) = jira_sim::spawn(config, a.listen).await?;
    println!("jira-sim listening on http://{addr} (basic auth sim@example.com:sim-token)");
    handle.await?;
    Ok(())
}
