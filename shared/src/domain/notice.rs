//! What tollgate tells people, whatever the channel (Slack, a webhook).
//! Serialised with its `type`, the generic webhook's body as it is.

use super::approval::ApprovalNotice;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum Notice {
    #[serde(rename = "approval.requested")]
    ApprovalRequested(ApprovalNotice),
    #[serde(rename = "job.exhausted")]
    JobExhausted(ExhaustedNotice),
    #[serde(rename = "site.health")]
    SiteHealth(HealthNotice),
}

/// A Jira site entered or left degraded mode.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthNotice {
    pub site: String,
    pub degraded: bool,
    pub why: String,
    pub at: String,
}

/// A job spent its retry budget.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExhaustedNotice {
    pub job_id: String,
    pub operation: String,
    pub source_system: String,
    pub external_id: String,
    pub issue_key: Option<String>,
    pub last_error: Option<String>,
    /// When it is re-run automatically, if it will be.
    pub rerun_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_serialises_flat_with_its_type() {
        let n = Notice::JobExhausted(ExhaustedNotice {
            job_id: "j".into(),
            operation: "create".into(),
            source_system: "cmdb".into(),
            external_id: "ci-1".into(),
            issue_key: None,
            last_error: Some("throttled by Jira".into()),
            rerun_at: None,
        });
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(v["type"], "job.exhausted");
        assert_eq!(v["sourceSystem"], "cmdb");
    }
}
