//! The overview: jobs by state now, the queue, and the last 24 hours of
//! Jira calls by hour — requests, 429s by reason, points — as charts from
//! the hourly hotspot counters `tollgate stats` reads; each endpoint's
//! requests this hour beside the pace the governor holds for it; the site's
//! pause and degraded mode.

use super::Console;
use super::charts::{Bar, Limit, bar_chart};
use super::last_hour;
use super::layout::{Frame, page, state_badge};
use super::{ConsoleQueue, ConsoleStore};
use crate::app::AppError;
use crate::app::approval_page::escape;
use crate::domain::stats::CallStats;
use crate::domain::stats::{hour_window, minute_window};
use crate::domain::time::Timestamp;
use crate::ports::{CENSUS_COUNT_LIMIT, Clock, Notifier};
use std::fmt::Write;

/// Hours the charts cover.
const HOURS: i64 = 24;

pub(super) async fn render<S, Q, C, N>(
    console: &Console<'_, S, Q, C, N>,
    frame: &Frame<'_>,
) -> Result<String, AppError>
where
    S: ConsoleStore,
    Q: ConsoleQueue,
    C: Clock,
    N: Notifier,
{
    let base = frame.base;
    let store = console.api.store;
    let now = console.api.clock.now();
    let census = store.census().await?;
    let queue = console.api.queue.depth().await?;
    let this_hour = hour_window(now.0);
    let mut hours: Vec<(i64, CallStats)> = Vec::with_capacity(HOURS as usize);
    for h in (0..HOURS).rev() {
        let w = this_hour - h;
        hours.push((w, store.stats(w).await?));
    }
    let (governor, _) = store.load_governor(console.site).await?;
    let this_minute = minute_window(now.0);
    let minutes = store
        .minute_stats(this_minute - last_hour::MINUTES + 1, this_minute)
        .await?;
    let mut body = String::new();

    // Now.
    let _ = write!(body, "<section><h2>Now</h2><div class=\"cards\">");
    let card = |label: &str, value: String, id: &str| {
        format!(
            "<div class=\"card\" id=\"{id}\"><b>{}</b>{}</div>",
            escape(&value),
            escape(label)
        )
    };
    let paused = governor.paused_until > now;
    body.push_str(&card(
        "site",
        match (&governor.health.degraded, paused) {
            (Some(_), _) => "DEGRADED".into(),
            (None, true) => "PAUSED".into(),
            (None, false) => "healthy".into(),
        },
        "site-state",
    ));
    body.push_str(&card(
        "queue messages",
        queue.messages.to_string(),
        "queue-depth",
    ));
    body.push_str(&card(
        "oldest message waits",
        queue
            .oldest_age_s
            .map_or_else(|| "see CloudWatch".into(), |s| format!("{s:.0} s")),
        "queue-oldest",
    ));
    body.push_str(&card(
        "approvals waiting",
        census.approvals_waiting.to_string(),
        "approvals-waiting",
    ));
    body.push_str(&card(
        "rejections open",
        census.rejections_open.to_string(),
        "rejections-open",
    ));
    body.push_str("</div>");
    if let Some(d) = &governor.health.degraded {
        let _ = write!(
            body,
            "<p class=\"error\">Degraded since {}: {}</p>",
            escape(&d.since.to_rfc3339()),
            escape(&d.reason)
        );
    }
    if paused {
        let _ = write!(
            body,
            "<p class=\"error\">Every call waits until {}{}</p>",
            escape(&governor.paused_until.to_rfc3339()),
            governor
                .pause_reason
                .as_deref()
                .map(|r| format!(" ({})", escape(r)))
                .unwrap_or_default()
        );
    }
    let day_ago = now.0 - HOURS * 3_600_000;
    let changes: Vec<_> = governor
        .health
        .changes
        .iter()
        .filter(|c| c.at.0 >= day_ago)
        .collect();
    if !changes.is_empty() {
        body.push_str("<h2>Degraded and recovered, the last 24 hours</h2><table id=\"health-changes\"><tr><th>at</th><th>became</th><th>why</th></tr>");
        for c in changes {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&c.at.to_rfc3339()),
                if c.degraded { "DEGRADED" } else { "recovered" },
                escape(&c.why)
            );
        }
        body.push_str("</table>");
    }
    let pauses: Vec<_> = governor
        .pauses
        .iter()
        .filter(|p| p.until.0 >= day_ago)
        .collect();
    if !pauses.is_empty() {
        body.push_str("<h2>Paused, the last 24 hours</h2><table id=\"pauses\"><tr><th>from</th><th>until</th><th class=\"num\">for</th><th>why</th></tr>");
        for p in pauses.iter().rev() {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{:.0} s</td><td>{}</td></tr>",
                escape(&p.from.to_rfc3339()),
                escape(&p.until.to_rfc3339()),
                (p.until.0 - p.from.0).max(0) as f64 / 1000.0,
                escape(&p.reason)
            );
        }
        body.push_str("</table>");
    }
    body.push_str("<table id=\"jobs-by-state\"><tr><th>state</th><th class=\"num\">jobs</th></tr>");
    for (state, n) in &census.jobs {
        let _ = write!(
            body,
            "<tr><td><a href=\"{base}/ui/jobs?state={}\">{}</a></td><td class=\"num\" data-state=\"{}\">{}{n}</td></tr>",
            state.as_str(),
            state_badge(state.as_str()),
            state.as_str(),
            if census.jobs_lower_bound && *n >= CENSUS_COUNT_LIMIT {
                "≥ "
            } else {
                ""
            }
        );
    }
    if census.jobs.is_empty() {
        body.push_str("<tr><td colspan=\"2\">no jobs yet</td></tr>");
    }
    body.push_str("</table></section>");

    body.push_str(&last_hour::render(&minutes, this_minute, &governor));

    // The last 24 hours.
    let label = |w: i64| Timestamp(w * 3_600_000).to_rfc3339()[11..16].to_string();
    let series = |f: &dyn Fn(&CallStats) -> f64| -> Vec<Bar> {
        hours
            .iter()
            .map(|(w, s)| Bar {
                label: label(*w),
                value: f(s),
            })
            .collect()
    };
    body.push_str("<section><h2>Jira, the last 24 hours (UTC, by hour)</h2>");
    body.push_str(&bar_chart(
        "chart-requests",
        "Requests per hour",
        "requests",
        &series(&|s| s.requests as f64),
        None,
    ));
    body.push_str(&bar_chart(
        "chart-throttled",
        "429 answers per hour",
        "429s",
        &series(&|s| s.throttled as f64),
        None,
    ));
    let hourly_quota = governor
        .quota
        .filter(|q| q.window_s == 3_600)
        .map(|q| Limit {
            value: q.points as f64,
            label: "quota".into(),
        });
    body.push_str(&bar_chart(
        "chart-points",
        "Quota points spent per hour",
        "points",
        &series(&|s| s.points as f64),
        hourly_quota.as_ref(),
    ));
    let mut total = CallStats::default();
    for (_, s) in &hours {
        total.merge(s);
    }
    body.push_str("<h2>429s by reason</h2><table id=\"throttled-by-reason\"><tr><th>reason</th>");
    let reasons: Vec<&String> = total.throttled_by_reason.keys().collect();
    for (w, _) in hours.iter().rev().take(6).rev() {
        let _ = write!(body, "<th class=\"num\">{}</th>", label(*w));
    }
    body.push_str("<th class=\"num\">24 h</th></tr>");
    for reason in &reasons {
        let _ = write!(body, "<tr><td>{}</td>", escape(reason));
        for (_, s) in hours.iter().rev().take(6).rev() {
            let n = s.throttled_by_reason.get(*reason).copied().unwrap_or(0);
            let _ = write!(body, "<td class=\"num\">{n}</td>");
        }
        let _ = write!(
            body,
            "<td class=\"num\" data-reason=\"{}\">{}</td></tr>",
            escape(reason),
            total.throttled_by_reason[*reason]
        );
    }
    if reasons.is_empty() {
        body.push_str("<tr><td colspan=\"8\">no 429s in these hours</td></tr>");
    }
    body.push_str("</table>");

    // Endpoints: this hour's requests beside the learned pace.
    let current = hours.last().map(|(_, s)| s.clone()).unwrap_or_default();
    body.push_str(
        "<h2>Endpoints this hour</h2><table id=\"endpoints\"><tr><th>endpoint</th><th class=\"num\">requests</th>\
<th class=\"num\">per second (avg)</th><th class=\"num\">pace held</th><th class=\"num\">429s</th></tr>",
    );
    let elapsed_s = ((now.0 - this_hour * 3_600_000) as f64 / 1000.0).max(1.0);
    let mut endpoints: Vec<&String> = current
        .endpoints
        .keys()
        .chain(governor.endpoints.keys())
        .collect();
    endpoints.sort();
    endpoints.dedup();
    for e in endpoints {
        let st = current.endpoints.get(e).cloned().unwrap_or_default();
        let pace = governor
            .endpoints
            .get(e)
            .map_or("-".to_string(), |p| format!("{:.1}/s", p.rate));
        let _ = write!(
            body,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{:.2}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(e),
            st.requests,
            st.requests as f64 / elapsed_s,
            escape(&pace),
            st.throttled
        );
    }
    body.push_str("</table></section>");
    Ok(page(frame, "overview", "Overview", &body))
}
