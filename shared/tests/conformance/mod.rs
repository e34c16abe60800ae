//! Behaviour every store and queue adapter must share. Each function takes a
//! factory that opens a fresh handle on the *same* backing store, so races
//! run across separate connections, as separate workers would.

#![allow(dead_code)]

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;
use tollgate::domain::approval::{ApprovalId, ApprovalRecord, Decided, Decision};
use tollgate::domain::audit::{AuditEntry, Stage};
use tollgate::domain::event::{OperationKind, Priority};
use tollgate::domain::idempotency::{DedupId, Fingerprint, IdempotencyKey, LinkId};
use tollgate::domain::ids::{ExternalId, IssueKey, JobId, SourceSystem};
use tollgate::domain::job::JobState;
use tollgate::domain::rejection::{Discarded, Rejection};
use tollgate::domain::time::Timestamp;
use tollgate::domain::validation::FieldError;
use tollgate::ports::{
    Admission, ApprovalStore, BatchStore, CensusStore, Counters, Fence, FieldRevisions,
    GovernorStore, JobRecord, JobStore, Leases, LinkStore, QueueGauge, RejectionStore, StatsStore,
    WorkMessage, WorkQueue,
};

pub fn job(dedup: &str, key: &str) -> JobRecord {
    let source = SourceSystem::parse("test").unwrap();
    let external = ExternalId::parse(key).unwrap();
    JobRecord {
        id: JobId::generate(),
        key: IdempotencyKey::from_stored(key.to_string()),
        fingerprint: Fingerprint::from_stored(dedup.to_string()),
        dedup: DedupId::from_stored(dedup.to_string()),
        link: LinkId::of(&source, &external),
        kind: OperationKind::Update,
        priority: Priority::Interactive,
        source_system: source,
        external_id: external,
        payload: "{}".into(),
        state: JobState::Queued,
        issue_key: None,
        steps_done: 0,
        step_started: None,
        attempts: 0,
        throttles: 0,
        last_error: None,
        created_at: Timestamp(1),
        updated_at: Timestamp(1),
        enqueued: false,
        merged_into: None,
        batch: None,
        points_milli: 0,
        not_before: None,
    }
}

fn entry(what: &str) -> AuditEntry {
    AuditEntry::new(Timestamp(1), Stage::Queue, "test", what)
}

