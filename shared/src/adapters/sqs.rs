//! SQS adapter for the work queue.
//!
//! Protocol:
//! * Two standard queues, `interactive` and `bulk` (they may be the same
//!   queue): a receive drains interactive first, so interactive work
//!   overtakes a running bulk sync. Standard, not FIFO: FIFO forbids
//!   per-message delays and stalls a group behind one throttled message.
//! * The body is `{"jobId", "priority"}`, plus `"notBefore"` (Unix ms) when
//!   the wait is longer than SQS's 15-minute `DelaySeconds`: such a message
//!   is hidden again on receipt until its time, in steps of at most 12 hours
//!   (`ChangeMessageVisibility`'s limit, counted from the call).
//! * A batch admission that ran out of time continues on the bulk queue as
//!   `{"admitBatch", "post"}`: the executor admits the post's next pages.
//! * The dead-letter queue is read by the sweep ([`SqsDeadLetters`]): a
//!   message is deleted once its job was sent again, given up on, or found
//!   finished.
//! * Receipts handed out are `i:<handle>` or `b:<handle>`, so delete and
//!   visibility changes reach the right queue.
//! * The depth (`GetQueueAttributes`) sums both queues' approximate
//!   visible, delayed and in-flight counts.
//! * SQS counts time in whole seconds: waits round up, never down, so a
//!   message never returns before Retry-After.

use super::aws_error::{backend, conditional};
use crate::domain::admission::PostId;
use crate::domain::event::Priority;
use crate::domain::ids::{BatchId, JobId};
use crate::domain::time::Timestamp;
use crate::ports::{
    Clock, DeadLetter, DeadLetters, Delivery, Letter, QueueDepth, QueueGauge, StoreError,
    SystemClock, WorkMessage, WorkQueue,
};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// SQS's longest `DelaySeconds`.
pub const MAX_DELAY: Duration = Duration::from_secs(900);
/// SQS's longest visibility timeout, counted from the call.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    interactive: String,
    bulk: String,
}

/// The message body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuedMessage {
    pub job_id: JobId,
    pub priority: Priority,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unreadable work message: {0}")]
pub struct BadMessage(String);

impl QueuedMessage {
    pub fn decode(body: &str) -> Result<Self, BadMessage> {
        serde_json::from_str(body).map_err(|e| BadMessage(e.to_string()))
    }

    /// How long the message must still stay hidden, if its time has not come.
    pub fn remaining_wait(&self, now: Timestamp) -> Option<Duration> {
        self.not_before
            .filter(|nb| *nb > now.0)
            .map(|nb| Duration::from_millis((nb - now.0) as u64))
    }
}

/// The body of a message that continues a batch's admission (on the bulk
/// queue, next to the bulk jobs): the executor admits its next pages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionMessage {
    pub admit_batch: BatchId,
    pub post: PostId,
}

/// Either kind of message the work queues carry.
#[derive(Debug, Clone, PartialEq)]
pub enum QueueBody {
    Job(QueuedMessage),
    Admission(AdmissionMessage),
}

impl QueueBody {
    pub fn decode(body: &str) -> Result<Self, BadMessage> {
        if let Ok(a) = serde_json::from_str::<AdmissionMessage>(body) {
            return Ok(QueueBody::Admission(a));
        }
        QueuedMessage::decode(body).map(QueueBody::Job)
    }
}

/// Whole seconds, rounded up, capped at `cap`.
pub fn whole_seconds(d: Duration, cap: Duration) -> i32 {
    let d = d.min(cap);
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.min(cap.as_secs()) as i32
}

impl SqsQueue {
    pub fn new(
        client: Client,
        interactive_url: impl Into<String>,
        bulk_url: impl Into<String>,
    ) -> Self {
        SqsQueue {
            client,
            interactive: interactive_url.into(),
            bulk: bulk_url.into(),
        }
    }

    /// Creates a queue (tests and local runs; production queues come from
    /// the SAM template) and returns its URL.
    pub async fn create_queue(client: &Client, name: &str) -> Result<String, StoreError> {
        let out = client
            .create_queue()
            .queue_name(name)
            .attributes(
                aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
                "60",
            )
            .send()
            .await
            .map_err(backend)?;
        out.queue_url
            .ok_or_else(|| StoreError::Backend("CreateQueue returned no URL".into()))
    }

    fn url_for(&self, priority: Priority) -> &str {
        match priority {
            Priority::Interactive => &self.interactive,
            Priority::Bulk => &self.bulk,
        }
    }

