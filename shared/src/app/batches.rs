//! Batches: admit a bulk sync run item by item, report its progress, pause
//! and resume it. Every item becomes an ordinary job (deduplicated,
//! policy-checked, coalesced and bulk-created like any other) that remembers
//! its batch; a bad item is kept in the manual queue under its index and
//! never stops the others.

use super::AppError;
use super::api::{self, HttpAnswer};
use super::ingest::{Ingest, IngestOutcome, describe};
use crate::domain::approval::{ApprovalId, ApprovalRecord};
use crate::domain::batch::{
    BatchRecord, BatchRequest, MAX_BATCH_BYTES, MAX_LISTED_REJECTED, Progress, RejectedItem,
    item_errors, parse_batch, progress,
};
use crate::domain::event::{Event, Priority};
use crate::domain::idempotency::{DedupId, Fingerprint, IdempotencyKey};
use crate::domain::ids::{BatchId, JobId};
use crate::domain::policy::BatchApproval;
use crate::domain::rejection::{Rejection, RejectionId};
use crate::domain::signature::{self, SignatureError};
use crate::domain::time::Timestamp;
use crate::domain::validation::FieldError;
use crate::ports::{BatchStore, Clock, IngestStore, WorkQueue};
use std::collections::HashMap;
use std::time::Duration;

