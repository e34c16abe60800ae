//! Configuration for `serve`: flags, then environment, then an optional
//! `tollgate.toml`, then defaults. Secrets come from the environment only and
//! are held as [`Secret`] so they never reach a log line.

use anyhow::{Context, bail};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tollgate::adapters::jira::JiraAuth;
use tollgate::domain::followup::FollowUpPolicy;
use tollgate::domain::ids::ProjectKey;
use tollgate::domain::policy::Policy;
use tollgate::domain::secret::{Secret, secret_list};
use tollgate::domain::source::{Sources, secrets_env_var};
use tollgate::ports::MAX_BULK_CREATE;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";
pub const DEFAULT_DB: &str = "tollgate.db";

/// The optional `tollgate.toml`. Secrets are not read from it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `host:port`; a host name is resolved (`localhost:8787`).
    pub listen: Option<String>,
    pub db: Option<PathBuf>,
    pub workers: Option<usize>,
    pub visibility_timeout_secs: Option<u64>,
    pub lease_ttl_secs: Option<u64>,
    /// The Jira client's timeout: a call whose answer was lost may still
    /// land until its start plus this.
    pub jira_timeout_secs: Option<u64>,
    /// The longest wait between two runs of a job that keeps failing
    /// (full jitter under a ceiling doubling from 1 s); default 30.
    pub retry_cap_secs: Option<u64>,
    /// The approval policy file (TOML).
    pub policy: Option<PathBuf>,
    /// Where approvers reach this server (links in notifications).
    pub public_url: Option<String>,
    /// The Jira project for "Rate limit exceeded" tasks (exhausted work).
    pub exhausted_project: Option<String>,
    /// Most issues created in one bulk call (1–50; 1 turns bulk create off).
    pub bulk_create: Option<usize>,
    /// The senders document (TOML): `POST /v1/sources/{name}`.
    pub sources: Option<PathBuf>,
    pub jira: Option<FileJira>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileJira {
    pub url: Option<String>,
    pub email: Option<String>,
}

impl FileConfig {
    /// Reads `path`; a missing default file is fine, a missing named one is not.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from("tollgate.toml"), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .with_context(|| format!("invalid config file {}", path.display())),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                Ok(FileConfig::default())
            }
            Err(e) => Err(e).with_context(|| format!("cannot read config file {}", path.display())),
        }
    }
}

/// Where jobs go.
#[derive(Debug, Clone)]
pub enum JiraTarget {
    /// A real (or separately run simulated) Jira site.
    Site { url: String, auth: JiraAuth },
    /// Start jira-sim inside this process.
    InProcessSim,
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub db: PathBuf,
    pub jira: JiraTarget,
    pub webhook_secrets: Vec<Secret>,
    pub workers: usize,
    pub visibility_timeout: Duration,
    pub lease_ttl: Duration,
    pub jira_timeout: Duration,
    /// Added to every jira-sim answer (in-process sim only).
    pub sim_latency: Duration,
    pub approvals: ApprovalSettings,
    /// What happens to exhausted and half-done work.
    pub followups: FollowUpPolicy,
    /// Most issues created in one bulk call; 1 creates one at a time.
    pub bulk_create: usize,
    pub intake: IntakeSettings,
    /// The longest wait between two runs of a failing job.
    pub retry_cap: Duration,
    /// Bearer tokens of the operator routes (several while one rotates
    /// out); none turns them off.
    pub operator_tokens: Vec<Secret>,
}

/// Who approves what, how links are signed, where approvers are told.
#[derive(Debug, Clone, Default)]
pub struct ApprovalSettings {
    pub policy: Policy,
    /// Link-signing keys, newest first; derived from the webhook secret
    /// when empty.
    pub link_keys: Vec<Secret>,
    /// Base URL of the links; `http://<listen address>` when unset.
    pub public_url: Option<String>,
    pub slack_webhook_url: Option<Secret>,
    pub notify_webhook_url: Option<Secret>,
}

