//! The serverless form end to end, on a real local AWS emulator (moto):
//! API Gateway events into the ingest function's handler → DynamoDB + SQS →
//! the executor function's handler fed the way Lambda's SQS event source
//! mapping feeds it (receive, invoke with the SQS event JSON, delete what
//! the partial batch response does not name) → jira-sim. SQS delivery's
//! corners are in `lambda_delivery.rs`, the console in `lambda_console.rs`.

#[path = "../shared/tests/support/moto.rs"]
mod moto;
#[path = "lambda/support.rs"]
mod support;

use aws_sdk_sqs::types::QueueAttributeName;
use jira_sim::limits::{Faults, Limits};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;
use support::*;
use tollgate::app::ingest::Ingest;
use tollgate::domain::approval::Decision;
use tollgate::domain::ids::JobId;
use tollgate::domain::policy::Policy;
use tollgate::domain::rejection::RejectionId;
use tollgate::domain::secret::Secret;
use tollgate::domain::signature;
use tollgate::ports::RejectionStore;
use tollgate::ports::{ApprovalStore, JobStore, SystemClock};

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
