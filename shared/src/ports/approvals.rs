//! Approval requests: created with the jobs they hold, decided once.

use super::*;

/// Approval requests. A decision is written once: the first of racing
/// deciders wins, the others see the winner's decision.
pub trait ApprovalStore: Send + Sync {
    /// Creating a request that exists changes nothing (a batch chunk's
    /// request is derived from its page, and made again if the page is).
    fn create_approval(
        &self,
        approval: &ApprovalRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn approval(
        &self,
        id: &ApprovalId,
    ) -> impl Future<Output = Result<Option<ApprovalRecord>, StoreError>> + Send;

    /// The approval for a job, if it waited for one.
    fn approval_for_job(
        &self,
        job: &JobId,
    ) -> impl Future<Output = Result<Option<ApprovalRecord>, StoreError>> + Send;

    /// Records a person's decision unless one exists and while the request
    /// has not expired (`decided.at` before its expiry); true when this call
    /// decided.
    fn decide(
        &self,
        id: &ApprovalId,
        decided: &Decided,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Closes the request as expired unless it was decided, and only once
    /// its expiry has passed (`closed.at`): a decision and the expiry
    /// exclude each other. True when this call closed it.
    fn close_expired(
        &self,
        id: &ApprovalId,
        closed: &Decided,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    fn mark_notified(&self, id: &ApprovalId)
    -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Undecided approvals, oldest first (for operators, the expiry sweep
    /// and notification retries).
    fn open_approvals(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ApprovalRecord>, StoreError>> + Send {
        self.open_approvals_after(None, limit)
    }

    /// The next page of undecided approvals: oldest first, after `after`
    /// (by request time, then id).
    fn open_approvals_after(
        &self,
        after: Option<&ApprovalRecord>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ApprovalRecord>, StoreError>> + Send;

    /// Every job the request's decision (or expiry) covers has moved: it
    /// leaves the list the sweep settles.
    fn mark_applied(&self, id: &ApprovalId) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Decided or expired requests whose jobs may not all have moved yet
    /// (the decider stopped partway), oldest decision first.
    fn unapplied_approvals(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ApprovalRecord>, StoreError>> + Send;
}
