//! Per-issue write limits. Rules:
//! * a per-issue 429 holds writes to that issue until Jira's Retry-After;
//!   nothing else slows;
//! * its spacing is learned from the first 429: the writes to that issue
//!   Jira accepted lately, over the time from the first of them to when
//!   Jira will take the next (`(span + Retry-After) / writes`) — Jira's
//!   rate over whichever window filled, documented (20 per 2 s, 100 per
//!   30 s) or not; it never shrinks while the issue stays hot, and without
//!   a record of writes it starts at 100 ms and doubles per fresh overflow;
//! * writes to a hot issue then go one slot at a time, so the workers
//!   waiting on it do not return together; a minute after the last 429
//!   the issue is ordinary again;
//! * the limit learned (`writes` within `span + Retry-After`) is the site's,
//!   the same for every issue: a worker holds its next write to any issue
//!   it wrote that often lately, so other issues do not each pay a 429 to
//!   learn it. Windows of about the same length are one limit (the stricter
//!   estimate wins); one not confirmed for ten minutes is forgotten.

use super::{Evidence, SiteGovernor};
use crate::domain::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A write-throttled issue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct IssueHold {
    /// No write before this (Jira's Retry-After).
    pub until: Timestamp,
    /// The next free write slot.
    pub next_slot: Timestamp,
    /// Time between writes while the issue is hot.
    pub spacing_ms: i64,
    /// Slots are handed out until then (a minute after the last throttle).
    pub hot_until: Timestamp,
}

/// A per-issue write limit learned from a 429: at most `writes` within
/// `window_ms`, for every issue of the site.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssueWindow {
    pub writes: u32,
    pub window_ms: i64,
    /// The last 429 that taught or confirmed it.
    pub seen_at: Timestamp,
}

/// A learned window lives this long without a 429 confirming it.
const WINDOW_MEMORY_MS: i64 = 600_000;
/// At most this many windows per site (Jira documents two).
const MAX_WINDOWS: usize = 3;

const MIN_SPACING_MS: i64 = 50;
const MAX_SPACING_MS: i64 = 30_000;

/// The sliding window a per-issue 429 reveals, from the ages (ms before
/// now, oldest first) of the writes to that issue Jira took lately: if the
/// window held the writes from the `j`-th on, it is `age_j + wait` long and
/// holds `n - j` of them. Each `j` explains the 429; the true one allows
/// the most writes per second — newer starts count writes that came faster
/// than the limit (which is why it was hit), older ones count writes that
/// had already left it.
fn window_of(ages: &[i64], wait: Duration) -> Option<(u32, i64)> {
    let wait = wait.as_millis() as i64;
    (0..ages.len())
        .filter_map(|j| {
            let writes = u32::try_from(ages.len() - j).ok()?;
            (writes >= 2).then_some((writes, ages[j] + wait))
        })
        .max_by(|a, b| {
            let rate = |(n, w): &(u32, i64)| f64::from(*n) / (*w).max(1) as f64;
            rate(a).total_cmp(&rate(b))
        })
}

impl SiteGovernor {
    /// A per-issue 429 on `issue`, which asked to wait `wait`.
    pub(super) fn on_per_issue(
        &mut self,
        issue: &str,
        wait: Duration,
        evidence: &Evidence,
        now: Timestamp,
    ) {
        let until = now.plus(wait);
        let window = window_of(&evidence.issue_writes, wait);
        let learned = window.map(|(writes, window_ms)| {
            (window_ms / i64::from(writes)).clamp(MIN_SPACING_MS, MAX_SPACING_MS)
        });
        if let Some((writes, window_ms)) = window {
            self.learn_issue_window(writes, window_ms, now);
        }
        let hold = self.issues.entry(issue.to_string()).or_default();
        // Several workers' 429s for one overflow are one signal.
        let fresh = until > hold.until.plus(Duration::from_millis(500));
        hold.spacing_ms = match learned {
            Some(s) => s.max(hold.spacing_ms),
            None if hold.spacing_ms == 0 => 100,
            None if fresh && wait <= Duration::from_secs(2) => {
                (hold.spacing_ms * 2).clamp(100, 2000)
            }
            None => hold.spacing_ms,
        };
        hold.until = hold.until.max(until);
        hold.next_slot = hold.next_slot.max(hold.until);
        hold.hot_until = now.plus(Duration::from_secs(60));
    }

