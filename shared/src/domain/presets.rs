//! Built-in mappings for the senders people point at tollgate first, written
//! in the same mapping language a user writes (see [`super::mapping`]),
//! from the senders' published payload formats. `params.project` names the
//! Jira project; `params.resolved_transition` (default `Done`) the
//! transition a resolution takes; `params.issue_type` (default `Incident`);
//! `params.if_no_issue` (default `skip`) what a resolution of an alert or
//! incident tollgate never saw opened means: `skip` looks for its issue in
//! Jira once and otherwise ends with nothing to resolve, `wait` waits for
//! the create like other follow-up work.

use super::mapping::Mapping;

pub const NAMES: [&str; 5] = ["alertmanager", "grafana", "pagerduty", "github", "generic"];

/// Prometheus Alertmanager webhook (version 4): one event per alert of the
/// group. Firing → upsert of an incident keyed by the alert's fingerprint;
/// resolved → a comment and the resolving transition on that issue.
const ALERTMANAGER: &str = r#"
items = "alerts"

[[rules]]
name = "firing alert"
when = "item.status == 'firing'"
[rules.event]
externalId = "{{ item.fingerprint }}"
desiredOperation = "upsert"
projectKey = "{{ params.project }}"
issueType = "{{ params.issue_type | default('Incident') }}"
summary = "{{ item.labels.alertname }}{% if item.labels.instance is defined %} on {{ item.labels.instance }}{% endif %}"
description = """{{ item.annotations.summary | default('') }}
{{ item.annotations.description | default('') }}

Started: {{ item.startsAt }}
Labels: {% for k, v in item.labels | items %}{{ k }}={{ v }} {% endfor %}
{{ item.generatorURL | default('') }}"""
labels = ["alertmanager", "{{ (item.labels.severity | default('')) | replace(' ', '-') }}"]

[[rules]]
name = "resolved alert"
when = "item.status == 'resolved'"
[rules.event]
externalId = "{{ item.fingerprint }}"
desiredOperation = "transition"
transition = "{{ params.resolved_transition | default('Done') }}"
comment = "Resolved at {{ item.endsAt }} ({{ item.labels.alertname }})."
ifNoIssue = "{{ params.if_no_issue | default('skip') }}"
"#;

/// Grafana alerting's webhook contact point: Alertmanager's shape plus
/// Grafana's own fields (values, dashboard and panel links).
const GRAFANA: &str = r#"
items = "alerts"

[[rules]]
name = "firing alert"
when = "item.status == 'firing'"
[rules.event]
externalId = "{{ item.fingerprint }}"
desiredOperation = "upsert"
projectKey = "{{ params.project }}"
issueType = "{{ params.issue_type | default('Incident') }}"
summary = "{{ item.labels.alertname }}{% if item.labels.instance is defined %} on {{ item.labels.instance }}{% endif %}"
description = """{{ item.annotations.summary | default('') }}
{{ item.annotations.description | default('') }}
{{ item.valueString | default('') }}

Started: {{ item.startsAt }}
{{ item.dashboardURL | default('') }}
{{ item.panelURL | default('') }}"""
labels = ["grafana", "{{ (item.labels.severity | default('')) | replace(' ', '-') }}"]

[[rules]]
name = "resolved alert"
when = "item.status == 'resolved'"
[rules.event]
externalId = "{{ item.fingerprint }}"
desiredOperation = "transition"
transition = "{{ params.resolved_transition | default('Done') }}"
comment = "Resolved at {{ item.endsAt }} ({{ item.labels.alertname }})."
ifNoIssue = "{{ params.if_no_issue | default('skip') }}"
"#;

/// PagerDuty v3 webhooks (`event.event_type` on an incident).
const PAGERDUTY: &str = r#"
items = "[event]"

[[rules]]
name = "incident triggered"
when = "item.event_type == 'incident.triggered' && item.resource_type == 'incident'"
[rules.event]
externalId = "{{ item.data.id }}"
desiredOperation = "upsert"
projectKey = "{{ params.project }}"
issueType = "{{ params.issue_type | default('Incident') }}"
summary = "[PD #{{ item.data.number }}] {{ item.data.title }}"
description = """Triggered in PagerDuty at {{ item.occurred_at }}{% if item.data.service is defined %} on {{ item.data.service.summary }}{% endif %}.
Urgency: {{ item.data.urgency | default('unknown') }}
{{ item.data.html_url | default('') }}"""
labels = ["pagerduty", "{{ item.data.urgency | default('') }}"]

[[rules]]
name = "incident acknowledged"
when = "item.event_type == 'incident.acknowledged'"
[rules.event]
externalId = "{{ item.data.id }}"
desiredOperation = "comment"
comment = "Acknowledged in PagerDuty{% if item.agent is defined %} by {{ item.agent.summary }}{% endif %} at {{ item.occurred_at }}."

