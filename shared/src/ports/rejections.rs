//! The manual queue of rejected events.

use super::*;

/// The manual queue of rejected events.
pub trait RejectionStore: Send + Sync {
    /// Keeps the rejection; one whose id is kept already stays as it is
    /// (the same batch item posted again). True when newly kept.
    fn keep_rejection(
        &self,
        r: &Rejection,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    fn rejection(
        &self,
        id: &RejectionId,
    ) -> impl Future<Output = Result<Option<Rejection>, StoreError>> + Send;

    /// Newest first.
    fn rejections(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Rejection>, StoreError>> + Send;

    /// Records the job a re-submission created; false if it was re-submitted
    /// or discarded already (once).
    fn mark_resubmitted(
        &self,
        id: &RejectionId,
        job: &JobId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records that an operator discarded it; false if it was re-submitted
    /// or discarded already.
    fn discard_rejection(
        &self,
        id: &RejectionId,
        discarded: &Discarded,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}
