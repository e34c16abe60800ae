//! `tollgate sources test`: map a saved payload with a sender's mapping.

use anyhow::Context;
use std::path::PathBuf;
use tollgate::domain::policy::PolicyDecision;
use tollgate_cli::config;

#[derive(clap::Subcommand)]
pub enum SourcesCommand {
    /// Map a saved payload with source NAME's mapping and show the events
    /// it makes and what the policy decides for each. Calls nothing.
    Test {
        name: String,
        /// The payload (JSON file), as the sender posts it.
        file: PathBuf,
        /// The senders document.
        #[arg(long, env = "TOLLGATE_SOURCES", default_value = "sources.toml")]
        sources: PathBuf,
        /// The approval policy to decide with (built-in when absent).
        #[arg(long, env = "TOLLGATE_POLICY")]
        policy: Option<PathBuf>,
        #[arg(long, env = "TOLLGATE_APPROVERS")]
        approvers: Option<String>,
    },
}

pub fn run(command: SourcesCommand) -> anyhow::Result<()> {
    let SourcesCommand::Test {
        name,
        file,
        sources,
        policy,
        approvers,
    } = command;
    let all = config::load_sources(&sources)?;
    let source = all
        .get(&name)
        .with_context(|| format!("{} has no source named {name:?}", sources.display()))?;
    let raw = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let payload: serde_json::Value =
        serde_json::from_slice(&raw).with_context(|| format!("{} is not JSON", file.display()))?;
    let policy = config::ApprovalSettings::load(policy.as_deref(), approvers.as_deref())?;
    let out = source.mapping.apply(&payload, &source.name, &source.params);
    let what_unmatched = match source.unmatched {
        tollgate::domain::source::UnmatchedPolicy::Keep => "kept in the manual queue",
        tollgate::domain::source::UnmatchedPolicy::Ignore => "ignored",
    };
    println!(
        "{name} ({}, {} auth): {} item(s) mapped, {} matched no rule ({what_unmatched})",
        source.preset.as_deref().unwrap_or("own mapping"),
        source.auth.as_str(),
        out.mapped.len(),
        out.unmatched.len()
    );
    for u in &out.unmatched {
        println!("  {}: no rule of sender {name} matched", u.path);
    }
    for m in out.mapped {
        match m.event {
            Ok(event) => {
                let verdict = match tollgate::domain::validation::validate_event(&event) {
                    Ok(e) => match policy.decide(&e, 0) {
                        PolicyDecision::Run { rule } => format!("runs at once ({rule})"),
                        PolicyDecision::NeedsApproval {
                            rule, approvers, ..
                        } => format!("waits for {} ({rule})", approvers.join(" or ")),
                    },
                    Err(e) => format!("invalid: {e}"),
                };
                println!(
                    "\n{}: {verdict}\n{}",
                    m.path,
                    serde_json::to_string_pretty(&event)?
                );
            }
            Err(errors) => {
                println!(
                    "\n{}: rejected (kept in the manual queue when posted)",
                    m.path
                );
                for e in errors {
                    println!("  {}: {}", e.field, e.message);
                }
            }
        }
    }
    Ok(())
}
