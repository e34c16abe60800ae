//! Atlassian's rate limits, as the simulator enforces them. Each is
//! configurable and can be switched off; the hourly window is time-scaled
//! (`window_seconds`) so tests and benchmarks run fast.
//!
//! * Points quota per window, shared by every caller: writes cost 1, reads
//!   1 + 1 per object returned. Once spent, everything is refused until the
//!   window resets (windows are aligned to multiples of `window_seconds`
//!   since the Unix epoch, as Jira's reset at the top of the UTC hour).
//! * Burst buckets per endpoint and method: GET/POST and PUT/DELETE rates,
//!   or a rate of its own for a route (`burst_routes`) — a real site's
//!   limits differ per endpoint and from the documented ones
//!   ([`Limits::atlassian_times`] scales them).
//! * Per-issue writes: at most `short_writes` per `short_seconds` and
//!   `long_writes` per `long_seconds` to one issue.
//! * Faults by rate: a gateway 429 with no headers, 503 with Retry-After,
//!   500, slow answers, dropped connections.
//!
//! Answers carry Atlassian's headers: `X-RateLimit-Limit/Remaining/NearLimit`,
//! `RateLimit-Policy`, `RateLimit` (optionally `Beta-` prefixed), and on a
//! 429 `Retry-After`, `X-RateLimit-Reset` (optionally without seconds) and
//! `RateLimit-Reason`.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Limits {
    /// Points per window; 0 switches the quota off.
    pub quota_points: u64,
    /// Length of the quota window ("hour"), in seconds.
    pub window_seconds: f64,
    /// Requests per second per endpoint for GET and POST; 0 = off.
    pub burst_get_post: f64,
    /// Requests per second per endpoint for PUT and DELETE; 0 = off.
    pub burst_put_delete: f64,
    /// A rate of its own for a route (`"POST /rest/api/3/issue/{key}/comment"`,
    /// method and endpoint template), overriding the two above; 0 = off.
    pub burst_routes: BTreeMap<String, f64>,
    pub per_issue: bool,
    pub short_writes: usize,
    pub short_seconds: f64,
    pub long_writes: usize,
    pub long_seconds: f64,
    /// Send `X-RateLimit-Reset` without seconds (`2026-03-01T12:00Z`).
    pub reset_without_seconds: bool,
    /// Prefix the IETF headers with `Beta-`.
    pub beta_headers: bool,
    /// Send rate-limit headers on every answer, not only on 429s.
    pub headers_on_success: bool,
    pub faults: Faults,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Faults {
    /// Fraction of requests answered 429 with no Retry-After and no reason.
    pub gateway_429: f64,
    /// Every Nth request answered that way too (0 = off): a fault a test
    /// can count on.
    pub gateway_429_every: u64,
    /// Fraction answered 503 with Retry-After.
    pub error_503: f64,
    /// Fraction answered 500.
    pub error_500: f64,
    /// Fraction answered `slow_ms` late.
    pub slow: f64,
    pub slow_ms: u64,
    /// Fraction whose connection is dropped after the work is done.
    pub drop: f64,
    /// Fraction whose connection is dropped before any work is done.
    pub drop_before: f64,
    /// Faults on chosen routes (the first that matches applies).
    pub routes: Vec<RouteFault>,
}

/// A fault on one route (`"POST /rest/api/3/issue"`, the method and the
/// endpoint template as the report counts requests), for a number of
/// requests: a slow Jira, one that finishes a write after the client gave
/// up, one whose answer is lost after the work.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct RouteFault {
    pub route: String,
    /// The work is done this long after the request arrived — even when
    /// the client has hung up meanwhile.
    pub work_delay_ms: u64,
    /// The answer leaves this long after the work is done.
    pub answer_delay_ms: u64,
    /// The connection is dropped after the work is done.
    pub drop_answer: bool,
    /// Answer this status (a Jira error body) without doing the work; 0 =
    /// off.
    pub refuse_status: u16,
    /// How many matching requests it applies to; 0 = every one.
    pub times: u64,
}

impl Faults {
    /// The fault for a request on `route`, counting it against its `times`
    /// (a fault whose count runs out is removed).
    pub fn take_route_fault(&mut self, route: &str) -> Option<RouteFault> {
        let i = self.routes.iter().position(|f| f.route == route)?;
        let fault = self.routes[i].clone();
        if fault.times > 0 {
            if fault.times == 1 {
                self.routes.remove(i);
            } else {
                self.routes[i].times -= 1;
            }
        }
        Some(fault)
    }
}

