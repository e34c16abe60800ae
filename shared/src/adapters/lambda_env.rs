//! The Lambda functions' configuration: environment variables, as the SAM
//! template sets them, and the AWS SDK configuration (which honours
//! `AWS_ENDPOINT_URL`, so the functions run against a local emulator too).

use super::dynamodb::DynamoStore;
use super::secrets_manager::{SecretBundle, SecretsError};
use super::sqs::SqsQueue;
use crate::domain::ids::ProjectKey;
use crate::domain::policy::Policy;
use crate::domain::source::Sources;
use crate::domain::time::Timestamp;
use std::time::Duration;

/// Environment variable names, shared with `infra/template.yaml`.
pub mod vars {
    pub const TABLE: &str = "TOLLGATE_TABLE";
    pub const QUEUE_URL: &str = "TOLLGATE_QUEUE_URL";
    pub const BULK_QUEUE_URL: &str = "TOLLGATE_BULK_QUEUE_URL";
    pub const JIRA_URL: &str = "TOLLGATE_JIRA_URL";
    pub const SECRET_ID: &str = "TOLLGATE_SECRET_ID";
    pub const MAX_CONCURRENCY: &str = "TOLLGATE_MAX_CONCURRENCY";
    /// Executor instances the bulk queue adds (its event source's
    /// MaximumConcurrency).
    pub const BULK_CONCURRENCY: &str = "TOLLGATE_BULK_CONCURRENCY";
    pub const JIRA_TIMEOUT_SECS: &str = "TOLLGATE_JIRA_TIMEOUT_SECS";
    /// The longest wait between two runs of a failing job (default 30).
    pub const RETRY_CAP_SECS: &str = "TOLLGATE_RETRY_CAP_SECS";
    /// The function's timeout as deployed: the deadline when the runtime's
    /// is unusable (the template sets it beside each `Timeout`).
    pub const FUNCTION_TIMEOUT_SECS: &str = "TOLLGATE_FUNCTION_TIMEOUT_SECS";
    pub const RETENTION_DAYS: &str = "TOLLGATE_RETENTION_DAYS";
    /// The approval policy, as TOML text.
    pub const POLICY: &str = "TOLLGATE_POLICY";
    /// Approvers for the built-in policy (comma-separated).
    pub const APPROVERS: &str = "TOLLGATE_APPROVERS";
    /// The API's public base URL, for approval links.
    pub const PUBLIC_URL: &str = "TOLLGATE_PUBLIC_URL";
    /// The Jira project for "Rate limit exceeded" tasks (optional).
    pub const EXHAUSTED_PROJECT: &str = "TOLLGATE_EXHAUSTED_PROJECT";
    /// The senders document, as TOML text (optional).
    pub const SOURCES: &str = "TOLLGATE_SOURCES";
    /// The dead-letter queue the sweep checks (optional; the executor's).
    pub const DLQ_URL: &str = "TOLLGATE_DLQ_URL";
}

#[derive(Debug, Clone, PartialEq)]
pub struct LambdaSettings {
    pub table: String,
    pub queue_url: String,
    /// Defaults to `queue_url`: one queue for both priorities.
    pub bulk_queue_url: String,
    pub jira_url: Option<String>,
    /// A Secrets Manager secret (name or ARN); without it secrets come from
    /// the environment.
    pub secret_id: Option<String>,
    /// Executor instances the interactive queue runs at most.
    pub max_concurrency: usize,
    /// Executor instances the bulk queue adds at most.
    pub bulk_concurrency: usize,
    pub jira_timeout: Duration,
    pub retry_cap: Duration,
    /// The function's own timeout (default 10 s).
    pub function_timeout: Duration,
    pub retention: Duration,
    pub policy: Policy,
    pub public_url: String,
    pub exhausted_project: Option<String>,
    pub sources: Sources,
    /// The dead-letter queue the sweep checks, when set.
    pub dead_letter_url: Option<String>,
}

