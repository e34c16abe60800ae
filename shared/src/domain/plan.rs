//! The execution plan: which Jira calls an event becomes.
//!
//! A plan is a list of steps run in order, with a checkpoint after each. It
//! must be the same on every attempt of a job, so it is computed from the
//! event and from whether *another* job already created the entity's issue:
//! an issue created by this job's own earlier attempt leaves the plan as it
//! was, and the checkpoint skips the step.

use super::adf::to_adf;
use super::event::{Event, IssueEdit, NewIssue, Operation};
use super::governor::CallKind;
use super::idempotency::LinkId;
use super::ids::{IssueKey, PageId, SpaceId};
use super::storage_format::to_storage;
use serde_json::{Map, Value, json};
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Create the entity's issue. `label` is set in the same call so a retry
    /// after a lost answer finds the issue instead of creating another.
    CreateIssue {
        fields: Map<String, Value>,
        label: String,
    },
    /// Create the `index`-th sub-task under the entity's issue.
    CreateChild {
        index: usize,
        fields: Map<String, Value>,
        label: String,
    },
    /// One composed edit: `fields` replaces values, `add_labels` adds labels
    /// without dropping the tollgate label.
    Edit {
        fields: Map<String, Value>,
        add_labels: Vec<String>,
    },
    Comment {
        text: String,
    },
    Transition {
        name: String,
    },
    /// Create a Confluence page; its title is unique in its space, which is
    /// how a lost answer is reconciled.
    CreatePage {
        space_id: SpaceId,
        title: String,
        /// Storage format.
        body: String,
        parent_id: Option<PageId>,
    },
    /// A footer comment on a Confluence page (storage format).
    PageComment {
        page_id: PageId,
        body: String,
    },
}

impl Step {
    /// Steps that are not safe to repeat blindly: before repeating one whose
    /// answer was lost, the executor looks in Jira for its effect.
    pub fn needs_reconcile(&self) -> bool {
        matches!(
            self,
            Step::CreateIssue { .. }
                | Step::CreateChild { .. }
                | Step::Comment { .. }
                | Step::CreatePage { .. }
                | Step::PageComment { .. }
        )
    }

    /// The Jira call's name, for audit and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Step::CreateIssue { .. } => "create_issue",
            Step::CreateChild { .. } => "create_subtask",
            Step::Edit { .. } => "edit_issue",
            Step::Comment { .. } => "add_comment",
            Step::Transition { .. } => "transition_issue",
            Step::CreatePage { .. } => "create_page",
            Step::PageComment { .. } => "add_page_comment",
        }
    }
}

impl Step {
    /// The Jira call this step makes, as the governor sees it.
    pub fn call_kind(&self, target: Option<&IssueKey>, bulk: bool) -> CallKind {
        let issue = target.map(|k| k.as_str().to_string());
        let (endpoint, write, issue) = match self {
            Step::CreateIssue { .. } | Step::CreateChild { .. } => {
                ("POST /rest/api/3/issue", true, None)
            }
            Step::Edit { .. } => ("PUT /rest/api/3/issue/{key}", true, issue),
            Step::Comment { .. } => ("POST /rest/api/3/issue/{key}/comment", true, issue),
            Step::Transition { .. } => ("POST /rest/api/3/issue/{key}/transitions", true, issue),
            Step::CreatePage { .. } => ("POST /wiki/api/v2/pages", true, None),
            Step::PageComment { .. } => ("POST /wiki/api/v2/footer-comments", true, None),
        };
        CallKind {
            endpoint: endpoint.into(),
            write,
            issue,
            bulk,
        }
    }

