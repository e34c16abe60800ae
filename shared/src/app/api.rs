//! The HTTP contract of DESIGN.md as pure functions: status codes and JSON
//! bodies for each use-case outcome. `serve` and the Lambda functions both
//! answer through here, so they cannot drift apart.

use super::batches::{BatchOutcome, BatchView};
use super::ingest::IngestOutcome;
use super::intake::IntakeOutcome;
use crate::domain::audit::AuditEntry;
use crate::domain::job::JobState;
use crate::domain::sender_auth::AuthError;
use crate::domain::signature::SignatureError;
use crate::domain::stats::{CallStats, operation_name};
use crate::ports::JobRecord;
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq)]
pub struct HttpAnswer {
    pub status: u16,
    pub body: Value,
}

impl HttpAnswer {
    pub fn new(status: u16, body: Value) -> Self {
        HttpAnswer { status, body }
    }

    pub fn error(status: u16, error: &str, message: impl Into<String>) -> Self {
        HttpAnswer::new(status, json!({ "error": error, "message": message.into() }))
    }
}

pub fn ingest_answer(outcome: &IngestOutcome) -> HttpAnswer {
    match outcome {
        IngestOutcome::Accepted {
            job_id,
            state,
            key,
            duplicate,
        } => {
            let waiting = *state == JobState::PendingApproval;
            HttpAnswer::new(
                202,
                json!({ "jobId": job_id, "state": state, "idempotencyKey": key, "duplicate": duplicate,
                        "waitingForApproval": waiting,
                        "approvalRequestsOpened": u32::from(waiting && !duplicate) }),
            )
        }
        IngestOutcome::Invalid { errors, rejection } => HttpAnswer::new(
            400,
            json!({
                "error": "invalid_event",
                "message": "the event is invalid: no job was created; it is kept for an operator to fix and re-submit",
                "errors": errors,
                "rejectionId": rejection
            }),
        ),
        IngestOutcome::TooLarge { size, limit } => HttpAnswer::new(
            413,
            json!({
                "error": "payload_too_large",
                "message": format!("body is {size} bytes; the limit is {limit} bytes"),
                "errors": [{ "field": "body", "message": format!("the limit is {limit} bytes") }],
                "limit": limit
            }),
        ),
        IngestOutcome::Unauthorized(e) => {
            HttpAnswer::error(401, "unauthorized", unauthorized_message(e))
        }
        IngestOutcome::Conflict { job_id, key } => HttpAnswer::new(
            409,
            json!({
                "error": "conflict",
                "message": "this key was already accepted with a different payload, and a create happens once; send an update or an upsert to change the issue",
                "jobId": job_id,
                "idempotencyKey": key
            }),
        ),
    }
}

/// Says what to fix without saying how close a forgery came.
fn unauthorized_message(e: &SignatureError) -> &'static str {
    match e {
        SignatureError::Missing => "missing Tollgate-Signature header",
        SignatureError::Expired => {
            "signature timestamp outside the 5-minute tolerance; check the sender's clock"
        }
        SignatureError::NoSecret => "this server has no webhook secret configured",
        SignatureError::Malformed | SignatureError::Mismatch => "signature does not verify",
        SignatureError::Replayed => "this signature was already used for another body",
    }
}

/// The fields of a job's answer people are shown, in order, with their
/// labels (the CLI's `jobs show` and the console's job page).
pub const JOB_FIELDS: [(&str, &str); 14] = [
    ("job", "jobId"),
    ("state", "state"),
    ("operation", "operation"),
    ("source", "sourceSystem"),
    ("external id", "externalId"),
    ("issue", "issueKey"),
    ("waiting for", "waitingFor"),
    ("not before", "notBefore"),
    ("approval", "approvalId"),
    ("merged into", "mergedInto"),
    ("batch", "batchId"),
    ("last error", "lastError"),
    ("created", "createdAt"),
    ("updated", "updatedAt"),
];

/// A job as `GET /v1/jobs/{id}` answers: with what it waits for and until
/// when while it waits, and the approval request while it waits for one.
pub fn job_answer(
    job: &JobRecord,
    audit: &[AuditEntry],
    approval: Option<&crate::domain::approval::ApprovalId>,
) -> HttpAnswer {
    let waiting = job.state == JobState::Waiting;
    HttpAnswer::new(
        200,
        json!({
            "waitingFor": if waiting { job.last_error.as_deref() } else { None },
            "notBefore": if waiting { job.not_before.map(|t| t.to_rfc3339()) } else { None },
            "approvalId": approval,
            "jobId": job.id,
            "state": job.state,
            "operation": job.kind,
            "sourceSystem": job.source_system,
            "externalId": job.external_id,
            "priority": job.priority,
            "issueKey": job.issue_key,
            "idempotencyKey": job.key,
            "stepsDone": job.steps_done,
            "attempts": job.attempts,
            "throttles": job.throttles,
            "lastError": job.last_error,
            "mergedInto": job.merged_into,
            "batchId": job.batch,
            "createdAt": job.created_at.to_rfc3339(),
            "updatedAt": job.updated_at.to_rfc3339(),
            "audit": audit,
        }),
    )
}

