//! Hotspots: what tollgate asked of Jira and where Jira pushed back —
//! requests and 429s per endpoint and method, 429s per reason, points spent
//! per Jira operation, and the issues throttled most.
//!
//! Figures are counters in hourly windows (the quota's window), kept as flat
//! `name → count` pairs so every store can add them atomically.

use serde::Serialize;
use std::collections::BTreeMap;

/// Issues kept per flush: a storm on thousands of issues must not grow a
/// stats row without bound; the hottest are the ones worth showing.
pub const MAX_ISSUES_PER_FLUSH: usize = 50;

/// What one Jira call came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// Jira answered (success or a refusal other than 429). Points spent.
    Answered { points: u64 },
    /// 429, with the reason Jira gave (`None`: no reason).
    Throttled,
    /// No answer (network, timeout) or a 5xx.
    Failed,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStats {
    pub requests: u64,
    pub throttled: u64,
    pub points: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallStats {
    pub requests: u64,
    pub throttled: u64,
    pub points: u64,
    /// `POST /rest/api/3/issue` → figures.
    pub endpoints: BTreeMap<String, EndpointStats>,
    /// `RateLimit-Reason` (or `none`) → 429s.
    pub throttled_by_reason: BTreeMap<String, u64>,
    /// Issue key → 429s on writes to it.
    pub throttled_issues: BTreeMap<String, u64>,
    /// Sender → what became of what it posted.
    pub senders: BTreeMap<String, SenderStats>,
}

/// What became of one sender's deliveries, item by item.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SenderStats {
    pub accepted: u64,
    pub duplicate: u64,
    pub rejected: u64,
    pub ignored: u64,
}

impl SenderStats {
    fn counters(&self) -> [(&'static str, u64); 4] {
        [
            ("accepted", self.accepted),
            ("duplicate", self.duplicate),
            ("rejected", self.rejected),
            ("ignored", self.ignored),
        ]
    }
}

impl CallStats {
    pub fn is_empty(&self) -> bool {
        self.requests == 0 && self.senders.is_empty()
    }

    pub fn record(
        &mut self,
        endpoint: &str,
        issue: Option<&str>,
        outcome: CallOutcome,
        reason: Option<&str>,
    ) {
        let e = self.endpoints.entry(endpoint.to_string()).or_default();
        e.requests += 1;
        self.requests += 1;
        match outcome {
            CallOutcome::Answered { points } => {
                e.points += points;
                self.points += points;
            }
            CallOutcome::Throttled => {
                e.throttled += 1;
                self.throttled += 1;
                *self
                    .throttled_by_reason
                    .entry(reason.unwrap_or("none").to_string())
                    .or_default() += 1;
                if let Some(issue) = issue {
                    *self.throttled_issues.entry(issue.to_string()).or_default() += 1;
                }
            }
            CallOutcome::Failed => {}
        }
    }

    pub fn merge(&mut self, other: &CallStats) {
        for (name, n) in other.to_counters() {
            self.add_counter(&name, n);
        }
    }

    /// Flat counters, the stores' form. Only the hottest issues are kept.
    pub fn to_counters(&self) -> Vec<(String, u64)> {
        let mut out = vec![
            ("requests".to_string(), self.requests),
            ("throttled".to_string(), self.throttled),
            ("points".to_string(), self.points),
        ];
        for (endpoint, e) in &self.endpoints {
            out.push((format!("requests|{endpoint}"), e.requests));
            out.push((format!("throttled|{endpoint}"), e.throttled));
            out.push((format!("points|{endpoint}"), e.points));
        }
        for (reason, n) in &self.throttled_by_reason {
            out.push((format!("reason|{reason}"), *n));
        }
        let mut issues: Vec<(&String, &u64)> = self.throttled_issues.iter().collect();
        issues.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (issue, n) in issues.into_iter().take(MAX_ISSUES_PER_FLUSH) {
            out.push((format!("issue|{issue}"), *n));
        }
        for (sender, st) in &self.senders {
            for (what, n) in st.counters() {
                out.push((format!("sender|{sender}|{what}"), n));
            }
        }
        out.retain(|(_, n)| *n > 0);
        out
    }

    /// Adds one stored counter back; unknown names are ignored (a newer
    /// version may have written them).
    pub fn add_counter(&mut self, name: &str, n: u64) {
        match name.split_once('|') {
            None => match name {
                "requests" => self.requests += n,
                "throttled" => self.throttled += n,
                "points" => self.points += n,
                _ => {}
            },
            Some(("requests", ep)) => self.endpoints.entry(ep.into()).or_default().requests += n,
            Some(("throttled", ep)) => self.endpoints.entry(ep.into()).or_default().throttled += n,
            Some(("points", ep)) => self.endpoints.entry(ep.into()).or_default().points += n,
            Some(("reason", r)) => *self.throttled_by_reason.entry(r.into()).or_default() += n,
            Some(("issue", i)) => *self.throttled_issues.entry(i.into()).or_default() += n,
            Some(("sender", rest)) => {
                if let Some((sender, what)) = rest.rsplit_once('|') {
                    let st = self.senders.entry(sender.into()).or_default();
                    match what {
                        "accepted" => st.accepted += n,
                        "duplicate" => st.duplicate += n,
                        "rejected" => st.rejected += n,
                        "ignored" => st.ignored += n,
                        _ => {}
                    }
                }
            }
            Some(_) => {}
        }
    }

