//! Reading Atlassian's rate-limit signals off a response.
//!
//! Jira Cloud sends, in varying combinations: `Retry-After` (seconds),
//! `X-RateLimit-Reset` (ISO 8601, with or without seconds),
//! `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-NearLimit`,
//! `RateLimit-Reason`, and IETF-draft `RateLimit-Policy` /
//! `RateLimit` (`"name";q=…;w=…` and `r=…;t=…`), sometimes `Beta-` prefixed.
//! Everything is optional and anything may be garbage: parsing never fails,
//! it only learns less.

use super::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Why Jira said 429, as far as it told us.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LimitReason {
    /// The app's hourly points quota, shared by every tenant.
    QuotaGlobal,
    /// The points quota of this tenant.
    QuotaTenant,
    /// A per-second bucket of one endpoint and method.
    Burst,
    /// Too many writes to one issue.
    PerIssueWrite,
    /// Older cost-based limiting.
    CostBased,
    /// A reason this version does not know; treated as site-wide.
    Other(String),
}

impl LimitReason {
    pub fn parse(s: &str) -> Self {
        match s.trim().to_ascii_lowercase().as_str() {
            "jira-quota-global-based" => LimitReason::QuotaGlobal,
            "jira-quota-tenant-based" => LimitReason::QuotaTenant,
            "jira-burst-based" => LimitReason::Burst,
            "jira-per-issue-on-write" => LimitReason::PerIssueWrite,
            "jira-cost-based" => LimitReason::CostBased,
            other => LimitReason::Other(other.chars().take(64).collect()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            LimitReason::QuotaGlobal => "jira-quota-global-based",
            LimitReason::QuotaTenant => "jira-quota-tenant-based",
            LimitReason::Burst => "jira-burst-based",
            LimitReason::PerIssueWrite => "jira-per-issue-on-write",
            LimitReason::CostBased => "jira-cost-based",
            LimitReason::Other(s) => s,
        }
    }
}

/// `RateLimit-Policy: "global-app-quota";q=65000;w=3600`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaPolicy {
    pub name: Option<String>,
    pub quota: u64,
    pub window: Duration,
}

/// `RateLimit: "global-app-quota";r=1200;t=600`: points left and time until
/// they are refilled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaState {
    pub name: Option<String>,
    pub remaining: u64,
    pub reset_in: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RateLimitSignal {
    pub retry_after: Option<Duration>,
    pub reset_at: Option<Timestamp>,
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    pub near_limit: bool,
    pub reason: Option<LimitReason>,
    pub policy: Option<QuotaPolicy>,
    pub state: Option<QuotaState>,
}

impl RateLimitSignal {
    /// Reads every signal from `headers` (name, value), names matched
    /// case-insensitively. `now` turns an absolute reset into a wait.
    pub fn from_headers<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut s = RateLimitSignal::default();
        for (name, value) in headers {
            let name = name.to_ascii_lowercase();
            let name = name.strip_prefix("beta-").unwrap_or(&name);
            let value = value.trim();
            match name {
                "retry-after" => s.retry_after = parse_retry_after(value).or(s.retry_after),
                "x-ratelimit-reset" => s.reset_at = parse_iso8601(value).or(s.reset_at),
                "x-ratelimit-limit" => s.limit = value.parse().ok().or(s.limit),
                "x-ratelimit-remaining" => s.remaining = value.parse().ok().or(s.remaining),
                "x-ratelimit-nearlimit" => s.near_limit |= value.eq_ignore_ascii_case("true"),
                "ratelimit-reason" if !value.is_empty() => {
                    s.reason = Some(LimitReason::parse(value))
                }
                "ratelimit-policy" => s.policy = parse_policy(value).or(s.policy.take()),
                "ratelimit" => s.state = parse_state(value).or(s.state.take()),
                _ => {}
            }
        }
        s
    }

    /// How long the response asks us to wait, if it says: `Retry-After`
    /// first, then the reset time, then an exhausted `RateLimit` quota.
    pub fn wait_hint(&self, now: Timestamp) -> Option<Duration> {
        if let Some(ra) = self.retry_after {
            return Some(ra);
        }
        if let Some(reset) = self.reset_at {
            return Some(now.until(reset));
        }
        match &self.state {
            Some(st) if st.remaining == 0 => Some(st.reset_in),
            _ => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self == &RateLimitSignal::default()
    }
}

