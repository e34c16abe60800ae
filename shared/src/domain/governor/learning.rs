//! Learning an endpoint's burst limit from Jira's answers.
//!
//! Rules:
//! * a new endpoint starts at a prior (80 % of the documented rate) in slow
//!   start: ×1.3 per second while its pace is what holds the work back;
//! * a burst 429 brings the pace down to what Jira actually accepted: the
//!   calls of that endpoint accepted over the last second (the site's, from
//!   this worker's count and share), less a margin (`beta`). The first
//!   throttle of an episode also steps down at once (slow start halves: the
//!   bucket hid the overload); further throttles in the episode lower it
//!   again at most every `decrease_spacing_ms` as the measure fills with
//!   answers from after the limit was hit — or, a quarter second after the
//!   first 429, by the rate accepted since it (an empty bucket accepts its
//!   refill rate) — so within about a second the pace is Jira's rate,
//!   however far off the prior or the old limit was;
//! * the accepted rate is remembered as the endpoint's ceiling, and the pace
//!   probes upward as TCP CUBIC does: up to a plateau just under the
//!   ceiling (`plateau`, 97 %: a pace exactly at a bucket's rate drains it
//!   on timing noise alone) over `approach_s`, easing in; flat there for a
//!   hold; then ×`probe_growth` a second beyond it — so a limit that was
//!   raised is found again within seconds, while a limit that did not move
//!   costs a 429 per probe; a 429 just past the ceiling goes back under
//!   the ceiling, not just under the probe;
//! * a site that proved stricter than documented is so everywhere: a new
//!   endpoint starts from the fraction of its documented rate the last
//!   learned limit was of its own (`prior_scale`), still in slow start;
//! * each episode that finds the ceiling where it was doubles the hold
//!   (from none, then `hold_s`, up to 8 × `hold_s`): a limit confirmed is
//!   probed every half minute or so, one that moved at once again;
//! * growth happens only while the pace holds work back (an idle endpoint
//!   learned nothing) and never more than ×1.3 per second.

use super::{EndpointPace, Evidence, SiteGovernor, Tunables};
use crate::domain::time::Timestamp;

/// Throttles further apart than this start a new episode.
const EPISODE_MS: i64 = 1000;
/// A ceiling found again within this fraction confirms it.
const CONFIRM_WITHIN: f64 = 0.15;
/// Confirmations lengthen the probe's hold up to 2^(this - 1) times.
const MAX_CONFIRMED: u32 = 4;
/// A 429 up to this far past the ceiling is the ceiling found again.
const PROBE_PAST: f64 = 1.6;
/// At most this growth per second, whatever the curve says.
const MAX_GROWTH_PER_S: f64 = 0.3;

impl EndpointPace {
    /// The cubic probe's pace `elapsed_ms` after the last decrease.
    /// The probe's pace `elapsed_ms` after the last decrease: from
    /// `beta · ceiling` up to the plateau (`plateau · ceiling`) over
    /// `approach_s`, easing in as TCP CUBIC's concave part does; flat there
    /// for the hold; then growing `probe_growth` per second.
    fn probe(&self, ceiling: f64, elapsed_ms: i64, t: &Tunables) -> f64 {
        let plateau = ceiling * t.plateau.max(t.beta);
        let start = ceiling * t.beta;
        let approach = t.approach_s.max(0.001);
        let hold = match self.confirmed {
            0 => 0.0,
            n => t.hold_s * f64::from(1u32 << (n - 1).min(MAX_CONFIRMED - 1)),
        };
        let tau = elapsed_ms as f64 / 1000.0;
        if tau < approach {
            let left = 1.0 - tau / approach;
            plateau - (plateau - start) * left * left * left
        } else if tau < approach + hold {
            plateau
        } else {
            plateau * t.probe_growth.powf(tau - approach - hold)
        }
    }
}