    /// The read that looks for this step's effect after a lost answer.
    pub fn reconcile_call_kind(&self, target: Option<&IssueKey>, bulk: bool) -> CallKind {
        let endpoint = match self {
            Step::Comment { .. } => "GET /rest/api/3/issue/{key}/comment",
            Step::CreatePage { .. } => "GET /wiki/api/v2/pages",
            Step::PageComment { .. } => "GET /wiki/api/v2/pages/{id}/footer-comments",
            _ => "POST /rest/api/3/search/jql",
        };
        CallKind {
            endpoint: endpoint.into(),
            write: false,
            issue: target.map(|k| k.as_str().to_string()),
            bulk,
        }
    }
}

impl fmt::Display for Step {
    /// The intent in words, as written into the audit trail.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::CreateIssue { fields, .. } => write!(
                f,
                "create {} in {}: {}",
                fields["issuetype"]["name"].as_str().unwrap_or("issue"),
                fields["project"]["key"].as_str().unwrap_or("?"),
                fields["summary"].as_str().unwrap_or("")
            ),
            Step::CreateChild { index, fields, .. } => write!(
                f,
                "create sub-task #{index}: {}",
                fields["summary"].as_str().unwrap_or("")
            ),
            Step::Edit { fields, add_labels } => {
                let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
                if !add_labels.is_empty() {
                    names.push("labels(+)");
                }
                write!(f, "edit {}", names.join(", "))
            }
            Step::Comment { text } => {
                let preview: String = text.chars().take(80).collect();
                write!(f, "comment \"{preview}\"")
            }
            Step::Transition { name } => write!(f, "transition to \"{name}\""),
            Step::CreatePage {
                space_id, title, ..
            } => write!(f, "create page \"{title}\" in space {space_id}"),
            Step::PageComment { page_id, body } => {
                let preview: String = body.chars().take(80).collect();
                write!(f, "comment on page {page_id}: {preview}")
            }
        }
    }
}

/// Where the entity's issue stands when the job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// No issue yet, or one that this same job created (its checkpoint covers it).
    Unlinked,
    /// Another job created this issue.
    Linked(IssueKey),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "no issue to act on: give issueKey, or create the issue for this sourceSystem and externalId first"
    )]
    NoTarget,
}

pub fn plan(event: &Event, link_id: &LinkId, link: &LinkState) -> Result<Vec<Step>, PlanError> {
    let mut steps = Vec::new();
    match &event.operation {
        Operation::Create(issue) => {
            if *link == LinkState::Unlinked {
                steps.push(create_step(issue, link_id));
            }
            push_children(&mut steps, issue, link_id);
            push_comment(&mut steps, &issue.comment);
        }
        Operation::Upsert(issue) => match link {
            LinkState::Unlinked => {
                steps.push(create_step(issue, link_id));
                push_children(&mut steps, issue, link_id);
                push_comment(&mut steps, &issue.comment);
            }
            LinkState::Linked(_) => {
                steps.push(upsert_edit(issue));
                push_children(&mut steps, issue, link_id);
                push_comment(&mut steps, &issue.comment);
            }
        },
        Operation::Update(edit) => {
            require_target(event, link)?;
            if let Some(step) = edit_step(edit) {
                steps.push(step);
            }
            push_comment(&mut steps, &edit.comment);
        }
        Operation::Comment { text } => {
            require_target(event, link)?;
            steps.push(Step::Comment { text: text.clone() });
        }
        Operation::Transition { name, comment } => {
            require_target(event, link)?;
            steps.push(Step::Transition { name: name.clone() });
            push_comment(&mut steps, comment);
        }
        Operation::PageComment { page_id, text } => steps.push(Step::PageComment {
            page_id: page_id.clone(),
            body: to_storage(text),
        }),
        Operation::CreatePage(page) => steps.push(Step::CreatePage {
            space_id: page.space_id.clone(),
            title: page.title.clone(),
            body: to_storage(&page.body),
            parent_id: page.parent_id.clone(),
        }),
    }
    Ok(steps)
}

fn require_target(event: &Event, link: &LinkState) -> Result<(), PlanError> {
    match (&event.issue_key, link) {
        (Some(_), _) | (None, LinkState::Linked(_)) => Ok(()),
        (None, LinkState::Unlinked) => Err(PlanError::NoTarget),
    }
}

