//! CloudWatch Embedded Metric Format: one JSON log line that CloudWatch Logs
//! turns into metrics, with no API call from the function (and so no added
//! latency or permission). Namespace `tollgate`, no dimensions, counts.
//!
//! Format: `{"_aws": {"Timestamp": ms, "CloudWatchMetrics": [{"Namespace",
//! "Dimensions": [[]], "Metrics": [{"Name", "Unit": "Count"}…]}]}, "<Name>": n…}`.

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
}
