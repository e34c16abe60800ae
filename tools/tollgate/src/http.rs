//! The `serve` HTTP entrypoint: translates requests to the shared use cases
//! and their answers (via `tollgate::app::api`) back to HTTP. No rules here.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;
use tokio::sync::Notify;
use tollgate::adapters::sqlite::SqliteDb;
use tollgate::app::api::{HttpAnswer, refuse_content_type};
use tollgate::app::ingest::Ingest;
use tollgate::app::jobs::get_job;
use tollgate::domain::limits::MAX_BODY_BYTES;
use tollgate::domain::secret::Secret;
use tollgate::domain::signature;
use tollgate::ports::SystemClock;

pub struct AppState {
    pub db: SqliteDb,
    pub secrets: Vec<Secret>,
    /// Wakes idle workers when work arrives.
    pub wake: Arc<Notify>,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/events", post(post_event))
        .route("/v1/jobs/{job_id}", get(get_job_route))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

fn answer(a: HttpAnswer) -> Response {
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(a.body)).into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
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
    let ingest = Ingest {
        store: &state.db,
        queue: &state.db,
        clock: &SystemClock,
        secrets: &state.secrets,
    };
    match ingest.handle(&body, signature_header(&parts.headers)).await {
        Ok(outcome) => {
            state.wake.notify_waiters();
            answer(tollgate::app::api::ingest_answer(&outcome))
        }
        Err(e) => internal(e),
    }
}

async fn get_job_route(State(state): State<Arc<AppState>>, Path(job_id): Path<String>) -> Response {
    match get_job(&state.db, &job_id).await {
        Ok(a) => answer(a),
        Err(e) => internal(e),
    }
}
