//! `tollgate stats`: the hotspot figures.

use super::backend::{Access, on_backend};
use super::{Global, print_json};
use tollgate::ports::SystemClock;

#[derive(clap::Args)]
pub struct StatsArgs {
    /// How many hourly windows, counting back from this one.
    #[arg(long, default_value_t = 24)]
    hours: u32,
    /// The same as `--output json`.
    #[arg(long, hide = true)]
    json: bool,
}

pub async fn run(a: StatsArgs, g: &Global) -> anyhow::Result<()> {
    let hours = a.hours.clamp(1, tollgate::app::stats::MAX_STATS_HOURS);
    let backend = g.backend(Access::Read).await?;
    let stats = on_backend!(backend, |store, _queue| {
        tollgate::app::stats::read_stats(store, &SystemClock, hours).await?
    });
    if a.json || g.json() {
        return print_json(&tollgate::app::api::stats_answer(&stats, hours).body);
    }
    print!("{}", table(&stats, hours));
    Ok(())
}

/// The hotspot figures as a table for people.
fn table(s: &tollgate::domain::stats::CallStats, hours: u32) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let share = |n: u64| {
        if s.requests == 0 {
            0.0
        } else {
            100.0 * n as f64 / s.requests as f64
        }
    };
    let _ = writeln!(
        out,
        "Jira calls, last {hours} h: {} requests, {} throttled ({:.1} %), {} points",
        s.requests,
        s.throttled,
        share(s.throttled),
        s.points
    );
    if s.endpoints.is_empty() {
        let _ = writeln!(out, "\nno Jira calls found in these windows");
    } else {
        let _ = writeln!(
            out,
            "\n{:<46} {:<18} {:>9} {:>6} {:>7}",
            "ENDPOINT", "OPERATION", "REQUESTS", "429S", "POINTS"
        );
    }
    let mut endpoints: Vec<_> = s.endpoints.iter().collect();
    endpoints.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then(a.0.cmp(b.0)));
    for (endpoint, e) in endpoints {
        let _ = writeln!(
            out,
            "{:<46} {:<18} {:>9} {:>6} {:>7}",
            endpoint,
            tollgate::domain::stats::operation_name(endpoint),
            e.requests,
            e.throttled,
            e.points
        );
    }
    if !s.throttled_by_reason.is_empty() {
        let _ = writeln!(out, "\n{:<32} {:>6}", "429 REASON", "COUNT");
        for (reason, n) in &s.throttled_by_reason {
            let _ = writeln!(out, "{reason:<32} {n:>6}");
        }
    }
    if !s.senders.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<24} {:>9} {:>10} {:>9} {:>8}",
            "SENDER", "ACCEPTED", "DUPLICATE", "REJECTED", "IGNORED"
        );
        for (name, st) in &s.senders {
            let _ = writeln!(
                out,
                "{name:<24} {:>9} {:>10} {:>9} {:>8}",
                st.accepted, st.duplicate, st.rejected, st.ignored
            );
        }
    }
    let top = s.top_issues(10);
    if !top.is_empty() {
        let _ = writeln!(out, "\n{:<16} {:>6}", "ISSUE", "429S");
        for (issue, n) in top {
            let _ = writeln!(out, "{issue:<16} {n:>6}");
        }
    }
    out
}
