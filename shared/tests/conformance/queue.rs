//! The work queue: one receiver per message, visibility, delays, priority, depth.

use super::*;

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
