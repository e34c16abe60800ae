//! Batches: their records, pages admitted, pauses.

use super::*;

/// Batches (bulk sync runs). The paused flag is kept apart from the rest of
/// the record, so a re-posted batch never un-pauses it.
pub trait BatchStore: Send + Sync {
    /// Creates the record unless the batch exists; the stored record either
    /// way (a re-post keeps its counts and its paused flag).
    fn open_batch(
        &self,
        b: &BatchRecord,
    ) -> impl Future<Output = Result<BatchRecord, StoreError>> + Send;

    /// The newest batches' ids, newest first (`tollgate batches list`).
    fn recent_batches(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<BatchId>, StoreError>> + Send;

    /// The record, with its first [`crate::domain::batch::MAX_LISTED_REJECTED`]
    /// rejected items by index and the number of all of them.
    fn batch(
        &self,
        id: &BatchId,
    ) -> impl Future<Output = Result<Option<BatchRecord>, StoreError>> + Send;

    /// Sets the paused flag; false when there is no such batch.
    fn set_batch_paused(
        &self,
        id: &BatchId,
        paused: bool,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The batch's jobs, as progress counts them.
    fn batch_jobs(
        &self,
        id: &BatchId,
    ) -> impl Future<Output = Result<Vec<JobSummary>, StoreError>> + Send;

    /// Stores a post's pages, then its admission record, unless the post
    /// is stored already (the same body posted again). True when new.
    fn store_post(
        &self,
        admission: &AdmissionRecord,
        pages: &[BatchPage],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    fn admission(
        &self,
        batch: &BatchId,
        post: &PostId,
    ) -> impl Future<Output = Result<Option<AdmissionRecord>, StoreError>> + Send;

    fn page(
        &self,
        batch: &BatchId,
        post: &PostId,
        number: u32,
    ) -> impl Future<Output = Result<Option<BatchPage>, StoreError>> + Send;

    /// Lists rejected items under their batch, one per index (writing one
    /// again changes nothing but its rejection id).
    fn note_rejected(
        &self,
        batch: &BatchId,
        items: &[RejectedItem],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Moves the post's cursor past `page` and adds the page's tally to its
    /// batch's counts, in one write; false, changing nothing, when the
    /// cursor is no longer at `page` (another admitter moved it).
    fn advance_admission(
        &self,
        batch: &BatchId,
        post: &PostId,
        page: u32,
        tally: &Tally,
        at: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Unfinished admissions that have not moved since `before`, oldest
    /// first: their continuation was lost, and the sweep resumes them.
    fn stalled_admissions(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<AdmissionRecord>, StoreError>> + Send;
}
