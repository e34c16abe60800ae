//! The serverless form end to end, on a real local AWS emulator (moto):
//! API Gateway events into the ingest function's handler → DynamoDB + SQS →
//! the executor function's handler fed the way Lambda's SQS event source
//! mapping feeds it (receive, invoke with the SQS event JSON, delete what
//! the partial batch response does not name) → jira-sim.

#[path = "../shared/tests/support/moto.rs"]
mod moto;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use base64::Engine;
use jira_sim::limits::{Faults, Limits};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tollgate::adapters::dynamodb::DynamoStore;
use tollgate::adapters::jira::{JiraAuth, JiraClient};
use tollgate::adapters::sqs::SqsQueue;
use tollgate::app::approvals::{Approvals, Links};
use tollgate::app::execute::{Executor, ExecutorConfig};
use tollgate::app::governor::{Governor, GovernorConfig};
use tollgate::app::ingest::Ingest;
use tollgate::domain::approval::Decision;
use tollgate::domain::event::{OperationKind, Priority};
use tollgate::domain::idempotency::{DedupId, Fingerprint, IdempotencyKey, LinkId};
use tollgate::domain::ids::{BatchId, JobId};
use tollgate::domain::ids::{ExternalId, SourceSystem};
use tollgate::domain::job::JobState;
use tollgate::domain::policy::Policy;
use tollgate::domain::rejection::RejectionId;
use tollgate::domain::secret::Secret;
use tollgate::domain::signature;
use tollgate::domain::time::Timestamp;
use tollgate::ports::{ApprovalStore, JobStore, NoNotifier, SystemClock, WorkQueue};
use tollgate::ports::{Clock, JobRecord, RejectionStore};
use tollgate_executor::{Budget, Invocation};

const SECRET: &str = "whsec_lambda";
const ACCOUNT: &str = "123456789012";
const LINK_KEY: &str = "link-key";

fn followups<'a>(
    aws: &'a Aws,
    policy: &'a tollgate::domain::followup::FollowUpPolicy,
) -> tollgate::app::followup::FollowUps<'a, DynamoStore, SqsQueue, SystemClock> {
    tollgate::app::followup::FollowUps {
        store: &aws.store,
        queue: &aws.queue,
        clock: &SystemClock,
        policy,
    }
}

fn approvals<'a>(
    aws: &'a Aws,
    keys: &'a [Secret],
) -> Approvals<'a, DynamoStore, SqsQueue, SystemClock> {
    Approvals {
        store: &aws.store,
        queue: &aws.queue,
        clock: &SystemClock,
        links: Links {
            keys,
            base_url: "https://tollgateapi.execute-api.us-east-1.amazonaws.com",
        },
    }
}

struct Aws {
    store: DynamoStore,
    queue: SqsQueue,
    sqs: aws_sdk_sqs::Client,
    /// (url, ARN) of the interactive and bulk queues.
    queues: [(String, String); 2],
}

async fn aws() -> Aws {
    let config = moto::sdk_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&config);
    let table = moto::unique("tollgate");
    DynamoStore::create_table(&dynamo, &table).await.unwrap();
    let sqs = aws_sdk_sqs::Client::new(&config);
    let mut queues = Vec::new();
    for kind in ["interactive", "bulk"] {
        let name = moto::unique(kind);
        let url = SqsQueue::create_queue(&sqs, &name).await.unwrap();
        queues.push((url, format!("arn:aws:sqs:us-east-1:{ACCOUNT}:{name}")));
    }
    let queues: [(String, String); 2] = queues.try_into().unwrap();
    Aws {
        store: DynamoStore::new(dynamo, table),
        queue: SqsQueue::new(sqs.clone(), &queues[0].0, &queues[1].0),
        sqs,
        queues,
    }
}

