//! The `serve` worker pool: the embedded equivalent of the executor Lambda's
//! SQS event source. Receives messages, runs the shared executor, and turns
//! its disposition into a delete or a visibility change. While a job runs,
//! its message's visibility is extended so no other worker receives it.

use crate::http::AppState;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tollgate::adapters::sqlite::SqliteDb;
use tollgate::adapters::webhook_notifier::Notifiers;
use tollgate::app::execute::{Disposition, Executor, ExecutorConfig};
use tollgate::app::followup::FollowUps;
use tollgate::app::governor::announce_health;
use tollgate::app::governor::{Governor, GovernorConfig, Pace};
use tollgate::app::ingest::resend_unenqueued;
use tollgate::app::stats::{Metered, StatsRecorder};
use tollgate::domain::followup::FollowUpPolicy;
use tollgate::domain::time::Timestamp;
use tollgate::ports::GovernorStore;
use tollgate::ports::{Clock, SystemClock, Tracker, WorkQueue};

pub struct WorkerSettings {
    pub visibility: Duration,
    pub executor: ExecutorConfig,
}

const IDLE_POLL: Duration = Duration::from_millis(200);

/// The pool: `workers` receive loops on one task, sharing one view of the
/// site's governor — so what one worker sees of Jira's answers (the
/// accepted rate a throttle is judged by) is what the process sent, not a
/// sliver of it.
pub async fn run_workers<T: Tracker>(
    db: SqliteDb,
    tracker: Arc<T>,
    recorder: Arc<StatsRecorder>,
    workers: Vec<WorkerSettings>,
    governor: GovernorConfig,
    wake: Arc<Notify>,
    stop: watch::Receiver<bool>,
) {
    let governor = Governor::new(&db, &SystemClock, governor);
    let metered = Metered {
        inner: &governor,
        recorder: recorder.as_ref(),
    };
    let loops = workers.into_iter().map(|settings| {
        run_worker(
            &db,
            tracker.as_ref(),
            &metered,
            settings,
            wake.clone(),
            stop.clone(),
        )
    });
    futures_util::future::join_all(loops).await;
}

async fn run_worker<T: Tracker, P: Pace>(
    db: &SqliteDb,
    tracker: &T,
    governor: &P,
    settings: WorkerSettings,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let executor = Executor {
        store: db,
        tracker,
        clock: &SystemClock,
        config: &settings.executor,
        governor,
        deadline: None,
    };
    while !*stop.borrow() {
        let deliveries = match db.receive(1, settings.visibility).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "queue receive failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if deliveries.is_empty() {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        for d in deliveries {
            tracing::debug!(job_id = %d.job_id, receive_count = d.receive_count, "received");
            let run = executor.run(&d.job_id);
            tokio::pin!(run);
            let heartbeat = settings.visibility / 2;
            let outcome = loop {
                tokio::select! {
                    r = &mut run => break r,
                    _ = tokio::time::sleep(heartbeat) => {
                        if let Err(e) = db.change_visibility(&d.receipt, settings.visibility).await {
                            tracing::warn!(job_id = %d.job_id, error = %e, "visibility heartbeat failed");
                        }
                    }
                }
            };
            match &outcome {
                Ok(disposition) => tracing::debug!(job_id = %d.job_id, %disposition, "ran"),
                Err(e) => tracing::debug!(job_id = %d.job_id, error = %e, "ran"),
            }
            let settled = match outcome {
                Ok(Disposition::Done) => db.delete(&d.receipt).await,
                Ok(Disposition::RetryAfter(wait)) => db.change_visibility(&d.receipt, wait).await,
                Err(e) => {
                    tracing::warn!(job_id = %d.job_id, error = %e, "job run failed; message returns");
                    db.change_visibility(&d.receipt, Duration::from_secs(2))
                        .await
                }
            };
            if let Err(e) = settled {
                tracing::warn!(job_id = %d.job_id, error = %e, "could not settle message; it returns after its visibility timeout");
            }
        }
    }
}

/// Adds the workers' Jira call counts to the stored hotspot figures every
/// couple of seconds, and once more on the way out.
pub async fn run_stats(
    db: SqliteDb,
    recorder: Arc<StatsRecorder>,
    mut stop: watch::Receiver<bool>,
) {
    let every = Duration::from_secs(2);
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(every) => false,
            _ = stop.changed() => true,
        };
        if let Err(e) = recorder.flush(&db, &SystemClock).await {
            tracing::warn!(error = %e, "hotspot figures not stored; kept for the next flush");
        }
        if stopping || *stop.borrow() {
            break;
        }
    }
}

/// Re-sends jobs whose message a crash may have lost (the outbox sweep),
/// and resumes batch admissions a crash interrupted.
pub async fn run_sweeper(state: Arc<AppState>, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    let db = state.db.clone();
    let every = Duration::from_secs(5);
    while !*stop.borrow() {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => break,
        }
        if let Err(e) = db.purge_expired_leases().await {
            tracing::warn!(error = %e, "expired leases not purged");
        }
        let cutoff = Timestamp(SystemClock.now().0 - every.as_millis() as i64);
        match resend_unenqueued(&db, &db, cutoff).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(count = n, "re-sent jobs whose queue message was missing");
                wake.notify_waiters();
            }
            Err(e) => tracing::warn!(error = %e, "outbox sweep failed"),
        }
        match state.ingest().resume_stalled(None).await {
            Ok(resumed) if resumed.is_empty() => {}
            Ok(resumed) => {
                tracing::info!(
                    count = resumed.len(),
                    "resumed interrupted batch admissions"
                );
                wake.notify_waiters();
            }
            Err(e) => tracing::warn!(error = %e, "batch admission sweep failed"),
        }
    }
}

/// Follow-ups of jobs that ended badly (exhausted work reported, ticketed
/// and re-run; half-done failures compensated), and announcements of the
/// site entering or leaving degraded mode.
pub async fn run_followups(
    state: Arc<AppState>,
    notifiers: Arc<Notifiers>,
    site: String,
    policy: FollowUpPolicy,
    mut stop: watch::Receiver<bool>,
) {
    let every = Duration::from_secs(5);
    while !*stop.borrow() {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => break,
        }
        let now = SystemClock.now();
        let paused = match state.db.load_governor(&site).await {
            Ok((g, _)) => g.paused_until > now,
            Err(_) => false,
        };
        let followups = FollowUps {
            store: &state.db,
            queue: &state.db,
            clock: &SystemClock,
            policy: &policy,
        };
        if let Err(e) = announce_health(&state.db, &site, notifiers.as_ref()).await {
            tracing::warn!(error = %e, "site health announcement failed");
        }
        match followups.sweep(notifiers.as_ref(), paused).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(count = n, "follow-ups done");
                state.wake.notify_waiters();
            }
            Err(e) => tracing::warn!(error = %e, "follow-up sweep failed"),
        }
    }
}

/// The approvals sweep: notifies approvers of new requests (woken by
/// ingest, retried every few seconds until sent), expires overdue requests
/// and settles decisions a crash left half-applied.
pub async fn run_approvals(
    state: Arc<AppState>,
    notifiers: Arc<Notifiers>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let every = Duration::from_secs(5);
    while !*stop.borrow() {
        match state.approvals().sweep(notifiers.as_ref()).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::debug!(count = n, "approvals swept");
                state.wake.notify_waiters();
            }
            Err(e) => tracing::warn!(error = %e, "approvals sweep failed"),
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => break,
        }
    }
}