/// Seconds (integer or decimal), or an HTTP-date, which some proxies send.
fn parse_retry_after(v: &str) -> Option<Duration> {
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(86_400)));
    }
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    // An HTTP-date is absolute; without a clock here we cannot make it a
    // wait, so it is ignored and the reset header or backoff decides.
    None
}

/// ISO 8601 timestamps as Atlassian sends them: `2026-03-01T12:00:00Z`,
/// `2026-03-01T12:00Z` (no seconds), fractions, or a numeric offset.
pub fn parse_iso8601(v: &str) -> Option<Timestamp> {
    use time::format_description::well_known::Rfc3339;
    let to_ts = |t: time::OffsetDateTime| Timestamp((t.unix_timestamp_nanos() / 1_000_000) as i64);
    if let Ok(t) = time::OffsetDateTime::parse(v, &Rfc3339) {
        return Some(to_ts(t));
    }
    // No seconds: `YYYY-MM-DDTHH:MM` then a zone. Insert `:00` and retry.
    let (date, rest) = v.split_once(['T', 't'])?;
    let zone_at = rest.find(['Z', 'z', '+', '-'])?;
    let (hm, zone) = rest.split_at(zone_at);
    if hm.len() != 5 {
        return None;
    }
    let with_seconds = format!("{date}T{hm}:00{zone}");
    time::OffsetDateTime::parse(&with_seconds, &Rfc3339)
        .ok()
        .map(to_ts)
}

/// Splits one structured-field item: an optional quoted name, then
/// `;key=value` parameters.
fn item_params(item: &str) -> (Option<String>, Vec<(String, String)>) {
    let mut parts = item.split(';').map(str::trim);
    let mut name = None;
    let mut params = Vec::new();
    if let Some(first) = parts.next() {
        match first.split_once('=') {
            Some((k, v)) => params.push((k.trim().to_ascii_lowercase(), v.trim().to_string())),
            None if !first.is_empty() => name = Some(first.trim_matches('"').to_string()),
            None => {}
        }
    }
    for p in parts {
        if let Some((k, v)) = p.split_once('=') {
            params.push((
                k.trim().to_ascii_lowercase(),
                v.trim().trim_matches('"').to_string(),
            ));
        }
    }
    (name, params)
}

fn param<T: std::str::FromStr>(params: &[(String, String)], keys: &[&str]) -> Option<T> {
    params
        .iter()
        .find(|(k, _)| keys.contains(&k.as_str()))
        .and_then(|(_, v)| v.parse().ok())
}

/// Several policies may be listed; the most restrictive (smallest quota per
/// second) governs.
fn parse_policy(v: &str) -> Option<QuotaPolicy> {
    v.split(',')
        .filter_map(|item| {
            let (name, params) = item_params(item);
            let quota = param::<u64>(&params, &["q", "limit"])?;
            let window = param::<u64>(&params, &["w", "window"])
                .unwrap_or(3600)
                .max(1);
            Some(QuotaPolicy {
                name,
                quota,
                window: Duration::from_secs(window),
            })
        })
        .min_by(|a, b| {
            let ra = a.quota as f64 / a.window.as_secs_f64();
            let rb = b.quota as f64 / b.window.as_secs_f64();
            ra.total_cmp(&rb)
        })
}

