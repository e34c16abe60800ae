//! `tollgate bench`: the same workload through tollgate and baseline
//! clients against jira-sim limit profiles, side by side.

use super::Global;
use std::path::PathBuf;
use std::time::Duration;
use tollgate_cli::bench::{self, BenchOptions, Client, Profile};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Profiles to run (default: every one but smoke, chaos and nightly-sync).
    #[arg(long = "profile", value_enum)]
    profiles: Vec<Profile>,
    /// Clients to run (default: all).
    #[arg(long = "client", value_enum)]
    clients: Vec<Client>,
    /// tollgate workers, as a Lambda deployment's concurrency.
    #[arg(long, default_value_t = 20)]
    workers: usize,
    /// Simulated Jira latency per call, milliseconds.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// The same as `--output json`.
    #[arg(long, hide = true)]
    json: bool,
    /// Write the results table into this Markdown file.
    #[arg(long)]
    write_doc: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

pub async fn run(a: BenchArgs, g: &Global) -> anyhow::Result<()> {
    let json = a.json || g.json();
    let opts = BenchOptions {
        profiles: if a.profiles.is_empty() {
            Profile::DEFAULT.to_vec()
        } else {
            a.profiles
        },
        clients: if a.clients.is_empty() {
            Client::ALL.to_vec()
        } else {
            a.clients
        },
        workers: a.workers,
        latency: Duration::from_millis(a.latency_ms),
        progress: !a.quiet && !json,
    };
    let results = bench::run(&opts).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        println!("{}", bench::markdown(&results));
    }
    if let Some(path) = a.write_doc {
        let command: Vec<String> = std::env::args().collect();
        bench::write_doc(&path, &command.join(" "), &results)?;
    }
    Ok(())
}
