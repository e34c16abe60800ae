//! Turns a raw v1 body into an [`Event`], or into the complete list of what is
//! wrong with it, each error naming its field. Validation runs before any
//! point is spent and before anything is written.

use super::event::{
    ChildIssue, Event, IfNoIssue, IssueEdit, NewIssue, NewPage, Operation, OperationKind, Priority,
};
use super::ids::{ExternalId, IssueKey, PageId, ProjectKey, SourceSystem, SpaceId};
use super::limits::*;
use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt;

/// One problem with one field, as answered in `400 {errors:[{field,message}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid event: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ValidationErrors(pub Vec<FieldError>);

/// Fields only Confluence operations use.
const PAGE_FIELDS: [&str; 5] = ["pageId", "spaceId", "parentId", "title", "body"];
/// Fields only Jira operations use.
const ISSUE_FIELDS: [&str; 9] = [
    "issueKey",
    "projectKey",
    "issueType",
    "summary",
    "description",
    "labels",
    "fields",
    "transition",
    "children",
];

const KNOWN_FIELDS: [&str; 21] = [
    "sourceSystem",
    "externalId",
    "desiredOperation",
    "issueKey",
    "projectKey",
    "issueType",
    "summary",
    "description",
    "labels",
    "fields",
    "comment",
    "transition",
    "priority",
    "ifNoIssue",
    "children",
    "schemaVersion",
    "pageId",
    "spaceId",
    "parentId",
    "title",
    "body",
];

/// Parses and validates a raw request body.
pub fn parse_event(body: &[u8]) -> Result<(Event, Value), ValidationErrors> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ValidationErrors(vec![FieldError::new(
            "body",
            format!(
                "is {} bytes; the limit is {MAX_BODY_BYTES} bytes",
                body.len()
            ),
        )]));
    }
    if super::nesting::deeper_than(body, MAX_JSON_DEPTH) {
        return Err(ValidationErrors(vec![too_deep(MAX_JSON_DEPTH)]));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ValidationErrors(vec![FieldError::new(
            "body",
            format!("is not valid JSON: {e}"),
        )])
    })?;
    let event = validate_event(&value)?;
    Ok((event, value))
}

/// The error for a body nested deeper than `limit` levels.
pub fn too_deep(limit: usize) -> FieldError {
    FieldError::new(
        "body",
        format!("nests arrays and objects deeper than {limit} levels"),
    )
}

