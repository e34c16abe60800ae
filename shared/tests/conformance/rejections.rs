//! The manual queue of rejected events.

use super::*;

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
