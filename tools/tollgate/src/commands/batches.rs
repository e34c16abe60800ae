//! `tollgate batches`: list, show, watch, pause, resume.

use super::backend::{Access, on_backend};
use super::{Global, print_json};
use anyhow::Context;
use std::time::Duration;
use tollgate::app::api::batch_view_answer;
use tollgate::app::batches::{BatchView, set_paused, view_batch};
use tollgate::domain::ids::BatchId;
use tollgate::ports::{BatchStore, SystemClock};

#[derive(clap::Subcommand)]
pub enum BatchesCommand {
    /// The newest batches with their progress.
    List {
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// A batch's progress.
    Show { batch_id: String },
    /// A live progress bar (rate, ETA) until the batch's work is over.
    Watch {
        batch_id: String,
        /// Seconds between looks.
        #[arg(long, default_value_t = 1)]
        every: u64,
    },
    /// Hold a batch's queued work where it is.
    Pause { batch_id: String },
    /// Let a paused batch go on.
    Resume { batch_id: String },
}

fn batch_id(raw: &str) -> anyhow::Result<BatchId> {
    BatchId::parse(raw).with_context(|| format!("{raw:?} is not a batch id"))
}

pub async fn run(command: BatchesCommand, g: &Global) -> anyhow::Result<()> {
    let access = match command {
        BatchesCommand::Pause { .. } | BatchesCommand::Resume { .. } => Access::Write,
        _ => Access::Read,
    };
    let backend = g.backend(access).await?;
    on_backend!(backend, |store, _queue| run_on(command, store, g).await)
}

async fn run_on<S: BatchStore>(
    command: BatchesCommand,
    store: &S,
    g: &Global,
) -> anyhow::Result<()> {
    let (raw, paused) = match &command {
        BatchesCommand::List { limit } => return list(store, g, *limit).await,
        BatchesCommand::Watch { batch_id, every } => {
            return watch(store, g, batch_id, *every).await;
        }
        BatchesCommand::Show { batch_id } => (batch_id, None),
        BatchesCommand::Pause { batch_id } => (batch_id, Some(true)),
        BatchesCommand::Resume { batch_id } => (batch_id, Some(false)),
    };
    let id = batch_id(raw)?;
    let view = match paused {
        None => view_batch(store, &SystemClock, &id).await?,
        Some(p) => set_paused(store, &SystemClock, &id, p).await?,
    };
    let view = view.with_context(|| format!("no batch {id}"))?;
    if g.json() {
        return print_json(&batch_view_answer(&view).body);
    }
    print!("{}", header());
    println!("{}", row(&view));
    Ok(())
}

async fn list<S: BatchStore>(store: &S, g: &Global, limit: usize) -> anyhow::Result<()> {
    let mut views = Vec::new();
    for id in store.recent_batches(limit).await? {
        if let Some(v) = view_batch(store, &SystemClock, &id).await? {
            views.push(v);
        }
    }
    if g.json() {
        let all: Vec<_> = views.iter().map(|v| batch_view_answer(v).body).collect();
        return print_json(&serde_json::json!({ "batches": all }));
    }
    if views.is_empty() {
        println!("no batches found");
        return Ok(());
    }
    print!("{}", header());
    for v in &views {
        println!("{}", row(v));
    }
    Ok(())
}

fn header() -> String {
    format!(
        "{:<36} {:<24} {:<14} {:<8} {:>8} {:>8} {:>9} {:>8} {:>8}\n",
        "BATCH", "CREATED", "SOURCE", "STATUS", "ITEMS", "DONE", "REMAINING", "POINTS", "ETA"
    )
}

fn row(v: &BatchView) -> String {
    let b = &v.batch;
    let p = &v.progress;
    let status = if b.paused {
        "paused"
    } else if p.remaining == 0 {
        "done"
    } else {
        "running"
    };
    format!(
        "{:<36} {:<24} {:<14} {:<8} {:>8} {:>8} {:>9} {:>8.1} {:>8}",
        b.id.as_str(),
        b.created_at.to_rfc3339(),
        b.source_system.as_str(),
        status,
        b.received,
        p.finished,
        p.remaining,
        p.points,
        p.eta_seconds.map_or("-".into(), |s| format!("{s} s"))
    )
}

async fn watch<S: BatchStore>(store: &S, g: &Global, raw: &str, every: u64) -> anyhow::Result<()> {
    let id = batch_id(raw)?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:40}] {pos}/{len} jobs · {per_sec} · ETA {eta} · {msg}",
        )
        .map_err(|e| anyhow::anyhow!("progress bar template: {e}"))?
        .progress_chars("=> "),
    );
    bar.set_prefix(id.to_string());
    loop {
        let v = view_batch(store, &SystemClock, &id)
            .await?
            .with_context(|| format!("no batch {id}"))?;
        let p = &v.progress;
        bar.set_length(u64::from(p.finished + p.remaining));
        bar.set_position(u64::from(p.finished));
        bar.set_message(format!(
            "{:.1} points{}",
            p.points,
            if v.batch.paused { " · PAUSED" } else { "" }
        ));
        if p.remaining == 0 && p.finished > 0 {
            bar.finish();
            if g.json() {
                print_json(&batch_view_answer(&v).body)?;
            } else {
                println!("{}", row(&v));
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(every.max(1))).await;
    }
}
