//! Approval Lambda: wires configuration, SDK clients and adapters once at
//! init, then serves the approval links with `tollgate_approval::handle`.

use lambda_http::{run, service_fn};
use std::time::Instant;
use tollgate::adapters::lambda_env::{init_logging, wire};
use tollgate::adapters::lambda_init::fail_init;
use tollgate::app::approvals::{Approvals, Links};
use tollgate::ports::SystemClock;

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
        Ok::<_, anyhow::Error>((w, link_keys))
    };
    let (w, link_keys) = match ready.await {
        Ok(r) => r,
        Err(e) => {
            return Err(fail_init("the approval function", format!("{e:#}"))
                .await
                .into());
        }
    };
    let approvals = Approvals {
        store: &w.store,
        queue: &w.queue,
        clock: &SystemClock,
        links: Links {
            keys: &link_keys,
            base_url: &w.settings.public_url,
        },
    };
    tracing::info!(
        init_ms = started.elapsed().as_millis() as u64,
        "approval ready"
    );
    run(service_fn(|req| async {
        Ok::<_, std::convert::Infallible>(tollgate_approval::handle(&approvals, req).await)
    }))
    .await
}
