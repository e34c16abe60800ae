//! jira-sim: an in-memory Jira Cloud for tests, the demo and benchmarks.
//!
//! It speaks the part of the REST v3 API tollgate uses, with Jira's status
//! codes and error bodies (`{"errorMessages":[…],"errors":{…}}`), basic and
//! bearer auth, issue and comment properties, a three-status workflow, and a
//! small JQL subset. `GET /_sim/report` lists everything it holds and finds
//! duplicates (two issues carrying one tollgate label, or two comments
//! carrying one tollgate marker), so tests can count them.

pub mod cli;
mod confluence;
mod jql;
pub mod limits;
mod store;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use limits::{LimiterState, Limits, Verdict};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::{SimError, SimStore};

/// Internal header by which read handlers report how many objects they
/// returned (reads cost 1 + 1 per object); stripped before answering.
const OBJECTS_HEADER: &str = "x-sim-objects";

/// How the simulator behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub email: String,
    pub api_token: String,
    /// Project keys that exist; creates elsewhere get Jira's 400.
    pub projects: Vec<String>,
    /// Added to every answer, to make work take time as real Jira does.
    pub latency: Duration,
    /// Rate limits and faults (all off by default).
    pub limits: Limits,
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
            limits: Limits::default(),
        }
    }
}

