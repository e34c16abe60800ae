//! The serverless form end to end, on a real local AWS emulator (moto):
//! API Gateway events into the ingest function's handler → DynamoDB + SQS →
//! the executor function's handler fed the way Lambda's SQS event source
//! mapping feeds it (receive, invoke with the SQS event JSON, delete what
//! the partial batch response does not name) → jira-sim.

#[path = "../shared/tests/support/moto.rs"]
mod moto;
#[path = "lambda/support.rs"]
mod support;

use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_sqs::types::QueueAttributeName;
use jira_sim::limits::{Faults, Limits};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;
use support::*;
use tollgate::app::ingest::Ingest;
use tollgate::domain::approval::Decision;
use tollgate::domain::event::{OperationKind, Priority};
use tollgate::domain::idempotency::{DedupId, Fingerprint, IdempotencyKey, LinkId};
use tollgate::domain::ids::JobId;
use tollgate::domain::ids::{ExternalId, SourceSystem};
use tollgate::domain::job::JobState;
use tollgate::domain::policy::Policy;
use tollgate::domain::rejection::RejectionId;
use tollgate::domain::secret::Secret;
use tollgate::domain::signature;
use tollgate::domain::time::Timestamp;
use tollgate::ports::{ApprovalStore, JobStore, SystemClock, WorkQueue};
use tollgate::ports::{Clock, JobRecord, RejectionStore};
use tollgate_executor::Invocation;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_through_ingest_sqs_and_the_executor_become_issues_exactly_once() {
    let aws = aws().await;
    let limits = Limits {
        // A small points quota (quota 429s with Retry-After when the run
        // outpaces it), a gateway 429 on every 7th request, random 503s and
        // connections dropped after Jira acted.
        quota_points: 4,
        window_seconds: 3.0,
        faults: Faults {
            gateway_429_every: 7,
            error_503: 0.05,
            drop: 0.05,
            ..Faults::default()
        },
        ..Limits::default()
    };
    let (site, sim) = sim(limits).await;

    // Every alert delivered one to three times, some bodies base64-encoded
    // as API Gateway does for binary media types; comments for half of them
    // may arrive before their alert.
    let mut jobs = HashSet::new();
    let mut duplicates = 0;
    for i in 0..12 {
        if i % 2 == 0 {
            let a = call_ingest(&aws, signed_post(&comment(i), false)).await;
            assert_eq!(a.status, 202, "{}", a.body);
            jobs.insert(a.body["jobId"].as_str().unwrap().to_string());
        }
        let mut first = None;
        for delivery in 0..(1 + i % 3) {
            let a = call_ingest(&aws, signed_post(&alert(i), delivery % 2 == 1)).await;
            assert_eq!(a.status, 202, "{}", a.body);
            let id = a.body["jobId"].as_str().unwrap().to_string();
            assert_eq!(a.body["duplicate"], delivery > 0);
            duplicates += usize::from(delivery > 0);
            assert_eq!(
                first.get_or_insert(id.clone()),
                &id,
                "a redelivery answers with the first job"
            );
            jobs.insert(id);
        }
    }
    assert_eq!(jobs.len(), 18);
    assert!(duplicates > 0);

    // Three executor instances, each with its own governor view.
    let a = Instance::new(&aws, &site, "lambda-a", 3);
    let b = Instance::new(&aws, &site, "lambda-b", 3);
    let c = Instance::new(&aws, &site, "lambda-c", 3);
    let limit = Duration::from_secs(120);
    tokio::join!(
        a.drain(&jobs, limit),
        b.drain(&jobs, limit),
        c.drain(&jobs, limit)
    );

    let report = sim.report();
    let totals = &report["totals"];
    assert_eq!(totals["duplicateIssues"], 0, "{report}");
    assert_eq!(totals["duplicateComments"], 0, "{report}");
    assert_eq!(totals["issues"], 12, "{report}");
    assert_eq!(totals["comments"], 6, "{report}");
    assert!(
        totals["throttled"].as_u64().unwrap() > 0,
        "the run met Jira's limits: {report}"
    );
    for id in &jobs {
        let got = call_ingest(
            &aws,
            apigw("GET", &format!("/v1/jobs/{id}"), None, json!({}), false),
        )
        .await;
        assert_eq!(got.status, 200);
        let trail = got.body["audit"].as_array().unwrap();
        assert!(trail.iter().any(|e| e["stage"] == "validation"));
        // A comment merged into its entity's create ends with the job that
        // carried it.
        let outcome = match got.body["mergedInto"].as_str() {
            Some(carrier) => {
                assert_eq!(got.body["state"], "SUPERSEDED", "{}", got.body);
                call_ingest(
                    &aws,
                    apigw(
                        "GET",
                        &format!("/v1/jobs/{carrier}"),
                        None,
                        json!({}),
                        false,
                    ),
                )
                .await
                .body
            }
            None => got.body.clone(),
        };
        assert_eq!(outcome["state"], "SUCCEEDED", "{outcome}");
        assert!(
            outcome["audit"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["state"] == "SUCCEEDED")
        );
    }
    // Nothing is left on the queues.
    for (url, _) in &aws.queues {
        let attrs = aws
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .unwrap();
        let count = |name: QueueAttributeName| {
            attrs
                .attributes()
                .and_then(|a| a.get(&name))
                .cloned()
                .unwrap_or_default()
        };
        assert_eq!(count(QueueAttributeName::ApproximateNumberOfMessages), "0");
        assert_eq!(
            count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            "0"
        );
    }
}

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
async fn ingest_answers_bad_requests_as_serve_does_and_stores_nothing() {
    let aws = aws().await;
    let body = serde_json::to_vec(&alert(300)).unwrap();
    let unsigned = apigw(
        "POST",
        "/v1/events",
        Some(&body),
        json!({"content-type": "application/json"}),
        false,
    );
    assert_eq!(call_ingest(&aws, unsigned).await.status, 401);
    let invalid = call_ingest(
        &aws,
        signed_post(
            &json!({"sourceSystem": "x", "desiredOperation": "create"}),
            false,
        ),
    )
    .await;
    assert_eq!(invalid.status, 400);
    let fields: Vec<&str> = invalid.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"externalId") && fields.contains(&"projectKey"),
        "{fields:?}"
    );
    let wrong_type = apigw(
        "POST",
        "/v1/events",
        Some(b"x=1"),
        json!({"content-type": "application/x-www-form-urlencoded"}),
        false,
    );
    assert_eq!(call_ingest(&aws, wrong_type).await.status, 415);
    let missing = call_ingest(
        &aws,
        apigw(
            "GET",
            &format!("/v1/jobs/{}", JobId::generate()),
            None,
            json!({}),
            false,
        ),
    )
    .await;
    assert_eq!(missing.status, 404);
    assert!(
        aws.store.list(None, 10).await.unwrap().is_empty(),
        "nothing was stored"
    );
}