fn create_step(issue: &NewIssue, link_id: &LinkId) -> Step {
    let label = link_id.label();
    let mut fields = issue.fields.clone();
    fields.insert(
        "project".into(),
        json!({ "key": issue.project_key.as_str() }),
    );
    fields.insert("issuetype".into(), json!({ "name": issue.issue_type }));
    fields.insert("summary".into(), json!(issue.summary));
    if let Some(d) = &issue.description {
        fields.insert("description".into(), to_adf(d));
    }
    let mut labels = issue.labels.clone();
    labels.push(label.clone());
    fields.insert("labels".into(), json!(labels));
    Step::CreateIssue { fields, label }
}

fn push_children(steps: &mut Vec<Step>, issue: &NewIssue, link_id: &LinkId) {
    for (index, child) in issue.children.iter().enumerate() {
        let label = link_id.child_label(index);
        let mut fields = Map::new();
        fields.insert(
            "project".into(),
            json!({ "key": issue.project_key.as_str() }),
        );
        fields.insert("issuetype".into(), json!({ "name": child.issue_type }));
        fields.insert("summary".into(), json!(child.summary));
        if let Some(d) = &child.description {
            fields.insert("description".into(), to_adf(d));
        }
        fields.insert("labels".into(), json!([label]));
        steps.push(Step::CreateChild {
            index,
            fields,
            label,
        });
    }
}

fn push_comment(steps: &mut Vec<Step>, comment: &Option<String>) {
    if let Some(text) = comment {
        steps.push(Step::Comment { text: text.clone() });
    }
}

/// An upsert of an existing issue: one edit carrying everything the event
/// says, labels added rather than replaced.
fn upsert_edit(issue: &NewIssue) -> Step {
    let mut fields = issue.fields.clone();
    fields.insert("summary".into(), json!(issue.summary));
    if let Some(d) = &issue.description {
        fields.insert("description".into(), to_adf(d));
    }
    Step::Edit {
        fields,
        add_labels: issue.labels.clone(),
    }
}

