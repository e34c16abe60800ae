//! The simulator's in-memory Jira: issues, comments, workflow, counters.

use crate::jql;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use tollgate::domain::adf::to_plain_text;

#[derive(Debug)]
pub enum SimError {
    NotFound,
    Field(&'static str, String),
    Message(String),
}

const ISSUE_TYPES: [&str; 7] = [
    "Task", "Bug", "Story", "Incident", "Epic", "Subtask", "Sub-task",
];
/// The workflow: every status can move to every other, as a simple Jira
/// project's default workflow allows. (id, transition name, target status)
const WORKFLOW: [(&str, &str, &str); 4] = [
    ("11", "To Do", "To Do"),
    ("21", "In Progress", "In Progress"),
    ("31", "Done", "Done"),
    // A global transition ("any status → Done", the kind many real
    // workflows have): offered from every status, Done included, so
    // repeating it re-runs it.
    ("41", "Close", "Done"),
];

/// Transitions offered from every status, their own target included.
const GLOBAL: [&str; 1] = ["41"];

fn offered(id: &str, to: &str, status: &str) -> bool {
    GLOBAL.contains(&id) || to != status
}

pub struct Comment {
    id: u64,
    body: Value,
    properties: Vec<Value>,
    created: String,
}

pub struct Issue {
    pub id: u64,
    pub key: String,
    pub project: String,
    pub issue_type: String,
    pub summary: String,
    pub description: Value,
    pub labels: Vec<String>,
    pub status: String,
    pub parent: Option<String>,
    pub custom: Map<String, Value>,
    pub properties: Vec<Value>,
    pub comments: Vec<Comment>,
    pub transitions: Vec<String>,
    pub edits: u64,
}

pub struct SimStore {
    projects: Vec<String>,
    issues: Vec<Issue>,
    by_key: HashMap<String, usize>,
    next_id: u64,
    next_number: HashMap<String, u64>,
    requests: BTreeMap<String, u64>,
    pub pages: crate::confluence::Pages,
}

/// `/rest/api/3/issue/OPS-1/comment` → `/rest/api/3/issue/{key}/comment`.
pub fn endpoint_template(path: &str) -> String {
    path.split('/')
        .enumerate()
        .map(|(i, seg)| {
            if (i == 5 && path.starts_with("/rest/api/3/issue/") && seg != "bulk")
                || (i == 5 && path.starts_with("/wiki/api/v2/pages/"))
            {
                "{key}"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The issue key in `/rest/api/3/issue/{key}/…`, if any.
pub fn issue_in_path(path: &str) -> Option<String> {
    path.strip_prefix("/rest/api/3/issue/")
        .and_then(|rest| rest.split('/').next())
        .filter(|k| !k.is_empty() && *k != "bulk")
        .map(str::to_string)
}

fn transitions_of(status: &str) -> Vec<Value> {
    WORKFLOW
        .iter()
        .filter(|(id, _, to)| offered(id, to, status))
        .map(|(id, name, to)| json!({ "id": id, "name": name, "to": { "name": to } }))
        .collect()
}

fn now_iso() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn check_labels(v: &Value) -> Result<Vec<String>, SimError> {
    let Some(items) = v.as_array() else {
        return Err(SimError::Field(
            "labels",
            "Field 'labels' must be an array of strings.".into(),
        ));
    };
    items
        .iter()
        .map(|l| match l.as_str() {
            Some(s) if !s.is_empty() && !s.contains(' ') && s.len() <= 255 => Ok(s.to_string()),
            _ => Err(SimError::Field(
                "labels",
                "The label must not contain spaces.".into(),
            )),
        })
        .collect()
}

fn check_adf(field: &'static str, v: &Value) -> Result<Value, SimError> {
    if v.is_null() || (v["type"] == "doc" && v["content"].is_array()) {
        Ok(v.clone())
    } else {
        Err(SimError::Field(
            field,
            "Operation value must be an Atlassian Document (see the Atlassian Document Format)."
                .into(),
        ))
    }
}

impl SimStore {
    pub fn new(projects: &[String]) -> Self {
        SimStore {
            projects: projects.to_vec(),
            issues: Vec::new(),
            by_key: HashMap::new(),
            next_id: 10000,
            next_number: HashMap::new(),
            requests: BTreeMap::new(),
            pages: Default::default(),
        }
    }

    pub fn count_request(&mut self, endpoint: String) {
        *self.requests.entry(endpoint).or_default() += 1;
    }

    fn issue_mut(&mut self, key: &str) -> Result<&mut Issue, SimError> {
        let i = *self.by_key.get(key).ok_or(SimError::NotFound)?;
        Ok(&mut self.issues[i])
    }

    fn issue(&self, key: &str) -> Result<&Issue, SimError> {
        let i = *self.by_key.get(key).ok_or(SimError::NotFound)?;
        Ok(&self.issues[i])
    }

    pub fn create_issue(&mut self, body: &Value) -> Result<(u64, String), SimError> {
        let fields = body["fields"]
            .as_object()
            .ok_or_else(|| SimError::Message("Request body must contain fields.".into()))?;
        let project = fields
            .get("project")
            .and_then(|p| p["key"].as_str())
            .unwrap_or_default()
            .to_string();
        if !self.projects.contains(&project) {
            return Err(SimError::Field(
                "project",
                "valid project is required".into(),
            ));
        }
        let issue_type = fields
            .get("issuetype")
            .and_then(|t| t["name"].as_str())
            .unwrap_or_default()
            .to_string();
        if !ISSUE_TYPES.contains(&issue_type.as_str()) {
            return Err(SimError::Field(
                "issuetype",
                "valid issue type is required".into(),
            ));
        }
        let summary = fields
            .get("summary")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if summary.trim().is_empty() {
            return Err(SimError::Field(
                "summary",
                "You must specify a summary of the issue.".into(),
            ));
        }
        if summary.chars().count() > 255 {
            return Err(SimError::Field(
                "summary",
                "Summary must be less than 255 characters.".into(),
            ));
        }
        let description = check_adf(
            "description",
            fields.get("description").unwrap_or(&Value::Null),
        )?;
        let labels = match fields.get("labels") {
            Some(v) => check_labels(v)?,
            None => Vec::new(),
        };
        let parent = match fields.get("parent").and_then(|p| p["key"].as_str()) {
            Some(k) => {
                self.issue(k).map_err(|_| {
                    SimError::Field("parent", "Could not find issue by id or key.".into())
                })?;
                Some(k.to_string())
            }
            None if issue_type.starts_with("Sub") => {
                return Err(SimError::Field(
                    "parent",
                    "Given parent work item does not belong to appropriate hierarchy.".into(),
                ));
            }
            None => None,
        };
        let custom: Map<String, Value> = fields
            .iter()
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "project" | "issuetype" | "summary" | "description" | "labels" | "parent"
                )
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let properties = body["properties"].as_array().cloned().unwrap_or_default();

        let id = self.next_id;
        self.next_id += 1;
        let n = self.next_number.entry(project.clone()).or_insert(0);
        *n += 1;
        let key = format!("{project}-{n}");
        self.by_key.insert(key.clone(), self.issues.len());
        self.issues.push(Issue {
            id,
            key: key.clone(),
            project,
            issue_type,
            summary,
            description,
            labels,
            status: "To Do".into(),
            parent,
            custom,
            properties,
            comments: Vec::new(),
            transitions: Vec::new(),
            edits: 0,
        });
        Ok((id, key))
    }

    pub fn edit_issue(&mut self, key: &str, body: &Value) -> Result<(), SimError> {
        let issue = self.issue_mut(key)?;
        if let Some(fields) = body["fields"].as_object() {
            for (k, v) in fields {
                match k.as_str() {
                    "summary" => match v.as_str() {
                        Some(s) if !s.trim().is_empty() && s.chars().count() <= 255 => {
                            issue.summary = s.to_string()
                        }
                        _ => {
                            return Err(SimError::Field(
                                "summary",
                                "You must specify a summary of the issue.".into(),
                            ));
                        }
                    },
                    "description" => issue.description = check_adf("description", v)?,
                    "labels" => issue.labels = check_labels(v)?,
                    "project" | "issuetype" => {
                        return Err(SimError::Field(
                            "project",
                            "Field cannot be set. It is not on the appropriate screen, or unknown."
                                .into(),
                        ));
                    }
                    _ => {
                        issue.custom.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        if let Some(ops) = body["update"]["labels"].as_array() {
            for op in ops {
                if let Some(l) = op["add"].as_str() {
                    check_labels(&json!([l]))?;
                    if !issue.labels.iter().any(|x| x == l) {
                        issue.labels.push(l.to_string());
                    }
                }
                if let Some(l) = op["remove"].as_str() {
                    issue.labels.retain(|x| x != l);
                }
            }
        }
        issue.edits += 1;
        Ok(())
    }

    /// The issue, with the transitions it offers when asked
    /// (`expand=transitions`).
    pub fn issue_json_expanded(&self, key: &str, transitions: bool) -> Result<Value, SimError> {
        let mut v = self.issue_json(key)?;
        if transitions {
            v["transitions"] = json!(transitions_of(&self.issue(key)?.status));
        }
        Ok(v)
    }

    pub fn issue_json(&self, key: &str) -> Result<Value, SimError> {
        let i = self.issue(key)?;
        let mut fields = i.custom.clone();
        fields.insert("summary".into(), json!(i.summary));
        fields.insert("description".into(), i.description.clone());
        fields.insert("labels".into(), json!(i.labels));
        fields.insert("status".into(), json!({ "name": i.status }));
        fields.insert("issuetype".into(), json!({ "name": i.issue_type }));
        fields.insert("project".into(), json!({ "key": i.project }));
        if let Some(p) = &i.parent {
            fields.insert("parent".into(), json!({ "key": p }));
        }
        Ok(
            json!({ "id": i.id.to_string(), "key": i.key, "fields": fields, "properties": i.properties }),
        )
    }

    pub fn add_comment(&mut self, key: &str, body: &Value) -> Result<Value, SimError> {
        let id = self.next_id;
        let issue = self.issue_mut(key)?;
        let doc = &body["body"];
        if doc.is_null() || to_plain_text(doc).trim().is_empty() {
            return Err(SimError::Field(
                "comment",
                "Comment body can not be empty!".into(),
            ));
        }
        let doc = check_adf("comment", doc)?;
        let created = now_iso();
        issue.comments.push(Comment {
            id,
            body: doc.clone(),
            properties: body["properties"].as_array().cloned().unwrap_or_default(),
            created: created.clone(),
        });
        self.next_id += 1;
        Ok(json!({ "id": id.to_string(), "body": doc, "created": created }))
    }

    pub fn comments_json(
        &self,
        key: &str,
        expand_properties: bool,
        newest_first: bool,
        start: usize,
        max: usize,
    ) -> Result<Value, SimError> {
        let issue = self.issue(key)?;
        let mut list: Vec<&Comment> = issue.comments.iter().collect();
        if newest_first {
            list.reverse();
        }
        let comments: Vec<Value> = list
            .into_iter()
            .skip(start)
            .take(max)
            .map(|c| {
                let mut v = json!({ "id": c.id.to_string(), "body": c.body, "created": c.created });
                if expand_properties {
                    v["properties"] = json!(c.properties);
                }
                v
            })
            .collect();
        Ok(
            json!({ "startAt": start, "maxResults": max, "total": issue.comments.len(), "comments": comments }),
        )
    }

    pub fn transitions_json(&self, key: &str) -> Result<Value, SimError> {
        let issue = self.issue(key)?;
        Ok(json!({ "expand": "transitions", "transitions": transitions_of(&issue.status) }))
    }

    pub fn transition(&mut self, key: &str, body: &Value) -> Result<(), SimError> {
        let issue = self.issue_mut(key)?;
        let id = body["transition"]["id"].as_str().unwrap_or_default();
        let Some((_, _, to)) = WORKFLOW
            .iter()
            .find(|(tid, _, to)| *tid == id && offered(tid, to, &issue.status))
        else {
            return Err(SimError::Message(format!(
                "Transition id '{id}' is not valid for this issue."
            )));
        };
        issue.status = to.to_string();
        issue.transitions.push(to.to_string());
        Ok(())
    }

    pub fn search(&self, query: &str, max: usize) -> Result<Value, SimError> {
        let q = jql::parse(query)
            .map_err(|e| SimError::Message(format!("Error in the JQL Query: {e}")))?;
        let mut hits: Vec<&Issue> = self
            .issues
            .iter()
            .filter(|i| q.matches(&i.project, &i.labels, &i.status))
            .collect();
        if q.newest_first {
            hits.reverse();
        }
        let issues: Vec<Value> = hits
            .into_iter()
            .take(max.clamp(1, 5000))
            .map(|i| json!({ "id": i.id.to_string(), "key": i.key, "fields": { "summary": i.summary, "labels": i.labels, "status": { "name": i.status } } }))
            .collect();
        Ok(json!({ "issues": issues, "isLast": true }))
    }

    pub fn report(&self) -> Value {
        let mut by_label: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut duplicate_comments = Vec::new();
        for i in &self.issues {
            for l in i.labels.iter().filter(|l| l.starts_with("tollgate-")) {
                by_label.entry(l).or_default().push(&i.key);
            }
            let mut markers: BTreeMap<String, u32> = BTreeMap::new();
            for c in &i.comments {
                for p in c.properties.iter().filter(|p| p["key"] == "tollgate") {
                    *markers.entry(p["value"]["marker"].to_string()).or_default() += 1;
                }
            }
            for (marker, n) in markers.into_iter().filter(|(_, n)| *n > 1) {
                duplicate_comments.push(json!({ "issue": i.key, "marker": marker, "count": n }));
            }
        }
        let duplicates: Vec<Value> = by_label
            .into_iter()
            .filter(|(_, keys)| keys.len() > 1)
            .map(|(label, keys)| json!({ "label": label, "issues": keys }))
            .collect();
        let issues: Vec<Value> = self
            .issues
            .iter()
            .map(|i| {
                json!({
                    "key": i.key,
                    "issueType": i.issue_type,
                    "summary": i.summary,
                    "status": i.status,
                    "labels": i.labels,
                    "parent": i.parent,
                    "fields": i.custom,
                    "edits": i.edits,
                    "transitions": i.transitions,
                    "comments": i.comments.iter().map(|c| to_plain_text(&c.body)).collect::<Vec<_>>(),
                })
            })
            .collect();
        let total_requests: u64 = self.requests.values().sum();
        let (pages, duplicate_page_comments) = self.pages.report();
        json!({
            "totals": {
                "issues": self.issues.len(),
                "comments": self.issues.iter().map(|i| i.comments.len()).sum::<usize>(),
                "transitions": self.issues.iter().map(|i| i.transitions.len()).sum::<usize>(),
                "edits": self.issues.iter().map(|i| i.edits).sum::<u64>(),
                "requests": total_requests,
                "duplicateIssues": duplicates.iter().map(|d| d["issues"].as_array().map_or(0, |a| a.len() - 1)).sum::<usize>(),
                "duplicateComments": duplicate_comments.len(),
                "pages": pages.as_array().map_or(0, Vec::len),
                "pageComments": pages.as_array().into_iter().flatten().map(|p| p["comments"].as_array().map_or(0, Vec::len)).sum::<usize>(),
                "duplicatePageComments": duplicate_page_comments,
            },
            "pages": pages,
            "requestsByEndpoint": self.requests,
            "duplicates": duplicates,
            "duplicateComments": duplicate_comments,
            "issues": issues,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_templates_hide_issue_keys() {
        assert_eq!(
            endpoint_template("/rest/api/3/issue/OPS-1/comment"),
            "/rest/api/3/issue/{key}/comment"
        );
        assert_eq!(endpoint_template("/rest/api/3/issue"), "/rest/api/3/issue");
        assert_eq!(
            endpoint_template("/rest/api/3/search/jql"),
            "/rest/api/3/search/jql"
        );
    }
}