impl ApprovalSettings {
    /// Reads the policy file (if any) and adds `approvers` from the command
    /// line to a policy that names none.
    pub fn load(policy: Option<&Path>, approvers: Option<&str>) -> anyhow::Result<Policy> {
        let p = match policy {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read policy file {}", path.display()))?;
                Policy::parse(&text)
                    .with_context(|| format!("invalid policy file {}", path.display()))?
            }
            None => Policy::default(),
        };
        p.with_default_approvers(approvers)
            .context("invalid --approvers")
    }
}

/// Values gathered from flags and environment (clap does both).
pub struct Overrides {
    pub listen: Option<String>,
    pub db: Option<PathBuf>,
    pub jira_url: Option<String>,
    pub sim: bool,
    pub workers: Option<usize>,
    pub visibility_timeout_secs: Option<u64>,
    pub lease_ttl_secs: Option<u64>,
    pub jira_timeout_secs: Option<u64>,
    pub webhook_secret: Option<String>,
    pub jira_email: Option<String>,
    pub jira_api_token: Option<String>,
    pub jira_bearer_token: Option<String>,
    pub sim_latency_ms: u64,
    pub policy: Option<PathBuf>,
    pub approvers: Option<String>,
    pub approval_key: Option<String>,
    pub public_url: Option<String>,
    pub slack_webhook_url: Option<String>,
    pub notify_webhook_url: Option<String>,
    pub exhausted_project: Option<String>,
    /// The senders document (TOML).
    pub sources: Option<PathBuf>,
    /// `TOLLGATE_OPERATOR_TOKEN`, comma-separated.
    pub operator_token: Option<String>,
}

/// The address to listen on: an IP and port, or a host name and port
/// (resolved; the first address it has).
pub fn listen_address(s: &str) -> anyhow::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    let mut found = s.to_socket_addrs().with_context(|| {
        format!("listen: {s:?} is not host:port (e.g. 127.0.0.1:8787 or localhost:8787)")
    })?;
    found
        .next()
        .with_context(|| format!("listen: {s:?} resolves to no address"))
}

/// A secret given directly (flag or variable), else read from the file
/// `<VAR>_FILE` names (Docker and systemd credentials, Kubernetes secret
/// volumes); one trailing newline is dropped.
pub fn or_secret_file(value: Option<String>, var: &str) -> anyhow::Result<Option<String>> {
    if value.is_some() {
        return Ok(value);
    }
    secret_from_file(&format!("{var}_FILE"), |v| std::env::var(v).ok())
}

/// A secret from its environment variable, else from the file
/// `<VAR>_FILE` names.
pub fn env_secret(var: &str) -> anyhow::Result<Option<String>> {
    or_secret_file(std::env::var(var).ok().filter(|v| !v.is_empty()), var)
}

/// The notifiers `serve` would use, from the environment (operator
/// commands that send: `tollgate approvals resend`). `signing` signs the
/// notify webhook's deliveries, as serve's first link key does.
pub fn notifiers_from_env(
    signing: Option<Secret>,
) -> anyhow::Result<tollgate::adapters::webhook_notifier::Notifiers> {
    use tollgate::adapters::slack::SlackNotifier;
    use tollgate::adapters::webhook_notifier::{Notifiers, WebhookNotifier};
    let timeout = Duration::from_secs(10);
    Ok(Notifiers {
        slack: match env_secret("TOLLGATE_SLACK_WEBHOOK_URL")? {
            Some(url) => Some(SlackNotifier::new(Secret::new(url), timeout)?),
            None => None,
        },
        webhook: match env_secret("TOLLGATE_NOTIFY_WEBHOOK_URL")? {
            Some(url) => Some(WebhookNotifier::new(Secret::new(url), signing, timeout)?),
            None => None,
        },
    })
}