/// Events are JSON; a missing content type is tolerated (curl, simple
/// senders), anything else is refused before the body is read.
pub fn refuse_content_type(content_type: Option<&str>) -> Option<HttpAnswer> {
    let ok = content_type.is_none_or(|ct| {
        ct.trim_start()
            .to_ascii_lowercase()
            .starts_with("application/json")
    });
    (!ok).then(|| {
        HttpAnswer::error(
            415,
            "unsupported_media_type",
            "send the event as application/json",
        )
    })
}

pub fn batch_answer(outcome: &BatchOutcome) -> HttpAnswer {
    match outcome {
        BatchOutcome::Accepted {
            batch,
            admission,
            tally,
            pending,
            rejected,
        } => {
            let rejected: Vec<Value> = rejected
                .iter()
                .map(
                    |r| json!({ "index": r.index, "rejectionId": r.rejection, "errors": r.errors }),
                )
                .collect();
            HttpAnswer::new(
                202,
                json!({
                    "batchId": batch.id,
                    "received": admission.items,
                    "accepted": tally.accepted,
                    "duplicates": tally.duplicates,
                    "pending": pending,
                    "waitingForApproval": tally.held,
                    "approvalRequestsOpened": tally.requests,
                    "rejected": rejected,
                    "paused": batch.paused,
                    "admission": {
                        "post": admission.post,
                        "pages": admission.pages,
                        "admittedPages": admission.next_page,
                        "complete": admission.is_done(),
                    },
                }),
            )
        }
        BatchOutcome::Unauthorized(e) => {
            HttpAnswer::error(401, "unauthorized", unauthorized_message(e))
        }
        BatchOutcome::TooLarge { size, limit } => ingest_answer(&IngestOutcome::TooLarge {
            size: *size,
            limit: *limit,
        }),
        BatchOutcome::Invalid(errors) => HttpAnswer::new(
            400,
            json!({
                "error": "invalid_batch",
                "message": "the batch is unreadable: no item was admitted",
                "errors": errors,
            }),
        ),
        BatchOutcome::Conflict(id) => HttpAnswer::new(
            409,
            json!({
                "error": "conflict",
                "message": format!("batch {id} belongs to another sourceSystem; choose another batchId"),
                "batchId": id,
            }),
        ),
    }
}

pub fn batch_view_answer(view: &BatchView) -> HttpAnswer {
    let b = &view.batch;
    let p = &view.progress;
    let counts: serde_json::Map<String, Value> = p
        .counts
        .iter()
        .map(|(state, n)| (state.as_str().to_string(), json!(n)))
        .collect();
    HttpAnswer::new(
        200,
        json!({
            "batchId": b.id,
            "sourceSystem": b.source_system,
            "paused": b.paused,
            "received": b.received,
            "accepted": b.accepted,
            "duplicates": b.duplicates,
            "rejected": b.rejected,
            "rejectedTotal": b.rejected_total.max(b.rejected.len() as u32),
            "counts": counts,
            "finished": p.finished,
            "remaining": p.remaining,
            "pointsSpent": p.points,
            "etaSeconds": p.eta_seconds,
            "createdAt": b.created_at.to_rfc3339(),
            "updatedAt": b.updated_at.to_rfc3339(),
        }),
    )
}

/// `GET /v1/stats`: the hotspot figures of the last `hours` hours.
pub fn stats_answer(stats: &CallStats, hours: u32) -> HttpAnswer {
    let endpoints: Vec<Value> = stats
        .endpoints
        .iter()
        .map(|(endpoint, e)| {
            json!({
                "endpoint": endpoint,
                "operation": operation_name(endpoint),
                "requests": e.requests,
                "throttled": e.throttled,
                "points": e.points,
            })
        })
        .collect();
    let issues: Vec<Value> = stats
        .top_issues(10)
        .into_iter()
        .map(|(issue, n)| json!({ "issue": issue, "throttled": n }))
        .collect();
    HttpAnswer::new(
        200,
        json!({
            "hours": hours,
            "requests": stats.requests,
            "throttled": stats.throttled,
            "points": stats.points,
            "throttledByReason": stats.throttled_by_reason,
            "endpoints": endpoints,
            "topThrottledIssues": issues,
            "senders": stats.senders,
        }),
    )
}