impl Default for Limits {
    /// Everything off: the foundation's well-behaved Jira.
    fn default() -> Self {
        Limits {
            quota_points: 0,
            window_seconds: 3600.0,
            burst_get_post: 0.0,
            burst_put_delete: 0.0,
            burst_routes: BTreeMap::new(),
            per_issue: false,
            short_writes: 20,
            short_seconds: 2.0,
            long_writes: 100,
            long_seconds: 30.0,
            reset_without_seconds: false,
            beta_headers: false,
            headers_on_success: true,
            faults: Faults::default(),
        }
    }
}

impl Limits {
    /// Atlassian's documented defaults: 65,000 points/hour, 100/s GET/POST,
    /// 50/s PUT/DELETE, 20 writes/2 s and 100/30 s per issue.
    pub fn atlassian() -> Self {
        Limits {
            quota_points: 65_000,
            burst_get_post: 100.0,
            burst_put_delete: 50.0,
            per_issue: true,
            ..Limits::default()
        }
    }

    /// Atlassian's documented limits with the burst rates scaled by `burst`
    /// and the per-issue write counts by `per_issue` (windows unchanged,
    /// at least one write each): the site nobody documented.
    pub fn atlassian_times(burst: f64, per_issue: f64) -> Self {
        let base = Limits::atlassian();
        let writes = |n: usize| ((n as f64 * per_issue).round() as usize).max(1);
        Limits {
            burst_get_post: base.burst_get_post * burst,
            burst_put_delete: base.burst_put_delete * burst,
            short_writes: writes(base.short_writes),
            long_writes: writes(base.long_writes),
            ..base
        }
    }

    /// The burst rate of `method endpoint`: its own, else its method's.
    pub fn burst_rate(&self, method: &str, endpoint: &str) -> f64 {
        if let Some(rate) = self.burst_routes.get(&format!("{method} {endpoint}")) {
            return *rate;
        }
        match method {
            "GET" | "POST" => self.burst_get_post,
            _ => self.burst_put_delete,
        }
    }

    /// Every rate (burst and per-issue counts) times `factor`: the same
    /// site on a worse or better hour.
    pub fn scaled(&self, factor: f64) -> Self {
        let writes = |n: usize| ((n as f64 * factor).round() as usize).max(1);
        Limits {
            burst_get_post: self.burst_get_post * factor,
            burst_put_delete: self.burst_put_delete * factor,
            burst_routes: self
                .burst_routes
                .iter()
                .map(|(k, v)| (k.clone(), v * factor))
                .collect(),
            short_writes: writes(self.short_writes),
            long_writes: writes(self.long_writes),
            ..self.clone()
        }
    }
}

pub const REASON_QUOTA: &str = "jira-quota-global-based";
pub const REASON_BURST: &str = "jira-burst-based";
pub const REASON_ISSUE: &str = "jira-per-issue-on-write";

/// What the limiter decided for one request.
pub enum Verdict {
    /// `drop_before`: the connection breaks before any work is done.
    Allow {
        slow: bool,
        drop: bool,
        drop_before: bool,
    },
    Refuse(Refusal),
}

pub struct Refusal {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub reason: &'static str,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Default)]
pub struct LimiterState {
    window: i64,
    spent: u64,
    buckets: HashMap<String, Bucket>,
    issue_writes: HashMap<String, VecDeque<Instant>>,
    pub throttled: BTreeMap<String, u64>,
    pub points_total: u64,
    /// Requests decided so far.
    pub seen: u64,
    pub writes_per_issue: HashMap<String, u64>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn iso(unix: f64, without_seconds: bool) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix.ceil() as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = if without_seconds {
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]Z")
    } else {
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z")
    };
    t.format(&fmt).unwrap_or_default()
}

impl LimiterState {
    fn roll_window(&mut self, limits: &Limits, now: f64) -> f64 {
        let w = limits.window_seconds.max(0.001);
        let index = (now / w).floor() as i64;
        if index != self.window {
            self.window = index;
            self.spent = 0;
        }
        (index + 1) as f64 * w
    }

    /// Remaining points and seconds to reset, when the quota is on.
    pub fn quota_view(&mut self, limits: &Limits) -> Option<(u64, f64, f64)> {
        if limits.quota_points == 0 {
            return None;
        }
        let now = unix_now();
        let reset = self.roll_window(limits, now);
        Some((
            limits.quota_points.saturating_sub(self.spent),
            reset - now,
            reset,
        ))
    }

