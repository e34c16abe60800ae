//! The approval policy: which events run at once and which wait for a person.
//!
//! A policy is a TOML document. Rules are tried in order and the first that
//! matches decides; when none does, the built-in rules apply: transitions and
//! edits of sensitive fields (security levels, permission-like fields) need
//! approval, everything else — comments, creates, low-risk field updates —
//! runs at once. With no approvers configured nothing can be approved, so
//! nothing waits: the built-in rules only gate work when someone can decide.
//!
//! ```toml
//! approvers = ["lead@example.com"]
//! expiry_minutes = 1440
//! sensitive_fields = ["security", "customfield_10050"]
//! # More creates than this from one source in one window wait (a storm
//! # guard, checked before the rules).
//! mass_create = { max = 50, window_minutes = 10 }
//! # A batch request with more items than `over` waits for approval, one
//! # request per `chunk` items (each chunk decided on its own).
//! batch_approval = { over = 500, chunk = 250 }
//!
//! [[rules]]
//! name = "cmdb closes its own issues"
//! sources = ["cmdb"]
//! operations = ["transition"]
//! decision = "approve"
//! ```

use super::event::{Event, Operation, OperationKind};
use super::ids::SourceSystem;
use super::time::Timestamp;
use serde::Deserialize;
use std::time::Duration;

/// Fields that change who may see or act on an issue.
pub const DEFAULT_SENSITIVE_FIELDS: [&str; 3] = ["security", "reporter", "assignee"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleDecision {
    Approve,
    Require,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    #[serde(default)]
    pub operations: Vec<OperationKind>,
    #[serde(default)]
    pub projects: Vec<String>,
    #[serde(default)]
    pub sources: Vec<String>,
    /// Matches when the event sets any of these fields.
    #[serde(default)]
    pub fields: Vec<String>,
    pub decision: RuleDecision,
    /// Who may decide; the policy's `approvers` when empty.
    #[serde(default)]
    pub approvers: Vec<String>,
}

/// Large batches wait for a person, a chunk at a time: a request with more
/// than `over` items asks once per `chunk` items, so an approver can let a
/// sync through part by part (and a denied chunk leaves the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchApproval {
    pub over: usize,
    pub chunk: usize,
}

impl BatchApproval {
    /// The chunk sizes of a request of `items` items that needs approval,
    /// in order; empty when it does not.
    pub fn chunks(&self, items: usize) -> Vec<usize> {
        if items <= self.over {
            return Vec::new();
        }
        let chunk = self.chunk.max(1);
        (0..items)
            .step_by(chunk)
            .map(|start| chunk.min(items - start))
            .collect()
    }
}

/// The storm guard: creates beyond `max` from one source system within one
/// window of `window_minutes` (fixed windows) wait for approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MassCreate {
    pub max: u64,
    pub window_minutes: u64,
}

impl MassCreate {
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window_minutes * 60)
    }

    /// Which fixed window `now` falls in.
    pub fn window_index(&self, now: Timestamp) -> i64 {
        now.0
            .div_euclid((self.window_minutes.max(1) * 60_000) as i64)
    }

    /// The counter that tallies a source's creates.
    pub fn counter_key(source: &SourceSystem) -> String {
        format!("creates/{source}")
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub approvers: Vec<String>,
    #[serde(default = "default_expiry_minutes")]
    pub expiry_minutes: u64,
    #[serde(default = "default_sensitive")]
    pub sensitive_fields: Vec<String>,
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub mass_create: Option<MassCreate>,
    #[serde(default)]
    pub batch_approval: Option<BatchApproval>,
}

fn default_expiry_minutes() -> u64 {
    24 * 60
}

fn default_sensitive() -> Vec<String> {
    DEFAULT_SENSITIVE_FIELDS.map(String::from).to_vec()
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            approvers: Vec::new(),
            expiry_minutes: default_expiry_minutes(),
            sensitive_fields: default_sensitive(),
            rules: Vec::new(),
            mass_create: None,
            batch_approval: None,
        }
    }
}

