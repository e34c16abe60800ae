//! The points quota. Rules:
//! * a quota 429 (`jira-quota-*`, `jira-cost-based`) pauses every worker of
//!   the site until the reset Jira names (a minute when it names none);
//! * every answer's `RateLimit` (or `X-RateLimit-Remaining`) is this
//!   worker's view of the points left; the reset is the earliest bound of
//!   every observation in the window;
//! * when few points are left, `bulk` work stops at a reserve so that
//!   `interactive` work always finds points until the reset. The reserve
//!   decays over the window's last 30 %: when the work left is smaller than
//!   the points left, even pacing only delays it, and a reserve nobody
//!   needed is spent rather than lost.
//! * the quota Jira announces (`RateLimit-Policy`'s `q` and `w`, else
//!   `X-RateLimit-Limit` over an hour) is kept in the shared row when it
//!   changes — rarely — so the console can draw points against it.

use super::{LocalView, SiteGovernor};
use crate::domain::ratelimit::{LimitReason, RateLimitSignal};
use crate::domain::time::Timestamp;
use std::time::Duration;

/// A worker's view of the quota, from the freshest `RateLimit` it read.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct QuotaEstimate {
    pub remaining: u64,
    pub limit: u64,
    /// Earliest reset consistent with every observation this window.
    pub reset_at: Timestamp,
    /// Calls this worker made since the observation.
    pub spent_since: u64,
    /// The quota window (`RateLimit-Policy` `w`), for the reserve's decay.
    pub window: Duration,
}

impl QuotaEstimate {
    /// Points left for the site, assuming every worker spent as this one
    /// did since the observation (they share the pace equally) and that the
    /// others each have a call in flight that the observation did not see.
    pub fn left(&self, workers: u64) -> u64 {
        let others_in_flight = workers.saturating_sub(1);
        self.remaining
            .saturating_sub(self.spent_since.saturating_mul(workers))
            .saturating_sub(others_in_flight)
    }
}

/// A points quota as Jira announced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnnouncedQuota {
    pub points: u64,
    /// The quota's window, in seconds.
    pub window_s: u64,
}

/// Atlassian's points quota counts per hour; `X-RateLimit-Limit` alone
/// does not say its window.
const HOUR_S: u64 = 3_600;

/// The quota an answer announces, if any.
pub fn announced_quota(signal: &RateLimitSignal) -> Option<AnnouncedQuota> {
    match (&signal.policy, signal.limit) {
        (Some(p), _) if p.quota > 0 && !p.window.is_zero() => Some(AnnouncedQuota {
            points: p.quota,
            window_s: p.window.as_secs().max(1),
        }),
        (_, Some(limit)) if limit > 0 => Some(AnnouncedQuota {
            points: limit,
            window_s: HOUR_S,
        }),
        _ => None,
    }
}

impl SiteGovernor {
    /// A quota 429: the site waits for the reset. Returns the wait.
    pub(super) fn on_quota(
        &mut self,
        reason: &LimitReason,
        signal: &RateLimitSignal,
        now: Timestamp,
    ) -> Duration {
        let wait = signal.wait_hint(now).unwrap_or(Duration::from_secs(60));
        let until = now.plus(wait);
        if until > self.paused_until {
            self.paused_until = until;
            self.pause_reason = Some(reason.as_str().to_string());
        }
        self.note_pause(now, until, reason.as_str());
        self.unexplained = 0;
        wait
    }
}

impl LocalView {
    pub fn reserve(&self, limit: u64) -> u64 {
        ((limit as f64 * self.tunables.reserve_fraction) as u64).max(self.tunables.reserve_min)
    }

    /// Learns the quota from a response. When `bulk` work should now pause
    /// site-wide, returns until when (the caller shares it).
    pub fn observe_quota(&mut self, signal: &RateLimitSignal, now: Timestamp) -> Option<Timestamp> {
        let (remaining, reset_in, limit) = match (&signal.state, signal.remaining) {
            (Some(st), _) => (
                st.remaining,
                Some(st.reset_in),
                signal.policy.as_ref().map(|p| p.quota).or(signal.limit),
            ),
            (None, Some(r)) => (r, signal.reset_at.map(|at| now.until(at)), signal.limit),
            (None, None) => return None,
        };
        let reset_in = reset_in?;
        // `t` is rounded up to whole seconds: each observation bounds the
        // reset from above; the smallest bound of the window is the best.
        let upper = now.plus(reset_in);
        let limit =
            limit.unwrap_or_else(|| self.quota.map_or(remaining, |q| q.limit.max(remaining)));
        let same_window = self.quota.is_some_and(|q| upper.0 - 1000 <= q.reset_at.0);
        let reset_at = match self.quota {
            Some(q) if same_window => q.reset_at.min(upper),
            _ => upper,
        };
        let window = signal
            .policy
            .as_ref()
            .map_or(Duration::from_secs(3600), |p| p.window);
        let q = QuotaEstimate {
            remaining,
            limit,
            reset_at,
            spent_since: 0,
            window,
        };
        self.quota = Some(q);
        let crossed = remaining <= self.floor(&q, now);
        crossed
            .then(|| self.bulk_resume_at(&q, remaining))
            .filter(|at| *at > self.shared.bulk_paused_until)
    }