/// An API Gateway HTTP API (payload v2.0) event, as Lambda delivers it.
fn apigw(
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    headers: Value,
    base64: bool,
) -> lambda_http::Request {
    let (body, encoded) = match body {
        None => (Value::Null, false),
        Some(b) if base64 => (
            json!(base64::engine::general_purpose::STANDARD.encode(b)),
            true,
        ),
        Some(b) => (json!(String::from_utf8(b.to_vec()).unwrap()), false),
    };
    let event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "tollgateapi",
            "domainName": "tollgateapi.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "tollgateapi",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.10", "userAgent": "alertmanager/0.27"},
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": "$default",
            "stage": "$default",
            "time": "24/Nov/2026:10:00:00 +0000",
            "timeEpoch": 1_795_000_000_000u64
        },
        "body": body,
        "isBase64Encoded": encoded
    });
    lambda_http::request::from_str(&event.to_string()).expect("a valid API Gateway event")
}

fn signed_post(body: &Value, base64: bool) -> lambda_http::Request {
    let raw = serde_json::to_vec(body).unwrap();
    let sig = signature::sign(&Secret::new(SECRET), tollgate_e2e::signing_time(&raw), &raw);
    apigw(
        "POST",
        "/v1/events",
        Some(&raw),
        json!({"content-type": "application/json", "tollgate-signature": sig}),
        base64,
    )
}

struct Answer {
    status: u16,
    body: Value,
}

async fn call_ingest(aws: &Aws, req: lambda_http::Request) -> Answer {
    call_ingest_with(aws, req, &Policy::default()).await
}

/// Ingest as the executor runs it: batch admissions continue there, and
/// the sweep resumes stalled ones.
fn sweeping<'a>(
    aws: &'a Aws,
    policy: &'a Policy,
) -> Ingest<'a, DynamoStore, SqsQueue, SystemClock> {
    Ingest {
        store: &aws.store,
        queue: &aws.queue,
        clock: &SystemClock,
        secrets: &[],
        policy,
    }
}

async fn call_ingest_with(aws: &Aws, req: lambda_http::Request, policy: &Policy) -> Answer {
    let secrets = [Secret::new(SECRET)];
    let keys = [Secret::new(LINK_KEY)];
    let no_sources = Default::default();
    let no_secrets = Default::default();
    let app = tollgate_ingest::App {
        sources: &no_sources,
        source_secrets: &no_secrets,
        ingest: Ingest {
            store: &aws.store,
            queue: &aws.queue,
            clock: &SystemClock,
            secrets: &secrets,
            policy,
        },
        approvals: approvals(aws, &keys),
        notifier: &NoNotifier,
    };
    let resp = tollgate_ingest::handle(&app, req, None).await;
    let status = resp.status().as_u16();
    let body = serde_json::from_slice(resp.body().as_ref()).unwrap_or(Value::Null);
    Answer { status, body }
}

/// One Lambda instance of the executor: its own Jira client and its own
/// view of the shared governor, as a separate instance would have.
struct Instance<'a> {
    aws: &'a Aws,
    tracker: JiraClient,
    governor: Governor<'a, DynamoStore, SystemClock>,
    config: ExecutorConfig,
    /// The deployment's policy (batch admissions continue here).
    policy: Policy,
}

impl<'a> Instance<'a> {
    fn new(aws: &'a Aws, site: &str, name: &str, instances: usize) -> Self {
        let tracker = JiraClient::new(
            site,
            JiraAuth::Basic {
                email: "sim@example.com".into(),
                api_token: Secret::new("sim-token"),
            },
            Duration::from_secs(5),
        )
        .unwrap();
        Instance {
            aws,
            tracker,
            governor: Governor::new(
                &aws.store,
                &SystemClock,
                GovernorConfig::new(site, instances),
            ),
            config: ExecutorConfig {
                worker: name.into(),
                lease_ttl: Duration::from_secs(30),
                call_timeout: Duration::from_secs(5),
                // A merged job's message looks at its carrier again soon.
                paused_poll: Duration::from_secs(1),
                ..ExecutorConfig::default()
            },
            policy: Policy::default(),
        }
    }

    async fn invoke(&self, event: &SqsEvent) -> SqsBatchResponse {
        let executor = Executor {
            store: &self.aws.store,
            tracker: &self.tracker,
            clock: &SystemClock,
            config: &self.config,
            governor: &self.governor,
            deadline: None,
        };
        let budget = Budget {
            deadline: None,
            per_record: Duration::from_secs(12),
        };
        tollgate_executor::handle(
            &executor,
            &sweeping(self.aws, &self.policy),
            &self.aws.queue,
            event,
            &budget,
            &Default::default(),
        )
        .await
    }

