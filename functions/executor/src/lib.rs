//! The executor function: an SQS batch in, a partial batch response out.
//!
//! Each record runs through the shared executor. Lambda deletes the records
//! not named in `batchItemFailures`; a record that must come back later (a
//! throttle, a governor hold, a transient failure) gets its visibility set
//! to the wait first, then is named — so it returns when Jira said, not
//! after the queue's default timeout. Records the invocation has no time
//! left for are made visible at once and named, for the next invocation.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use std::cell::Cell;
use std::time::Duration;
use tollgate::adapters::emf;
pub use tollgate::adapters::lambda_env::invocation_deadline;
use tollgate::adapters::sqs::{
    AdmissionMessage, QueueBody, QueuedMessage, SqsDeadLetters, SqsQueue,
};
use tollgate::app::AppError;
use tollgate::app::approvals::Approvals;
use tollgate::app::dead_letters::check_dead_letters;
use tollgate::app::execute::{Disposition, Executor, RunReport};
use tollgate::app::followup::FollowUps;
use tollgate::app::governor::Pace;
use tollgate::app::governor::announce_health;
use tollgate::app::ingest::{Ingest, resend_unenqueued};
use tollgate::app::stats::StatsRecorder;
use tollgate::domain::job::JobState;
use tollgate::domain::time::Timestamp;
use tollgate::ports::{
    BatchStore, Clock, GovernorStore, IngestStore, JobStore, Leases, LinkStore, Notifier, Tracker,
    WorkMessage, WorkQueue,
};

/// One SQS record, translated: the id Lambda knows it by, the receipt the
/// queue adapter understands, and the body.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub message_id: String,
    pub receipt: String,
    pub body: String,
    /// SQS's ApproximateReceiveCount.
    pub receive_count: u32,
}

/// A job still waiting after this many receives (throttles, governor holds:
/// each return is a receive) continues on a fresh message, so a long Jira
/// outage never pushes live work into the dead-letter queue, which is kept
/// for messages that fail to run at all.
pub const RECYCLE_AFTER_RECEIVES: u32 = 100;

/// What became of a record.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordOutcome {
    /// Finished (or stale): Lambda deletes it. The job's state after the
    /// run, when it was run.
    Done(Option<JobState>),
    /// Comes back after this wait (its visibility was set).
    Deferred(Duration),
    /// Continues on a fresh message sent with this delay; Lambda deletes
    /// this one (see [`RECYCLE_AFTER_RECEIVES`]).
    Recycled(Duration),
    /// Comes back after the queue's visibility timeout; after
    /// `maxReceiveCount` receives it lands in the dead-letter queue.
    Failed(String),
}

/// For log lines: words, not Rust's Debug rendering.
impl std::fmt::Display for RecordOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordOutcome::Done(Some(state)) => write!(f, "done ({state})"),
            RecordOutcome::Done(None) => f.write_str("done"),
            RecordOutcome::Deferred(d) => write!(f, "back in {:.1} s", d.as_secs_f64()),
            RecordOutcome::Recycled(d) => {
                write!(f, "continued on a new message in {:.1} s", d.as_secs_f64())
            }
            RecordOutcome::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}

/// Translates the SQS event; records without an id, receipt or body cannot
/// be acted on and are reported as failures by id where there is one.
pub fn records(queue: &SqsQueue, event: &SqsEvent) -> (Vec<Record>, Vec<String>) {
    let mut ok = Vec::new();
    let mut broken = Vec::new();
    for r in &event.records {
        match (&r.message_id, &r.receipt_handle, &r.body) {
            (Some(id), Some(handle), Some(body)) => ok.push(Record {
                message_id: id.clone(),
                receipt: queue.receipt_for(r.event_source_arn.as_deref(), handle),
                body: body.clone(),
                receive_count: r
                    .attributes
                    .get("ApproximateReceiveCount")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1),
            }),
            (Some(id), _, _) => broken.push(id.clone()),
            _ => tracing::error!("an SQS record without a message id"),
        }
    }
    (ok, broken)
}

