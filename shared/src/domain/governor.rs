//! The governor: how fast tollgate may call one Jira site, learned from the
//! signals on every response and shared by every worker of the site.
//!
//! State lives in two places:
//! * [`SiteGovernor`] — shared (a store row per site), read before calls and
//!   written only on signals: a throttle, a pace change, a quota crossing.
//! * [`LocalView`] — one per worker: its cached copy of the shared state, its
//!   own token buckets at its share of the site's pace, and its freshest view
//!   of the points quota.
//!
//! Rules:
//! * quota 429 (`jira-quota-*`, `jira-cost-based`): every worker of the site
//!   pauses until the reset Jira names;
//! * burst 429: that endpoint+method slows (multiplicative decrease);
//! * per-issue 429: writes to that issue wait, then go one slot at a time
//!   so the workers waiting on it do not return together; nothing else slows;
//! * 429 with no or an unknown reason: the whole site backs off;
//! * success: the pace grows again — from 80 % of the documented burst rate,
//!   slow start (×1.3 per second) until the first throttle, which halves it,
//!   then additive increase of 2 % per second;
//! * when `RateLimit` says how many points are left, `bulk` work stops at a
//!   reserve so that `interactive` work always finds points until the reset.
//!
//! Why AIMD with a gentle decrease (×0.85, once a second) instead of
//! halving: a burst bucket refills at its rate and holds one second of it,
//! so sending slightly above the limit drains it slowly and costs a handful
//! of 429s per cycle, while halving costs half the throughput for the many
//! seconds additive increase needs to climb back. Slow start from the
//! documented rate finds the limit within seconds; its first throttle halves
//! the pace (the bucket hid the overload while slow start overshot). Why a
//! reserve that decays instead of spending the quota evenly: when the work
//! left is smaller than the points left, even pacing only delays it, and the
//! reserve protects `interactive` work just as well. Measured with
//! `tollgate bench` (docs/benchmarks.md), 20 workers: quota profile goodput
//! 0.96 with 0.5 % 429s, burst 0.93 with 1.2 %, shifting quota 0.97 with no
//! 429 after the change. (An earlier version starting at 20/s, whose growth
//! and decrease shared one clock, measured 0.66 goodput and 11 % 429s on
//! burst.)

use super::degraded::SiteHealth;
use super::ratelimit::{LimitReason, RateLimitSignal};
use super::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// What the governor needs to know about a call before it is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallKind {
    /// `POST /rest/api/3/issue/{key}/comment` — method and path template.
    pub endpoint: String,
    pub write: bool,
    /// The issue written to, for per-issue holds.
    pub issue: Option<String>,
    pub bulk: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tunables {
    /// Pace of a new GET/POST endpoint before anything is learned,
    /// requests/s: 80 % of Atlassian's documented 100/s burst, the prior
    /// that slow start then tests.
    pub initial_rate: f64,
    /// The same for PUT/DELETE (documented: 50/s).
    pub initial_rate_put: f64,
    pub min_rate: f64,
    pub max_rate: f64,
    /// Multiplier per second while no throttle has been seen.
    pub slow_start_factor: f64,
    /// Additive increase per second, as a fraction of the current rate.
    pub increase: f64,
    /// Multiplicative decrease on a burst throttle.
    pub decrease: f64,
    /// Points `bulk` work leaves for `interactive` work, as a fraction of
    /// the quota (and at least `reserve_min`).
    pub reserve_fraction: f64,
    pub reserve_min: u64,
}

