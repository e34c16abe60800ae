//! Batches: take a bulk sync run of any size, report its progress, pause
//! and resume it. A request is checked and stored as pages at once; the
//! pages are admitted in order (see [`super::admission`]), each item an
//! ordinary job (deduplicated, policy-checked, coalesced and bulk-created
//! like any other) that remembers its batch; a bad item is kept in the
//! manual queue under its index and never stops the others.

use super::AppError;
use super::api::{self, HttpAnswer};
use super::ingest::Ingest;
use crate::domain::admission::{AdmissionRecord, BatchPage, PAGE_ITEMS, PostId, Tally, paginate};
use crate::domain::batch::{
    BatchRecord, MAX_BATCH_BYTES, Progress, item_errors, parse_batch, progress,
};
use crate::domain::ids::BatchId;
use crate::domain::rejection::RejectionId;
use crate::domain::signature::{self, SignatureError};
use crate::domain::time::Timestamp;
use crate::domain::validation::FieldError;
use crate::ports::{BatchStore, Clock, IngestStore, WorkQueue};

/// An item the request's validation refused: kept in the manual queue
/// under its index.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedInRequest {
    pub index: u32,
    pub errors: Vec<FieldError>,
    pub rejection: RejectionId,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BatchOutcome {
    Accepted {
        batch: Box<BatchRecord>,
        /// Where the request's admission stands: complete, or continuing
        /// in the background from `next_page`.
        admission: Box<AdmissionRecord>,
        /// What the pages admitted while the request waited added.
        tally: Tally,
        /// Valid items not admitted yet (admission continues).
        pending: u32,
        /// In request order.
        rejected: Vec<RejectedInRequest>,
    },
    Unauthorized(SignatureError),
    TooLarge {
        size: usize,
        limit: usize,
    },
    /// The batch as a whole is unreadable: nothing was admitted.
    Invalid(Vec<FieldError>),
    /// The batch id is taken by another source system.
    Conflict(BatchId),
}

/// A batch and how far it has come.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchView {
    pub batch: BatchRecord,
    pub progress: Progress,
}

impl<S, Q, C> Ingest<'_, S, Q, C>
where
    S: IngestStore,
    Q: WorkQueue,
    C: Clock,
{
    /// Checks a request's signature (the batch reads and controls are
    /// signed like events: batch ids are chosen by senders, so guessable).
    pub fn authenticate(&self, body: &[u8], signature: Option<&str>) -> Result<(), SignatureError> {
        signature::verify(
            signature,
            body,
            self.secrets,
            self.clock.now().unix_seconds(),
        )
    }

    /// `POST /v1/batches`: authenticated like an event (the signature covers
    /// the raw body), checked as a whole, stored as pages, then admitted
    /// page by page in order (later items of an entity are newer
    /// revisions) until `until`, if given; what is left continues from the
    /// stored cursor ([`Ingest::admit_pages`]) and the caller hands it on.
    pub async fn submit_batch(
        &self,
        body: &[u8],
        signature: Option<&str>,
        until: Option<Timestamp>,
    ) -> Result<BatchOutcome, AppError> {
        if body.len() > MAX_BATCH_BYTES {
            return Ok(BatchOutcome::TooLarge {
                size: body.len(),
                limit: MAX_BATCH_BYTES,
            });
        }
        let now = self.clock.now();
        if let Err(e) = self.verify_once(signature, body).await? {
            return Ok(BatchOutcome::Unauthorized(e));
        }
        let request = match parse_batch(body) {
            Ok(r) => r,
            Err(errors) => return Ok(BatchOutcome::Invalid(errors)),
        };
        let fresh = BatchRecord {
            id: request.id.clone(),
            source_system: request.source_system.clone(),
            received: 0,
            accepted: 0,
            duplicates: 0,
            rejected: Vec::new(),
            rejected_total: 0,
            paused: false,
            created_at: now,
            updated_at: now,
        };
        // The record first, so the executor finds the batch (and a pause)
        // as soon as the first job is queued.
        let record = self.store.open_batch(&fresh).await?;
        if record.source_system != request.source_system {
            return Ok(BatchOutcome::Conflict(request.id));
        }
        let valid = request.items.iter().filter(|i| i.is_ok()).count();
        let gate = self.policy.batch_approval.filter(|g| valid > g.over);
        let sizes: Vec<(usize, bool)> = request
            .texts
            .iter()
            .zip(&request.items)
            .map(|(text, item)| (text.len(), item.is_ok()))
            .collect();
        let ranges = paginate(&sizes, gate.map_or(PAGE_ITEMS, |g| g.chunk));
        let post = PostId::of(&request.id, body);
        let pages: Vec<BatchPage> = ranges
            .iter()
            .enumerate()
            .map(|(n, r)| BatchPage {
                number: n as u32,
                first_index: r.start as u32,
                items: request.texts[r.clone()].to_vec(),
            })
            .collect();
        let admission = AdmissionRecord {
            batch: request.id.clone(),
            post: post.clone(),
            items: request.items.len() as u32,
            pages: pages.len() as u32,
            next_page: 0,
            gated: gate.is_some(),
            created_at: now,
            updated_at: now,
        };
        let new = self.store.store_post(&admission, &pages).await?;
        let rejected: Vec<RejectedInRequest> = request
            .items
            .iter()
            .zip(&request.texts)
            .enumerate()
            .filter_map(|(index, (item, text))| {
                let errors = item.as_ref().err()?;
                Some(RejectedInRequest {
                    index: index as u32,
                    errors: item_errors(index, errors),
                    rejection: RejectionId::for_batch_item(
                        request.id.as_str(),
                        index as u32,
                        text.as_bytes(),
                    ),
                })
            })
            .collect();
        let (admission, tally) = self.admit_pages(&request.id, &post, until).await?;
        let admitted_items = pages
            .get(admission.next_page as usize)
            .map_or(request.items.len(), |p| p.first_index as usize);
        let pending = request.items[admitted_items..]
            .iter()
            .filter(|i| i.is_ok())
            .count() as u32;
        // The same body posted again admits nothing new: all of it came
        // before.
        let tally = if new {
            tally
        } else {
            Tally {
                received: request.items.len() as u32,
                accepted: 0,
                duplicates: valid as u32,
                ..Tally::default()
            }
        };
        let batch = self.store.batch(&request.id).await?.unwrap_or(record);
        tracing::info!(batch = %batch.id, %post, items = request.items.len(), pages = admission.pages, admitted_pages = admission.next_page, repeated = !new, "batch received");
        Ok(BatchOutcome::Accepted {
            batch: Box::new(batch),
            admission: Box::new(admission),
            tally,
            pending,
            rejected,
        })
    }
}