    /// Decides one request and, when allowed, reserves its write cost.
    pub fn admit(
        &mut self,
        limits: &Limits,
        method: &str,
        endpoint: &str,
        issue: Option<&str>,
    ) -> Verdict {
        let f = &limits.faults;
        self.seen += 1;
        let nth = f.gateway_429_every > 0 && self.seen.is_multiple_of(f.gateway_429_every);
        let roll = fastrand::f64();
        let mut edge = 0.0;
        let mut hit = |p: f64| {
            edge += p;
            roll < edge
        };
        if hit(f.gateway_429) || nth {
            *self.throttled.entry("gateway".into()).or_default() += 1;
            return Verdict::Refuse(Refusal {
                status: 429,
                headers: Vec::new(),
                reason: "gateway",
            });
        }
        if hit(f.error_503) {
            return Verdict::Refuse(Refusal {
                status: 503,
                headers: vec![("Retry-After".into(), "1".into())],
                reason: "503",
            });
        }
        if hit(f.error_500) {
            return Verdict::Refuse(Refusal {
                status: 500,
                headers: Vec::new(),
                reason: "500",
            });
        }
        let slow = fastrand::f64() < f.slow;
        let drop = fastrand::f64() < f.drop;
        if fastrand::f64() < f.drop_before {
            return Verdict::Allow {
                slow,
                drop: false,
                drop_before: true,
            };
        }

        if let Some((remaining, reset_in, reset_at)) = self.quota_view(limits)
            && remaining == 0
        {
            *self.throttled.entry(REASON_QUOTA.into()).or_default() += 1;
            let mut headers = vec![
                (
                    "Retry-After".to_string(),
                    (reset_in.ceil() as u64).max(1).to_string(),
                ),
                (
                    "X-RateLimit-Reset".to_string(),
                    iso(reset_at, limits.reset_without_seconds),
                ),
                ("RateLimit-Reason".to_string(), REASON_QUOTA.to_string()),
            ];
            headers.extend(self.quota_headers(limits));
            return Verdict::Refuse(Refusal {
                status: 429,
                headers,
                reason: REASON_QUOTA,
            });
        }

        let rate = limits.burst_rate(method, endpoint);
        if rate > 0.0 {
            let now = Instant::now();
            let b = self
                .buckets
                .entry(format!("{method} {endpoint}"))
                .or_insert(Bucket {
                    tokens: rate,
                    at: now,
                });
            // A changed rate applies at once: the bucket holds one second of it.
            b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(rate);
            b.at = now;
            if b.tokens < 1.0 {
                *self.throttled.entry(REASON_BURST.into()).or_default() += 1;
                let wait = ((1.0 - b.tokens) / rate).max(0.001);
                return Verdict::Refuse(Refusal {
                    status: 429,
                    headers: vec![
                        (
                            "Retry-After".into(),
                            (wait.ceil() as u64).max(1).to_string(),
                        ),
                        ("RateLimit-Reason".into(), REASON_BURST.into()),
                    ],
                    reason: REASON_BURST,
                });
            }
            b.tokens -= 1.0;
        }

        let is_write = method != "GET";
        if let (true, true, Some(issue)) = (limits.per_issue, is_write, issue) {
            let now = Instant::now();
            let q = self.issue_writes.entry(issue.to_string()).or_default();
            let long = Duration::from_secs_f64(limits.long_seconds);
            while q.front().is_some_and(|t| now.duration_since(*t) > long) {
                q.pop_front();
            }
            let short = Duration::from_secs_f64(limits.short_seconds);
            let in_short = q
                .iter()
                .filter(|t| now.duration_since(**t) <= short)
                .count();
            let wait = if in_short >= limits.short_writes {
                let oldest = q
                    .iter()
                    .rev()
                    .nth(limits.short_writes - 1)
                    .copied()
                    .unwrap_or(now);
                Some(short.saturating_sub(now.duration_since(oldest)))
            } else if q.len() >= limits.long_writes {
                let oldest = q
                    .iter()
                    .rev()
                    .nth(limits.long_writes - 1)
                    .copied()
                    .unwrap_or(now);
                Some(long.saturating_sub(now.duration_since(oldest)))
            } else {
                None
            };
            if let Some(wait) = wait {
                *self.throttled.entry(REASON_ISSUE.into()).or_default() += 1;
                return Verdict::Refuse(Refusal {
                    status: 429,
                    headers: vec![
                        (
                            "Retry-After".into(),
                            (wait.as_secs_f64().ceil() as u64).max(1).to_string(),
                        ),
                        ("RateLimit-Reason".into(), REASON_ISSUE.into()),
                    ],
                    reason: REASON_ISSUE,
                });
            }
            q.push_back(now);
            *self.writes_per_issue.entry(issue.to_string()).or_default() += 1;
        }
        if is_write {
            self.charge(limits, 1);
        }
        Verdict::Allow {
            slow,
            drop,
            drop_before: false,
        }
    }

    /// Spends points (reads are charged after the objects are counted).
    pub fn charge(&mut self, limits: &Limits, points: u64) {
        self.points_total += points;
        if limits.quota_points > 0 {
            self.roll_window(limits, unix_now());
            self.spent += points;
        }
    }

