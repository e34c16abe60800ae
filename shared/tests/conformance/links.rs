//! Links and field revisions.

use super::*;

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
