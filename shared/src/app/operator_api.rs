//! The operator routes' use cases, HTTP-shaped (status and JSON body) so
//! every entrypoint answers alike: jobs retry and cancel, approval requests
//! list/show/resend/decide, batches list, rejections list/resubmit. Callers
//! check the operator token first ([`crate::domain::operator_auth`]); the
//! operator names themself in the body (`as`), for the audit trail.

use super::AppError;
use super::api::{
    HttpAnswer, batch_view_answer, cancel_answer, ingest_answer, not_found, retry_answer,
};
use super::approvals::{Approvals, DecideOutcome, Links, past_tense};
use super::batches::view_batch;
use super::ingest::{Ingest, Resubmission};
use super::operations::Operations;
use crate::domain::approval::{ApprovalId, ApprovalRecord, ApprovalStatus, Decision};
use crate::domain::ids::JobId;
use crate::domain::operator_auth::OperatorAccess;
use crate::domain::policy::Policy;
use crate::domain::rejection::{Rejection, RejectionId};
use crate::domain::source::Sources;
use crate::ports::{Clock, IngestStore, Notifier, WorkQueue};
use serde::Deserialize;
use serde_json::{Value, json};

/// What the operator routes need besides the stores.
pub struct OperatorApi<'a, S, Q, C, N> {
    pub store: &'a S,
    pub queue: &'a Q,
    pub clock: &'a C,
    pub links: Links<'a>,
    pub notifier: &'a N,
    /// The approval policy re-submitted events are admitted under.
    pub policy: &'a Policy,
    pub sources: Option<&'a Sources>,
}

/// The answer to a request whose token was not accepted.
pub fn access_refusal(access: OperatorAccess) -> Option<HttpAnswer> {
    match access {
        OperatorAccess::Allowed => None,
        OperatorAccess::Off => Some(HttpAnswer::error(
            401,
            "operator_routes_off",
            "operator routes are off: set TOLLGATE_OPERATOR_TOKEN",
        )),
        OperatorAccess::Missing => Some(HttpAnswer::error(
            401,
            "unauthorized",
            "send Authorization: Bearer <operator token>",
        )),
        OperatorAccess::Refused => Some(HttpAnswer::error(
            401,
            "unauthorized",
            "the operator token is not valid",
        )),
    }
}

/// The body of an operator's action: who, and why where it matters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    #[serde(rename = "as")]
    who: Option<String>,
    reason: Option<String>,
    /// A corrected body for a re-submission.
    body: Option<Value>,
}

fn bad_request(message: impl Into<String>) -> HttpAnswer {
    HttpAnswer::error(400, "invalid_request", message)
}

/// An operator's action, read from a route's JSON body (the console builds
/// one from its session instead).
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorAction {
    /// Who, for the audit trail.
    pub who: String,
    pub reason: Option<String>,
    /// A corrected body for a re-submission.
    pub body: Option<Value>,
}

impl OperatorAction {
    /// `{"as": NAME, "reason"?: TEXT, "body"?: JSON}`; an empty body names
    /// nobody and is refused.
    pub fn parse(raw: &[u8]) -> Result<OperatorAction, HttpAnswer> {
        let a: ActionBody = if raw.iter().all(u8::is_ascii_whitespace) {
            ActionBody {
                who: None,
                reason: None,
                body: None,
            }
        } else {
            serde_json::from_slice(raw)
                .map_err(|e| bad_request(format!("the body is not a valid action: {e}")))?
        };
        let who = a
            .who
            .map(|w| w.trim().to_string())
            .filter(|w| valid_operator(w))
            .ok_or_else(|| {
                bad_request("as: name the operator (not starting with \"tollgate:\")")
            })?;
        let reason = a
            .reason
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty());
        Ok(OperatorAction {
            who,
            reason,
            body: a.body,
        })
    }
}

