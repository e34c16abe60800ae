//! `tollgate`: run the single-machine stack, the demo, and operator
//! commands. This file only parses and dispatches; each command lives in
//! `commands/`.

mod commands;

use clap::{CommandFactory, Parser, Subcommand};
use commands::{Global, approvals, batches, jobs, policy, rejected, sites, sources};
use tollgate::domain::approval::Decision;
use tollgate_cli::telemetry;

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "Governed, rate-limit-aware execution of events against Jira Cloud"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the single-machine stack: HTTP ingest + worker pool on SQLite.
    Serve(Box<commands::serve::ServeArgs>),
    /// Run the stack on the built-in simulator with a realistic mix of events.
    Demo(commands::demo::DemoArgs),
    /// Drive the same workload through tollgate and baseline clients against
    /// jira-sim limit profiles, side by side.
    Bench(commands::bench::BenchArgs),
    /// Load-test a `serve` process on loopback: signed events as fast as it
    /// takes them, every job held (Jira's quota spent); accepted events per
    /// second, ingest latency, peak memory of serve.
    Load(commands::load::LoadArgs),
    /// Jobs: list, show, retry, cancel.
    Jobs {
        #[command(subcommand)]
        command: jobs::JobsCommand,
    },
    /// Approval requests: list, show, resend.
    Approvals {
        #[command(subcommand)]
        command: approvals::ApprovalsCommand,
    },
    /// Approve a waiting request — or every open one of a batch or chunk —
    /// as an operator (recorded as such).
    Approve(approvals::DecideArgs),
    /// Deny a waiting request — or every open one of a batch or chunk — as
    /// an operator (recorded as such).
    Deny(approvals::DecideArgs),
    /// The manual queue: events refused as invalid, kept with their reasons.
    Rejected {
        #[command(subcommand)]
        command: rejected::RejectedCommand,
    },
    /// Jira sites: pause, paces, degraded mode and its trail.
    Sites {
        #[command(subcommand)]
        command: Option<sites::SitesCommand>,
    },
    /// Hotspots: Jira requests, 429s by reason and endpoint, points per
    /// operation, the issues throttled most.
    Stats(commands::stats::StatsArgs),
    /// Batches (bulk sync runs): list, show, watch, pause, resume.
    Batches {
        #[command(subcommand)]
        command: batches::BatchesCommand,
    },
    /// Senders: try a mapping on a saved payload.
    Sources {
        #[command(subcommand)]
        command: sources::SourcesCommand,
    },
    /// Check an approval policy file.
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
    /// Run the Jira simulator alone (same as the jira-sim binary).
    Sim(commands::sim::SimArgs),
    /// Shell completions on stdout (`tollgate completions bash > …`).
    Completions {
        #[arg(value_enum)]
        shell: commands::completions::Shell,
    },
    /// The man page (roff) on stdout.
    Man,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let g = &cli.global;
    // serve logs its work; the benchmarks only their failures; operator
    // commands their warnings.
    let level = match &cli.command {
        Command::Serve(_) | Command::Sim(_) => "info",
        Command::Bench(_) | Command::Load(_) => "error",
        _ => "warn",
    };
    telemetry::init(g.log_format, level);
    match cli.command {
        Command::Serve(a) => commands::serve::run(*a, g).await,
        Command::Demo(a) => commands::demo::run(a).await,
        Command::Bench(a) => commands::bench::run(a, g).await,
        Command::Load(a) => commands::load::run(a, g).await,
        Command::Jobs { command } => jobs::run(command, g).await,
        Command::Approvals { command } => approvals::run(command, g).await,
        Command::Approve(a) => approvals::decide(a, Decision::Approve, g).await,
        Command::Deny(a) => approvals::decide(a, Decision::Deny, g).await,
        Command::Rejected { command } => rejected::run(command, g).await,
        Command::Sites { command } => sites::run(command, g).await,
        Command::Stats(a) => commands::stats::run(a, g).await,
        Command::Batches { command } => batches::run(command, g).await,
        Command::Sources { command } => sources::run(command),
        Command::Policy { command } => policy::run(command),
        Command::Sim(a) => commands::sim::run(a).await,
        Command::Completions { shell } => commands::completions::completions(shell, Cli::command()),
        Command::Man => commands::completions::man(Cli::command()),
    }
}
