//! SQS delivery on the Lambda form, against moto: a throttled message is
//! hidden until Retry-After and reported as a batch item failure, an
//! unreadable record fails alone, the scheduled sweep re-sends work whose
//! message a crash lost, and a job waiting through many receives goes on in
//! a fresh message rather than the dead-letter queue.

#[path = "../shared/tests/support/moto.rs"]
mod moto;
#[path = "lambda/support.rs"]
mod support;

use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_sqs::types::QueueAttributeName;
use jira_sim::limits::{Faults, Limits};
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;
use support::*;
use tollgate::domain::event::{OperationKind, Priority};
use tollgate::domain::idempotency::{DedupId, Fingerprint, IdempotencyKey, LinkId};
use tollgate::domain::ids::JobId;
use tollgate::domain::ids::{ExternalId, SourceSystem};
use tollgate::domain::job::JobState;
use tollgate::domain::policy::Policy;
use tollgate::domain::secret::Secret;
use tollgate::domain::time::Timestamp;
use tollgate::ports::{Clock, JobRecord};
use tollgate::ports::{JobStore, SystemClock, WorkQueue};
use tollgate_executor::Invocation;

#[tokio::test]
async fn a_throttled_message_is_hidden_until_retry_after_and_reported_as_a_batch_item_failure() {
    let aws = aws().await;
    let (site, _sim) = sim(Limits {
        quota_points: 1,
        window_seconds: 10.0,
        ..Limits::default()
    })
    .await;
    let mut ids = Vec::new();
    for i in 100..102 {
        let a = call_ingest(&aws, signed_post(&alert(i), false)).await;
        assert_eq!(a.status, 202);
        ids.push(a.body["jobId"].as_str().unwrap().to_string());
    }
    let mut instance = Instance::new(&aws, &site, "lambda-throttle", 1);
    // One create per call: two creates in one bulk call would cost one point.
    instance.config.bulk_create = 1;
    // Start at the top of a quota window, so both calls fall in the same one.
    let into_window = SystemClock.now().0.rem_euclid(10_000) as u64;
    tokio::time::sleep(Duration::from_millis(10_000 - into_window + 50)).await;
    let (n, failed) = instance.poll_once(10).await;
    assert_eq!(n, 2);
    assert_eq!(failed.len(), 1, "one record throttled, one done");

    // The throttled message is invisible now: not received again at once.
    let again = aws
        .sqs
        .receive_message()
        .queue_url(&aws.queues[0].0)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    assert!(again.messages.unwrap_or_default().is_empty());
    let waiting: Vec<_> = {
        let mut w = Vec::new();
        for id in &ids {
            let job = aws
                .store
                .job(&JobId::parse(id).unwrap())
                .await
                .unwrap()
                .unwrap();
            if !job.state.is_terminal() {
                w.push(job);
            }
        }
        w
    };
    assert_eq!(waiting.len(), 1);
    let trail = aws.store.audit_trail(&waiting[0].id).await.unwrap();
    assert!(
        trail
            .iter()
            .any(|e| e.outcome.starts_with("throttled") || e.outcome.starts_with("held")),
        "{trail:?}"
    );

    // A second message for the waiting job (a duplicate delivery, a
    // recycled message) arrives early: it goes back for the rest of the
    // wait without touching the job or Jira.
    let trail_before = trail.len();
    aws.queue
        .send(
            &tollgate::ports::WorkMessage {
                job_id: waiting[0].id.clone(),
                priority: Priority::Interactive,
            },
            Duration::ZERO,
        )
        .await
        .unwrap();
    let (n, failed) = instance.poll_once(10).await;
    assert_eq!((n, failed.len()), (1, 1), "received and handed back");
    let trail = aws.store.audit_trail(&waiting[0].id).await.unwrap();
    assert_eq!(
        trail.len(),
        trail_before,
        "the early message did not run the job: {trail:?}"
    );

    // It returns after the wait and then runs.
    let jobs: HashSet<String> = ids.into_iter().collect();
    instance.drain(&jobs, Duration::from_secs(30)).await;
    assert!(all_terminal(&aws.store, &jobs).await);
}

#[tokio::test]
async fn a_batch_with_an_unreadable_record_reports_only_that_record() {
    let aws = aws().await;
    let (site, sim) = sim(Limits::default()).await;
    let a = call_ingest(&aws, signed_post(&alert(200), false)).await;
    let job_id = a.body["jobId"].as_str().unwrap().to_string();
    let out = aws
        .sqs
        .receive_message()
        .queue_url(&aws.queues[0].0)
        .send()
        .await
        .unwrap();
    let m = &out.messages.unwrap()[0];
    let arn = &aws.queues[0].1;
    let record = |id: &str, body: &str| {
        json!({"messageId": id, "receiptHandle": m.receipt_handle(), "body": body,
               "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
               "eventSource": "aws:sqs", "eventSourceARN": arn, "awsRegion": "us-east-1"})
    };
    let unknown_job = json!({"jobId": JobId::generate(), "priority": "interactive"}).to_string();
    let event: SqsEvent = serde_json::from_value(json!({"Records": [
        record("m-good", m.body().unwrap()),
        record("m-garbage", "{not json"),
        // At-least-once delivery: the same message twice in one batch.
        record("m-good-again", m.body().unwrap()),
        record("m-unknown-job", &unknown_job),
    ]}))
    .unwrap();
    let instance = Instance::new(&aws, &site, "lambda-batch", 1);
    let response = instance.invoke(&event).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["m-garbage"]);
    let job = aws
        .store
        .job(&JobId::parse(&job_id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.state.as_str(), "SUCCEEDED");
    assert_eq!(sim.report()["totals"]["issues"], 1);
}

