//! The shared store and queue behaviour, on the embedded SQLite adapter.

#![cfg(feature = "sqlite")]

mod conformance;

use std::path::PathBuf;
use std::time::Duration;
use tollgate::adapters::sqlite::SqliteDb;

/// The queue's time granularity in these tests.
const TICK: Duration = Duration::from_millis(100);

struct TempDb(PathBuf);

impl TempDb {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tollgate-conf-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDb(dir.join("t.db"))
    }
    fn open(&self) -> SqliteDb {
        SqliteDb::open(&self.0).unwrap()
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn the_first_of_many_racing_writers_wins_the_dedup_id() {
    let db = TempDb::new("dedup");
    conformance::the_first_of_many_racing_writers_wins_the_dedup_id(|| async { db.open() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn only_one_of_many_racing_workers_holds_a_lease() {
    let db = TempDb::new("lease-race");
    conformance::only_one_of_many_racing_workers_holds_a_lease(|| async { db.open() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn each_message_goes_to_one_of_many_racing_receivers() {
    let db = TempDb::new("queue-race");
    conformance::each_message_goes_to_one_of_many_racing_receivers(|| async { db.open() }).await;
}

#[tokio::test]
async fn a_conditional_update_fails_when_the_state_moved() {
    let db = TempDb::new("cond");
    conformance::a_conditional_update_fails_when_the_state_moved(&db.open()).await;
}

#[tokio::test]
async fn a_job_round_trips_every_field() {
    let db = TempDb::new("round");
    conformance::a_job_round_trips_every_field(&db.open()).await;
}

#[tokio::test]
async fn an_entitys_jobs_are_listed_in_admission_order() {
    let db = TempDb::new("rev");
    conformance::an_entitys_jobs_are_listed_in_admission_order(&db.open()).await;
}

#[tokio::test]
async fn batches_keep_their_pause_and_list_their_jobs() {
    let db = TempDb::new("batches");
    conformance::batches_keep_their_pause_and_list_their_jobs(&db.open()).await;
}

#[tokio::test]
async fn batch_posts_advance_once_per_page() {
    let db = TempDb::new("batch-posts");
    conformance::batch_posts_advance_once_per_page(&db.open()).await;
}

#[tokio::test]
async fn a_lease_expires_and_can_be_renewed_by_its_holder() {
    let db = TempDb::new("lease");
    conformance::a_lease_expires_and_can_be_renewed_by_its_holder(&db.open()).await;
}

#[tokio::test]
async fn fence_refuses_a_worker_whose_lease_was_taken_over() {
    let db = TempDb::new("fence");
    conformance::fence_refuses_a_worker_whose_lease_was_taken_over(&db.open()).await;
}

#[tokio::test]
async fn field_revisions_only_rise() {
    let db = TempDb::new("revisions");
    conformance::field_revisions_only_rise(&db.open()).await;
}

#[tokio::test]
async fn a_rejection_keeps_its_context_and_is_discarded_once() {
    let db = TempDb::new("rejection-context");
    conformance::a_rejection_keeps_its_context_and_is_discarded_once(&db.open()).await;
}

#[tokio::test]
async fn a_decision_and_the_expiry_exclude_each_other() {
    let db = TempDb::new("decide-expire");
    conformance::a_decision_and_the_expiry_exclude_each_other(&db.open()).await;
}

#[tokio::test]
async fn open_approvals_are_paged_oldest_first() {
    let db = TempDb::new("approvals-paged");
    conformance::open_approvals_are_paged_oldest_first(&db.open()).await;
}

#[tokio::test]
async fn a_link_has_one_creator_and_records_its_issue() {
    let db = TempDb::new("link");
    conformance::a_link_has_one_creator_and_records_its_issue(&db.open()).await;
}

#[tokio::test]
async fn an_unacknowledged_message_comes_back_with_its_receive_count() {
    let db = TempDb::new("redeliver");
    conformance::an_unacknowledged_message_comes_back_with_its_receive_count(&db.open(), TICK)
        .await;
}

#[tokio::test]
async fn a_delayed_message_stays_invisible_until_its_delay_ends() {
    let db = TempDb::new("delay");
    conformance::a_delayed_message_stays_invisible_until_its_delay_ends(&db.open(), TICK).await;
}

#[tokio::test]
async fn interactive_messages_overtake_bulk_ones() {
    let db = TempDb::new("prio");
    conformance::interactive_messages_overtake_bulk_ones(&db.open()).await;
}

#[tokio::test]
async fn unenqueued_jobs_are_listed_until_marked_sent() {
    let db = TempDb::new("outbox");
    conformance::unenqueued_jobs_are_listed_until_marked_sent(&db.open()).await;
}

#[tokio::test]
async fn jobs_are_listed_by_state_newest_first() {
    let db = TempDb::new("list");
    conformance::jobs_are_listed_by_state_newest_first(&db.open()).await;
}

#[tokio::test]
async fn governor_rows_are_written_with_optimistic_versions() {
    let db = TempDb::new("governor");
    conformance::governor_rows_are_written_with_optimistic_versions(&db.open()).await;
}

#[tokio::test]
async fn data_survives_reopening_the_file() {
    use tollgate::ports::JobStore;
    let db = TempDb::new("durable");
    let j = conformance::job("durable", "k");
    db.open().admit(&j, &[], None).await.unwrap();
    assert_eq!(db.open().job(&j.id).await.unwrap().unwrap(), j);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn only_one_of_many_racing_deciders_decides() {
    let db = TempDb::new("decide-race");
    conformance::only_one_of_many_racing_deciders_decides(|| async { db.open() }).await;
}

#[tokio::test]
async fn an_approval_round_trips_and_is_found_by_its_job() {
    let db = TempDb::new("approval");
    conformance::an_approval_round_trips_and_is_found_by_its_job(&db.open()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn racing_bumps_all_count_and_windows_are_apart() {
    let db = TempDb::new("counters");
    conformance::racing_bumps_all_count_and_windows_are_apart(|| async { db.open() }).await;
}

#[tokio::test]
async fn a_rejection_is_kept_listed_newest_first_and_resubmitted_once() {
    let db = TempDb::new("rejected");
    conformance::a_rejection_is_kept_listed_newest_first_and_resubmitted_once(&db.open()).await;
}

#[tokio::test]
async fn hotspot_figures_add_up_per_hour() {
    let db = TempDb::new("stats");
    conformance::hotspot_figures_add_up_per_hour(&db.open()).await;
}

#[tokio::test]
async fn a_chunk_approval_is_found_from_each_of_its_jobs() {
    let db = TempDb::new("chunk-approval");
    conformance::a_chunk_approval_is_found_from_each_of_its_jobs(&db.open()).await;
}

#[tokio::test]
async fn a_large_rejected_body_round_trips_in_part() {
    let db = TempDb::new("large-rejection");
    conformance::a_large_rejected_body_round_trips_in_part(&db.open()).await;
}

#[tokio::test]
async fn the_census_counts_jobs_by_state_open_approvals_and_open_rejections() {
    let db = TempDb::new("census");
    conformance::the_census_counts_jobs_by_state_open_approvals_and_open_rejections(&db.open())
        .await;
}

#[tokio::test]
async fn the_queue_depth_counts_visible_delayed_and_taken_messages() {
    let db = TempDb::new("queue-depth");
    conformance::the_queue_depth_counts_visible_delayed_and_taken_messages(&db.open()).await;
}

#[tokio::test]
async fn minute_figures_add_up_and_are_read_by_range() {
    let db = TempDb::new("minute-stats");
    let store = db.open();
    conformance::minute_figures_add_up_and_are_read_by_range(&store).await;
}

#[tokio::test]
async fn old_minutes_are_deleted_on_the_next_write() {
    use tollgate::domain::stats::{CallOutcome, CallStats, MINUTES_KEPT};
    use tollgate::ports::StatsStore;
    let db = TempDb::new("minute-prune");
    let store = db.open();
    let mut a = CallStats::default();
    a.record("GET /x", None, CallOutcome::Answered { points: 1 }, None);
    store.add_minute_stats(1_000, &a).await.unwrap();
    store
        .add_minute_stats(1_000 + MINUTES_KEPT + 1, &a)
        .await
        .unwrap();
    assert!(store.minute_stats(0, 1_000).await.unwrap().is_empty());
}

/// A store whose first save of the governor row loses to another writer —
/// a real write through a second handle, as a worker's would be.
struct Raced {
    store: SqliteDb,
    other: SqliteDb,
    raced: std::sync::atomic::AtomicBool,
}

impl tollgate::ports::GovernorStore for Raced {
    async fn load_governor(
        &self,
        site: &str,
    ) -> Result<(tollgate::domain::governor::SiteGovernor, u64), tollgate::ports::StoreError> {
        self.store.load_governor(site).await
    }

    async fn save_governor(
        &self,
        site: &str,
        state: &tollgate::domain::governor::SiteGovernor,
        expected: u64,
    ) -> Result<bool, tollgate::ports::StoreError> {
        if !self.raced.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let (mut theirs, version) = self.other.load_governor(site).await?;
            theirs.unexplained += 1;
            assert!(self.other.save_governor(site, &theirs, version).await?);
        }
        self.store.save_governor(site, state, expected).await
    }
}

#[tokio::test]
async fn health_notices_are_recorded_as_sent_through_a_lost_race_and_not_sent_again() {
    use tollgate::domain::degraded::HealthRules;
    use tollgate::ports::GovernorStore;
    let db = TempDb::new("announce-race");
    let site = "https://example.atlassian.net";
    let store = db.open();
    let (mut g, v) = store.load_governor(site).await.unwrap();
    let rules = HealthRules::default();
    for i in 0..rules.failures {
        g.health
            .on_failure(tollgate::domain::time::Timestamp(1_000 + i as i64), &rules);
    }
    assert!(g.health.is_degraded());
    assert!(store.save_governor(site, &g, v).await.unwrap());
    let raced = Raced {
        store: db.open(),
        other: db.open(),
        raced: Default::default(),
    };
    let sent = counting::Count::default();
    let n = tollgate::app::governor::announce_health(&raced, site, &sent)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let again = tollgate::app::governor::announce_health(&raced, site, &sent)
        .await
        .unwrap();
    assert_eq!(again, 0, "recorded as sent despite the lost race");
    assert_eq!(sent.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    let (after, _) = store.load_governor(site).await.unwrap();
    assert_eq!(after.unexplained, 1, "the other writer's change is kept");
}

mod counting {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tollgate::domain::notice::Notice;
    use tollgate::ports::{Notifier, NotifyError};

    /// Counts what it is asked to send.
    #[derive(Default)]
    pub struct Count(pub AtomicUsize);

    impl Notifier for Count {
        async fn notify(&self, _: &Notice) -> Result<(), NotifyError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }
}