    fn learn_issue_window(&mut self, writes: u32, window_ms: i64, now: Timestamp) {
        let new = IssueWindow {
            writes,
            window_ms: window_ms.max(1),
            seen_at: now,
        };
        let rate = |w: &IssueWindow| f64::from(w.writes) / w.window_ms as f64;
        let same = self.issue_windows.iter_mut().find(|w| {
            let (a, b) = (
                w.window_ms.min(new.window_ms),
                w.window_ms.max(new.window_ms),
            );
            b < a * 3
        });
        match same {
            Some(w) if rate(&new) < rate(w) => *w = new,
            Some(w) => w.seen_at = now,
            None => {
                self.issue_windows.push(new);
                self.issue_windows.sort_by_key(|w| w.window_ms);
                self.issue_windows.truncate(MAX_WINDOWS);
            }
        }
    }

    /// Forgets learned windows nothing confirmed for a while: limits change.
    pub(super) fn prune_issue_windows(&mut self, now: Timestamp) {
        self.issue_windows
            .retain(|w| now.0 - w.seen_at.0 < WINDOW_MEMORY_MS);
    }

    /// Hands out the next write slot of a hot issue if it falls within
    /// `horizon`; None when the issue is not hot or the slot is further away
    /// (the caller waits without taking a slot it would not use).
    pub fn claim_issue_slot(
        &mut self,
        issue: &str,
        now: Timestamp,
        horizon: Duration,
    ) -> Option<Timestamp> {
        let hold = self.issues.get_mut(issue)?;
        if hold.hot_until <= now {
            return None;
        }
        let slot = now.max(hold.next_slot).max(hold.until);
        if slot > now.plus(horizon) {
            return None;
        }
        hold.next_slot = Timestamp(slot.0 + hold.spacing_ms.max(1));
        Some(slot)
    }

    /// Whether writes to `issue` go by slots.
    pub fn issue_is_hot(&self, issue: &str, now: Timestamp) -> bool {
        self.issues.get(issue).is_some_and(|h| h.hot_until > now)
    }

