//! Slack incoming-webhook notifier.
//!
//! Protocol: `POST <webhook URL>` with a Block Kit message — a header, who
//! asks and why, what will change, the expiry, and per approver a pair of
//! link buttons (Approve / Deny) that open the confirmation page. Slack's
//! link unfurler may fetch those URLs; a GET never decides, so that is safe.

use crate::domain::approval::ApprovalNotice;
use crate::domain::notice::{ExhaustedNotice, Notice};
use crate::domain::secret::Secret;
use crate::ports::{Notifier, NotifyError};
use serde_json::{Value, json};
use std::time::Duration;

pub struct SlackNotifier {
    http: reqwest::Client,
    /// The webhook URL is a credential: whoever has it can post.
    url: Secret,
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped.
fn mrkdwn(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The Block Kit message for a notice.
pub fn message(notice: &Notice) -> Value {
    match notice {
        Notice::ApprovalRequested(n) => approval_message(n),
        Notice::JobExhausted(n) => exhausted_message(n),
        Notice::SiteHealth(n) => {
            let text = if n.degraded {
                format!(
                    "Jira site {} is degraded ({}): transitions and edits wait until it recovers.",
                    n.site, n.why
                )
            } else {
                format!("Jira site {} recovered ({}).", n.site, n.why)
            };
            json!({"text": text, "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn(&text)}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": mrkdwn(&n.at)}]}
            ]})
        }
    }
}

fn exhausted_message(n: &ExhaustedNotice) -> Value {
    let target = n.issue_key.as_deref().unwrap_or("no issue yet");
    let next = match &n.rerun_at {
        Some(at) => format!("It runs again at {at}."),
        None => "It waits for an operator: `tollgate jobs retry`.".into(),
    };
    json!({
        "text": format!("A {} from {} gave up: retry budget spent", n.operation, n.source_system),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Jira work exhausted its retries"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": format!(
                "*{}* {} `{}` ({}): {}\n{}",
                mrkdwn(&n.source_system), mrkdwn(&n.operation), mrkdwn(&n.external_id), mrkdwn(target),
                mrkdwn(n.last_error.as_deref().unwrap_or("no error recorded")), mrkdwn(&next)
            )}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": format!("job {}", mrkdwn(&n.job_id))}]}
        ]
    })
}

fn approval_message(notice: &ApprovalNotice) -> Value {
    let intent: String = notice
        .intent
        .iter()
        .map(|l| format!("• {}\n", mrkdwn(l)))
        .collect();
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": "Approval requested"}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": format!(
            "*{}* asks for a change in Jira ({}):\n{intent}",
            mrkdwn(&notice.requested_by),
            mrkdwn(&notice.rule)
        )}}),
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
            "Expires {} · job {}", mrkdwn(&notice.expires_at), mrkdwn(&notice.job_id)
        )}]}),
    ];
    for a in &notice.approvers {
        blocks.push(json!({"type": "actions", "elements": [
            {"type": "button", "style": "primary", "url": a.approve_url,
             "text": {"type": "plain_text", "text": format!("Approve as {}", a.approver)}},
            {"type": "button", "style": "danger", "url": a.deny_url,
             "text": {"type": "plain_text", "text": format!("Deny as {}", a.approver)}}
        ]}));
    }
    json!({
        "text": format!("Approval requested by {}", notice.requested_by),
        "blocks": blocks
    })
}

impl SlackNotifier {
    pub fn new(url: Secret, timeout: Duration) -> Result<Self, NotifyError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| NotifyError(e.to_string()))?;
        Ok(SlackNotifier { http, url })
    }
}

impl Notifier for SlackNotifier {
    async fn notify(&self, notice: &Notice) -> Result<(), NotifyError> {
        let req = self.http.post(self.url.expose()).json(&message(notice));
        super::webhook_notifier::deliver(req, "Slack").await
    }
}
