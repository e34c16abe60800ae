//! `tollgate sites`: each Jira site's pause, paces, degraded mode and its
//! trail; `clear` ends degraded mode.

use super::backend::{Access, on_backend};
use super::{Global, operator_name, print_json};
use tollgate::domain::governor::SiteGovernor;
use tollgate::ports::{Clock, SystemClock};

#[derive(clap::Subcommand)]
pub enum SitesCommand {
    /// Each site's state (the default).
    List,
    /// End a site's degraded mode now.
    Clear {
        /// The site's URL, as `tollgate sites` lists it.
        site: String,
        #[arg(long = "as", value_name = "NAME")]
        who: String,
    },
}

fn sites_json(sites: &[(String, SiteGovernor)]) -> serde_json::Value {
    let now = SystemClock.now();
    let all: Vec<_> = sites
        .iter()
        .map(|(site, g)| {
            let paces: serde_json::Map<String, serde_json::Value> = g
                .endpoints
                .iter()
                .map(|(e, p)| (e.clone(), serde_json::json!(p.rate)))
                .collect();
            serde_json::json!({
                "site": site,
                "paused": g.paused_until > now,
                "pausedUntil": (g.paused_until > now).then(|| g.paused_until.to_rfc3339()),
                "degraded": g.health.degraded.as_ref().map(|d| serde_json::json!({
                    "since": d.since.to_rfc3339(), "reason": d.reason})),
                "pacePerSecond": paces,
            })
        })
        .collect();
    serde_json::json!({ "sites": all })
}

pub async fn run(command: Option<SitesCommand>, g: &Global) -> anyhow::Result<()> {
    match command.unwrap_or(SitesCommand::List) {
        SitesCommand::List => {
            let sites = g.backend(Access::Read).await?.sites().await?;
            if g.json() {
                return print_json(&sites_json(&sites));
            }
            if sites.is_empty() {
                println!("no sites found (serve records its site when it starts)");
            }
            let now = SystemClock.now();
            for (site, gov) in sites {
                let mode = match &gov.health.degraded {
                    Some(d) => format!("DEGRADED since {} ({})", d.since.to_rfc3339(), d.reason),
                    None => "healthy".into(),
                };
                let paused = if gov.paused_until > now {
                    format!("paused until {}", gov.paused_until.to_rfc3339())
                } else {
                    "not paused".into()
                };
                println!("{site}  {mode}; {paused}");
                if !gov.endpoints.is_empty() {
                    println!("    {:<45} {:>10}", "ENDPOINT", "PACE");
                }
                for (endpoint, p) in &gov.endpoints {
                    println!("    {endpoint:<45} {:>8.1}/s", p.rate);
                }
                for c in &gov.health.changes {
                    println!(
                        "    {}  {}  {}",
                        c.at.to_rfc3339(),
                        if c.degraded { "degraded" } else { "recovered" },
                        c.why
                    );
                }
            }
        }
        SitesCommand::Clear { site, who } => {
            let who = operator_name(&who)?;
            let backend = g.backend(Access::Write).await?;
            let cleared = on_backend!(backend, |store, _queue| {
                tollgate::app::governor::clear_degraded(store, &site, who, SystemClock.now())
                    .await?
            });
            if cleared {
                println!("{site}: degraded mode cleared by {who}");
            } else {
                anyhow::bail!("{site} is not degraded (see tollgate sites)");
            }
        }
    }
    Ok(())
}