/// The time one record may need: if less is left before the deadline, the
/// record is handed back untouched — except the batch's first, which always
/// runs, so a short function timeout slows the queue but never stalls it.
pub struct Budget {
    pub deadline: Option<Timestamp>,
    pub per_record: Duration,
}

impl Budget {
    pub fn allows(&self, now: Timestamp, first: bool) -> bool {
        first || self.deadline.is_none_or(|d| now.plus(self.per_record) <= d)
    }
}

/// What a batch did, as counts (sent out as metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchCounts {
    pub records: u64,
    pub done: u64,
    pub deferred: u64,
    pub failed: u64,
    pub succeeded: u64,
    pub jobs_failed: u64,
    pub exhausted: u64,
    /// Runs that Jira answered with a 429.
    pub throttled: u64,
}

impl BatchCounts {
    pub fn metrics(&self) -> [(&'static str, u64); 8] {
        [
            ("Records", self.records),
            ("RecordsDone", self.done),
            ("RecordsDeferred", self.deferred),
            ("RecordsFailed", self.failed),
            ("JobsSucceeded", self.succeeded),
            ("JobsFailed", self.jobs_failed),
            ("JobsExhausted", self.exhausted),
            ("Throttled", self.throttled),
        ]
    }
}

/// Runs each record through the executor, in order.
pub async fn process<S, T, C, G, Q>(
    executor: &Executor<'_, S, T, C, G>,
    queue: &Q,
    records: &[Record],
    budget: &Budget,
) -> (Vec<(String, RecordOutcome)>, BatchCounts)
where
    S: JobStore + LinkStore + Leases + BatchStore,
    T: Tracker,
    C: Clock,
    G: Pace,
    Q: WorkQueue,
{
    let mut outcomes = Vec::with_capacity(records.len());
    let throttled = Cell::new(0);
    let mut counts = BatchCounts::default();
    for (i, record) in records.iter().enumerate() {
        let now = executor.clock.now();
        let outcome = if budget.allows(now, i == 0) {
            run_one(executor, queue, record, now, &throttled).await
        } else {
            defer(queue, &record.receipt, Duration::ZERO).await
        };
        tracing::info!(message_id = %record.message_id, outcome = %outcome, "record processed");
        counts.records += 1;
        match &outcome {
            RecordOutcome::Done(state) => {
                counts.done += 1;
                match state {
                    Some(JobState::Succeeded) => counts.succeeded += 1,
                    Some(JobState::Failed) => counts.jobs_failed += 1,
                    Some(JobState::Exhausted) => counts.exhausted += 1,
                    _ => {}
                }
            }
            RecordOutcome::Deferred(_) | RecordOutcome::Recycled(_) => counts.deferred += 1,
            RecordOutcome::Failed(_) => counts.failed += 1,
        }
        outcomes.push((record.message_id.clone(), outcome));
    }
    counts.throttled = throttled.get();
    (outcomes, counts)
}

async fn defer<Q: WorkQueue>(queue: &Q, receipt: &str, wait: Duration) -> RecordOutcome {
    match queue.change_visibility(receipt, wait).await {
        Ok(()) => RecordOutcome::Deferred(wait),
        Err(e) => RecordOutcome::Failed(format!("could not set visibility: {e}")),
    }
}

async fn run_one<S, T, C, G, Q>(
    executor: &Executor<'_, S, T, C, G>,
    queue: &Q,
    record: &Record,
    now: Timestamp,
    throttled: &Cell<u64>,
) -> RecordOutcome
where
    S: JobStore + LinkStore + Leases + BatchStore,
    T: Tracker,
    C: Clock,
    G: Pace,
    Q: WorkQueue,
{
    let msg = match QueuedMessage::decode(&record.body) {
        Ok(msg) => msg,
        Err(e) => return RecordOutcome::Failed(e.to_string()),
    };
    if let Some(wait) = msg.remaining_wait(now) {
        return defer(queue, &record.receipt, wait).await;
    }
    let report = executor.run_reported(&msg.job_id).await;
    if let Ok(r) = &report {
        throttled.set(throttled.get() + u64::from(r.throttled));
    }
    match report {
        Ok(RunReport {
            disposition: Disposition::Done,
            state,
            ..
        }) => RecordOutcome::Done(state),
        Ok(RunReport {
            disposition: Disposition::RetryAfter(wait),
            ..
        }) if record.receive_count >= RECYCLE_AFTER_RECEIVES => {
            let fresh = WorkMessage {
                job_id: msg.job_id.clone(),
                priority: msg.priority,
            };
            match queue.send(&fresh, wait).await {
                // The old message is deleted as done; the fresh one returns
                // after the wait with a receive count of zero.
                Ok(()) => RecordOutcome::Recycled(wait),
                Err(_) => defer(queue, &record.receipt, wait).await,
            }
        }
        Ok(RunReport {
            disposition: Disposition::RetryAfter(wait),
            ..
        }) => defer(queue, &record.receipt, wait).await,
        Err(e) => {
            tracing::warn!(job_id = %msg.job_id, error = %e, "job run failed; the message returns");
            match defer(queue, &record.receipt, Duration::from_secs(2)).await {
                RecordOutcome::Deferred(_) => RecordOutcome::Failed(e.to_string()),
                failed => failed,
            }
        }
    }
}

/// The partial batch response: every record not done is named.
pub fn batch_response(
    outcomes: &[(String, RecordOutcome)],
    broken: Vec<String>,
) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for id in broken {
        response.add_failure(id);
    }
    for (id, outcome) in outcomes {
        if matches!(
            outcome,
            RecordOutcome::Deferred(_) | RecordOutcome::Failed(_)
        ) {
            response.add_failure(id.clone());
        }
    }
    response
}

