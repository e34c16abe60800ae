//! Secrets for the Lambda functions: one AWS Secrets Manager secret holding a
//! JSON document, read once at init (a new version reaches each function at
//! its next cold start), or the same values from the environment for local
//! runs.
//!
//! The document:
//! `{"webhookSecrets": ["new", "old"], "jiraEmail": "…", "jiraApiToken": "…"}`
//! (`webhookSecrets` and `approvalKeys` may also be one comma-separated
//! string; `jiraBearerToken` replaces email + token for OAuth;
//! `slackWebhookUrl` and `notifyWebhookUrl` name the approval notification
//! channels, credentials in their own right).

use super::jira::JiraAuth;
use crate::domain::secret::{Secret, secret_list};
use crate::domain::source::{Sources, secrets_env_var};
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use serde::Deserialize;
use std::collections::HashMap;

/// Everything secret a function needs. `Debug` never shows a value.
#[derive(Debug, Clone, Default)]
pub struct SecretBundle {
    pub webhook_secrets: Vec<Secret>,
    pub jira: Option<JiraAuth>,
    /// Approval link keys, newest first; derived from the first webhook
    /// secret when empty.
    pub approval_keys: Vec<Secret>,
    pub slack_webhook_url: Option<Secret>,
    pub notify_webhook_url: Option<Secret>,
    /// Each sender's secrets (`sourceSecrets: {"alertmanager": "a,b"}`).
    pub source_secrets: HashMap<String, Vec<Secret>>,
    /// Tokens that sign operators in to the console (`operatorTokens`);
    /// none turns the console off.
    pub operator_tokens: Vec<Secret>,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot read secret {id:?}: {message}")]
    Fetch { id: String, message: String },
    /// Names the field; never echoes the document.
    #[error("secret {id:?} is not a valid tollgate secret document: {problem}")]
    Invalid { id: String, problem: String },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Document {
    #[serde(default)]
    webhook_secrets: Option<SecretList>,
    #[serde(default)]
    jira_email: Option<String>,
    #[serde(default)]
    jira_api_token: Option<String>,
    #[serde(default)]
    jira_bearer_token: Option<String>,
    #[serde(default)]
    approval_keys: Option<SecretList>,
    #[serde(default)]
    slack_webhook_url: Option<String>,
    #[serde(default)]
    notify_webhook_url: Option<String>,
    #[serde(default)]
    source_secrets: HashMap<String, SecretList>,
    #[serde(default)]
    operator_tokens: Option<SecretList>,
}

fn list(v: Option<SecretList>) -> Vec<Secret> {
    match v {
        None => Vec::new(),
        Some(SecretList::One(s)) => secret_list(&s),
        Some(SecretList::Many(v)) => v
            .into_iter()
            .filter(|s| !s.trim().is_empty())
            .map(Secret::new)
            .collect(),
    }
}

fn nonempty(v: Option<String>) -> Option<Secret> {
    v.filter(|s| !s.trim().is_empty()).map(Secret::new)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SecretList {
    One(String),
    Many(Vec<String>),
}

fn jira_auth(
    email: Option<String>,
    token: Option<String>,
    bearer: Option<String>,
) -> Option<JiraAuth> {
    match (bearer, email, token) {
        (Some(b), _, _) if !b.is_empty() => Some(JiraAuth::Bearer(Secret::new(b))),
        (_, Some(email), Some(token)) if !email.is_empty() && !token.is_empty() => {
            Some(JiraAuth::Basic {
                email,
                api_token: Secret::new(token),
            })
        }
        _ => None,
    }
}

impl SecretBundle {
    /// Parses the secret document. Errors name the field, never a value.
    pub fn from_json(id: &str, json: &str) -> Result<Self, SecretsError> {
        let doc: Document = serde_json::from_str(json).map_err(|e| SecretsError::Invalid {
            id: id.to_string(),
            // serde's message names the field and position, not the value.
            problem: e.to_string(),
        })?;
        Ok(SecretBundle {
            webhook_secrets: list(doc.webhook_secrets),
            jira: jira_auth(doc.jira_email, doc.jira_api_token, doc.jira_bearer_token),
            approval_keys: list(doc.approval_keys),
            slack_webhook_url: nonempty(doc.slack_webhook_url),
            notify_webhook_url: nonempty(doc.notify_webhook_url),
            source_secrets: doc
                .source_secrets
                .into_iter()
                .map(|(name, l)| (name, list(Some(l))))
                .collect(),
            operator_tokens: list(doc.operator_tokens),
        })
    }

    /// The same values from environment variables (local runs):
    /// `TOLLGATE_WEBHOOK_SECRET` (comma-separated), `TOLLGATE_JIRA_EMAIL`,
    /// `TOLLGATE_JIRA_API_TOKEN`, `TOLLGATE_JIRA_BEARER_TOKEN`,
    /// `TOLLGATE_OPERATOR_TOKEN` (comma-separated).
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Self {
        SecretBundle {
            webhook_secrets: lookup("TOLLGATE_WEBHOOK_SECRET")
                .map(|s| secret_list(&s))
                .unwrap_or_default(),
            jira: jira_auth(
                lookup("TOLLGATE_JIRA_EMAIL"),
                lookup("TOLLGATE_JIRA_API_TOKEN"),
                lookup("TOLLGATE_JIRA_BEARER_TOKEN"),
            ),
            approval_keys: lookup("TOLLGATE_APPROVAL_KEY")
                .map(|s| secret_list(&s))
                .unwrap_or_default(),
            slack_webhook_url: nonempty(lookup("TOLLGATE_SLACK_WEBHOOK_URL")),
            notify_webhook_url: nonempty(lookup("TOLLGATE_NOTIFY_WEBHOOK_URL")),
            source_secrets: HashMap::new(),
            operator_tokens: lookup("TOLLGATE_OPERATOR_TOKEN")
                .map(|s| secret_list(&s))
                .unwrap_or_default(),
        }
    }

    /// Each configured sender's secrets: the secret document's, else
    /// `TOLLGATE_SOURCE_<NAME>_SECRETS` from the environment.
    pub fn sender_secrets(
        &self,
        sources: &Sources,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> HashMap<String, Vec<Secret>> {
        sources
            .iter()
            .map(|s| {
                let name = s.name.to_string();
                let list = self
                    .source_secrets
                    .get(&name)
                    .cloned()
                    .filter(|l| !l.is_empty())
                    .or_else(|| lookup(&secrets_env_var(&s.name)).map(|v| secret_list(&v)))
                    .unwrap_or_default();
                (name, list)
            })
            .collect()
    }

    /// The approval link keys in force: the configured ones, or one derived
    /// from the first webhook secret.
    pub fn link_keys(&self) -> Vec<Secret> {
        if self.approval_keys.is_empty() {
            self.webhook_secrets
                .first()
                .map(crate::domain::approval::derive_link_key)
                .into_iter()
                .collect()
        } else {
            self.approval_keys.clone()
        }
    }

    /// The notification channels the secret names.
    pub fn notifiers(
        &self,
    ) -> Result<super::webhook_notifier::Notifiers, crate::ports::NotifyError> {
        let timeout = std::time::Duration::from_secs(5);
        Ok(super::webhook_notifier::Notifiers {
            slack: self
                .slack_webhook_url
                .clone()
                .map(|u| super::slack::SlackNotifier::new(u, timeout))
                .transpose()?,
            webhook: self
                .notify_webhook_url
                .clone()
                .map(|u| {
                    super::webhook_notifier::WebhookNotifier::new(
                        u,
                        self.link_keys().first().cloned(),
                        timeout,
                    )
                })
                .transpose()?,
        })
    }

    /// Reads and parses the secret `id` (a name or an ARN).
    pub async fn fetch(client: &Client, id: &str) -> Result<Self, SecretsError> {
        let out = client
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| SecretsError::Fetch {
                id: id.to_string(),
                message: DisplayErrorContext(&e).to_string(),
            })?;
        let json = out.secret_string().ok_or_else(|| SecretsError::Invalid {
            id: id.to_string(),
            problem: "the secret has no string value".into(),
        })?;
        Self::from_json(id, json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_with_a_rotation_list_and_basic_auth_parses() {
        let b = SecretBundle::from_json(
            "s",
            r#"{"webhookSecrets": ["new", "old"], "jiraEmail": "a@b.c", "jiraApiToken": "t0k"}"#,
        )
        .unwrap();
        assert_eq!(b.webhook_secrets.len(), 2);
        assert!(matches!(b.jira, Some(JiraAuth::Basic { ref email, .. }) if email == "a@b.c"));
    }

    #[test]
    fn a_comma_separated_string_and_a_bearer_token_work_too() {
        let b =
            SecretBundle::from_json("s", r#"{"webhookSecrets": "a, b", "jiraBearerToken": "x"}"#)
                .unwrap();
        assert_eq!(b.webhook_secrets[1].expose(), "b");
        assert!(matches!(b.jira, Some(JiraAuth::Bearer(_))));
    }

    #[test]
    fn operator_tokens_come_from_the_document_or_the_environment() {
        let b = SecretBundle::from_json("s", r#"{"operatorTokens": ["new", "old"]}"#).unwrap();
        assert_eq!(b.operator_tokens.len(), 2);
        let e = SecretBundle::from_env(|k| (k == "TOLLGATE_OPERATOR_TOKEN").then(|| "one".into()));
        assert_eq!(e.operator_tokens[0].expose(), "one");
        assert!(
            SecretBundle::from_json("s", "{}")
                .unwrap()
                .operator_tokens
                .is_empty()
        );
    }

    #[test]
    fn an_unknown_field_is_named_and_no_value_is_echoed() {
        let e = SecretBundle::from_json("s", r#"{"jiraToken": "hunter2"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("jiraToken"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn debug_output_redacts_every_secret() {
        let b = SecretBundle::from_json(
            "s",
            r#"{"webhookSecrets": ["w3bh00k"], "jiraEmail": "a@b.c", "jiraApiToken": "t0k3n", "operatorTokens": "0p3r"}"#,
        )
        .unwrap();
        let shown = format!("{b:?}");
        assert!(
            !shown.contains("w3bh00k") && !shown.contains("t0k3n") && !shown.contains("0p3r"),
            "{shown}"
        );
    }
}