    fn split_receipt<'r>(&self, receipt: &'r str) -> Result<(&str, &'r str), StoreError> {
        match receipt.split_once(':') {
            Some(("i", handle)) => Ok((&self.interactive, handle)),
            Some(("b", handle)) => Ok((&self.bulk, handle)),
            _ => Err(StoreError::Corrupt(format!(
                "not an SQS receipt: {receipt:?}"
            ))),
        }
    }

    /// The receipt for a message delivered by Lambda's event source mapping:
    /// which of the two queues it came from, by the queue name at the end of
    /// its ARN.
    pub fn receipt_for(&self, event_source_arn: Option<&str>, handle: &str) -> String {
        let queue_name = |url: &str| url.rsplit('/').next().unwrap_or_default().to_string();
        let from_arn = event_source_arn
            .and_then(|a| a.rsplit(':').next())
            .unwrap_or_default();
        let prefix = if from_arn == queue_name(&self.bulk) && self.bulk != self.interactive {
            "b"
        } else {
            "i"
        };
        format!("{prefix}:{handle}")
    }

    async fn receive_from(
        &self,
        url: &str,
        prefix: &str,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<Delivery>, StoreError> {
        let out = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .visibility_timeout(whole_seconds(visibility, MAX_VISIBILITY))
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(backend)?;
        let now = SystemClock.now();
        let mut deliveries = Vec::new();
        for m in out.messages.unwrap_or_default() {
            let (Some(body), Some(handle)) = (m.body(), m.receipt_handle()) else {
                continue;
            };
            let receipt = format!("{prefix}:{handle}");
            let msg = match QueuedMessage::decode(body) {
                Ok(msg) => msg,
                Err(e) => {
                    // Left to SQS's redrive policy: it lands in the DLQ
                    // after maxReceiveCount receives.
                    tracing::warn!(error = %e, "unreadable work message left for the dead-letter queue");
                    continue;
                }
            };
            if let Some(wait) = msg.remaining_wait(now) {
                self.change_visibility(&receipt, wait).await?;
                continue;
            }
            let receive_count = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|c| c.parse().ok())
                .unwrap_or(1);
            deliveries.push(Delivery {
                job_id: msg.job_id,
                receipt,
                receive_count,
            });
        }
        Ok(deliveries)
    }
}

impl SqsQueue {
    /// The dead-letter queue at `url`, on this queue's client.
    pub fn dead_letters(&self, url: impl Into<String>) -> SqsDeadLetters {
        SqsDeadLetters::new(self.client.clone(), url)
    }

    /// Hands a batch admission that ran out of time on to the executor.
    pub async fn continue_admission(
        &self,
        batch: &BatchId,
        post: &PostId,
    ) -> Result<(), StoreError> {
        let body = AdmissionMessage {
            admit_batch: batch.clone(),
            post: post.clone(),
        };
        let body = serde_json::to_string(&body).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(&self.bulk)
            .message_body(body)
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }
}

