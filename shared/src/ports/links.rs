//! Links: which Jira issue an entity's work lives in, and field revisions.

use super::*;

/// Which issue a source system's entity owns, and which job creates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub creator: JobId,
    pub issue_key: Option<IssueKey>,
}

pub trait LinkStore: Send + Sync {
    fn link(&self, id: &LinkId) -> impl Future<Output = Result<Option<Link>, StoreError>> + Send;

    /// Makes `creator` the creator unless the link exists; returns the link
    /// as it stands after the call.
    fn claim_link(
        &self,
        id: &LinkId,
        creator: &JobId,
    ) -> impl Future<Output = Result<Link, StoreError>> + Send;

    /// Hands an unfinished claim from a job that ended without creating the
    /// issue to `to`. False when the claim changed meanwhile.
    fn take_over_link(
        &self,
        id: &LinkId,
        from: &JobId,
        to: &JobId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records the created issue; only the creator may, and only while it
    /// holds the entity's lease with `fence`'s token. False when refused.
    fn set_link_issue(
        &self,
        id: &LinkId,
        creator: &JobId,
        issue: &IssueKey,
        fence: &Fence,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The newest revision (the admitting job's id: ids sort by admission)
    /// applied to each field of the entity's issue.
    fn field_revisions(
        &self,
        id: &LinkId,
    ) -> impl Future<Output = Result<FieldRevisions, StoreError>> + Send;

    /// Raises the applied revision of each named field (never lowers one),
    /// while `fence`'s token still holds the entity's lease. False when
    /// refused.
    fn record_revisions(
        &self,
        id: &LinkId,
        revisions: &FieldRevisions,
        fence: &Fence,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// Field name → the revision (job id) whose value Jira holds.
pub type FieldRevisions = std::collections::BTreeMap<String, JobId>;