/// Validates an already parsed JSON value (a batch item, a stored job).
pub fn validate_event(value: &Value) -> Result<Event, ValidationErrors> {
    let Some(obj) = value.as_object() else {
        return Err(ValidationErrors(vec![FieldError::new(
            "body",
            "must be a JSON object",
        )]));
    };
    let mut v = Fields {
        obj,
        errors: Vec::new(),
    };
    for key in obj.keys() {
        if !KNOWN_FIELDS.contains(&key.as_str()) {
            v.error(key, "is not a field of the v1 event contract");
        }
    }
    if let Some(version) = obj.get("schemaVersion")
        && version != &Value::from(1)
        && version != &Value::from("1")
    {
        v.error(
            "schemaVersion",
            "must be 1 (the only version this server speaks)",
        );
    }

    let source_system = v.required_str("sourceSystem").and_then(|s| {
        SourceSystem::parse(s).or_else(|| {
            v.error(
                "sourceSystem",
                format!("must be 1 to {MAX_SOURCE_SYSTEM_CHARS} letters, digits, '.', '_' or '-'"),
            );
            None
        })
    });
    let external_id = v.required_str("externalId").and_then(|s| {
        ExternalId::parse(s).or_else(|| {
            v.error(
                "externalId",
                format!(
                    "must be non-blank, at most {MAX_EXTERNAL_ID_CHARS} characters, without control characters"
                ),
            );
            None
        })
    });
    let kind = v.required_str("desiredOperation").and_then(|s| {
        OperationKind::parse(s).or_else(|| {
            v.error(
                "desiredOperation",
                format!(
                    "must be one of create, upsert, update, comment, transition, pageComment, createPage (got {s:?})"
                ),
            );
            None
        })
    });
    let issue_key = v
        .optional_str("issueKey")
        .filter(|_| !kind.is_some_and(OperationKind::confluence))
        .and_then(|s| {
            IssueKey::parse(s).or_else(|| {
                v.error("issueKey", "must look like PROJECT-123");
                None
            })
        });
    let priority = match v.optional_str("priority") {
        None => Priority::default(),
        Some(s) => Priority::parse(s).unwrap_or_else(|| {
            v.error("priority", "must be interactive or bulk");
            Priority::default()
        }),
    };
    let if_no_issue = match v.optional_str("ifNoIssue") {
        None => IfNoIssue::default(),
        Some(s) => IfNoIssue::parse(s).unwrap_or_else(|| {
            v.error("ifNoIssue", "must be wait or skip");
            IfNoIssue::default()
        }),
    };
    if obj.contains_key("ifNoIssue")
        && !matches!(
            kind,
            Some(OperationKind::Update | OperationKind::Comment | OperationKind::Transition)
        )
    {
        v.error(
            "ifNoIssue",
            "is only allowed with update, comment or transition",
        );
    }

    if let Some(k) = kind {
        let foreign: &[&str] = if k.confluence() {
            &ISSUE_FIELDS
        } else {
            &PAGE_FIELDS
        };
        v.forbid(k, foreign);
    }
    let operation = kind.and_then(|kind| v.operation(kind));
    if let (Some(k), Some(_)) = (kind, obj.get("children"))
        && !k.creates()
        && !k.confluence()
    {
        v.error("children", "is only allowed with create or upsert");
    }
    if kind == Some(OperationKind::Create) && obj.contains_key("issueKey") {
        v.error(
            "issueKey",
            "is not allowed with create: the issue does not exist yet",
        );
    }

    match (source_system, external_id, operation) {
        (Some(source_system), Some(external_id), Some(operation)) if v.errors.is_empty() => {
            Ok(Event {
                source_system,
                external_id,
                issue_key,
                priority,
                operation,
                if_no_issue,
            })
        }
        _ => Err(ValidationErrors(v.errors)),
    }
}

