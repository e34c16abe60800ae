//! Time as plain numbers so the domain stays testable with a fake clock.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Milliseconds since the Unix epoch, UTC.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }

    pub fn plus(self, d: Duration) -> Self {
        Timestamp(
            self.0
                .saturating_add(d.as_millis().min(i64::MAX as u128) as i64),
        )
    }

    /// The time from `self` until `later`, zero if `later` is not later.
    pub fn until(self, later: Timestamp) -> Duration {
        Duration::from_millis(later.0.saturating_sub(self.0).max(0) as u64)
    }

    /// A time as Jira writes it (`2026-11-30T04:40:20.123+0000`) or as RFC
    /// 3339; `None` for anything else.
    pub fn parse_jira(s: &str) -> Option<Timestamp> {
        let jira = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond][offset_hour sign:mandatory][offset_minute]"
        );
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .or_else(|_| time::OffsetDateTime::parse(s, &jira))
            .ok()?;
        Some(Timestamp((t.unix_timestamp_nanos() / 1_000_000) as i64))
    }

    /// RFC 3339 with milliseconds, for audit entries and API answers.
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(t) => t
                .format(&time::macros::format_description!(
                    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
                ))
                .unwrap_or_else(|_| self.0.to_string()),
            Err(_) => self.0.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_rfc3339_with_milliseconds() {
        assert_eq!(
            Timestamp(1_700_000_000_123).to_rfc3339(),
            "2023-11-14T22:13:20.123Z"
        );
    }

    #[test]
    fn reads_jira_times_and_rfc3339() {
        assert_eq!(
            Timestamp::parse_jira("2023-11-14T22:13:20.123+0000"),
            Some(Timestamp(1_700_000_000_123))
        );
        assert_eq!(
            Timestamp::parse_jira("2023-11-14T23:13:20.123+0100"),
            Some(Timestamp(1_700_000_000_123))
        );
        assert_eq!(
            Timestamp::parse_jira("2023-11-14T22:13:20.123Z"),
            Some(Timestamp(1_700_000_000_123))
        );
        assert_eq!(Timestamp::parse_jira("yesterday"), None);
    }

    #[test]
    fn until_never_goes_negative() {
        assert_eq!(Timestamp(10).until(Timestamp(5)), Duration::ZERO);
        assert_eq!(Timestamp(5).until(Timestamp(10)), Duration::from_millis(5));
    }
}