impl Default for Tunables {
    fn default() -> Self {
        Tunables {
            initial_rate: 80.0,
            initial_rate_put: 40.0,
            min_rate: 0.5,
            max_rate: 1000.0,
            slow_start_factor: 1.3,
            increase: 0.02,
            decrease: 0.85,
            reserve_fraction: 0.03,
            reserve_min: 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointPace {
    pub rate: f64,
    pub slow_start: bool,
    /// The rate before the last slow-start step.
    pub last_good: f64,
    /// The reference for growth: a second after this, the pace grows.
    pub changed_at: Timestamp,
    /// The last decrease: at most one per second.
    #[serde(default)]
    pub decreased_at: Timestamp,
}

/// The shared state of one site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct SiteGovernor {
    /// Every call waits until then (quota spent, or an unexplained 429).
    pub paused_until: Timestamp,
    pub pause_reason: Option<String>,
    /// `bulk` calls wait until then (the quota is down to the reserve).
    pub bulk_paused_until: Timestamp,
    pub endpoints: BTreeMap<String, EndpointPace>,
    /// Issues Jira throttled for writes: held, then written one slot at a
    /// time so the workers waiting on them do not all return at once.
    pub issues: BTreeMap<String, IssueHold>,
    /// Consecutive unexplained throttles, for their backoff.
    pub unexplained: u32,
    /// Degraded mode (see [`super::degraded`]).
    pub health: SiteHealth,
}

/// A write-throttled issue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct IssueHold {
    /// No write before this (Jira's Retry-After).
    pub until: Timestamp,
    /// The next free write slot.
    pub next_slot: Timestamp,
    /// Time between writes while the issue is hot: starts at 100 ms (Jira's
    /// documented 20 writes per 2 s) and doubles on every throttle.
    pub spacing_ms: i64,
    /// Slots are handed out until then (a minute after the last throttle).
    pub hot_until: Timestamp,
}

/// What a worker should do before a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Permit {
    Go,
    /// Not before this long; `reason` is for the audit trail.
    Wait {
        wait: Duration,
        reason: String,
    },
}

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

struct Bucket {
    tokens: f64,
    at: Timestamp,
}

/// One worker's view.
pub struct LocalView {
    pub shared: SiteGovernor,
    pub fetched_at: Timestamp,
    pub quota: Option<QuotaEstimate>,
    buckets: BTreeMap<String, Bucket>,
    /// This worker's fraction of the site's pace (1 / workers).
    pub share: f64,
    /// When this worker last had to wait for its pace, per endpoint.
    limited_at: BTreeMap<String, Timestamp>,
    pub tunables: Tunables,
}

fn secs(d: f64) -> Duration {
    Duration::from_secs_f64(d.clamp(0.0, 86_400.0))
}

impl Tunables {
    pub fn initial_for(&self, endpoint: &str) -> f64 {
        if endpoint.starts_with("PUT ") || endpoint.starts_with("DELETE ") {
            self.initial_rate_put
        } else {
            self.initial_rate
        }
    }
}

impl SiteGovernor {
    pub fn pace(&self, endpoint: &str, t: &Tunables) -> f64 {
        self.endpoints
            .get(endpoint)
            .map_or_else(|| t.initial_for(endpoint), |p| p.rate)
    }

    /// Starts pacing an endpoint at the initial rate, in slow start.
    pub fn track(&mut self, endpoint: &str, now: Timestamp, t: &Tunables) {
        let rate = t.initial_for(endpoint);
        self.endpoints
            .entry(endpoint.to_string())
            .or_insert(EndpointPace {
                rate,
                slow_start: true,
                last_good: rate,
                changed_at: now,
                decreased_at: Timestamp(i64::MIN / 2),
            });
    }

    /// Grows the pace of the endpoints `limited` says were held back by
    /// their pace in the last second — one step per second at most, and never
    /// for an endpoint that was idle or paused (it learned nothing about the
    /// limit then, and would come back from a pause far too fast). Returns
    /// whether anything changed (worth a write).
    pub fn grow(&mut self, now: Timestamp, t: &Tunables, limited: impl Fn(&str) -> bool) -> bool {
        let mut changed = false;
        for (endpoint, p) in self.endpoints.iter_mut() {
            if now.0 - p.changed_at.0 < 1000 || !limited(endpoint) {
                continue;
            }
            if p.slow_start {
                p.last_good = p.rate;
                p.rate = (p.rate * t.slow_start_factor).min(t.max_rate);
            } else {
                p.rate = (p.rate * (1.0 + t.increase)).min(t.max_rate);
            }
            p.changed_at = now;
            changed = true;
        }
        changed
    }

