//! Approval Lambda: wires configuration, SDK clients and adapters once at
//! init, then serves the approval links and the operator console with
//! `tollgate_approval::handle`.

use lambda_http::{run, service_fn};
use std::time::Instant;
use tollgate::adapters::lambda_env::{init_logging, wire};
use tollgate::adapters::lambda_init::fail_init;
use tollgate::ports::SystemClock;
use tollgate_approval::App;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let started = Instant::now();
    init_logging();
    let ready = async {
        let w = wire().await?;
        let link_keys = w.secrets.link_keys();
        if link_keys.is_empty() {
            anyhow::bail!(
                "no approval link key (or webhook secret to derive one) in the secret: set approvalKeys or webhookSecrets"
            );
        }
        let notifier = w.secrets.notifiers()?;
        Ok::<_, anyhow::Error>((w, link_keys, notifier))
    };
    let (w, link_keys, notifier) = match ready.await {
        Ok(r) => r,
        Err(e) => {
            return Err(fail_init("the approval function", format!("{e:#}"))
                .await
                .into());
        }
    };
    if w.secrets.operator_tokens.is_empty() {
        tracing::info!("the console (/ui) is off: no operatorTokens in the secret");
    }
    let site = w.settings.jira_url.clone().unwrap_or_default();
    let app = App {
        store: &w.store,
        queue: &w.queue,
        clock: &SystemClock,
        link_keys: &link_keys,
        public_url: &w.settings.public_url,
        notifier: &notifier,
        policy: &w.settings.policy,
        sources: &w.settings.sources,
        operator_tokens: &w.secrets.operator_tokens,
        site: &site,
    };
    tracing::info!(
        init_ms = started.elapsed().as_millis() as u64,
        "approval ready"
    );
    run(service_fn(|req| async {
        Ok::<_, std::convert::Infallible>(tollgate_approval::handle(&app, req).await)
    }))
    .await
}