fn secret_from_file(
    file_var: &str,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<String>> {
    let Some(path) = env(file_var).filter(|p| !p.trim().is_empty()) else {
        return Ok(None);
    };
    // The error names the variable and path, never the content.
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{file_var}: cannot read {path}"))?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    Ok(Some(text.to_string()))
}

/// Senders posting their own payloads (`POST /v1/sources/{name}`).
#[derive(Debug, Clone, Default)]
pub struct IntakeSettings {
    pub sources: Sources,
    /// Secrets by source name, newest first.
    pub secrets: HashMap<String, Vec<Secret>>,
}

/// Reads and checks a senders document.
pub fn load_sources(path: &Path) -> anyhow::Result<Sources> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read sources file {}", path.display()))?;
    Sources::parse(&text).with_context(|| format!("invalid sources file {}", path.display()))
}

impl IntakeSettings {
    /// Reads the senders document and each sender's secrets from
    /// `TOLLGATE_SOURCE_<NAME>_SECRETS`, refusing to start without them.
    pub fn load(path: &Path, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let sources = load_sources(path)?;
        let mut secrets = HashMap::new();
        let mut missing = Vec::new();
        for s in sources.iter() {
            let var = secrets_env_var(&s.name);
            let value = match env(&var) {
                Some(v) => Some(v),
                None => secret_from_file(&format!("{var}_FILE"), &env)?,
            };
            let list = value.as_deref().map(secret_list).unwrap_or_default();
            if list.is_empty() {
                missing.push(format!("{} ({var} or {var}_FILE)", s.name));
                continue;
            }
            secrets.insert(s.name.to_string(), list);
        }
        // Every missing one named at once: one start to find them all.
        if !missing.is_empty() {
            bail!(
                "{} of {} sources have no secret — set each variable (comma-separated during a rotation): {}",
                missing.len(),
                sources.iter().count(),
                missing.join(", ")
            );
        }
        Ok(IntakeSettings { sources, secrets })
    }
}

