//! The executor function: an SQS batch in, a partial batch response out.
//!
//! Each record runs through the shared executor. Lambda deletes the records
//! not named in `batchItemFailures`; a record that must come back later (a
//! throttle, a governor hold, a transient failure) gets its visibility set
//! to the wait first, then is named — so it returns when Jira said, not
//! after the queue's default timeout. Records the invocation has no time
//! left for are made visible at once and named, for the next invocation.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use std::time::Duration;
use tollgate::adapters::sqs::{QueuedMessage, SqsQueue};
use tollgate::app::execute::{Disposition, Executor};
use tollgate::app::governor::Pace;
use tollgate::domain::time::Timestamp;
use tollgate::ports::{Clock, JobStore, Leases, LinkStore, Tracker, WorkQueue};

/// One SQS record, translated: the id Lambda knows it by, the receipt the
/// queue adapter understands, and the body.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub message_id: String,
    pub receipt: String,
    pub body: String,
}

/// What became of a record.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordOutcome {
    /// Finished (or stale): Lambda deletes it.
    Done,
    /// Comes back after this wait (its visibility was set).
    Deferred(Duration),
    /// Comes back after the queue's visibility timeout; after
    /// `maxReceiveCount` receives it lands in the dead-letter queue.
    Failed(String),
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
            }),
            (Some(id), _, _) => broken.push(id.clone()),
            _ => tracing::error!("an SQS record without a message id"),
        }
    }
    (ok, broken)
}

/// The time one record may need: if less is left before the deadline, the
/// record is handed back untouched.
pub struct Budget {
    pub deadline: Option<Timestamp>,
    pub per_record: Duration,
}

/// Runs each record through the executor, in order.
pub async fn process<S, T, C, G, Q>(
    executor: &Executor<'_, S, T, C, G>,
    queue: &Q,
    records: &[Record],
    budget: &Budget,
) -> Vec<(String, RecordOutcome)>
where
    S: JobStore + LinkStore + Leases,
    T: Tracker,
    C: Clock,
    G: Pace,
    Q: WorkQueue,
{
    let mut outcomes = Vec::with_capacity(records.len());
    for record in records {
        let now = executor.clock.now();
        let out_of_time = budget
            .deadline
            .is_some_and(|d| now.plus(budget.per_record) > d);
        let outcome = if out_of_time {
            defer(queue, &record.receipt, Duration::ZERO).await
        } else {
            run_one(executor, queue, record, now).await
        };
        tracing::info!(message_id = %record.message_id, ?outcome, "record processed");
        outcomes.push((record.message_id.clone(), outcome));
    }
    outcomes
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
) -> RecordOutcome
where
    S: JobStore + LinkStore + Leases,
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
    match executor.run(&msg.job_id).await {
        Ok(Disposition::Done) => RecordOutcome::Done,
        Ok(Disposition::RetryAfter(wait)) => defer(queue, &record.receipt, wait).await,
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
        if *outcome != RecordOutcome::Done {
            response.add_failure(id.clone());
        }
    }
    response
}

/// The whole entrypoint: event in, partial batch response out.
pub async fn handle<S, T, C, G>(
    executor: &Executor<'_, S, T, C, G>,
    queue: &SqsQueue,
    event: &SqsEvent,
    budget: &Budget,
) -> SqsBatchResponse
where
    S: JobStore + LinkStore + Leases,
    T: Tracker,
    C: Clock,
    G: Pace,
{
    let (records, broken) = records(queue, event);
    let outcomes = process(executor, queue, &records, budget).await;
    batch_response(&outcomes, broken)
}
