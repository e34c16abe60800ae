//! Leases and their fencing tokens.

use super::*;

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
