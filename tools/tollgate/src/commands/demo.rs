//! `tollgate demo`: the stack on the built-in simulator with a realistic mix.

use std::time::Duration;
use tollgate_cli::demo;

#[derive(clap::Args)]
pub struct DemoArgs {
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
}

pub async fn run(a: DemoArgs) -> anyhow::Result<()> {
    println!(
        "tollgate demo: {} alerts against the built-in Jira simulator",
        a.alerts
    );
    let summary = demo::run(demo::DemoOptions {
        alerts: a.alerts,
        workers: a.workers,
        sim_latency: Duration::from_millis(a.latency_ms),
        progress: !a.quiet,
    })
    .await?;
    println!("{}", summary.table());
    for link in &summary.approval_links {
        println!(
            "One change waited for a person. Its approval link (opened and approved by the demo):\n  {link}"
        );
    }
    if summary.duplicate_issues > 0 || summary.duplicate_comments > 0 || summary.failed > 0 {
        anyhow::bail!("the demo saw duplicates or failures");
    }
    println!("Every alert was delivered more than once; Jira got each issue exactly once.");
    Ok(())
}