    /// What the SQS event source mapping does once: receive a batch,
    /// invoke, delete the records not reported as failures. Returns how
    /// many records the batch had and the failures.
    async fn poll_once(&self, batch_size: i32) -> (usize, Vec<String>) {
        let mut records = Vec::new();
        let mut receipts = Vec::new();
        // Like the event source mapping's batching window: a few receives
        // to fill the batch.
        for _ in 0..3 {
            for (url, arn) in &self.aws.queues {
                let room = batch_size - records.len() as i32;
                if room <= 0 {
                    continue;
                }
                let out = self
                    .aws
                    .sqs
                    .receive_message()
                    .queue_url(url)
                    .max_number_of_messages(room)
                    .message_system_attribute_names(MessageSystemAttributeName::All)
                    .send()
                    .await
                    .unwrap();
                for m in out.messages.unwrap_or_default() {
                    records.push(sqs_record(&m, arn));
                    receipts.push((
                        m.message_id().unwrap().to_string(),
                        url.clone(),
                        m.receipt_handle().unwrap().to_string(),
                    ));
                }
            }
        }
        if records.is_empty() {
            return (0, Vec::new());
        }
        let event: SqsEvent = serde_json::from_value(json!({ "Records": records })).unwrap();
        let response = self.invoke(&event).await;
        let failed: Vec<String> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        for (id, url, handle) in receipts {
            if !failed.contains(&id) {
                self.aws
                    .sqs
                    .delete_message()
                    .queue_url(url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .unwrap();
            }
        }
        (records.len(), failed)
    }

    /// Polls until every job is terminal or `limit` passes.
    async fn drain(&self, jobs: &HashSet<String>, limit: Duration) {
        let started = Instant::now();
        while started.elapsed() < limit {
            let (n, _) = self.poll_once(5).await;
            if n == 0 {
                // Done when every job ended and every message is gone (a
                // merged job's message is deleted once it finds its
                // carrier over).
                if all_terminal(&self.aws.store, jobs).await && queues_empty(self.aws).await {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// A record of the SQS event Lambda sends, from a received message.
fn sqs_record(m: &aws_sdk_sqs::types::Message, arn: &str) -> Value {
    let attributes: serde_json::Map<String, Value> = m
        .attributes()
        .map(|a| {
            a.iter()
                .map(|(k, v)| (k.as_str().to_string(), json!(v)))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "messageId": m.message_id(),
        "receiptHandle": m.receipt_handle(),
        "body": m.body(),
        "attributes": attributes,
        "messageAttributes": {},
        "md5OfBody": m.md5_of_body(),
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": "us-east-1"
    })
}

async fn queues_empty(aws: &Aws) -> bool {
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
        if count(QueueAttributeName::ApproximateNumberOfMessages) != "0"
            || count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible) != "0"
        {
            return false;
        }
    }
    true
}

async fn all_terminal(store: &DynamoStore, jobs: &HashSet<String>) -> bool {
    for id in jobs {
        let job = store
            .job(&JobId::parse(id).unwrap())
            .await
            .unwrap()
            .unwrap();
        if !job.state.is_terminal() {
            return false;
        }
    }
    true
}

async fn sim(limits: Limits) -> (String, std::sync::Arc<jira_sim::Sim>) {
    let (addr, sim, _) = jira_sim::spawn(
        jira_sim::SimConfig {
            limits,
            ..Default::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    (format!("http://{addr}"), sim)
}

fn alert(i: usize) -> Value {
    json!({
        "sourceSystem": "alertmanager",
        "externalId": format!("alert-{i}"),
        "desiredOperation": "create",
        "projectKey": "OPS",
        "issueType": "Incident",
        "summary": format!("Disk 95% full on db-{i}")
    })
}

fn comment(i: usize) -> Value {
    json!({
        "sourceSystem": "alertmanager",
        "externalId": format!("alert-{i}"),
        "desiredOperation": "comment",
        "comment": format!("still firing on db-{i}")
    })
}

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
    let token = links
        .links
        .token(&approval, "lead@example.com", Decision::Approve)
        .unwrap();
    // The approval function, as API Gateway invokes it under a named stage:
    // a GET decides nothing, and the page's buttons post next to it.
    let page_path = format!("/prod/v1/approvals/{token}");
    let page =
        tollgate_approval::handle(&links, apigw("GET", &page_path, None, json!({}), false)).await;
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
    let decided = tollgate_approval::handle(
        &links,
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
    let again =
        tollgate_approval::handle(&links, apigw("POST", &path, None, json!({}), false)).await;
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
        &NoNotifier,
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
        &NoNotifier,
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
        notifier: &NoNotifier,
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

/// The wall clock, `0` milliseconds ago: work admitted in the past.
struct Ago(i64);

impl Clock for Ago {
    fn now(&self) -> Timestamp {
        Timestamp(SystemClock.now().0 - self.0)
    }
}

/// The ingest function as API Gateway invokes it, with its clock and queue
/// given.
async fn ingest_at(
    aws: &Aws,
    req: lambda_http::Request,
    policy: &Policy,
    clock: &Ago,
    queue: &SqsQueue,
) -> Answer {
    ingest_notifying(aws, req, policy, clock, queue, &NoNotifier).await
}

async fn ingest_notifying<N: tollgate::ports::Notifier>(
    aws: &Aws,
    req: lambda_http::Request,
    policy: &Policy,
    clock: &Ago,
    queue: &SqsQueue,
    notifier: &N,
) -> Answer {
    let secrets = [Secret::new(SECRET)];
    let keys = [Secret::new(LINK_KEY)];
    let no_sources = Default::default();
    let no_secrets = Default::default();
    let app = tollgate_ingest::App {
        sources: &no_sources,
        source_secrets: &no_secrets,
        ingest: Ingest {
            store: &aws.store,
            queue,
            clock,
            secrets: &secrets,
            policy,
        },
        approvals: Approvals {
            store: &aws.store,
            queue,
            clock,
            links: Links {
                keys: &keys,
                base_url: "https://tollgateapi.execute-api.us-east-1.amazonaws.com",
            },
        },
        notifier,
    };
    let resp = tollgate_ingest::handle(&app, req, None).await;
    let status = resp.status().as_u16();
    let body = serde_json::from_slice(resp.body().as_ref()).unwrap_or(Value::Null);
    Answer { status, body }
}

/// A notification channel that is down.
struct Down;

impl tollgate::ports::Notifier for Down {
    async fn notify(
        &self,
        _: &tollgate::domain::notice::Notice,
    ) -> Result<(), tollgate::ports::NotifyError> {
        Err(tollgate::ports::NotifyError("the channel is down".into()))
    }
}

/// A notification channel that counts what it is sent.
#[derive(Default)]
struct Counted(std::sync::atomic::AtomicUsize);

impl tollgate::ports::Notifier for Counted {
    async fn notify(
        &self,
        _: &tollgate::domain::notice::Notice,
    ) -> Result<(), tollgate::ports::NotifyError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn the_sweep_notifies_every_open_request_not_only_the_oldest_hundred() {
    let aws = aws().await;
    let (site, _sim) = sim(Limits::default()).await;
    let policy = Policy::parse("approvers = [\"lead@example.com\"]").unwrap();
    let keys = [Secret::new(LINK_KEY)];
    // 130 requests made while the notification channel was down.
    for i in 0..130 {
        let t = json!({"sourceSystem": "ops", "externalId": format!("n-{i}"),
                       "desiredOperation": "transition", "issueKey": "OPS-1", "transition": "Done"});
        let a = ingest_notifying(
            &aws,
            signed_post(&t, false),
            &policy,
            &Ago(0),
            &aws.queue,
            &Down,
        )
        .await;
        assert_eq!(a.body["state"], "PENDING_APPROVAL", "{}", a.body);
    }
    let counted = Counted::default();
    let policy = tollgate::domain::followup::FollowUpPolicy::default();
    tollgate_executor::sweep(
        &sweeping(&aws, &Policy::default()),
        None,
        None,
        &approvals(&aws, &keys),
        &followups(&aws, &policy),
        &counted,
        &site,
    )
    .await
    .unwrap();
    assert_eq!(
        counted.0.load(std::sync::atomic::Ordering::SeqCst),
        130,
        "every waiting request reached its approvers"
    );
    let open = aws.store.open_approvals(1000).await.unwrap();
    assert_eq!(open.len(), 130);
    assert!(open.iter().all(|a| a.notified));
}

#[tokio::test]
async fn the_sweep_finds_a_lost_message_behind_a_hundred_denied_jobs() {
    let aws = aws().await;
    let (site, sim) = sim(Limits::default()).await;
    let policy = Policy::parse("approvers = [\"lead@example.com\"]").unwrap();
    let keys = [Secret::new(LINK_KEY)];
    let links = approvals(&aws, &keys);
    // A hundred transitions waiting for a person, admitted two and a half
    // minutes ago, then denied through the approval function.
    for i in 0..100 {
        let t = json!({"sourceSystem": "ops", "externalId": format!("t-{i}"),
                       "desiredOperation": "transition", "issueKey": "OPS-1", "transition": "Done"});
        let a = ingest_at(
            &aws,
            signed_post(&t, false),
            &policy,
            &Ago(150_000),
            &aws.queue,
        )
        .await;
        assert_eq!(a.body["state"], "PENDING_APPROVAL", "{}", a.body);
        let job = JobId::parse(a.body["jobId"].as_str().unwrap()).unwrap();
        let approval = aws.store.approval_for_job(&job).await.unwrap().unwrap();
        let token = links
            .links
            .token(&approval, "lead@example.com", Decision::Deny)
            .unwrap();
        let denied = tollgate_approval::handle(
            &links,
            apigw(
                "POST",
                &format!("/v1/approvals/{token}"),
                Some(b"decision=deny"),
                json!({"content-type": "application/x-www-form-urlencoded"}),
                true,
            ),
        )
        .await;
        assert_eq!(denied.status(), 200);
    }
    // Then an event whose SendMessage failed (the queue was unreachable for
    // a moment): admitted, answered 503, its message never sent.
    let endpoint = moto::endpoint();
    let unreachable = SqsQueue::new(
        aws.sqs.clone(),
        format!("{endpoint}/{ACCOUNT}/no-such-queue"),
        format!("{endpoint}/{ACCOUNT}/no-such-queue-either"),
    );
    let lost = ingest_at(
        &aws,
        signed_post(&alert(600), false),
        &Policy::default(),
        &Ago(90_000),
        &unreachable,
    )
    .await;
    assert_eq!(lost.status, 503, "{}", lost.body);
    let executor = Instance::new(&aws, &site, "lambda-outbox", 1);
    assert_eq!(executor.poll_once(10).await.0, 0, "nothing on the queue");

    let policy = tollgate::domain::followup::FollowUpPolicy::default();
    let summary = tollgate_executor::sweep(
        &sweeping(&aws, &Policy::default()),
        None,
        None,
        &links,
        &followups(&aws, &policy),
        &NoNotifier,
        &site,
    )
    .await
    .unwrap();
    assert_eq!(
        summary["resent"], 1,
        "denied work never hides a lost message: {summary}"
    );
    let mut done = false;
    for _ in 0..40 {
        executor.poll_once(10).await;
        if sim.report()["totals"]["issues"] == 1 {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(done, "the lost event became its issue");
}

#[tokio::test]
async fn a_re_posted_batch_opens_no_second_approval_and_each_chunk_is_approved_once() {
    let aws = aws().await;
    let policy = Policy::parse(
        "approvers = [\"lead@example.com\"]\nbatch_approval = { over = 4, chunk = 3 }",
    )
    .unwrap();
    let keys = [Secret::new(LINK_KEY)];
    let links = approvals(&aws, &keys);
    let events: Vec<Value> = (0..7)
        .map(|i| {
            json!({"externalId": format!("ci-{i}"), "desiredOperation": "create",
                   "projectKey": "ASSET", "issueType": "Task", "summary": format!("CI {i}")})
        })
        .collect();
    let batch = json!({"batchId": "night-chunks", "sourceSystem": "cmdb", "events": events});
    let raw = serde_json::to_vec(&batch).unwrap();
    for _ in 0..2 {
        let sig = signature::sign(&Secret::new(SECRET), tollgate_e2e::signing_time(&raw), &raw);
        let posted = call_ingest_with(
            &aws,
            apigw(
                "POST",
                "/v1/batches",
                Some(&raw),
                json!({"content-type": "application/json", "tollgate-signature": sig}),
                false,
            ),
            &policy,
        )
        .await;
        assert_eq!(posted.status, 202, "{}", posted.body);
        let open = aws.store.open_approvals(100).await.unwrap();
        assert_eq!(
            open.len(),
            3,
            "three chunks (3, 3, 1), however often the batch is posted: {open:?}"
        );
    }
    let jobs: HashSet<JobId> = aws
        .store
        .open_approvals(100)
        .await
        .unwrap()
        .iter()
        .flat_map(|a| a.jobs().cloned().collect::<Vec<_>>())
        .collect();
    assert_eq!(jobs.len(), 7, "each item waits on one chunk's request");
    // Every chunk approved through the approval function: each answers
    // 200, and names only jobs that exist.
    for approval in aws.store.open_approvals(100).await.unwrap() {
        for id in approval.jobs() {
            assert!(aws.store.job(id).await.unwrap().is_some(), "no phantom job");
        }
        let token = links
            .links
            .token(&approval, "lead@example.com", Decision::Approve)
            .unwrap();
        let decided = tollgate_approval::handle(
            &links,
            apigw(
                "POST",
                &format!("/v1/approvals/{token}"),
                Some(b"decision=approve"),
                json!({"content-type": "application/x-www-form-urlencoded"}),
                true,
            ),
        )
        .await;
        assert_eq!(decided.status(), 200);
    }
    for id in &jobs {
        let job = aws.store.job(id).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Queued, "{job:?}");
    }
}

#[tokio::test]
async fn a_batch_record_stays_small_however_many_items_are_rejected() {
    let aws = aws().await;
    // 150 items without a summary, posted twice.
    let events: Vec<Value> = (0..150)
        .map(|i| {
            json!({"externalId": format!("bad-{i}"), "desiredOperation": "create",
                   "projectKey": "ASSET", "issueType": "Task"})
        })
        .collect();
    let batch = json!({"batchId": "many-rejected", "sourceSystem": "cmdb", "events": events});
    let raw = serde_json::to_vec(&batch).unwrap();
    for _ in 0..2 {
        let sig = signature::sign(&Secret::new(SECRET), tollgate_e2e::signing_time(&raw), &raw);
        let posted = call_ingest(
            &aws,
            apigw(
                "POST",
                "/v1/batches",
                Some(&raw),
                json!({"content-type": "application/json", "tollgate-signature": sig}),
                false,
            ),
        )
        .await;
        assert_eq!(posted.status, 202, "{}", posted.body);
    }
    let sig = signature::sign(&Secret::new(SECRET), tollgate_e2e::signing_time(b""), b"");
    let progress = call_ingest(
        &aws,
        apigw(
            "GET",
            "/v1/batches/many-rejected",
            None,
            json!({"tollgate-signature": sig}),
            false,
        ),
    )
    .await;
    assert_eq!(progress.status, 200, "{}", progress.body);
    assert_eq!(progress.body["rejected"].as_array().unwrap().len(), 100);
    assert_eq!(
        progress.body["rejectedTotal"], 150,
        "each item once, however often posted"
    );
}

#[tokio::test]
async fn a_large_batch_is_admitted_in_pages_with_one_request_per_chunk() {
    // 1,000 items in chunks of 25: the forty requests of a 10,000-item batch
    // in chunks of 250, at a tenth of the emulator's time.
    forty_chunks(1_000).await;
}

/// The issue's full size: `cargo test -p tollgate-e2e --test
/// lambda_end_to_end -- --ignored ten_thousand` (about forty minutes on
/// the emulator, which serialises every request; not part of CI).
#[tokio::test]
#[ignore]
async fn a_ten_thousand_item_batch_is_admitted_in_pages_with_one_request_per_chunk() {
    forty_chunks(10_000).await;
}

/// A batch of `items` valid creates, in forty chunks that need approval,
/// through the ingest function (under the template's 10 s), the
/// executor's continuations, the sweep and the approval function.
async fn forty_chunks(items: usize) {
    let chunk = items / 40;
    let aws = aws().await;
    let (site, _sim) = sim(Limits::default()).await;
    let policy = Policy::parse(&format!(
        "approvers = [\"lead@example.com\"]\n[batch_approval]\nover = {chunk}\nchunk = {chunk}"
    ))
    .unwrap();
    let keys = [Secret::new(LINK_KEY)];
    let links = approvals(&aws, &keys);
    let events: Vec<Value> = (0..items)
        .map(|i| {
            json!({"externalId": format!("ci-{i}"), "desiredOperation": "create",
                   "projectKey": "ASSET", "issueType": "Task", "summary": format!("CI {i}")})
        })
        .collect();
    let batch = json!({"batchId": "night-10k", "sourceSystem": "cmdb", "events": events});
    let raw = serde_json::to_vec(&batch).unwrap();
    let sig = signature::sign(&Secret::new(SECRET), tollgate_e2e::signing_time(&raw), &raw);
    let request = || {
        apigw(
            "POST",
            "/v1/batches",
            Some(&raw),
            json!({"content-type": "application/json", "tollgate-signature": sig.clone()}),
            false,
        )
    };
    // The template gives ingest 10 s: the request stores the pages, admits
    // what fits, and answers; the rest continues on the bulk queue.
    let app_answer = |resp: lambda_http::Response<lambda_http::Body>| {
        (
            resp.status().as_u16(),
            serde_json::from_slice::<Value>(resp.body().as_ref()).unwrap_or(Value::Null),
        )
    };
    let secrets = [Secret::new(SECRET)];
    let (no_sources, no_secrets) = (Default::default(), Default::default());
    let app = tollgate_ingest::App {
        sources: &no_sources,
        source_secrets: &no_secrets,
        ingest: Ingest {
            store: &aws.store,
            queue: &aws.queue,
            clock: &SystemClock,
            secrets: &secrets,
            policy: &policy,
        },
        approvals: approvals(&aws, &keys),
        notifier: &NoNotifier,
    };
    let started = Instant::now();
    let deadline = Some(SystemClock.now().plus(Duration::from_secs(10)));
    let (status, body) = app_answer(tollgate_ingest::handle(&app, request(), deadline).await);
    assert_eq!(status, 202, "{body}");
    eprintln!("answered after {:?}: {body}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered in time"
    );
    assert_eq!(body["received"], items);
    assert_eq!(body["admission"]["pages"], 40, "{body}");
    let pending = body["pending"].as_u64().unwrap();
    assert_eq!(
        body["accepted"].as_u64().unwrap() + pending,
        items as u64,
        "{body}"
    );
    // The executor takes the continuations; posting the same batch again
    // meanwhile adds nothing.
    let mut executor = Instance::new(&aws, &site, "exec-1", 1);
    executor.policy = policy.clone();
    let (again, body) = app_answer(tollgate_ingest::handle(&app, request(), None).await);
    assert_eq!(again, 202, "{body}");
    assert_eq!(body["accepted"], 0, "{body}");
    let poll_until = Instant::now() + Duration::from_secs(3600);
    loop {
        let view = tollgate::app::batches::view_batch(
            &aws.store,
            &SystemClock,
            &BatchId::parse("night-10k").unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
        if view.batch.received as usize == items {
            assert_eq!(view.batch.accepted as usize, items);
            assert_eq!(
                view.progress.counts[&JobState::PendingApproval] as usize,
                items
            );
            break;
        }
        assert!(Instant::now() < poll_until, "admission finished: {view:?}");
        executor.poll_once(10).await;
    }
    eprintln!("admitted after {:?}", started.elapsed());
    // Every chunk has its one request, and the sweep notifies all forty.
    let counted = Counted::default();
    let followup_policy = tollgate::domain::followup::FollowUpPolicy::default();
    let summary = tollgate_executor::sweep(
        &sweeping(&aws, &policy),
        None,
        None,
        &links,
        &followups(&aws, &followup_policy),
        &counted,
        &site,
    )
    .await
    .unwrap();
    assert_eq!(summary["failed"], json!([]), "{summary}");
    assert_eq!(counted.0.load(std::sync::atomic::Ordering::SeqCst), 40);
    let open = aws.store.open_approvals(1000).await.unwrap();
    assert_eq!(open.len(), 40);
    assert!(open.iter().all(|a| a.notified && a.jobs().count() == chunk));
    eprintln!("notified after {:?}", started.elapsed());
    // All approved but one, which is denied, through the approval function.
    let denied = open[17].id.clone();
    for approval in &open {
        let decision = if approval.id == denied {
            Decision::Deny
        } else {
            Decision::Approve
        };
        let token = links
            .links
            .token(approval, "lead@example.com", decision)
            .unwrap();
        let decided = tollgate_approval::handle(
            &links,
            apigw(
                "POST",
                &format!("/v1/approvals/{token}"),
                Some(format!("decision={}", decision.as_str()).as_bytes()),
                json!({"content-type": "application/x-www-form-urlencoded"}),
                true,
            ),
        )
        .await;
        assert_eq!(decided.status(), 200);
    }
    let view = tollgate::app::batches::view_batch(
        &aws.store,
        &SystemClock,
        &BatchId::parse("night-10k").unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        view.progress.counts.get(&JobState::Queued),
        Some(&((items - chunk) as u32)),
        "{view:?}"
    );
    assert_eq!(
        view.progress.counts.get(&JobState::Denied),
        Some(&(chunk as u32)),
        "{view:?}"
    );
    for id in open[17].jobs() {
        assert_eq!(
            aws.store.job(id).await.unwrap().unwrap().state,
            JobState::Denied
        );
    }
    eprintln!(
        "{items} items admitted and decided in {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn work_whose_message_reached_the_dead_letter_queue_is_sent_again_then_given_up_with_a_reason()
 {
    let aws = aws().await;
    let (site, _sim) = sim(Limits::default()).await;
    let dlq_url = SqsQueue::create_queue(&aws.sqs, &moto::unique("dlq"))
        .await
        .unwrap();
    let dead_letters = aws.queue.dead_letters(dlq_url.clone());
    let created = call_ingest(&aws, signed_post(&alert(900), false)).await;
    assert_eq!(created.status, 202, "{}", created.body);
    let job_id = JobId::parse(created.body["jobId"].as_str().unwrap()).unwrap();
    // What SQS's redrive policy does after maxReceiveCount failed receives:
    // the message leaves the work queue for the dead-letter queue.
    let set_aside = || async {
        let url = &aws.queues[0].0;
        let out = aws
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        let messages = out.messages.unwrap_or_default();
        assert_eq!(messages.len(), 1, "the job's one message");
        let m = &messages[0];
        aws.sqs
            .send_message()
            .queue_url(&dlq_url)
            .message_body(m.body().unwrap())
            .send()
            .await
            .unwrap();
        aws.sqs
            .delete_message()
            .queue_url(url)
            .receipt_handle(m.receipt_handle().unwrap())
            .send()
            .await
            .unwrap();
    };
    let keys = [Secret::new(LINK_KEY)];
    let followup_policy = tollgate::domain::followup::FollowUpPolicy::default();
    let policy = Policy::default();
    let sweep = || async {
        tollgate_executor::sweep(
            &sweeping(&aws, &policy),
            None,
            Some(&dead_letters),
            &approvals(&aws, &keys),
            &followups(&aws, &followup_policy),
            &NoNotifier,
            &site,
        )
        .await
        .unwrap()
    };
    for n in 1..=3 {
        set_aside().await;
        let summary = sweep().await;
        assert_eq!(summary["deadLetters"], 1, "{summary}");
        let job = aws.store.job(&job_id).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Queued);
        let trail = aws.store.audit_trail(&job_id).await.unwrap();
        assert!(
            trail
                .iter()
                .any(|e| e.outcome.contains(&format!("({n} of 3)"))),
            "{trail:?}"
        );
    }
    set_aside().await;
    let summary = sweep().await;
    assert_eq!(summary["deadLetters"], 1, "{summary}");
    let job = aws.store.job(&job_id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Exhausted, "given up, with the reason");
    assert!(
        job.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("dead-letter"),
        "{job:?}"
    );
    // Nothing is left in either queue: the next sweep finds nothing.
    assert_eq!(sweep().await["deadLetters"], 0);
    assert!(queues_empty(&aws).await);
}
