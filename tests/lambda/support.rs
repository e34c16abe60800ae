//! What the Lambda tests share: the emulated AWS account, API Gateway and
//! SQS events, an executor instance fed as the event source mapping feeds
//! it, and small notifiers and clocks.

#![allow(dead_code)]

use crate::moto;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use base64::Engine;
use jira_sim::limits::Limits;
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
use tollgate::domain::ids::JobId;
use tollgate::domain::policy::Policy;
use tollgate::domain::secret::Secret;
use tollgate::domain::signature;
use tollgate::domain::time::Timestamp;
use tollgate::ports::Clock;
use tollgate::ports::{JobStore, SystemClock};
use tollgate_executor::Budget;

pub const SECRET: &str = "whsec_lambda";
pub const ACCOUNT: &str = "123456789012";
pub const LINK_KEY: &str = "link-key";

pub fn followups<'a>(
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

pub fn approvals<'a>(
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

pub struct Aws {
    pub store: DynamoStore,
    pub queue: SqsQueue,
    pub sqs: aws_sdk_sqs::Client,
    /// (url, ARN) of the interactive and bulk queues.
    pub queues: [(String, String); 2],
}

pub async fn aws() -> Aws {
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

/// An API Gateway HTTP API (payload v2.0) event, as Lambda delivers it;
/// a query string after `?` in `path` goes to `rawQueryString`.
pub fn apigw(
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    headers: Value,
    base64: bool,
) -> lambda_http::Request {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    // Payload v2.0 carries cookies in their own list, not as a header.
    let mut headers = headers;
    let cookies: Vec<String> = headers
        .as_object_mut()
        .and_then(|h| h.remove("cookie"))
        .and_then(|c| {
            c.as_str()
                .map(|c| c.split("; ").map(String::from).collect())
        })
        .unwrap_or_default();
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
        "rawQueryString": query,
        "headers": headers,
        "cookies": cookies,
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

pub fn signed_post(body: &Value, base64: bool) -> lambda_http::Request {
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

/// The approval function's configuration, owned, as its `main` holds it.
pub struct ApprovalFunction {
    pub keys: Vec<Secret>,
    pub policy: Policy,
    pub sources: tollgate::domain::source::Sources,
    pub operator_tokens: Vec<Secret>,
    pub site: String,
}

impl ApprovalFunction {
    pub fn new(policy: Policy, operator_token: Option<&str>, site: &str) -> Self {
        ApprovalFunction {
            keys: vec![Secret::new(LINK_KEY)],
            policy,
            sources: Default::default(),
            operator_tokens: operator_token.map(Secret::new).into_iter().collect(),
            site: site.to_string(),
        }
    }

    /// One invocation, as API Gateway makes it.
    pub async fn call(
        &self,
        aws: &Aws,
        req: lambda_http::Request,
    ) -> lambda_http::Response<lambda_http::Body> {
        let app = tollgate_approval::App {
            store: &aws.store,
            queue: &aws.queue,
            clock: &SystemClock,
            link_keys: &self.keys,
            public_url: "https://tollgateapi.execute-api.us-east-1.amazonaws.com",
            notifier: &tollgate_e2e::Delivered,
            policy: &self.policy,
            sources: &self.sources,
            operator_tokens: &self.operator_tokens,
            site: &self.site,
        };
        tollgate_approval::handle(&app, req).await
    }
}

pub struct Answer {
    pub status: u16,
    pub body: Value,
}

pub async fn call_ingest(aws: &Aws, req: lambda_http::Request) -> Answer {
    call_ingest_with(aws, req, &Policy::default()).await
}

/// Ingest as the executor runs it: batch admissions continue there, and
/// the sweep resumes stalled ones.
pub fn sweeping<'a>(
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

pub async fn call_ingest_with(aws: &Aws, req: lambda_http::Request, policy: &Policy) -> Answer {
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
        notifier: &tollgate_e2e::Delivered,
    };
    let resp = tollgate_ingest::handle(&app, req, None).await;
    let status = resp.status().as_u16();
    let body = serde_json::from_slice(resp.body().as_ref()).unwrap_or(Value::Null);
    Answer { status, body }
}

/// One Lambda instance of the executor: its own Jira client and its own
/// view of the shared governor, as a separate instance would have.
pub struct Instance<'a> {
    pub aws: &'a Aws,
    pub tracker: JiraClient,
    pub governor: Governor<'a, DynamoStore, SystemClock>,
    pub config: ExecutorConfig,
    /// The deployment's policy (batch admissions continue here).
    pub policy: Policy,
}

impl<'a> Instance<'a> {
    pub fn new(aws: &'a Aws, site: &str, name: &str, instances: usize) -> Self {
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

    pub async fn invoke(&self, event: &SqsEvent) -> SqsBatchResponse {
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
    pub async fn poll_once(&self, batch_size: i32) -> (usize, Vec<String>) {
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
    pub async fn drain(&self, jobs: &HashSet<String>, limit: Duration) {
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
pub fn sqs_record(m: &aws_sdk_sqs::types::Message, arn: &str) -> Value {
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

pub async fn queues_empty(aws: &Aws) -> bool {
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

pub async fn all_terminal(store: &DynamoStore, jobs: &HashSet<String>) -> bool {
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

pub async fn sim(limits: Limits) -> (String, std::sync::Arc<jira_sim::Sim>) {
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

pub fn alert(i: usize) -> Value {
    json!({
        "sourceSystem": "alertmanager",
        "externalId": format!("alert-{i}"),
        "desiredOperation": "create",
        "projectKey": "OPS",
        "issueType": "Incident",
        "summary": format!("Disk 95% full on db-{i}")
    })
}

pub fn comment(i: usize) -> Value {
    json!({
        "sourceSystem": "alertmanager",
        "externalId": format!("alert-{i}"),
        "desiredOperation": "comment",
        "comment": format!("still firing on db-{i}")
    })
}

/// The wall clock, `0` milliseconds ago: work admitted in the past.
pub struct Ago(pub i64);

impl Clock for Ago {
    fn now(&self) -> Timestamp {
        Timestamp(SystemClock.now().0 - self.0)
    }
}

/// The ingest function as API Gateway invokes it, with its clock and queue
/// given.
pub async fn ingest_at(
    aws: &Aws,
    req: lambda_http::Request,
    policy: &Policy,
    clock: &Ago,
    queue: &SqsQueue,
) -> Answer {
    ingest_notifying(aws, req, policy, clock, queue, &tollgate_e2e::Delivered).await
}

pub async fn ingest_notifying<N: tollgate::ports::Notifier>(
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
pub struct Down;

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
pub struct Counted(pub std::sync::atomic::AtomicUsize);

impl tollgate::ports::Notifier for Counted {
    async fn notify(
        &self,
        _: &tollgate::domain::notice::Notice,
    ) -> Result<(), tollgate::ports::NotifyError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}
