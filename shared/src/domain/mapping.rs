//! Mappings: one sender's native payload → zero or more v1 events,
//! declaratively. `items` (JMESPath) picks what becomes an event each (an
//! Alertmanager group's `alerts`); for each item the first rule whose
//! `when` (JMESPath over `{item, payload, params}`) holds renders its
//! `event` template — every string in it a MiniJinja template over the
//! same context — or, with `passthrough`, takes the item as the event.
//! Empty strings are dropped, so a template can leave an optional field out.
//!
//! Errors name where they happened (`alerts[3].summary`), and each event is
//! validated like any other before anything is admitted.

use super::ids::SourceSystem;
use super::validation::{FieldError, validate_event};
use serde::Deserialize;
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// JMESPath to the items; the whole payload is one item when absent.
    #[serde(default)]
    pub items: Option<String>,
    pub rules: Vec<MapRule>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapRule {
    #[serde(default)]
    pub name: Option<String>,
    /// JMESPath; the rule applies when it is truthy (always when absent).
    #[serde(default)]
    pub when: Option<String>,
    /// The item is a v1 event already.
    #[serde(default)]
    pub passthrough: bool,
    /// The v1 event, strings as templates.
    #[serde(default)]
    pub event: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("{place}: invalid JMESPath {expr:?}: {message}")]
    Expression {
        place: String,
        expr: String,
        message: String,
    },
    #[error("{place}: invalid template: {message}")]
    Template { place: String, message: String },
    #[error("rule {0}: give an event template or passthrough = true")]
    EmptyRule(usize),
}

/// One item's fate.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    /// Where the item sits in the payload (`alerts[3]`).
    pub path: String,
    /// The item as received (kept with a rejection).
    pub item: Value,
    pub event: Result<Value, Vec<FieldError>>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct MapOutcome {
    pub mapped: Vec<Mapped>,
    /// What no rule took: items (by path), or — when the payload held no
    /// item at all — the payload itself (`body`).
    pub unmatched: Vec<Unmatched>,
}

/// Something of a payload no rule of the mapping takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Unmatched {
    pub path: String,
    pub item: Value,
}

impl Mapping {
    /// Compiles every expression and template once, so a bad mapping is
    /// refused when the configuration loads, not when a sender calls.
    pub fn check(&self) -> Result<(), MappingError> {
        if let Some(items) = &self.items {
            compile(items, "items")?;
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if let Some(when) = &rule.when {
                compile(when, &format!("rules[{i}].when"))?;
            }
            if !rule.passthrough && rule.event.is_empty() {
                return Err(MappingError::EmptyRule(i));
            }
            check_templates(
                &Value::Object(rule.event.clone()),
                &format!("rules[{i}].event"),
            )?;
        }
        Ok(())
    }

    /// Maps one payload.
    pub fn apply(&self, payload: &Value, source: &SourceSystem, params: &Value) -> MapOutcome {
        let prefix = match &self.items {
            Some(e)
                if e.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') =>
            {
                e.clone()
            }
            Some(_) => "items".to_string(),
            None => String::new(),
        };
        let items: Vec<Value> = match &self.items {
            None => vec![payload.clone()],
            Some(expr) => match search(expr, payload) {
                Ok(Value::Array(items)) => items,
                Ok(Value::Null) => Vec::new(),
                Ok(other) => vec![other],
                Err(message) => {
                    return MapOutcome {
                        mapped: vec![Mapped {
                            path: "body".into(),
                            item: payload.clone(),
                            event: Err(vec![FieldError::new(
                                prefix_or_body(&prefix),
                                format!("cannot pick items: {message}"),
                            )]),
                        }],
                        unmatched: Vec::new(),
                    };
                }
            },
        };
        let mut out = MapOutcome::default();
        if items.is_empty() {
            out.unmatched.push(Unmatched {
                path: "body".into(),
                item: payload.clone(),
            });
        }
        for (index, item) in items.into_iter().enumerate() {
            let path = if self.items.is_some() {
                format!("{prefix}[{index}]")
            } else {
                "body".to_string()
            };
            let context = json!({ "item": item, "payload": payload, "params": params, "source": source.as_str() });
            let rule = self.rules.iter().find(|r| match &r.when {
                None => true,
                Some(w) => search(w, &context).is_ok_and(|v| truthy(&v)),
            });
            let Some(rule) = rule else {
                out.unmatched.push(Unmatched { path, item });
                continue;
            };
            let event = render_event(rule, &item, &context, source, &path);
            out.mapped.push(Mapped { path, item, event });
        }
        out
    }
}

