//! `tollgate policy check`: validate a policy file and show what it
//! decides.

use anyhow::Context;
use std::path::PathBuf;
use tollgate::domain::event::Event;
use tollgate::domain::policy::{Policy, PolicyDecision};
use tollgate::domain::validation::{parse_event, validate_event};

#[derive(clap::Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file and show what it decides for sample events
    /// (or for the event in --event).
    Check {
        file: PathBuf,
        /// A v1 event (JSON file) to decide instead of the samples.
        #[arg(long)]
        event: Option<PathBuf>,
    },
}

pub fn run(command: PolicyCommand) -> anyhow::Result<()> {
    let PolicyCommand::Check { file, event } = command;
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let policy = Policy::parse(&text)
        .with_context(|| format!("{} is not a valid policy", file.display()))?;
    println!(
        "{}: valid ({} rules, {} approvers, requests expire after {} min)",
        file.display(),
        policy.rules.len(),
        policy.approvers.len(),
        policy.expiry_minutes
    );
    let samples = match event {
        Some(path) => {
            let raw =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let (event, _) = parse_event(&raw)
                .map_err(|e| anyhow::anyhow!("{} is not a valid event: {}", path.display(), e))?;
            vec![(path.display().to_string(), event)]
        }
        None => sample_events()?,
    };
    for (name, event) in samples {
        let verdict = match policy.decide(&event, 0) {
            PolicyDecision::Run { rule } => format!("runs at once ({rule})"),
            PolicyDecision::NeedsApproval {
                rule, approvers, ..
            } => format!("waits for {} ({rule})", approvers.join(" or ")),
        };
        println!("  {name:<34} {verdict}");
    }
    Ok(())
}

/// Events that show what a policy does with each kind of work.
fn sample_events() -> anyhow::Result<Vec<(String, Event)>> {
    let samples = [
        (
            "create in OPS",
            serde_json::json!({"sourceSystem": "alertmanager", "externalId": "a", "desiredOperation": "create", "projectKey": "OPS", "issueType": "Incident", "summary": "s"}),
        ),
        (
            "comment",
            serde_json::json!({"sourceSystem": "alertmanager", "externalId": "a", "desiredOperation": "comment", "comment": "c"}),
        ),
        (
            "update priority",
            serde_json::json!({"sourceSystem": "itsm", "externalId": "a", "desiredOperation": "update", "issueKey": "OPS-1", "fields": {"priority": {"name": "High"}}}),
        ),
        (
            "update security level",
            serde_json::json!({"sourceSystem": "itsm", "externalId": "a", "desiredOperation": "update", "issueKey": "OPS-1", "fields": {"security": {"id": "10001"}}}),
        ),
        (
            "transition OPS-1 to Done",
            serde_json::json!({"sourceSystem": "itsm", "externalId": "a", "desiredOperation": "transition", "issueKey": "OPS-1", "transition": "Done"}),
        ),
        (
            "transition from cmdb",
            serde_json::json!({"sourceSystem": "cmdb", "externalId": "a", "desiredOperation": "transition", "issueKey": "ASSET-1", "transition": "Done"}),
        ),
    ];
    samples
        .into_iter()
        .map(|(name, v)| {
            validate_event(&v)
                .map(|e| (name.to_string(), e))
                .map_err(|e| anyhow::anyhow!("sample {name}: {e}"))
        })
        .collect()
}
