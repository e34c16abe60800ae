//! The v1 event contract as types: an operation carries exactly the data it
//! needs, so a `comment` without text or a `create` without a project cannot
//! be built. Parsing and validation live in [`super::validation`].

use super::ids::{ExternalId, IssueKey, PageId, ProjectKey, SourceSystem, SpaceId};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub source_system: SourceSystem,
    pub external_id: ExternalId,
    /// `issueKey`: the issue to act on; when absent, the issue tollgate created
    /// earlier for the same source system and external id.
    pub issue_key: Option<IssueKey>,
    pub priority: Priority,
    pub operation: Operation,
    /// `ifNoIssue`: what an update, comment or transition by external id
    /// means when its entity has no issue.
    pub if_no_issue: IfNoIssue,
}

/// What follow-up work means when the issue it follows up was never
/// created (an alert resolved that tollgate never saw firing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IfNoIssue {
    /// Wait for the create to arrive (senders deliver out of order), up to
    /// the target wait, then fail for want of a target.
    #[default]
    Wait,
    /// Look for the issue in Jira once, by the entity's label (made before
    /// tollgate, or by another instance); if there is none, there is
    /// nothing to do: the job succeeds saying so.
    Skip,
}

impl IfNoIssue {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "wait" => Some(IfNoIssue::Wait),
            "skip" => Some(IfNoIssue::Skip),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    Create(NewIssue),
    /// Create when no issue is mapped to the event's external id, else one
    /// composed edit of the mapped issue.
    Upsert(NewIssue),
    Update(IssueEdit),
    Comment {
        text: String,
    },
    Transition {
        name: String,
        comment: Option<String>,
    },
    /// A footer comment on a Confluence page.
    PageComment {
        page_id: PageId,
        text: String,
    },
    /// A new Confluence page.
    CreatePage(NewPage),
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewPage {
    pub space_id: SpaceId,
    pub title: String,
    /// Plain text; converted to storage format.
    pub body: String,
    pub parent_id: Option<PageId>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewIssue {
    pub project_key: ProjectKey,
    pub issue_type: String,
    pub summary: String,
    pub description: Option<String>,
    pub labels: Vec<String>,
    pub fields: serde_json::Map<String, serde_json::Value>,
    pub comment: Option<String>,
    pub children: Vec<ChildIssue>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChildIssue {
    pub issue_type: String,
    pub summary: String,
    pub description: Option<String>,
}

/// The fields an `update` changes; at least one is present.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IssueEdit {
    pub summary: Option<String>,
    pub description: Option<String>,
    pub labels: Option<Vec<String>>,
    pub fields: serde_json::Map<String, serde_json::Value>,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OperationKind {
    Create,
    Upsert,
    Update,
    Comment,
    Transition,
    #[serde(rename = "pageComment")]
    PageComment,
    #[serde(rename = "createPage")]
    CreatePage,
}

/// `interactive` work (a person is waiting on it) overtakes `bulk` work.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    #[default]
    Interactive,
    Bulk,
}

impl Operation {
    pub fn kind(&self) -> OperationKind {
        match self {
            Operation::Create(_) => OperationKind::Create,
            Operation::Upsert(_) => OperationKind::Upsert,
            Operation::Update(_) => OperationKind::Update,
            Operation::Comment { .. } => OperationKind::Comment,
            Operation::Transition { .. } => OperationKind::Transition,
            Operation::PageComment { .. } => OperationKind::PageComment,
            Operation::CreatePage(_) => OperationKind::CreatePage,
        }
    }
}

impl OperationKind {
    pub const ALL: [OperationKind; 7] = [
        OperationKind::Create,
        OperationKind::Upsert,
        OperationKind::Update,
        OperationKind::Comment,
        OperationKind::Transition,
        OperationKind::PageComment,
        OperationKind::CreatePage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Create => "create",
            OperationKind::Upsert => "upsert",
            OperationKind::Update => "update",
            OperationKind::Comment => "comment",
            OperationKind::Transition => "transition",
            OperationKind::PageComment => "pageComment",
            OperationKind::CreatePage => "createPage",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Operations whose newer revision replaces an older one not yet run
    /// (the newest field values win); comments and transitions are each
    /// carried out.
    pub fn revisable(self) -> bool {
        matches!(self, OperationKind::Update | OperationKind::Upsert)
    }

    /// Operations on Confluence pages rather than Jira issues: they have no
    /// issue to find or wait for.
    pub fn confluence(self) -> bool {
        matches!(self, OperationKind::PageComment | OperationKind::CreatePage)
    }

    /// Operations that may create an issue, and so own the external id's
    /// mapping to an issue key.
    pub fn creates(self) -> bool {
        matches!(self, OperationKind::Create | OperationKind::Upsert)
    }
}

impl fmt::Display for OperationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Interactive => "interactive",
            Priority::Bulk => "bulk",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "interactive" => Some(Priority::Interactive),
            "bulk" => Some(Priority::Bulk),
            _ => None,
        }
    }
}