pub async fn the_first_of_many_racing_writers_wins_the_dedup_id<S, F, Fut>(open: F)
where
    S: JobStore + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = open().await;
        tasks.push(tokio::spawn(async move {
            let j = job("race-dedup", "k");
            let admitted = store.admit(&j, &[entry("admitted")], None).await.unwrap();
            (j.id, matches!(admitted, Admission::New))
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (id, new) = t.await.unwrap();
        if new {
            winners.push(id);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer must win");
    let store = open().await;
    match store
        .admit(&job("race-dedup", "k"), &[], None)
        .await
        .unwrap()
    {
        Admission::Existing(existing) => assert_eq!(existing.id, winners[0]),
        Admission::New => panic!("a later writer must see the winner"),
    }
    assert_eq!(store.audit_trail(&winners[0]).await.unwrap().len(), 1);
}

pub async fn a_conditional_update_fails_when_the_state_moved<S: JobStore>(store: &S) {
    let mut j = job("cond-update", "k2");
    store.admit(&j, &[], None).await.unwrap();
    j.state = JobState::Running;
    assert!(
        store
            .update(&j, JobState::Queued, Some(&entry("leased")))
            .await
            .unwrap()
    );
    j.state = JobState::Succeeded;
    assert!(
        !store
            .update(&j, JobState::Queued, Some(&entry("stale")))
            .await
            .unwrap()
    );
    let stored = store.job(&j.id).await.unwrap().unwrap();
    assert_eq!(stored.state, JobState::Running);
    let trail: Vec<String> = store
        .audit_trail(&j.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.outcome)
        .collect();
    assert_eq!(trail, ["leased"], "a refused update writes no audit entry");
}

pub async fn a_job_round_trips_every_field<S: JobStore>(store: &S) {
    let mut j = job("round-trip", "k3");
    j.issue_key = IssueKey::parse("OPS-7");
    j.step_started = Some((2, Timestamp(99)));
    j.attempts = 3;
    j.throttles = 4;
    j.last_error = Some("boom".into());
    j.priority = Priority::Bulk;
    store.admit(&j, &[], None).await.unwrap();
    assert_eq!(store.job(&j.id).await.unwrap().unwrap(), j);
}

/// An entity's jobs come back oldest first, with the coalescing mark
/// and batch they carry; queued creates are listed for bulk partners.
pub async fn an_entitys_jobs_are_listed_in_admission_order<S: JobStore>(store: &S) {
    let a = job("entity-a", "entity-1");
    let mut b = job("entity-b", "entity-1");
    b.kind = OperationKind::Create;
    b.batch = Some(tollgate::domain::ids::BatchId::parse("night-1").unwrap());
    let other = job("entity-c", "entity-2");
    store.admit(&a, &[], None).await.unwrap();
    store.admit(&b, &[], None).await.unwrap();
    store.admit(&other, &[], None).await.unwrap();
    let jobs = store.entity_jobs(&a.link).await.unwrap();
    let ids: Vec<_> = jobs.iter().map(|j| j.id.clone()).collect();
    assert_eq!(ids, [a.id.clone(), b.id.clone()]);
    assert_eq!(jobs[1].batch, b.batch);

    let mut merged = a.clone();
    merged.state = JobState::Superseded;
    merged.merged_into = Some(b.id.clone());
    assert!(store.update(&merged, JobState::Queued, None).await.unwrap());
    let back = store.job(&a.id).await.unwrap().unwrap();
    assert_eq!(back.merged_into, Some(b.id.clone()));
    assert!(
        !store.update(&merged, JobState::Queued, None).await.unwrap(),
        "merging is conditional on the state read"
    );

    let creates = store.queued_creates(10).await.unwrap();
    assert!(creates.iter().any(|j| j.id == b.id));
    assert!(!creates.iter().any(|j| j.id == a.id || j.id == other.id));
}

/// The outbox: an admitted job is listed until its message is marked sent,
/// and marking it sent changes no other field.
pub async fn unenqueued_jobs_are_listed_until_marked_sent<S: JobStore>(store: &S) {
    let mut a = job("outbox-a", "ka");
    a.created_at = Timestamp(1_000);
    let mut b = job("outbox-b", "kb");
    b.created_at = Timestamp(2_000);
    b.enqueued = true;
    store.admit(&a, &[], None).await.unwrap();
    store.admit(&b, &[], None).await.unwrap();
    let listed = store.unenqueued(Timestamp(5_000), 10).await.unwrap();
    assert!(listed.iter().any(|j| j.id == a.id));
    assert!(!listed.iter().any(|j| j.id == b.id), "already sent");
    assert!(
        !store
            .unenqueued(Timestamp(500), 10)
            .await
            .unwrap()
            .iter()
            .any(|j| j.id == a.id),
        "only jobs admitted before the cut-off"
    );
    let mut running = a.clone();
    running.state = JobState::Running;
    running.steps_done = 2;
    assert!(
        store
            .update(&running, JobState::Queued, None)
            .await
            .unwrap()
    );
    store.mark_enqueued(&a.id).await.unwrap();
    let stored = store.job(&a.id).await.unwrap().unwrap();
    assert!(stored.enqueued);
    assert_eq!((stored.state, stored.steps_done), (JobState::Running, 2));
    // A worker writing back a copy read before the flag was set does not
    // lower it again.
    assert!(
        store
            .update(&running, JobState::Running, None)
            .await
            .unwrap()
    );
    assert!(store.job(&a.id).await.unwrap().unwrap().enqueued);
    assert!(
        !store
            .unenqueued(Timestamp(5_000), 10)
            .await
            .unwrap()
            .iter()
            .any(|j| j.id == a.id)
    );
    // A re-run lowers the flag on purpose: listed again until re-sent.
    let stored = store.job(&a.id).await.unwrap().unwrap();
    store.reset_outbox(&stored).await.unwrap();
    assert!(!store.job(&a.id).await.unwrap().unwrap().enqueued);
    assert!(
        store
            .unenqueued(Timestamp(5_000), 10)
            .await
            .unwrap()
            .iter()
            .any(|j| j.id == a.id)
    );
}

/// Listing by state, newest first.
pub async fn jobs_are_listed_by_state_newest_first<S: JobStore>(store: &S) {
    let mut ids = Vec::new();
    for i in 0..3 {
        let mut j = job(&format!("list-{i}"), &format!("kl{i}"));
        j.created_at = Timestamp(10_000 + i);
        j.state = JobState::Waiting;
        store.admit(&j, &[], None).await.unwrap();
        ids.push(j.id);
    }
    let listed: Vec<JobId> = store
        .list(Some(JobState::Waiting), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .filter(|id| ids.contains(id))
        .collect();
    ids.reverse();
    assert_eq!(listed, ids);
    assert_eq!(
        store.list(Some(JobState::Waiting), 2).await.unwrap().len(),
        2
    );
}

/// The governor row: created once, then written only by the holder of the
/// version it read.
pub async fn governor_rows_are_written_with_optimistic_versions<S: GovernorStore>(store: &S) {
    let site = format!("https://site-{}.example", JobId::generate());
    let (state, version) = store.load_governor(&site).await.unwrap();
    assert_eq!(version, 0);
    assert!(store.save_governor(&site, &state, 0).await.unwrap());
    assert!(
        !store.save_governor(&site, &state, 0).await.unwrap(),
        "created once"
    );
    let (_, v1) = store.load_governor(&site).await.unwrap();
    assert_eq!(v1, 1);
    assert!(store.save_governor(&site, &state, 1).await.unwrap());
    assert!(
        !store.save_governor(&site, &state, 1).await.unwrap(),
        "stale version"
    );
    assert_eq!(store.load_governor(&site).await.unwrap().1, 2);
}

pub async fn only_one_of_many_racing_workers_holds_a_lease<S, F, Fut>(open: F)
where
    S: Leases + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = open().await;
        tasks.push(tokio::spawn(async move {
            store
                .acquire("race-lease", &format!("w{i}"), Duration::from_secs(30))
                .await
                .unwrap()
        }));
    }
    let mut held = 0;
    for t in tasks {
        held += usize::from(t.await.unwrap().is_some());
    }
    assert_eq!(held, 1);
}

pub async fn a_lease_expires_and_can_be_renewed_by_its_holder<S: Leases>(store: &S) {
    let a = store
        .acquire("l", "a", Duration::from_millis(200))
        .await
        .unwrap()
        .expect("a free lease is taken");
    assert_eq!(
        store
            .acquire("l", "b", Duration::from_secs(30))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .acquire("l", "a", Duration::from_millis(200))
            .await
            .unwrap(),
        Some(a),
        "a renewal keeps the fencing token"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = store
        .acquire("l", "b", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("an expired lease is free");
    assert!(b > a, "a new holder gets a higher token");
    store.release("l", "a").await.unwrap();
    assert_eq!(
        store
            .acquire("l", "c", Duration::from_secs(30))
            .await
            .unwrap(),
        None,
        "release by a non-holder does nothing"
    );
    store.release("l", "b").await.unwrap();
    let c = store
        .acquire("l", "c", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("a released lease is free");
    assert!(c > b, "tokens keep rising after a release");
}

/// The fence: once another worker took the entity's lease over, the old
/// holder's state writes, checkpoints, link writes and revisions are all
/// refused, and the new holder's go through.
pub async fn fence_refuses_a_worker_whose_lease_was_taken_over<S>(store: &S)
where
    S: JobStore + LinkStore + Leases,
{
    let lease = "link/fenced-entity";
    let old = store
        .acquire(lease, "old", Duration::from_millis(200))
        .await
        .unwrap()
        .unwrap();
    let old = Fence {
        lease: lease.into(),
        token: old,
    };
    let j = job("fence", "1");
    assert!(matches!(
        store.admit(&j, &[], None).await.unwrap(),
        Admission::New
    ));
    let mut running = j.clone();
    running.state = JobState::Running;
    assert!(
        store
            .update_fenced(&running, JobState::Queued, None, Some(&old))
            .await
            .unwrap(),
        "the holder writes"
    );
    // The old worker stalls past its lease; a new one takes over.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let new = store
        .acquire(lease, "new", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    let new = Fence {
        lease: lease.into(),
        token: new,
    };
    let mut checkpoint = running.clone();
    checkpoint.steps_done = 1;
    assert!(
        !store
            .update_fenced(
                &checkpoint,
                JobState::Running,
                Some(&entry("stale")),
                Some(&old)
            )
            .await
            .unwrap(),
        "the old holder's checkpoint is refused"
    );
    let stored = store.job(&j.id).await.unwrap().unwrap();
    assert_eq!(stored.steps_done, 0, "nothing of it was written");
    assert!(
        !store
            .audit_trail(&j.id)
            .await
            .unwrap()
            .iter()
            .any(|e| e.outcome == "stale"),
        "nor its audit entry"
    );
    let link = j.link.clone();
    store.claim_link(&link, &j.id).await.unwrap();
    let key = IssueKey::parse("OPS-77").unwrap();
    assert!(
        !store
            .set_link_issue(&link, &j.id, &key, &old)
            .await
            .unwrap(),
        "the old holder's link write is refused"
    );
    let revs: FieldRevisions = [("summary".to_string(), j.id.clone())].into();
    assert!(
        !store.record_revisions(&link, &revs, &old).await.unwrap(),
        "the old holder's revisions are refused"
    );
    assert!(store.field_revisions(&link).await.unwrap().is_empty());
    assert!(
        store
            .update_fenced(&checkpoint, JobState::Running, None, Some(&new))
            .await
            .unwrap(),
        "the new holder writes"
    );
    assert!(
        store
            .set_link_issue(&link, &j.id, &key, &new)
            .await
            .unwrap()
    );
    assert_eq!(
        store.link(&link).await.unwrap().unwrap().issue_key,
        Some(key)
    );
    assert!(
        store
            .update(&checkpoint, JobState::Running, None)
            .await
            .unwrap(),
        "writers outside a lease are not fenced"
    );
}

/// Field revisions only rise: an older job's revision never replaces a
/// newer one's.
pub async fn field_revisions_only_rise<S: LinkStore + Leases>(store: &S) {
    let lease = "link/rev-entity";
    let token = store
        .acquire(lease, "w", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    let fence = Fence {
        lease: lease.into(),
        token,
    };
    let link = LinkId::from_stored("rev-entity".into());
    let (older, newer) = (JobId::generate(), JobId::generate());
    assert!(older < newer, "job ids sort by admission");
    let set = |pairs: &[(&str, &JobId)]| -> FieldRevisions {
        pairs
            .iter()
            .map(|(f, j)| (f.to_string(), (*j).clone()))
            .collect()
    };
    assert!(
        store
            .record_revisions(&link, &set(&[("summary", &newer)]), &fence)
            .await
            .unwrap()
    );
    assert!(
        store
            .record_revisions(
                &link,
                &set(&[("summary", &older), ("priority", &older)]),
                &fence
            )
            .await
            .unwrap()
    );
    let stored = store.field_revisions(&link).await.unwrap();
    assert_eq!(stored.get("summary"), Some(&newer), "never lowered");
    assert_eq!(stored.get("priority"), Some(&older));
}

pub async fn a_link_has_one_creator_and_records_its_issue<S: LinkStore + Leases>(store: &S) {
    let link = LinkId::from_stored("link-1".into());
    let (a, b) = (JobId::generate(), JobId::generate());
    assert_eq!(store.claim_link(&link, &a).await.unwrap().creator, a);
    assert_eq!(
        store.claim_link(&link, &b).await.unwrap().creator,
        a,
        "first claim wins"
    );
    assert!(store.take_over_link(&link, &a, &b).await.unwrap());
    assert!(
        !store.take_over_link(&link, &a, &b).await.unwrap(),
        "only from the current creator"
    );
    let key = IssueKey::parse("OPS-1").unwrap();
    let fence = Fence {
        lease: "link/link-1".into(),
        token: store
            .acquire("link/link-1", "w", Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap(),
    };
    assert!(!store.set_link_issue(&link, &a, &key, &fence).await.unwrap());
    assert_eq!(
        store.link(&link).await.unwrap().unwrap().issue_key,
        None,
        "only the creator records"
    );
    assert!(store.set_link_issue(&link, &b, &key, &fence).await.unwrap());
    assert_eq!(
        store.link(&link).await.unwrap().unwrap().issue_key,
        Some(key)
    );
    assert!(
        !store.take_over_link(&link, &b, &a).await.unwrap(),
        "a link with an issue is settled"
    );
}

pub async fn each_message_goes_to_one_of_many_racing_receivers<Q, F, Fut>(open: F)
where
    Q: WorkQueue + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = Q>,
{
    let q = open().await;
    for _ in 0..40 {
        q.send(
            &WorkMessage {
                job_id: JobId::generate(),
                priority: Priority::Bulk,
            },
            Duration::ZERO,
        )
        .await
        .unwrap();
    }
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let q = open().await;
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = q.receive(3, Duration::from_secs(60)).await.unwrap();
                if batch.is_empty() {
                    break got;
                }
                got.extend(batch.into_iter().map(|d| d.job_id));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 40);
    assert_eq!(
        unique.len(),
        40,
        "no message delivered twice while invisible"
    );
}

/// `tick` is the queue's time granularity: SQLite counts milliseconds, SQS
/// whole seconds.
pub async fn an_unacknowledged_message_comes_back_with_its_receive_count<Q: WorkQueue>(
    q: &Q,
    tick: Duration,
) {
    let id = JobId::generate();
    q.send(
        &WorkMessage {
            job_id: id.clone(),
            priority: Priority::Interactive,
        },
        Duration::ZERO,
    )
    .await
    .unwrap();
    let first = q.receive(10, tick * 2).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].receive_count, 1);
    assert!(
        q.receive(10, Duration::from_secs(1))
            .await
            .unwrap()
            .is_empty(),
        "invisible while received"
    );
    tokio::time::sleep(tick * 3).await;
    let second = q.receive(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!((second[0].job_id.clone(), second[0].receive_count), (id, 2));
    // (A delete with the stale first receipt is not tested: SQS documents
    // that it "succeeds, but the message might not be deleted". The executor
    // never relies on either outcome: it deletes only once the job is
    // finished.)
    q.change_visibility(&second[0].receipt, Duration::ZERO)
        .await
        .unwrap();
    let third = q.receive(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(third.len(), 1, "visibility 0 makes it visible now");
    assert_eq!(third[0].receive_count, 3);
    q.delete(&third[0].receipt).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(
        q.receive(10, Duration::ZERO).await.unwrap().is_empty(),
        "deleted for good"
    );
}

pub async fn a_delayed_message_stays_invisible_until_its_delay_ends<Q: WorkQueue>(
    q: &Q,
    tick: Duration,
) {
    q.send(
        &WorkMessage {
            job_id: JobId::generate(),
            priority: Priority::Interactive,
        },
        tick * 3,
    )
    .await
    .unwrap();
    assert!(
        q.receive(10, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty()
    );
    tokio::time::sleep(tick * 4).await;
    assert_eq!(
        q.receive(10, Duration::from_secs(30)).await.unwrap().len(),
        1
    );
}

pub async fn interactive_messages_overtake_bulk_ones<Q: WorkQueue>(q: &Q) {
    let bulk = JobId::generate();
    let interactive = JobId::generate();
    q.send(
        &WorkMessage {
            job_id: bulk.clone(),
            priority: Priority::Bulk,
        },
        Duration::ZERO,
    )
    .await
    .unwrap();
    q.send(
        &WorkMessage {
            job_id: interactive.clone(),
            priority: Priority::Interactive,
        },
        Duration::ZERO,
    )
    .await
    .unwrap();
    let got = q.receive(1, Duration::from_secs(30)).await.unwrap();
    assert_eq!(got[0].job_id, interactive);
    assert_eq!(
        q.receive(1, Duration::from_secs(30)).await.unwrap()[0].job_id,
        bulk
    );
}

pub fn approval(job: &JobId) -> ApprovalRecord {
    ApprovalRecord {
        id: ApprovalId::generate(),
        job_id: job.clone(),
        also: Vec::new(),
        rule: "built-in: transitions need approval".into(),
        intent: vec!["move OPS-1 to Done".into(), "then comment".into()],
        requested_by: "itsm".into(),
        approvers: vec!["lead@example.com".into(), "ciso@example.com".into()],
        requested_at: Timestamp(1_000),
        expires_at: Timestamp(9_000_000_000_000),
        decided: None,
        notified: false,
    }
}

pub async fn an_approval_round_trips_and_is_found_by_its_job<S: ApprovalStore>(store: &S) {
    let job = JobId::generate();
    let a = approval(&job);
    store.create_approval(&a).await.unwrap();
    assert_eq!(store.approval(&a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(store.approval_for_job(&job).await.unwrap(), Some(a.clone()));
    assert_eq!(
        store.approval_for_job(&JobId::generate()).await.unwrap(),
        None
    );
    store.mark_notified(&a.id).await.unwrap();
    assert!(store.approval(&a.id).await.unwrap().unwrap().notified);
    assert!(
        store
            .open_approvals(100)
            .await
            .unwrap()
            .iter()
            .any(|o| o.id == a.id)
    );
    let d = Decided {
        decision: Decision::Deny,
        by: "ciso@example.com".into(),
        at: Timestamp(2_000),
    };
    assert!(store.decide(&a.id, &d).await.unwrap());
    assert_eq!(
        store.approval(&a.id).await.unwrap().unwrap().decided,
        Some(d)
    );
    assert!(
        !store
            .open_approvals(100)
            .await
            .unwrap()
            .iter()
            .any(|o| o.id == a.id),
        "a decided approval is no longer open"
    );
}

/// Open requests are read a page at a time, oldest first, none twice.
pub async fn open_approvals_are_paged_oldest_first<S: ApprovalStore>(store: &S) {
    let mut made = Vec::new();
    for i in 0..5 {
        let mut a = approval(&JobId::generate());
        a.requested_at = Timestamp(1_000_000 + i);
        store.create_approval(&a).await.unwrap();
        made.push(a.id.clone());
    }
    let mut seen = Vec::new();
    let mut after: Option<ApprovalRecord> = None;
    loop {
        let page = store.open_approvals_after(after.as_ref(), 2).await.unwrap();
        let Some(last) = page.last().cloned() else {
            break;
        };
        assert!(page.len() <= 2);
        seen.extend(page.into_iter().map(|a| a.id));
        after = Some(last);
    }
    let ours: Vec<_> = seen.into_iter().filter(|id| made.contains(id)).collect();
    assert_eq!(ours, made, "every one, once, oldest first");
}

/// A person's decision and the expiry exclude each other: no decision
/// after the expiry, no expiry before it or over a decision.
pub async fn a_decision_and_the_expiry_exclude_each_other<S: ApprovalStore>(store: &S) {
    let mut a = approval(&JobId::generate());
    a.expires_at = Timestamp(10_000);
    store.create_approval(&a).await.unwrap();
    let at = |t: i64, by: &str| Decided {
        decision: Decision::Approve,
        by: by.into(),
        at: Timestamp(t),
    };
    assert!(
        !store
            .close_expired(&a.id, &at(9_999, "expiry"))
            .await
            .unwrap(),
        "not expired yet"
    );
    assert!(
        !store
            .decide(&a.id, &at(10_000, "late approver"))
            .await
            .unwrap(),
        "too late for a person"
    );
    assert!(
        store
            .close_expired(&a.id, &at(10_001, "expiry"))
            .await
            .unwrap()
    );
    assert!(
        !store.decide(&a.id, &at(9_000, "approver")).await.unwrap(),
        "closed"
    );
    let mut b = approval(&JobId::generate());
    b.expires_at = Timestamp(10_000);
    store.create_approval(&b).await.unwrap();
    assert!(store.decide(&b.id, &at(9_000, "approver")).await.unwrap());
    assert!(
        !store
            .close_expired(&b.id, &at(10_001, "expiry"))
            .await
            .unwrap(),
        "decided before it expired"
    );
    assert_eq!(
        store
            .approval(&b.id)
            .await
            .unwrap()
            .unwrap()
            .decided
            .unwrap()
            .by,
        "approver"
    );
}

pub async fn only_one_of_many_racing_deciders_decides<S, F, Fut>(open: F)
where
    S: ApprovalStore + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let a = approval(&JobId::generate());
    open().await.create_approval(&a).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = open().await;
        let id = a.id.clone();
        tasks.push(tokio::spawn(async move {
            let d = Decided {
                decision: if i % 2 == 0 {
                    Decision::Approve
                } else {
                    Decision::Deny
                },
                by: format!("approver-{i}"),
                at: Timestamp(5_000 + i),
            };
            (store.decide(&id, &d).await.unwrap(), d)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (won, d) = t.await.unwrap();
        if won {
            winners.push(d);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one decision");
    let stored = open().await.approval(&a.id).await.unwrap().unwrap();
    assert_eq!(stored.decided.as_ref(), Some(&winners[0]));
}

pub async fn racing_bumps_all_count_and_windows_are_apart<S, F, Fut>(open: F)
where
    S: Counters + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let key = format!("creates/{}", JobId::generate());
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let store = open().await;
        let key = key.clone();
        tasks.push(tokio::spawn(
            async move { store.bump(&key, 7).await.unwrap() },
        ));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let store = open().await;
    assert_eq!(store.count(&key, 7).await.unwrap(), 12, "no bump lost");
    assert_eq!(store.count(&key, 8).await.unwrap(), 0, "another window");
    assert_eq!(store.count("creates/nobody", 7).await.unwrap(), 0);
}

/// A rejection keeps its context; the same batch item kept twice is one
/// rejection; a discard is once, and nothing is re-submitted after it.
pub async fn a_rejection_keeps_its_context_and_is_discarded_once<S: RejectionStore>(store: &S) {
    let item = Rejection::of_batch_item(
        "cmdb-2026-11-30",
        17,
        "cmdb",
        Priority::Bulk,
        br#"{"externalId": "srv-9"}"#,
        vec![FieldError::new(
            "events[17].desiredOperation",
            "is required",
        )],
        Timestamp(3_000),
    );
    store.keep_rejection(&item).await.unwrap();
    let again = Rejection {
        received_at: Timestamp(4_000),
        ..item.clone()
    };
    store.keep_rejection(&again).await.unwrap();
    assert_eq!(store.rejection(&item.id).await.unwrap(), Some(item.clone()));
    assert_eq!(
        store
            .rejections(100)
            .await
            .unwrap()
            .iter()
            .filter(|r| r.id == item.id)
            .count(),
        1,
        "the same item of a re-posted batch is one rejection"
    );
    let sender = Rejection::from_sender(
        "alertmanager",
        "alerts[1]",
        br#"{"alerts": [{}, {}]}"#,
        vec![FieldError::new("alerts[1].externalId", "is required")],
        Timestamp(5_000),
    );
    store.keep_rejection(&sender).await.unwrap();
    assert_eq!(
        store.rejection(&sender.id).await.unwrap(),
        Some(sender.clone())
    );
    let d = Discarded {
        by: "dana".into(),
        reason: "a test alert".into(),
        at: Timestamp(6_000),
    };
    assert!(store.discard_rejection(&sender.id, &d).await.unwrap());
    assert!(
        !store.discard_rejection(&sender.id, &d).await.unwrap(),
        "once"
    );
    assert!(
        !store
            .mark_resubmitted(&sender.id, &JobId::generate())
            .await
            .unwrap(),
        "a discarded rejection is not re-submitted"
    );
    let kept = store.rejection(&sender.id).await.unwrap().unwrap();
    assert_eq!(kept.discarded, Some(d));
    assert_eq!(kept.status(), "discarded");
    assert!(
        store
            .mark_resubmitted(&item.id, &JobId::generate())
            .await
            .unwrap()
    );
    assert!(
        !store
            .discard_rejection(
                &item.id,
                &Discarded {
                    by: "dana".into(),
                    reason: "late".into(),
                    at: Timestamp(7_000)
                }
            )
            .await
            .unwrap(),
        "a re-submitted rejection is not discarded"
    );
}

pub async fn a_rejection_is_kept_listed_newest_first_and_resubmitted_once<S: RejectionStore>(
    store: &S,
) {
    let older = Rejection::new(
        br#"{"sourceSystem": "cmdb"}"#,
        vec![FieldError::new("externalId", "is required")],
        Timestamp(1_000),
    );
    let newer = Rejection::new(
        b"{}",
        vec![FieldError::new("sourceSystem", "is required")],
        Timestamp(2_000),
    );
    store.keep_rejection(&older).await.unwrap();
    store.keep_rejection(&newer).await.unwrap();
    assert_eq!(
        store.rejection(&older.id).await.unwrap(),
        Some(older.clone())
    );
    let listed: Vec<_> = store
        .rejections(100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .filter(|id| *id == older.id || *id == newer.id)
        .collect();
    assert_eq!(listed, [newer.id.clone(), older.id.clone()]);
    let job = JobId::generate();
    assert!(store.mark_resubmitted(&older.id, &job).await.unwrap());
    assert!(
        !store
            .mark_resubmitted(&older.id, &JobId::generate())
            .await
            .unwrap(),
        "once"
    );
    assert_eq!(
        store
            .rejection(&older.id)
            .await
            .unwrap()
            .unwrap()
            .resubmitted_as,
        Some(job)
    );
}

/// A batch record is created once: a re-post keeps its counts and its
/// paused flag; its jobs are listed with their states.
pub async fn batches_keep_their_pause_and_list_their_jobs<S: JobStore + BatchStore>(store: &S) {
    use tollgate::domain::batch::BatchRecord;
    use tollgate::domain::ids::BatchId;
    let id = BatchId::parse(&format!("night-{}", JobId::generate())).unwrap();
    let mut record = BatchRecord {
        id: id.clone(),
        source_system: SourceSystem::parse("cmdb").unwrap(),
        received: 2,
        accepted: 2,
        duplicates: 0,
        rejected: vec![],
        rejected_total: 0,
        paused: false,
        created_at: Timestamp(1),
        updated_at: Timestamp(1),
    };
    assert!(store.batch(&id).await.unwrap().is_none());
    assert!(
        !store.set_batch_paused(&id, true).await.unwrap(),
        "no such batch"
    );
    assert_eq!(store.open_batch(&record).await.unwrap(), record);
    assert!(store.set_batch_paused(&id, true).await.unwrap());
    record.received = 5;
    let back = store.open_batch(&record).await.unwrap();
    assert_eq!(back.received, 2, "created once");
    assert!(back.paused, "a re-post does not un-pause");
    assert!(store.set_batch_paused(&id, false).await.unwrap());
    assert!(!store.batch(&id).await.unwrap().unwrap().paused);
    assert!(
        store.recent_batches(50).await.unwrap().contains(&id),
        "listed for operators"
    );

    let mut a = job(&format!("batch-a-{id}"), &format!("batch-a-{id}"));
    a.batch = Some(id.clone());
    a.points_milli = 250;
    let mut b = job(&format!("batch-b-{id}"), &format!("batch-b-{id}"));
    b.batch = Some(id.clone());
    let outside = job(&format!("batch-c-{id}"), &format!("batch-c-{id}"));
    for j in [&a, &b, &outside] {
        store.admit(j, &[], None).await.unwrap();
    }
    let mut done = b.clone();
    done.state = JobState::Superseded;
    assert!(store.update(&done, JobState::Queued, None).await.unwrap());
    let mut jobs = store.batch_jobs(&id).await.unwrap();
    jobs.sort_by_key(|j| j.points_milli);
    let states: Vec<_> = jobs.iter().map(|j| (j.state, j.points_milli)).collect();
    assert_eq!(states, [(JobState::Superseded, 0), (JobState::Queued, 250)]);
}

/// A post is stored once with its pages; its cursor moves once per page,
/// adding the page's counts to the batch in the same write; unfinished
/// admissions that stopped moving are found; rejected items are listed
/// once per index.
pub async fn batch_posts_advance_once_per_page<S: BatchStore>(store: &S) {
    use tollgate::domain::admission::{AdmissionRecord, BatchPage, PostId, Tally};
    use tollgate::domain::batch::{BatchRecord, RejectedItem};
    use tollgate::domain::ids::BatchId;
    use tollgate::domain::rejection::RejectionId;
    let id = BatchId::parse(&format!("paged-{}", JobId::generate())).unwrap();
    let record = BatchRecord {
        id: id.clone(),
        source_system: SourceSystem::parse("cmdb").unwrap(),
        received: 0,
        accepted: 0,
        duplicates: 0,
        rejected: vec![],
        rejected_total: 0,
        paused: false,
        created_at: Timestamp(1_000),
        updated_at: Timestamp(1_000),
    };
    store.open_batch(&record).await.unwrap();
    let post = PostId::of(&id, id.as_str().as_bytes());
    let admission = AdmissionRecord {
        batch: id.clone(),
        post: post.clone(),
        items: 3,
        pages: 2,
        next_page: 0,
        gated: true,
        created_at: Timestamp(1_000),
        updated_at: Timestamp(1_000),
    };
    let pages = [
        BatchPage {
            number: 0,
            first_index: 0,
            items: vec!["{\"a\":1}".into(), "{\"a\":2}".into()],
        },
        BatchPage {
            number: 1,
            first_index: 2,
            items: vec!["x".repeat(200_000)],
        },
    ];
    assert!(store.store_post(&admission, &pages).await.unwrap());
    assert!(
        !store.store_post(&admission, &pages).await.unwrap(),
        "the same post is stored once"
    );
    assert_eq!(
        store.admission(&id, &post).await.unwrap(),
        Some(admission.clone())
    );
    assert_eq!(
        store.page(&id, &post, 1).await.unwrap().as_ref(),
        Some(&pages[1])
    );
    assert_eq!(store.page(&id, &post, 2).await.unwrap(), None);
    let stalled = store
        .stalled_admissions(Timestamp(2_000), 1000)
        .await
        .unwrap();
    assert!(stalled.iter().any(|a| a.post == post), "{stalled:?}");

    let tally = Tally {
        received: 2,
        accepted: 1,
        duplicates: 1,
        ..Tally::default()
    };
    assert!(
        store
            .advance_admission(&id, &post, 0, &tally, Timestamp(3_000))
            .await
            .unwrap()
    );
    assert!(
        !store
            .advance_admission(&id, &post, 0, &tally, Timestamp(3_001))
            .await
            .unwrap(),
        "a page is counted once"
    );
    let b = store.batch(&id).await.unwrap().unwrap();
    assert_eq!((b.received, b.accepted, b.duplicates), (2, 1, 1));
    let moved = store.admission(&id, &post).await.unwrap().unwrap();
    assert_eq!((moved.next_page, moved.updated_at), (1, Timestamp(3_000)));
    let last = Tally {
        received: 1,
        ..Tally::default()
    };
    assert!(
        store
            .advance_admission(&id, &post, 1, &last, Timestamp(4_000))
            .await
            .unwrap()
    );
    assert!(
        store
            .admission(&id, &post)
            .await
            .unwrap()
            .unwrap()
            .is_done()
    );
    let stalled = store
        .stalled_admissions(Timestamp(10_000), 1000)
        .await
        .unwrap();
    assert!(
        !stalled.iter().any(|a| a.post == post),
        "a finished post is not stalled"
    );

    let rejected = |index, n: u8| RejectedItem {
        index,
        rejection_id: RejectionId::for_batch_item(id.as_str(), index, &[n]),
    };
    store
        .note_rejected(&id, &(0..150).map(|i| rejected(i, 0)).collect::<Vec<_>>())
        .await
        .unwrap();
    store.note_rejected(&id, &[rejected(3, 1)]).await.unwrap();
    let b = store.batch(&id).await.unwrap().unwrap();
    assert_eq!(b.rejected_total, 150, "once per index");
    assert_eq!(b.rejected.len(), 100, "the first hundred are listed");
    assert_eq!(b.rejected[3], rejected(3, 1));
    assert_eq!(b.received, 3);
}

/// A large rejected body is kept in part, with the size and digest of the
/// whole, and read back as kept.
pub async fn a_large_rejected_body_round_trips_in_part<S: RejectionStore>(store: &S) {
    use tollgate::domain::rejection::{MAX_KEPT_BODY_BYTES, Rejection};
    let big = vec![b'x'; MAX_KEPT_BODY_BYTES * 3];
    let r = Rejection::from_sender("alertmanager", "body", &big, vec![], Timestamp(5_000));
    assert!(store.keep_rejection(&r).await.unwrap());
    let back = store.rejection(&r.id).await.unwrap().unwrap();
    assert_eq!(back.body.len(), MAX_KEPT_BODY_BYTES);
    assert_eq!(back.truncated.as_ref().map(|t| t.bytes), Some(big.len()));
    assert_eq!(back, r);
}

/// Hotspot figures add up across flushes and stay in their hour.
/// A create answered and a write to OPS-9 throttled for `reason`.
fn two_calls(reason: &str) -> tollgate::domain::stats::CallStats {
    use tollgate::domain::stats::{CallOutcome, CallStats};
    let mut a = CallStats::default();
    a.record(
        "POST /rest/api/3/issue",
        None,
        CallOutcome::Answered { points: 1 },
        None,
    );
    a.record(
        "PUT /rest/api/3/issue/{key}",
        Some("OPS-9"),
        CallOutcome::Throttled,
        Some(reason),
    );
    a
}

pub async fn hotspot_figures_add_up_per_hour<S: StatsStore>(store: &S) {
    let window = 400_000 + i64::from(fastrand::u32(..1000));
    let a = two_calls("jira-per-issue-on-write");
    store.add_stats(window, &a).await.unwrap();
    store.add_stats(window, &a).await.unwrap();
    let back = store.stats(window).await.unwrap();
    assert_eq!((back.requests, back.throttled, back.points), (4, 2, 2));
    assert_eq!(back.throttled_issues["OPS-9"], 2);
    assert_eq!(back.endpoints["POST /rest/api/3/issue"].points, 2);
    assert_eq!(back.throttled_by_reason["jira-per-issue-on-write"], 2);
    assert!(store.stats(window + 1).await.unwrap().is_empty());
}

/// A request covering several jobs (a batch chunk) is found from each.
pub async fn a_chunk_approval_is_found_from_each_of_its_jobs<S: ApprovalStore>(store: &S) {
    let (first, second, third) = (JobId::generate(), JobId::generate(), JobId::generate());
    let mut a = approval(&first);
    a.also = vec![second.clone(), third.clone()];
    store.create_approval(&a).await.unwrap();
    for job in [&first, &second, &third] {
        let found = store.approval_for_job(job).await.unwrap().unwrap();
        assert_eq!(found.id, a.id);
        assert_eq!(found.also, [second.clone(), third.clone()]);
    }
    assert!(
        store
            .approval_for_job(&JobId::generate())
            .await
            .unwrap()
            .is_none()
    );
}

/// The census counts jobs by state (moves included), undecided approval
/// requests and rejections neither re-submitted nor discarded.
pub async fn the_census_counts_jobs_by_state_open_approvals_and_open_rejections<S>(store: &S)
where
    S: JobStore + ApprovalStore + RejectionStore + CensusStore,
{
    let mut queued = Vec::new();
    for i in 0..3 {
        let j = job(&format!("census-{i}"), &format!("c{i}"));
        store.admit(&j, &[], None).await.unwrap();
        queued.push(j);
    }
    let mut moved = queued.pop().unwrap();
    moved.state = JobState::Running;
    assert!(store.update(&moved, JobState::Queued, None).await.unwrap());
    let mut waiting = job("census-approval", "c-approval");
    waiting.state = JobState::PendingApproval;
    let open = approval(&waiting.id);
    store.admit(&waiting, &[], Some(&open)).await.unwrap();
    let decided = approval(&JobId::generate());
    store.create_approval(&decided).await.unwrap();
    let d = Decided {
        decision: Decision::Approve,
        by: "lead@example.com".into(),
        at: Timestamp(2_000),
    };
    assert!(store.decide(&decided.id, &d).await.unwrap());
    let rejection = |i: i64| {
        Rejection::new(
            b"{}",
            vec![FieldError::new("sourceSystem", "is required")],
            Timestamp(1_000 + i),
        )
    };
    let (kept, resubmitted, discarded) = (rejection(1), rejection(2), rejection(3));
    for r in [&kept, &resubmitted, &discarded] {
        store.keep_rejection(r).await.unwrap();
    }
    assert!(
        store
            .mark_resubmitted(&resubmitted.id, &JobId::generate())
            .await
            .unwrap()
    );
    let by = Discarded {
        by: "ops".into(),
        at: Timestamp(5_000),
        reason: "noise".into(),
    };
    assert!(store.discard_rejection(&discarded.id, &by).await.unwrap());

    let census = store.census().await.unwrap();
    let count = |s: JobState| {
        census
            .jobs
            .iter()
            .find(|(st, _)| *st == s)
            .map_or(0, |(_, n)| *n)
    };
    assert_eq!(count(JobState::Queued), 2);
    assert_eq!(count(JobState::Running), 1);
    assert_eq!(count(JobState::PendingApproval), 1);
    assert_eq!(count(JobState::Succeeded), 0);
    assert!(!census.jobs_lower_bound);
    assert_eq!(
        census.approvals_waiting, 1,
        "the decided request is not waiting"
    );
    assert_eq!(
        census.rejections_open, 1,
        "re-submitted and discarded ones are closed"
    );
    let listed = store.rejections(100).await.unwrap();
    assert_eq!(
        listed.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        [discarded.id, resubmitted.id, kept.id],
        "closed rejections stay listed, newest first"
    );
    store.ping().await.unwrap();
}

/// The depth counts messages whether visible, delayed or taken.
pub async fn the_queue_depth_counts_visible_delayed_and_taken_messages<Q>(q: &Q)
where
    Q: WorkQueue + QueueGauge,
{
    assert_eq!(q.depth().await.unwrap().messages, 0);
    let msg = |p| WorkMessage {
        job_id: JobId::generate(),
        priority: p,
    };
    q.send(&msg(Priority::Interactive), Duration::ZERO)
        .await
        .unwrap();
    q.send(&msg(Priority::Bulk), Duration::ZERO).await.unwrap();
    q.send(&msg(Priority::Interactive), Duration::from_secs(600))
        .await
        .unwrap();
    let taken = q.receive(1, Duration::from_secs(600)).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(q.depth().await.unwrap().messages, 3);
    q.delete(&taken[0].receipt).await.unwrap();
    assert_eq!(q.depth().await.unwrap().messages, 2);
}

/// Per-minute figures add up, are read by range oldest first (minutes with
/// none left out) and keep no issues.
pub async fn minute_figures_add_up_and_are_read_by_range<S: StatsStore>(store: &S) {
    let minute = 29_000_000 + i64::from(fastrand::u32(..100_000));
    let a = two_calls("jira-burst-based");
    store.add_minute_stats(minute, &a).await.unwrap();
    store.add_minute_stats(minute, &a).await.unwrap();
    store.add_minute_stats(minute + 2, &a).await.unwrap();
    let back = store.minute_stats(minute - 1, minute + 3).await.unwrap();
    let minutes: Vec<i64> = back.iter().map(|(m, _)| *m).collect();
    assert_eq!(minutes, [minute, minute + 2]);
    let first = &back[0].1;
    assert_eq!((first.requests, first.throttled, first.points), (4, 2, 2));
    assert_eq!(first.throttled_by_reason["jira-burst-based"], 2);
    assert_eq!(first.endpoints["PUT /rest/api/3/issue/{key}"].throttled, 2);
    assert!(first.throttled_issues.is_empty(), "issues are hourly only");
    assert!(
        store.stats(minute).await.unwrap().is_empty(),
        "minutes are not hours"
    );
}