impl SiteGovernor {
    /// Grows the pace of the endpoints `limited` says were held back by
    /// their pace lately, never for one that was idle or paused (it learned
    /// nothing about the limit then). Returns whether anything changed
    /// (worth a write).
    pub fn grow(&mut self, now: Timestamp, t: &Tunables, limited: impl Fn(&str) -> bool) -> bool {
        let mut changed = false;
        for (endpoint, p) in self.endpoints.iter_mut() {
            let since = now.0 - p.changed_at.0;
            if !limited(endpoint) {
                continue;
            }
            let next = if p.slow_start {
                if since < 1000 {
                    continue;
                }
                p.last_good = p.rate;
                p.rate * t.slow_start_factor
            } else if let Some(ceiling) = p.ceiling {
                if since < t.grow_every_ms {
                    continue;
                }
                let cap = p.rate * (1.0 + MAX_GROWTH_PER_S * (since.min(1000) as f64 / 1000.0));
                p.probe(ceiling, now.0 - p.epoch.0, t).min(cap)
            } else {
                if since < 1000 {
                    continue;
                }
                p.rate * (1.0 + t.increase)
            };
            let next = next.min(t.max_rate);
            if next > p.rate {
                p.rate = next;
                p.changed_at = now;
                changed = true;
            }
        }
        changed
    }