[[rules]]
name = "incident resolved"
when = "item.event_type == 'incident.resolved'"
[rules.event]
externalId = "{{ item.data.id }}"
desiredOperation = "transition"
transition = "{{ params.resolved_transition | default('Done') }}"
comment = "Resolved in PagerDuty{% if item.agent is defined %} by {{ item.agent.summary }}{% endif %} at {{ item.occurred_at }}."
ifNoIssue = "{{ params.if_no_issue | default('skip') }}"
"#;

/// GitHub `issues` webhooks: an issue mirrored into Jira.
const GITHUB: &str = r#"
items = "[@]"

[[rules]]
name = "issue opened"
when = "item.action == 'opened' && item.issue"
[rules.event]
externalId = "{{ item.repository.full_name }}#{{ item.issue.number }}"
desiredOperation = "upsert"
projectKey = "{{ params.project }}"
issueType = "{{ params.issue_type | default('Task') }}"
summary = "{{ item.issue.title }}"
description = """{{ item.issue.body | default('', true) }}

{{ item.issue.html_url }}"""
labels = ["github"]

[[rules]]
name = "issue edited"
when = "item.action == 'edited' && item.issue"
[rules.event]
externalId = "{{ item.repository.full_name }}#{{ item.issue.number }}"
desiredOperation = "update"
summary = "{{ item.issue.title }}"
description = """{{ item.issue.body | default('', true) }}

{{ item.issue.html_url }}"""

[[rules]]
name = "issue closed"
when = "item.action == 'closed' && item.issue"
[rules.event]
externalId = "{{ item.repository.full_name }}#{{ item.issue.number }}"
desiredOperation = "transition"
transition = "{{ params.resolved_transition | default('Done') }}"
comment = "Closed on GitHub by {{ item.sender.login | default('someone') }}."

[[rules]]
name = "issue reopened"
when = "item.action == 'reopened' && item.issue"
[rules.event]
externalId = "{{ item.repository.full_name }}#{{ item.issue.number }}"
desiredOperation = "transition"
transition = "{{ params.reopened_transition | default('To Do') }}"
comment = "Reopened on GitHub by {{ item.sender.login | default('someone') }}."
"#;

/// v1 events as they are: one event, an array of them, or `{events: […]}`.
const GENERIC: &str = r#"
items = "events || (type(@) == 'array' && @) || [@]"

[[rules]]
name = "v1 event"
passthrough = true
"#;