#[tokio::test]
async fn a_gated_event_waits_for_the_approval_function_then_the_executor_runs_it() {
    let aws = aws().await;
    let (site, sim) = sim(Limits::default()).await;
    let policy = Policy::parse("approvers = [\"lead@example.com\"]").unwrap();
    let keys = [Secret::new(LINK_KEY)];
    let executor = Instance::new(&aws, &site, "lambda-approved", 1);

    let created = call_ingest_with(&aws, signed_post(&alert(400), false), &policy).await;
    let mut jobs: HashSet<String> = [created.body["jobId"].as_str().unwrap().to_string()].into();
    executor.drain(&jobs, Duration::from_secs(20)).await;

    let transition = json!({"sourceSystem": "alertmanager", "externalId": "alert-400",
                            "desiredOperation": "transition", "transition": "Done"});
    let gated = call_ingest_with(&aws, signed_post(&transition, false), &policy).await;
    assert_eq!(gated.status, 202);
    assert_eq!(gated.body["state"], "PENDING_APPROVAL");
    let job_id = gated.body["jobId"].as_str().unwrap().to_string();
    jobs.insert(job_id.clone());
    // Nothing was queued for it.
    assert_eq!(executor.poll_once(10).await.0, 0);

    let approval = aws
        .store
        .approval_for_job(&JobId::parse(&job_id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        approval.notified,
        "the ingest function notified the approvers"
    );
    let links = approvals(&aws, &keys);
    let function = ApprovalFunction::new(policy.clone(), None, &site);
    let token = links
        .links
        .token(&approval, "lead@example.com", Decision::Approve)
        .unwrap();
    // The approval function, as API Gateway invokes it under a named stage:
    // a GET decides nothing, and the page's buttons post next to it.
    let page_path = format!("/prod/v1/approvals/{token}");
    let page = function
        .call(&aws, apigw("GET", &page_path, None, json!({}), false))
        .await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = String::from_utf8_lossy(page.body().as_ref()).into_owned();
    let action = html
        .split("action=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the approve form's action");
    let relative = action.strip_prefix("./").expect("a relative action");
    let path = format!("/prod/v1/approvals/{relative}");
    let job = aws
        .store
        .job(&JobId::parse(&job_id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.state.as_str(), "PENDING_APPROVAL");
    let decided = function
        .call(
            &aws,
            apigw(
                "POST",
                &path,
                Some(b"decision=approve"),
                json!({"content-type": "application/x-www-form-urlencoded"}),
                true,
            ),
        )
        .await;
    assert_eq!(decided.status(), 200);
    let again = function
        .call(&aws, apigw("POST", &path, None, json!({}), false))
        .await;
    assert_eq!(again.status(), 409);

    executor.drain(&jobs, Duration::from_secs(20)).await;
    let job = aws
        .store
        .job(&JobId::parse(&job_id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.state.as_str(), "SUCCEEDED");
    assert_eq!(sim.report()["issues"][0]["status"], "Done");
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

#[tokio::test]
async fn the_ingest_function_takes_a_senders_payload_and_a_batch_as_serve_does() {
    let aws = aws().await;
    let sources = tollgate::domain::source::Sources::parse(
        "[[sources]]\nname = \"alertmanager\"\nauth = \"bearer\"\npreset = \"alertmanager\"\nparams = { project = \"OPS\" }\n",
    )
    .unwrap();
    let source_secrets = std::collections::HashMap::from([(
        "alertmanager".to_string(),
        vec![Secret::new("am-token")],
    )]);
    let secrets = [Secret::new(SECRET)];
    let keys = [Secret::new(LINK_KEY)];
    let policy = Policy::default();
    let app = tollgate_ingest::App {
        sources: &sources,
        source_secrets: &source_secrets,
        ingest: Ingest {
            store: &aws.store,
            queue: &aws.queue,
            clock: &SystemClock,
            secrets: &secrets,
            policy: &policy,
        },
        approvals: approvals(&aws, &keys),
        notifier: &tollgate_e2e::Delivered,
    };
    let payload = serde_json::to_vec(&json!({"version": "4", "status": "firing", "alerts": [
        {"status": "firing", "labels": {"alertname": "Disk", "instance": "db-1"}, "annotations": {},
         "startsAt": "2026-11-24T03:00:00Z", "fingerprint": "aa11"},
        {"status": "firing", "labels": {"alertname": "Disk"}, "annotations": {}, "startsAt": "2026-11-24T03:00:00Z"}
    ]}))
    .unwrap();
    let answer = |resp: lambda_http::Response<lambda_http::Body>| {
        (
            resp.status().as_u16(),
            serde_json::from_slice::<Value>(resp.body().as_ref()).unwrap_or(Value::Null),
        )
    };
    let (status, body) = answer(
        tollgate_ingest::handle(
            &app,
            apigw(
                "POST",
                "/v1/sources/alertmanager",
                Some(&payload),
                json!({"content-type": "application/json", "authorization": "Bearer am-token"}),
                true,
            ),
            None,
        )
        .await,
    );
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"].as_array().unwrap().len(), 1);
    assert_eq!(
        body["rejected"][0]["errors"][0]["field"],
        "alerts[1].externalId"
    );
    // A payload far over DynamoDB's 400 KB item limit, rejected: kept in
    // part (with its size and digest), not refused with a 503 on every
    // retry.
    let huge = serde_json::to_vec(&json!({"version": "4", "status": "firing", "alerts": [
        {"status": "firing", "labels": {"alertname": "Disk"}, "startsAt": "2026-11-24T03:00:00Z",
         "annotations": {"runbook": "x".repeat(700_000)}}
    ]}))
    .unwrap();
    let (status, kept) = answer(
        tollgate_ingest::handle(
            &app,
            apigw(
                "POST",
                "/v1/sources/alertmanager",
                Some(&huge),
                json!({"content-type": "application/json", "authorization": "Bearer am-token"}),
                true,
            ),
            None,
        )
        .await,
    );
    assert_eq!(status, 202, "{kept}");
    let rejection =
        RejectionId::parse(kept["rejected"][0]["rejectionId"].as_str().unwrap()).unwrap();
    let stored = aws.store.rejection(&rejection).await.unwrap().unwrap();
    let whole = stored.truncated.map(|t| t.bytes).unwrap_or(0);
    assert!(whole > 400_000, "kept in part: {whole}");
    assert!(stored.body.len() < 300_000);
    let job = body["accepted"][0]["jobId"].as_str().unwrap();
    let stored = aws
        .store
        .job(&JobId::parse(job).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.source_system.as_str(), "alertmanager");
    let (status, _) = answer(
        tollgate_ingest::handle(
            &app,
            apigw(
                "POST",
                "/v1/sources/alertmanager",
                Some(&payload),
                json!({"content-type": "application/json", "authorization": "Bearer wrong"}),
                false,
            ),
            None,
        )
        .await,
    );
    assert_eq!(status, 401);

    // A batch, its progress and a pause, signed as events are.
    let batch = serde_json::to_vec(&json!({"batchId": "lambda-night", "sourceSystem": "cmdb", "events": [
        {"externalId": "ci-1", "desiredOperation": "upsert", "projectKey": "ASSET", "issueType": "Task", "summary": "web-1"},
        {"externalId": "ci-2", "desiredOperation": "upsert", "projectKey": "ASSET", "issueType": "Task"}
    ]}))
    .unwrap();
    let sig =
        |body: &[u8]| signature::sign(&Secret::new(SECRET), tollgate_e2e::signing_time(body), body);
    let (status, body) = answer(
        tollgate_ingest::handle(
            &app,
            apigw(
                "POST",
                "/v1/batches",
                Some(&batch),
                json!({"content-type": "application/json", "tollgate-signature": sig(&batch)}),
                false,
            ),
            None,
        )
        .await,
    );
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], 1);
    assert_eq!(body["rejected"][0]["index"], 1);
    let (status, paused) = answer(
        tollgate_ingest::handle(
            &app,
            apigw(
                "POST",
                "/v1/batches/lambda-night/pause",
                None,
                json!({"tollgate-signature": sig(b"")}),
                false,
            ),
            None,
        )
        .await,
    );
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["counts"]["QUEUED"], 1, "{paused}");
}

/// The text between `attr="` and the next quote after `marker`.
fn attribute_after<'h>(html: &'h str, marker: &str, attr: &str) -> &'h str {
    let from = html
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in {html}"));
    let rest = &html[from..];
    let at = rest.find(&format!("{attr}=\"")).unwrap() + attr.len() + 2;
    rest[at..].split('"').next().unwrap()
}

