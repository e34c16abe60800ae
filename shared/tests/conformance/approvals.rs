//! Approval requests: found by their jobs, paged, decided once.

use super::*;

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
