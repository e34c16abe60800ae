//! Senders, configured in a document (one entry per sender): its name (the
//! `sourceSystem` of every event it produces, and its route
//! `POST /v1/sources/{name}`), how it authenticates, and how its payloads
//! become events (a built-in preset or a mapping of its own).
//!
//! ```toml
//! [[sources]]
//! name = "alertmanager"
//! auth = "bearer"              # tollgate | pagerduty | github | bearer | basic
//! preset = "alertmanager"      # alertmanager | grafana | pagerduty | github | generic
//! params = { project = "OPS" }
//! unmatched = "keep"           # what no rule takes: kept in the manual queue (default) | "ignore"
//!
//! [[sources]]
//! name = "inventory"
//! auth = "tollgate"
//! [sources.mapping]
//! items = "changes"
//! [[sources.mapping.rules]]
//! when = "item.kind == 'server'"
//! event = { externalId = "{{ item.id }}", desiredOperation = "upsert", projectKey = "ASSET", issueType = "Task", summary = "{{ item.name }}" }
//! ```
//!
//! Secrets are not in the document: `serve` reads them from
//! `TOLLGATE_SOURCE_<NAME>_SECRETS` (comma-separated during a rotation),
//! the Lambda functions from the secret's `sourceSecrets.<name>`.

use super::ids::SourceSystem;
use super::mapping::{Mapping, MappingError};
use super::presets;
use super::sender_auth::Scheme;
use serde::Deserialize;
use serde_json::Value;

/// One sender.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub name: SourceSystem,
    pub auth: Scheme,
    pub mapping: Mapping,
    /// What the mapping's templates see as `params`.
    pub params: Value,
    /// The preset the mapping came from, if any.
    pub preset: Option<String>,
    pub unmatched: UnmatchedPolicy,
}

/// What becomes of a payload, or an item of one, that no rule takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnmatchedPolicy {
    /// Kept in the manual queue with the reason: nothing is dropped
    /// without a record.
    #[default]
    Keep,
    /// Answered `ignored` with the reason, counted per sender and logged:
    /// for senders that post much tollgate has nothing to do for.
    Ignore,
}

/// Every configured sender.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sources {
    list: Vec<Source>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    #[error("the sources document is not valid: {0}")]
    Parse(String),
    #[error("source {0:?}: the name must be 1–64 letters, digits, '.', '_' or '-'")]
    Name(String),
    #[error("source {0:?} is configured twice")]
    Duplicate(String),
    #[error("source {0:?}: give either preset or mapping")]
    MappingChoice(String),
    #[error("source {name:?}: unknown preset {preset:?} (known: {known})")]
    Preset {
        name: String,
        preset: String,
        known: String,
    },
    #[error("source {name:?}: {error}")]
    Mapping { name: String, error: MappingError },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default)]
    sources: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    auth: Scheme,
    #[serde(default)]
    preset: Option<String>,
    #[serde(default)]
    mapping: Option<Mapping>,
    #[serde(default)]
    params: Option<toml::Table>,
    #[serde(default)]
    unmatched: UnmatchedPolicy,
}

impl Sources {
    pub fn parse(toml_text: &str) -> Result<Sources, SourceError> {
        let doc: Document =
            toml::from_str(toml_text).map_err(|e| SourceError::Parse(e.to_string()))?;
        let mut list: Vec<Source> = Vec::new();
        for e in doc.sources {
            let name =
                SourceSystem::parse(&e.name).ok_or_else(|| SourceError::Name(e.name.clone()))?;
            if list.iter().any(|s| s.name == name) {
                return Err(SourceError::Duplicate(e.name));
            }
            let mapping = match (&e.preset, e.mapping) {
                (Some(p), None) => presets::preset(p).ok_or_else(|| SourceError::Preset {
                    name: e.name.clone(),
                    preset: p.clone(),
                    known: presets::NAMES.join(", "),
                })?,
                (None, Some(m)) => {
                    m.check().map_err(|error| SourceError::Mapping {
                        name: e.name.clone(),
                        error,
                    })?;
                    m
                }
                _ => return Err(SourceError::MappingChoice(e.name)),
            };
            let params = match e.params {
                Some(t) => {
                    serde_json::to_value(t).map_err(|e| SourceError::Parse(e.to_string()))?
                }
                None => Value::Object(Default::default()),
            };
            list.push(Source {
                name,
                auth: e.auth,
                mapping,
                params,
                preset: e.preset,
                unmatched: e.unmatched,
            });
        }
        Ok(Sources { list })
    }

    pub fn get(&self, name: &str) -> Option<&Source> {
        self.list.iter().find(|s| s.name.as_str() == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Source> {
        self.list.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// The environment variable holding a source's secrets on `serve`.
pub fn secrets_env_var(name: &SourceSystem) -> String {
    let upper: String = name
        .as_str()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("TOLLGATE_SOURCE_{upper}_SECRETS")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_and_own_mappings_load_with_their_params() {
        let s = Sources::parse(
            r#"
[[sources]]
name = "alertmanager"
auth = "bearer"
preset = "alertmanager"
params = { project = "OPS" }

[[sources]]
name = "inventory"
auth = "github"
[sources.mapping]
[[sources.mapping.rules]]
passthrough = true
"#,
        )
        .unwrap();
        let am = s.get("alertmanager").unwrap();
        assert_eq!(am.auth, Scheme::Bearer);
        assert_eq!(am.params["project"], "OPS");
        assert_eq!(s.get("inventory").unwrap().auth, Scheme::GitHub);
        assert_eq!(am.unmatched, UnmatchedPolicy::Keep, "kept unless said");
        assert!(s.get("nope").is_none());
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            (
                "[[sources]]\nname = \"a b\"\nauth = \"bearer\"\npreset = \"generic\"\n",
                "a b",
            ),
            (
                "[[sources]]\nname = \"a\"\nauth = \"bearer\"\n",
                "either preset or mapping",
            ),
            (
                "[[sources]]\nname = \"a\"\nauth = \"bearer\"\npreset = \"nagios\"\n",
                "unknown preset",
            ),
            (
                "[[sources]]\nname = \"a\"\nauth = \"smtp\"\npreset = \"generic\"\n",
                "smtp",
            ),
            (
                "[[sources]]\nname = \"a\"\nauth = \"bearer\"\npreset = \"generic\"\n[[sources]]\nname = \"a\"\nauth = \"basic\"\npreset = \"generic\"\n",
                "twice",
            ),
            (
                "[[sources]]\nname = \"a\"\nauth = \"bearer\"\npreset = \"generic\"\nunmatched = \"drop\"\n",
                "drop",
            ),
        ];
        for (text, needle) in cases {
            let e = Sources::parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn secrets_come_from_a_variable_named_after_the_source() {
        assert_eq!(
            secrets_env_var(&SourceSystem::parse("alert-manager.prod").unwrap()),
            "TOLLGATE_SOURCE_ALERT_MANAGER_PROD_SECRETS"
        );
    }
}