impl LambdaSettings {
    /// Every executor instance that may run at once, whichever queue feeds
    /// it: each takes this share of the site's pace, so together they add
    /// up to the pace and no more.
    pub fn executor_instances(&self) -> usize {
        (self.max_concurrency + self.bulk_concurrency).max(1)
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingsError {
    #[error(
        "environment variable {0} is required (the SAM template sets it; to run locally, export it — see the README's \"Run the Lambda stack locally\")"
    )]
    Missing(&'static str),
    #[error("environment variable {name} must be {expected}, not {value:?}")]
    Invalid {
        name: &'static str,
        expected: &'static str,
        value: String,
    },
    #[error("environment variable {name}: {problem}")]
    Policy { name: &'static str, problem: String },
}

fn policy(lookup: &impl Fn(&str) -> Option<String>) -> Result<Policy, SettingsError> {
    let p = match lookup(vars::POLICY).filter(|v| !v.trim().is_empty()) {
        Some(text) => Policy::parse(&text).map_err(|e| SettingsError::Policy {
            name: vars::POLICY,
            problem: e.to_string(),
        })?,
        None => Policy::default(),
    };
    p.with_default_approvers(lookup(vars::APPROVERS).as_deref())
        .map_err(|e| SettingsError::Policy {
            name: vars::APPROVERS,
            problem: e.to_string(),
        })
}

fn sources(lookup: &impl Fn(&str) -> Option<String>) -> Result<Sources, SettingsError> {
    match lookup(vars::SOURCES).filter(|v| !v.trim().is_empty()) {
        Some(text) => Sources::parse(&text).map_err(|e| SettingsError::Policy {
            name: vars::SOURCES,
            problem: e.to_string(),
        }),
        None => Ok(Sources::default()),
    }
}

fn number(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
) -> Result<u64, SettingsError> {
    match lookup(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or(SettingsError::Invalid {
                name,
                expected: "a positive whole number",
                value: v,
            }),
    }
}

impl LambdaSettings {
    /// Reads the settings through `lookup` (`std::env::var` in `main`).
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let required = |name: &'static str| {
            lookup(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or(SettingsError::Missing(name))
        };
        let queue_url = required(vars::QUEUE_URL)?;
        let jira_url = lookup(vars::JIRA_URL).filter(|v| !v.trim().is_empty());
        if let Some(url) = &jira_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(SettingsError::Invalid {
                name: vars::JIRA_URL,
                expected: "an http(s) URL",
                value: url.clone(),
            });
        }
        Ok(LambdaSettings {
            table: required(vars::TABLE)?,
            bulk_queue_url: lookup(vars::BULK_QUEUE_URL)
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| queue_url.clone()),
            queue_url,
            jira_url,
            secret_id: lookup(vars::SECRET_ID).filter(|v| !v.trim().is_empty()),
            dead_letter_url: lookup(vars::DLQ_URL).filter(|v| !v.trim().is_empty()),
            max_concurrency: number(&lookup, vars::MAX_CONCURRENCY, 10)? as usize,
            bulk_concurrency: number(&lookup, vars::BULK_CONCURRENCY, 0)? as usize,
            jira_timeout: Duration::from_secs(number(&lookup, vars::JIRA_TIMEOUT_SECS, 20)?),
            retry_cap: Duration::from_secs(
                number(
                    &lookup,
                    vars::RETRY_CAP_SECS,
                    crate::domain::backoff::DEFAULT_RETRY_CAP.as_secs(),
                )?
                .max(1),
            ),
            function_timeout: Duration::from_secs(
                number(&lookup, vars::FUNCTION_TIMEOUT_SECS, 10)?.max(1),
            ),
            retention: Duration::from_secs(number(&lookup, vars::RETENTION_DAYS, 90)? * 24 * 3600),
            policy: policy(&lookup)?,
            public_url: lookup(vars::PUBLIC_URL)
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_default(),
            exhausted_project: match lookup(vars::EXHAUSTED_PROJECT)
                .filter(|v| !v.trim().is_empty())
            {
                None => None,
                Some(p) => Some(
                    ProjectKey::parse(&p)
                        .ok_or(SettingsError::Invalid {
                            name: vars::EXHAUSTED_PROJECT,
                            expected: "a Jira project key",
                            value: p.clone(),
                        })?
                        .to_string(),
                ),
            },
            sources: sources(&lookup)?,
        })
    }
}

/// The SDK configuration from the environment: region, credentials and
/// `AWS_ENDPOINT_URL` (a local emulator) as the AWS CLI reads them.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
}

