//! Approval Lambda: wires configuration, SDK clients and adapters once at
//! init, then serves the approval links with `tollgate_approval::handle`.

use lambda_http::{run, service_fn};
use std::time::Instant;
use tollgate::adapters::dynamodb::DynamoStore;
use tollgate::adapters::lambda_env::{LambdaSettings, init_logging, sdk_config};
use tollgate::adapters::secrets_manager::SecretBundle;
use tollgate::adapters::sqs::SqsQueue;
use tollgate::app::approvals::{Approvals, Links};
use tollgate::ports::SystemClock;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let started = Instant::now();
    init_logging();
    let settings = LambdaSettings::from_env(|k| std::env::var(k).ok())?;
    let aws = sdk_config().await;
    let secrets = match &settings.secret_id {
        Some(id) => SecretBundle::fetch(&aws_sdk_secretsmanager::Client::new(&aws), id).await?,
        None => SecretBundle::from_env(|k| std::env::var(k).ok()),
    };
    let link_keys = secrets.link_keys();
    if link_keys.is_empty() {
        return Err(anyhow::anyhow!(
            "no approval link key (or webhook secret to derive one) configured"
        )
        .into());
    }
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), &settings.table)
        .with_retention(settings.retention);
    let queue = SqsQueue::new(
        aws_sdk_sqs::Client::new(&aws),
        &settings.queue_url,
        &settings.bulk_queue_url,
    );
    let approvals = Approvals {
        store: &store,
        queue: &queue,
        clock: &SystemClock,
        links: Links {
            keys: &link_keys,
            base_url: &settings.public_url,
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
