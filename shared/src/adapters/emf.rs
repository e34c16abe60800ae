//! CloudWatch Embedded Metric Format: one JSON log line that CloudWatch Logs
//! turns into metrics, with no API call from the function (and so no added
//! latency or permission). Namespace `tollgate`, counts; batch figures
//! without dimensions, Jira calls also by `Reason` and by `Endpoint`.
//!
//! Format: `{"_aws": {"Timestamp": ms, "CloudWatchMetrics": [{"Namespace",
//! "Dimensions": [[]], "Metrics": [{"Name", "Unit": "Count"}…]}]}, "<Name>": n…}`.

use crate::domain::stats::CallStats;
use serde_json::{Map, Value, json};

pub const NAMESPACE: &str = "tollgate";

/// The log line for `metrics` at `timestamp_ms`; metrics at zero are kept,
/// so alarms see explicit zeros rather than missing data.
pub fn line(timestamp_ms: i64, metrics: &[(&str, u64)]) -> String {
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[]],
                "Metrics": metrics.iter().map(|(name, _)| json!({"Name": name, "Unit": "Count"})).collect::<Vec<_>>()
            }]
        }),
    );
    for (name, value) in metrics {
        root.insert((*name).to_string(), json!(value));
    }
    Value::Object(root).to_string()
}

/// The Jira calls of one flush: totals, then one line per throttle reason
/// (dimension `Reason`) and per endpoint (dimension `Endpoint`), so the
/// dashboard can chart 429s by reason and hotspots by endpoint.
pub fn call_lines(timestamp_ms: i64, calls: &CallStats) -> Vec<String> {
    if calls.is_empty() {
        return Vec::new();
    }
    let mut out = vec![line(
        timestamp_ms,
        &[
            ("JiraRequests", calls.requests),
            ("JiraThrottled", calls.throttled),
            ("JiraPoints", calls.points),
        ],
    )];
    for (reason, n) in &calls.throttled_by_reason {
        out.push(dimensioned(
            timestamp_ms,
            ("Reason", reason),
            &[("JiraThrottled", *n)],
        ));
    }
    for (endpoint, e) in &calls.endpoints {
        out.push(dimensioned(
            timestamp_ms,
            ("Endpoint", endpoint),
            &[
                ("JiraRequests", e.requests),
                ("JiraThrottled", e.throttled),
                ("JiraPoints", e.points),
            ],
        ));
    }
    out
}

fn dimensioned(timestamp_ms: i64, dimension: (&str, &str), metrics: &[(&str, u64)]) -> String {
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[dimension.0]],
                "Metrics": metrics.iter().map(|(name, _)| json!({"Name": name, "Unit": "Count"})).collect::<Vec<_>>()
            }]
        }),
    );
    root.insert(dimension.0.to_string(), json!(dimension.1));
    for (name, value) in metrics {
        root.insert((*name).to_string(), json!(value));
    }
    Value::Object(root).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_declares_each_metric_and_carries_its_value() {
        let l: Value = serde_json::from_str(&line(
            1_700_000_000_000,
            &[("Throttled", 2), ("JobsExhausted", 0)],
        ))
        .unwrap();
        assert_eq!(l["_aws"]["CloudWatchMetrics"][0]["Namespace"], "tollgate");
        assert_eq!(
            l["_aws"]["CloudWatchMetrics"][0]["Metrics"][1]["Name"],
            "JobsExhausted"
        );
        assert_eq!(l["Throttled"], 2);
        assert_eq!(l["JobsExhausted"], 0);
        assert_eq!(l["_aws"]["Timestamp"], 1_700_000_000_000i64);
    }

    #[test]
    fn calls_go_out_by_reason_and_by_endpoint() {
        use crate::domain::stats::CallOutcome;
        let mut calls = CallStats::default();
        calls.record(
            "PUT /x",
            Some("OPS-1"),
            CallOutcome::Throttled,
            Some("jira-burst-based"),
        );
        calls.record("PUT /x", None, CallOutcome::Answered { points: 1 }, None);
        let lines: Vec<Value> = call_lines(1, &calls)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["JiraRequests"], 2);
        assert_eq!(lines[1]["Reason"], "jira-burst-based");
        assert_eq!(
            lines[1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][0],
            "Reason"
        );
        assert_eq!(lines[2]["Endpoint"], "PUT /x");
        assert_eq!(lines[2]["JiraPoints"], 1);
        assert!(call_lines(1, &CallStats::default()).is_empty());
    }
}