/// A name an operator may act under: not empty, not tollgate's own.
fn valid_operator(who: &str) -> bool {
    !who.trim().is_empty() && !who.starts_with("tollgate:")
}

/// A request's status in one word.
pub fn approval_status(a: &ApprovalRecord, now: crate::domain::time::Timestamp) -> &'static str {
    match a.status(now) {
        ApprovalStatus::Pending => "pending",
        ApprovalStatus::Expired => "expired",
        ApprovalStatus::Decided(Decision::Approve) => "approved",
        ApprovalStatus::Decided(Decision::Deny) => "denied",
    }
}

/// A request as the operator routes and `--output json` show it.
pub fn approval_json(a: &ApprovalRecord, now: crate::domain::time::Timestamp) -> Value {
    json!({
        "approvalId": a.id, "status": approval_status(a, now), "jobId": a.job_id,
        "jobCount": 1 + a.also.len(), "rule": a.rule, "intent": a.intent,
        "requestedBy": a.requested_by, "approvers": a.approvers,
        "requestedAt": a.requested_at.to_rfc3339(), "expiresAt": a.expires_at.to_rfc3339(),
        "notified": a.notified,
        "decided": a.decided.as_ref().map(|d| json!({
            "decision": d.decision.as_str(), "by": d.by, "at": d.at.to_rfc3339()})),
    })
}

/// A rejection with its reasons (the body apart: it may be 256 KiB).
pub fn rejection_json(r: &Rejection) -> Value {
    json!({
        "rejectionId": r.id, "receivedAt": r.received_at.to_rfc3339(),
        "sourceSystem": r.source_system, "origin": r.origin,
        "status": r.status(), "errors": r.errors,
        "resubmittedAs": r.resubmitted_as,
        "discarded": r.discarded.as_ref().map(|d| json!({
            "by": d.by, "reason": d.reason, "at": d.at.to_rfc3339()})),
    })
}

