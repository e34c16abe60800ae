//! The work queue, its dead letters and its depth.

use super::*;

/// A message on the work queue: which job to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkMessage {
    pub job_id: JobId,
    pub priority: Priority,
}

/// One received message. The receipt is valid until the message becomes
/// visible again (SQS semantics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub job_id: JobId,
    pub receipt: String,
    pub receive_count: u32,
}

/// At-least-once work queue with per-message visibility, as SQS has.
pub trait WorkQueue: Send + Sync {
    fn send(
        &self,
        msg: &WorkMessage,
        delay: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn receive(
        &self,
        max: usize,
        visibility: Duration,
    ) -> impl Future<Output = Result<Vec<Delivery>, StoreError>> + Send;

    fn delete(&self, receipt: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Makes the message visible again after `after`, counted from now.
    fn change_visibility(
        &self,
        receipt: &str,
        after: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// One message found in the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub receipt: String,
    pub letter: Letter,
}

/// What a dead-lettered message was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Letter {
    /// A job's message.
    Job(JobId),
    /// A batch admission's continuation (the sweep resumes stalled
    /// admissions from their cursor).
    Admission { batch: BatchId },
    /// Not tollgate's, or not readable: why.
    Unreadable(String),
}

/// The queue SQS moves a message to after too many failed receives.
pub trait DeadLetters: Send + Sync {
    /// Up to `max` messages, hidden for `visibility` meanwhile.
    fn receive(
        &self,
        max: usize,
        visibility: Duration,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, StoreError>> + Send;

    fn delete(&self, receipt: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// How much work waits in the queue.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueDepth {
    /// Messages in the work queues, visible, delayed or in flight.
    pub messages: u64,
    /// Age of the oldest message in seconds (0 when none); `None` where the
    /// queue does not say (SQS reports it only as a CloudWatch metric,
    /// `ApproximateAgeOfOldestMessage`).
    pub oldest_age_s: Option<f64>,
}

/// Reads the work queue's depth (SQS's numbers are approximate).
pub trait QueueGauge: Send + Sync {
    fn depth(&self) -> impl Future<Output = Result<QueueDepth, StoreError>> + Send;
}
