//! `GET /metrics`: a [`MetricsSnapshot`] in the Prometheus text exposition
//! format (OpenMetrics flavour, from `prometheus-client`), built fresh at
//! each scrape from the store — no counters live in the process, so a
//! restart loses nothing and the figures agree with `tollgate stats`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use tollgate::app::metrics::MetricsSnapshot;

/// The content type Prometheus negotiates for this encoding.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct State {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Endpoint {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Site {
    site: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SiteEndpoint {
    site: String,
    endpoint: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

fn gauge(registry: &mut Registry, name: &str, help: &str, value: f64) {
    let g = FloatGauge::default();
    g.set(value);
    registry.register(name, help, g);
}

fn family<L>(registry: &mut Registry, name: &str, help: &str) -> Family<L, FloatGauge>
where
    L: Clone + std::fmt::Debug + std::hash::Hash + Eq + EncodeLabelSet + Send + Sync + 'static,
{
    let f = Family::<L, FloatGauge>::default();
    registry.register(name, help, f.clone());
    f
}

pub fn encode(s: &MetricsSnapshot) -> Result<String, std::fmt::Error> {
    let mut r = Registry::default();
    let jobs = family::<State>(&mut r, "tollgate_jobs", "Jobs by state");
    for (state, n) in &s.census.jobs {
        jobs.get_or_create(&State {
            state: state.as_str().into(),
        })
        .set(*n as f64);
    }
    gauge(
        &mut r,
        "tollgate_queue_messages",
        "Messages in the work queue, visible or in flight",
        s.queue.messages as f64,
    );
    if let Some(age) = s.queue.oldest_age_s {
        gauge(
            &mut r,
            "tollgate_queue_oldest_age_seconds",
            "Age of the oldest message in the work queue",
            age,
        );
    }
    gauge(
        &mut r,
        "tollgate_approvals_waiting",
        "Approval requests not decided yet",
        s.census.approvals_waiting as f64,
    );
    gauge(
        &mut r,
        "tollgate_rejections_open",
        "Rejected events kept, neither re-submitted nor discarded",
        s.census.rejections_open as f64,
    );
    let requests = family::<Endpoint>(
        &mut r,
        "tollgate_jira_requests_24h",
        "Jira requests over the last 24 hourly windows, by endpoint",
    );
    let throttled = family::<Endpoint>(
        &mut r,
        "tollgate_jira_throttled_24h",
        "Jira 429 answers over the last 24 hourly windows, by endpoint",
    );
    let points = family::<Endpoint>(
        &mut r,
        "tollgate_jira_points_24h",
        "Jira quota points spent over the last 24 hourly windows, by endpoint",
    );
    for (endpoint, e) in &s.calls.endpoints {
        let l = Endpoint {
            endpoint: endpoint.clone(),
        };
        requests.get_or_create(&l).set(e.requests as f64);
        throttled.get_or_create(&l).set(e.throttled as f64);
        points.get_or_create(&l).set(e.points as f64);
    }
    let reasons = family::<Reason>(
        &mut r,
        "tollgate_jira_throttled_by_reason_24h",
        "Jira 429 answers over the last 24 hourly windows, by RateLimit-Reason",
    );
    for (reason, n) in &s.calls.throttled_by_reason {
        reasons
            .get_or_create(&Reason {
                reason: reason.clone(),
            })
            .set(*n as f64);
    }
    gauge(
        &mut r,
        "tollgate_jira_points_this_hour",
        "Jira quota points spent in the current hourly window",
        s.points_this_hour as f64,
    );
    if let Some(q) = s.governor.quota {
        gauge(
            &mut r,
            "tollgate_jira_quota_points",
            "The points quota Jira last announced (RateLimit-Policy or X-RateLimit-Limit)",
            q.points as f64,
        );
        gauge(
            &mut r,
            "tollgate_jira_quota_window_seconds",
            "The window of the points quota Jira last announced",
            q.window_s as f64,
        );
    }
    let pace = family::<SiteEndpoint>(
        &mut r,
        "tollgate_governor_pace_per_second",
        "The pace the governor holds per Jira endpoint (calls per second)",
    );
    for (endpoint, p) in &s.governor.endpoints {
        pace.get_or_create(&SiteEndpoint {
            site: s.site.clone(),
            endpoint: endpoint.clone(),
        })
        .set(p.rate);
    }
    let site = Site {
        site: s.site.clone(),
    };
    family::<Site>(
        &mut r,
        "tollgate_site_paused",
        "1 while every call to the site waits (quota spent, or unexplained 429s)",
    )
    .get_or_create(&site)
    .set(if s.paused { 1.0 } else { 0.0 });
    family::<Site>(
        &mut r,
        "tollgate_site_degraded",
        "1 while the site is in degraded mode",
    )
    .get_or_create(&site)
    .set(if s.governor.health.degraded.is_some() {
        1.0
    } else {
        0.0
    });
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &r)?;
    Ok(out)
}
