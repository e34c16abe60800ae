//! Audit entries: one per stage a job passes, so an operator can answer
//! "what did tollgate do with this event, and why" from the job alone.

use super::job::JobState;
use super::time::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Validation,
    Dedup,
    Approval,
    Queue,
    Lease,
    Jira,
    Reconcile,
    Outcome,
}

/// A summary of one Jira response, enough to explain a wait or a failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ResponseSummary {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub at: String,
    pub stage: Stage,
    pub outcome: String,
    pub actor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<JobState>,
    /// What tollgate is about to change in Jira, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<ResponseSummary>,
}

impl AuditEntry {
    pub fn new(at: Timestamp, stage: Stage, actor: &str, outcome: impl Into<String>) -> Self {
        AuditEntry {
            at: at.to_rfc3339(),
            stage,
            outcome: outcome.into(),
            actor: actor.to_string(),
            state: None,
            intent: None,
            response: None,
        }
    }

    pub fn state(mut self, state: JobState) -> Self {
        self.state = Some(state);
        self
    }

    pub fn intent(mut self, intent: impl Into<String>) -> Self {
        self.intent = Some(intent.into());
        self
    }

    pub fn response(mut self, response: ResponseSummary) -> Self {
        self.response = Some(response);
        self
    }
}
