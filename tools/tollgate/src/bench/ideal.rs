//! The physical limit: how fast a perfect client — no latency, perfect
//! knowledge of every limit, no wasted request — could make the calls a
//! workload needs under a limit profile. Computed by stepping a model of
//! the limits in 1 ms ticks; the benchmark reports goodput against it.
//!
//! The calls are the cheapest plan the limits allow: creates in bulk (50 a
//! call), one call per edit, comment and transition — so no client can
//! beat it and goodput never exceeds 1.

use jira_sim::limits::Limits;
use std::collections::{BTreeMap, VecDeque};

/// Calls of one kind the workload needs.
#[derive(Debug, Clone)]
pub struct Need {
    pub method: &'static str,
    pub endpoint: &'static str,
    pub issue: Option<String>,
    pub count: usize,
}

/// A change of limits `at` seconds into the run.
pub struct Shift {
    pub at: f64,
    pub limits: Limits,
}

/// Seconds from `start_unix` until the last needed call could be admitted,
/// the limits changing as `shifts` (in order of `at`) say.
pub fn ideal_makespan(needs: &[Need], limits: &Limits, start_unix: f64, shifts: &[Shift]) -> f64 {
    let dt = 0.001;
    let mut left: Vec<usize> = needs.iter().map(|n| n.count).collect();
    let mut tokens: BTreeMap<String, f64> = BTreeMap::new();
    let mut issue_writes: BTreeMap<String, VecDeque<f64>> = BTreeMap::new();
    let mut window = i64::MIN;
    let mut spent = 0u64;
    let mut t = 0.0f64;
    let mut last = 0.0f64;
    while left.iter().any(|&n| n > 0) && t < 36_000.0 {
        let l = shifts
            .iter()
            .rev()
            .find(|s| t >= s.at)
            .map_or(limits, |s| &s.limits);
        let now = start_unix + t;
        let w = l.window_seconds.max(0.001);
        let index = (now / w).floor() as i64;
        if index != window {
            window = index;
            spent = 0;
        }
        // One call at a time, round the needs, the issue with the most
        // writes left first: draining one issue while others wait would
        // leave the last writes queued on a few issues' windows.
        let mut order: Vec<usize> = (0..needs.len()).filter(|&i| left[i] > 0).collect();
        let mut by_issue: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, n) in needs.iter().enumerate() {
            if let Some(issue) = &n.issue {
                *by_issue.entry(issue).or_default() += left[i];
            }
        }
        let on_issue = |i: usize| {
            needs[i]
                .issue
                .as_deref()
                .map_or(0, |issue| by_issue.get(issue).copied().unwrap_or(0))
        };
        order.sort_by_key(|&i| std::cmp::Reverse(on_issue(i)));
        let mut progress = true;
        while progress {
            progress = false;
            for &i in &order {
                let need = &needs[i];
                if left[i] == 0 || (l.quota_points > 0 && spent >= l.quota_points) {
                    continue;
                }
                let rate = l.burst_rate(need.method, need.endpoint);
                let tok = tokens
                    .entry(format!("{} {}", need.method, need.endpoint))
                    .or_insert(if rate > 0.0 { rate } else { f64::INFINITY });
                if rate > 0.0 && *tok < 1.0 {
                    continue;
                }
                if let (true, Some(issue)) = (l.per_issue, &need.issue) {
                    let q = issue_writes.entry(issue.clone()).or_default();
                    while q.front().is_some_and(|&s| t - s > l.long_seconds) {
                        q.pop_front();
                    }
                    let short = q.iter().filter(|&&s| t - s <= l.short_seconds).count();
                    if short >= l.short_writes || q.len() >= l.long_writes {
                        continue;
                    }
                    q.push_back(t);
                }
                left[i] -= 1;
                spent += 1;
                if rate > 0.0 {
                    *tok -= 1.0;
                }
                last = t;
                progress = true;
            }
        }
        // Each bucket refills once a tick, however many needs share it.
        for (key, tok) in tokens.iter_mut() {
            let (method, endpoint) = key.split_once(' ').unwrap_or((key.as_str(), ""));
            let rate = l.burst_rate(method, endpoint);
            *tok = if rate > 0.0 {
                (*tok + rate * dt).min(rate)
            } else {
                f64::INFINITY
            };
        }
        t += dt;
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(n: usize) -> Vec<Need> {
        vec![Need {
            method: "POST",
            endpoint: "/rest/api/3/issue",
            issue: None,
            count: n,
        }]
    }

    #[test]
    fn a_burst_limit_alone_takes_the_calls_beyond_one_bucket_at_its_rate() {
        let l = Limits {
            burst_get_post: 100.0,
            ..Limits::default()
        };
        let t = ideal_makespan(&need(1100), &l, 0.0, &[]);
        assert!((t - 10.0).abs() < 0.05, "{t}");
    }

    #[test]
    fn a_route_with_a_rate_of_its_own_is_held_to_it_and_a_change_applies_at_once() {
        let mut l = Limits {
            burst_get_post: 100.0,
            ..Limits::default()
        };
        l.burst_routes.insert("POST /rest/api/3/issue".into(), 10.0);
        // 10 from the bucket, then 10/s: 90 more take 9 s.
        let t = ideal_makespan(&need(100), &l, 0.0, &[]);
        assert!((t - 9.0).abs() < 0.05, "{t}");
        let halved = Shift {
            at: 4.0,
            limits: l.scaled(0.5),
        };
        // 10 + 40 by 4 s, then 5/s for the remaining 50.
        let t = ideal_makespan(&need(100), &l, 0.0, &[halved]);
        assert!((t - 14.0).abs() < 0.1, "{t}");
    }

    #[test]
    fn needs_sharing_a_bucket_share_its_rate() {
        let l = Limits {
            burst_get_post: 10.0,
            ..Limits::default()
        };
        let on = |issue: &str| Need {
            method: "POST",
            endpoint: "/rest/api/3/issue/{key}/comment",
            issue: Some(issue.into()),
            count: 50,
        };
        // 100 comments over two issues, one bucket of 10/s: 10 at once, 9 s more.
        let t = ideal_makespan(&[on("OPS-1"), on("OPS-2")], &l, 0.0, &[]);
        assert!((t - 9.0).abs() < 0.05, "{t}");
    }

    #[test]
    fn a_quota_makes_work_wait_for_the_next_windows() {
        let l = Limits {
            quota_points: 100,
            window_seconds: 10.0,
            ..Limits::default()
        };
        // Starting 4 s into a window: 100 now, 100 at 6 s, the last 50 at 16 s.
        let t = ideal_makespan(&need(250), &l, 4.0, &[]);
        assert!((t - 16.0).abs() < 0.01, "{t}");
    }

    #[test]
    fn per_issue_writes_are_bounded_by_both_windows() {
        let l = Limits {
            per_issue: true,
            ..Limits::default()
        };
        let needs = vec![Need {
            method: "PUT",
            endpoint: "/rest/api/3/issue/{key}",
            issue: Some("OPS-1".into()),
            count: 120,
        }];
        let t = ideal_makespan(&needs, &l, 0.0, &[]);
        // 100 within the first 30 s (20 per 2 s), the rest after the first leave.
        assert!(t > 30.0 && t < 33.0, "{t}");
    }
}
