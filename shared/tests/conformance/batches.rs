//! Batches and their pages.

use super::*;

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