impl<S, Q, C, N> OperatorApi<'_, S, Q, C, N>
where
    S: IngestStore,
    Q: WorkQueue,
    C: Clock,
    N: Notifier,
{
    fn operations(&self) -> Operations<'_, S, Q, C> {
        Operations {
            store: self.store,
            queue: self.queue,
            clock: self.clock,
        }
    }

    fn approvals(&self) -> Approvals<'_, S, Q, C> {
        Approvals {
            store: self.store,
            queue: self.queue,
            clock: self.clock,
            links: Links {
                keys: self.links.keys,
                base_url: self.links.base_url,
            },
        }
    }

    /// `POST /v1/jobs/{id}/retry`, body `{"as": NAME}`.
    pub async fn retry(&self, job_id: &str, body: &[u8]) -> Result<HttpAnswer, AppError> {
        match OperatorAction::parse(body) {
            Ok(a) => self.retry_as(job_id, &a.who).await,
            Err(refusal) => Ok(refusal),
        }
    }

    /// Re-queues FAILED or EXHAUSTED work in `who`'s name.
    pub async fn retry_as(&self, job_id: &str, who: &str) -> Result<HttpAnswer, AppError> {
        let Some(id) = JobId::parse(job_id) else {
            return Ok(not_found("job"));
        };
        Ok(retry_answer(&self.operations().retry(&id, who).await?))
    }

    /// `POST /v1/jobs/{id}/cancel`, body `{"as": NAME, "reason": TEXT}`.
    pub async fn cancel(&self, job_id: &str, body: &[u8]) -> Result<HttpAnswer, AppError> {
        match OperatorAction::parse(body) {
            Ok(a) => {
                self.cancel_as(job_id, &a.who, a.reason.as_deref().unwrap_or_default())
                    .await
            }
            Err(refusal) => Ok(refusal),
        }
    }

    /// Cancels waiting work in `who`'s name; a cancel says why.
    pub async fn cancel_as(
        &self,
        job_id: &str,
        who: &str,
        reason: &str,
    ) -> Result<HttpAnswer, AppError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Ok(bad_request("reason: say why"));
        }
        let Some(id) = JobId::parse(job_id) else {
            return Ok(not_found("job"));
        };
        Ok(cancel_answer(
            &self.operations().cancel(&id, who, reason).await?,
        ))
    }

    /// `GET /v1/approval-requests`: the undecided ones, oldest first.
    pub async fn approval_requests(&self, limit: usize) -> Result<HttpAnswer, AppError> {
        let now = self.clock.now();
        let open = self.store.open_approvals(limit).await?;
        let all: Vec<Value> = open.iter().map(|a| approval_json(a, now)).collect();
        Ok(HttpAnswer::new(200, json!({ "approvals": all })))
    }

    /// `GET /v1/approval-requests/{id}`: the request, its jobs and their
    /// states, and each approver's links.
    pub async fn approval_request(&self, raw: &str) -> Result<HttpAnswer, AppError> {
        let Some(a) = self.approval(raw).await? else {
            return Ok(not_found("approval request"));
        };
        let mut jobs = Vec::new();
        for id in a.jobs() {
            let state = self.store.job(id).await?.map(|j| j.state);
            jobs.push(json!({"jobId": id, "state": state}));
        }
        let mut body = approval_json(&a, self.clock.now());
        body["jobs"] = Value::Array(jobs);
        body["links"] =
            serde_json::to_value(self.approvals().notice(&a).approvers).unwrap_or(Value::Null);
        Ok(HttpAnswer::new(200, body))
    }

    async fn approval(&self, raw: &str) -> Result<Option<ApprovalRecord>, AppError> {
        let Some(id) = ApprovalId::parse(raw) else {
            return Ok(None);
        };
        Ok(self.store.approval(&id).await?)
    }

    /// `POST /v1/approval-requests/{id}/resend`: to its approvers again.
    pub async fn resend(&self, raw: &str) -> Result<HttpAnswer, AppError> {
        let Some(a) = self.approval(raw).await? else {
            return Ok(not_found("approval request"));
        };
        if a.status(self.clock.now()) != ApprovalStatus::Pending {
            return Ok(HttpAnswer::error(
                409,
                "not_pending",
                "the request is decided or expired: nothing to ask",
            ));
        }
        if !self.notifier.configured() {
            return Ok(HttpAnswer::error(
                409,
                "no_notifier",
                "no notifier is configured (Slack or the notify webhook)",
            ));
        }
        if self.approvals().notify(&a, self.notifier).await? {
            Ok(HttpAnswer::new(
                200,
                json!({"approvalId": a.id, "sentTo": a.approvers}),
            ))
        } else {
            Ok(HttpAnswer::error(
                502,
                "notify_failed",
                "the notifier refused it; the sweep tries again",
            ))
        }
    }

    /// `POST /v1/approval-requests/{id}/approve|deny`, body `{"as": NAME}`:
    /// an operator's decision, decide-once as the links are.
    pub async fn decide(
        &self,
        raw: &str,
        decision: Decision,
        body: &[u8],
    ) -> Result<HttpAnswer, AppError> {
        match OperatorAction::parse(body) {
            Ok(a) => self.decide_as(raw, decision, &a.who).await,
            Err(refusal) => Ok(refusal),
        }
    }

    /// Decides a request in `who`'s name.
    pub async fn decide_as(
        &self,
        raw: &str,
        decision: Decision,
        who: &str,
    ) -> Result<HttpAnswer, AppError> {
        let Some(id) = ApprovalId::parse(raw) else {
            return Ok(not_found("approval request"));
        };
        match self
            .approvals()
            .decide_as(&id, decision, who, "api")
            .await?
        {
            DecideOutcome::Decided { job, .. } => Ok(HttpAnswer::new(
                200,
                json!({"approvalId": id, "decision": past_tense(decision), "by": who,
                       "jobId": job.id, "state": job.state}),
            )),
            DecideOutcome::Refused(r) => Ok(HttpAnswer::error(r.status(), "refused", r.message())),
        }
    }

    /// `GET /v1/batches`: the newest batches with their progress.
    pub async fn batches(&self, limit: usize) -> Result<HttpAnswer, AppError> {
        let mut all = Vec::new();
        for id in self.store.recent_batches(limit).await? {
            if let Some(v) = view_batch(self.store, self.clock, &id).await? {
                all.push(batch_view_answer(&v).body);
            }
        }
        Ok(HttpAnswer::new(200, json!({ "batches": all })))
    }

    /// `GET /v1/rejections`: the manual queue, newest first.
    pub async fn rejections(&self, limit: usize) -> Result<HttpAnswer, AppError> {
        let found = self.store.rejections(limit).await?;
        let all: Vec<Value> = found.iter().map(rejection_json).collect();
        Ok(HttpAnswer::new(200, json!({ "rejections": all })))
    }

    /// `POST /v1/rejections/{id}/resubmit`, body `{"as": NAME, "body":
    /// CORRECTED?}`: as received, or corrected; validated before anything
    /// is admitted.
    pub async fn resubmit(&self, raw: &str, body: &[u8]) -> Result<HttpAnswer, AppError> {
        match OperatorAction::parse(body) {
            Ok(a) => self.resubmit_as(raw, &a.who, a.body.as_ref()).await,
            Err(refusal) => Ok(refusal),
        }
    }

    /// Re-submits a rejection in `who`'s name, as received or `corrected`.
    pub async fn resubmit_as(
        &self,
        raw: &str,
        who: &str,
        corrected: Option<&Value>,
    ) -> Result<HttpAnswer, AppError> {
        let Some(id) = RejectionId::parse(raw) else {
            return Ok(not_found("rejection"));
        };
        let corrected = corrected.map(|v| serde_json::to_vec(v).unwrap_or_default());
        let ingest = Ingest {
            store: self.store,
            queue: self.queue,
            clock: self.clock,
            secrets: &[],
            policy: self.policy,
        };
        let outcome = ingest
            .resubmit(&id, corrected.as_deref(), self.sources)
            .await?;
        tracing::info!(rejection_id = %id, by = %who, "rejection re-submitted by an operator");
        Ok(match outcome {
            Resubmission::Done(o) => ingest_answer(&o),
            Resubmission::StillInvalid(errors) => HttpAnswer::new(
                422,
                json!({"error": "invalid_event", "message": "still invalid", "errors": errors}),
            ),
            Resubmission::AlreadyResubmitted(job) => HttpAnswer::error(
                409,
                "already_resubmitted",
                format!("already re-submitted as job {job}"),
            ),
            Resubmission::Discarded(d) => HttpAnswer::error(
                409,
                "discarded",
                format!("discarded by {}: {}", d.by, d.reason),
            ),
            Resubmission::NeedsSender(source) => HttpAnswer::error(
                409,
                "needs_sender",
                format!("this rejection came from sender {source:?}, which is not configured"),
            ),
            Resubmission::NotFound => not_found("rejection"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_names_its_operator_and_nobody_else_passes() {
        let a = OperatorAction::parse(br#"{"as": " dana ", "reason": "  dup  "}"#).unwrap();
        assert_eq!((a.who.as_str(), a.reason.as_deref()), ("dana", Some("dup")));
        for refused in [&b""[..], br#"{"as": ""}"#, br#"{"as": "tollgate:sweep"}"#] {
            let answer = OperatorAction::parse(refused).unwrap_err();
            assert_eq!(answer.status, 400);
            assert!(answer.body["message"].as_str().unwrap().starts_with("as:"));
        }
        let unknown = OperatorAction::parse(br#"{"as": "dana", "why": "x"}"#).unwrap_err();
        assert!(unknown.body["message"].as_str().unwrap().contains("why"));
    }
}