    /// The points `bulk` work leaves for `interactive` work: the full
    /// reserve for most of the window, then decaying to nothing over its
    /// last 30 %, so a reserve nobody needed is spent rather than lost.
    pub fn floor(&self, q: &QuotaEstimate, now: Timestamp) -> u64 {
        let base = self.reserve(q.limit) as f64;
        let tail = (q.window.as_millis() as f64 * 0.3).max(1.0);
        let left_ms = (q.reset_at.0 - now.0).max(0) as f64;
        (base * (left_ms / tail).min(1.0)).floor() as u64
    }

    /// When the decaying floor drops below `left` points.
    pub fn bulk_resume_at(&self, q: &QuotaEstimate, left: u64) -> Timestamp {
        let base = self.reserve(q.limit).max(1) as f64;
        let tail = q.window.as_millis() as f64 * 0.3;
        let before_reset = tail * left as f64 / base;
        Timestamp(q.reset_at.0 - before_reset.min(tail) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::t;
    use super::super::{CallKind, Evidence, Permit, Tunables};
    use super::*;
    use crate::domain::ratelimit::{QuotaPolicy, QuotaState};

    #[test]
    fn the_announced_quota_comes_from_the_policy_else_the_limit_header() {
        let policy = RateLimitSignal::from_headers([
            ("RateLimit-Policy", "\"global-app-quota\";q=65000;w=3600"),
            ("X-RateLimit-Limit", "100"),
        ]);
        assert_eq!(
            announced_quota(&policy),
            Some(AnnouncedQuota {
                points: 65_000,
                window_s: 3_600
            })
        );
        let limit = RateLimitSignal::from_headers([("X-RateLimit-Limit", "4000")]);
        assert_eq!(
            announced_quota(&limit),
            Some(AnnouncedQuota {
                points: 4_000,
                window_s: 3_600
            })
        );
        assert_eq!(announced_quota(&RateLimitSignal::default()), None);
        let zero = RateLimitSignal::from_headers([("X-RateLimit-Limit", "0")]);
        assert_eq!(announced_quota(&zero), None, "nothing learned from a zero");
    }

    #[test]
    fn a_quota_throttle_pauses_every_call_of_the_site_until_reset() {
        let mut g = SiteGovernor::default();
        let now = Timestamp(1_000_000);
        let signal = RateLimitSignal {
            reason: Some(LimitReason::QuotaGlobal),
            retry_after: Some(Duration::from_secs(120)),
            ..Default::default()
        };
        let wait = g.on_throttle(
            &super::super::tests::call("POST /i"),
            &signal,
            &Evidence::default(),
            now,
            &t(),
        );
        assert_eq!(wait, Duration::from_secs(120));
        let mut view = LocalView::new(g, now, 4, t());
        let other = CallKind {
            endpoint: "GET /search".into(),
            write: false,
            issue: None,
            bulk: false,
        };
        match view.permit(&other, now.plus(Duration::from_secs(60))) {
            Permit::Wait { wait, reason } => {
                assert_eq!(wait, Duration::from_secs(60));
                assert!(reason.contains("jira-quota-global-based"));
            }
            Permit::Go => panic!("paused site let a call through"),
        }
        assert_eq!(
            view.permit(&other, now.plus(Duration::from_secs(121))),
            Permit::Go
        );
    }

    fn quota_signal(remaining: u64, reset_in: u64) -> RateLimitSignal {
        RateLimitSignal {
            state: Some(QuotaState {
                name: None,
                remaining,
                reset_in: Duration::from_secs(reset_in),
            }),
            policy: Some(QuotaPolicy {
                name: None,
                quota: 1000,
                window: Duration::from_secs(60),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn bulk_work_stops_at_the_reserve_and_interactive_work_goes_on() {
        let mut view = LocalView::new(
            SiteGovernor::default(),
            Timestamp(0),
            1,
            Tunables {
                initial_rate: 1000.0,
                ..t()
            },
        );
        assert_eq!(
            view.observe_quota(&quota_signal(500, 30), Timestamp(0)),
            None
        );
        let resume = view.observe_quota(&quota_signal(19, 30), Timestamp(0));
        // Reserve 30 (3 % of 1000): 19 left is below it; the reserve decays
        // over the last 30 % of the 60 s window, falling below 19 at 30 s - 18 s * 19/30.
        assert_eq!(
            resume,
            Some(Timestamp(30_000 - 11_400)),
            "crossing the reserve asks for a bulk pause"
        );
        let bulk = CallKind {
            endpoint: "e".into(),
            write: true,
            issue: None,
            bulk: true,
        };
        let interactive = CallKind {
            bulk: false,
            ..bulk.clone()
        };
        assert!(matches!(
            view.permit(&bulk, Timestamp(0)),
            Permit::Wait { .. }
        ));
        assert_eq!(view.permit(&interactive, Timestamp(0)), Permit::Go);
        assert_eq!(
            view.permit(&bulk, Timestamp(19_300)),
            Permit::Go,
            "the unused reserve is released near the reset"
        );
    }

    #[test]
    fn the_reset_estimate_tightens_with_each_observation() {
        let mut view = LocalView::new(SiteGovernor::default(), Timestamp(0), 1, t());
        view.observe_quota(&quota_signal(900, 10), Timestamp(0)); // reset in (9, 10]
        view.observe_quota(&quota_signal(890, 9), Timestamp(700)); // reset in (8.7, 9.7]
        assert_eq!(view.quota.unwrap().reset_at, Timestamp(9700));
        view.observe_quota(&quota_signal(1000, 60), Timestamp(9800)); // a new window
        assert_eq!(view.quota.unwrap().reset_at, Timestamp(69_800));
    }
}