/// Continues the batch admissions named by `records` (continuation messages
/// on the bulk queue): pages are admitted while a page still fits before
/// the deadline; what is left goes on in a fresh message, and the record is
/// done either way. A failure leaves the record to come back.
pub async fn continue_admissions<S, C>(
    ingest: &Ingest<'_, S, SqsQueue, C>,
    queue: &SqsQueue,
    records: &[(Record, AdmissionMessage)],
    budget: &Budget,
) -> Vec<(String, RecordOutcome)>
where
    S: IngestStore,
    C: Clock,
{
    let mut outcomes = Vec::with_capacity(records.len());
    for (record, msg) in records {
        let until = budget
            .deadline
            .map(|d| Timestamp(d.0 - budget.per_record.as_millis() as i64));
        let outcome = match ingest.admit_pages(&msg.admit_batch, &msg.post, until).await {
            Ok((a, _)) if a.is_done() => RecordOutcome::Done(None),
            Ok(_) => match queue.continue_admission(&msg.admit_batch, &msg.post).await {
                Ok(()) => RecordOutcome::Done(None),
                Err(e) => RecordOutcome::Failed(format!("continuation not sent: {e}")),
            },
            Err(e) => {
                tracing::warn!(batch = %msg.admit_batch, post = %msg.post, error = %e, "batch admission failed; the message returns");
                RecordOutcome::Failed(e.to_string())
            }
        };
        tracing::info!(message_id = %record.message_id, outcome = %outcome, "admission record processed");
        outcomes.push((record.message_id.clone(), outcome));
    }
    outcomes
}

