//! Jobs: first writer wins, conditional updates, listings, the outbox.

use super::*;

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