    pub fn from_counters<'a>(counters: impl IntoIterator<Item = (&'a str, u64)>) -> Self {
        let mut s = CallStats::default();
        for (name, n) in counters {
            s.add_counter(name, n);
        }
        s
    }

    /// The issues throttled most, hottest first.
    pub fn top_issues(&self, n: usize) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self
            .throttled_issues
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }
}

/// The Jira operation an endpoint performs, for people reading the figures.
pub fn operation_name(endpoint: &str) -> &'static str {
    match endpoint {
        "POST /rest/api/3/issue" => "create issue",
        "POST /rest/api/3/issue/bulk" => "bulk create",
        "PUT /rest/api/3/issue/{key}" => "edit issue",
        "POST /rest/api/3/issue/{key}/comment" => "add comment",
        "GET /rest/api/3/issue/{key}/comment" => "read comments",
        "POST /rest/api/3/issue/{key}/transitions" => "transition",
        "GET /rest/api/3/issue/{key}/transitions" => "read transitions",
        "POST /rest/api/3/search/jql" => "search",
        e if e.contains("/wiki/") && e.starts_with("POST") && e.contains("footer-comments") => {
            "confluence comment"
        }
        e if e.contains("/wiki/") && e.starts_with("POST") => "confluence page",
        _ => "other",
    }
}

/// The hourly window a time falls in (the quota's window).
pub fn hour_window(unix_ms: i64) -> i64 {
    unix_ms.div_euclid(3_600_000)
}

/// The minute window a time falls in (the console's last hour).
pub fn minute_window(unix_ms: i64) -> i64 {
    unix_ms.div_euclid(60_000)
}

/// Minutes the per-minute figures are kept: the last hour, with room.
pub const MINUTES_KEPT: i64 = 120;

impl CallStats {
    /// What is kept per minute: totals, endpoints and 429 reasons — not
    /// the issues or senders, which the hourly figures carry.
    pub fn minute_part(&self) -> CallStats {
        CallStats {
            requests: self.requests,
            throttled: self.throttled,
            points: self.points,
            endpoints: self.endpoints.clone(),
            throttled_by_reason: self.throttled_by_reason.clone(),
            throttled_issues: Default::default(),
            senders: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CallStats {
        let mut s = CallStats::default();
        let create = "POST /rest/api/3/issue";
        let comment = "POST /rest/api/3/issue/{key}/comment";
        s.record(create, None, CallOutcome::Answered { points: 1 }, None);
        s.record(
            create,
            None,
            CallOutcome::Throttled,
            Some("jira-burst-based"),
        );
        s.record(
            comment,
            Some("OPS-1"),
            CallOutcome::Throttled,
            Some("jira-per-issue-on-write"),
        );
        s.record(comment, Some("OPS-1"), CallOutcome::Throttled, None);
        s.record(comment, Some("OPS-2"), CallOutcome::Throttled, None);
        s.record(comment, Some("OPS-2"), CallOutcome::Failed, None);
        s
    }

    #[test]
    fn calls_are_counted_per_endpoint_reason_and_issue() {
        let s = sample();
        assert_eq!((s.requests, s.throttled, s.points), (6, 4, 1));
        assert_eq!(s.endpoints["POST /rest/api/3/issue"].throttled, 1);
        assert_eq!(
            s.endpoints["POST /rest/api/3/issue/{key}/comment"].requests,
            4
        );
        assert_eq!(s.throttled_by_reason["none"], 2);
        assert_eq!(s.throttled_by_reason["jira-burst-based"], 1);
        assert_eq!(s.top_issues(1), [("OPS-1".to_string(), 2)]);
    }

    #[test]
    fn sender_figures_round_trip_even_for_names_with_separators() {
        let mut s = CallStats::default();
        s.senders.insert(
            "alert|manager".into(),
            SenderStats {
                accepted: 3,
                duplicate: 2,
                rejected: 1,
                ignored: 4,
            },
        );
        let counters = s.to_counters();
        let back = CallStats::from_counters(counters.iter().map(|(k, v)| (k.as_str(), *v)));
        assert_eq!(back, s);
        assert!(!s.is_empty(), "sender figures alone are worth storing");
    }

    #[test]
    fn counters_round_trip_and_add_up() {
        let s = sample();
        let counters = s.to_counters();
        let back = CallStats::from_counters(counters.iter().map(|(k, v)| (k.as_str(), *v)));
        assert_eq!(back, s);
        let mut twice = s.clone();
        twice.merge(&s);
        assert_eq!(twice.requests, 12);
        assert_eq!(twice.throttled_issues["OPS-2"], 2);
    }

    #[test]
    fn only_the_hottest_issues_are_kept_per_flush() {
        let mut s = CallStats::default();
        for i in 0..(MAX_ISSUES_PER_FLUSH + 10) {
            for _ in 0..=i {
                s.record(
                    "PUT /x",
                    Some(&format!("OPS-{}", i + 1)),
                    CallOutcome::Throttled,
                    None,
                );
            }
        }
        let issues = s
            .to_counters()
            .into_iter()
            .filter(|(k, _)| k.starts_with("issue|"))
            .count();
        assert_eq!(issues, MAX_ISSUES_PER_FLUSH);
        assert!(!s.to_counters().iter().any(|(k, _)| k == "issue|OPS-1"));
    }

    #[test]
    fn endpoints_read_as_operations_and_hours_as_windows() {
        assert_eq!(operation_name("POST /rest/api/3/issue/bulk"), "bulk create");
        assert_eq!(hour_window(3_600_000 * 5 + 1), 5);
    }
}
