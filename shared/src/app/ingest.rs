//! Ingest: authenticate, validate, deduplicate, admit, enqueue.
//!
//! Nothing is written for an event that fails authentication or validation.
//! The job row is the outbox: it is admitted with `enqueued = false`, the
//! queue message is sent, then the flag is set. A crash in between is healed
//! by the sender's redelivery or by the sweep ([`resend_unenqueued`]).

use super::AppError;
use crate::domain::audit::{AuditEntry, Stage};
use crate::domain::canonical::canonical_json;
use crate::domain::idempotency::{
    DedupId, Fingerprint, IdempotencyKey, LinkId, Redelivery, classify_redelivery,
};
use crate::domain::ids::JobId;
use crate::domain::job::JobState;
use crate::domain::limits::MAX_BODY_BYTES;
use crate::domain::secret::Secret;
use crate::domain::signature::{self, SignatureError};
use crate::domain::time::Timestamp;
use crate::domain::validation::{FieldError, parse_event};
use crate::ports::{Admission, Clock, JobRecord, JobStore, LinkStore, WorkMessage, WorkQueue};
use std::time::Duration;

/// The answer to one delivered event.
#[derive(Debug, Clone, PartialEq)]
pub enum IngestOutcome {
    Accepted {
        job_id: JobId,
        state: JobState,
        key: IdempotencyKey,
        duplicate: bool,
    },
    Unauthorized(SignatureError),
    TooLarge {
        size: usize,
        limit: usize,
    },
    Invalid(Vec<FieldError>),
    /// The key was used with another payload and the operation cannot be
    /// revised (a create happens once).
    Conflict {
        job_id: JobId,
        key: IdempotencyKey,
    },
}

pub struct Ingest<'a, S, Q, C> {
    pub store: &'a S,
    pub queue: &'a Q,
    pub clock: &'a C,
    pub secrets: &'a [Secret],
}

impl<S, Q, C> Ingest<'_, S, Q, C>
where
    S: JobStore + LinkStore,
    Q: WorkQueue,
    C: Clock,
{
    pub async fn handle(
        &self,
        body: &[u8],
        signature: Option<&str>,
    ) -> Result<IngestOutcome, AppError> {
        if body.len() > MAX_BODY_BYTES {
            return Ok(IngestOutcome::TooLarge {
                size: body.len(),
                limit: MAX_BODY_BYTES,
            });
        }
        let now = self.clock.now();
        if let Err(e) = signature::verify(signature, body, self.secrets, now.unix_seconds()) {
            return Ok(IngestOutcome::Unauthorized(e));
        }
        let (event, payload) = match parse_event(body) {
            Ok(parsed) => parsed,
            Err(errors) => return Ok(IngestOutcome::Invalid(errors.0)),
        };

        let kind = event.operation.kind();
        let key = IdempotencyKey::of(&event);
        let fingerprint = Fingerprint::of(&payload);
        // RECEIVED --accept--> QUEUED (approval policy joins here later).
        let state = JobState::Queued;
        let job = JobRecord {
            id: JobId::generate(),
            dedup: DedupId::of(kind, &key, &fingerprint),
            link: LinkId::of(&event.source_system, &event.external_id),
            key: key.clone(),
            fingerprint,
            kind,
            priority: event.priority,
            source_system: event.source_system.clone(),
            external_id: event.external_id.clone(),
            payload: canonical_json(&payload),
            state,
            issue_key: event.issue_key.clone(),
            steps_done: 0,
            step_started: None,
            attempts: 0,
            throttles: 0,
            last_error: None,
            created_at: now,
            updated_at: now,
            enqueued: false,
        };
        let audit = [
            AuditEntry::new(
                now,
                Stage::Validation,
                "ingest",
                format!("valid {kind} event"),
            )
            .state(JobState::Received),
            AuditEntry::new(now, Stage::Queue, "ingest", "accepted").state(state),
        ];

        match self.store.admit(&job, &audit).await? {
            Admission::New => {
                if kind.creates() {
                    self.store.claim_link(&job.link, &job.id).await?;
                }
                enqueue(self.store, self.queue, &job).await?;
                tracing::info!(job_id = %job.id, %kind, source = %job.source_system, "event accepted");
                Ok(IngestOutcome::Accepted {
                    job_id: job.id,
                    state,
                    key,
                    duplicate: false,
                })
            }
            Admission::Existing(original) => {
                match classify_redelivery(&original.fingerprint, &job.fingerprint) {
                    Redelivery::Conflict => Ok(IngestOutcome::Conflict {
                        job_id: original.id,
                        key,
                    }),
                    Redelivery::Duplicate => {
                        let entry = AuditEntry::new(
                            now,
                            Stage::Dedup,
                            "ingest",
                            "duplicate delivery suppressed",
                        );
                        self.store.append_audit(&original.id, &entry).await?;
                        if !original.enqueued && !original.state.is_terminal() {
                            enqueue(self.store, self.queue, &original).await?;
                        }
                        tracing::info!(job_id = %original.id, "duplicate delivery suppressed");
                        Ok(IngestOutcome::Accepted {
                            job_id: original.id,
                            state: original.state,
                            key,
                            duplicate: true,
                        })
                    }
                }
            }
        }
    }
}

/// Sends the job's message and sets its outbox flag.
pub async fn enqueue<S: JobStore, Q: WorkQueue>(
    store: &S,
    queue: &Q,
    job: &JobRecord,
) -> Result<(), AppError> {
    let msg = WorkMessage {
        job_id: job.id.clone(),
        priority: job.priority,
    };
    queue.send(&msg, Duration::ZERO).await?;
    store.mark_enqueued(&job.id).await?;
    Ok(())
}

/// The outbox sweep: re-sends jobs admitted before `older_than` whose message
/// may have been lost to a crash. Returns how many were sent.
pub async fn resend_unenqueued<S: JobStore, Q: WorkQueue>(
    store: &S,
    queue: &Q,
    older_than: Timestamp,
) -> Result<usize, AppError> {
    let jobs = store.unenqueued(older_than, 100).await?;
    for job in &jobs {
        enqueue(store, queue, job).await?;
    }
    Ok(jobs.len())
}