/// What every function builds once at init: its settings, its secrets, and
/// the store and queue adapters over SDK clients that share one config.
pub struct Wired {
    pub settings: LambdaSettings,
    pub secrets: SecretBundle,
    pub store: DynamoStore,
    pub queue: SqsQueue,
}

/// Reads the environment and the secret, and builds the SDK clients.
pub async fn wire() -> Result<Wired, WiringError> {
    let settings = LambdaSettings::from_env(|k| std::env::var(k).ok())?;
    let aws = sdk_config().await;
    let secrets = match &settings.secret_id {
        Some(id) => SecretBundle::fetch(&aws_sdk_secretsmanager::Client::new(&aws), id).await?,
        None => SecretBundle::from_env(|k| std::env::var(k).ok()),
    };
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), &settings.table)
        .with_retention(settings.retention);
    let queue = SqsQueue::new(
        aws_sdk_sqs::Client::new(&aws),
        &settings.queue_url,
        &settings.bulk_queue_url,
    );
    Ok(Wired {
        settings,
        secrets,
        store,
        queue,
    })
}

/// JSON log lines on stderr (CloudWatch keeps one event per line); the
/// level from `RUST_LOG`, `info` by default.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time() // CloudWatch stamps each line
        .json()
        .flatten_event(true)
        .try_init();
}

/// Runtime deadlines below this are durations, not instants (epoch
/// milliseconds this small are 1973): some local emulators send the
/// function's timeout itself (`cargo lambda watch`: 600000).
const RELATIVE_BELOW_MS: u64 = 100_000_000_000;

/// The invocation's deadline as an instant, from the runtime's value (epoch
/// milliseconds). A relative value counts from now; none, or one already
/// past, falls back to the function's configured timeout — with a warning,
/// as either means the runtime is not telling the truth.
pub fn invocation_deadline(raw: u64, now: Timestamp, timeout: Duration) -> Timestamp {
    let fallback = now.plus(timeout);
    if raw == 0 {
        tracing::warn!(
            fallback_secs = timeout.as_secs(),
            "no invocation deadline; the function's timeout is used"
        );
        return fallback;
    }
    if raw < RELATIVE_BELOW_MS {
        tracing::warn!(
            deadline_ms = raw,
            "a relative invocation deadline (a local emulator); counted from now"
        );
        return now.plus(Duration::from_millis(raw));
    }
    let at = Timestamp(i64::try_from(raw).unwrap_or(i64::MAX));
    if at > now {
        return at;
    }
    tracing::warn!(
        deadline_ms = raw,
        fallback_secs = timeout.as_secs(),
        "the invocation deadline has passed already; the function's timeout is used"
    );
    fallback
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn a_missing_table_is_named() {
        let e = LambdaSettings::from_env(env(&[(vars::QUEUE_URL, "http://q")])).unwrap_err();
        assert_eq!(e, SettingsError::Missing(vars::TABLE));
    }

    #[test]
    fn one_queue_serves_both_priorities_unless_a_bulk_queue_is_named() {
        let s = LambdaSettings::from_env(env(&[(vars::QUEUE_URL, "http://q"), (vars::TABLE, "t")]))
            .unwrap();
        assert_eq!(s.bulk_queue_url, "http://q");
        assert_eq!(s.max_concurrency, 10);
        assert_eq!(s.executor_instances(), 10, "no bulk queue of its own");
    }

    #[test]
    fn a_policy_comes_as_toml_text_or_as_a_list_of_approvers() {
        let s = LambdaSettings::from_env(env(&[
            (vars::QUEUE_URL, "http://q"),
            (vars::TABLE, "t"),
            (vars::APPROVERS, "a@x, b@x"),
        ]))
        .unwrap();
        assert_eq!(s.policy.approvers, ["a@x", "b@x"]);
        let e = LambdaSettings::from_env(env(&[
            (vars::QUEUE_URL, "http://q"),
            (vars::TABLE, "t"),
            (vars::POLICY, "rules = 3"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("TOLLGATE_POLICY"), "{e}");
    }

    #[test]
    fn a_bad_number_names_the_variable_and_the_value() {
        let e = LambdaSettings::from_env(env(&[
            (vars::QUEUE_URL, "http://q"),
            (vars::TABLE, "t"),
            (vars::MAX_CONCURRENCY, "lots"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("TOLLGATE_MAX_CONCURRENCY"));
        assert!(e.to_string().contains("lots"));
    }
}