/// What the policy says about one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyDecision {
    Run {
        rule: String,
    },
    NeedsApproval {
        rule: String,
        approvers: Vec<String>,
        expiry: Duration,
    },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    #[error("the policy is not valid TOML for tollgate: {0}")]
    Parse(String),
    #[error("rule {rule:?} requires approval but names no approvers, and the policy has none")]
    NoApprovers { rule: String },
    #[error("expiry_minutes must be between 1 and 43200 (30 days), not {0}")]
    Expiry(u64),
    #[error("mass_create needs approvers, a max of at least 1 and a window of 1 to 1440 minutes")]
    MassCreate,
    #[error("batch_approval needs approvers and a chunk of 1 to 10000 items")]
    BatchApproval,
    #[error(
        "approver {0:?} is not a usable identity (1 to 200 printable characters, not starting with \"tollgate:\")"
    )]
    Approver(String),
}

/// The fields an event sets, by Jira field name.
fn fields_touched(event: &Event) -> Vec<&str> {
    match &event.operation {
        Operation::Create(n) | Operation::Upsert(n) => {
            n.fields.keys().map(String::as_str).collect()
        }
        Operation::Update(e) => {
            let mut names: Vec<&str> = e.fields.keys().map(String::as_str).collect();
            if e.summary.is_some() {
                names.push("summary");
            }
            if e.description.is_some() {
                names.push("description");
            }
            if e.labels.is_some() {
                names.push("labels");
            }
            names
        }
        Operation::Comment { .. }
        | Operation::Transition { .. }
        | Operation::PageComment { .. }
        | Operation::CreatePage(_) => Vec::new(),
    }
}

/// The project the event acts in, when it can be told from the event.
fn project(event: &Event) -> Option<&str> {
    match &event.operation {
        Operation::Create(n) | Operation::Upsert(n) => Some(n.project_key.as_str()),
        _ => event.issue_key.as_ref().map(|k| k.project()),
    }
}

impl Rule {
    fn matches(&self, event: &Event) -> bool {
        let kind = event.operation.kind();
        let touched = fields_touched(event);
        (self.operations.is_empty() || self.operations.contains(&kind))
            && (self.sources.is_empty()
                || self
                    .sources
                    .iter()
                    .any(|s| s == event.source_system.as_str()))
            && (self.projects.is_empty()
                || project(event).is_some_and(|p| self.projects.iter().any(|x| x == p)))
            && (self.fields.is_empty() || self.fields.iter().any(|f| touched.contains(&f.as_str())))
    }
}

fn valid_identity(s: &str) -> bool {
    (1..=200).contains(&s.chars().count())
        && !s.chars().any(char::is_control)
        && !s.starts_with("tollgate:")
}

impl Policy {
    pub fn parse(toml_text: &str) -> Result<Self, PolicyError> {
        let policy: Policy =
            toml::from_str(toml_text).map_err(|e| PolicyError::Parse(e.to_string()))?;
        policy.check()?;
        Ok(policy)
    }

    /// The policy with `approvers` (comma-separated, as a flag or an
    /// environment variable gives them) when it names none of its own.
    pub fn with_default_approvers(mut self, approvers: Option<&str>) -> Result<Self, PolicyError> {
        if self.approvers.is_empty()
            && let Some(list) = approvers
        {
            self.approvers = list
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(String::from)
                .collect();
            self.check()?;
        }
        Ok(self)
    }

    /// Every rule that can require approval has someone to ask.
    pub fn check(&self) -> Result<(), PolicyError> {
        if !(1..=43_200).contains(&self.expiry_minutes) {
            return Err(PolicyError::Expiry(self.expiry_minutes));
        }
        for a in self
            .approvers
            .iter()
            .chain(self.rules.iter().flat_map(|r| &r.approvers))
        {
            if !valid_identity(a) {
                return Err(PolicyError::Approver(a.clone()));
            }
        }
        if let Some(m) = &self.mass_create
            && (self.approvers.is_empty() || m.max == 0 || !(1..=1440).contains(&m.window_minutes))
        {
            return Err(PolicyError::MassCreate);
        }
        if let Some(b) = &self.batch_approval
            && (self.approvers.is_empty() || !(1..=10_000).contains(&b.chunk))
        {
            return Err(PolicyError::BatchApproval);
        }
        for r in &self.rules {
            if r.decision == RuleDecision::Require
                && r.approvers.is_empty()
                && self.approvers.is_empty()
            {
                return Err(PolicyError::NoApprovers {
                    rule: r.name.clone(),
                });
            }
        }
        Ok(())
    }

    fn expiry(&self) -> Duration {
        Duration::from_secs(self.expiry_minutes * 60)
    }

