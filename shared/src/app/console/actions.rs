//! What the console's forms post (`/ui/act`): each action goes through the
//! operator use cases in the signed-in operator's name, and comes back as a
//! sentence for the page it returns to.

use super::{Console, ConsoleQueue, ConsoleStore, Fields};
use crate::app::AppError;
use crate::app::api::HttpAnswer;
use crate::app::approvals::open_batch_requests;
use crate::app::batches::set_paused;
use crate::domain::approval::Decision;
use crate::domain::ids::BatchId;
use crate::domain::rejection::RejectionId;
use crate::ports::{Clock, Notifier};
use serde_json::Value;

/// What became of an operator-route answer, in words.
fn said(a: &HttpAnswer, ok: &str) -> String {
    if a.status < 300 {
        ok.to_string()
    } else {
        a.body["message"].as_str().unwrap_or("refused").to_string()
    }
}

/// Runs a form's action as `operator`; what became of it, in words.
pub(super) async fn act<S, Q, C, N>(
    console: &Console<'_, S, Q, C, N>,
    operator: &str,
    form: &Fields,
) -> Result<String, AppError>
where
    S: ConsoleStore,
    Q: ConsoleQueue,
    C: Clock,
    N: Notifier,
{
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let api = &console.api;
    let action = field("action");
    tracing::info!(operator, action, "console action");
    Ok(match action {
        "retry" => said(&api.retry_as(field("job"), operator).await?, "queued again"),
        "cancel" => said(
            &api.cancel_as(field("job"), operator, field("reason"))
                .await?,
            "cancelled",
        ),
        "approve" | "deny" => {
            let decision = if action == "approve" {
                Decision::Approve
            } else {
                Decision::Deny
            };
            let a = api.decide_as(field("approval"), decision, operator).await?;
            said(
                &a,
                if action == "approve" {
                    "approved"
                } else {
                    "denied"
                },
            )
        }
        "approve-batch" => {
            let Some(batch) = BatchId::parse(field("batch")) else {
                return Ok("no such batch".into());
            };
            let mut approved = 0;
            for a in open_batch_requests(api.store, &batch, None).await? {
                let answer = api
                    .decide_as(a.id.as_str(), Decision::Approve, operator)
                    .await?;
                if answer.status < 300 {
                    approved += 1;
                }
            }
            format!("approved {approved} request(s) of batch {batch}")
        }
        "pause" | "resume" => {
            let Some(batch) = BatchId::parse(field("batch")) else {
                return Ok("no such batch".into());
            };
            match set_paused(api.store, api.clock, &batch, action == "pause").await? {
                Some(_) => format!("batch {batch} {action}d by {operator}"),
                None => "no such batch".into(),
            }
        }
        "resubmit" => {
            let edited = match serde_json::from_str::<Value>(field("body").trim()) {
                Ok(v) => v,
                Err(e) => return Ok(format!("the body is not JSON: {e}")),
            };
            let a = api
                .resubmit_as(field("rejection"), operator, Some(&edited))
                .await?;
            if a.status == 422 {
                let reasons: Vec<String> = a.body["errors"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| {
                        format!(
                            "{}: {}",
                            e["field"].as_str().unwrap_or(""),
                            e["message"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                format!("still invalid: {}", reasons.join("; "))
            } else {
                said(
                    &a,
                    &format!(
                        "re-submitted as job {}",
                        a.body["jobId"].as_str().unwrap_or("?")
                    ),
                )
            }
        }
        "discard" => {
            let Some(id) = RejectionId::parse(field("rejection")) else {
                return Ok("no such rejection".into());
            };
            let ingest = crate::app::ingest::Ingest {
                store: api.store,
                queue: api.queue,
                clock: api.clock,
                secrets: &[],
                policy: api.policy,
            };
            match ingest.discard(&id, operator, field("reason")).await? {
                crate::app::ingest::Discard::Done => format!("discarded by {operator}"),
                other => format!("not discarded: {other:?}"),
            }
        }
        other => format!("unknown action {other:?}"),
    })
}
