//! The overview's last hour, by minute: points against the quota Jira
//! announced, 429s and their reasons, and the busiest endpoints' requests
//! against the pace the governor holds. Pure: figures in, HTML out.

use super::charts::{Bar, Limit, bar_chart};
use crate::app::approval_page::escape;
use crate::domain::governor::SiteGovernor;
use crate::domain::stats::CallStats;
use crate::domain::time::Timestamp;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Minutes drawn.
pub const MINUTES: i64 = 60;
/// Endpoints drawn one chart each, busiest first.
const ENDPOINT_CHARTS: usize = 3;

fn label(minute: i64) -> String {
    Timestamp(minute * 60_000).to_rfc3339()[11..16].to_string()
}

/// The section, for the minutes up to `now_minute` (those without figures
/// are drawn as zero).
pub fn render(minutes: &[(i64, CallStats)], now_minute: i64, governor: &SiteGovernor) -> String {
    let by_minute: BTreeMap<i64, &CallStats> = minutes.iter().map(|(m, s)| (*m, s)).collect();
    let empty = CallStats::default();
    let window: Vec<(i64, &CallStats)> = (now_minute - MINUTES + 1..=now_minute)
        .map(|m| (m, by_minute.get(&m).copied().unwrap_or(&empty)))
        .collect();
    let series = |f: &dyn Fn(&CallStats) -> f64| -> Vec<Bar> {
        window
            .iter()
            .map(|(m, s)| Bar {
                label: label(*m),
                value: f(s),
            })
            .collect()
    };
    let mut total = CallStats::default();
    for (_, s) in &window {
        total.merge(s);
    }
    let mut body = String::from("<section><h2>Jira, the last hour (UTC, by minute)</h2>");
    let even_share = governor.quota.map(|q| {
        let per_minute = q.points as f64 * 60.0 / q.window_s.max(60) as f64;
        Limit {
            value: (per_minute * 10.0).round() / 10.0,
            label: format!("even share of {} points per {} s:", q.points, q.window_s),
        }
    });
    body.push_str(&bar_chart(
        "chart-minute-points",
        "Quota points spent per minute",
        "points",
        &series(&|s| s.points as f64),
        even_share.as_ref(),
    ));
    if governor.quota.is_none() {
        body.push_str("<p class=\"note\">Jira has not announced a points quota to this site yet (RateLimit-Policy or X-RateLimit-Limit).</p>");
    }
    body.push_str(&bar_chart(
        "chart-minute-throttled",
        "429 answers per minute",
        "429s",
        &series(&|s| s.throttled as f64),
        None,
    ));
    body.push_str("<table id=\"minute-reasons\"><tr><th>429 reason, last hour</th><th class=\"num\">429s</th><th>last at</th></tr>");
    for (reason, n) in &total.throttled_by_reason {
        let last = window
            .iter()
            .rev()
            .find(|(_, s)| s.throttled_by_reason.contains_key(reason))
            .map(|(m, _)| label(*m))
            .unwrap_or_default();
        let _ = write!(
            body,
            "<tr><td>{}</td><td class=\"num\" data-reason=\"{}\">{n}</td><td>{last}</td></tr>",
            escape(reason),
            escape(reason)
        );
    }
    if total.throttled_by_reason.is_empty() {
        body.push_str("<tr><td colspan=\"3\">no 429s in the last hour</td></tr>");
    }
    body.push_str("</table>");
    let mut busiest: Vec<(&String, u64)> = total
        .endpoints
        .iter()
        .map(|(e, st)| (e, st.requests))
        .collect();
    busiest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    for (i, (endpoint, _)) in busiest.into_iter().take(ENDPOINT_CHARTS).enumerate() {
        let pace = governor.endpoints.get(endpoint).map(|p| Limit {
            value: (p.rate * 60.0 * 10.0).round() / 10.0,
            label: format!("pace held {:.1}/s:", p.rate),
        });
        body.push_str(&bar_chart(
            &format!("chart-endpoint-{i}"),
            &format!("Requests per minute: {endpoint}"),
            "requests",
            &series(&|s| s.endpoints.get(endpoint).map_or(0.0, |e| e.requests as f64)),
            pace.as_ref(),
        ));
    }
    body.push_str("</section>");
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::governor::{AnnouncedQuota, EndpointPace};
    use crate::domain::stats::CallOutcome;

    fn calls(endpoint: &str, n: usize, throttled: usize) -> CallStats {
        let mut s = CallStats::default();
        for _ in 0..n {
            s.record(endpoint, None, CallOutcome::Answered { points: 1 }, None);
        }
        for _ in 0..throttled {
            s.record(
                endpoint,
                None,
                CallOutcome::Throttled,
                Some("jira-burst-based"),
            );
        }
        s
    }

    #[test]
    fn the_last_hour_draws_sixty_minutes_with_the_quota_and_the_pace() {
        let now = 29_000_000;
        let minutes = vec![
            (now - 61, calls("POST /rest/api/3/issue", 50, 0)),
            (now - 2, calls("POST /rest/api/3/issue", 5, 1)),
            (now, calls("GET /rest/api/3/issue/{key}", 3, 0)),
        ];
        let mut governor = SiteGovernor {
            quota: Some(AnnouncedQuota {
                points: 65_000,
                window_s: 3_600,
            }),
            ..Default::default()
        };
        governor.endpoints.insert(
            "POST /rest/api/3/issue".into(),
            serde_json::from_value::<EndpointPace>(serde_json::json!({
                "rate": 2.5, "slowStart": false, "lastGood": 2.5, "changedAt": 0
            }))
            .unwrap(),
        );
        let html = render(&minutes, now, &governor);
        assert_eq!(
            html.matches("class=\"bar\"").count(),
            60 * 4,
            "four charts of 60 minutes"
        );
        assert!(
            html.contains("data-total=\"8\""),
            "points of the hour only, not the minute before it"
        );
        assert!(
            html.contains("data-value=\"1083.3\""),
            "65,000 per hour is 1083.3 a minute"
        );
        assert!(html.contains("data-value=\"150\""), "2.5/s is 150 a minute");
        assert!(html.contains("data-reason=\"jira-burst-based\">1<"));
        let busiest = html.find("Requests per minute: POST").unwrap();
        let next = html.find("Requests per minute: GET").unwrap();
        assert!(busiest < next, "busiest endpoint first");
    }

    #[test]
    fn without_an_announced_quota_the_chart_says_so_and_draws_no_line() {
        let html = render(&[], 29_000_000, &SiteGovernor::default());
        assert!(html.contains("has not announced a points quota"));
        assert!(!html.contains("class=\"limit\""));
        assert!(html.contains("no 429s in the last hour"));
    }
}