    /// Decides for `event`; `recent_creates` is how many creates its source
    /// made in the current mass-create window before it (0 when unguarded).
    pub fn decide(&self, event: &Event, recent_creates: u64) -> PolicyDecision {
        let require = |rule: &str, approvers: &[String]| PolicyDecision::NeedsApproval {
            rule: rule.to_string(),
            approvers: if approvers.is_empty() {
                self.approvers.clone()
            } else {
                approvers.to_vec()
            },
            expiry: self.expiry(),
        };
        if let Some(m) = &self.mass_create
            && event.operation.kind().creates()
            && recent_creates >= m.max
        {
            return require(
                &format!(
                    "built-in: more than {} creates from {} within {} min",
                    m.max, event.source_system, m.window_minutes
                ),
                &[],
            );
        }
        if let Some(rule) = self.rules.iter().find(|r| r.matches(event)) {
            return match rule.decision {
                RuleDecision::Approve => PolicyDecision::Run {
                    rule: rule.name.clone(),
                },
                RuleDecision::Require => require(&rule.name, &rule.approvers),
            };
        }
        if self.approvers.is_empty() {
            return PolicyDecision::Run {
                rule: "built-in: no approvers configured".into(),
            };
        }
        if event.operation.kind() == OperationKind::Transition {
            return require("built-in: transitions need approval", &[]);
        }
        let touched = fields_touched(event);
        if let Some(f) = self
            .sensitive_fields
            .iter()
            .find(|f| touched.contains(&f.as_str()))
        {
            return require(&format!("built-in: sensitive field {f}"), &[]);
        }
        PolicyDecision::Run {
            rule: "built-in: low-risk work runs at once".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::validation::validate_event;
    use serde_json::json;

    fn event(v: serde_json::Value) -> Event {
        validate_event(&v).unwrap()
    }

    fn create(source: &str, project: &str) -> Event {
        event(
            json!({"sourceSystem": source, "externalId": "x", "desiredOperation": "create",
                     "projectKey": project, "issueType": "Task", "summary": "s"}),
        )
    }

    fn transition(source: &str, issue: &str) -> Event {
        event(
            json!({"sourceSystem": source, "externalId": "x", "desiredOperation": "transition",
                     "issueKey": issue, "transition": "Done"}),
        )
    }

    fn update(fields: serde_json::Value) -> Event {
        event(
            json!({"sourceSystem": "itsm", "externalId": "x", "desiredOperation": "update",
                     "issueKey": "OPS-1", "fields": fields}),
        )
    }

    fn comment() -> Event {
        event(
            json!({"sourceSystem": "itsm", "externalId": "x", "desiredOperation": "comment",
                     "comment": "hi"}),
        )
    }

    fn needs(d: &PolicyDecision) -> Option<&[String]> {
        match d {
            PolicyDecision::NeedsApproval { approvers, .. } => Some(approvers),
            PolicyDecision::Run { .. } => None,
        }
    }

    #[test]
    fn a_batch_over_the_threshold_is_asked_for_chunk_by_chunk() {
        let b = BatchApproval {
            over: 500,
            chunk: 200,
        };
        assert!(b.chunks(500).is_empty());
        assert_eq!(b.chunks(501), [200, 200, 101]);
        assert_eq!(b.chunks(600), [200, 200, 200]);
        let p = Policy::parse("batch_approval = { over = 10, chunk = 5 }");
        assert_eq!(p, Err(PolicyError::BatchApproval), "nobody to ask");
        let p = Policy::parse(
            "approvers = [\"lead@example.com\"]\nbatch_approval = { over = 10, chunk = 5 }",
        )
        .unwrap();
        assert_eq!(p.batch_approval.unwrap().chunks(11), [5, 5, 1]);
    }

    #[test]
    fn the_built_in_policy_decides_by_risk_once_approvers_exist() {
        let p = Policy {
            approvers: vec!["lead@example.com".into()],
            ..Policy::default()
        };
        let table: [(Event, bool); 6] = [
            (create("alertmanager", "OPS"), false),
            (comment(), false),
            (update(json!({"priority": {"name": "High"}})), false),
            (transition("itsm", "OPS-1"), true),
            (update(json!({"security": {"id": "10001"}})), true),
            (update(json!({"assignee": {"accountId": "5b10"}})), true),
        ];
        for (e, gated) in table {
            assert_eq!(needs(&p.decide(&e, 0)).is_some(), gated, "{e:?}");
        }
    }

    #[test]
    fn without_approvers_nothing_waits() {
        assert_eq!(
            needs(&Policy::default().decide(&transition("itsm", "OPS-1"), 0)),
            None
        );
    }

    #[test]
    fn the_first_matching_rule_wins_and_names_its_approvers() {
        let p = Policy::parse(
            r#"
            approvers = ["lead@example.com"]
            [[rules]]
            name = "cmdb may close"
            sources = ["cmdb"]
            operations = ["transition"]
            decision = "approve"
            [[rules]]
            name = "security project"
            projects = ["SEC"]
            decision = "require"
            approvers = ["ciso@example.com"]
            "#,
        )
        .unwrap();
        assert_eq!(
            p.decide(&transition("cmdb", "OPS-1"), 0),
            PolicyDecision::Run {
                rule: "cmdb may close".into()
            }
        );
        assert_eq!(
            needs(&p.decide(&create("alertmanager", "SEC"), 0)),
            Some(&["ciso@example.com".to_string()][..])
        );
        assert_eq!(
            needs(&p.decide(&transition("itsm", "SEC-4"), 0)),
            Some(&["ciso@example.com".to_string()][..]),
            "a transition in SEC matches the SEC rule before the built-in one"
        );
        assert_eq!(
            needs(&p.decide(&transition("itsm", "OPS-4"), 0)),
            Some(&["lead@example.com".to_string()][..])
        );
    }

    #[test]
    fn rules_can_match_on_fields() {
        let p = Policy::parse(
            r#"
            approvers = ["a"]
            [[rules]]
            name = "budget"
            fields = ["customfield_10050"]
            decision = "require"
            "#,
        )
        .unwrap();
        assert!(needs(&p.decide(&update(json!({"customfield_10050": 5})), 0)).is_some());
        assert!(needs(&p.decide(&update(json!({"customfield_1": 5})), 0)).is_none());
    }

    #[test]
    fn a_storm_of_creates_from_one_source_waits_beyond_the_limit() {
        let p = Policy::parse(
            r#"
            approvers = ["lead@example.com"]
            mass_create = { max = 3, window_minutes = 10 }
            [[rules]]
            name = "alerts run"
            sources = ["alertmanager"]
            decision = "approve"
            "#,
        )
        .unwrap();
        let e = create("alertmanager", "OPS");
        assert!(needs(&p.decide(&e, 2)).is_none(), "the third create runs");
        let d = p.decide(&e, 3);
        assert!(needs(&d).is_some(), "the fourth waits, before any rule");
        assert!(
            matches!(d, PolicyDecision::NeedsApproval { ref rule, .. } if rule.contains("more than 3 creates"))
        );
        assert!(
            needs(&p.decide(&comment(), 100)).is_none(),
            "only creates count"
        );
        let m = p.mass_create.unwrap();
        assert_eq!(m.window_index(Timestamp(599_999)), 0);
        assert_eq!(m.window_index(Timestamp(600_000)), 1);
    }

    #[test]
    fn a_storm_guard_needs_approvers() {
        assert_eq!(
            Policy::parse("mass_create = { max = 3, window_minutes = 10 }").unwrap_err(),
            PolicyError::MassCreate
        );
    }

    #[test]
    fn a_rule_that_cannot_be_approved_by_anyone_is_refused() {
        let e = Policy::parse(
            r#"
            [[rules]]
            name = "nobody"
            decision = "require"
            "#,
        )
        .unwrap_err();
        assert_eq!(
            e,
            PolicyError::NoApprovers {
                rule: "nobody".into()
            }
        );
    }

    #[test]
    fn approvers_given_apart_apply_only_to_a_policy_without_its_own() {
        let p = Policy::default()
            .with_default_approvers(Some(" a@x , b@x,"))
            .unwrap();
        assert_eq!(p.approvers, ["a@x", "b@x"]);
        let own = Policy::parse("approvers = [\"c@x\"]").unwrap();
        assert_eq!(
            own.with_default_approvers(Some("a@x")).unwrap().approvers,
            ["c@x"]
        );
        assert!(
            Policy::default()
                .with_default_approvers(Some("tollgate:x"))
                .is_err()
        );
    }

    #[test]
    fn unknown_keys_and_bad_expiry_are_named() {
        let e = Policy::parse("approver = [\"a\"]").unwrap_err().to_string();
        assert!(e.contains("approver"), "{e}");
        assert_eq!(
            Policy::parse("expiry_minutes = 0").unwrap_err(),
            PolicyError::Expiry(0)
        );
    }
}
