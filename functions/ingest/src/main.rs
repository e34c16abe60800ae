//! Ingest Lambda: wires configuration, SDK clients and adapters once at init,
//! then serves API Gateway requests with `tollgate_ingest::handle`.

use lambda_http::RequestExt;
use lambda_http::{run, service_fn};
use std::time::Instant;
use tollgate::adapters::lambda_env::invocation_deadline;
use tollgate::adapters::lambda_env::{init_logging, wire};
use tollgate::adapters::lambda_init::fail_init;
use tollgate::app::approvals::{Approvals, Links};
use tollgate::app::ingest::Ingest;
use tollgate::ports::{Clock, SystemClock};
use tollgate_ingest::App;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let started = Instant::now();
    init_logging();
    let ready = async {
        let w = wire().await?;
        if w.secrets.webhook_secrets.is_empty() {
            anyhow::bail!("no webhook secret in the secret: set webhookSecrets");
        }
        let notifier = w.secrets.notifiers()?;
        Ok::<_, anyhow::Error>((w, notifier))
    };
    let (w, notifier) = match ready.await {
        Ok(r) => r,
        Err(e) => {
            return Err(fail_init("the ingest function", format!("{e:#}"))
                .await
                .into());
        }
    };
    let link_keys = w.secrets.link_keys();
    let source_secrets = w
        .secrets
        .sender_secrets(&w.settings.sources, |v| std::env::var(v).ok());
    let app = App {
        sources: &w.settings.sources,
        source_secrets: &source_secrets,
        ingest: Ingest {
            store: &w.store,
            queue: &w.queue,
            clock: &SystemClock,
            secrets: &w.secrets.webhook_secrets,
            policy: &w.settings.policy,
        },
        approvals: Approvals {
            store: &w.store,
            queue: &w.queue,
            clock: &SystemClock,
            links: Links {
                keys: &link_keys,
                base_url: &w.settings.public_url,
            },
        },
        notifier: &notifier,
    };
    tracing::info!(
        init_ms = started.elapsed().as_millis() as u64,
        "ingest ready"
    );
    let timeout = w.settings.function_timeout;
    let app = &app;
    run(service_fn(|req: lambda_http::Request| async move {
        let deadline = req
            .lambda_context_ref()
            .map(|c| invocation_deadline(c.deadline, SystemClock.now(), timeout));
        Ok::<_, std::convert::Infallible>(tollgate_ingest::handle(app, req, deadline).await)
    }))
    .await
}
