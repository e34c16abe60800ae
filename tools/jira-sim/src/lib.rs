//! jira-sim: an in-memory Jira Cloud for tests, the demo and benchmarks.
//!
//! It speaks the part of the REST v3 API tollgate uses, with Jira's status
//! codes and error bodies (`{"errorMessages":[…],"errors":{…}}`), basic and
//! bearer auth, issue and comment properties, a three-status workflow, and a
//! small JQL subset. `GET /_sim/report` lists everything it holds and finds
//! duplicates (two issues carrying one tollgate label, or two comments
//! carrying one tollgate marker), so tests can count them.

mod jql;
mod store;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::{SimError, SimStore};

/// How the simulator behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub email: String,
    pub api_token: String,
    /// Project keys that exist; creates elsewhere get Jira's 400.
    pub projects: Vec<String>,
    /// Added to every answer, to make work take time as real Jira does.
    pub latency: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            email: "sim@example.com".into(),
            api_token: "sim-token".into(),
            projects: ["OPS", "ASSET", "ITSM", "INC", "DEMO", "SEC"]
                .map(String::from)
                .to_vec(),
            latency: Duration::ZERO,
        }
    }
}

pub struct Sim {
    config: SimConfig,
    basic: String,
    store: Mutex<SimStore>,
}

type Shared = Arc<Sim>;

impl Sim {
    pub fn new(config: SimConfig) -> Shared {
        let creds = format!("{}:{}", config.email, config.api_token);
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(creds)
        );
        let store = Mutex::new(SimStore::new(&config.projects));
        Arc::new(Sim {
            config,
            basic,
            store,
        })
    }

    fn store(&self) -> std::sync::MutexGuard<'_, SimStore> {
        // A panic while holding the lock is a sim bug; keep serving anyway.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The report as `GET /_sim/report` answers it.
    pub fn report(&self) -> Value {
        self.store().report()
    }
}

pub fn router(sim: Shared) -> Router {
    let api = Router::new()
        .route("/rest/api/3/issue", post(create_issue))
        .route("/rest/api/3/issue/{key}", get(get_issue).put(edit_issue))
        .route(
            "/rest/api/3/issue/{key}/comment",
            get(list_comments).post(add_comment),
        )
        .route(
            "/rest/api/3/issue/{key}/transitions",
            get(list_transitions).post(do_transition),
        )
        .route("/rest/api/3/search/jql", post(search_post).get(search_get))
        .route("/rest/api/3/myself", get(myself))
        .layer(middleware::from_fn_with_state(sim.clone(), authenticate));
    Router::new()
        .merge(api)
        .route("/_sim/report", get(report))
        .route("/_sim/health", get(|| async { "ok" }))
        .layer(middleware::from_fn_with_state(sim.clone(), count_and_delay))
        .with_state(sim)
}

/// Binds `addr` and serves until the task is dropped.
pub async fn spawn(
    config: SimConfig,
    addr: SocketAddr,
) -> std::io::Result<(SocketAddr, Shared, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let sim = Sim::new(config);
    let app = router(sim.clone());
    let handle = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "jira-sim stopped");
        }
    });
    Ok((local, sim, handle))
}

/// Counts the request, does the work, then waits out the latency before
/// answering: like a real server, the effect happens even when the client
/// gives up (or dies) before the answer arrives.
async fn count_and_delay(State(sim): State<Shared>, req: Request, next: Next) -> Response {
    if req.uri().path().starts_with("/_sim/") {
        return next.run(req).await;
    }
    let endpoint = format!(
        "{} {}",
        req.method(),
        store::endpoint_template(req.uri().path())
    );
    sim.store().count_request(endpoint);
    let latency = sim.config.latency;
    // Run the handler to completion even if this future is dropped.
    let work = tokio::spawn(next.run(req));
    let response = match work.await {
        Ok(r) => r,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    response
}

async fn authenticate(State(sim): State<Shared>, req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v == sim.basic
                || v.strip_prefix("Bearer ")
                    .is_some_and(|t| t == sim.config.api_token)
        });
    if ok {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/plain;charset=UTF-8")],
            "Client must be authenticated to access this resource.",
        )
            .into_response()
    }
}

fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

