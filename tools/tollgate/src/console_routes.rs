//! `serve`'s console routes (`/ui`): translate requests to
//! [`Console`] calls — the session cookie, forms and queries in; pages and
//! redirects out, with the approval page's strict headers. No rules here.

use crate::http::AppState;
use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;
use tollgate::adapters::sqlite::SqliteDb;
use tollgate::adapters::webhook_notifier::Notifiers;
use tollgate::app::console::{self, Console, ConsoleAnswer, Fields, Page, base_for};
use tollgate::ports::SystemClock;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/ui", get(overview))
        .route("/ui/sign-in", get(sign_in_page).post(sign_in))
        .route("/ui/sign-out", post(sign_out))
        .route("/ui/act", post(act))
        .route("/ui/{page}", get(page))
}

impl AppState {
    fn console(&self) -> Console<'_, SqliteDb, SqliteDb, SystemClock, Notifiers> {
        Console {
            api: self.operator_api(),
            operator_tokens: &self.operator_tokens,
            site: &self.site,
            secure_cookies: self.public_url.starts_with("https://"),
            // serve's routes are at its root; a reverse proxy's prefix is
            // named by the public URL.
            base: base_for("/ui", &self.public_url),
        }
    }
}

/// The session cookie's value, if the request has one.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    console::session_cookie(
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

fn respond(answer: ConsoleAnswer) -> Response {
    let (status, headers, body) = answer.into_parts();
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (status, body).into_response();
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            r.headers_mut().insert(name, v);
        }
    }
    r
}

fn unreadable_form() -> Response {
    respond(ConsoleAnswer::unreadable_form())
}

/// A malformed query reads as none (a page's filters are optional).
fn fields(query: Result<Query<Fields>, QueryRejection>) -> Fields {
    query.map(|Query(q)| q).unwrap_or_default()
}

async fn overview(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<Fields>, QueryRejection>,
) -> Response {
    render(&state, &headers, Page::Overview, fields(query)).await
}

async fn page(
    State(state): State<Arc<AppState>>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    query: Result<Query<Fields>, QueryRejection>,
) -> Response {
    let Some(page) = Page::parse(&slug) else {
        return crate::http::answer(tollgate::app::api::not_found("page"));
    };
    render(&state, &headers, page, fields(query)).await
}

async fn render(state: &AppState, headers: &HeaderMap, page: Page, query: Fields) -> Response {
    let cookie = session_cookie(headers);
    match state.console().page(cookie.as_deref(), page, &query).await {
        Ok(a) => respond(a),
        Err(e) => crate::http::internal(e),
    }
}

async fn sign_in_page(State(state): State<Arc<AppState>>) -> Response {
    respond(state.console().sign_in_page())
}

async fn sign_in(
    State(state): State<Arc<AppState>>,
    form: Result<Form<Fields>, FormRejection>,
) -> Response {
    match form {
        Ok(Form(f)) => respond(state.console().sign_in(&f)),
        Err(_) => unreadable_form(),
    }
}

async fn sign_out(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    form: Result<Form<Fields>, FormRejection>,
) -> Response {
    match form {
        Ok(Form(f)) => respond(
            state
                .console()
                .sign_out(session_cookie(&headers).as_deref(), &f),
        ),
        Err(_) => unreadable_form(),
    }
}

async fn act(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    form: Result<Form<Fields>, FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return unreadable_form();
    };
    let answer = state
        .console()
        .act(session_cookie(&headers).as_deref(), &f)
        .await;
    state.wake.notify_waiters();
    match answer {
        Ok(a) => respond(a),
        Err(e) => crate::http::internal(e),
    }
}