#[tokio::test]
async fn the_scheduled_sweep_sends_a_job_whose_message_a_crash_lost() {
    let aws = aws().await;
    let (site, sim) = sim(Limits::default()).await;
    // What a crash between admission and SendMessage leaves: a job admitted
    // two minutes ago whose message was never sent.
    let event = alert(500);
    let source = SourceSystem::parse("alertmanager").unwrap();
    let external = ExternalId::parse("alert-500").unwrap();
    let parsed = tollgate::domain::validation::validate_event(&event).unwrap();
    let key = IdempotencyKey::of(&parsed);
    let fingerprint = Fingerprint::of(&event);
    let created = Timestamp(SystemClock.now().0 - 120_000);
    let job = JobRecord {
        id: JobId::generate(),
        dedup: DedupId::of(OperationKind::Create, &key, &fingerprint),
        key,
        fingerprint,
        link: LinkId::of(&source, &external),
        kind: OperationKind::Create,
        priority: Priority::Interactive,
        source_system: source,
        external_id: external,
        payload: tollgate::domain::canonical::canonical_json(&event),
        state: JobState::Queued,
        issue_key: None,
        steps_done: 0,
        step_started: None,
        attempts: 0,
        throttles: 0,
        last_error: None,
        created_at: created,
        updated_at: created,
        enqueued: false,
        merged_into: None,
        batch: None,
        points_milli: 0,
        not_before: None,
    };
    aws.store.admit(&job, &[], None).await.unwrap();
    let executor = Instance::new(&aws, &site, "lambda-sweep", 1);
    assert_eq!(executor.poll_once(10).await.0, 0, "nothing on the queue");

    let keys = [Secret::new(LINK_KEY)];
    let policy = tollgate::domain::followup::FollowUpPolicy::default();
    let tick = serde_json::json!({"version": "0", "detail-type": "Scheduled Event", "source": "aws.events",
                                  "account": ACCOUNT, "time": "2026-11-24T10:00:00Z", "region": "us-east-1",
                                  "resources": [], "detail": {}});
    let Invocation::Sweep = Invocation::parse(tick).unwrap() else {
        panic!("a scheduled event is a sweep");
    };
    let summary = tollgate_executor::sweep(
        &sweeping(&aws, &Policy::default()),
        None,
        None,
        &approvals(&aws, &keys),
        &followups(&aws, &policy),
        &tollgate_e2e::Delivered,
        &site,
    )
    .await
    .unwrap();
    assert_eq!(summary["resent"], 1);
    let jobs: HashSet<String> = [job.id.to_string()].into();
    executor.drain(&jobs, Duration::from_secs(20)).await;
    assert!(all_terminal(&aws.store, &jobs).await);
    assert_eq!(sim.report()["totals"]["issues"], 1);
    let again = tollgate_executor::sweep(
        &sweeping(&aws, &Policy::default()),
        None,
        None,
        &approvals(&aws, &keys),
        &followups(&aws, &policy),
        &tollgate_e2e::Delivered,
        &site,
    )
    .await
    .unwrap();
    assert_eq!(again["resent"], 0, "sent once");
}

#[tokio::test]
async fn a_job_waiting_through_many_receives_continues_on_a_fresh_message_not_the_dead_letter_queue()
 {
    let aws = aws().await;
    // Every call is refused (a gateway 429 on each request), whatever the
    // time: the job is throttled or held.
    let (site, _sim) = sim(Limits {
        faults: Faults {
            gateway_429_every: 1,
            ..Faults::default()
        },
        ..Limits::default()
    })
    .await;
    let instance = Instance::new(&aws, &site, "lambda-recycle", 1);
    let mut jobs: HashSet<String> = HashSet::new();
    let a = call_ingest(&aws, signed_post(&alert(601), false)).await;
    let job_id = a.body["jobId"].as_str().unwrap().to_string();
    jobs.insert(job_id.clone());
    let out = aws
        .sqs
        .receive_message()
        .queue_url(&aws.queues[0].0)
        .send()
        .await
        .unwrap();
    let m = &out.messages.unwrap()[0];
    let event: SqsEvent = serde_json::from_value(json!({"Records": [{
        "messageId": m.message_id(), "receiptHandle": m.receipt_handle(), "body": m.body(),
        "attributes": {"ApproximateReceiveCount": "150"}, "messageAttributes": {},
        "eventSource": "aws:sqs", "eventSourceARN": aws.queues[0].1, "awsRegion": "us-east-1"}]}))
    .unwrap();
    let response = instance.invoke(&event).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "not handed back: it continues on a fresh message"
    );
    aws.sqs
        .delete_message()
        .queue_url(&aws.queues[0].0)
        .receipt_handle(m.receipt_handle().unwrap())
        .send()
        .await
        .unwrap();
    let attrs = aws
        .sqs
        .get_queue_attributes()
        .queue_url(&aws.queues[0].0)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .unwrap();
    let delayed = attrs
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessagesDelayed))
        .cloned()
        .unwrap_or_default();
    assert_eq!(delayed, "1", "the fresh message waits out the throttle");
    let job = aws
        .store
        .job(&JobId::parse(&job_id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.state.as_str(), "WAITING");
}