/// Several states may be listed; the one with the fewest points left governs.
fn parse_state(v: &str) -> Option<QuotaState> {
    v.split(',')
        .filter_map(|item| {
            let (name, params) = item_params(item);
            let remaining = param::<u64>(&params, &["r", "remaining"])?;
            let reset = param::<u64>(&params, &["t", "reset"]).unwrap_or(0);
            Some(QuotaState {
                name,
                remaining,
                reset_in: Duration::from_secs(reset),
            })
        })
        .min_by_key(|s| s.remaining)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(headers: &[(&str, &str)]) -> RateLimitSignal {
        RateLimitSignal::from_headers(headers.iter().copied())
    }

    #[test]
    fn retry_after_in_seconds_is_read() {
        assert_eq!(
            signal(&[("Retry-After", "7")]).retry_after,
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            signal(&[("retry-after", "1.5")]).retry_after,
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn garbage_retry_after_is_ignored_not_fatal() {
        for v in ["", "soon", "-3", "NaN", "Wed, 21 Oct 2015 07:28:00 GMT"] {
            assert_eq!(signal(&[("Retry-After", v)]).retry_after, None, "{v}");
        }
    }

    #[test]
    fn reset_is_read_with_and_without_seconds() {
        let with = signal(&[("X-RateLimit-Reset", "2026-03-01T12:00:30Z")])
            .reset_at
            .unwrap();
        let without = signal(&[("X-RateLimit-Reset", "2026-03-01T12:00Z")])
            .reset_at
            .unwrap();
        assert_eq!(with.0 - without.0, 30_000);
        let offset = signal(&[("X-RateLimit-Reset", "2026-03-01T13:00+01:00")])
            .reset_at
            .unwrap();
        assert_eq!(offset, without);
        let frac = signal(&[("X-RateLimit-Reset", "2026-03-01T12:00:00.500Z")])
            .reset_at
            .unwrap();
        assert_eq!(frac.0 - without.0, 500);
        assert_eq!(signal(&[("X-RateLimit-Reset", "tomorrow")]).reset_at, None);
        assert_eq!(
            signal(&[("X-RateLimit-Reset", "2026-03-01T1200Z")]).reset_at,
            None
        );
    }

    #[test]
    fn every_documented_reason_is_recognised() {
        let cases = [
            ("jira-quota-global-based", LimitReason::QuotaGlobal),
            ("jira-quota-tenant-based", LimitReason::QuotaTenant),
            ("jira-burst-based", LimitReason::Burst),
            ("jira-per-issue-on-write", LimitReason::PerIssueWrite),
            ("jira-cost-based", LimitReason::CostBased),
            ("something-new", LimitReason::Other("something-new".into())),
        ];
        for (v, want) in cases {
            assert_eq!(signal(&[("RateLimit-Reason", v)]).reason, Some(want));
        }
        assert_eq!(signal(&[("RateLimit-Reason", "")]).reason, None);
    }

    #[test]
    fn ietf_policy_and_state_are_read_with_or_without_beta_prefix() {
        for prefix in ["", "Beta-"] {
            let s = signal(&[
                (
                    &format!("{prefix}RateLimit-Policy"),
                    r#""global-app-quota";q=65000;w=3600"#,
                ),
                (
                    &format!("{prefix}RateLimit"),
                    r#""global-app-quota";r=1200;t=600"#,
                ),
            ]);
            let p = s.policy.unwrap();
            assert_eq!(
                (p.name.as_deref(), p.quota, p.window.as_secs()),
                (Some("global-app-quota"), 65000, 3600)
            );
            let st = s.state.unwrap();
            assert_eq!((st.remaining, st.reset_in.as_secs()), (1200, 600));
        }
    }

    #[test]
    fn an_unnamed_state_and_several_policies_are_understood() {
        let s = signal(&[
            ("RateLimit", "r=0;t=12"),
            ("RateLimit-Policy", r#""a";q=100;w=1, "b";q=65000;w=3600"#),
        ]);
        assert_eq!(s.state.as_ref().unwrap().remaining, 0);
        assert_eq!(s.policy.as_ref().unwrap().name.as_deref(), Some("b"));
        assert_eq!(s.wait_hint(Timestamp(0)), Some(Duration::from_secs(12)));
    }

    #[test]
    fn counters_and_near_limit_are_read() {
        let s = signal(&[
            ("X-RateLimit-Limit", "100"),
            ("X-RateLimit-Remaining", "3"),
            ("X-RateLimit-NearLimit", "true"),
        ]);
        assert_eq!(
            (s.limit, s.remaining, s.near_limit),
            (Some(100), Some(3), true)
        );
    }

    #[test]
    fn the_wait_prefers_retry_after_then_reset() {
        let now = parse_iso8601("2026-03-01T12:00:00Z").unwrap();
        let s = signal(&[("X-RateLimit-Reset", "2026-03-01T12:01Z")]);
        assert_eq!(s.wait_hint(now), Some(Duration::from_secs(60)));
        let s = signal(&[
            ("X-RateLimit-Reset", "2026-03-01T12:01Z"),
            ("Retry-After", "5"),
        ]);
        assert_eq!(s.wait_hint(now), Some(Duration::from_secs(5)));
        assert_eq!(signal(&[]).wait_hint(now), None);
    }

    #[test]
    fn malformed_structured_fields_learn_nothing() {
        let s = signal(&[("RateLimit", ";;;=,"), ("RateLimit-Policy", "q=abc")]);
        assert!(s.state.is_none() && s.policy.is_none());
    }
}
