//! Ingest Lambda: wires configuration, SDK clients and adapters once at init,
//! then serves API Gateway requests with `tollgate_ingest::handle`.

use lambda_http::{run, service_fn};
use std::time::Instant;
use tollgate::adapters::dynamodb::DynamoStore;
use tollgate::adapters::lambda_env::{LambdaSettings, init_logging, sdk_config};
use tollgate::adapters::secrets_manager::SecretBundle;
use tollgate::adapters::sqs::SqsQueue;
use tollgate::app::approvals::{Approvals, Links};
use tollgate::app::ingest::Ingest;
use tollgate::ports::SystemClock;
use tollgate_ingest::App;

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
    if secrets.webhook_secrets.is_empty() {
        return Err(anyhow::anyhow!("no webhook secret configured").into());
    }
    let link_keys = secrets.link_keys();
    let notifier = secrets.notifiers()?;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), &settings.table)
        .with_retention(settings.retention);
    let queue = SqsQueue::new(
        aws_sdk_sqs::Client::new(&aws),
        &settings.queue_url,
        &settings.bulk_queue_url,
    );
    let app = App {
        ingest: Ingest {
            store: &store,
            queue: &queue,
            clock: &SystemClock,
            secrets: &secrets.webhook_secrets,
            policy: &settings.policy,
        },
        approvals: Approvals {
            store: &store,
            queue: &queue,
            clock: &SystemClock,
            links: Links {
                keys: &link_keys,
                base_url: &settings.public_url,
            },
        },
        notifier: &notifier,
    };
    tracing::info!(
        init_ms = started.elapsed().as_millis() as u64,
        "ingest ready"
    );
    run(service_fn(|req| async {
        Ok::<_, std::convert::Infallible>(tollgate_ingest::handle(&app, req).await)
    }))
    .await
}