    /// The quota headers every answer carries when the quota is on.
    pub fn quota_headers(&mut self, limits: &Limits) -> Vec<(String, String)> {
        let Some((remaining, reset_in, _)) = self.quota_view(limits) else {
            return Vec::new();
        };
        let p = if limits.beta_headers { "Beta-" } else { "" };
        let q = limits.quota_points;
        let w = limits.window_seconds.ceil() as u64;
        let mut h = vec![
            ("X-RateLimit-Limit".to_string(), q.to_string()),
            ("X-RateLimit-Remaining".to_string(), remaining.to_string()),
            (
                format!("{p}RateLimit-Policy"),
                format!("\"global-app-quota\";q={q};w={w}"),
            ),
            (
                format!("{p}RateLimit"),
                format!(
                    "\"global-app-quota\";r={remaining};t={}",
                    reset_in.ceil() as u64
                ),
            ),
        ];
        if remaining * 5 < q {
            h.push(("X-RateLimit-NearLimit".to_string(), "true".to_string()));
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(v: &Verdict) -> bool {
        matches!(
            v,
            Verdict::Allow {
                drop_before: false,
                ..
            }
        )
    }

    /// Requests let through back to back (no time for a refill to matter).
    fn burst(state: &mut LimiterState, limits: &Limits, method: &str, endpoint: &str) -> usize {
        (0..1000)
            .take_while(|_| allowed(&state.admit(limits, method, endpoint, None)))
            .count()
    }

    #[test]
    fn a_route_with_a_rate_of_its_own_is_held_to_it() {
        let mut limits = Limits::atlassian_times(0.5, 1.0);
        limits.quota_points = 0;
        limits
            .burst_routes
            .insert("POST /rest/api/3/issue/{key}/comment".into(), 10.0);
        let mut s = LimiterState::default();
        assert_eq!(
            burst(&mut s, &limits, "POST", "/rest/api/3/issue/{key}/comment"),
            10
        );
        assert_eq!(burst(&mut s, &limits, "POST", "/rest/api/3/issue"), 50);
        assert_eq!(burst(&mut s, &limits, "PUT", "/rest/api/3/issue/{key}"), 25);
        assert_eq!(s.throttled[REASON_BURST], 3);
    }

    #[test]
    fn limits_as_a_multiple_of_the_documented_ones_scale_burst_and_per_issue_counts() {
        let l = Limits::atlassian_times(0.2, 0.2);
        assert_eq!((l.burst_get_post, l.burst_put_delete), (20.0, 10.0));
        assert_eq!((l.short_writes, l.long_writes), (4, 20));
        assert_eq!(
            (l.short_seconds, l.long_seconds),
            (2.0, 30.0),
            "windows unchanged"
        );
        let doubled = l.scaled(2.0);
        assert_eq!((doubled.burst_get_post, doubled.short_writes), (40.0, 8));
        assert_eq!(
            Limits::atlassian_times(0.01, 0.01).short_writes,
            1,
            "at least one"
        );
    }

    #[test]
    fn a_limit_halved_while_running_applies_at_once_and_a_restore_too() {
        let limits = Limits {
            burst_get_post: 20.0,
            ..Limits::default()
        };
        let mut s = LimiterState::default();
        assert_eq!(burst(&mut s, &limits, "POST", "/x"), 20);
        let halved = limits.scaled(0.5);
        std::thread::sleep(Duration::from_millis(1100));
        // The bucket refilled at the old rate but holds at most a second
        // of the new one.
        assert_eq!(burst(&mut s, &halved, "POST", "/x"), 10);
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(burst(&mut s, &limits, "POST", "/x"), 20);
    }

    #[test]
    fn a_connection_dropped_before_the_work_spends_nothing() {
        let limits = Limits {
            quota_points: 100,
            per_issue: true,
            faults: Faults {
                drop_before: 1.0,
                ..Faults::default()
            },
            ..Limits::default()
        };
        let mut s = LimiterState::default();
        for _ in 0..5 {
            let v = s.admit(
                &limits,
                "POST",
                "/rest/api/3/issue/{key}/comment",
                Some("OPS-1"),
            );
            assert!(matches!(
                v,
                Verdict::Allow {
                    drop_before: true,
                    ..
                }
            ));
        }
        assert_eq!(s.points_total, 0);
        assert!(s.writes_per_issue.is_empty());
    }

    #[test]
    fn bare_429s_come_at_their_rate_whatever_the_load() {
        let limits = Limits {
            faults: Faults {
                gateway_429_every: 20,
                ..Faults::default()
            },
            ..Limits::default()
        };
        let mut s = LimiterState::default();
        let refused = (0..200)
            .filter(|_| !allowed(&s.admit(&limits, "GET", "/x", None)))
            .count();
        assert_eq!(refused, 10);
        assert_eq!(s.throttled["gateway"], 10);
    }
}
