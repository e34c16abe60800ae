//! `tollgate load`: load-test a `serve` process on loopback.

use super::Global;

#[derive(clap::Args)]
pub struct LoadArgs {
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Concurrent senders.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// The same as `--output json`.
    #[arg(long, hide = true)]
    json: bool,
    #[arg(long)]
    quiet: bool,
}

pub async fn run(a: LoadArgs, g: &Global) -> anyhow::Result<()> {
    let r = tollgate_cli::load::run(&tollgate_cli::load::LoadOptions {
        events: a.events,
        concurrency: a.concurrency.max(1),
        workers: a.workers,
        progress: !a.quiet,
    })
    .await?;
    if a.json || g.json() {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", r.markdown());
    }
    if r.lost > 0 {
        anyhow::bail!("{} events were answered but not held", r.lost);
    }
    Ok(())
}
