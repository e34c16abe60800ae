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
    for (i, record) in records.iter().enumerate() {
        let now = executor.clock.now();
        let outcome = if budget.allows(now, i == 0) {
            run_one(executor, queue, record, now).await
        } else {
            defer(queue, &record.receipt, Duration::ZERO).await
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

#[cfg(test)]
mod tests {
    use super::*;

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