struct Fields<'a> {
    obj: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    fn required_str(&mut self, field: &str) -> Option<&'a str> {
        match self.obj.get(field) {
            None | Some(Value::Null) => {
                self.error(field, "is required");
                None
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                self.error(field, "must not be empty");
                None
            }
            Some(Value::String(s)) => Some(s),
            Some(_) => {
                self.error(field, "must be a string");
                None
            }
        }
    }

    fn optional_str(&mut self, field: &str) -> Option<&'a str> {
        match self.obj.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => {
                self.error(field, "must be a string");
                None
            }
        }
    }

    fn text(&mut self, field: &str, required: bool, max: usize) -> Option<String> {
        let s = if required {
            self.required_str(field)
        } else {
            self.optional_str(field)
        }?;
        let chars = s.chars().count();
        if chars > max {
            self.error(field, format!("is {chars} characters; the limit is {max}"));
            return None;
        }
        Some(s.to_string())
    }

    fn summary(&mut self, field: &str, required: bool) -> Option<String> {
        let s = self.text(field, required, MAX_SUMMARY_CHARS)?;
        if s.contains('\n') || s.contains('\r') {
            self.error(field, "must be a single line");
            return None;
        }
        Some(s)
    }

    fn labels(&mut self) -> Option<Vec<String>> {
        let items = match self.obj.get("labels") {
            None | Some(Value::Null) => return None,
            Some(Value::Array(items)) => items,
            Some(_) => {
                self.error("labels", "must be an array of strings");
                return None;
            }
        };
        if items.len() > MAX_LABELS {
            self.error(
                "labels",
                format!("has {} labels; the limit is {MAX_LABELS}", items.len()),
            );
        }
        let mut labels = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let field = format!("labels[{i}]");
            match item.as_str() {
                None => self.error(&field, "must be a string"),
                Some("") => self.error(&field, "must not be empty"),
                Some(s) if s.chars().any(char::is_whitespace) => self.error(
                    &field,
                    "must not contain spaces (Jira labels are single words)",
                ),
                Some(s) if s.chars().count() > MAX_LABEL_CHARS => self.error(
                    &field,
                    format!("is longer than {MAX_LABEL_CHARS} characters"),
                ),
                Some(s) => labels.push(s.to_string()),
            }
        }
        Some(labels)
    }

    fn jira_fields(&mut self) -> Map<String, Value> {
        match self.obj.get("fields") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => {
                if map.len() > MAX_FIELDS {
                    self.error(
                        "fields",
                        format!("has {} entries; the limit is {MAX_FIELDS}", map.len()),
                    );
                }
                for key in map.keys() {
                    if key.trim().is_empty() {
                        self.error("fields", "has an empty field name");
                    }
                }
                map.clone()
            }
            Some(_) => {
                self.error("fields", "must be an object of Jira field ids to values");
                Map::new()
            }
        }
    }

    fn children(&mut self) -> Vec<ChildIssue> {
        let items = match self.obj.get("children") {
            None | Some(Value::Null) => return Vec::new(),
            Some(Value::Array(items)) => items,
            Some(_) => {
                self.error("children", "must be an array of objects");
                return Vec::new();
            }
        };
        if items.len() > MAX_CHILDREN {
            self.error(
                "children",
                format!(
                    "has {} items; the limit is {MAX_CHILDREN} (send larger fan-outs as a batch)",
                    items.len()
                ),
            );
            return Vec::new();
        }
        let mut children = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let Some(obj) = item.as_object() else {
                self.error(&format!("children[{i}]"), "must be an object");
                continue;
            };
            let mut sub = Fields {
                obj,
                errors: Vec::new(),
            };
            for key in obj.keys() {
                if !matches!(key.as_str(), "summary" | "issueType" | "description") {
                    sub.error(key, "is not a field of a child issue");
                }
            }
            let summary = sub.summary("summary", true);
            let issue_type = sub
                .text("issueType", false, MAX_SUMMARY_CHARS)
                .unwrap_or_else(|| "Subtask".to_string());
            let description = sub.text("description", false, MAX_TEXT_CHARS);
            for e in sub.errors {
                self.errors.push(FieldError::new(
                    format!("children[{i}].{}", e.field),
                    e.message,
                ));
            }
            if let Some(summary) = summary {
                children.push(ChildIssue {
                    issue_type,
                    summary,
                    description,
                });
            }
        }
        children
    }

    fn forbid(&mut self, kind: OperationKind, fields: &[&str]) {
        for field in fields {
            if self.obj.get(*field).is_some_and(|v| !v.is_null()) {
                self.error(field, format!("is not used by {kind}"));
            }
        }
    }

    fn operation(&mut self, kind: OperationKind) -> Option<Operation> {
        match kind {
            OperationKind::Create | OperationKind::Upsert => {
                self.forbid(kind, &["transition"]);
                let project_key = self.required_str("projectKey").and_then(|s| {
                    ProjectKey::parse(s).or_else(|| {
                        self.error(
                            "projectKey",
                            "must be 2-10 uppercase letters, digits or '_', starting with a letter",
                        );
                        None
                    })
                });
                let issue_type = self.text("issueType", true, MAX_SUMMARY_CHARS);
                let summary = self.summary("summary", true);
                let description = self.text("description", false, MAX_TEXT_CHARS);
                let labels = self.labels().unwrap_or_default();
                let fields = self.jira_fields();
                let comment = self.text("comment", false, MAX_TEXT_CHARS);
                let children = self.children();
                let issue = NewIssue {
                    project_key: project_key?,
                    issue_type: issue_type?,
                    summary: summary?,
                    description,
                    labels,
                    fields,
                    comment,
                    children,
                };
                Some(if kind == OperationKind::Create {
                    Operation::Create(issue)
                } else {
                    Operation::Upsert(issue)
                })
            }
            OperationKind::Update => {
                self.forbid(kind, &["transition", "projectKey", "issueType"]);
                let edit = IssueEdit {
                    summary: self.summary("summary", false),
                    description: self.text("description", false, MAX_TEXT_CHARS),
                    labels: self.labels(),
                    fields: self.jira_fields(),
                    comment: self.text("comment", false, MAX_TEXT_CHARS),
                };
                if edit.summary.is_none()
                    && edit.description.is_none()
                    && edit.labels.is_none()
                    && edit.fields.is_empty()
                    && edit.comment.is_none()
                {
                    self.error(
                        "fields",
                        "an update must change something: give summary, description, labels, fields or comment",
                    );
                    return None;
                }
                Some(Operation::Update(edit))
            }
            OperationKind::Comment => {
                self.forbid(
                    kind,
                    &[
                        "transition",
                        "projectKey",
                        "issueType",
                        "summary",
                        "labels",
                        "fields",
                    ],
                );
                let text = self.text("comment", true, MAX_TEXT_CHARS)?;
                Some(Operation::Comment { text })
            }
            OperationKind::Transition => {
                self.forbid(
                    kind,
                    &["projectKey", "issueType", "summary", "labels", "fields"],
                );
                let name = self.text("transition", true, MAX_TRANSITION_CHARS);
                let comment = self.text("comment", false, MAX_TEXT_CHARS);
                Some(Operation::Transition {
                    name: name?,
                    comment,
                })
            }
            OperationKind::PageComment => {
                let page_id = self.page_id("pageId", true);
                let text = self.text("comment", true, MAX_TEXT_CHARS);
                Some(Operation::PageComment {
                    page_id: page_id?,
                    text: text?,
                })
            }
            OperationKind::CreatePage => {
                self.forbid(kind, &["comment"]);
                let space_id = self.required_str("spaceId").and_then(|s| {
                    SpaceId::parse(s).or_else(|| {
                        self.error("spaceId", "must be a Confluence space id (digits)");
                        None
                    })
                });
                let title = self.summary("title", true);
                let body = self.text("body", true, MAX_TEXT_CHARS);
                let parent_id = self.page_id("parentId", false);
                Some(Operation::CreatePage(NewPage {
                    space_id: space_id?,
                    title: title?,
                    body: body?,
                    parent_id,
                }))
            }
        }
    }

    fn page_id(&mut self, field: &str, required: bool) -> Option<PageId> {
        let s = if required {
            self.required_str(field)?
        } else {
            self.optional_str(field)?
        };
        PageId::parse(s).or_else(|| {
            self.error(field, "must be a Confluence page id (digits)");
            None
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors_of(value: Value) -> Vec<String> {
        match validate_event(&value) {
            Ok(_) => Vec::new(),
            Err(ValidationErrors(errors)) => errors.into_iter().map(|e| e.field).collect(),
        }
    }

    #[test]
    fn a_deeply_nested_body_is_refused_naming_the_limit() {
        let deep = format!(
            "{{\"sourceSystem\":\"a\",\"fields\":{}1{}}}",
            "[".repeat(40),
            "]".repeat(40)
        );
        let e = parse_event(deep.as_bytes()).unwrap_err();
        assert_eq!(e.0[0].field, "body");
        assert!(e.0[0].message.contains("32 levels"), "{e}");
    }

    #[test]
    fn confluence_operations_name_their_own_fields_and_refuse_jira_ones() {
        assert_eq!(
            errors_of(
                json!({"sourceSystem":"a","externalId":"1","desiredOperation":"createPage",
                             "spaceId":"x1","body":"b","summary":"s"})
            ),
            ["summary", "spaceId", "title"]
        );
        assert_eq!(
            errors_of(
                json!({"sourceSystem":"a","externalId":"1","desiredOperation":"pageComment",
                             "pageId":"12","comment":"c","issueKey":"OPS-1"})
            ),
            ["issueKey"]
        );
        assert_eq!(
            errors_of(
                json!({"sourceSystem":"a","externalId":"1","desiredOperation":"comment",
                             "issueKey":"OPS-1","comment":"c","pageId":"12"})
            ),
            ["pageId"]
        );
        assert!(
            errors_of(
                json!({"sourceSystem":"a","externalId":"1","desiredOperation":"pageComment",
                                 "pageId":"12","comment":"c"})
            )
            .is_empty()
        );
    }

    #[test]
    fn the_contract_example_with_missing_fields_names_every_one_of_them() {
        let body = include_bytes!("../../../fixtures/contract/invalid-missing-fields.json");
        let err = parse_event(body).unwrap_err();
        let fields: Vec<_> = err.0.iter().map(|e| e.field.as_str()).collect();
        for f in ["externalId", "projectKey", "issueType"] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
    }

    #[test]
    fn every_contract_example_that_should_parse_does() {
        for body in [
            &include_bytes!("../../../fixtures/contract/create.json")[..],
            include_bytes!("../../../fixtures/contract/upsert-cmdb.json"),
            include_bytes!("../../../fixtures/contract/update-by-issue-key.json"),
            include_bytes!("../../../fixtures/contract/comment-by-external-id.json"),
            include_bytes!("../../../fixtures/contract/transition.json"),
        ] {
            parse_event(body).unwrap();
        }
    }

    #[test]
    fn a_create_parses_into_a_new_issue_with_its_labels() {
        let (event, _) =
            parse_event(include_bytes!("../../../fixtures/contract/create.json")).unwrap();
        let Operation::Create(issue) = event.operation else {
            panic!("not a create")
        };
        assert_eq!(issue.project_key.as_str(), "OPS");
        assert_eq!(issue.labels, vec!["alert", "storage"]);
        assert_eq!(event.priority, Priority::Interactive);
    }

    #[test]
    fn a_summary_over_255_characters_is_refused_with_the_limit() {
        let err = validate_event(&json!({
            "sourceSystem": "a", "externalId": "1", "desiredOperation": "create",
            "projectKey": "OPS", "issueType": "Task", "summary": "x".repeat(256)
        }))
        .unwrap_err();
        assert_eq!(err.0[0].field, "summary");
        assert!(err.0[0].message.contains("255"));
    }

    #[test]
    fn labels_with_spaces_are_named_by_index() {
        let fields = errors_of(json!({
            "sourceSystem": "a", "externalId": "1", "desiredOperation": "create",
            "projectKey": "OPS", "issueType": "Task", "summary": "s",
            "labels": ["ok", "not ok", 3]
        }));
        assert_eq!(fields, vec!["labels[1]", "labels[2]"]);
    }

    #[test]
    fn too_many_children_is_refused_with_the_limit() {
        let children: Vec<_> = (0..=MAX_CHILDREN)
            .map(|i| json!({"summary": format!("c{i}")}))
            .collect();
        let err = validate_event(&json!({
            "sourceSystem": "a", "externalId": "1", "desiredOperation": "create",
            "projectKey": "OPS", "issueType": "Task", "summary": "s", "children": children
        }))
        .unwrap_err();
        assert_eq!(err.0[0].field, "children");
        assert!(err.0[0].message.contains(&MAX_CHILDREN.to_string()));
    }

    #[test]
    fn child_errors_are_named_with_their_path() {
        let fields = errors_of(json!({
            "sourceSystem": "a", "externalId": "1", "desiredOperation": "upsert",
            "projectKey": "OPS", "issueType": "Task", "summary": "s",
            "children": [{"summary": "fine"}, {"issueType": "Subtask"}]
        }));
        assert_eq!(fields, vec!["children[1].summary"]);
    }

    #[test]
    fn a_body_over_256_kib_is_refused_before_parsing() {
        let body = vec![b' '; MAX_BODY_BYTES + 1];
        let err = parse_event(&body).unwrap_err();
        assert_eq!(err.0[0].field, "body");
        assert!(err.0[0].message.contains("262144"));
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_named() {
        let fields = errors_of(json!({
            "sourceSystem": "a", "externalId": 7, "desiredOperation": "comment",
            "comment": "hi", "sumary": "typo"
        }));
        assert_eq!(fields, vec!["sumary", "externalId"]);
    }

    #[test]
    fn an_update_that_changes_nothing_is_refused() {
        let fields = errors_of(json!({
            "sourceSystem": "a", "externalId": "1", "desiredOperation": "update", "issueKey": "OPS-1"
        }));
        assert_eq!(fields, vec!["fields"]);
    }

    #[test]
    fn operations_refuse_fields_they_do_not_use() {
        let fields = errors_of(json!({
            "sourceSystem": "a", "externalId": "1", "desiredOperation": "comment",
            "comment": "c", "summary": "s", "children": []
        }));
        assert_eq!(fields, vec!["summary", "children"]);
    }

    #[test]
    fn an_unknown_operation_lists_the_valid_ones() {
        let err = validate_event(&json!({
            "sourceSystem": "a", "externalId": "1", "desiredOperation": "delete"
        }))
        .unwrap_err();
        assert_eq!(err.0[0].field, "desiredOperation");
        assert!(err.0[0].message.contains("transition"));
    }

    #[test]
    fn a_transition_needs_its_name() {
        assert_eq!(
            errors_of(
                json!({"sourceSystem": "a", "externalId": "1", "desiredOperation": "transition"})
            ),
            vec!["transition"]
        );
    }
}
