//! Site pauses remembered for a day, for operators (the console draws them
//! beside the minute charts). Rules:
//! * a pause that starts before the last one ended (or touches it) extends
//!   it, so a run of quota 429s is one period;
//! * periods that ended more than a day ago are dropped when a new one is
//!   noted, and at most [`MAX_PAUSES`] are kept — the row stays small and a
//!   pause costs no write beyond the one that shares it.

use super::SiteGovernor;
use crate::domain::time::Timestamp;
use serde::{Deserialize, Serialize};

/// How long a period is remembered after it ended.
pub const PAUSES_KEPT_MS: i64 = 24 * 3_600_000;
/// The most periods kept.
pub const MAX_PAUSES: usize = 48;

/// A time every call of the site waited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PausePeriod {
    pub from: Timestamp,
    pub until: Timestamp,
    pub reason: String,
}

impl SiteGovernor {
    /// Notes that every call waits from `now` until `until`.
    pub(super) fn note_pause(&mut self, now: Timestamp, until: Timestamp, reason: &str) {
        self.pauses.retain(|p| p.until.0 >= now.0 - PAUSES_KEPT_MS);
        match self.pauses.last_mut() {
            Some(last) if now <= last.until => {
                last.until = last.until.max(until);
                if last.reason != reason && !last.reason.contains(reason) {
                    last.reason = format!("{}, {reason}", last.reason);
                }
            }
            _ => self.pauses.push(PausePeriod {
                from: now,
                until,
                reason: reason.to_string(),
            }),
        }
        let excess = self.pauses.len().saturating_sub(MAX_PAUSES);
        self.pauses.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_pauses_are_one_period_and_separate_ones_are_two() {
        let mut g = SiteGovernor::default();
        g.note_pause(
            Timestamp(1_000),
            Timestamp(61_000),
            "jira-quota-global-based",
        );
        g.note_pause(
            Timestamp(30_000),
            Timestamp(90_000),
            "jira-quota-global-based",
        );
        assert_eq!(g.pauses.len(), 1);
        assert_eq!(g.pauses[0].until, Timestamp(90_000));
        g.note_pause(
            Timestamp(200_000),
            Timestamp(202_000),
            "429 without a reason",
        );
        assert_eq!(g.pauses.len(), 2);
        assert_eq!(g.pauses[1].from, Timestamp(200_000));
    }

    #[test]
    fn a_day_old_period_goes_when_a_new_one_comes_and_at_most_48_stay() {
        let mut g = SiteGovernor::default();
        g.note_pause(Timestamp(0), Timestamp(1_000), "a");
        let day = PAUSES_KEPT_MS;
        g.note_pause(Timestamp(day + 5_000), Timestamp(day + 6_000), "b");
        assert_eq!(g.pauses.len(), 1, "{:?}", g.pauses);
        for i in 0..100 {
            let at = day + 10_000 + i * 10_000;
            g.note_pause(Timestamp(at), Timestamp(at + 1_000), "c");
        }
        assert_eq!(g.pauses.len(), MAX_PAUSES);
        assert_eq!(
            g.pauses.last().unwrap().from,
            Timestamp(day + 10_000 + 99 * 10_000)
        );
    }
}
