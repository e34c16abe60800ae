//! The `serve` HTTP entrypoint: translates requests to the shared use cases
//! and their answers (via `tollgate::app::api`) back to HTTP. No rules here.

use crate::config::IntakeSettings;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;
use tokio::sync::Notify;
use tollgate::adapters::sqlite::SqliteDb;
use tollgate::app::api::{HttpAnswer, batch_answer, intake_answer, not_found, refuse_content_type};
use tollgate::app::approval_page::{HtmlAnswer, PAGE_HEADERS, decide_answer, view_answer};
use tollgate::app::approvals::{Approvals, Links};
use tollgate::app::batches::{BatchAction, BatchOutcome, batch_request};
use tollgate::app::ingest::{Ingest, IngestOutcome};
use tollgate::app::intake::{Intake, IntakeOutcome, MAX_SOURCE_BYTES};
use tollgate::app::jobs::get_job;
use tollgate::app::stats::stats_request;
use tollgate::domain::batch::MAX_BATCH_BYTES;
use tollgate::domain::job::JobState;
use tollgate::domain::limits::MAX_BODY_BYTES;
use tollgate::domain::policy::Policy;
use tollgate::domain::secret::Secret;
use tollgate::domain::signature;
use tollgate::ports::SystemClock;

pub struct AppState {
    pub db: SqliteDb,
    pub secrets: Vec<Secret>,
    /// Wakes idle workers when work arrives.
    pub wake: Arc<Notify>,
    pub policy: Policy,
    /// Approval link keys, newest first.
    pub link_keys: Vec<Secret>,
    pub public_url: String,
    /// Wakes the approvals sweep (notifications) when a request arrives.
    pub approvals_wake: Arc<Notify>,
    /// Senders posting their own payloads, and their secrets.
    pub intake: IntakeSettings,
    /// Where approval requests and exhausted work are announced.
    pub notifiers: Arc<tollgate::adapters::webhook_notifier::Notifiers>,
    /// Bearer tokens of the operator routes; none turns them off.
    pub operator_tokens: Vec<Secret>,
    /// The Jira site's governor row (readiness, metrics).
    pub site: String,
}

impl AppState {
    pub fn approvals(&self) -> Approvals<'_, SqliteDb, SqliteDb, SystemClock> {
        Approvals {
            store: &self.db,
            queue: &self.db,
            clock: &SystemClock,
            links: Links {
                keys: &self.link_keys,
                base_url: &self.public_url,
            },
        }
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/events", post(post_event))
        .route("/v1/jobs/{job_id}", get(get_job_route))
        .route("/v1/stats", get(get_stats))
        .route("/v1/sources/{name}", post(post_source))
        .route(
            "/v1/batches",
            post(post_batch).get(crate::operator_routes::batches),
        )
        .route("/v1/batches/{batch_id}", get(get_batch))
        .route("/v1/batches/{batch_id}/{action}", post(control_batch))
        .route(
            "/v1/approvals/{token}",
            get(view_approval).post(decide_approval),
        )
        .merge(crate::operator_routes::routes())
        .merge(crate::console_routes::routes())
        // The contract's error body on every status, 404 and 405 included.
        .fallback(|| async { answer(not_found("route")) })
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            answer(HttpAnswer::error(
                405,
                "method_not_allowed",
                format!("{method} is not allowed here"),
            ))
        })
        .layer(axum::middleware::from_fn(crate::access_log::log))
        .with_state(state)
}

pub(crate) fn answer(a: HttpAnswer) -> Response {
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(a.body)).into_response()
}

pub(crate) fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "request failed");
    answer(HttpAnswer::error(
        503,
        "unavailable",
        "storage is unavailable; retry later",
    ))
}

/// Reads at most `MAX_BODY_BYTES + 1` so an oversized body is refused with
/// the contract's 413 without buffering it whole.
async fn read_body(body: Body) -> Result<axum::body::Bytes, Response> {
    match axum::body::to_bytes(body, MAX_BODY_BYTES + 1).await {
        Ok(b) => Ok(b),
        Err(_) => Err(answer(tollgate::app::api::ingest_answer(
            &tollgate::app::ingest::IngestOutcome::TooLarge {
                size: MAX_BODY_BYTES + 1,
                limit: MAX_BODY_BYTES,
            },
        ))),
    }
}

fn signature_header(headers: &HeaderMap) -> Option<&str> {
    headers.get(signature::HEADER).and_then(|v| v.to_str().ok())
}