fn prefix_or_body(prefix: &str) -> String {
    if prefix.is_empty() {
        "body".into()
    } else {
        prefix.into()
    }
}

fn render_event(
    rule: &MapRule,
    item: &Value,
    context: &Value,
    source: &SourceSystem,
    path: &str,
) -> Result<Value, Vec<FieldError>> {
    let mut event = if rule.passthrough {
        match item {
            Value::Object(o) => o.clone(),
            _ => {
                return Err(vec![FieldError::new(
                    path,
                    "must be a JSON object to pass through as an event",
                )]);
            }
        }
    } else {
        let mut errors = Vec::new();
        let rendered = render_value(
            &Value::Object(rule.event.clone()),
            context,
            path,
            &mut errors,
        );
        if !errors.is_empty() {
            return Err(errors);
        }
        match rendered {
            Some(Value::Object(o)) => o,
            _ => Map::new(),
        }
    };
    match event.get("sourceSystem").and_then(Value::as_str) {
        None => {
            event.insert("sourceSystem".into(), json!(source.as_str()));
        }
        Some(s) if s == source.as_str() => {}
        Some(_) => {
            return Err(vec![FieldError::new(
                format!("{path}.sourceSystem"),
                format!("must be this source's name ({source})"),
            )]);
        }
    }
    let event = Value::Object(event);
    match validate_event(&event) {
        Ok(_) => Ok(event),
        Err(e) => Err(e
            .0
            .into_iter()
            .map(|f| FieldError::new(format!("{path}.{}", f.field), f.message))
            .collect()),
    }
}

/// Renders every string; drops those that render empty.
fn render_value(
    template: &Value,
    context: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Option<Value> {
    match template {
        Value::String(t) => match render(t, context) {
            Ok(s) if s.is_empty() => None,
            Ok(s) => Some(Value::String(s)),
            Err(message) => {
                errors.push(FieldError::new(path, format!("template failed: {message}")));
                None
            }
        },
        Value::Array(items) => Some(Value::Array(
            items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| render_value(v, context, &format!("{path}[{i}]"), errors))
                .collect(),
        )),
        Value::Object(fields) => Some(Value::Object(
            fields
                .iter()
                .filter_map(|(k, v)| {
                    render_value(v, context, &format!("{path}.{k}"), errors).map(|v| (k.clone(), v))
                })
                .collect(),
        )),
        other => Some(other.clone()),
    }
}

fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    // A template naming a field the payload lacks is an error that names
    // it, not a silently empty value (use `| default(…)` for optional ones).
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env
}

fn render(template: &str, context: &Value) -> Result<String, String> {
    environment()
        .render_str(template, context)
        .map(|s| s.trim().to_string())
        .map_err(|e| e.to_string())
}

fn check_templates(v: &Value, place: &str) -> Result<(), MappingError> {
    match v {
        Value::String(t) => {
            environment()
                .template_from_str(t)
                .map(|_| ())
                .map_err(|e| MappingError::Template {
                    place: place.into(),
                    message: e.to_string(),
                })
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| check_templates(v, &format!("{place}[{i}]"))),
        Value::Object(fields) => fields
            .iter()
            .try_for_each(|(k, v)| check_templates(v, &format!("{place}.{k}"))),
        _ => Ok(()),
    }
}

fn compile(expr: &str, place: &str) -> Result<(), MappingError> {
    jmespath::compile(expr)
        .map(|_| ())
        .map_err(|e| MappingError::Expression {
            place: place.into(),
            expr: expr.into(),
            message: e.to_string(),
        })
}

fn search(expr: &str, data: &Value) -> Result<Value, String> {
    let compiled = jmespath::compile(expr).map_err(|e| e.to_string())?;
    let variable = jmespath::Variable::from_serializable(data).map_err(|e| e.to_string())?;
    let found = compiled.search(variable).map_err(|e| e.to_string())?;
    serde_json::to_value(&*found).map_err(|e| e.to_string())
}

/// JMESPath truthiness: false, null, empty strings, arrays and objects are
/// false.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(toml_text: &str) -> Mapping {
        let m: Mapping = toml::from_str(toml_text).unwrap();
        m.check().unwrap();
        m
    }

    fn source() -> SourceSystem {
        SourceSystem::parse("mon").unwrap()
    }

    const ALERTS: &str = r#"
