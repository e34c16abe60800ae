//! 429s that name no reason. Rules:
//! * one that arrives among answers that are mostly fine is noise (a
//!   gateway's hiccup, unrelated to tollgate's pace): the call alone waits
//!   and retries with jitter; no pace and no other work changes;
//! * sustained ones — at least `noise_min` over the noise window, and at
//!   least `noise_fraction` of its answers — are load nobody explained: the
//!   whole site backs off, doubling from 2 s while they keep coming
//!   (Retry-After wins when given); the endpoints' learned paces stay, only
//!   slow start ends (a limit may be near);
//! * a 429 with a reason this version does not know always backs off the
//!   site: it is Jira speaking, not noise.

use super::{Evidence, SiteGovernor, Tunables};
use crate::domain::ratelimit::RateLimitSignal;
use crate::domain::time::Timestamp;
use std::time::Duration;

impl SiteGovernor {
    /// Returns how long the throttled call should wait.
    pub(super) fn on_unexplained(
        &mut self,
        signal: &RateLimitSignal,
        evidence: &Evidence,
        now: Timestamp,
        t: &Tunables,
    ) -> Duration {
        let hint = signal.wait_hint(now);
        let (bare, answers) = evidence.unexplained;
        let sustained =
            bare >= t.noise_min && f64::from(bare) >= t.noise_fraction * f64::from(answers);
        if signal.reason.is_none() && !sustained {
            return hint.unwrap_or(Duration::from_millis(500));
        }
        self.unexplained = self.unexplained.saturating_add(1);
        let backoff = Duration::from_secs(2) * (1u32 << self.unexplained.saturating_sub(1).min(6));
        let wait = hint.unwrap_or(backoff);
        self.paused_until = self.paused_until.max(now.plus(wait));
        let reason = signal
            .reason
            .as_ref()
            .map_or("429 without a reason".to_string(), |r| {
                r.as_str().to_string()
            });
        self.note_pause(now, now.plus(wait), &reason);
        self.pause_reason = Some(reason);
        // It says nothing about which limit was hit: cutting every pace per
        // 429 took a run with 2 % random gateway 429s from 80/s to the
        // 0.5/s floor, minutes from recovering.
        for p in self.endpoints.values_mut() {
            p.slow_start = false;
        }
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{call, pace, t, throttle};
    use super::*;
    use crate::domain::ratelimit::LimitReason;

    fn among(bare: u32, answers: u32) -> Evidence {
        Evidence {
            unexplained: (bare, answers),
            ..Evidence::default()
        }
    }

    #[test]
    fn a_bare_429_among_good_answers_is_noise_and_pauses_nothing() {
        let mut g = SiteGovernor::default();
        g.endpoints.insert("e".into(), pace(80.0, false, 0));
        let before = g.clone();
        let wait = g.on_throttle(
            &call("e"),
            &throttle(None, None),
            &among(2, 100),
            Timestamp(0),
            &t(),
        );
        assert_eq!(wait, Duration::from_millis(500));
        assert_eq!(g, before, "no pause, no pace change: nothing to share");
    }

    #[test]
    fn sustained_unexplained_429s_back_off_site_wide_and_double() {
        let mut g = SiteGovernor::default();
        let storm = among(5, 10);
        let w1 = g.on_throttle(
            &call("e"),
            &throttle(None, None),
            &storm,
            Timestamp(0),
            &t(),
        );
        let w2 = g.on_throttle(
            &call("e"),
            &throttle(None, None),
            &storm,
            Timestamp(10),
            &t(),
        );
        assert_eq!((w1, w2), (Duration::from_secs(2), Duration::from_secs(4)));
        assert_eq!(g.paused_until, Timestamp(4010));
    }

    #[test]
    fn an_unknown_reason_backs_off_the_site_even_alone() {
        let mut g = SiteGovernor::default();
        let w = g.on_throttle(
            &call("e"),
            &throttle(Some(LimitReason::Other("new-thing".into())), Some(9)),
            &among(0, 100),
            Timestamp(20),
            &t(),
        );
        assert_eq!(w, Duration::from_secs(9), "Retry-After wins when given");
        assert_eq!(g.pause_reason.as_deref(), Some("new-thing"));
    }

    #[test]
    fn unexplained_429s_pause_the_site_but_leave_the_learned_paces() {
        let mut g = SiteGovernor::default();
        g.endpoints.insert("e".into(), pace(80.0, true, 0));
        for at in [5_000, 5_010, 5_020, 6_100] {
            g.on_throttle(
                &call("e"),
                &throttle(None, None),
                &among(4, 6),
                Timestamp(at),
                &t(),
            );
        }
        assert_eq!(g.endpoints["e"].rate, 80.0);
        assert!(!g.endpoints["e"].slow_start, "growth turns careful");
        assert!(g.paused_until > Timestamp(6_100));
    }
}
