//! The governor: how fast tollgate may call one Jira site, learned from the
//! signals on every response and shared by every worker of the site.
//!
//! State lives in two places:
//! * [`SiteGovernor`] — shared (a store row per site), read before calls and
//!   written only on signals: a throttle, a pace change, a quota crossing.
//! * [`LocalView`] — one per worker: its cached copy of the shared state, its
//!   own token buckets at its share of the site's pace, its freshest view
//!   of the points quota, and what it saw of Jira's answers lately
//!   ([`history`]), the evidence the learning rules read.
//!
//! One rule per concern, each module stating its own:
//! * [`learning`] — burst limits: the pace comes down to what Jira accepted
//!   within about a second of the first 429, then probes up as TCP CUBIC
//!   does;
//! * [`issues`] — per-issue write limits: holds, and spacing learned from
//!   the first 429;
//! * [`quota`] — the points quota: site pauses, and the reserve that keeps
//!   points for `interactive` work;
//! * [`noise`] — 429s with no reason: noise retries alone, sustained ones
//!   back the site off;
//! * [`pacing`] — what one worker may send now: waits, and each endpoint's
//!   token bucket at the worker's share of the pace.
//!
//! Why learn instead of a fixed step: Atlassian's limits are opaque, differ
//! per site, per endpoint and per hour. A pace that starts from the
//! documented rate and lowers itself ×0.85 once a second needed ten seconds
//! and a stream of 429s to reach a site five times stricter (14.7 % of
//! requests refused, docs/benchmarks.md); measuring the accepted rate gets
//! there in one.

pub mod history;
pub mod issues;
pub mod learning;
pub mod noise;
pub mod pacing;
pub mod pauses;
pub mod quota;

pub use history::{Answer, Evidence, History};
pub use issues::{IssueHold, IssueWindow};
pub use pacing::LocalView;
pub use pauses::PausePeriod;
pub use quota::{AnnouncedQuota, QuotaEstimate};

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
    /// Additive increase per second, as a fraction of the current rate, for
    /// an endpoint with no learned ceiling.
    pub increase: f64,
    /// The pace after a burst 429, as a fraction of the accepted rate.
    pub beta: f64,
    /// Where the probe levels off, as a fraction of the ceiling.
    pub plateau: f64,
    /// Seconds from a decrease to the plateau.
    pub approach_s: f64,
    /// Seconds at the plateau once a ceiling is confirmed (doubling with
    /// each confirmation).
    pub hold_s: f64,
    /// Growth per second past the hold.
    pub probe_growth: f64,
    /// The probe's step, ms.
    pub grow_every_ms: i64,
    /// Burst 429s closer than this are one signal, ms.
    pub decrease_spacing_ms: i64,
    /// Unexplained 429s are load, not noise, from this many in the noise
    /// window...
    pub noise_min: u32,
    /// ...making up at least this fraction of its answers.
    pub noise_fraction: f64,
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
            beta: 0.9,
            plateau: 0.97,
            approach_s: 2.0,
            hold_s: 2.0,
            probe_growth: 1.2,
            grow_every_ms: 500,
            decrease_spacing_ms: 200,
            noise_min: 3,
            noise_fraction: 0.2,
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
    /// The last change: growth steps are spaced from it.
    pub changed_at: Timestamp,
    /// The last decrease.
    #[serde(default)]
    pub decreased_at: Timestamp,
    /// The rate Jira accepted when it last throttled this endpoint: the
    /// learned limit the probe returns to.
    #[serde(default)]
    pub ceiling: Option<f64>,
    /// When the probe started (the last decrease).
    #[serde(default)]
    pub epoch: Timestamp,
    /// Episodes in a row that found the ceiling where it was: each doubles
    /// the probe's hold.
    #[serde(default)]
    pub confirmed: u32,
    /// The ceiling the episode before the last one ended with.
    #[serde(default)]
    pub last_ceiling: Option<f64>,
}