    /// Applies a throttle. Returns how long the throttled call should wait.
    pub fn on_throttle(
        &mut self,
        call: &CallKind,
        signal: &RateLimitSignal,
        now: Timestamp,
        t: &Tunables,
    ) -> Duration {
        let hint = signal.wait_hint(now);
        match &signal.reason {
            Some(LimitReason::QuotaGlobal | LimitReason::QuotaTenant | LimitReason::CostBased) => {
                let wait = hint.unwrap_or(Duration::from_secs(60));
                let until = now.plus(wait);
                if until > self.paused_until {
                    self.paused_until = until;
                    self.pause_reason = signal.reason.as_ref().map(|r| r.as_str().to_string());
                }
                self.unexplained = 0;
                wait
            }
            Some(LimitReason::Burst) => {
                self.track(&call.endpoint, now, t);
                let Some(pace) = self.endpoints.get_mut(&call.endpoint) else {
                    return hint.unwrap_or(Duration::from_secs(1));
                };
                // One decrease per second: the other workers' 429s from the
                // same overload are the same news. Growth waits a second
                // after the latest throttle either way.
                if now.0 - pace.decreased_at.0 >= 1000 {
                    pace.rate = if pace.slow_start {
                        // The bucket hid the overload for a while: the limit
                        // is well below where slow start got to.
                        pace.rate * 0.5
                    } else {
                        pace.rate * t.decrease
                    }
                    .max(t.min_rate);
                    pace.slow_start = false;
                    pace.decreased_at = now;
                }
                pace.changed_at = now;
                self.unexplained = 0;
                hint.unwrap_or(Duration::from_secs(1))
            }
            Some(LimitReason::PerIssueWrite) => {
                let wait = hint.unwrap_or(Duration::from_secs(2));
                if let Some(issue) = &call.issue {
                    let until = now.plus(wait);
                    let hold = self.issues.entry(issue.clone()).or_default();
                    // Several workers' 429s for one overflow are one signal;
                    // a long wait is a long window filling up, which spacing
                    // the writes closer or further does not change.
                    let fresh = until > hold.until.plus(Duration::from_millis(500));
                    if hold.spacing_ms == 0 || (fresh && wait <= Duration::from_secs(2)) {
                        hold.spacing_ms = (hold.spacing_ms * 2).clamp(100, 2000);
                    }
                    hold.until = hold.until.max(until);
                    hold.next_slot = hold.next_slot.max(hold.until);
                    hold.hot_until = now.plus(Duration::from_secs(60));
                }
                wait
            }
            Some(LimitReason::Other(_)) | None => {
                // A gateway 429 or a reason this version does not know:
                // back off site-wide, doubling from 2 s when Jira says nothing.
                self.unexplained = self.unexplained.saturating_add(1);
                let backoff =
                    Duration::from_secs(2) * (1u32 << self.unexplained.saturating_sub(1).min(6));
                let wait = hint.unwrap_or(backoff);
                self.paused_until = self.paused_until.max(now.plus(wait));
                self.pause_reason = Some(
                    signal
                        .reason
                        .as_ref()
                        .map_or("429 without a reason".to_string(), |r| {
                            r.as_str().to_string()
                        }),
                );
                // It says nothing about which limit was hit: the site pause
                // above is the whole answer, and it doubles while they keep
                // coming. The endpoints' paces stay (cutting them per 429
                // took a run with 2 % random gateway 429s from 80/s to the
                // 0.5/s floor, minutes from recovering — the chaos test);
                // only slow start ends, as a limit may be near.
                for p in self.endpoints.values_mut() {
                    p.slow_start = false;
                }
                wait
            }
        }
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

    /// Forgets holds that have passed, so the shared row stays small.
    pub fn prune(&mut self, now: Timestamp) {
        self.issues
            .retain(|_, h| h.hot_until > now || h.until > now);
        if self.paused_until <= now {
            self.pause_reason = None;
        }
    }
}

impl LocalView {
    pub fn new(shared: SiteGovernor, now: Timestamp, workers: usize, tunables: Tunables) -> Self {
        LocalView {
            shared,
            fetched_at: now,
            quota: None,
            buckets: BTreeMap::new(),
            limited_at: BTreeMap::new(),
            share: 1.0 / workers.max(1) as f64,
            tunables,
        }
    }

