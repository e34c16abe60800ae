//! Starting the single-machine stack: SQLite, the Jira client (or an
//! in-process jira-sim), the HTTP server and the worker pool. Clients are
//! built once here and shared by reference.

use crate::config::{JiraTarget, ServeConfig};
use crate::http::{AppState, router};
use crate::worker::{
    WorkerSettings, run_approvals, run_followups, run_stats, run_sweeper, run_workers,
};
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tollgate::adapters::jira::{JiraAuth, JiraClient};
use tollgate::adapters::slack::SlackNotifier;
use tollgate::adapters::sqlite::SqliteDb;
use tollgate::adapters::webhook_notifier::{Notifiers, WebhookNotifier};
use tollgate::app::execute::ExecutorConfig;
use tollgate::app::governor::GovernorConfig;
use tollgate::app::stats::StatsRecorder;
use tollgate::domain::approval::derive_link_key;
use tollgate::domain::backoff::RetryPolicy;
use tollgate::domain::secret::Secret;

/// The governor's name for the in-process simulator (`serve --sim`).
pub const SIM_SITE: &str = "in-process jira-sim";

pub struct Running {
    pub addr: SocketAddr,
    /// The base of approval links.
    pub public_url: String,
    pub jira_url: String,
    pub db: SqliteDb,
    /// The in-process simulator, when `--sim`.
    pub sim: Option<Arc<jira_sim::Sim>>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Running {
    /// Stops accepting work and lets running jobs finish their current call;
    /// whatever has not stopped after a grace period is aborted (its message
    /// returns to the queue after its visibility timeout).
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let drained = tokio::time::timeout(Duration::from_secs(10), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
    }

    /// Waits until a task ends (the server failing) or ctrl-c.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("shutting down"),
            r = self.tasks.join_next() => if let Some(Err(e)) = r { anyhow::bail!("a server task failed: {e}") },
        }
        self.shutdown().await;
        Ok(())
    }
}

pub async fn start(config: ServeConfig) -> anyhow::Result<Running> {
    let db = SqliteDb::open(&config.db)
        .with_context(|| format!("cannot open database {}", config.db.display()))?;
    let mut tasks = JoinSet::new();
    let (stop, stop_rx) = watch::channel(false);
    let (url, auth, sim) = match &config.jira {
        JiraTarget::Site { url, auth } => (url.clone(), auth.clone(), None),
        JiraTarget::InProcessSim => {
            let token = format!("sim-{}", fastrand::u64(..));
            let sim_config = jira_sim::SimConfig {
                email: "tollgate@sim.local".into(),
                api_token: token.clone(),
                latency: config.sim_latency,
                ..Default::default()
            };
            let (addr, sim, handle) = jira_sim::spawn(sim_config, "127.0.0.1:0".parse()?).await?;
            let mut sim_stop = stop_rx.clone();
            tasks.spawn(async move {
                let _ = sim_stop.wait_for(|s| *s).await;
                handle.abort();
            });
            let auth = JiraAuth::Basic {
                email: "tollgate@sim.local".into(),
                api_token: Secret::new(token),
            };
            (format!("http://{addr}"), auth, Some(sim))
        }
    };
    let tracker = Arc::new(JiraClient::new(&url, auth, config.jira_timeout)?);
    // The governor's row: the site's URL, or one name for every run of the
    // in-process simulator (its port changes at each start; its rows must
    // not pile up in `tollgate sites`).
    let site = if sim.is_some() {
        tracing::warn!(
            "--sim: the simulated Jira keeps its issues in memory only; they are gone when serve stops (the database keeps tollgate's jobs, and their issue keys then name nothing)"
        );
        SIM_SITE.to_string()
    } else {
        url.clone()
    };

    // The site's row exists from the start (`tollgate sites` lists it).
    {
        use tollgate::ports::GovernorStore;
        if db.load_governor(&site).await?.1 == 0 {
            db.save_governor(&site, &Default::default(), 0).await?;
        }
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let wake = Arc::new(Notify::new());
    let approvals_wake = Arc::new(Notify::new());
    let link_keys = if config.approvals.link_keys.is_empty() {
        config
            .webhook_secrets
            .first()
            .map(derive_link_key)
            .into_iter()
            .collect()
    } else {
        config.approvals.link_keys.clone()
    };
    let public_url = config
        .approvals
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let notifiers = Notifiers {
        slack: match &config.approvals.slack_webhook_url {
            Some(url) => Some(SlackNotifier::new(url.clone(), Duration::from_secs(10))?),
            None => None,
        },
        webhook: match &config.approvals.notify_webhook_url {
            Some(url) => Some(WebhookNotifier::new(
                url.clone(),
                link_keys.first().cloned(),
                Duration::from_secs(10),
            )?),
            None => None,
        },
    };
    let notifiers = Arc::new(notifiers);
    if !tollgate::ports::Notifier::configured(notifiers.as_ref())
        && !config.approvals.policy.approvers.is_empty()
    {
        tracing::warn!(
            "no notifier configured (TOLLGATE_SLACK_WEBHOOK_URL, TOLLGATE_NOTIFY_WEBHOOK_URL): approval requests wait unsent — `tollgate approvals list` shows them, and they are sent once a notifier is configured"
        );
    }
    let state = Arc::new(AppState {
        db: db.clone(),
        secrets: config.webhook_secrets.clone(),
        wake: wake.clone(),
        policy: config.approvals.policy.clone(),
        link_keys,
        public_url: public_url.clone(),
        approvals_wake: approvals_wake.clone(),
        intake: config.intake.clone(),
        notifiers: notifiers.clone(),
        operator_tokens: config.operator_tokens.clone(),
        site: site.clone(),
    });
    let mut http_stop = stop_rx.clone();
    let http_state = state.clone();
    tasks.spawn(async move {
        let shutdown = async move {
            let _ = http_stop.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, router(http_state))
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    let recorder = Arc::new(StatsRecorder::default());
    let workers = (0..config.workers)
        .map(|i| WorkerSettings {
            visibility: config.visibility_timeout,
            executor: ExecutorConfig {
                worker: format!("worker-{i}"),
                lease_ttl: config.lease_ttl,
                call_timeout: config.jira_timeout,
                bulk_create: config.bulk_create,
                // A receive on SQLite is cheap: resume within seconds.
                paused_poll: Duration::from_secs(5),
                retry: RetryPolicy {
                    cap: config.retry_cap,
                    ..RetryPolicy::default()
                },
                ..ExecutorConfig::default()
            },
        })
        .collect();
    // One process, one view of the site: its workers share it.
    tasks.spawn(run_workers(
        db.clone(),
        tracker.clone(),
        recorder.clone(),
        workers,
        GovernorConfig::new(site.clone(), 1),
        wake.clone(),
        stop_rx.clone(),
    ));
    tasks.spawn(run_approvals(
        state.clone(),
        notifiers.clone(),
        approvals_wake,
        stop_rx.clone(),
    ));
    tasks.spawn(run_followups(
        state.clone(),
        notifiers,
        site.clone(),
        config.followups.clone(),
        stop_rx.clone(),
    ));
    tasks.spawn(run_stats(db.clone(), recorder, stop_rx.clone()));
    tasks.spawn(run_sweeper(state.clone(), wake, stop_rx));
    tracing::info!(%addr, jira = %url, workers = config.workers, db = %config.db.display(), approvers = config.approvals.policy.approvers.len(), "tollgate serving");
    Ok(Running {
        addr,
        public_url,
        jira_url: url,
        db,
        sim,
        stop,
        tasks,
    })
}
