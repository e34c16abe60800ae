//! Degraded mode, per Jira site: when calls keep failing (5xx, timeouts,
//! dropped connections — not throttles, which pacing handles, nor 4xx,
//! which are the request's fault), transitions and field edits wait, so a
//! sick site is not left with half-applied workflow changes; comments go on
//! (they say what is happening), and so do creates (a new incident must not
//! wait for Jira to be healthy; a lost create answer is reconciled anyway). The site recovers after a run of successes, after a quiet spell
//! with no failure, or when an operator clears it. Every change is kept
//! (the site's own audit trail) and numbered, so each is announced once.
//!
//! Lives in the site's shared governor row: every worker sees the same mode.

use super::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthRules {
    /// This many failures in a row, none older than `window`, degrade the
    /// site. In a row: a busy healthy site with a few random failures must
    /// not degrade (5 % of calls failing makes eight in a row once in
    /// billions), while a sick one fails nearly every call.
    pub failures: usize,
    pub window: Duration,
    /// This many successes in a row while degraded restore it.
    pub successes: u32,
    /// So does this long without a failure.
    pub quiet: Duration,
    /// How long a held write waits before it asks again.
    pub hold: Duration,
}

impl Default for HealthRules {
    fn default() -> Self {
        HealthRules {
            failures: 8,
            window: Duration::from_secs(60),
            successes: 5,
            quiet: Duration::from_secs(120),
            hold: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Degraded {
    pub since: Timestamp,
    pub reason: String,
    pub successes: u32,
    pub last_failure: Timestamp,
}

/// One entry of the site's trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthChange {
    pub seq: u64,
    pub at: Timestamp,
    pub degraded: bool,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SiteHealth {
    /// Recent failures in a row, within the window.
    #[serde(default)]
    pub failures: Vec<Timestamp>,
    #[serde(default)]
    pub degraded: Option<Degraded>,
    /// The latest changes, oldest first (at most `KEEP`).
    #[serde(default)]
    pub changes: Vec<HealthChange>,
    #[serde(default)]
    pub seq: u64,
    /// Changes up to this one were announced.
    #[serde(default)]
    pub notified_seq: u64,
}

const KEEP: usize = 20;
const TRANSITIONS_ENDPOINT: &str = "/transitions";
const EDIT_METHOD: &str = "PUT ";

impl SiteHealth {
    pub fn is_degraded(&self) -> bool {
        self.degraded.is_some()
    }

    /// Whether a call waits while the site is degraded: transitions and
    /// field edits. Reads go on (they find the effect of earlier attempts).
    pub fn holds(&self, write: bool, endpoint: &str) -> bool {
        self.is_degraded()
            && write
            && (endpoint.ends_with(TRANSITIONS_ENDPOINT) || endpoint.starts_with(EDIT_METHOD))
    }

    fn change(&mut self, now: Timestamp, degraded: bool, why: String) {
        self.seq += 1;
        self.changes.push(HealthChange {
            seq: self.seq,
            at: now,
            degraded,
            why,
        });
        if self.changes.len() > KEEP {
            self.changes.remove(0);
        }
    }

    fn leave(&mut self, now: Timestamp, why: String) -> bool {
        if self.degraded.take().is_none() {
            return false;
        }
        self.failures.clear();
        self.change(now, false, why);
        true
    }

    /// A call failed. Returns whether anything changed (worth a write).
    pub fn on_failure(&mut self, now: Timestamp, r: &HealthRules) -> bool {
        let horizon = now.0 - r.window.as_millis() as i64;
        self.failures.retain(|t| t.0 > horizon);
        self.failures.push(now);
        if let Some(d) = &mut self.degraded {
            d.last_failure = now;
            d.successes = 0;
            return true;
        }
        if self.failures.len() >= r.failures {
            let reason = format!(
                "{} calls in a row failed within {} s",
                self.failures.len(),
                r.window.as_secs()
            );
            self.degraded = Some(Degraded {
                since: now,
                reason: reason.clone(),
                successes: 0,
                last_failure: now,
            });
            self.change(now, true, reason);
        }
        true
    }

    /// A call succeeded. Writes only while degraded, or to end a run of
    /// failures.
    pub fn on_success(&mut self, now: Timestamp, r: &HealthRules) -> bool {
        let Some(d) = &mut self.degraded else {
            let had_failures = !self.failures.is_empty();
            self.failures.clear();
            return had_failures;
        };
        d.successes += 1;
        if d.successes >= r.successes {
            return self.leave(now, format!("{} calls in a row succeeded", r.successes));
        }
        true
    }

    /// Leaves degraded mode after a quiet spell without failures.
    pub fn settle(&mut self, now: Timestamp, r: &HealthRules) -> bool {
        match &self.degraded {
            Some(d) if now.0 - d.last_failure.0 >= r.quiet.as_millis() as i64 => {
                self.leave(now, format!("no failure for {} s", r.quiet.as_secs()))
            }
            _ => false,
        }
    }

    /// An operator clears the mode.
    pub fn clear(&mut self, now: Timestamp, who: &str) -> bool {
        self.leave(now, format!("cleared by {who}"))
    }

    /// Changes not announced yet.
    pub fn unannounced(&self) -> impl Iterator<Item = &HealthChange> {
        self.changes
            .iter()
            .filter(move |c| c.seq > self.notified_seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> HealthRules {
        HealthRules {
            failures: 3,
            window: Duration::from_secs(10),
            successes: 2,
            quiet: Duration::from_secs(60),
            hold: Duration::from_secs(5),
        }
    }

    #[test]
    fn failures_within_the_window_degrade_the_site_and_scattered_ones_do_not() {
        let mut h = SiteHealth::default();
        for at in [0, 11_000, 22_000, 33_000] {
            h.on_failure(Timestamp(at), &rules());
        }
        assert!(!h.is_degraded(), "one failure per window");
        h.on_failure(Timestamp(34_000), &rules());
        h.on_failure(Timestamp(35_000), &rules());
        assert!(h.is_degraded());
        assert_eq!(h.changes.len(), 1);
        assert!(h.changes[0].degraded);
        assert_eq!(h.changes[0].why, "3 calls in a row failed within 10 s");
    }

    #[test]
    fn a_success_between_failures_starts_the_count_again() {
        let mut h = SiteHealth::default();
        h.on_failure(Timestamp(0), &rules());
        h.on_failure(Timestamp(1), &rules());
        assert!(
            h.on_success(Timestamp(2), &rules()),
            "a write to end the run"
        );
        assert!(!h.on_success(Timestamp(3), &rules()), "then no writes");
        h.on_failure(Timestamp(4), &rules());
        h.on_failure(Timestamp(5), &rules());
        assert!(!h.is_degraded());
    }

    #[test]
    fn while_degraded_transitions_and_edits_wait_and_the_rest_goes() {
        let mut h = SiteHealth::default();
        for at in 0..3 {
            h.on_failure(Timestamp(at), &rules());
        }
        assert!(h.holds(true, "POST /rest/api/3/issue/{key}/transitions"));
        assert!(h.holds(true, "PUT /rest/api/3/issue/{key}"));
        assert!(
            !h.holds(true, "POST /rest/api/3/issue"),
            "new incidents still open"
        );
        assert!(!h.holds(true, "POST /rest/api/3/issue/{key}/comment"));
        assert!(!h.holds(false, "POST /rest/api/3/search/jql"));
        assert!(!SiteHealth::default().holds(true, "PUT /rest/api/3/issue/{key}"));
    }

    #[test]
    fn a_run_of_successes_restores_the_site_and_a_failure_restarts_the_count() {
        let mut h = SiteHealth::default();
        for at in 0..3 {
            h.on_failure(Timestamp(at), &rules());
        }
        h.on_success(Timestamp(10), &rules());
        h.on_failure(Timestamp(20), &rules());
        h.on_success(Timestamp(30), &rules());
        assert!(h.is_degraded(), "the count restarted");
        assert!(h.on_success(Timestamp(40), &rules()));
        assert!(!h.is_degraded());
        assert_eq!(h.changes.last().unwrap().why, "2 calls in a row succeeded");
        assert!(!h.on_success(Timestamp(50), &rules()), "healthy: no write");
    }

    #[test]
    fn a_quiet_spell_or_an_operator_restores_the_site() {
        let mut h = SiteHealth::default();
        for at in 0..3 {
            h.on_failure(Timestamp(at), &rules());
        }
        assert!(!h.settle(Timestamp(59_000), &rules()));
        assert!(h.settle(Timestamp(60_002), &rules()));
        for at in 70_000..70_003 {
            h.on_failure(Timestamp(at), &rules());
        }
        assert!(h.clear(Timestamp(71_000), "dana"));
        assert_eq!(h.changes.last().unwrap().why, "cleared by dana");
        assert!(!h.clear(Timestamp(72_000), "dana"), "nothing to clear");
    }

    #[test]
    fn each_change_is_announced_once_and_the_trail_is_bounded() {
        let mut h = SiteHealth::default();
        for i in 0..30 {
            let at = i * 100_000;
            for k in 0..3 {
                h.on_failure(Timestamp(at + k), &rules());
            }
            h.clear(Timestamp(at + 10), "ops");
        }
        assert_eq!(h.changes.len(), KEEP);
        assert_eq!(h.unannounced().count(), KEEP);
        h.notified_seq = h.seq;
        assert_eq!(h.unannounced().count(), 0);
    }
}