    /// Whether this worker was held back by the pace of `endpoint` lately.
    pub fn recently_limited(&self, endpoint: &str, now: Timestamp) -> bool {
        self.limited_at
            .get(endpoint)
            .is_some_and(|at| now.0 - at.0 <= 1000)
    }

    pub fn reserve(&self, limit: u64) -> u64 {
        ((limit as f64 * self.tunables.reserve_fraction) as u64).max(self.tunables.reserve_min)
    }

    /// Decides one call. A `Go` takes a token from this worker's bucket.
    pub fn permit(&mut self, call: &CallKind, now: Timestamp) -> Permit {
        let s = &self.shared;
        if s.paused_until > now {
            let why = s
                .pause_reason
                .clone()
                .unwrap_or_else(|| "site paused".into());
            return Permit::Wait {
                wait: now.until(s.paused_until),
                reason: format!("site paused: {why}"),
            };
        }
        if call.bulk && s.bulk_paused_until > now {
            return Permit::Wait {
                wait: now.until(s.bulk_paused_until),
                reason: "points quota down to the interactive reserve".into(),
            };
        }
        if let (true, Some(issue)) = (call.write, &call.issue)
            && let Some(wait) = s.issue_wait(issue, now)
        {
            return Permit::Wait {
                wait,
                reason: format!("writes to {issue} held by Jira"),
            };
        }
        if let Some(q) = &self.quota
            && q.reset_at > now
        {
            let left = q.left((1.0 / self.share).round() as u64);
            if call.bulk && left <= self.floor(q, now) {
                return Permit::Wait {
                    wait: now
                        .until(self.bulk_resume_at(q, left))
                        .max(Duration::from_millis(50)),
                    reason: format!("{left} points left; kept for interactive work"),
                };
            }
            if left == 0 {
                return Permit::Wait {
                    wait: now.until(q.reset_at),
                    reason: "no points left until the quota resets".into(),
                };
            }
        }
        let rate = (s.pace(&call.endpoint, &self.tunables) * self.share).max(0.01);
        let b = self.buckets.entry(call.endpoint.clone()).or_insert(Bucket {
            tokens: 1.0,
            at: now,
        });
        let elapsed = (now.0 - b.at.0).max(0) as f64 / 1000.0;
        // No banking beyond one call: after a pause, N workers may send N
        // calls at once, not N seconds' worth.
        b.tokens = (b.tokens + elapsed * rate).min(1.0);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            if let Some(q) = &mut self.quota {
                q.spent_since += 1;
            }
            Permit::Go
        } else {
            self.limited_at.insert(call.endpoint.clone(), now);
            Permit::Wait {
                wait: secs((1.0 - b.tokens) / rate),
                reason: "pacing".into(),
            }
        }
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
    use super::*;
    use crate::domain::ratelimit::{QuotaPolicy, QuotaState};

    fn call(endpoint: &str) -> CallKind {
        CallKind {
            endpoint: endpoint.into(),
            write: true,
            issue: Some("OPS-1".into()),
            bulk: true,
        }
    }