pub fn resolve(o: Overrides, file: FileConfig) -> anyhow::Result<ServeConfig> {
    let file_jira = file.jira.unwrap_or_default();
    let jira = if o.sim {
        JiraTarget::InProcessSim
    } else {
        let Some(url) = o.jira_url.or(file_jira.url) else {
            bail!(
                "no Jira site: pass --jira-url https://your-site.atlassian.net (or --sim to use the built-in simulator)"
            );
        };
        let auth = match (
            o.jira_bearer_token,
            o.jira_email.or(file_jira.email),
            o.jira_api_token,
        ) {
            (Some(token), _, _) => JiraAuth::Bearer(Secret::new(token)),
            (None, Some(email), Some(token)) => JiraAuth::Basic {
                email,
                api_token: Secret::new(token),
            },
            (None, None, _) => {
                bail!("TOLLGATE_JIRA_EMAIL is not set (the Atlassian account email for basic auth)")
            }
            (None, Some(_), None) => bail!(
                "TOLLGATE_JIRA_API_TOKEN is not set (create one at id.atlassian.com → Security → API tokens)"
            ),
        };
        JiraTarget::Site { url, auth }
    };
    let webhook_secrets = o
        .webhook_secret
        .as_deref()
        .map(secret_list)
        .unwrap_or_default();
    if webhook_secrets.is_empty() {
        bail!(
            "TOLLGATE_WEBHOOK_SECRET is not set: senders sign events with it (several, comma-separated, during a rotation)"
        );
    }
    let workers = o.workers.or(file.workers).unwrap_or(4);
    if !(1..=256).contains(&workers) {
        bail!("workers must be between 1 and 256 (got {workers})");
    }
    let visibility = o
        .visibility_timeout_secs
        .or(file.visibility_timeout_secs)
        .unwrap_or(30)
        .max(1);
    let lease = o
        .lease_ttl_secs
        .or(file.lease_ttl_secs)
        .unwrap_or(visibility)
        .max(1);
    let retry_cap = file
        .retry_cap_secs
        .unwrap_or(tollgate::domain::backoff::DEFAULT_RETRY_CAP.as_secs());
    if !(1..=3600).contains(&retry_cap) {
        bail!("retry_cap_secs must be between 1 and 3600 (got {retry_cap})");
    }
    let jira_timeout = o.jira_timeout_secs.or(file.jira_timeout_secs).unwrap_or(30);
    if !(1..=300).contains(&jira_timeout) {
        bail!("jira_timeout_secs must be between 1 and 300 (got {jira_timeout})");
    }
    let policy = ApprovalSettings::load(
        o.policy.as_deref().or(file.policy.as_deref()),
        o.approvers.as_deref(),
    )?;
    let public_url = o.public_url.or(file.public_url);
    if let Some(url) = &public_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        bail!("public URL {url:?} must start with http:// or https://");
    }
    let approvals = ApprovalSettings {
        policy,
        link_keys: o
            .approval_key
            .as_deref()
            .map(secret_list)
            .unwrap_or_default(),
        public_url,
        slack_webhook_url: o.slack_webhook_url.map(Secret::new),
        notify_webhook_url: o.notify_webhook_url.map(Secret::new),
    };
    let bulk_create = file.bulk_create.unwrap_or(MAX_BULK_CREATE);
    if !(1..=MAX_BULK_CREATE).contains(&bulk_create) {
        bail!("bulk_create must be between 1 and {MAX_BULK_CREATE} (got {bulk_create})");
    }
    let listen = listen_address(
        o.listen
            .or(file.listen)
            .as_deref()
            .unwrap_or(DEFAULT_LISTEN),
    )?;
    Ok(ServeConfig {
        operator_tokens: o
            .operator_token
            .as_deref()
            .map(secret_list)
            .unwrap_or_default(),
        listen,
        db: o
            .db
            .or(file.db)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DB)),
        jira,
        webhook_secrets,
        workers,
        visibility_timeout: Duration::from_secs(visibility),
        lease_ttl: Duration::from_secs(lease),
        jira_timeout: Duration::from_secs(jira_timeout),
        retry_cap: Duration::from_secs(retry_cap),
        sim_latency: Duration::from_millis(o.sim_latency_ms),
        approvals,
        followups: FollowUpPolicy {
            ticket_project: o
                .exhausted_project
                .or(file.exhausted_project)
                .map(|p| {
                    ProjectKey::parse(&p)
                        .map(|k| k.to_string())
                        .with_context(|| {
                            format!("exhausted_project {p:?} is not a Jira project key")
                        })
                })
                .transpose()?,
            ..FollowUpPolicy::default()
        },
        bulk_create,
        intake: match o.sources.or(file.sources) {
            Some(path) => IntakeSettings::load(&path, |v| std::env::var(v).ok())?,
            None => IntakeSettings::default(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overrides() -> Overrides {
        Overrides {
            listen: None,
            db: None,
            jira_url: Some("https://example.atlassian.net".into()),
            sim: false,
            workers: None,
            visibility_timeout_secs: None,
            lease_ttl_secs: None,
            jira_timeout_secs: None,
            webhook_secret: Some("s1,s2".into()),
            jira_email: Some("me@example.com".into()),
            jira_api_token: Some("tok".into()),
            jira_bearer_token: None,
            sim_latency_ms: 0,
            policy: None,
            approvers: None,
            approval_key: None,
            public_url: None,
            slack_webhook_url: None,
            notify_webhook_url: None,
            exhausted_project: None,
            sources: None,
            operator_token: None,
        }
    }

    #[test]
    fn secrets_can_come_from_files_named_by_a_variable() {
        let dir = std::env::temp_dir().join(format!("tollgate-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        let p = path.display().to_string();
        let env = |v: &str| (v == "X_FILE").then(|| p.clone());
        assert_eq!(
            secret_from_file("X_FILE", env).unwrap().as_deref(),
            Some("s3cret")
        );
        assert_eq!(secret_from_file("Y_FILE", env).unwrap(), None);
        let missing = |v: &str| (v == "X_FILE").then(|| "/nonexistent/t".to_string());
        let e = secret_from_file("X_FILE", missing).unwrap_err().to_string();
        assert!(e.contains("X_FILE") && e.contains("/nonexistent/t"), "{e}");
        let sources = dir.join("sources.toml");
        std::fs::write(
            &sources,
            "[[sources]]\nname = \"am\"\nauth = \"bearer\"\npreset = \"generic\"\n",
        )
        .unwrap();
        let file_env = |v: &str| (v == "TOLLGATE_SOURCE_AM_SECRETS_FILE").then(|| p.clone());
        let intake = IntakeSettings::load(&sources, file_env).unwrap();
        assert_eq!(intake.secrets["am"][0].expose(), "s3cret");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn flags_win_over_the_file_and_defaults_fill_the_rest() {
        let file: FileConfig = toml::from_str("workers = 9\nlisten = \"127.0.0.1:9000\"\n[jira]\nurl = \"https://file.atlassian.net\"").unwrap();
        let mut o = overrides();
        o.workers = Some(2);
        let c = resolve(o, file).unwrap();
        assert_eq!(c.workers, 2);
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.db, PathBuf::from("tollgate.db"));
        assert_eq!(c.webhook_secrets.len(), 2);
        assert!(
            matches!(c.jira, JiraTarget::Site { ref url, .. } if url == "https://example.atlassian.net")
        );
    }

    #[test]
    fn a_missing_secret_is_named() {
        let mut o = overrides();
        o.webhook_secret = None;
        let e = resolve(o, FileConfig::default()).unwrap_err().to_string();
        assert!(e.contains("TOLLGATE_WEBHOOK_SECRET"), "{e}");
        let mut o = overrides();
        o.jira_api_token = None;
        let e = resolve(o, FileConfig::default()).unwrap_err().to_string();
        assert!(e.contains("TOLLGATE_JIRA_API_TOKEN"), "{e}");
    }

    #[test]
    fn the_listen_address_may_name_a_host() {
        assert_eq!(listen_address("127.0.0.1:9000").unwrap().port(), 9000);
        let local = listen_address("localhost:8787").unwrap();
        assert!(local.ip().is_loopback() && local.port() == 8787, "{local}");
        let e = listen_address("8787").unwrap_err().to_string();
        assert!(e.contains("listen") && e.contains("host:port"), "{e}");
    }

    #[test]
    fn every_sender_without_a_secret_is_named_in_one_error() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sources.toml");
        let all = load_sources(&path).unwrap();
        let names: Vec<_> = all.iter().map(|s| s.name.clone()).collect();
        assert!(names.len() >= 3, "{names:?}");
        let first = secrets_env_var(&all.iter().next().unwrap().name);
        let e = IntakeSettings::load(&path, |v| (v == first).then(|| "s3cret".to_string()))
            .unwrap_err()
            .to_string();
        for name in &names[1..] {
            assert!(e.contains(name.as_str()), "{name:?} in {e}");
            assert!(e.contains(&secrets_env_var(name)), "{e}");
        }
        assert!(!e.contains(&first), "the one given is not named: {e}");
    }

    #[test]
    fn approvers_from_the_command_line_gate_risky_work() {
        let mut o = overrides();
        o.approvers = Some("lead@example.com, ciso@example.com".into());
        let c = resolve(o, FileConfig::default()).unwrap();
        assert_eq!(c.approvals.policy.approvers.len(), 2);
        let mut o = overrides();
        o.public_url = Some("ftp://x".into());
        assert!(resolve(o, FileConfig::default()).is_err());
    }

    #[test]
    fn the_config_file_refuses_unknown_keys_and_secrets() {
        assert!(toml::from_str::<FileConfig>("[jira]\napi_token = \"x\"").is_err());
    }

    #[test]
    fn debug_output_of_a_config_shows_no_secret() {
        let c = resolve(overrides(), FileConfig::default()).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("tok\"") && !shown.contains("s1"), "{shown}");
    }
}
