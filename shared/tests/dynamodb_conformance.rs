//! The shared store and queue behaviour, on the DynamoDB and SQS adapters,
//! against a real local emulator (moto).

#![cfg(feature = "aws")]

mod conformance;
#[path = "support/moto.rs"]
mod moto;

use std::time::Duration;
use tollgate::adapters::dynamodb::DynamoStore;
use tollgate::adapters::sqs::SqsQueue;

/// SQS counts visibility and delays in whole seconds.
const TICK: Duration = Duration::from_secs(1);

/// A fresh table; every handle from `open` shares it, with its own client
/// (its own connections), as separate Lambda instances would.
async fn table() -> (String, impl Fn() -> std::future::Ready<DynamoStore>) {
    let config = moto::sdk_config().await;
    let name = moto::unique("tollgate");
    DynamoStore::create_table(&aws_sdk_dynamodb::Client::new(&config), &name)
        .await
        .unwrap();
    let table = name.clone();
    (name, move || {
        std::future::ready(DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&config),
            table.clone(),
        ))
    })
}

async fn store() -> DynamoStore {
    let (_, open) = table().await;
    open().await
}

async fn queues() -> (impl Fn() -> std::future::Ready<SqsQueue>, SqsQueue) {
    let config = moto::sdk_config().await;
    let client = aws_sdk_sqs::Client::new(&config);
    let interactive = SqsQueue::create_queue(&client, &moto::unique("interactive"))
        .await
        .unwrap();
    let bulk = SqsQueue::create_queue(&client, &moto::unique("bulk"))
        .await
        .unwrap();
    let q = SqsQueue::new(client, interactive.clone(), bulk.clone());
    let open = move || {
        std::future::ready(SqsQueue::new(
            aws_sdk_sqs::Client::new(&config),
            interactive.clone(),
            bulk.clone(),
        ))
    };
    (open, q)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn the_first_of_many_racing_writers_wins_the_dedup_id() {
    let (_, open) = table().await;
    conformance::the_first_of_many_racing_writers_wins_the_dedup_id(open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn only_one_of_many_racing_workers_holds_a_lease() {
    let (_, open) = table().await;
    conformance::only_one_of_many_racing_workers_holds_a_lease(open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn each_message_goes_to_one_of_many_racing_receivers() {
    let (open, _) = queues().await;
    conformance::each_message_goes_to_one_of_many_racing_receivers(open).await;
}

#[tokio::test]
async fn a_conditional_update_fails_when_the_state_moved() {
    conformance::a_conditional_update_fails_when_the_state_moved(&store().await).await;
}

#[tokio::test]
async fn a_job_round_trips_every_field() {
    conformance::a_job_round_trips_every_field(&store().await).await;
}

#[tokio::test]
async fn an_entitys_jobs_are_listed_in_admission_order() {
    conformance::an_entitys_jobs_are_listed_in_admission_order(&store().await).await;
}

#[tokio::test]
async fn batches_keep_their_pause_and_list_their_jobs() {
    conformance::batches_keep_their_pause_and_list_their_jobs(&store().await).await;
}

#[tokio::test]
async fn batch_posts_advance_once_per_page() {
    conformance::batch_posts_advance_once_per_page(&store().await).await;
}

#[tokio::test]
async fn a_lease_expires_and_can_be_renewed_by_its_holder() {
    conformance::a_lease_expires_and_can_be_renewed_by_its_holder(&store().await).await;
}

#[tokio::test]
async fn fence_refuses_a_worker_whose_lease_was_taken_over() {
    conformance::fence_refuses_a_worker_whose_lease_was_taken_over(&store().await).await;
}

#[tokio::test]
async fn field_revisions_only_rise() {
    conformance::field_revisions_only_rise(&store().await).await;
}

#[tokio::test]
async fn a_rejection_keeps_its_context_and_is_discarded_once() {
    conformance::a_rejection_keeps_its_context_and_is_discarded_once(&store().await).await;
}

#[tokio::test]
async fn a_decision_and_the_expiry_exclude_each_other() {
    conformance::a_decision_and_the_expiry_exclude_each_other(&store().await).await;
}

#[tokio::test]
async fn open_approvals_are_paged_oldest_first() {
    conformance::open_approvals_are_paged_oldest_first(&store().await).await;
}

#[tokio::test]
async fn a_link_has_one_creator_and_records_its_issue() {
    conformance::a_link_has_one_creator_and_records_its_issue(&store().await).await;
}

#[tokio::test]
async fn unenqueued_jobs_are_listed_until_marked_sent() {
    conformance::unenqueued_jobs_are_listed_until_marked_sent(&store().await).await;
}

#[tokio::test]
async fn jobs_are_listed_by_state_newest_first() {
    conformance::jobs_are_listed_by_state_newest_first(&store().await).await;
}

#[tokio::test]
async fn governor_rows_are_written_with_optimistic_versions() {
    conformance::governor_rows_are_written_with_optimistic_versions(&store().await).await;
}

#[tokio::test]
async fn an_unacknowledged_message_comes_back_with_its_receive_count() {
    let (_, q) = queues().await;
    conformance::an_unacknowledged_message_comes_back_with_its_receive_count(&q, TICK).await;
}

#[tokio::test]
async fn a_delayed_message_stays_invisible_until_its_delay_ends() {
    let (_, q) = queues().await;
    conformance::a_delayed_message_stays_invisible_until_its_delay_ends(&q, TICK).await;
}

#[tokio::test]
async fn interactive_messages_overtake_bulk_ones() {
    let (_, q) = queues().await;
    conformance::interactive_messages_overtake_bulk_ones(&q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn only_one_of_many_racing_deciders_decides() {
    let (_, open) = table().await;
    conformance::only_one_of_many_racing_deciders_decides(open).await;
}

#[tokio::test]
async fn an_approval_round_trips_and_is_found_by_its_job() {
    conformance::an_approval_round_trips_and_is_found_by_its_job(&store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn racing_bumps_all_count_and_windows_are_apart() {
    let (_, open) = table().await;
    conformance::racing_bumps_all_count_and_windows_are_apart(open).await;
}

#[tokio::test]
async fn a_rejection_is_kept_listed_newest_first_and_resubmitted_once() {
    conformance::a_rejection_is_kept_listed_newest_first_and_resubmitted_once(&store().await).await;
}

#[tokio::test]
async fn hotspot_figures_add_up_per_hour() {
    conformance::hotspot_figures_add_up_per_hour(&store().await).await;
}

#[tokio::test]
async fn a_chunk_approval_is_found_from_each_of_its_jobs() {
    conformance::a_chunk_approval_is_found_from_each_of_its_jobs(&store().await).await;
}

/// Retention never deletes work that may still run: a job carries the
/// table's TTL attribute only once it is over (and loses it if re-run).
#[tokio::test]
async fn a_job_expires_only_once_it_is_over() {
    use tollgate::domain::job::JobState;
    use tollgate::ports::{Admission, JobStore};
    let config = moto::sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let (table, open) = table().await;
    let store = open().await;
    let ttl_of = |id: String| {
        let (client, table) = (client.clone(), table.clone());
        async move {
            client
                .get_item()
                .table_name(table)
                .key(
                    "pk",
                    aws_sdk_dynamodb::types::AttributeValue::S(format!("JOB#{id}")),
                )
                .key(
                    "sk",
                    aws_sdk_dynamodb::types::AttributeValue::S("JOB".into()),
                )
                .consistent_read(true)
                .send()
                .await
                .unwrap()
                .item
                .unwrap()
                .contains_key(tollgate::adapters::dynamodb::TTL_ATTRIBUTE)
        }
    };
    let mut j = conformance::job("ttl", "ttl-1");
    assert!(matches!(
        store.admit(&j, &[], None).await.unwrap(),
        Admission::New
    ));
    assert!(!ttl_of(j.id.to_string()).await, "queued: kept");
    j.state = JobState::Running;
    assert!(store.update(&j, JobState::Queued, None).await.unwrap());
    j.state = JobState::Exhausted;
    assert!(store.update(&j, JobState::Running, None).await.unwrap());
    assert!(
        !ttl_of(j.id.to_string()).await,
        "exhausted: waits for a re-run"
    );
    j.state = JobState::Queued;
    assert!(store.update(&j, JobState::Exhausted, None).await.unwrap());
    j.state = JobState::Running;
    assert!(store.update(&j, JobState::Queued, None).await.unwrap());
    j.state = JobState::Succeeded;
    assert!(store.update(&j, JobState::Running, None).await.unwrap());
    assert!(
        ttl_of(j.id.to_string()).await,
        "over: retention counts from now"
    );
}

/// The emulator's transactions stay all-or-nothing with the harness's
/// cheaper rollback (see `support/moto.rs`): a put and an update applied
/// before a failed condition are undone, and nothing else is touched.
#[tokio::test]
async fn the_emulator_undoes_a_transaction_whose_last_condition_fails() {
    use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Put, TransactWriteItem, Update};
    let config = moto::sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let name = moto::unique("rollback");
    DynamoStore::create_table(&client, &name).await.unwrap();
    let s = |v: &str| AttributeValue::S(v.into());
    for key in ["kept", "updated"] {
        client
            .put_item()
            .table_name(&name)
            .item("pk", s(key))
            .item("sk", s("X"))
            .item("v", s("before"))
            .send()
            .await
            .unwrap();
    }
    let put = Put::builder()
        .table_name(&name)
        .item("pk", s("new"))
        .item("sk", s("X"))
        .build()
        .unwrap();
    let update = Update::builder()
        .table_name(&name)
        .key("pk", s("updated"))
        .key("sk", s("X"))
        .update_expression("SET v = :v")
        .expression_attribute_values(":v", s("after"))
        .build()
        .unwrap();
    let failing = ConditionCheck::builder()
        .table_name(&name)
        .key("pk", s("kept"))
        .key("sk", s("X"))
        .condition_expression("v = :other")
        .expression_attribute_values(":other", s("something else"))
        .build()
        .unwrap();
    let r = client
        .transact_write_items()
        .transact_items(TransactWriteItem::builder().put(put).build())
        .transact_items(TransactWriteItem::builder().update(update).build())
        .transact_items(
            TransactWriteItem::builder()
                .condition_check(failing)
                .build(),
        )
        .send()
        .await;
    assert!(r.is_err(), "the condition fails");
    let get = |key: &'static str| {
        client
            .get_item()
            .table_name(&name)
            .key("pk", s(key))
            .key("sk", s("X"))
            .consistent_read(true)
            .send()
    };
    assert!(
        get("new").await.unwrap().item.is_none(),
        "the put is undone"
    );
    let updated = get("updated").await.unwrap().item.unwrap();
    assert_eq!(updated["v"], s("before"), "the update is undone");
    assert_eq!(get("kept").await.unwrap().item.unwrap()["v"], s("before"));
}

#[tokio::test]
async fn a_large_rejected_body_round_trips_in_part() {
    conformance::a_large_rejected_body_round_trips_in_part(&store().await).await;
}

#[tokio::test]
async fn the_census_counts_jobs_by_state_open_approvals_and_open_rejections() {
    conformance::the_census_counts_jobs_by_state_open_approvals_and_open_rejections(&store().await)
        .await;
}

#[tokio::test]
async fn the_queue_depth_counts_visible_delayed_and_taken_messages() {
    let (_, q) = queues().await;
    conformance::the_queue_depth_counts_visible_delayed_and_taken_messages(&q).await;
}

#[tokio::test]
async fn minute_figures_add_up_and_are_read_by_range() {
    conformance::minute_figures_add_up_and_are_read_by_range(&store().await).await;
}
