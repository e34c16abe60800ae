//! Executor Lambda: wires configuration, SDK clients, the Jira client and the
//! site governor once at init (the governor's local view lives as long as
//! the instance), then handles SQS batches with `tollgate_executor::handle`
//! and the scheduled sweep with `tollgate_executor::sweep`.

use anyhow::Context;
use lambda_runtime::{LambdaEvent, run, service_fn};
use serde_json::Value;
use std::time::{Duration, Instant};
use tollgate::adapters::jira::JiraClient;
use tollgate::adapters::lambda_env::{init_logging, vars, wire};
use tollgate::adapters::lambda_init::fail_init;
use tollgate::app::approvals::{Approvals, Links};
use tollgate::app::execute::{Executor, ExecutorConfig};
use tollgate::app::followup::FollowUps;
use tollgate::app::governor::{Governor, GovernorConfig};
use tollgate::app::ingest::Ingest;
use tollgate::app::stats::{Metered, StatsRecorder};
use tollgate::domain::followup::FollowUpPolicy;
use tollgate::domain::time::Timestamp;
use tollgate::ports::{Clock, SystemClock};
use tollgate_executor::{Budget, Invocation};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let started = Instant::now();
    init_logging();
    let ready = async {
        let w = wire().await?;
        let jira_url = w.settings.jira_url.clone().with_context(|| {
            format!(
                "{} is required by the executor (the Jira site's URL)",
                vars::JIRA_URL
            )
        })?;
        let auth = w.secrets.jira.clone().context(
            "no Jira credentials: set jiraEmail + jiraApiToken (or jiraBearerToken) in the secret",
        )?;
        let tracker = JiraClient::new(&jira_url, auth, w.settings.jira_timeout)?;
        let notifier = w.secrets.notifiers()?;
        Ok::<_, anyhow::Error>((w, jira_url, tracker, notifier))
    };
    let (w, jira_url, tracker, notifier) = match ready.await {
        Ok(r) => r,
        Err(e) => return Err(fail_init("the executor", format!("{e:#}")).await.into()),
    };
    let (settings, store, queue) = (&w.settings, &w.store, &w.queue);
    let governor = Governor::new(
        store,
        &SystemClock,
        // Each instance's share of the pace: from every instance the
        // interactive and bulk queues may run at once.
        GovernorConfig::new(jira_url.clone(), settings.executor_instances()),
    );
    let config = ExecutorConfig {
        worker: std::env::var("AWS_LAMBDA_LOG_STREAM_NAME").unwrap_or_else(|_| "executor".into()),
        call_timeout: settings.jira_timeout,
        retry: tollgate::domain::backoff::RetryPolicy {
            cap: settings.retry_cap,
            ..Default::default()
        },
        ..ExecutorConfig::default()
    };
    let recorder = StatsRecorder::default();
    let metered = Metered {
        inner: &governor,
        recorder: &recorder,
    };
    let executor = Executor {
        store,
        tracker: &tracker,
        clock: &SystemClock,
        config: &config,
        governor: &metered,
        deadline: None,
    };
    // Start a record only if one more Jira call fits; later steps of a job
    // that runs out of time resume from their checkpoint.
    let per_record = settings.jira_timeout + Duration::from_secs(1);
    tracing::info!(init_ms = started.elapsed().as_millis() as u64, jira = %jira_url, "executor ready");
    // The scheduled sweep also notifies approvers and expires requests.
    let link_keys = w.secrets.link_keys();
    let approvals = Approvals {
        store,
        queue,
        clock: &SystemClock,
        links: Links {
            keys: &link_keys,
            base_url: &settings.public_url,
        },
    };
    let followup_policy = FollowUpPolicy {
        ticket_project: settings.exhausted_project.clone(),
        ..FollowUpPolicy::default()
    };
    let followups = FollowUps {
        store,
        queue,
        clock: &SystemClock,
        policy: &followup_policy,
    };
    // Batch admissions continue here (their messages ride the bulk queue).
    let ingest = Ingest {
        store,
        queue,
        clock: &SystemClock,
        secrets: &[],
        policy: &settings.policy,
    };
    let dead_letters = settings
        .dead_letter_url
        .as_ref()
        .map(|url| queue.dead_letters(url.clone()));
    let timeout = settings.function_timeout;
    run(service_fn(|event: LambdaEvent<Value>| {
        let dead_letters = dead_letters.as_ref();
        let (executor, ingest, approvals, followups, notifier, site, recorder) = (
            &executor,
            &ingest,
            &approvals,
            &followups,
            &notifier,
            jira_url.as_str(),
            &recorder,
        );
        async move {
            match Invocation::parse(event.payload)? {
                Invocation::Batch(batch) => {
                    let deadline = Some(tollgate_executor::invocation_deadline(
                        event.context.deadline,
                        SystemClock.now(),
                        timeout,
                    ));
                    let budget = Budget {
                        deadline,
                        per_record,
                    };
                    // No Jira call starts unless it can finish in time.
                    let executor = Executor {
                        deadline,
                        ..*executor
                    };
                    let response = tollgate_executor::handle(
                        &executor, ingest, queue, &batch, &budget, recorder,
                    )
                    .await;
                    Ok::<_, lambda_runtime::Error>(serde_json::to_value(response)?)
                }
                Invocation::Sweep => {
                    let until = Some(tollgate_executor::invocation_deadline(
                        event.context.deadline,
                        SystemClock.now(),
                        timeout,
                    ))
                    .map(|d| Timestamp(d.0 - per_record.as_millis() as i64));
                    Ok(tollgate_executor::sweep(
                        ingest,
                        until,
                        dead_letters,
                        approvals,
                        followups,
                        notifier,
                        site,
                    )
                    .await?)
                }
            }
        }
    }))
    .await
}