items = "alerts"
[[rules]]
when = "item.status == 'firing'"
[rules.event]
externalId = "{{ item.fingerprint }}"
desiredOperation = "upsert"
projectKey = "{{ params.project }}"
issueType = "Incident"
summary = "{{ item.labels.alertname }} on {{ item.labels.instance | default('unknown') }}"
description = "{{ item.annotations.description | default('') }}"
labels = ["mon", "{{ item.labels.severity | default('') }}"]
"#;

    #[test]
    fn each_item_becomes_an_event_and_unmatched_items_are_ignored() {
        let m = mapping(ALERTS);
        let payload = json!({"alerts": [
            {"status": "firing", "fingerprint": "f1", "labels": {"alertname": "Disk", "instance": "db-7", "severity": "page"}, "annotations": {}},
            {"status": "resolved", "fingerprint": "f2", "labels": {"alertname": "Cpu"}, "annotations": {}}
        ]});
        let out = m.apply(&payload, &source(), &json!({"project": "OPS"}));
        assert_eq!(out.unmatched.len(), 1);
        assert_eq!(out.unmatched[0].path, "alerts[1]");
        assert_eq!(out.mapped.len(), 1);
        let e = out.mapped[0].event.as_ref().unwrap();
        assert_eq!(e["summary"], "Disk on db-7");
        assert_eq!(e["labels"], json!(["mon", "page"]));
        assert_eq!(e["sourceSystem"], "mon");
        assert!(e.get("description").is_none(), "empty renders are dropped");
    }

    #[test]
    fn a_missing_field_is_an_error_naming_the_item_and_field() {
        let m = mapping(ALERTS);
        let payload = json!({"alerts": [{"status": "firing", "labels": {"alertname": "Disk"}, "annotations": {}}]});
        let out = m.apply(&payload, &source(), &json!({"project": "OPS"}));
        let errors = out.mapped[0].event.as_ref().unwrap_err();
        assert_eq!(errors[0].field, "alerts[0].externalId", "{errors:?}");
        assert!(errors[0].message.contains("template failed"), "{errors:?}");
    }

    #[test]
    fn an_event_that_maps_but_is_invalid_names_the_field_under_the_item() {
        let m = mapping(ALERTS);
        let payload = json!({"alerts": [{"status": "firing", "fingerprint": "f", "labels": {"alertname": "D"}, "annotations": {}}]});
        let out = m.apply(&payload, &source(), &json!({"project": "lowercase"}));
        let errors = out.mapped[0].event.as_ref().unwrap_err();
        assert_eq!(errors[0].field, "alerts[0].projectKey");
    }

    #[test]
    fn passthrough_takes_v1_events_as_they_are() {
        let m = mapping("items = \"events || [@]\"\n[[rules]]\npassthrough = true\n");
        let one = json!({"externalId": "1", "desiredOperation": "comment", "issueKey": "OPS-1", "comment": "hi"});
        let out = m.apply(&one, &source(), &Value::Null);
        assert_eq!(out.mapped[0].event.as_ref().unwrap()["comment"], "hi");
        let many = json!({"events": [one.clone(), one]});
        assert_eq!(m.apply(&many, &source(), &Value::Null).mapped.len(), 2);
        let foreign = json!({"sourceSystem": "other", "externalId": "1", "desiredOperation": "comment", "issueKey": "OPS-1", "comment": "c"});
        let out = m.apply(&foreign, &source(), &Value::Null);
        assert_eq!(
            out.mapped[0].event.as_ref().unwrap_err()[0].field,
            "items[0].sourceSystem"
        );
    }

    #[test]
    fn bad_expressions_and_templates_are_refused_when_loaded() {
        let bad: Mapping =
            toml::from_str("items = \"alerts[\"\n[[rules]]\npassthrough = true\n").unwrap();
        assert!(matches!(bad.check(), Err(MappingError::Expression { .. })));
        let bad: Mapping =
            toml::from_str("[[rules]]\n[rules.event]\nsummary = \"{{ item.x \"\n").unwrap();
        assert!(matches!(bad.check(), Err(MappingError::Template { .. })));
        let empty: Mapping = toml::from_str("[[rules]]\nwhen = \"item\"\n").unwrap();
        assert_eq!(empty.check(), Err(MappingError::EmptyRule(0)));
    }
}
