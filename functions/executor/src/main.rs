//! Executor Lambda: wires configuration, SDK clients, the Jira client and the
//! site governor once at init (the governor's local view lives as long as
//! the instance), then handles SQS batches with `tollgate_executor::handle`.

use anyhow::Context;
use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, run, service_fn};
use std::time::{Duration, Instant};
use tollgate::adapters::dynamodb::DynamoStore;
use tollgate::adapters::jira::JiraClient;
use tollgate::adapters::lambda_env::{LambdaSettings, init_logging, sdk_config, vars};
use tollgate::adapters::secrets_manager::SecretBundle;
use tollgate::adapters::sqs::SqsQueue;
use tollgate::app::execute::{Executor, ExecutorConfig};
use tollgate::app::governor::{Governor, GovernorConfig};
use tollgate::domain::time::Timestamp;
use tollgate::ports::SystemClock;
use tollgate_executor::Budget;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let started = Instant::now();
    init_logging();
    let settings = LambdaSettings::from_env(|k| std::env::var(k).ok())?;
    let jira_url = settings
        .jira_url
        .clone()
        .with_context(|| format!("{} is required by the executor", vars::JIRA_URL))?;
    let aws = sdk_config().await;
    let secrets = match &settings.secret_id {
        Some(id) => SecretBundle::fetch(&aws_sdk_secretsmanager::Client::new(&aws), id).await?,
        None => SecretBundle::from_env(|k| std::env::var(k).ok()),
    };
    let auth = secrets.jira.context(
        "no Jira credentials: set jiraEmail + jiraApiToken (or jiraBearerToken) in the secret",
    )?;
    let tracker = JiraClient::new(&jira_url, auth, settings.jira_timeout)?;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), &settings.table)
        .with_retention(settings.retention);
    let queue = SqsQueue::new(
        aws_sdk_sqs::Client::new(&aws),
        &settings.queue_url,
        &settings.bulk_queue_url,
    );
    let governor = Governor::new(
        &store,
        &SystemClock,
        GovernorConfig::new(jira_url.clone(), settings.max_concurrency),
    );
    let config = ExecutorConfig {
        worker: std::env::var("AWS_LAMBDA_LOG_STREAM_NAME").unwrap_or_else(|_| "executor".into()),
        ..ExecutorConfig::default()
    };
    let executor = Executor {
        store: &store,
        tracker: &tracker,
        clock: &SystemClock,
        config: &config,
        governor: &governor,
    };
    // A record may take a few Jira calls, each bounded by the timeout.
    let per_record = settings.jira_timeout * 2 + Duration::from_secs(2);
    tracing::info!(init_ms = started.elapsed().as_millis() as u64, jira = %jira_url, "executor ready");
    run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let (executor, queue) = (&executor, &queue);
        async move {
            let budget = Budget {
                deadline: (event.context.deadline > 0)
                    .then_some(Timestamp(event.context.deadline as i64)),
                per_record,
            };
            Ok::<_, std::convert::Infallible>(
                tollgate_executor::handle(executor, queue, &event.payload, &budget).await,
            )
        }
    }))
    .await
}
