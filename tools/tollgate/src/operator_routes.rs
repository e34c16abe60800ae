//! `serve`'s operator routes: translate HTTP to [`OperatorApi`] after the
//! operator token is checked, and the unauthenticated probes (`/healthz`,
//! `/readyz`, `/metrics`). No rules here.

use crate::http::{AppState, answer, internal};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;
use tollgate::adapters::sqlite::SqliteDb;
use tollgate::adapters::webhook_notifier::Notifiers;
use tollgate::app::api::HttpAnswer;
use tollgate::app::approvals::Links;
use tollgate::app::operator_api::{OperatorApi, access_refusal};
use tollgate::domain::approval::Decision;
use tollgate::domain::operator_auth;
use tollgate::ports::{CensusStore, GovernorStore, SystemClock};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/jobs/{job_id}/retry", post(retry))
        .route("/v1/jobs/{job_id}/cancel", post(cancel))
        .route("/v1/approval-requests", get(approval_requests))
        .route("/v1/approval-requests/{id}", get(approval_request))
        .route("/v1/approval-requests/{id}/{action}", post(approval_action))
        .route("/v1/rejections", get(rejections))
        .route("/v1/rejections/{id}/resubmit", post(resubmit))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// `?limit=N` (1–500, default 50), read by hand so a malformed query gets
/// the contract's JSON 400 rather than the framework's plain-text one.
fn limit(query: Option<&str>) -> Result<usize, HttpAnswer> {
    let mut limit = 50;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name != "limit" {
            continue;
        }
        limit = match value.parse::<usize>() {
            Ok(n) if (1..=500).contains(&n) => n,
            _ => {
                return Err(HttpAnswer::new(
                    400,
                    serde_json::json!({"error": "invalid_request", "message": "limit: a whole number from 1 to 500",
                        "errors": [{"field": "limit", "message": "a whole number from 1 to 500"}]}),
                ));
            }
        };
    }
    Ok(limit)
}

impl AppState {
    pub(crate) fn operator_api(
        &self,
    ) -> OperatorApi<'_, SqliteDb, SqliteDb, SystemClock, Notifiers> {
        OperatorApi {
            store: &self.db,
            queue: &self.db,
            clock: &SystemClock,
            links: Links {
                keys: &self.link_keys,
                base_url: &self.public_url,
            },
            notifier: self.notifiers.as_ref(),
            policy: &self.policy,
            sources: Some(&self.intake.sources),
        }
    }

    /// The refusal for a request without a valid operator token.
    fn refuse_operator(&self, headers: &HeaderMap) -> Option<Response> {
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let access = operator_auth::check(&self.operator_tokens, auth);
        access_refusal(access).map(|r| {
            tracing::warn!(why = access.as_str(), "operator route refused");
            answer(r)
        })
    }
}

/// Runs an operator use case once the token is accepted.
macro_rules! operator {
    ($state:expr, $headers:expr, $call:expr) => {{
        if let Some(refused) = $state.refuse_operator(&$headers) {
            return refused;
        }
        match $call.await {
            Ok(a) => {
                $state.wake.notify_waiters();
                answer(a)
            }
            Err(e) => internal(e),
        }
    }};
}

async fn retry(
    State(state): State<Arc<AppState>>,
    Path(job_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    operator!(state, headers, state.operator_api().retry(&job_id, &body))
}

async fn cancel(
    State(state): State<Arc<AppState>>,
    Path(job_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    operator!(state, headers, state.operator_api().cancel(&job_id, &body))
}

async fn approval_requests(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let limit = match limit(query.as_deref()) {
        Ok(n) => n,
        Err(r) => return answer(r),
    };
    operator!(
        state,
        headers,
        state.operator_api().approval_requests(limit)
    )
}

async fn approval_request(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    operator!(state, headers, state.operator_api().approval_request(&id))
}

async fn approval_action(
    State(state): State<Arc<AppState>>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = state.refuse_operator(&headers) {
        return refused;
    }
    let api = state.operator_api();
    let outcome = match action.as_str() {
        "resend" => api.resend(&id).await,
        "approve" => api.decide(&id, Decision::Approve, &body).await,
        "deny" => api.decide(&id, Decision::Deny, &body).await,
        _ => return answer(tollgate::app::api::not_found("approval action")),
    };
    match outcome {
        Ok(a) => {
            state.wake.notify_waiters();
            answer(a)
        }
        Err(e) => internal(e),
    }
}

async fn rejections(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let limit = match limit(query.as_deref()) {
        Ok(n) => n,
        Err(r) => return answer(r),
    };
    operator!(state, headers, state.operator_api().rejections(limit))
}

async fn resubmit(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    operator!(state, headers, state.operator_api().resubmit(&id, &body))
}

/// `GET /v1/batches` shares its path with `POST /v1/batches` (http.rs).
pub async fn batches(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let limit = match limit(query.as_deref()) {
        Ok(n) => n,
        Err(r) => return answer(r),
    };
    operator!(state, headers, state.operator_api().batches(limit))
}

/// The process is up.
async fn healthz() -> Response {
    answer(HttpAnswer::new(200, serde_json::json!({"status": "ok"})))
}

/// Ready for work: the store answers, and the Jira site is not in degraded
/// mode (read from the governor's record of Jira's last answers — no call
/// is made, no quota spent).
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if let Err(e) = state.db.ping().await {
        tracing::warn!(error = %e, "readiness: the store does not answer");
        return answer(HttpAnswer::new(
            503,
            serde_json::json!({"status": "unavailable", "store": "unreachable", "jira": "unknown"}),
        ));
    }
    match state.db.load_governor(&state.site).await {
        Ok((g, _)) => match &g.health.degraded {
            Some(d) => answer(HttpAnswer::new(
                503,
                serde_json::json!({"status": "degraded", "store": "ok",
                    "jira": format!("degraded since {}: {}", d.since.to_rfc3339(), d.reason)}),
            )),
            None => answer(HttpAnswer::new(
                200,
                serde_json::json!({"status": "ready", "store": "ok", "jira": "ok"}),
            )),
        },
        Err(e) => internal(e),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let snapshot =
        match tollgate::app::metrics::snapshot(&state.db, &state.db, &SystemClock, &state.site)
            .await
        {
            Ok(s) => s,
            Err(e) => return internal(e),
        };
    match crate::metrics::encode(&snapshot) {
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
            text,
        )
            .into_response(),
        Err(e) => internal(e),
    }
}