impl IntoResponse for SimError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            SimError::NotFound => (
                StatusCode::NOT_FOUND,
                json!({"errorMessages": ["Issue does not exist or you do not have permission to see it."], "errors": {}}),
            ),
            SimError::Field(field, msg) => (
                StatusCode::BAD_REQUEST,
                json!({"errorMessages": [], "errors": { field: msg }}),
            ),
            SimError::Message(msg) => (
                StatusCode::BAD_REQUEST,
                json!({"errorMessages": [msg], "errors": {}}),
            ),
        };
        (status, axum::Json(body)).into_response()
    }
}

/// Jira answers unparseable JSON with 400 and a message, not a framework page.
fn parse_body(body: &[u8]) -> Result<Value, SimError> {
    serde_json::from_slice(body)
        .map_err(|e| SimError::Message(format!("Unexpected character in request body: {e}")))
}

async fn create_issue(
    State(sim): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, SimError> {
    let body = parse_body(&body)?;
    let (id, key) = sim.store().create_issue(&body)?;
    let json = json!({ "id": id.to_string(), "key": key, "self": format!("{}/rest/api/3/issue/{id}", base_url(&headers)) });
    Ok((StatusCode::CREATED, axum::Json(json)).into_response())
}

async fn get_issue(
    State(sim): State<Shared>,
    Path(key): Path<String>,
) -> Result<Response, SimError> {
    Ok(axum::Json(sim.store().issue_json(&key)?).into_response())
}

async fn edit_issue(
    State(sim): State<Shared>,
    Path(key): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, SimError> {
    let body = parse_body(&body)?;
    sim.store().edit_issue(&key, &body)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct CommentQuery {
    expand: Option<String>,
    #[serde(rename = "orderBy")]
    order_by: Option<String>,
    #[serde(rename = "maxResults")]
    max_results: Option<usize>,
}

async fn list_comments(
    State(sim): State<Shared>,
    Path(key): Path<String>,
    Query(q): Query<CommentQuery>,
) -> Result<Response, SimError> {
    let expand = q
        .expand
        .as_deref()
        .is_some_and(|e| e.split(',').any(|x| x == "properties"));
    let newest_first = q.order_by.as_deref().is_some_and(|o| o.starts_with('-'));
    let json = sim.store().comments_json(
        &key,
        expand,
        newest_first,
        q.max_results.unwrap_or(50).min(5000),
    )?;
    Ok(axum::Json(json).into_response())
}

async fn add_comment(
    State(sim): State<Shared>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, SimError> {
    let body = parse_body(&body)?;
    let mut json = sim.store().add_comment(&key, &body)?;
    json["self"] = json!(format!(
        "{}/rest/api/3/issue/{key}/comment/{}",
        base_url(&headers),
        json["id"].as_str().unwrap_or("")
    ));
    Ok((StatusCode::CREATED, axum::Json(json)).into_response())
}

async fn list_transitions(
    State(sim): State<Shared>,
    Path(key): Path<String>,
) -> Result<Response, SimError> {
    Ok(axum::Json(sim.store().transitions_json(&key)?).into_response())
}

async fn do_transition(
    State(sim): State<Shared>,
    Path(key): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, SimError> {
    let body = parse_body(&body)?;
    sim.store().transition(&key, &body)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn search_post(
    State(sim): State<Shared>,
    body: axum::body::Bytes,
) -> Result<Response, SimError> {
    let body = parse_body(&body)?;
    let jql = body["jql"].as_str().unwrap_or_default().to_string();
    let max = body["maxResults"].as_u64().unwrap_or(50) as usize;
    Ok(axum::Json(sim.store().search(&jql, max)?).into_response())
}

async fn search_get(
    State(sim): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, SimError> {
    let jql = q.get("jql").cloned().unwrap_or_default();
    let max = q
        .get("maxResults")
        .and_then(|m| m.parse().ok())
        .unwrap_or(50);
    Ok(axum::Json(sim.store().search(&jql, max)?).into_response())
}

async fn myself(State(sim): State<Shared>) -> Response {
    axum::Json(json!({ "accountId": "sim-account", "emailAddress": sim.config.email, "displayName": "Simulated User", "active": true })).into_response()
}

async fn report(State(sim): State<Shared>) -> Response {
    axum::Json(sim.report()).into_response()
}