pub struct Sim {
    config: SimConfig,
    basic: String,
    store: Mutex<SimStore>,
    limits: Mutex<Limits>,
    limiter: Mutex<LimiterState>,
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
        let limits = Mutex::new(config.limits.clone());
        Arc::new(Sim {
            config,
            basic,
            store,
            limits,
            limiter: Mutex::new(LimiterState::default()),
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The route fault that applies to one request, counted.
    fn take_route_fault(&self, route: &str) -> Option<limits::RouteFault> {
        let mut limits = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        if limits.faults.routes.is_empty() {
            return None;
        }
        limits.faults.take_route_fault(route)
    }

    /// Changes the limits mid-run (as Atlassian may, unannounced).
    pub fn set_limits(&self, limits: Limits) {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner()) = limits;
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, LimiterState> {
        self.limiter.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Cheap counters for sampling during a run: 429s so far and points spent.
    /// Creates issues directly, outside every limit and count: what a site
    /// already held before a run. Returns their keys, in order.
    pub fn seed_issues(&self, issues: &[Value]) -> Result<Vec<String>, String> {
        let mut store = self.store();
        issues
            .iter()
            .map(|fields| {
                store
                    .create_issue(&json!({ "fields": fields }))
                    .map(|(_, key)| key)
                    .map_err(|e| format!("{e:?}"))
            })
            .collect()
    }

    pub fn counters(&self) -> (u64, u64) {
        let l = self.limiter();
        (l.throttled.values().sum(), l.points_total)
    }

    /// Points left in the current window and seconds until it resets.
    pub fn quota(&self) -> Option<(u64, f64)> {
        let limits = self.limits();
        self.limiter().quota_view(&limits).map(|(r, t, _)| (r, t))
    }

    fn store(&self) -> std::sync::MutexGuard<'_, SimStore> {
        // A panic while holding the lock is a sim bug; keep serving anyway.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The report as `GET /_sim/report` answers it.
    pub fn report(&self) -> Value {
        let mut report = self.store().report();
        let limiter = self.limiter();
        let mut per_issue: Vec<(&String, &u64)> = limiter.writes_per_issue.iter().collect();
        per_issue.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let throttled: u64 = limiter.throttled.values().sum();
        report["totals"]["throttled"] = json!(throttled);
        report["totals"]["pointsSpent"] = json!(limiter.points_total);
        report["throttledByReason"] = json!(limiter.throttled);
        report["writesPerIssue"] = json!(
            per_issue
                .into_iter()
                .take(10)
                .map(|(k, n)| json!({"issue": k, "writes": n}))
                .collect::<Vec<_>>()
        );
        report
    }
}

pub fn router(sim: Shared) -> Router {
    let api = Router::new()
        .route("/rest/api/3/issue", post(create_issue))
        .route("/rest/api/3/issue/bulk", post(create_issues))
        .route("/wiki/api/v2/pages", post(create_page).get(find_pages))
        .route("/wiki/api/v2/footer-comments", post(add_page_comment))
        .route(
            "/wiki/api/v2/pages/{id}/footer-comments",
            get(list_page_comments),
        )
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
        .route("/_sim/limits", get(get_limits).post(post_limits))
        .route("/_sim/health", get(|| async { "ok" }))
        .layer(middleware::from_fn_with_state(sim.clone(), govern))
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

/// Applies the limits, counts the request, does the work, then waits out
/// the latency before answering: like a real server, the effect happens even
/// when the client gives up (or dies) before the answer arrives.
async fn govern(State(sim): State<Shared>, req: Request, next: Next) -> Response {
    if req.uri().path().starts_with("/_sim/") {
        return next.run(req).await;
    }
    let method = req.method().as_str().to_string();
    let endpoint = store::endpoint_template(req.uri().path());
    let issue = store::issue_in_path(req.uri().path());
    sim.store().count_request(format!("{method} {endpoint}"));
    let limits = sim.limits();
    let verdict = sim
        .limiter()
        .admit(&limits, &method, &endpoint, issue.as_deref());
    let (slow, drop) = match verdict {
        Verdict::Allow {
            drop_before: true, ..
        } => {
            // The connection breaks on the way in: nothing was done.
            return broken_response(Response::new(axum::body::Body::empty()));
        }
        Verdict::Allow { slow, drop, .. } => (slow, drop),
        Verdict::Refuse(r) => {
            let body = match r.status {
                429 if r.headers.is_empty() => {
                    "<html><body><h1>429 Too Many Requests</h1></body></html>".to_string()
                }
                429 => json!({"errorMessages": ["Rate limit exceeded."], "errors": {}}).to_string(),
                503 => "<html><body>Service Unavailable</body></html>".to_string(),
                _ => json!({"errorMessages": ["Internal server error"], "errors": {}}).to_string(),
            };
            let mut resp = (
                StatusCode::from_u16(r.status).unwrap_or(StatusCode::TOO_MANY_REQUESTS),
                body,
            )
                .into_response();
            append_headers(&mut resp, r.headers);
            if !sim.config.latency.is_zero() {
                tokio::time::sleep(sim.config.latency).await;
            }
            return resp;
        }
    };
    let fault = sim.take_route_fault(&format!("{method} {endpoint}"));
    if let Some(f) = fault.as_ref().filter(|f| f.refuse_status != 0) {
        let status = StatusCode::from_u16(f.refuse_status).unwrap_or(StatusCode::BAD_REQUEST);
        tokio::time::sleep(Duration::from_millis(f.answer_delay_ms)).await;
        let body = json!({"errorMessages": ["Refused by a jira-sim route fault."], "errors": {}});
        return (status, axum::Json(body)).into_response();
    }
    let (work_delay, answer_delay, drop) = match &fault {
        Some(f) => (
            Duration::from_millis(f.work_delay_ms),
            Duration::from_millis(f.answer_delay_ms),
            drop || f.drop_answer,
        ),
        None => (Duration::ZERO, Duration::ZERO, drop),
    };
    // A delayed write is read whole first: the work is done after the
    // client may have hung up, as Jira does.
    let req = if work_delay.is_zero() {
        req
    } else {
        let (parts, body) = req.into_parts();
        match axum::body::to_bytes(body, 16 * 1024 * 1024).await {
            Ok(bytes) => Request::from_parts(parts, axum::body::Body::from(bytes)),
            Err(_) => return StatusCode::BAD_REQUEST.into_response(),
        }
    };
    // Run the handler to completion even if this future is dropped: Jira
    // finishes work whose client gave up.
    let work = tokio::spawn(async move {
        if !work_delay.is_zero() {
            tokio::time::sleep(work_delay).await;
        }
        next.run(req).await
    });
    let mut response = match work.await {
        Ok(r) => r,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let objects = response
        .headers_mut()
        .remove(OBJECTS_HEADER)
        .and_then(|v| v.to_str().ok().and_then(|s| s.parse::<u64>().ok()));
    if method == "GET" {
        sim.limiter().charge(&limits, 1 + objects.unwrap_or(0));
    }
    if limits.headers_on_success {
        let headers = sim.limiter().quota_headers(&limits);
        append_headers(&mut response, headers);
    }
    let delay = sim.config.latency
        + answer_delay
        + if slow {
            Duration::from_millis(limits.faults.slow_ms)
        } else {
            Duration::ZERO
        };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if drop {
        // Headers go out, then the body fails: the client sees the
        // connection break after the work was done.
        return broken_response(response);
    }
    response
}

/// `response`'s head with a body that fails: to the client, a connection
/// broken mid-answer.
fn broken_response(response: Response) -> Response {
    let (parts, _) = response.into_parts();
    let broken = futures_util::stream::once(async {
        Err::<axum::body::Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "dropped by jira-sim",
        ))
    });
    Response::from_parts(parts, axum::body::Body::from_stream(broken))
}

fn append_headers(resp: &mut Response, headers: Vec<(String, String)>) {
    for (k, v) in headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::try_from(k),
            axum::http::HeaderValue::try_from(v),
        ) {
            resp.headers_mut().append(name, value);
        }
    }
}

fn with_objects(mut resp: Response, n: usize) -> Response {
    if let Ok(v) = axum::http::HeaderValue::try_from(n.to_string()) {
        resp.headers_mut().insert(OBJECTS_HEADER, v);
    }
    resp
}

async fn get_limits(State(sim): State<Shared>) -> Response {
    let mut v = json!(sim.limits());
    if let Some((remaining, reset_in)) = sim.quota() {
        v["state"] = json!({ "remaining": remaining, "resetInSeconds": reset_in });
    }
    axum::Json(v).into_response()
}

/// Merges the given fields into the current limits.
async fn post_limits(State(sim): State<Shared>, body: axum::body::Bytes) -> Response {
    let patch: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")).into_response(),
    };
    let mut current = json!(sim.limits());
    merge(&mut current, &patch);
    match serde_json::from_value::<Limits>(current) {
        Ok(limits) => {
            sim.set_limits(limits.clone());
            axum::Json(json!(limits)).into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("invalid limits: {e}")).into_response(),
    }
}

fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p.clone(),
    }
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

/// Jira's bulk create: up to 50 issues, each created or refused on its own.
/// `201` when any was created, else `400`; both list the created issues in
/// order and the refused elements by index.
async fn create_issues(
    State(sim): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, SimError> {
    let body = parse_body(&body)?;
    let Some(updates) = body["issueUpdates"].as_array() else {
        return Err(SimError::Message(
            "Request body must contain issueUpdates.".into(),
        ));
    };
    if updates.len() > MAX_BULK_CREATE {
        return Err(SimError::Message(format!(
            "The number of issues in the request exceeds the limit of {MAX_BULK_CREATE}."
        )));
    }
    let base = base_url(&headers);
    let mut issues = Vec::new();
    let mut errors = Vec::new();
    let mut store = sim.store();
    for (index, update) in updates.iter().enumerate() {
        match store.create_issue(update) {
            Ok((id, key)) => issues.push(
                json!({ "id": id.to_string(), "key": key, "self": format!("{base}/rest/api/3/issue/{id}") }),
            ),
            Err(e) => {
                let element = match e {
                    SimError::Field(field, msg) => json!({"errorMessages": [], "errors": { field: msg }}),
                    SimError::Message(msg) => json!({"errorMessages": [msg], "errors": {}}),
                    SimError::NotFound => json!({"errorMessages": ["Not found."], "errors": {}}),
                };
                errors.push(json!({ "status": 400, "elementErrors": element, "failedElementNumber": index }));
            }
        }
    }
    drop(store);
    let status = if issues.is_empty() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        axum::Json(json!({ "issues": issues, "errors": errors })),
    )
        .into_response())
}

async fn create_page(
    State(sim): State<Shared>,
    body: axum::body::Bytes,
) -> Result<Response, SimError> {
    let body = parse_body(&body)?;
    let page = sim.store().pages.create(&body)?;
    Ok(axum::Json(page).into_response())
}

async fn find_pages(
    State(sim): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, SimError> {
    let found = sim.store().pages.find(
        q.get("space-id").map(String::as_str),
        q.get("title").map(String::as_str),
        q.get("body-format").is_some_and(|f| f == "storage"),
    );
    let n = found["results"].as_array().map_or(0, Vec::len);
    Ok(with_objects(axum::Json(found).into_response(), n))
}

async fn add_page_comment(
    State(sim): State<Shared>,
    body: axum::body::Bytes,
) -> Result<Response, SimError> {
    let body = parse_body(&body)?;
    let comment = sim.store().pages.add_comment(&body)?;
    Ok((StatusCode::CREATED, axum::Json(comment)).into_response())
}

async fn list_page_comments(
    State(sim): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, SimError> {
    let limit = q.get("limit").and_then(|l| l.parse().ok());
    let comments = sim
        .store()
        .pages
        .comments(&id, q.get("cursor").map(String::as_str), limit)?;
    let n = comments["results"].as_array().map_or(0, Vec::len);
    Ok(with_objects(axum::Json(comments).into_response(), n))
}

/// Most comments one list call answers (Jira pages comment lists).
const COMMENT_PAGE_MAX: usize = 100;

/// Jira's bulk create limit.
const MAX_BULK_CREATE: usize = 50;

async fn get_issue(
    State(sim): State<Shared>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, SimError> {
    let transitions = q
        .get("expand")
        .is_some_and(|e| e.split(',').any(|x| x == "transitions"));
    Ok(axum::Json(sim.store().issue_json_expanded(&key, transitions)?).into_response())
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
    #[serde(rename = "startAt")]
    start_at: Option<usize>,
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
        q.start_at.unwrap_or(0),
        q.max_results.unwrap_or(50).min(COMMENT_PAGE_MAX),
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
    Ok(with_objects(
        axum::Json(sim.store().transitions_json(&key)?).into_response(),
        1,
    ))
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
    search_answer(sim.store().search(&jql, max)?)
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
    search_answer(sim.store().search(&jql, max)?)
}

fn search_answer(json: Value) -> Result<Response, SimError> {
    let n = json["issues"].as_array().map_or(0, Vec::len);
    Ok(with_objects(axum::Json(json).into_response(), n))
}

async fn myself(State(sim): State<Shared>) -> Response {
    axum::Json(json!({ "accountId": "sim-account", "emailAddress": sim.config.email, "displayName": "Simulated User", "active": true })).into_response()
}

async fn report(State(sim): State<Shared>) -> Response {
    axum::Json(sim.report()).into_response()
}
