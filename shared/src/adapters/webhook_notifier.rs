//! Generic JSON webhook notifier.
//!
//! Protocol: `POST <url>`, `Content-Type: application/json`, body the
//! notice with its `type` (`approval.requested`, `job.exhausted`); signed like tollgate's
//! own inbound events when a key is set (`Tollgate-Signature: t=…,v1=…`),
//! so the receiver can check it came from tollgate.

use crate::domain::notice::Notice;
use crate::domain::secret::Secret;
use crate::domain::signature;
use crate::ports::{Clock, Notifier, NotifyError, SystemClock};
use std::time::Duration;

pub struct WebhookNotifier {
    http: reqwest::Client,
    url: Secret,
    signing_key: Option<Secret>,
}

impl WebhookNotifier {
    pub fn new(
        url: Secret,
        signing_key: Option<Secret>,
        timeout: Duration,
    ) -> Result<Self, NotifyError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| NotifyError(e.to_string()))?;
        Ok(WebhookNotifier {
            http,
            url,
            signing_key,
        })
    }
}

impl Notifier for WebhookNotifier {
    async fn notify(&self, notice: &Notice) -> Result<(), NotifyError> {
        let body = serde_json::to_value(notice).map_err(|e| NotifyError(e.to_string()))?;
        let raw = serde_json::to_vec(&body).map_err(|e| NotifyError(e.to_string()))?;
        let mut req = self
            .http
            .post(self.url.expose())
            .header("Content-Type", "application/json");
        if let Some(key) = &self.signing_key {
            let t = SystemClock.now().unix_seconds();
            req = req.header(signature::HEADER, signature::sign(key, t, &raw));
        }
        deliver(req.body(raw), "webhook").await
    }
}

/// Sends a notification request; the error names the channel and what went
/// wrong, never the URL (a webhook URL is a credential).
pub(super) async fn deliver(
    req: reqwest::RequestBuilder,
    channel: &str,
) -> Result<(), NotifyError> {
    let resp = req.send().await.map_err(|e| {
        let what = if e.is_timeout() {
            "timeout"
        } else {
            "connection failed"
        };
        NotifyError(format!("{channel} unreachable ({what})"))
    })?;
    if !resp.status().is_success() {
        return Err(NotifyError(format!("{channel} answered {}", resp.status())));
    }
    Ok(())
}

/// Every configured channel; a notice counts as sent when all accepted it.
#[derive(Default)]
pub struct Notifiers {
    pub slack: Option<super::slack::SlackNotifier>,
    pub webhook: Option<WebhookNotifier>,
}

impl Notifier for Notifiers {
    async fn notify(&self, notice: &Notice) -> Result<(), NotifyError> {
        if let Some(s) = &self.slack {
            s.notify(notice).await?;
        }
        if let Some(w) = &self.webhook {
            w.notify(notice).await?;
        }
        Ok(())
    }

    fn configured(&self) -> bool {
        self.slack.is_some() || self.webhook.is_some()
    }
}