/// The whole entrypoint: event in, partial batch response out; the batch's
/// counts and the Jira calls it made go to stdout as Embedded Metric Format
/// lines, and the calls are added to the stored hotspot figures.
pub async fn handle<S, T, C, G>(
    executor: &Executor<'_, S, T, C, G>,
    ingest: &Ingest<'_, S, SqsQueue, C>,
    queue: &SqsQueue,
    event: &SqsEvent,
    budget: &Budget,
    recorder: &StatsRecorder,
) -> SqsBatchResponse
where
    S: IngestStore,
    T: Tracker,
    C: Clock,
    G: Pace,
{
    let (records, broken) = records(queue, event);
    let (admissions, jobs): (Vec<_>, Vec<_>) = records
        .into_iter()
        .map(|r| match QueueBody::decode(&r.body) {
            Ok(QueueBody::Admission(a)) => (r, Some(a)),
            _ => (r, None),
        })
        .partition(|(_, a)| a.is_some());
    let admissions: Vec<(Record, AdmissionMessage)> = admissions
        .into_iter()
        .filter_map(|(r, a)| Some((r, a?)))
        .collect();
    let jobs: Vec<Record> = jobs.into_iter().map(|(r, _)| r).collect();
    let (mut outcomes, mut counts) = process(executor, queue, &jobs, budget).await;
    outcomes.extend(continue_admissions(ingest, queue, &admissions, budget).await);
    counts.records += broken.len() as u64;
    counts.failed += broken.len() as u64;
    let now = executor.clock.now().0;
    println!("{}", emf::line(now, &counts.metrics()));
    match recorder.flush(executor.store, executor.clock).await {
        Ok(calls) => {
            for line in emf::call_lines(now, &calls) {
                println!("{line}");
            }
        }
        Err(e) => tracing::warn!(error = %e, "hotspot figures not stored; kept for the next batch"),
    }
    batch_response(&outcomes, broken)
}

/// What an invocation asks for: an SQS batch, or the scheduled sweep.
#[derive(Debug)]
pub enum Invocation {
    Batch(Box<SqsEvent>),
    /// EventBridge's scheduled event (or `{"tollgate": "sweep"}`).
    Sweep,
}

#[derive(Debug, thiserror::Error)]
#[error("not an SQS batch nor a scheduled sweep: {0}")]
pub struct UnknownInvocation(String);

impl Invocation {
    pub fn parse(event: serde_json::Value) -> Result<Self, UnknownInvocation> {
        if event.get("Records").is_some() {
            return serde_json::from_value(event)
                .map(|e| Invocation::Batch(Box::new(e)))
                .map_err(|e| UnknownInvocation(e.to_string()));
        }
        let scheduled =
            event.get("detail-type").and_then(|d| d.as_str()) == Some("Scheduled Event");
        let asked = event.get("tollgate").and_then(|d| d.as_str()) == Some("sweep");
        if scheduled || asked {
            return Ok(Invocation::Sweep);
        }
        Err(UnknownInvocation("unrecognised shape".into()))
    }
}

