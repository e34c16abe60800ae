//! How long to wait before running a job again. Randomness comes in as a
//! number in [0, 1) so the arithmetic is deterministic under test.

use super::ratelimit::RateLimitSignal;
use super::time::Timestamp;
use std::time::Duration;

/// The longest single wait between two runs of a failing job, unless
/// configured otherwise.
pub const DEFAULT_RETRY_CAP: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// First delay after a transient failure.
    pub base: Duration,
    /// Longest single delay.
    pub cap: Duration,
    /// Transient failures before the job is EXHAUSTED. Throttles do not count.
    pub max_attempts: u32,
    /// Throttled runs before the job is EXHAUSTED: a net for a site that
    /// never recovers, far above what a healthy quota produces.
    pub max_throttles: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(1),
            cap: DEFAULT_RETRY_CAP,
            max_attempts: 8,
            max_throttles: 200,
        }
    }
}

impl RetryPolicy {
    /// Capped exponential backoff with full jitter: anywhere in
    /// `[0, min(cap, base · 2^(attempt-1))]` (at least 100 ms), so jobs that
    /// failed together do not come back together.
    pub fn transient_delay(&self, attempt: u32, unit_random: f64) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        full_jitter(exp.min(self.cap), unit_random, Duration::from_millis(100))
    }

    /// A throttled job comes back no sooner than Jira asked (Retry-After or
    /// reset), plus up to 20 % so that workers released together do not
    /// arrive together. With no hint (a bare 429, mostly noise), 250 ms plus
    /// full jitter over a ceiling doubling from 500 ms, capped.
    pub fn throttle_delay(
        &self,
        signal: &RateLimitSignal,
        now: Timestamp,
        consecutive: u32,
        unit_random: f64,
    ) -> Duration {
        let u = unit_random.clamp(0.0, 1.0);
        match signal.wait_hint(now) {
            Some(hint) => hint.mul_f64(1.0 + 0.2 * u) + Duration::from_millis((u * 250.0) as u64),
            None => {
                // The site's pause (sustained unexplained 429s) does the
                // backing off; this only spreads the retries.
                let exp = Duration::from_millis(500).saturating_mul(1u32 << consecutive.min(16));
                Duration::from_millis(250) + full_jitter(exp.min(self.cap), u, Duration::ZERO)
            }
        }
    }
}

/// Uniform in `[floor, ceiling]`.
fn full_jitter(ceiling: Duration, unit_random: f64, floor: Duration) -> Duration {
    ceiling
        .mul_f64(unit_random.clamp(0.0, 1.0))
        .max(floor.min(ceiling))
}

/// Longest wait between two looks for an entity's issue.
pub const MAX_CREATOR_WAIT: Duration = Duration::from_secs(60);

/// How long a job whose entity's issue does not exist yet waits before it
/// looks again: soon while the creator is young, then a quarter of the
/// time waited so far, up to [`MAX_CREATOR_WAIT`] — a follow-up whose issue
/// never comes does not poll every second until its deadline.
pub fn creator_wait(waited: Duration, floor: Duration) -> Duration {
    (waited / 4).clamp(floor, MAX_CREATOR_WAIT.max(floor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_waiting_for_its_issue_looks_again_less_often_up_to_a_minute() {
        let floor = Duration::from_secs(2);
        assert_eq!(creator_wait(Duration::ZERO, floor), floor);
        assert_eq!(
            creator_wait(Duration::from_secs(40), floor),
            Duration::from_secs(10)
        );
        assert_eq!(
            creator_wait(Duration::from_secs(3600), floor),
            MAX_CREATOR_WAIT
        );
        // From 5 s to the 300 s deadline: a handful of looks, not hundreds.
        let (mut waited, mut looks) = (Duration::from_secs(5), 0);
        while waited < Duration::from_secs(300) {
            waited += creator_wait(waited, floor);
            looks += 1;
        }
        assert!(looks < 25, "{looks}");
    }

    #[test]
    fn transient_delays_are_fully_jittered_under_a_doubling_ceiling_capped_at_thirty_seconds() {
        let p = RetryPolicy::default();
        assert_eq!(p.transient_delay(1, 0.999), Duration::from_millis(999));
        assert_eq!(p.transient_delay(3, 0.5), Duration::from_secs(2));
        assert_eq!(p.transient_delay(3, 0.999), Duration::from_millis(3996));
        assert_eq!(p.transient_delay(30, 0.999), Duration::from_millis(29_970));
        assert_eq!(p.transient_delay(30, 1.0), Duration::from_secs(30));
        assert_eq!(
            p.transient_delay(4, 0.0),
            Duration::from_millis(100),
            "never a hot loop"
        );
        let capped = RetryPolicy {
            cap: Duration::from_secs(5),
            ..RetryPolicy::default()
        };
        assert_eq!(capped.transient_delay(10, 1.0), Duration::from_secs(5));
    }

    #[test]
    fn retry_after_is_a_minimum_never_shortened_by_jitter() {
        let p = RetryPolicy::default();
        let s = RateLimitSignal {
            retry_after: Some(Duration::from_secs(10)),
            ..Default::default()
        };
        for u in [0.0, 0.3, 0.99] {
            let d = p.throttle_delay(&s, Timestamp(0), 5, u);
            assert!(
                d >= Duration::from_secs(10) && d <= Duration::from_millis(12_250),
                "{d:?}"
            );
        }
    }

    #[test]
    fn a_bare_throttle_retries_soon_under_a_ceiling_doubling_from_half_a_second() {
        let p = RetryPolicy::default();
        let none = RateLimitSignal::default();
        assert_eq!(
            p.throttle_delay(&none, Timestamp(0), 0, 1.0),
            Duration::from_millis(750)
        );
        assert_eq!(
            p.throttle_delay(&none, Timestamp(0), 2, 0.5),
            Duration::from_millis(1250)
        );
        assert_eq!(
            p.throttle_delay(&none, Timestamp(0), 9, 1.0),
            Duration::from_millis(30_250),
            "capped"
        );
        assert_eq!(
            p.throttle_delay(&none, Timestamp(0), 0, 0.0),
            Duration::from_millis(250)
        );
    }
}