    /// How long until `issue` may next be written, if it is held.
    pub fn issue_wait(&self, issue: &str, now: Timestamp) -> Option<Duration> {
        let h = self.issues.get(issue)?;
        let free = h.until.max(if h.hot_until > now {
            h.next_slot
        } else {
            h.until
        });
        (free > now).then(|| now.until(free))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{call, t, throttle};
    use super::super::{CallKind, LocalView, Permit};
    use super::*;
    use crate::domain::ratelimit::LimitReason;

    fn per_issue(retry_after: u64) -> crate::domain::ratelimit::RateLimitSignal {
        throttle(Some(LimitReason::PerIssueWrite), Some(retry_after))
    }

    #[test]
    fn a_per_issue_throttle_holds_writes_to_that_issue_only() {
        let mut g = SiteGovernor::default();
        let now = Timestamp(0);
        g.on_throttle(
            &call("PUT /issue/{key}"),
            &per_issue(3),
            &Evidence::default(),
            now,
            &t(),
        );
        let mut view = LocalView::new(g, now, 1, t());
        assert!(matches!(
            view.permit(&call("PUT /issue/{key}"), now),
            Permit::Wait { .. }
        ));
        let other = CallKind {
            issue: Some("OPS-2".into()),
            ..call("PUT /issue/{key}")
        };
        assert_eq!(view.permit(&other, now), Permit::Go);
        let read = CallKind {
            write: false,
            ..call("GET /issue/{key}")
        };
        assert_eq!(
            view.permit(&read, now),
            Permit::Go,
            "reads of the held issue go on"
        );
    }

    #[test]
    fn the_spacing_is_learned_from_the_writes_jira_took_before_the_first_429() {
        let mut g = SiteGovernor::default();
        // A site taking 4 writes per 2 s to one issue (a fifth of the
        // documented 20): four went through within 400 ms, the fifth was
        // refused with Retry-After 2.
        let evidence = Evidence {
            issue_writes: vec![400, 300, 200, 100],
            ..Evidence::default()
        };
        g.on_throttle(
            &call("PUT /issue/{key}"),
            &per_issue(2),
            &evidence,
            Timestamp(400),
            &t(),
        );
        assert_eq!(
            g.issues["OPS-1"].spacing_ms, 600,
            "(400 ms + 2 s) / 4 writes"
        );
        // The longer window fills later: 20 writes over 12 s, wait 18 s.
        let longer = Evidence {
            issue_writes: (0..20).map(|i| 12_000 - i * 600).collect(),
            ..Evidence::default()
        };
        g.on_throttle(
            &call("PUT /issue/{key}"),
            &per_issue(18),
            &longer,
            Timestamp(12_400),
            &t(),
        );
        assert_eq!(g.issues["OPS-1"].spacing_ms, 1500);
        // A later, milder estimate does not shrink it while the issue is hot.
        g.on_throttle(
            &call("PUT /issue/{key}"),
            &per_issue(1),
            &evidence,
            Timestamp(40_000),
            &t(),
        );
        assert_eq!(g.issues["OPS-1"].spacing_ms, 1500);
    }

    #[test]
    fn a_limit_learned_on_one_issue_holds_writes_to_another_before_any_429() {
        let mut g = SiteGovernor::default();
        let evidence = Evidence {
            issue_writes: vec![400, 300, 200, 100],
            ..Evidence::default()
        };
        g.on_throttle(
            &call("PUT /issue/{key}"),
            &per_issue(2),
            &evidence,
            Timestamp(400),
            &t(),
        );
        assert_eq!(g.issue_windows.len(), 1);
        assert_eq!(
            (g.issue_windows[0].writes, g.issue_windows[0].window_ms),
            (4, 2400)
        );
        let mut view = LocalView::new(g, Timestamp(400), 1, t());
        let other = CallKind {
            issue: Some("OPS-2".into()),
            ..call("PUT /issue/{key}")
        };
        for ms in [1000, 1100, 1200, 1300] {
            assert_eq!(view.permit(&other, Timestamp(ms)), Permit::Go);
            view.record(
                &other,
                crate::domain::governor::Answer::Accepted,
                Timestamp(ms),
            );
        }
        match view.permit(&other, Timestamp(1400)) {
            Permit::Wait { wait, .. } => assert_eq!(wait, Duration::from_millis(2000)),
            Permit::Go => panic!("a fifth write within the learned window went"),
        }
        assert_eq!(view.permit(&other, Timestamp(3400)), Permit::Go);
    }

    #[test]
    fn the_window_is_the_one_that_allows_the_most_writes_per_second() {
        // Writes every 2 s, then four within 1.5 s; the fifth refused with
        // Retry-After 1: Jira's window is 4 writes per 2 s (ceil'd: 2.6 s).
        let ages = [8_000, 6_000, 4_000, 1_600, 1_100, 600, 100];
        assert_eq!(window_of(&ages, Duration::from_secs(1)), Some((4, 2_600)));
        assert_eq!(window_of(&[100], Duration::from_secs(1)), None);
    }

    #[test]
    fn windows_of_about_one_length_are_one_limit_and_the_stricter_wins() {
        let mut g = SiteGovernor::default();
        g.learn_issue_window(4, 2400, Timestamp(0));
        g.learn_issue_window(3, 2100, Timestamp(10));
        g.learn_issue_window(20, 30_000, Timestamp(20));
        let windows: Vec<_> = g
            .issue_windows
            .iter()
            .map(|w| (w.writes, w.window_ms))
            .collect();
        assert_eq!(windows, [(3, 2100), (20, 30_000)]);
        g.prune_issue_windows(Timestamp(600_015));
        assert_eq!(
            g.issue_windows.len(),
            1,
            "the unconfirmed short window is forgotten"
        );
    }

    #[test]
    fn writes_to_a_hot_issue_are_handed_out_one_slot_at_a_time() {
        let mut g = SiteGovernor::default();
        let c = call("PUT /issue/{key}");
        g.on_throttle(&c, &per_issue(2), &Evidence::default(), Timestamp(0), &t());
        let horizon = Duration::from_secs(1);
        assert_eq!(
            g.claim_issue_slot("OPS-1", Timestamp(0), horizon),
            None,
            "held for 2 s: no slot within 1 s"
        );
        let slots: Vec<_> = (0..3)
            .map(|_| g.claim_issue_slot("OPS-1", Timestamp(1500), horizon))
            .collect();
        assert_eq!(
            slots,
            [
                Some(Timestamp(2000)),
                Some(Timestamp(2100)),
                Some(Timestamp(2200))
            ]
        );
        assert_eq!(
            g.claim_issue_slot("OPS-2", Timestamp(1500), horizon),
            None,
            "other issues are not paced"
        );
        // A second overflow with no record of writes doubles the spacing.
        g.on_throttle(
            &c,
            &per_issue(1),
            &Evidence::default(),
            Timestamp(3000),
            &t(),
        );
        assert_eq!(g.issues["OPS-1"].spacing_ms, 200);
        // A minute after the last throttle the issue is ordinary again.
        assert_eq!(
            g.claim_issue_slot("OPS-1", Timestamp(64_000), horizon),
            None
        );
        g.prune(Timestamp(64_000));
        assert!(g.issues.is_empty());
    }

    #[test]
    fn holds_that_have_passed_are_pruned() {
        let mut g = SiteGovernor::default();
        g.issues.insert(
            "OPS-1".into(),
            IssueHold {
                until: Timestamp(5),
                hot_until: Timestamp(5),
                ..Default::default()
            },
        );
        g.issues.insert(
            "OPS-2".into(),
            IssueHold {
                until: Timestamp(5),
                hot_until: Timestamp(50),
                ..Default::default()
            },
        );
        g.prune(Timestamp(10));
        assert_eq!(g.issues.keys().collect::<Vec<_>>(), ["OPS-2"]);
    }
}