/// The number a census card or cell shows, after `marker`.
fn figure_after(html: &str, marker: &str) -> String {
    let from = html
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in {html}"));
    let rest = &html[from + marker.len()..];
    let rest = rest.split_once('>').unwrap().1;
    let rest = rest.strip_prefix("<b>").unwrap_or(rest);
    rest.split('<').next().unwrap().to_string()
}

fn text(resp: &lambda_http::Response<lambda_http::Body>) -> String {
    String::from_utf8_lossy(resp.body().as_ref()).into_owned()
}

#[tokio::test]
async fn the_approval_function_serves_the_console_over_dynamodb_and_sqs() {
    let aws = aws().await;
    let (site, sim) = sim(Limits::default()).await;
    let policy = Policy::parse("approvers = [\"lead@example.com\"]").unwrap();
    let executor = Instance::new(&aws, &site, "lambda-console", 1);
    let function = ApprovalFunction::new(policy.clone(), Some("op-token"), &site);
    let https = json!({"x-forwarded-proto": "https"});

    let created = call_ingest_with(&aws, signed_post(&alert(700), false), &policy).await;
    let mut jobs: HashSet<String> = [created.body["jobId"].as_str().unwrap().to_string()].into();
    executor.drain(&jobs, Duration::from_secs(20)).await;
    let transition = json!({"sourceSystem": "alertmanager", "externalId": "alert-700",
                            "desiredOperation": "transition", "transition": "Done"});
    let gated = call_ingest_with(&aws, signed_post(&transition, false), &policy).await;
    assert_eq!(gated.body["state"], "PENDING_APPROVAL");
    let gated_id = gated.body["jobId"].as_str().unwrap().to_string();
    jobs.insert(gated_id.clone());

    // No session: to sign-in; a wrong token is refused.
    let anonymous = function
        .call(&aws, apigw("GET", "/ui", None, https.clone(), false))
        .await;
    assert_eq!(anonymous.status(), 303);
    assert_eq!(anonymous.headers()["location"], "/ui/sign-in");
    let form =
        json!({"content-type": "application/x-www-form-urlencoded", "x-forwarded-proto": "https"});
    let wrong = function
        .call(
            &aws,
            apigw(
                "POST",
                "/ui/sign-in",
                Some(b"operator=Dana&token=nope"),
                form.clone(),
                false,
            ),
        )
        .await;
    assert_eq!(wrong.status(), 401);
    let signed = function
        .call(
            &aws,
            apigw(
                "POST",
                "/ui/sign-in",
                Some(b"operator=Dana&token=op-token"),
                form.clone(),
                true,
            ),
        )
        .await;
    assert_eq!(signed.status(), 303);
    let set_cookie = signed.headers()["set-cookie"].to_str().unwrap().to_string();
    for part in ["Path=/ui", "HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(set_cookie.contains(part), "{part} in {set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let with_cookie = |extra: &Value| {
        let mut h = extra.clone();
        h["cookie"] = json!(cookie);
        h
    };

    // The overview counts what DynamoDB and SQS hold.
    let overview = function
        .call(&aws, apigw("GET", "/ui", None, with_cookie(&https), false))
        .await;
    assert_eq!(overview.status(), 200);
    let html = text(&overview);
    assert_eq!(figure_after(&html, "data-state=\"SUCCEEDED\""), "1");
    assert_eq!(figure_after(&html, "data-state=\"PENDING_APPROVAL\""), "1");
    assert_eq!(figure_after(&html, "id=\"approvals-waiting\""), "1");
    assert_eq!(figure_after(&html, "id=\"queue-depth\""), "0");
    assert!(html.contains("see CloudWatch"), "SQS keeps no oldest age");

    // Approve from the approvals page, with its CSRF token.
    let page = function
        .call(
            &aws,
            apigw("GET", "/ui/approvals", None, with_cookie(&https), false),
        )
        .await;
    let html = text(&page);
    let csrf = attribute_after(&html, "name=\"csrf\"", "value").to_string();
    let approval = attribute_after(&html, "data-approval=", "data-approval").to_string();
    let without_csrf = format!("action=approve&approval={approval}&back=%2Fui%2Fapprovals");
    let refused = function
        .call(
            &aws,
            apigw(
                "POST",
                "/ui/act",
                Some(without_csrf.as_bytes()),
                with_cookie(&form),
                false,
            ),
        )
        .await;
    assert_eq!(refused.status(), 403);
    let job = |id: &str| {
        let store = &aws.store;
        let id = JobId::parse(id).unwrap();
        async move { store.job(&id).await.unwrap().unwrap() }
    };
    assert_eq!(job(&gated_id).await.state, JobState::PendingApproval);
    let approve = format!("{without_csrf}&csrf={csrf}");
    let done = function
        .call(
            &aws,
            apigw(
                "POST",
                "/ui/act",
                Some(approve.as_bytes()),
                with_cookie(&form),
                false,
            ),
        )
        .await;
    assert_eq!(done.status(), 303);
    let back = done.headers()["location"].to_str().unwrap();
    assert!(back.starts_with("/ui/approvals?done="), "{back}");

    executor.drain(&jobs, Duration::from_secs(20)).await;
    assert_eq!(job(&gated_id).await.state, JobState::Succeeded);
    assert_eq!(sim.report()["issues"][0]["status"], "Done");
    let trail = aws
        .store
        .audit_trail(&JobId::parse(&gated_id).unwrap())
        .await
        .unwrap();
    assert!(
        trail.iter().any(|e| e.actor.contains("Dana")),
        "the operator's name is in the trail: {trail:?}"
    );

    // The job page, through a prefix (cargo lambda serves functions under
    // /lambda-url/<name>/): links and forms carry it.
    let prefixed = function
        .call(
            &aws,
            apigw(
                "GET",
                &format!("/lambda-url/tollgate-approval/ui/jobs?id={gated_id}"),
                None,
                with_cookie(&https),
                false,
            ),
        )
        .await;
    assert_eq!(prefixed.status(), 200);
    let html = text(&prefixed);
    assert!(html.contains("SUCCEEDED"), "{html}");
    assert!(
        html.contains("action=\"/lambda-url/tollgate-approval/ui/sign-out\""),
        "{html}"
    );

    // The jobs list filters by time and source, and its form keeps the
    // prefix too.
    let list = |query: &str| {
        let path = format!("/lambda-url/tollgate-approval/ui/jobs?{query}");
        let req = apigw("GET", &path, None, with_cookie(&https), false);
        let function = &function;
        let aws = &aws;
        async move { text(&function.call(aws, req).await) }
    };
    let recent = list("since=15m&source=alertmanager").await;
    assert!(
        recent.contains("action=\"/lambda-url/tollgate-approval/ui/jobs\""),
        "{recent}"
    );
    assert!(recent.contains("<option value=\"15m\" selected>"));
    assert_eq!(recent.matches("ui/jobs?id=").count(), 2, "{recent}");
    let elsewhere = list("since=15m&source=cmdb").await;
    assert!(elsewhere.contains("no jobs found"), "{elsewhere}");
}
