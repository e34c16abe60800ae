//! Command-line flags for the simulator's limits, shared by the `jira-sim`
//! binary and `tollgate sim`.

use crate::limits::{Faults, Limits};

#[derive(clap::Args, Debug, Clone)]
pub struct LimitArgs {
    /// Start from Atlassian's documented limits (65,000 points/hour,
    /// 100/s GET/POST, 50/s PUT/DELETE, per-issue writes); other flags adjust.
    #[arg(long)]
    pub atlassian_limits: bool,
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
}

impl LimitArgs {
    pub fn to_limits(&self) -> Limits {
        let mut l = if self.atlassian_limits {
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
            routes: Vec::new(),
        };
        l
    }
}