    fn throttle(reason: Option<LimitReason>, retry_after: Option<u64>) -> RateLimitSignal {
        RateLimitSignal {
            reason,
            retry_after: retry_after.map(Duration::from_secs),
            ..Default::default()
        }
    }

    fn t() -> Tunables {
        Tunables::default()
    }

    /// An endpoint pace last changed at `changed_at`, no recent decrease.
    fn pace(rate: f64, slow_start: bool, changed_at: i64) -> EndpointPace {
        EndpointPace {
            rate,
            slow_start,
            last_good: rate,
            changed_at: Timestamp(changed_at),
            decreased_at: Timestamp(-10_000),
        }
    }

    #[test]
    fn a_quota_throttle_pauses_every_call_of_the_site_until_reset() {
        let mut g = SiteGovernor::default();
        let now = Timestamp(1_000_000);
        let wait = g.on_throttle(
            &call("POST /i"),
            &throttle(Some(LimitReason::QuotaGlobal), Some(120)),
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

    #[test]
    fn a_burst_throttle_slows_only_that_endpoint() {
        let mut g = SiteGovernor::default();
        let now = Timestamp(0);
        g.endpoints
            .insert("POST /i".into(), pace(100.0, false, -5000));
        g.on_throttle(
            &call("POST /i"),
            &throttle(Some(LimitReason::Burst), Some(1)),
            now,
            &t(),
        );
        assert!((g.pace("POST /i", &t()) - 85.0).abs() < 1e-9);
        assert_eq!(
            g.pace("PUT /i", &t()),
            t().initial_rate_put,
            "other endpoints untouched"
        );
        assert_eq!(g.paused_until, Timestamp::default(), "no site pause");
    }

    #[test]
    fn burst_throttles_within_a_second_count_once() {
        let mut g = SiteGovernor::default();
        g.endpoints
            .insert("POST /i".into(), pace(100.0, false, -5000));
        for ms in [0, 100, 400, 900] {
            g.on_throttle(
                &call("POST /i"),
                &throttle(Some(LimitReason::Burst), None),
                Timestamp(ms),
                &t(),
            );
        }
        assert!((g.pace("POST /i", &t()) - 85.0).abs() < 1e-9);
        g.on_throttle(
            &call("POST /i"),
            &throttle(Some(LimitReason::Burst), None),
            Timestamp(1000),
            &t(),
        );
        assert!((g.pace("POST /i", &t()) - 72.25).abs() < 1e-9);
    }

    #[test]
    fn the_first_throttle_in_slow_start_halves_the_pace() {
        let mut g = SiteGovernor::default();
        g.endpoints.insert("POST /i".into(), pace(20.0, true, 0));
        let f = t().slow_start_factor;
        for (ms, steps) in [(1000, 1), (2000, 2), (3000, 3), (4000, 4)] {
            assert!(g.grow(Timestamp(ms), &t(), |_| true));
            assert!((g.endpoints["POST /i"].rate - 20.0 * f.powi(steps)).abs() < 1e-9);
        }
        g.on_throttle(
            &call("POST /i"),
            &throttle(Some(LimitReason::Burst), None),
            Timestamp(4100),
            &t(),
        );
        let p = &g.endpoints["POST /i"];
        assert!(!p.slow_start);
        assert!((p.rate - 20.0 * f.powi(4) * 0.5).abs() < 1e-9, "{p:?}");
    }

    #[test]
    fn after_slow_start_the_pace_grows_two_percent_a_second() {
        let mut g = SiteGovernor::default();
        g.endpoints.insert("e".into(), pace(50.0, false, 0));
        assert!(
            !g.grow(Timestamp(999), &t(), |_| true),
            "nothing within the first second"
        );
        assert!(g.grow(Timestamp(2500), &t(), |_| true));
        assert!(
            (g.endpoints["e"].rate - 51.0).abs() < 1e-9,
            "one step, however long the gap"
        );
        assert_eq!(g.endpoints["e"].changed_at, Timestamp(2500));
        assert!(!g.grow(Timestamp(3000), &t(), |_| true));
        assert!(g.grow(Timestamp(3500), &t(), |_| true));
        assert!((g.endpoints["e"].rate - 52.02).abs() < 1e-9);
    }

    #[test]
    fn an_endpoint_not_held_back_by_its_pace_does_not_grow() {
        let mut g = SiteGovernor::default();
        g.track("idle", Timestamp(0), &t());
        g.track("busy", Timestamp(0), &t());
        assert!(g.grow(Timestamp(60_000), &t(), |e| e == "busy"));
        assert_eq!(
            g.pace("idle", &t()),
            t().initial_rate,
            "a paused or idle endpoint learned nothing"
        );
        assert!(g.pace("busy", &t()) > t().initial_rate);
    }

    #[test]
    fn a_per_issue_throttle_holds_writes_to_that_issue_only() {
        let mut g = SiteGovernor::default();
        let now = Timestamp(0);
        g.on_throttle(
            &call("PUT /issue/{key}"),
            &throttle(Some(LimitReason::PerIssueWrite), Some(3)),
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
    fn an_unexplained_429_backs_off_site_wide_and_doubles() {
        let mut g = SiteGovernor::default();
        let w1 = g.on_throttle(&call("e"), &throttle(None, None), Timestamp(0), &t());
        let w2 = g.on_throttle(&call("e"), &throttle(None, None), Timestamp(10), &t());
        assert_eq!((w1, w2), (Duration::from_secs(2), Duration::from_secs(4)));
        assert_eq!(g.paused_until, Timestamp(4010));
        let w3 = g.on_throttle(
            &call("e"),
            &throttle(Some(LimitReason::Other("new-thing".into())), Some(9)),
            Timestamp(20),
            &t(),
        );
        assert_eq!(w3, Duration::from_secs(9), "Retry-After wins when given");
        assert_eq!(g.pause_reason.as_deref(), Some("new-thing"));
    }

    #[test]
    fn unexplained_429s_pause_the_site_but_leave_the_learned_paces() {
        let mut g = SiteGovernor::default();
        g.endpoints.insert("e".into(), pace(80.0, true, 0));
        for at in [5_000, 5_010, 5_020, 6_100] {
            g.on_throttle(&call("e"), &throttle(None, None), Timestamp(at), &t());
        }
        assert_eq!(g.endpoints["e"].rate, 80.0);
        assert!(!g.endpoints["e"].slow_start, "growth turns careful");
        assert!(g.paused_until > Timestamp(6_100));
    }

    #[test]
    fn workers_pace_at_their_share_of_the_site() {
        let mut g = SiteGovernor::default();
        g.endpoints.insert("e".into(), pace(40.0, false, 0));
        let mut view = LocalView::new(g, Timestamp(0), 4, t());
        let c = CallKind {
            endpoint: "e".into(),
            write: false,
            issue: None,
            bulk: false,
        };
        // 40/s over 4 workers: 10/s each; over 10 s, about 100 calls when
        // the worker sleeps each wait it is given.
        let (mut now, mut go) = (0i64, 0);
        while now < 10_000 {
            match view.permit(&c, Timestamp(now)) {
                Permit::Go => go += 1,
                Permit::Wait { wait, .. } => now += wait.as_millis().max(1) as i64,
            }
        }
        assert!((99..=101).contains(&go), "{go}");
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

    #[test]
    fn writes_to_a_hot_issue_are_handed_out_one_slot_at_a_time() {
        let mut g = SiteGovernor::default();
        let c = call("PUT /issue/{key}");
        g.on_throttle(
            &c,
            &throttle(Some(LimitReason::PerIssueWrite), Some(2)),
            Timestamp(0),
            &t(),
        );
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
        // A second overflow doubles the spacing.
        g.on_throttle(
            &c,
            &throttle(Some(LimitReason::PerIssueWrite), Some(1)),
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
