//! Counters, hotspot figures per hour and minute, the census.

use super::*;

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