/// `GET /v1/batches/{id}`.
pub async fn view_batch<S: BatchStore, C: Clock>(
    store: &S,
    clock: &C,
    id: &BatchId,
) -> Result<Option<BatchView>, AppError> {
    let Some(batch) = store.batch(id).await? else {
        return Ok(None);
    };
    let jobs = store.batch_jobs(id).await?;
    let progress = progress(&batch, &jobs, clock.now());
    Ok(Some(BatchView { batch, progress }))
}

/// `POST /v1/batches/{id}/pause|resume`: the batch's queued work stays in
/// place while paused; work between two Jira calls finishes its job.
pub async fn set_paused<S: BatchStore, C: Clock>(
    store: &S,
    clock: &C,
    id: &BatchId,
    paused: bool,
) -> Result<Option<BatchView>, AppError> {
    if !store.set_batch_paused(id, paused).await? {
        return Ok(None);
    }
    tracing::info!(batch = %id, paused, "batch {}", if paused { "paused" } else { "resumed" });
    view_batch(store, clock, id).await
}

/// A request on one batch, as routed by `serve` and the ingest function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchAction {
    View,
    Pause,
    Resume,
}

impl BatchAction {
    /// The action of a `/v1/batches/{id}[/pause|/resume]` path tail.
    pub fn parse(tail: Option<&str>) -> Option<Self> {
        match tail {
            None => Some(BatchAction::View),
            Some("pause") => Some(BatchAction::Pause),
            Some("resume") => Some(BatchAction::Resume),
            Some(_) => None,
        }
    }
}

/// Answers a signed request on a batch: its progress, or a pause/resume.
pub async fn batch_request<S, Q, C>(
    ingest: &Ingest<'_, S, Q, C>,
    action: BatchAction,
    id: &str,
    body: &[u8],
    signature: Option<&str>,
) -> Result<HttpAnswer, AppError>
where
    S: IngestStore,
    Q: WorkQueue,
    C: Clock,
{
    if let Err(e) = ingest.authenticate(body, signature) {
        return Ok(api::unauthorized(&e));
    }
    let Some(id) = BatchId::parse(id) else {
        return Ok(api::not_found("batch"));
    };
    let view = match action {
        BatchAction::View => view_batch(ingest.store, ingest.clock, &id).await?,
        BatchAction::Pause => set_paused(ingest.store, ingest.clock, &id, true).await?,
        BatchAction::Resume => set_paused(ingest.store, ingest.clock, &id, false).await?,
    };
    Ok(match view {
        Some(v) => api::batch_view_answer(&v),
        None => api::not_found("batch"),
    })
}