/// What became of one item.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemOutcome {
    Admitted(IngestOutcome),
    Rejected {
        errors: Vec<FieldError>,
        rejection: RejectionId,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum BatchOutcome {
    Accepted {
        batch: Box<BatchRecord>,
        /// In request order.
        items: Vec<ItemOutcome>,
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
    /// the raw body); items admitted in order, so later items of the same
    /// entity are newer revisions.
    pub async fn submit_batch(
        &self,
        body: &[u8],
        signature: Option<&str>,
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
        let mut record = match self.store.batch(&request.id).await? {
            Some(existing) if existing.source_system != request.source_system => {
                return Ok(BatchOutcome::Conflict(request.id));
            }
            // A record from before the total was kept counts its list.
            Some(existing) => BatchRecord {
                rejected_total: existing.rejected_total.max(existing.rejected.len() as u32),
                ..existing
            },
            None => BatchRecord {
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
            },
        };
        // The record first, so the executor finds the batch (and a pause)
        // as soon as the first job is queued.
        self.store.save_batch(&record).await?;
        let slots = self.chunk_requests(&request, now).await?;
        let mut items = Vec::with_capacity(request.items.len());
        for (index, (item, raw)) in request.items.into_iter().zip(&request.raw).enumerate() {
            let outcome = match item {
                Ok((event, payload)) => {
                    let slot = slots
                        .get(&index)
                        .map(|(approval, id)| (approval, id.clone()));
                    let o = self
                        .admit(event, payload, now, Some(&request.id), slot)
                        .await?;
                    match &o {
                        IngestOutcome::Accepted {
                            duplicate: true, ..
                        } => record.duplicates += 1,
                        IngestOutcome::Accepted { .. } => record.accepted += 1,
                        _ => {}
                    }
                    ItemOutcome::Admitted(o)
                }
                Err(errors) => {
                    let errors = item_errors(index, &errors);
                    let body = serde_json::to_vec(raw).unwrap_or_default();
                    // Its context is kept (the batch, the index, the
                    // batch's source system); the same item posted again is
                    // the same rejection.
                    let rejection = Rejection::of_batch_item(
                        request.id.as_str(),
                        index as u32,
                        request.source_system.as_str(),
                        Priority::Bulk,
                        &body,
                        errors.clone(),
                        now,
                    );
                    if self.store.keep_rejection(&rejection).await? {
                        record.rejected_total += 1;
                    }
                    if record.rejected.len() < MAX_LISTED_REJECTED
                        && !record
                            .rejected
                            .iter()
                            .any(|r| r.rejection_id == rejection.id)
                    {
                        record.rejected.push(RejectedItem {
                            index: index as u32,
                            rejection_id: rejection.id.clone(),
                        });
                    }
                    ItemOutcome::Rejected {
                        errors,
                        rejection: rejection.id,
                    }
                }
            };
            items.push(outcome);
        }
        record.received += items.len() as u32;
        record.updated_at = self.clock.now();
        self.store.save_batch(&record).await?;
        tracing::info!(batch = %record.id, items = items.len(), accepted = record.accepted, rejected = record.rejected.len(), "batch received");
        Ok(BatchOutcome::Accepted {
            batch: Box::new(record),
            items,
        })
    }
}

impl<S, Q, C> Ingest<'_, S, Q, C>
where
    S: IngestStore,
    Q: WorkQueue,
    C: Clock,
{
    /// For a request over the policy's batch threshold: one approval
    /// request per chunk of its *new* valid items (an item admitted by an
    /// earlier posting of the batch is a duplicate, and waits on no second
    /// request), stored before any of its jobs, each naming the job ids its
    /// items will take. Returns (approval, job id) by item index; empty
    /// when no approval is needed.
    async fn chunk_requests(
        &self,
        request: &BatchRequest,
        now: Timestamp,
    ) -> Result<HashMap<usize, (ApprovalId, JobId)>, AppError> {
        let Some(gate) = self.policy.batch_approval else {
            return Ok(HashMap::new());
        };
        // The threshold is the request's, as posted; the chunks are made of
        // what it adds.
        if request.items.iter().filter(|i| i.is_ok()).count() <= gate.over {
            return Ok(HashMap::new());
        }
        let mut valid: Vec<(usize, &Event)> = Vec::new();
        for (i, item) in request.items.iter().enumerate() {
            let Ok((event, payload)) = item else {
                continue;
            };
            let dedup = DedupId::of(
                event.operation.kind(),
                &IdempotencyKey::of(event),
                &Fingerprint::of(payload),
            );
            if self.store.job_by_dedup(&dedup).await?.is_none() {
                valid.push((i, event));
            }
        }
        let sizes = BatchApproval {
            over: 0,
            chunk: gate.chunk,
        }
        .chunks(valid.len());
        let mut slots = HashMap::with_capacity(valid.len());
        let mut start = 0;
        for (n, size) in sizes.iter().enumerate() {
            let part = &valid[start..start + size];
            start += size;
            let ids: Vec<JobId> = part.iter().map(|_| JobId::generate()).collect();
            let approval = ApprovalRecord {
                id: ApprovalId::generate(),
                job_id: ids[0].clone(),
                also: ids[1..].to_vec(),
                rule: format!("batch_approval (over {} items)", gate.over),
                intent: chunk_intent(&request.id, n, sizes.len(), part),
                requested_by: request.source_system.to_string(),
                approvers: self.policy.approvers.clone(),
                requested_at: now,
                expires_at: now.plus(Duration::from_secs(self.policy.expiry_minutes * 60)),
                decided: None,
                notified: false,
            };
            self.store.create_approval(&approval).await?;
            tracing::info!(batch = %request.id, chunk = n + 1, items = size, approval_id = %approval.id, "batch chunk waits for approval");
            slots.extend(
                part.iter()
                    .zip(ids)
                    .map(|((index, _), id)| (*index, (approval.id.clone(), id))),
            );
        }
        Ok(slots)
    }
}

/// What one chunk will change, for its approvers: where it sits in the
/// batch, how many of each operation, and the first items in words.
fn chunk_intent(batch: &BatchId, n: usize, of: usize, part: &[(usize, &Event)]) -> Vec<String> {
    const SHOWN: usize = 20;
    let first = part.first().map_or(0, |p| p.0);
    let last = part.last().map_or(0, |p| p.0);
    let mut lines = vec![format!(
        "batch {batch}, chunk {} of {of}: items {first}–{last}, {} changes",
        n + 1,
        part.len()
    )];
    let mut kinds: std::collections::BTreeMap<&str, usize> = Default::default();
    for (_, e) in part {
        *kinds.entry(e.operation.kind().as_str()).or_default() += 1;
    }
    lines.push(
        kinds
            .iter()
            .map(|(k, n)| format!("{n} × {k}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    for (index, event) in part.iter().take(SHOWN) {
        let words = describe(event);
        lines.push(format!("#{index}: {}", words.join(" ")));
    }
    if part.len() > SHOWN {
        lines.push(format!("… and {} more", part.len() - SHOWN));
    }
    lines
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
