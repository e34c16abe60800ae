//! Ingest: authenticate, validate, deduplicate, admit, enqueue.
//!
//! Nothing is written for an event that fails authentication or validation.
//! The job row is the outbox: it is admitted with `enqueued = false`, the
//! queue message is sent, then the flag is set. A crash in between is healed
//! by the sender's redelivery or by the sweep ([`resend_unenqueued`]).

use super::AppError;
use super::intake::MAX_SOURCE_BYTES;
use crate::domain::approval::{ApprovalId, ApprovalRecord};
use crate::domain::audit::{AuditEntry, Stage};
use crate::domain::batch::{item_errors, read_item};
use crate::domain::canonical::canonical_json;
use crate::domain::event::{Event, Operation};
use crate::domain::idempotency::{
    DedupId, Fingerprint, IdempotencyKey, LinkId, Redelivery, classify_redelivery,
};
use crate::domain::ids::IssueKey;
use crate::domain::ids::SourceSystem;
use crate::domain::ids::{BatchId, JobId};
use crate::domain::job::{JobEvent, JobState};
use crate::domain::limits::MAX_BODY_BYTES;
use crate::domain::plan::{LinkState, plan};
use crate::domain::policy::{MassCreate, Policy, PolicyDecision};
use crate::domain::rejection::{Discarded, Origin, Rejection, RejectionId};
use crate::domain::secret::Secret;
use crate::domain::signature::{self, SignatureError};
use crate::domain::source::Sources;
use crate::domain::standard_webhooks;
use crate::domain::time::Timestamp;
use crate::domain::validation::{FieldError, parse_event};
use crate::ports::{Admission, Clock, IngestStore, JobRecord, JobStore, WorkMessage, WorkQueue};
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
    /// Kept in the manual queue as `rejection` (authenticated senders only).
    Invalid {
        errors: Vec<FieldError>,
        rejection: RejectionId,
    },
    /// The key was used with another payload and the operation cannot be
    /// revised (a create happens once).
    Conflict {
        job_id: JobId,
        key: IdempotencyKey,
    },
}

/// What a re-submission from the manual queue did.
#[derive(Debug, Clone, PartialEq)]
pub enum Resubmission {
    Done(IngestOutcome),
    StillInvalid(Vec<FieldError>),
    AlreadyResubmitted(JobId),
    Discarded(Discarded),
    /// It came from this sender: its mapping (the senders document) is
    /// needed to run it again.
    NeedsSender(String),
    NotFound,
}

/// What discarding a rejection did.
#[derive(Debug, Clone, PartialEq)]
pub enum Discard {
    Done,
    AlreadyResubmitted(JobId),
    AlreadyDiscarded(Discarded),
    NotFound,
}

pub struct Ingest<'a, S, Q, C> {
    pub store: &'a S,
    pub queue: &'a Q,
    pub clock: &'a C,
    pub secrets: &'a [Secret],
    /// Which events wait for a person.
    pub policy: &'a Policy,
}

/// A batch page's item as its page decided it.
pub(crate) struct PageItem<'a> {
    /// Derived from the item's place in its post.
    pub id: JobId,
    pub decided: PolicyDecision,
    /// The page's request it waits on: the chunk's (batch approval) or
    /// the one its rule's items share; none when it runs at once.
    pub waits_on: Option<&'a ApprovalId>,
}