/// Both queues' approximate counts (`GetQueueAttributes`): visible,
/// delayed and in flight. SQS keeps the oldest message's age as a
/// CloudWatch metric only, so it is not read here.
impl QueueGauge for SqsQueue {
    async fn depth(&self) -> Result<QueueDepth, StoreError> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let mut urls = vec![self.interactive.as_str()];
        if self.bulk != self.interactive {
            urls.push(&self.bulk);
        }
        let mut messages = 0u64;
        for url in urls {
            let out = self
                .client
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(A::ApproximateNumberOfMessages)
                .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
                .attribute_names(A::ApproximateNumberOfMessagesDelayed)
                .send()
                .await
                .map_err(backend)?;
            let attributes = out.attributes.unwrap_or_default();
            for name in [
                A::ApproximateNumberOfMessages,
                A::ApproximateNumberOfMessagesNotVisible,
                A::ApproximateNumberOfMessagesDelayed,
            ] {
                messages += attributes
                    .get(&name)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        Ok(QueueDepth {
            messages,
            oldest_age_s: None,
        })
    }
}

impl WorkQueue for SqsQueue {
    async fn send(&self, msg: &WorkMessage, delay: Duration) -> Result<(), StoreError> {
        let not_before = (delay > MAX_DELAY).then(|| SystemClock.now().plus(delay).0);
        let body = QueuedMessage {
            job_id: msg.job_id.clone(),
            priority: msg.priority,
            not_before,
        };
        let body = serde_json::to_string(&body).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(self.url_for(msg.priority))
            .message_body(body)
            .delay_seconds(whole_seconds(delay, MAX_DELAY))
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Delivery>, StoreError> {
        let mut got = self
            .receive_from(&self.interactive, "i", max, visibility)
            .await?;
        if got.len() < max && self.bulk != self.interactive {
            got.extend(
                self.receive_from(&self.bulk, "b", max - got.len(), visibility)
                    .await?,
            );
        }
        Ok(got)
    }

    async fn delete(&self, receipt: &str) -> Result<(), StoreError> {
        let (url, handle) = self.split_receipt(receipt)?;
        let r = self
            .client
            .delete_message()
            .queue_url(url)
            .receipt_handle(handle)
            .send()
            .await;
        // A receipt that is no longer valid: the message moved on (another
        // receive, or deleted); nothing to do.
        conditional(r, |e| e.is_receipt_handle_is_invalid()).map(|_| ())
    }

    async fn change_visibility(&self, receipt: &str, after: Duration) -> Result<(), StoreError> {
        let (url, handle) = self.split_receipt(receipt)?;
        let r = self
            .client
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(handle)
            .visibility_timeout(whole_seconds(after, MAX_VISIBILITY))
            .send()
            .await;
        conditional(r, |e| {
            e.is_receipt_handle_is_invalid() || e.is_message_not_inflight()
        })
        .map(|_| ())
    }
}

/// The dead-letter queue both work queues redrive to (read by the sweep).
#[derive(Clone)]
pub struct SqsDeadLetters {
    client: Client,
    url: String,
}

impl SqsDeadLetters {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        SqsDeadLetters {
            client,
            url: url.into(),
        }
    }
}

impl DeadLetters for SqsDeadLetters {
    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .visibility_timeout(whole_seconds(visibility, MAX_VISIBILITY))
            .send()
            .await
            .map_err(backend)?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let letter = match QueueBody::decode(m.body.as_deref().unwrap_or_default()) {
                    Ok(QueueBody::Job(msg)) => Letter::Job(msg.job_id),
                    Ok(QueueBody::Admission(a)) => Letter::Admission {
                        batch: a.admit_batch,
                    },
                    Err(e) => Letter::Unreadable(e.to_string()),
                };
                Some(DeadLetter {
                    receipt: m.receipt_handle?,
                    letter,
                })
            })
            .collect())
    }

    async fn delete(&self, receipt: &str) -> Result<(), StoreError> {
        let r = self
            .client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await;
        conditional(r, |e| e.is_receipt_handle_is_invalid()).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_round_up_to_whole_seconds_and_stop_at_the_cap() {
        assert_eq!(whole_seconds(Duration::ZERO, MAX_DELAY), 0);
        assert_eq!(whole_seconds(Duration::from_millis(1), MAX_DELAY), 1);
        assert_eq!(whole_seconds(Duration::from_millis(2500), MAX_DELAY), 3);
        assert_eq!(whole_seconds(Duration::from_secs(3600), MAX_DELAY), 900);
        assert_eq!(
            whole_seconds(Duration::from_secs(100_000), MAX_VISIBILITY),
            43_200
        );
    }

    #[test]
    fn a_message_for_later_says_how_long_it_must_still_hide() {
        let msg = QueuedMessage {
            job_id: JobId::generate(),
            priority: Priority::Bulk,
            not_before: Some(10_000),
        };
        assert_eq!(
            msg.remaining_wait(Timestamp(4_000)),
            Some(Duration::from_secs(6))
        );
        assert_eq!(msg.remaining_wait(Timestamp(10_000)), None);
        let body = serde_json::to_string(&msg).unwrap();
        assert_eq!(QueuedMessage::decode(&body).unwrap(), msg);
        assert!(QueuedMessage::decode("{\"jobId\": 3}").is_err());
        assert_eq!(QueueBody::decode(&body).unwrap(), QueueBody::Job(msg));
        let admission = AdmissionMessage {
            admit_batch: BatchId::parse("nightly").unwrap(),
            post: PostId::parse("0123456789abcdef0123456789abcdef").unwrap(),
        };
        let text = serde_json::to_string(&admission).unwrap();
        assert_eq!(
            QueueBody::decode(&text).unwrap(),
            QueueBody::Admission(admission)
        );
    }

    #[test]
    fn lambda_records_map_to_the_queue_they_came_from() {
        let client = Client::from_conf(
            aws_sdk_sqs::Config::builder()
                .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
                .build(),
        );
        let q = SqsQueue::new(
            client,
            "http://localhost/123/tollgate-interactive",
            "http://localhost/123/tollgate-bulk",
        );
        assert_eq!(
            q.receipt_for(Some("arn:aws:sqs:eu-west-1:123:tollgate-bulk"), "h"),
            "b:h"
        );
        assert_eq!(
            q.receipt_for(Some("arn:aws:sqs:eu-west-1:123:tollgate-interactive"), "h"),
            "i:h"
        );
    }
}
