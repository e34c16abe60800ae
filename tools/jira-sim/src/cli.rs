//! Command-line flags for the simulator's limits, shared by the `jira-sim`
//! binary and `tollgate sim`.

use crate::limits::{Faults, Limits};

#[derive(clap::Args, Debug, Clone)]
pub struct LimitArgs {
    /// Start from Atlassian's documented limits (65,000 points/hour,
    /// 100/s GET/POST, 50/s PUT/DELETE, per-issue writes); other flags adjust.
    #[arg(long)]
    pub atlassian_limits: bool,
    /// Atlassian's documented limits with every burst rate and per-issue
    /// write count times this (0.2 = a site five times stricter than
    /// documented); implies --atlassian-limits.
    #[arg(long)]
    pub limits_multiple: Option<f64>,
    /// A burst rate of its own for one route, as `"METHOD /template=RATE"`
    /// (`"POST /rest/api/3/issue/{key}/comment=5"`); repeatable.
    #[arg(long, value_parser = parse_route_rate)]
    pub burst_route: Vec<(String, f64)>,
    /// Points per window (0 = no quota).
    #[arg(long)]
    pub quota_points: Option<u64>,
    /// Length of the quota window in seconds (60 makes the hour a minute).
    #[arg(long)]
    pub hour_seconds: Option<f64>,
    /// Burst rate per endpoint for GET/POST, per second (0 = off).
    #[arg(long)]
    pub burst_get_post: Option<f64>,
    /// Burst rate per endpoint for PUT/DELETE, per second (0 = off).
    #[arg(long)]
    pub burst_put_delete: Option<f64>,
    /// Enforce per-issue write limits (20 per 2 s, 100 per 30 s).
    #[arg(long)]
    pub per_issue: bool,
    /// Send X-RateLimit-Reset without seconds.
    #[arg(long)]
    pub reset_without_seconds: bool,
    /// Prefix RateLimit and RateLimit-Policy with Beta-.
    #[arg(long)]
    pub beta_headers: bool,
    /// Fraction of requests answered by a gateway 429 (no headers).
    #[arg(long, default_value_t = 0.0)]
    pub fault_gateway_429: f64,
    /// Every Nth request answered by a gateway 429 (0 = off).
    #[arg(long, default_value_t = 0)]
    pub fault_gateway_429_every: u64,
    /// Fraction answered 503 with Retry-After.
    #[arg(long, default_value_t = 0.0)]
    pub fault_503: f64,
    /// Fraction answered 500.
    #[arg(long, default_value_t = 0.0)]
    pub fault_500: f64,
    /// Fraction answered slowly (see --slow-ms).
    #[arg(long, default_value_t = 0.0)]
    pub fault_slow: f64,
    #[arg(long, default_value_t = 2000)]
    pub slow_ms: u64,
    /// Fraction of connections dropped after the work is done.
    #[arg(long, default_value_t = 0.0)]
    pub fault_drop: f64,
    /// Fraction of connections dropped before any work is done.
    #[arg(long, default_value_t = 0.0)]
    pub fault_drop_before: f64,
}

fn parse_route_rate(s: &str) -> Result<(String, f64), String> {
    let (route, rate) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("expected \"METHOD /template=RATE\", got {s:?}"))?;
    let rate: f64 = rate
        .trim()
        .parse()
        .map_err(|_| format!("the rate in {s:?} is not a number"))?;
    if !rate.is_finite() || rate < 0.0 {
        return Err(format!("the rate in {s:?} must be 0 or more"));
    }
    Ok((route.trim().to_string(), rate))
}

impl LimitArgs {
    pub fn to_limits(&self) -> Limits {
        let mut l = if let Some(m) = self.limits_multiple {
            Limits::atlassian_times(m, m)
        } else if self.atlassian_limits {
            Limits::atlassian()
        } else {
            Limits::default()
        };
        if let Some(q) = self.quota_points {
            l.quota_points = q;
        }
        if let Some(w) = self.hour_seconds {
            l.window_seconds = w.max(0.001);
        }
        if let Some(b) = self.burst_get_post {
            l.burst_get_post = b;
        }
        if let Some(b) = self.burst_put_delete {
            l.burst_put_delete = b;
        }
        l.burst_routes.extend(self.burst_route.iter().cloned());
        l.per_issue |= self.per_issue;
        l.reset_without_seconds = self.reset_without_seconds;
        l.beta_headers = self.beta_headers;
        l.faults = Faults {
            gateway_429: self.fault_gateway_429,
            gateway_429_every: self.fault_gateway_429_every,
            error_503: self.fault_503,
            error_500: self.fault_500,
            slow: self.fault_slow,
            slow_ms: self.slow_ms,
            drop: self.fault_drop,
            drop_before: self.fault_drop_before,
            routes: Vec::new(),
        };
        l
    }
}