    /// A burst 429 on `endpoint` (see the module's rules).
    pub(super) fn on_burst(
        &mut self,
        endpoint: &str,
        evidence: &Evidence,
        now: Timestamp,
        t: &Tunables,
    ) {
        self.track(endpoint, now, t);
        let Some(p) = self.endpoints.get_mut(endpoint) else {
            return;
        };
        p.changed_at = now;
        let since = now.0 - p.decreased_at.0;
        if since < t.decrease_spacing_ms {
            // The other workers' 429s from the same overload: the same news.
            return;
        }
        let new_episode = since >= EPISODE_MS;
        let before = p.rate;
        let measured = match (evidence.accepted_since_throttle, evidence.accepted_per_s) {
            (Some(since), Some(window)) => Some(since.min(window)),
            (since, window) => since.or(window),
        };
        let step = match (new_episode, p.slow_start) {
            (true, true) => before * 0.5,
            (true, false) => before * t.beta,
            (false, _) => before,
        };
        // A probe that went a little past the ceiling found it again: back
        // under the ceiling, not just under the probe.
        let probing_just_past = new_episode
            && p.ceiling
                .is_some_and(|c| before > c && before <= c * PROBE_PAST);
        let mut rate = match measured {
            Some(accepted) => step.min(accepted * t.beta),
            None => step,
        };
        if let (true, Some(c)) = (probing_just_past, p.ceiling) {
            rate = rate.min(c * t.beta);
        }
        let rate = rate.clamp(t.min_rate, before);
        if new_episode {
            // The last episode's ceiling against the one before: an
            // episode's first measure still holds the bucket's burst.
            p.confirmed = match (p.ceiling, p.last_ceiling) {
                (Some(c), Some(last)) if (c / last - 1.0).abs() <= CONFIRM_WITHIN => {
                    p.confirmed + 1
                }
                _ => 0,
            };
            p.last_ceiling = p.ceiling;
        }
        let ceiling = match (measured, p.ceiling) {
            (Some(a), Some(c)) if !new_episode || probing_just_past => a.min(c),
            (Some(a), _) => a,
            (None, Some(c)) if !new_episode => c,
            (None, _) => before,
        };
        p.rate = rate;
        p.ceiling = Some(ceiling.max(rate));
        p.slow_start = false;
        p.decreased_at = now;
        p.epoch = now;
        // The prior is 80 % of the documented rate.
        let documented = t.initial_for(endpoint) / 0.8;
        if measured.is_some() && documented > 0.0 {
            let scale = (ceiling / documented).clamp(0.01, 1.0);
            self.prior_scale = Some(scale);
            // Paces that are still untested priors take the news too.
            for (other, q) in self.endpoints.iter_mut() {
                if q.slow_start && q.ceiling.is_none() && other != endpoint {
                    q.rate = q.rate.min((t.initial_for(other) * scale).max(t.min_rate));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{burst, pace, t};
    use super::*;

    fn measured(rate: f64) -> Evidence {
        Evidence {
            accepted_per_s: Some(rate),
            ..Evidence::default()
        }
    }

    #[test]
    fn a_first_throttle_brings_the_pace_to_what_jira_accepted() {
        let mut g = SiteGovernor::default();
        g.endpoints.insert("POST /i".into(), pace(80.0, true, 0));
        // Slow start at 80/s on a site that takes 20/s: the bucket let a
        // second's worth through, then refused.
        g.on_burst("POST /i", &measured(26.0), Timestamp(5_000), &t());
        let p = &g.endpoints["POST /i"];
        assert!((p.rate - 26.0 * t().beta).abs() < 1e-9, "{p:?}");
        assert_eq!(p.ceiling, Some(26.0));
        // 300 ms later the second is mostly refusals: 20/s accepted.
        g.on_burst("POST /i", &measured(20.0), Timestamp(5_300), &t());
        let p = &g.endpoints["POST /i"];
        assert!((p.rate - 20.0 * t().beta).abs() < 1e-9, "{p:?}");
        assert_eq!(
            p.ceiling,
            Some(20.0),
            "the ceiling follows the measure down"
        );
    }

    #[test]
    fn a_new_endpoint_of_a_strict_site_starts_from_the_same_fraction_of_its_documented_rate() {
        let mut g = SiteGovernor::default();
        g.track("POST /comment", Timestamp(0), &t());
        // POST documented at 100/s; Jira took 20.
        g.on_burst("POST /comment", &measured(20.0), Timestamp(500), &t());
        g.track("PUT /issue", Timestamp(600), &t());
        let put = &g.endpoints["PUT /issue"];
        assert!(
            (put.rate - t().initial_rate_put * 0.2).abs() < 1e-9,
            "{put:?}"
        );
        assert!(put.slow_start, "it still looks for its own limit");
    }

    #[test]
    fn throttles_closer_than_the_spacing_count_once() {
        let mut g = SiteGovernor::default();
        g.endpoints
            .insert("POST /i".into(), pace(100.0, false, -5000));
        g.on_burst("POST /i", &measured(95.0), Timestamp(0), &t());
        let after_first = g.endpoints["POST /i"].rate;
        for ms in [10, 50, 150] {
            g.on_burst("POST /i", &measured(10.0), Timestamp(ms), &t());
        }
        assert_eq!(g.endpoints["POST /i"].rate, after_first);
        g.on_burst("POST /i", &measured(60.0), Timestamp(400), &t());
        assert!((g.endpoints["POST /i"].rate - 54.0).abs() < 1e-9);
    }

    #[test]
    fn without_a_measure_a_new_episode_steps_down_by_beta() {
        let mut g = SiteGovernor::default();
        g.endpoints
            .insert("POST /i".into(), pace(100.0, false, -5000));
        g.on_burst("POST /i", &Evidence::default(), Timestamp(0), &t());
        assert!((g.endpoints["POST /i"].rate - 100.0 * t().beta).abs() < 1e-9);
        g.on_burst("POST /i", &Evidence::default(), Timestamp(500), &t());
        assert!(
            (g.endpoints["POST /i"].rate - 100.0 * t().beta).abs() < 1e-9,
            "no compounding within an episode without a measure"
        );
    }

    #[test]
    fn the_probe_returns_to_a_plateau_under_the_ceiling_then_looks_beyond_it() {
        let tn = t();
        let mut g = SiteGovernor::default();
        g.endpoints.insert("e".into(), pace(40.0, false, -5000));
        g.on_burst("e", &measured(20.0), Timestamp(0), &tn);
        let k_ms = (tn.approach_s * 1000.0) as i64;
        let mut at = 0;
        let mut rates = Vec::new();
        while at < k_ms + 10_000 {
            at += 500;
            g.grow(Timestamp(at), &tn, |_| true);
            rates.push((at, g.endpoints["e"].rate));
        }
        let rate_at = |ms: i64| rates.iter().find(|(a, _)| *a >= ms).map(|r| r.1).unwrap();
        assert!(rate_at(k_ms / 2) > 18.0 && rate_at(k_ms / 2) < 20.0);
        let plateau = 20.0 * tn.plateau;
        assert!(
            (rate_at(k_ms) - plateau).abs() < 0.2,
            "at the plateau after K"
        );
        assert!(rate_at(k_ms) < 20.0, "under the ceiling");
        assert!(rate_at(k_ms + 3_000) > 21.0, "then beyond it");
        assert!(
            rates.windows(2).all(|w| w[1].1 >= w[0].1),
            "growth never lowers the pace"
        );
    }

    #[test]
    fn a_ceiling_found_again_slows_the_next_probe() {
        let tn = t();
        let probe = |confirmations: u32| {
            let mut g = SiteGovernor::default();
            g.endpoints.insert("e".into(), pace(20.0, false, -5000));
            let mut at = 0;
            for _ in 0..=confirmations + 1 {
                at += 5_000;
                g.on_burst("e", &measured(20.0), Timestamp(at), &tn);
            }
            assert_eq!(g.endpoints["e"].confirmed, confirmations);
            let start = at;
            while g.endpoints["e"].rate < 20.0 {
                at += 500;
                g.grow(Timestamp(at), &tn, |_| true);
            }
            at - start
        };
        let (fresh, confirmed) = (probe(0), probe(3));
        assert!(confirmed > fresh * 3 / 2, "{fresh} ms then {confirmed} ms");
        // A ceiling that moved resets it.
        let mut g = SiteGovernor::default();
        g.endpoints.insert("e".into(), pace(20.0, false, -5000));
        g.on_burst("e", &measured(20.0), Timestamp(0), &tn);
        g.on_burst("e", &measured(20.0), Timestamp(5_000), &tn);
        g.on_burst("e", &measured(10.0), Timestamp(10_000), &tn);
        g.on_burst("e", &measured(10.0), Timestamp(15_000), &tn);
        assert_eq!(g.endpoints["e"].confirmed, 0);
    }

    #[test]
    fn a_raised_limit_is_found_again_within_seconds() {
        let tn = t();
        let mut g = SiteGovernor::default();
        g.endpoints.insert("e".into(), pace(40.0, false, -5000));
        g.on_burst("e", &measured(10.0), Timestamp(0), &tn);
        let mut at = 0;
        while g.endpoints["e"].rate < 20.0 {
            at += 500;
            g.grow(Timestamp(at), &tn, |_| true);
            assert!(at < 20_000, "{:?}", g.endpoints["e"]);
        }
    }

    #[test]
    fn after_slow_start_without_a_ceiling_the_pace_grows_two_percent_a_second() {
        let mut g = SiteGovernor::default();
        g.endpoints.insert("e".into(), pace(50.0, false, 0));
        assert!(!g.grow(Timestamp(999), &t(), |_| true));
        assert!(g.grow(Timestamp(2500), &t(), |_| true));
        assert!((g.endpoints["e"].rate - 51.0).abs() < 1e-9);
    }

    #[test]
    fn slow_start_grows_thirty_percent_a_second_until_the_first_throttle() {
        let mut g = SiteGovernor::default();
        g.endpoints.insert("POST /i".into(), pace(20.0, true, 0));
        let f = t().slow_start_factor;
        for (ms, steps) in [(1000, 1), (2000, 2), (3000, 3)] {
            assert!(g.grow(Timestamp(ms), &t(), |_| true));
            assert!((g.endpoints["POST /i"].rate - 20.0 * f.powi(steps)).abs() < 1e-9);
        }
        g.on_throttle(
            &burst("POST /i"),
            &super::super::tests::throttle_burst(),
            &Evidence::default(),
            Timestamp(3100),
            &t(),
        );
        let p = &g.endpoints["POST /i"];
        assert!(!p.slow_start);
        assert!((p.rate - 20.0 * f.powi(3) * 0.5).abs() < 1e-9, "{p:?}");
    }

    #[test]
    fn an_endpoint_not_held_back_by_its_pace_does_not_grow() {
        let mut g = SiteGovernor::default();
        g.track("idle", Timestamp(0), &t());
        g.track("busy", Timestamp(0), &t());
        assert!(g.grow(Timestamp(60_000), &t(), |e| e == "busy"));
        assert_eq!(g.pace("idle", &t()), t().initial_rate);
        assert!(g.pace("busy", &t()) > t().initial_rate);
    }
}