/// The preset's mapping, checked.
pub fn preset(name: &str) -> Option<Mapping> {
    let text = match name {
        "alertmanager" => ALERTMANAGER,
        "grafana" => GRAFANA,
        "pagerduty" => PAGERDUTY,
        "github" => GITHUB,
        "generic" => GENERIC,
        _ => return None,
    };
    toml::from_str(text)
        .ok()
        .filter(|m: &Mapping| m.check().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::SourceSystem;
    use serde_json::{Value, json};

    fn events(preset_name: &str, payload: Value) -> Vec<Value> {
        let m = preset(preset_name).unwrap();
        let out = m.apply(
            &payload,
            &SourceSystem::parse(preset_name).unwrap(),
            &json!({"project": "OPS"}),
        );
        out.mapped
            .into_iter()
            .map(|m| m.event.unwrap_or_else(|e| panic!("{e:?}")))
            .collect()
    }

    #[test]
    fn every_preset_loads_and_checks() {
        for name in NAMES {
            assert!(preset(name).is_some(), "{name}");
        }
        assert!(preset("nope").is_none());
    }

    #[test]
    fn alertmanager_firing_upserts_and_resolved_transitions_with_a_comment() {
        let payload = json!({
            "version": "4", "groupKey": "{}:{alertname=\"DiskFull\"}", "truncatedAlerts": 0,
            "status": "firing", "receiver": "tollgate",
            "groupLabels": {"alertname": "DiskFull"}, "commonLabels": {"alertname": "DiskFull"},
            "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
            "alerts": [
                {"status": "firing", "labels": {"alertname": "DiskFull", "instance": "db-7", "severity": "critical"},
                 "annotations": {"summary": "Disk 95% full"}, "startsAt": "2026-11-24T03:00:00Z",
                 "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus/graph", "fingerprint": "a1b2c3d4e5f60718"},
                {"status": "resolved", "labels": {"alertname": "DiskFull", "instance": "db-8"},
                 "annotations": {}, "startsAt": "2026-11-24T02:00:00Z", "endsAt": "2026-11-24T03:10:00Z",
                 "generatorURL": "http://prometheus/graph", "fingerprint": "0f1e2d3c4b5a6978"}
            ]
        });
        let e = events("alertmanager", payload);
        assert_eq!(e[0]["desiredOperation"], "upsert");
        assert_eq!(e[0]["externalId"], "a1b2c3d4e5f60718");
        assert_eq!(e[0]["summary"], "DiskFull on db-7");
        assert_eq!(e[0]["labels"], json!(["alertmanager", "critical"]));
        assert!(
            e[0]["description"]
                .as_str()
                .unwrap()
                .contains("instance=db-7")
        );
        assert_eq!(e[1]["desiredOperation"], "transition");
        assert_eq!(e[1]["transition"], "Done");
        assert_eq!(
            e[1]["comment"],
            "Resolved at 2026-11-24T03:10:00Z (DiskFull)."
        );
    }

    #[test]
    fn grafana_alerts_map_like_alertmanager_with_grafana_links() {
        let payload = json!({
            "receiver": "tollgate", "status": "firing", "orgId": 1, "version": "1",
            "groupKey": "{}", "truncatedAlerts": 0, "title": "[FIRING:1] HighLatency",
            "alerts": [{"status": "firing", "labels": {"alertname": "HighLatency", "service": "api"},
                        "annotations": {"description": "p99 over 2 s"}, "startsAt": "2026-11-24T03:00:00Z",
                        "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://grafana/alerting/grafana/x/view",
                        "fingerprint": "57c6d9296de2ad39", "silenceURL": "http://grafana/alerting/silence/new",
                        "dashboardURL": "http://grafana/d/abc", "panelURL": "http://grafana/d/abc?viewPanel=2",
                        "valueString": "[ var='B' labels={} value=2.4 ]"}]
        });
        let e = events("grafana", payload);
        assert_eq!(e[0]["summary"], "HighLatency");
        assert!(
            e[0]["description"]
                .as_str()
                .unwrap()
                .contains("http://grafana/d/abc")
        );
        assert_eq!(e[0]["labels"], json!(["grafana"]));
    }

    #[test]
    fn pagerduty_incidents_open_comment_and_resolve() {
        let incident = json!({"id": "Q2B3YK1ZM2FJ4L", "type": "incident", "number": 481, "title": "Checkout errors",
                              "status": "triggered", "urgency": "high", "html_url": "https://acme.pagerduty.com/incidents/Q2B3YK1ZM2FJ4L",
                              "service": {"id": "PSVC1", "summary": "checkout"}});
        let event = |kind: &str| {
            json!({"event": {"id": "01DEN0ZQ8BUE6YRB0ZY5FE2D41", "event_type": kind,
                                                   "resource_type": "incident", "occurred_at": "2026-11-24T03:00:00.000Z",
                                                   "agent": {"id": "PUSER1", "summary": "Ada Lovelace", "type": "user_reference"},
                                                   "data": incident}})
        };
        let opened = events("pagerduty", event("incident.triggered"));
        assert_eq!(opened[0]["summary"], "[PD #481] Checkout errors");
        assert_eq!(opened[0]["externalId"], "Q2B3YK1ZM2FJ4L");
        let ack = events("pagerduty", event("incident.acknowledged"));
        assert_eq!(ack[0]["desiredOperation"], "comment");
        assert!(ack[0]["comment"].as_str().unwrap().contains("Ada Lovelace"));
        let resolved = events("pagerduty", event("incident.resolved"));
        assert_eq!(resolved[0]["desiredOperation"], "transition");
        assert!(events("pagerduty", event("incident.priority_updated")).is_empty());
    }

    #[test]
    fn github_issues_are_mirrored_by_repository_and_number() {
        let issue = |action: &str| {
            json!({"action": action,
            "issue": {"number": 42, "title": "Crash on start", "body": null, "state": "open",
                      "html_url": "https://github.com/acme/app/issues/42"},
            "repository": {"full_name": "acme/app"}, "sender": {"login": "octocat"}})
        };
        let opened = events("github", issue("opened"));
        assert_eq!(opened[0]["externalId"], "acme/app#42");
        assert_eq!(
            opened[0]["description"],
            "https://github.com/acme/app/issues/42"
        );
        let closed = events("github", issue("closed"));
        assert_eq!(closed[0]["comment"], "Closed on GitHub by octocat.");
        assert!(events("github", issue("labeled")).is_empty());
    }

    #[test]
    fn generic_takes_one_event_an_array_or_a_list() {
        let e = json!({"externalId": "1", "desiredOperation": "comment", "issueKey": "OPS-1", "comment": "c"});
        assert_eq!(events("generic", e.clone()).len(), 1);
        assert_eq!(events("generic", json!([e.clone(), e.clone()])).len(), 2);
        assert_eq!(events("generic", json!({"events": [e]})).len(), 1);
    }
}