fn edit_step(edit: &IssueEdit) -> Option<Step> {
    let mut fields = edit.fields.clone();
    if let Some(s) = &edit.summary {
        fields.insert("summary".into(), json!(s));
    }
    if let Some(d) = &edit.description {
        fields.insert("description".into(), to_adf(d));
    }
    let add_labels = edit.labels.clone().unwrap_or_default();
    (!fields.is_empty() || !add_labels.is_empty()).then_some(Step::Edit { fields, add_labels })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::validation::validate_event;
    use serde_json::json;

    fn event(v: Value) -> (Event, LinkId) {
        let e = validate_event(&v).unwrap();
        let l = LinkId::of(&e.source_system, &e.external_id);
        (e, l)
    }

    fn linked() -> LinkState {
        LinkState::Linked(IssueKey::parse("OPS-1").unwrap())
    }

    fn names(steps: &[Step]) -> Vec<&'static str> {
        steps.iter().map(Step::name).collect()
    }

    fn upsert() -> Value {
        json!({"sourceSystem":"cmdb","externalId":"ci-1","desiredOperation":"upsert",
               "projectKey":"ASSET","issueType":"Task","summary":"web-12","labels":["cmdb"],
               "fields":{"customfield_10050":"web-12"}})
    }

    #[test]
    fn an_upsert_creates_when_nothing_is_linked() {
        let (e, l) = event(upsert());
        let steps = plan(&e, &l, &LinkState::Unlinked).unwrap();
        assert_eq!(names(&steps), ["create_issue"]);
        let Step::CreateIssue { fields, label } = &steps[0] else {
            panic!()
        };
        assert_eq!(fields["labels"], json!(["cmdb", label]));
        assert_eq!(fields["customfield_10050"], "web-12");
    }

    #[test]
    fn an_upsert_of_a_linked_issue_is_one_composed_edit_and_never_a_create() {
        let (e, l) = event(upsert());
        let steps = plan(&e, &l, &linked()).unwrap();
        assert_eq!(names(&steps), ["edit_issue"]);
        let Step::Edit { fields, add_labels } = &steps[0] else {
            panic!()
        };
        assert_eq!(fields["summary"], "web-12");
        assert_eq!(add_labels, &["cmdb"]);
    }

    #[test]
    fn a_create_of_an_entity_someone_already_created_does_not_create_again() {
        let (e, l) = event(
            json!({"sourceSystem":"a","externalId":"1","desiredOperation":"create",
            "projectKey":"OPS","issueType":"Task","summary":"s","comment":"first",
            "children":[{"summary":"c0"}]}),
        );
        assert_eq!(
            names(&plan(&e, &l, &LinkState::Unlinked).unwrap()),
            ["create_issue", "create_subtask", "add_comment"]
        );
        assert_eq!(
            names(&plan(&e, &l, &linked()).unwrap()),
            ["create_subtask", "add_comment"]
        );
    }

    #[test]
    fn a_transition_with_a_comment_is_two_steps() {
        let (e, l) = event(
            json!({"sourceSystem":"a","externalId":"1","desiredOperation":"transition",
            "transition":"Done","comment":"fixed"}),
        );
        assert_eq!(
            names(&plan(&e, &l, &linked()).unwrap()),
            ["transition_issue", "add_comment"]
        );
    }

    #[test]
    fn a_comment_without_any_target_cannot_be_planned() {
        let (e, l) = event(
            json!({"sourceSystem":"a","externalId":"1","desiredOperation":"comment","comment":"c"}),
        );
        assert_eq!(plan(&e, &l, &LinkState::Unlinked), Err(PlanError::NoTarget));
        let (e, l) = event(
            json!({"sourceSystem":"a","externalId":"1","desiredOperation":"comment","comment":"c","issueKey":"OPS-9"}),
        );
        assert!(plan(&e, &l, &LinkState::Unlinked).is_ok());
    }

    #[test]
    fn an_update_puts_summary_and_description_into_fields() {
        let (e, l) = event(
            json!({"sourceSystem":"a","externalId":"1","desiredOperation":"update",
            "issueKey":"OPS-17","summary":"new","description":"d"}),
        );
        let steps = plan(&e, &l, &LinkState::Unlinked).unwrap();
        let Step::Edit { fields, .. } = &steps[0] else {
            panic!()
        };
        assert_eq!(fields["summary"], "new");
        assert_eq!(fields["description"]["type"], "doc");
    }

    #[test]
    fn confluence_operations_need_no_issue() {
        let (e, l) = event(
            json!({"sourceSystem":"a","externalId":"1","desiredOperation":"createPage",
            "spaceId":"65538","title":"Runbook","body":"<b>step</b> one"}),
        );
        let steps = plan(&e, &l, &LinkState::Unlinked).unwrap();
        assert_eq!(names(&steps), ["create_page"]);
        let Step::CreatePage { body, .. } = &steps[0] else {
            panic!()
        };
        assert_eq!(body, "<p>&lt;b&gt;step&lt;/b&gt; one</p>");
        assert_eq!(
            steps[0].call_kind(None, false).endpoint,
            "POST /wiki/api/v2/pages"
        );
        let (e, l) = event(
            json!({"sourceSystem":"a","externalId":"1","desiredOperation":"pageComment",
            "pageId":"98306","comment":"deployed"}),
        );
        assert_eq!(
            names(&plan(&e, &l, &LinkState::Unlinked).unwrap()),
            ["add_page_comment"]
        );
    }

    #[test]
    fn intents_read_as_words() {
        let (e, l) = event(upsert());
        let steps = plan(&e, &l, &LinkState::Unlinked).unwrap();
        assert_eq!(steps[0].to_string(), "create Task in ASSET: web-12");
    }
}
