//! The serverless form at scale, on moto: batches of thousands admitted in
//! pages under the functions' deadlines, chunk approvals notified and
//! decided however many there are, the outbox and the dead-letter queue
//! swept so nothing is stranded.

#[path = "../shared/tests/support/moto.rs"]
mod moto;
#[path = "lambda/support.rs"]
mod support;

use jira_sim::limits::Limits;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use support::*;
use tollgate::adapters::sqs::SqsQueue;
use tollgate::app::ingest::Ingest;
use tollgate::domain::approval::Decision;
use tollgate::domain::ids::{BatchId, JobId};
use tollgate::domain::job::JobState;
use tollgate::domain::policy::Policy;
use tollgate::domain::secret::Secret;
use tollgate::domain::signature;
use tollgate::ports::Clock;
use tollgate::ports::{ApprovalStore, JobStore, SystemClock};

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
        let denied = ApprovalFunction::new(Policy::default(), None, "")
            .call(
                &aws,
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
        &tollgate_e2e::Delivered,
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
        let decided = ApprovalFunction::new(Policy::default(), None, "")
            .call(
                &aws,
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

/// The full size: `cargo test -p tollgate-e2e --test
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
        notifier: &tollgate_e2e::Delivered,
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
        let decided = ApprovalFunction::new(Policy::default(), None, "")
            .call(
                &aws,
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
            &tollgate_e2e::Delivered,
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