async fn post_event(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if let Some(refusal) = refuse_content_type(content_type) {
        return answer(refusal);
    }
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let headers = &parts.headers;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    match state.ingest().handle_delivery(&body, header).await {
        Ok(outcome) => {
            state.wake.notify_waiters();
            if let IngestOutcome::Accepted {
                state: JobState::PendingApproval,
                duplicate: false,
                ..
            } = &outcome
            {
                // A new request: tell its approvers now, not at the next tick.
                state.approvals_wake.notify_one();
            }
            answer(tollgate::app::api::ingest_answer(&outcome))
        }
        Err(e) => internal(e),
    }
}

impl AppState {
    pub fn ingest(&self) -> Ingest<'_, SqliteDb, SqliteDb, SystemClock> {
        Ingest {
            store: &self.db,
            queue: &self.db,
            clock: &SystemClock,
            secrets: &self.secrets,
            policy: &self.policy,
        }
    }
}

async fn post_batch(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if let Some(refusal) = refuse_content_type(content_type) {
        return answer(refusal);
    }
    let body = match axum::body::to_bytes(body, MAX_BATCH_BYTES + 1).await {
        Ok(b) => b,
        Err(_) => {
            return answer(batch_answer(&BatchOutcome::TooLarge {
                size: MAX_BATCH_BYTES + 1,
                limit: MAX_BATCH_BYTES,
            }));
        }
    };
    match state
        .ingest()
        .submit_batch(&body, signature_header(&parts.headers), None)
        .await
    {
        Ok(outcome) => {
            state.wake.notify_waiters();
            state.approvals_wake.notify_one();
            answer(batch_answer(&outcome))
        }
        Err(e) => internal(e),
    }
}

async fn get_batch(
    State(state): State<Arc<AppState>>,
    Path(batch_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    batch_route(&state, BatchAction::View, &batch_id, &headers).await
}

async fn control_batch(
    State(state): State<Arc<AppState>>,
    Path((batch_id, action)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    match BatchAction::parse(Some(&action)) {
        Some(a @ (BatchAction::Pause | BatchAction::Resume)) => {
            let r = batch_route(&state, a, &batch_id, &headers).await;
            state.wake.notify_waiters();
            r
        }
        _ => answer(not_found("batch action")),
    }
}

/// Batch reads and controls carry no body; the signature covers the empty one.
async fn batch_route(
    state: &AppState,
    action: BatchAction,
    batch_id: &str,
    headers: &HeaderMap,
) -> Response {
    match batch_request(
        &state.ingest(),
        action,
        batch_id,
        b"",
        signature_header(headers),
    )
    .await
    {
        Ok(a) => answer(a),
        Err(e) => internal(e),
    }
}

async fn post_source(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_SOURCE_BYTES + 1).await {
        Ok(b) => b,
        Err(_) => {
            return answer(intake_answer(&IntakeOutcome::TooLarge {
                size: MAX_SOURCE_BYTES + 1,
                limit: MAX_SOURCE_BYTES,
            }));
        }
    };
    let ingest = state.ingest();
    let intake = Intake {
        ingest: &ingest,
        sources: &state.intake.sources,
        secrets: &state.intake.secrets,
    };
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    match intake.receive(&name, header, &body).await {
        Ok(outcome) => {
            state.wake.notify_waiters();
            state.approvals_wake.notify_one();
            answer(intake_answer(&outcome))
        }
        Err(e) => internal(e),
    }
}

/// The raw query goes to the use case: a malformed one must get the
/// contract's JSON 400 after the signature check, not the framework's
/// plain-text rejection before it.
async fn get_stats(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    match stats_request(
        &state.ingest(),
        query.as_deref(),
        signature_header(&headers),
    )
    .await
    {
        Ok(a) => answer(a),
        Err(e) => internal(e),
    }
}

async fn get_job_route(State(state): State<Arc<AppState>>, Path(job_id): Path<String>) -> Response {
    match get_job(&state.db, &job_id).await {
        Ok(a) => answer(a),
        Err(e) => internal(e),
    }
}

fn html(a: HtmlAnswer) -> Response {
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (status, a.html).into_response();
    for (name, value) in PAGE_HEADERS {
        r.headers_mut()
            .insert(name, axum::http::HeaderValue::from_static(value));
    }
    r
}

/// The confirmation page. Never decides: link scanners fetch it.
async fn view_approval(State(state): State<Arc<AppState>>, Path(token): Path<String>) -> Response {
    match state.approvals().view(&token).await {
        Ok(outcome) => html(view_answer(&outcome)),
        Err(e) => internal(e),
    }
}

async fn decide_approval(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
) -> Response {
    match state.approvals().decide(&token).await {
        Ok(outcome) => {
            state.wake.notify_waiters();
            html(decide_answer(&outcome))
        }
        Err(e) => internal(e),
    }
}
