//! The ingest function: API Gateway (HTTP API) requests in, the v1 contract's
//! answers out — the same status codes and bodies as `tollgate serve`, since
//! both answer through `tollgate::app::api`. No rule lives here.

use lambda_http::http::{Method, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tollgate::adapters::sqs::SqsQueue;
use tollgate::app::AppError;
use tollgate::app::api::{
    HttpAnswer, batch_answer, ingest_answer, intake_answer, not_found, refuse_content_type,
};
use tollgate::app::approvals::{Approvals, Links};
use tollgate::app::batches::{BatchAction, BatchOutcome, batch_request};
use tollgate::app::ingest::{Ingest, IngestOutcome};
use tollgate::app::intake::Intake;
use tollgate::app::jobs::get_job;
use tollgate::app::stats::stats_request;
use tollgate::domain::admission::PostId;
use tollgate::domain::ids::BatchId;
use tollgate::domain::ids::JobId;
use tollgate::domain::job::JobState;
use tollgate::domain::secret::Secret;
use tollgate::domain::signature;
use tollgate::domain::source::Sources;
use tollgate::domain::time::Timestamp;
use tollgate::ports::StoreError;
use tollgate::ports::{Clock, IngestStore, Notifier, StatsStore, WorkQueue};

/// Where a batch admission that runs out of the request's time goes on
/// (the bulk queue, for the executor).
pub trait Continue: Send + Sync {
    fn continue_admission(
        &self,
        batch: &BatchId,
        post: &PostId,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send;
}

impl Continue for SqsQueue {
    async fn continue_admission(&self, batch: &BatchId, post: &PostId) -> Result<(), StoreError> {
        SqsQueue::continue_admission(self, batch, post).await
    }
}

/// Time a batch request keeps for itself after its last page (a page
/// starts only if, as slow as the slowest so far, it ends before this):
/// answering, and the continuation's message.
pub const BATCH_ANSWER_MARGIN: Duration = Duration::from_secs(2);

/// What the function needs, built once at init.
pub struct App<'a, S, Q, C, N> {
    pub ingest: Ingest<'a, S, Q, C>,
    /// Senders posting their own payloads, and their secrets.
    pub sources: &'a Sources,
    pub source_secrets: &'a HashMap<String, Vec<Secret>>,
    /// To notify approvers of a request the event just opened.
    pub approvals: Approvals<'a, S, Q, C>,
    pub notifier: &'a N,
}

/// What the function routes.
#[derive(Debug, PartialEq, Eq)]
enum Route<'p> {
    PostEvent,
    GetJob(&'p str),
    PostBatch,
    Batch(&'p str, BatchAction),
    Stats,
    Source(&'p str),
    Health,
    WrongMethod,
    Unknown,
}

/// The route of `path`, ignoring an API Gateway stage prefix (`/prod/v1/…`).
fn route<'p>(method: &Method, path: &'p str) -> Route<'p> {
    let path = path.find("/v1/").map_or(path, |i| &path[i..]);
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match (segments.as_slice(), method) {
        (["", "v1", "events"], &Method::POST) => Route::PostEvent,
        (["", "v1", "jobs", id], &Method::GET) => Route::GetJob(id),
        (["", "v1", "batches"], &Method::POST) => Route::PostBatch,
        (["", "v1", "stats"], &Method::GET) => Route::Stats,
        (["", "v1", "sources", name], &Method::POST) => Route::Source(name),
        (["", "v1", "sources", _], _) => Route::WrongMethod,
        (["", "v1", "stats"], _) => Route::WrongMethod,
        (["", "v1", "batches", id], &Method::GET) => Route::Batch(id, BatchAction::View),
        (["", "v1", "batches", id, action], &Method::POST) => {
            match BatchAction::parse(Some(action)) {
                Some(a @ (BatchAction::Pause | BatchAction::Resume)) => Route::Batch(id, a),
                _ => Route::Unknown,
            }
        }
        (["", "v1", "batches"] | ["", "v1", "batches", _] | ["", "v1", "batches", _, _], _) => {
            Route::WrongMethod
        }
        (["", "v1", "events"] | ["", "v1", "jobs", _], _) => Route::WrongMethod,
        (["", "healthz"], &Method::GET) => Route::Health,
        _ => Route::Unknown,
    }
}

/// A request header as text (absent when missing or not UTF-8).
fn header_of<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn respond(a: HttpAnswer) -> Response<Body> {
    let mut r = Response::new(Body::Text(a.body.to_string()));
    *r.status_mut() = StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

/// A store or queue failure: the sender should retry (its redelivery is
/// deduplicated), so 503 rather than 500.
fn unavailable(e: AppError) -> Response<Body> {
    tracing::error!(error = %e, "request failed");
    respond(HttpAnswer::error(
        503,
        "unavailable",
        "storage is unavailable; retry later",
    ))
}

/// Tells the approvers of a request this event opened. A failure leaves
/// the request unnotified for the sweep; the event is accepted either way.
async fn notify_new_request<S, Q, C, N>(app: &App<'_, S, Q, C, N>, job_id: &JobId, req: &Request)
where
    S: IngestStore,
    Q: WorkQueue,
    C: Clock,
    N: Notifier,
{
    // Links point at TOLLGATE_PUBLIC_URL; without it, at the API this
    // request came through (its domain and stage).
    let derived = match app.approvals.links.base_url {
        "" => request_base_url(req),
        _ => None,
    };
    if derived.is_some() && !WARNED_NO_PUBLIC_URL.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            base = derived.as_deref().unwrap_or_default(),
            "TOLLGATE_PUBLIC_URL is not set: approval links use the API this request came through"
        );
    }
    let approvals = Approvals {
        links: Links {
            keys: app.approvals.links.keys,
            base_url: derived.as_deref().unwrap_or(app.approvals.links.base_url),
        },
        ..app.approvals
    };
    match app.approvals.store.approval_for_job(job_id).await {
        Ok(Some(approval)) => {
            if let Err(e) = approvals.notify(&approval, app.notifier).await {
                tracing::warn!(%job_id, error = %e, "approval notification not recorded");
            }
        }
        Ok(None) => tracing::error!(%job_id, "a job pending approval has no approval request"),
        Err(e) => tracing::warn!(%job_id, error = %e, "approval request unreadable"),
    }
}

static WARNED_NO_PUBLIC_URL: AtomicBool = AtomicBool::new(false);

/// The base URL a request came through: API Gateway's domain, and its
/// stage unless it is the default one (`https://abc.execute-api…/prod`).
pub fn request_base_url(req: &Request) -> Option<String> {
    let ctx = req.request_context_ref()?;
    let (domain, stage) = match ctx {
        RequestContext::ApiGatewayV2(c) => (c.domain_name.clone(), c.stage.clone()),
        RequestContext::ApiGatewayV1(c) => (c.domain_name.clone(), c.stage.clone()),
        _ => (None, None),
    };
    base_url(domain.as_deref(), stage.as_deref())
}

/// `https://DOMAIN[/STAGE]`; none without a domain.
pub fn base_url(domain: Option<&str>, stage: Option<&str>) -> Option<String> {
    let domain = domain.filter(|d| !d.is_empty())?;
    Some(match stage.filter(|s| !s.is_empty() && *s != "$default") {
        Some(stage) => format!("https://{domain}/{stage}"),
        None => format!("https://{domain}"),
    })
}

/// Handles one API Gateway request. Never fails: every outcome is an answer.
/// `deadline` is the invocation's (none when the runtime gave no usable one).
pub async fn handle<S, Q, C, N>(
    app: &App<'_, S, Q, C, N>,
    req: Request,
    deadline: Option<Timestamp>,
) -> Response<Body>
where
    S: IngestStore + StatsStore,
    Q: WorkQueue + Continue,
    C: Clock,
    N: Notifier,
{
    let ingest = &app.ingest;
    match route(req.method(), req.uri().path()) {
        Route::PostEvent => {
            if let Some(refusal) =
                refuse_content_type(header_of(&req, header::CONTENT_TYPE.as_str()))
            {
                return respond(refusal);
            }
            // The raw body as API Gateway delivered it (base64 decoded by
            // lambda_http): the signature covers these exact bytes.
            let header = |name: &str| header_of(&req, name).map(String::from);
            match ingest.handle_delivery(req.body().as_ref(), header).await {
                Ok(outcome) => {
                    if let IngestOutcome::Accepted {
                        job_id,
                        state: JobState::PendingApproval,
                        duplicate: false,
                        ..
                    } = &outcome
                    {
                        notify_new_request(app, job_id, &req).await;
                    }
                    respond(ingest_answer(&outcome))
                }
                Err(e) => unavailable(e),
            }
        }
        Route::PostBatch => {
            if let Some(refusal) =
                refuse_content_type(header_of(&req, header::CONTENT_TYPE.as_str()))
            {
                return respond(refusal);
            }
            let signature = header_of(&req, signature::HEADER);
            // Pages are admitted while the request waits, as long as the
            // invocation's time allows; the rest continues on the queue.
            let until = deadline.map(|d| Timestamp(d.0 - BATCH_ANSWER_MARGIN.as_millis() as i64));
            match ingest
                .submit_batch(req.body().as_ref(), signature, until)
                .await
            {
                Ok(outcome) => {
                    if let BatchOutcome::Accepted { admission, .. } = &outcome
                        && !admission.is_done()
                        && let Err(e) = ingest
                            .queue
                            .continue_admission(&admission.batch, &admission.post)
                            .await
                    {
                        // Stored, so not lost: the sweep resumes it within
                        // minutes.
                        tracing::warn!(batch = %admission.batch, error = %e, "admission continuation not sent; the sweep resumes it");
                    }
                    respond(batch_answer(&outcome))
                }
                Err(e) => unavailable(e),
            }
        }
        Route::Batch(id, action) => {
            let signature = header_of(&req, signature::HEADER);
            match batch_request(ingest, action, id, req.body().as_ref(), signature).await {
                Ok(a) => respond(a),
                Err(e) => unavailable(e),
            }
        }
        Route::Source(name) => {
            let intake = Intake {
                ingest,
                sources: app.sources,
                secrets: app.source_secrets,
            };
            let headers = req.headers();
            let header = |h: &str| {
                headers
                    .get(h)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            match intake.receive(name, header, req.body().as_ref()).await {
                Ok(outcome) => respond(intake_answer(&outcome)),
                Err(e) => unavailable(e),
            }
        }
        Route::Stats => {
            let signature = header_of(&req, signature::HEADER);
            match stats_request(ingest, req.uri().query(), signature).await {
                Ok(a) => respond(a),
                Err(e) => unavailable(e),
            }
        }
        Route::GetJob(id) => match get_job(ingest.store, id).await {
            Ok(a) => respond(a),
            Err(e) => unavailable(e),
        },
        Route::Health => respond(HttpAnswer::new(200, serde_json::json!({"status": "ok"}))),
        Route::WrongMethod => respond(HttpAnswer::error(
            405,
            "method_not_allowed",
            format!("{} is not allowed here", req.method()),
        )),
        Route::Unknown => respond(not_found("route")),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn links_without_a_public_url_use_the_domain_and_the_named_stage() {
        assert_eq!(
            base_url(
                Some("abc.execute-api.eu-west-1.amazonaws.com"),
                Some("prod")
            )
            .as_deref(),
            Some("https://abc.execute-api.eu-west-1.amazonaws.com/prod")
        );
        assert_eq!(
            base_url(
                Some("abc.execute-api.eu-west-1.amazonaws.com"),
                Some("$default")
            )
            .as_deref(),
            Some("https://abc.execute-api.eu-west-1.amazonaws.com")
        );
        assert_eq!(base_url(None, Some("prod")), None);
    }

    use super::*;

    #[test]
    fn routes_ignore_a_stage_prefix_and_a_trailing_slash() {
        assert_eq!(route(&Method::POST, "/v1/events"), Route::PostEvent);
        assert_eq!(route(&Method::POST, "/prod/v1/events/"), Route::PostEvent);
        assert_eq!(route(&Method::GET, "/v1/jobs/abc"), Route::GetJob("abc"));
        assert_eq!(route(&Method::GET, "/v1/events"), Route::WrongMethod);
        assert_eq!(route(&Method::GET, "/v1/jobs"), Route::Unknown);
        assert_eq!(route(&Method::GET, "/healthz"), Route::Health);
        assert_eq!(route(&Method::POST, "/v1/batches"), Route::PostBatch);
        assert_eq!(route(&Method::GET, "/prod/v1/stats"), Route::Stats);
        assert_eq!(
            route(&Method::POST, "/v1/sources/alertmanager"),
            Route::Source("alertmanager")
        );
        assert_eq!(
            route(&Method::GET, "/v1/sources/alertmanager"),
            Route::WrongMethod
        );
        assert_eq!(
            route(&Method::POST, "/prod/v1/batches/n-1/pause"),
            Route::Batch("n-1", BatchAction::Pause)
        );
        assert_eq!(
            route(&Method::GET, "/v1/batches/n-1"),
            Route::Batch("n-1", BatchAction::View)
        );
        assert_eq!(route(&Method::POST, "/v1/batches/n-1/stop"), Route::Unknown);
        assert_eq!(
            route(&Method::DELETE, "/v1/batches/n-1"),
            Route::WrongMethod
        );
    }
}