/// The scheduled sweep: re-sends jobs whose queue message a crash lost
/// (admitted over a minute ago, never sent), resumes batch admissions
/// whose continuation was lost (until `until`), re-drives or gives up on
/// work whose message reached the dead-letter queue, expires overdue approval
/// requests, retries approval notifications, applies decisions a crash
/// left unapplied, follows up exhausted and half-done work, and announces
/// the site entering or leaving degraded mode.
pub async fn sweep<S, C, N>(
    ingest: &Ingest<'_, S, SqsQueue, C>,
    until: Option<Timestamp>,
    dead_letters: Option<&SqsDeadLetters>,
    approvals: &Approvals<'_, S, SqsQueue, C>,
    followups: &FollowUps<'_, S, SqsQueue, C>,
    notifier: &N,
    site: &str,
) -> Result<serde_json::Value, AppError>
where
    S: IngestStore + GovernorStore,
    C: Clock,
    N: Notifier,
{
    let (store, queue) = (ingest.store, ingest.queue);
    let now = approvals.clock.now();
    let cutoff = Timestamp(now.0 - 60_000);
    // Each part on its own: one that fails is reported, and never keeps
    // the others (expiry, notifications, follow-ups) from running.
    let mut failed: Vec<String> = Vec::new();
    let mut ran = 0;
    let mut part = |name: &str, r: Result<usize, AppError>| match r {
        Ok(n) => {
            ran += 1;
            serde_json::json!(n)
        }
        Err(e) => {
            tracing::error!(part = name, error = %e, "sweep part failed; the others ran");
            failed.push(format!("{name}: {e}"));
            serde_json::Value::Null
        }
    };
    let resent = part("resend", resend_unenqueued(store, queue, cutoff).await);
    let admissions = part(
        "admissions",
        ingest.resume_stalled(until).await.map(|r| r.len()),
    );
    let dead = match dead_letters {
        Some(d) => part(
            "deadLetters",
            check_dead_letters(store, queue, d, approvals.clock)
                .await
                .map(|r| r.redriven + r.gave_up + r.dropped),
        ),
        None => serde_json::Value::Null,
    };
    let approvals_acted = part("approvals", approvals.sweep(notifier).await);
    let paused = match store.load_governor(site).await {
        Ok((g, _)) => g.paused_until > now,
        Err(e) => {
            tracing::warn!(error = %e, "governor row unreadable; following up as if the site were paused");
            true
        }
    };
    let followed_up = part("followUps", followups.sweep(notifier, paused).await);
    let announced = part(
        "siteChanges",
        announce_health(store, site, notifier)
            .await
            .map_err(AppError::from),
    );
    tracing::info!(
        %resent,
        %admissions,
        %dead,
        %approvals_acted,
        %followed_up,
        %announced,
        "sweep done"
    );
    if ran == 0 {
        // Nothing worked: the store itself is unreachable; let Lambda count
        // the invocation as failed.
        return Err(AppError::Store(tollgate::ports::StoreError::Backend(
            failed.join("; "),
        )));
    }
    Ok(serde_json::json!({
        "resent": resent,
        "admissions": admissions,
        "deadLetters": dead,
        "approvals": approvals_acted,
        "followUps": followed_up,
        "siteChanges": announced,
        "failed": failed,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invocation_is_a_batch_a_schedule_or_refused() {
        let batch = Invocation::parse(serde_json::json!({"Records": []})).unwrap();
        assert!(matches!(batch, Invocation::Batch(_)));
        let tick = serde_json::json!({"detail-type": "Scheduled Event", "source": "aws.events"});
        assert!(matches!(
            Invocation::parse(tick).unwrap(),
            Invocation::Sweep
        ));
        assert!(matches!(
            Invocation::parse(serde_json::json!({"tollgate": "sweep"})).unwrap(),
            Invocation::Sweep
        ));
        assert!(Invocation::parse(serde_json::json!({"hello": 1})).is_err());
    }

    #[test]
    fn a_relative_or_past_deadline_falls_back_to_something_sane() {
        let now = Timestamp(1_800_000_000_000);
        let timeout = Duration::from_secs(60);
        assert_eq!(
            invocation_deadline(1_800_000_010_000, now, timeout),
            Timestamp(1_800_000_010_000)
        );
        assert_eq!(
            invocation_deadline(600_000, now, timeout),
            Timestamp(1_800_000_600_000),
            "relative, as cargo lambda watch sends: counted from now"
        );
        assert_eq!(
            invocation_deadline(0, now, timeout),
            Timestamp(1_800_000_060_000),
            "none: the function's timeout"
        );
        assert_eq!(
            invocation_deadline(1_700_000_000_000, now, timeout),
            Timestamp(1_800_000_060_000),
            "already past: the function's timeout"
        );
    }

    #[test]
    fn records_start_only_while_a_whole_record_fits_before_the_deadline() {
        let budget = Budget {
            deadline: Some(Timestamp(10_000)),
            per_record: Duration::from_secs(3),
        };
        assert!(budget.allows(Timestamp(7_000), false));
        assert!(!budget.allows(Timestamp(7_001), false));
        assert!(
            budget.allows(Timestamp(9_999), true),
            "the first always runs"
        );
        let no_deadline = Budget {
            deadline: None,
            per_record: Duration::from_secs(3),
        };
        assert!(no_deadline.allows(Timestamp(i64::MAX / 2), false));
    }
}