/// `POST /v1/sources/{name}`: 202 for what was accepted, with every
/// rejected item named (by its path in the payload) and kept.
pub fn intake_answer(outcome: &IntakeOutcome) -> HttpAnswer {
    match outcome {
        IntakeOutcome::UnknownSource => not_found("source"),
        IntakeOutcome::Unauthorized(AuthError::NoSecret) => HttpAnswer::error(
            503,
            "not_configured",
            "this source has no secret configured on the server",
        ),
        IntakeOutcome::Unauthorized(e) => HttpAnswer::error(401, "unauthorized", e.to_string()),
        IntakeOutcome::TooLarge { size, limit } => ingest_answer(&IngestOutcome::TooLarge {
            size: *size,
            limit: *limit,
        }),
        IntakeOutcome::Unreadable { errors, rejection } => HttpAnswer::new(
            400,
            json!({
                "error": "invalid_payload",
                "message": "the payload is not JSON; it is kept for an operator",
                "errors": errors,
                "rejectionId": rejection,
            }),
        ),
        IntakeOutcome::Received {
            source,
            items,
            ignored,
        } => {
            let mut accepted = Vec::new();
            let mut rejected = Vec::new();
            for item in items {
                match &item.result {
                    Ok(IngestOutcome::Accepted {
                        job_id,
                        state,
                        duplicate,
                        ..
                    }) => accepted.push(json!({
                        "item": item.path, "jobId": job_id, "state": state, "duplicate": duplicate
                    })),
                    Ok(_) => {}
                    Err((errors, rejection)) => rejected.push(json!({
                        "item": item.path, "rejectionId": rejection, "errors": errors
                    })),
                }
            }
            let ignored: Vec<_> = ignored
                .iter()
                .map(|i| json!({ "item": i.path, "reason": i.reason }))
                .collect();
            HttpAnswer::new(
                202,
                json!({
                    "source": source,
                    "accepted": accepted,
                    "rejected": rejected,
                    "ignored": ignored,
                }),
            )
        }
    }
}

pub fn unauthorized(e: &SignatureError) -> HttpAnswer {
    HttpAnswer::error(401, "unauthorized", unauthorized_message(e))
}

pub fn not_found(what: &str) -> HttpAnswer {
    HttpAnswer::error(404, "not_found", format!("no such {what}"))
}

/// `POST /v1/jobs/{id}/retry` (and `tollgate jobs retry --output json`).
pub fn retry_answer(outcome: &crate::app::operations::Retried) -> HttpAnswer {
    use crate::app::operations::Retried;
    match outcome {
        Retried::Queued(job) => HttpAnswer::new(
            200,
            json!({"jobId": job.id, "state": job.state, "retried": true}),
        ),
        Retried::NotRetryable(state) => HttpAnswer::error(
            409,
            "not_retryable",
            format!("the job is {state}: only FAILED and EXHAUSTED jobs run again"),
        ),
        Retried::NotFound => not_found("job"),
    }
}

/// `POST /v1/jobs/{id}/cancel` (and `tollgate jobs cancel --output json`).
pub fn cancel_answer(outcome: &crate::app::operations::Cancelled) -> HttpAnswer {
    use crate::app::operations::Cancelled;
    match outcome {
        Cancelled::Cancelled {
            job,
            merged,
            closed_approval,
        } => HttpAnswer::new(
            200,
            json!({"jobId": job.id, "state": job.state, "reason": job.last_error,
                   "mergedCancelled": merged, "closedApprovalId": closed_approval}),
        ),
        Cancelled::NotCancellable(state) => HttpAnswer::error(
            409,
            "not_cancellable",
            format!(
                "the job is {state}: only QUEUED, WAITING and PENDING_APPROVAL jobs can be cancelled"
            ),
        ),
        Cancelled::NotFound => not_found("job"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::validation::FieldError;

    #[test]
    fn invalid_events_answer_400_with_every_field_named() {
        let a = ingest_answer(&IngestOutcome::Invalid {
            errors: vec![
                FieldError::new("externalId", "is required"),
                FieldError::new("projectKey", "is required"),
            ],
            rejection: crate::domain::rejection::RejectionId::generate(),
        });
        assert_eq!(a.status, 400);
        assert_eq!(a.body["errors"][1]["field"], "projectKey");
    }

    #[test]
    fn a_forged_signature_and_a_malformed_one_read_the_same() {
        let m = ingest_answer(&IngestOutcome::Unauthorized(SignatureError::Mismatch));
        let f = ingest_answer(&IngestOutcome::Unauthorized(SignatureError::Malformed));
        assert_eq!((m.status, &m.body), (401, &f.body));
    }

    #[test]
    fn only_json_or_an_unlabelled_body_is_accepted() {
        assert_eq!(refuse_content_type(None), None);
        assert_eq!(
            refuse_content_type(Some("application/json; charset=utf-8")),
            None
        );
        assert_eq!(
            refuse_content_type(Some("text/plain")).map(|a| a.status),
            Some(415)
        );
    }

    #[test]
    fn too_large_names_the_limit() {
        let a = ingest_answer(&IngestOutcome::TooLarge {
            size: 300_000,
            limit: 262_144,
        });
        assert_eq!(a.status, 413);
        assert!(a.body["message"].as_str().unwrap().contains("262144"));
    }
}