/// The shared state of one site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct SiteGovernor {
    /// Every call waits until then (quota spent, or unexplained 429s).
    pub paused_until: Timestamp,
    pub pause_reason: Option<String>,
    /// `bulk` calls wait until then (the quota is down to the reserve).
    pub bulk_paused_until: Timestamp,
    pub endpoints: BTreeMap<String, EndpointPace>,
    /// Issues Jira throttled for writes (see [`issues`]).
    pub issues: BTreeMap<String, IssueHold>,
    /// Per-issue write limits learned from 429s, the same for every issue.
    pub issue_windows: Vec<IssueWindow>,
    /// Consecutive unexplained throttles, for their backoff.
    pub unexplained: u32,
    /// The last learned burst limit as a fraction of the documented one: a
    /// new endpoint of a site that proved stricter than documented starts
    /// from the same fraction of its documented rate (see [`learning`]).
    pub prior_scale: Option<f64>,
    /// Degraded mode (see [`super::degraded`]).
    pub health: SiteHealth,
    /// The points quota Jira last announced, for operators' charts (see
    /// [`quota::announced_quota`]).
    pub quota: Option<AnnouncedQuota>,
    /// The last day's site pauses (see [`pauses`]).
    pub pauses: Vec<PausePeriod>,
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
            .map_or_else(|| self.initial(endpoint, t), |p| p.rate)
    }

    /// A new endpoint's pace: the prior, scaled down when the site has
    /// proved stricter than documented.
    pub fn initial(&self, endpoint: &str, t: &Tunables) -> f64 {
        let scale = self.prior_scale.map_or(1.0, |s| s.clamp(0.01, 1.0));
        (t.initial_for(endpoint) * scale).max(t.min_rate)
    }

    /// Starts pacing an endpoint at its initial rate, in slow start.
    pub fn track(&mut self, endpoint: &str, now: Timestamp, t: &Tunables) {
        if self.endpoints.contains_key(endpoint) {
            return;
        }
        let rate = self.initial(endpoint, t);
        self.endpoints
            .entry(endpoint.to_string())
            .or_insert(EndpointPace {
                rate,
                slow_start: true,
                last_good: rate,
                changed_at: now,
                decreased_at: Timestamp(i64::MIN / 2),
                ceiling: None,
                epoch: now,
                confirmed: 0,
                last_ceiling: None,
            });
    }

    /// Applies a throttle of `call`, judged by `evidence` (what the worker
    /// saw lately). Returns how long the throttled call should wait.
    pub fn on_throttle(
        &mut self,
        call: &CallKind,
        signal: &RateLimitSignal,
        evidence: &Evidence,
        now: Timestamp,
        t: &Tunables,
    ) -> Duration {
        let hint = signal.wait_hint(now);
        match &signal.reason {
            Some(
                reason @ (LimitReason::QuotaGlobal
                | LimitReason::QuotaTenant
                | LimitReason::CostBased),
            ) => self.on_quota(reason, signal, now),
            Some(LimitReason::Burst) => {
                self.on_burst(&call.endpoint, evidence, now, t);
                self.unexplained = 0;
                hint.unwrap_or(Duration::from_secs(1))
            }
            Some(LimitReason::PerIssueWrite) => {
                let wait = hint.unwrap_or(Duration::from_secs(2));
                if let Some(issue) = &call.issue {
                    self.on_per_issue(issue, wait, evidence, now);
                }
                wait
            }
            Some(LimitReason::Other(_)) | None => self.on_unexplained(signal, evidence, now, t),
        }
    }

    /// Forgets holds that have passed, so the shared row stays small.
    pub fn prune(&mut self, now: Timestamp) {
        self.issues
            .retain(|_, h| h.hot_until > now || h.until > now);
        self.prune_issue_windows(now);
        if self.paused_until <= now {
            self.pause_reason = None;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn call(endpoint: &str) -> CallKind {
        CallKind {
            endpoint: endpoint.into(),
            write: true,
            issue: Some("OPS-1".into()),
            bulk: true,
        }
    }

    pub fn burst(endpoint: &str) -> CallKind {
        call(endpoint)
    }

    pub fn throttle(reason: Option<LimitReason>, retry_after: Option<u64>) -> RateLimitSignal {
        RateLimitSignal {
            reason,
            retry_after: retry_after.map(Duration::from_secs),
            ..Default::default()
        }
    }

    pub fn throttle_burst() -> RateLimitSignal {
        throttle(Some(LimitReason::Burst), None)
    }

    pub fn t() -> Tunables {
        Tunables::default()
    }

    /// An endpoint pace last changed at `changed_at`, no recent decrease.
    pub fn pace(rate: f64, slow_start: bool, changed_at: i64) -> EndpointPace {
        EndpointPace {
            rate,
            slow_start,
            last_good: rate,
            changed_at: Timestamp(changed_at),
            decreased_at: Timestamp(-10_000),
            ceiling: None,
            epoch: Timestamp(changed_at),
            confirmed: 0,
            last_ceiling: None,
        }
    }

    #[test]
    fn a_burst_throttle_slows_only_that_endpoint() {
        let mut g = SiteGovernor::default();
        g.endpoints
            .insert("POST /i".into(), pace(100.0, false, -5000));
        g.endpoints
            .insert("PUT /i".into(), pace(40.0, false, -5000));
        let evidence = Evidence {
            accepted_per_s: Some(95.0),
            ..Evidence::default()
        };
        g.on_throttle(
            &call("POST /i"),
            &throttle(Some(LimitReason::Burst), Some(1)),
            &evidence,
            Timestamp(0),
            &t(),
        );
        assert!((g.pace("POST /i", &t()) - 85.5).abs() < 1e-9);
        assert_eq!(g.pace("PUT /i", &t()), 40.0, "other endpoints untouched");
        assert_eq!(g.paused_until, Timestamp::default(), "no site pause");
    }
}