impl<S, Q, C> Ingest<'_, S, Q, C>
where
    S: IngestStore,
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
        if let Err(e) = self.verify_once(signature, body).await? {
            return Ok(IngestOutcome::Unauthorized(e));
        }
        self.accept(body, None).await
    }

    /// A delivery signed either way: `Tollgate-Signature`, or Standard
    /// Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`)
    /// when that is what the sender sent. `header(name)` reads a request
    /// header, case-insensitively.
    pub async fn handle_delivery(
        &self,
        body: &[u8],
        header: impl Fn(&str) -> Option<String>,
    ) -> Result<IngestOutcome, AppError> {
        let standard = header(standard_webhooks::SIGNATURE_HEADER);
        if standard.is_none() || header(signature::HEADER).is_some() {
            return self
                .handle(body, header(signature::HEADER).as_deref())
                .await;
        }
        if body.len() > MAX_BODY_BYTES {
            return Ok(IngestOutcome::TooLarge {
                size: body.len(),
                limit: MAX_BODY_BYTES,
            });
        }
        let (id, timestamp) = (
            header(standard_webhooks::ID_HEADER),
            header(standard_webhooks::TIMESTAMP_HEADER),
        );
        let headers = standard_webhooks::Headers {
            id: id.as_deref(),
            timestamp: timestamp.as_deref(),
            signature: standard.as_deref(),
        };
        let now = self.clock.now();
        let id = match standard_webhooks::verify(headers, body, self.secrets, now.unix_seconds()) {
            Ok(id) => id.to_string(),
            Err(e) => {
                tracing::warn!(error = %e, "Standard Webhooks signature refused");
                return Ok(IngestOutcome::Unauthorized(e));
            }
        };
        // The webhook-id is the delivery's name: the same id again with the
        // same bytes (re-signed or not) is a redelivery; with other bytes,
        // refused.
        let mark = signature::replay_mark(&format!("webhook-id {id}"), body);
        if self
            .store
            .acquire(&mark.lease, &mark.holder, mark.ttl)
            .await?
            .is_none()
        {
            tracing::warn!(webhook_id = %id, "a webhook-id already seen was presented over other bytes; refused");
            return Ok(IngestOutcome::Unauthorized(SignatureError::Replayed));
        }
        self.accept(body, Some(&id)).await
    }

    /// An authenticated body: parsed, validated (or kept in the manual
    /// queue), admitted; a Standard Webhooks delivery's id is recorded with
    /// the job it made.
    async fn accept(
        &self,
        body: &[u8],
        webhook_id: Option<&str>,
    ) -> Result<IngestOutcome, AppError> {
        let now = self.clock.now();
        let (event, payload) = match parse_event(body) {
            Ok(parsed) => parsed,
            Err(errors) => {
                let rejection = Rejection::new(body, errors.0, now);
                self.store.keep_rejection(&rejection).await?;
                tracing::info!(rejection_id = %rejection.id, source = rejection.source_system.as_deref().unwrap_or("-"), "invalid event kept in the manual queue");
                return Ok(IngestOutcome::Invalid {
                    errors: rejection.errors,
                    rejection: rejection.id,
                });
            }
        };
        let outcome = self.admit(event, payload, now, None, None).await?;
        if let (
            Some(id),
            IngestOutcome::Accepted {
                job_id,
                duplicate: false,
                ..
            },
        ) = (webhook_id, &outcome)
        {
            let entry = AuditEntry::new(
                now,
                Stage::Validation,
                "ingest",
                format!("delivered with webhook-id {id}"),
            );
            self.store.append_audit(job_id, &entry).await?;
        }
        Ok(outcome)
    }

    /// Verifies a signed delivery and marks its signature as seen, in the
    /// name of the bytes it signed. The same bytes again (a sender's retry
    /// of the very request, whatever became of the first) pass and are
    /// deduplicated as a redelivery — never refused — so a failure between
    /// this mark and the admission cannot lose the event; a seen signature
    /// over other bytes is refused.
    pub(crate) async fn verify_once(
        &self,
        header: Option<&str>,
        body: &[u8],
    ) -> Result<Result<(), SignatureError>, AppError> {
        let now = self.clock.now();
        if let Err(e) = signature::verify(header, body, self.secrets, now.unix_seconds()) {
            tracing::warn!(error = %e, "signature refused");
            return Ok(Err(e));
        }
        let Some(header) = header else {
            return Ok(Err(SignatureError::Missing));
        };
        let mark = signature::replay_mark(header, body);
        if self
            .store
            .acquire(&mark.lease, &mark.holder, mark.ttl)
            .await?
            .is_none()
        {
            tracing::warn!("a signature already seen was presented over other bytes; refused");
            return Ok(Err(SignatureError::Replayed));
        }
        Ok(Ok(()))
    }

    /// An operator re-submits a kept rejection, as it was or corrected
    /// (`body`). Still invalid: the errors, and nothing is stored. Accepted:
    /// the rejection records the job (once; a second re-submission of the
    /// same rejection is refused).
    pub async fn resubmit(
        &self,
        id: &RejectionId,
        body: Option<&[u8]>,
        sources: Option<&Sources>,
    ) -> Result<Resubmission, AppError> {
        let Some(rejection) = self.store.rejection(id).await? else {
            return Ok(Resubmission::NotFound);
        };
        if let Some(job) = rejection.resubmitted_as {
            return Ok(Resubmission::AlreadyResubmitted(job));
        }
        if let Some(d) = rejection.discarded {
            return Ok(Resubmission::Discarded(d));
        }
        if let (None, Some(t)) = (body, &rejection.truncated) {
            return Ok(Resubmission::StillInvalid(vec![FieldError::new(
                "body",
                format!(
                    "only its first {} of {} bytes were kept (sha256 {}); re-submit it with a body",
                    rejection.body.len(),
                    t.bytes,
                    t.sha256
                ),
            )]));
        }
        let body = body.unwrap_or(rejection.body.as_bytes());
        if body.len() > MAX_SOURCE_BYTES {
            return Ok(Resubmission::StillInvalid(vec![FieldError::new(
                "body",
                format!("the limit is {MAX_SOURCE_BYTES} bytes"),
            )]));
        }
        let now = self.clock.now();
        let outcome = match &rejection.origin {
            Origin::Event => {
                if body.len() > MAX_BODY_BYTES {
                    return Ok(Resubmission::StillInvalid(vec![FieldError::new(
                        "body",
                        format!("the limit is {MAX_BODY_BYTES} bytes"),
                    )]));
                }
                let (event, payload) = match parse_event(body) {
                    Ok(parsed) => parsed,
                    Err(errors) => return Ok(Resubmission::StillInvalid(errors.0)),
                };
                self.admit(event, payload, now, None, None).await?
            }
            Origin::BatchItem {
                batch,
                index,
                source_system,
                ..
            } => {
                // It rejoins its batch, with the batch's source system and
                // priority, as its first posting would have.
                let parsed = serde_json::from_slice::<serde_json::Value>(body)
                    .map_err(|e| vec![FieldError::new("", format!("is not valid JSON: {e}"))])
                    .and_then(|item| {
                        let source = SourceSystem::parse(source_system).ok_or_else(|| {
                            vec![FieldError::new("sourceSystem", "the batch's is unreadable")]
                        })?;
                        read_item(&item, &source)
                    });
                let (event, payload) = match parsed {
                    Ok(p) => p,
                    Err(errors) => {
                        return Ok(Resubmission::StillInvalid(item_errors(
                            *index as usize,
                            &errors,
                        )));
                    }
                };
                let batch = BatchId::parse(batch).ok_or_else(|| {
                    AppError::Store(crate::ports::StoreError::Corrupt(format!(
                        "rejection {id} names batch {batch:?}"
                    )))
                })?;
                self.admit(event, payload, now, Some(&batch), None).await?
            }
            Origin::Sender { source, path } => {
                let Some(sender) = sources.and_then(|s| s.get(source)) else {
                    return Ok(Resubmission::NeedsSender(source.clone()));
                };
                match super::intake::remap(self, sender, body, path, now).await? {
                    Ok(outcome) => outcome,
                    Err(errors) => return Ok(Resubmission::StillInvalid(errors)),
                }
            }
        };
        if let IngestOutcome::Accepted { job_id, .. } = &outcome {
            self.store.mark_resubmitted(id, job_id).await?;
        }
        Ok(Resubmission::Done(outcome))
    }

    /// An operator decides a rejection needs nothing more (recorded with
    /// their name and reason; it can no longer be re-submitted).
    pub async fn discard(
        &self,
        id: &RejectionId,
        by: &str,
        reason: &str,
    ) -> Result<Discard, AppError> {
        let Some(rejection) = self.store.rejection(id).await? else {
            return Ok(Discard::NotFound);
        };
        if let Some(job) = rejection.resubmitted_as {
            return Ok(Discard::AlreadyResubmitted(job));
        }
        if let Some(d) = rejection.discarded {
            return Ok(Discard::AlreadyDiscarded(d));
        }
        let d = Discarded {
            by: by.to_string(),
            reason: reason.to_string(),
            at: self.clock.now(),
        };
        if self.store.discard_rejection(id, &d).await? {
            tracing::info!(rejection_id = %id, by, "rejection discarded");
            return Ok(Discard::Done);
        }
        // Someone else got there first: say what they did.
        Ok(match self.store.rejection(id).await? {
            Some(Rejection {
                resubmitted_as: Some(job),
                ..
            }) => Discard::AlreadyResubmitted(job),
            Some(Rejection {
                discarded: Some(d), ..
            }) => Discard::AlreadyDiscarded(d),
            _ => Discard::NotFound,
        })
    }

    /// Admits an event tollgate itself raises (a follow-up task, a
    /// compensation comment): validated like any other, deduplicated by its
    /// own key, no signature.
    pub async fn admit_internal(
        &self,
        event: &serde_json::Value,
    ) -> Result<IngestOutcome, AppError> {
        let body = serde_json::to_vec(event)
            .map_err(|e| AppError::Store(crate::ports::StoreError::Corrupt(e.to_string())))?;
        match parse_event(&body) {
            Ok((event, payload)) => {
                self.admit(event, payload, self.clock.now(), None, None)
                    .await
            }
            Err(errors) => Ok(IngestOutcome::Invalid {
                errors: errors.0,
                rejection: RejectionId::generate(),
            }),
        }
    }

    /// Admits one valid event (of `batch`, when it came in one). A batch
    /// page's item comes decided by its page (`item`): its job id derived
    /// from its place, and the page's request it waits on, if any — a page
    /// never opens one request per item.
    pub(crate) async fn admit(
        &self,
        event: Event,
        payload: serde_json::Value,
        now: Timestamp,
        batch: Option<&BatchId>,
        item: Option<PageItem<'_>>,
    ) -> Result<IngestOutcome, AppError> {
        let kind = event.operation.kind();
        let key = IdempotencyKey::of(&event);
        let fingerprint = Fingerprint::of(&payload);
        // The storm guard counts creates admitted before this one in the
        // current window. Read before and bumped after admission, so
        // redeliveries do not count; racing creates may each see the count
        // just below the limit (a soft limit, by a few).
        let guard = self.policy.mass_create.filter(|_| kind.creates()).map(|m| {
            (
                MassCreate::counter_key(&event.source_system),
                m.window_index(now),
            )
        });
        // A page's item was decided by its page (which read the count).
        let recent = match (&guard, &item) {
            (Some((key, window)), None) => self.store.count(key, *window).await?,
            _ => 0,
        };
        let (job_id, decision, gated) = match item {
            Some(i) => (i.id, i.decided, i.waits_on),
            None => (JobId::generate(), self.policy.decide(&event, recent), None),
        };
        let state = match (&decision, gated) {
            (PolicyDecision::Run { .. }, None) => JobState::Received.apply(JobEvent::Accept)?,
            _ => JobState::Received.apply(JobEvent::RequireApproval)?,
        };
        let approval = match (&decision, gated) {
            (PolicyDecision::Run { .. }, _) | (_, Some(_)) => None,
            (
                PolicyDecision::NeedsApproval {
                    rule,
                    approvers,
                    expiry,
                },
                None,
            ) => Some(ApprovalRecord {
                id: ApprovalId::generate(),
                job_id: job_id.clone(),
                also: Vec::new(),
                rule: rule.clone(),
                intent: describe(&event),
                requested_by: event.source_system.to_string(),
                approvers: approvers.clone(),
                requested_at: now,
                expires_at: now.plus(*expiry),
                decided: None,
                notified: false,
            }),
        };
        let job = JobRecord {
            id: job_id,
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
            merged_into: None,
            batch: batch.cloned(),
            points_milli: 0,
            not_before: None,
        };
        let last = match (&decision, &approval) {
            (PolicyDecision::Run { rule } | PolicyDecision::NeedsApproval { rule, .. }, None)
                if gated.is_some() =>
            {
                AuditEntry::new(
                    now,
                    Stage::Approval,
                    "ingest",
                    format!(
                        "valid ({rule}); waits for approval of its batch chunk ({})",
                        gated.map(ApprovalId::as_str).unwrap_or_default()
                    ),
                )
            }
            (PolicyDecision::NeedsApproval { rule, .. }, Some(a)) => AuditEntry::new(
                now,
                Stage::Approval,
                "ingest",
                format!(
                    "approval required ({rule}); asked {}; expires {}",
                    a.approvers.join(", "),
                    a.expires_at.to_rfc3339()
                ),
            )
            .intent(a.intent.join("; ")),
            (PolicyDecision::Run { rule }, _)
            | (PolicyDecision::NeedsApproval { rule, .. }, None) => {
                AuditEntry::new(now, Stage::Queue, "ingest", format!("accepted ({rule})"))
            }
        };
        let audit = [
            AuditEntry::new(
                now,
                Stage::Validation,
                "ingest",
                format!("valid {kind} event"),
            )
            .state(JobState::Received),
            last.state(state),
        ];

        match self.store.admit(&job, &audit, approval.as_ref()).await? {
            Admission::New => {
                if let Some((key, window)) = &guard {
                    self.store.bump(key, *window).await?;
                }
                if kind.creates() {
                    self.store.claim_link(&job.link, &job.id).await?;
                }
                if state == JobState::Queued {
                    enqueue(self.store, self.queue, &job).await?;
                }
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
                        if !original.enqueued && original.state.is_runnable() {
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

/// What the event will change in Jira, line by line, for an approver.
pub fn describe(event: &Event) -> Vec<String> {
    let link = LinkId::of(&event.source_system, &event.external_id);
    let creates = matches!(event.operation, Operation::Create(_) | Operation::Upsert(_));
    let mut lines = vec![match (&event.issue_key, creates) {
        (Some(key), _) => format!("on {key}:"),
        (None, true) => "a new issue:".to_string(),
        (None, false) => format!(
            "on the issue tollgate created for {} {}:",
            event.source_system, event.external_id
        ),
    }];
    // The target is only described, never called, so a stand-in key is
    // enough for the plan of a linked entity.
    let state = if creates {
        LinkState::Unlinked
    } else {
        LinkState::Linked(
            event
                .issue_key
                .clone()
                .unwrap_or_else(|| IssueKey::from_stored(String::new())),
        )
    };
    match plan(event, &link, &state) {
        Ok(steps) => lines.extend(steps.iter().map(|s| s.to_string())),
        Err(e) => lines.push(e.to_string()),
    }
    lines
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
