//! The approval function: `GET /v1/approvals/{token}` answers the
//! confirmation page and never decides (chat unfurlers and mail scanners
//! fetch links); `POST` decides, once. It also serves the operator console
//! (`/ui`). The same pages and status codes as `tollgate serve`, since both
//! render through `tollgate::app::approval_page` and `tollgate::app::console`;
//! this module only translates API Gateway requests and answers.

use lambda_http::http::{HeaderMap, Method, StatusCode, header, header::HeaderValue};
use lambda_http::{Body, Request, RequestExt, RequestPayloadExt, Response};
use tollgate::app::approval_page::{HtmlAnswer, PAGE_HEADERS, decide_answer, escape, view_answer};
use tollgate::app::approvals::{Approvals, Links};
use tollgate::app::console::{
    self, Console, ConsoleAnswer, ConsoleQueue, ConsoleStore, Fields, Page, base_for,
};
use tollgate::app::operator_api::OperatorApi;
use tollgate::domain::policy::Policy;
use tollgate::domain::secret::Secret;
use tollgate::domain::source::Sources;
use tollgate::ports::{ApprovalStore, Clock, JobStore, Notifier, WorkQueue};

/// What the function serves with, built once at init.
pub struct App<'a, S, Q, C, N> {
    pub store: &'a S,
    pub queue: &'a Q,
    pub clock: &'a C,
    /// Approval link keys, newest first.
    pub link_keys: &'a [Secret],
    /// Where approval links point (re-sent requests carry them).
    pub public_url: &'a str,
    pub notifier: &'a N,
    /// The policy re-submitted events are admitted under.
    pub policy: &'a Policy,
    pub sources: &'a Sources,
    /// The console's sign-in tokens; none turns the console off.
    pub operator_tokens: &'a [Secret],
    /// The Jira site's governor row (its URL), as the executor keeps it.
    pub site: &'a str,
}

impl<'a, S, Q, C, N> App<'a, S, Q, C, N> {
    fn links(&self) -> Links<'a> {
        Links {
            keys: self.link_keys,
            base_url: self.public_url,
        }
    }

    pub fn approvals(&self) -> Approvals<'a, S, Q, C> {
        Approvals {
            store: self.store,
            queue: self.queue,
            clock: self.clock,
            links: self.links(),
        }
    }

    fn console(&self, base: String, https: bool) -> Console<'_, S, Q, C, N> {
        Console {
            api: OperatorApi {
                store: self.store,
                queue: self.queue,
                clock: self.clock,
                links: self.links(),
                notifier: self.notifier,
                policy: self.policy,
                sources: Some(self.sources),
            },
            operator_tokens: self.operator_tokens,
            site: self.site,
            secure_cookies: https || self.public_url.starts_with("https://"),
            base,
        }
    }
}

fn respond(a: HtmlAnswer) -> Response<Body> {
    let mut r = Response::new(Body::Text(a.html));
    *r.status_mut() = StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in PAGE_HEADERS {
        r.headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    r
}

fn plain(status: u16, message: &str) -> Response<Body> {
    respond(HtmlAnswer {
        status,
        html: format!(
            "<!doctype html><title>tollgate</title><p>{}</p>",
            escape(message)
        ),
    })
}

/// The token of `/v1/approvals/{token}`, ignoring a stage prefix.
fn token(path: &str) -> Option<&str> {
    let path = path.find("/v1/").map_or(path, |i| &path[i..]);
    let t = path.strip_prefix("/v1/approvals/")?.trim_end_matches('/');
    (!t.is_empty() && !t.contains('/')).then_some(t)
}

/// What a console path asks for, after its prefix.
#[derive(Debug, PartialEq)]
enum ConsoleRoute {
    Page(Page),
    SignIn,
    SignOut,
    Act,
    Unknown,
}

/// The console route of `path`, or `None` when it is not a console path.
fn console_route(path: &str) -> Option<ConsoleRoute> {
    let base = base_for(path, "");
    let rest = path.strip_prefix(base.as_str())?;
    let rest = match rest.strip_prefix("/ui") {
        Some(r) if r.is_empty() || r.starts_with('/') => r.trim_start_matches('/'),
        _ => return None,
    };
    Some(match rest.trim_end_matches('/') {
        "sign-in" => ConsoleRoute::SignIn,
        "sign-out" => ConsoleRoute::SignOut,
        "act" => ConsoleRoute::Act,
        slug => Page::parse(slug).map_or(ConsoleRoute::Unknown, ConsoleRoute::Page),
    })
}

pub async fn handle<S, Q, C, N>(app: &App<'_, S, Q, C, N>, req: Request) -> Response<Body>
where
    S: JobStore + ApprovalStore + ConsoleStore,
    Q: WorkQueue + ConsoleQueue,
    C: Clock,
    N: Notifier,
{
    if let Some(route) = console_route(req.uri().path()) {
        return console(app, route, req).await;
    }
    let Some(token) = token(req.uri().path()) else {
        return plain(404, "No such page.");
    };
    let approvals = app.approvals();
    let result = match *req.method() {
        Method::GET | Method::HEAD => approvals.view(token).await.map(|o| view_answer(&o)),
        Method::POST => approvals.decide(token).await.map(|o| decide_answer(&o)),
        _ => return plain(405, "Open the link in a browser."),
    };
    match result {
        Ok(answer) => respond(answer),
        Err(e) => {
            tracing::error!(error = %e, "approval request failed");
            plain(
                503,
                "The approval service is unavailable; try the link again shortly.",
            )
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

fn console_answer(answer: ConsoleAnswer) -> Response<Body> {
    let (status, headers, body) = answer.into_parts();
    let mut r = Response::new(if body.is_empty() {
        Body::Empty
    } else {
        Body::Text(body)
    });
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            r.headers_mut().insert(name, v);
        }
    }
    r
}

async fn console<S, Q, C, N>(
    app: &App<'_, S, Q, C, N>,
    route: ConsoleRoute,
    req: Request,
) -> Response<Body>
where
    S: ConsoleStore,
    Q: ConsoleQueue,
    C: Clock,
    N: Notifier,
{
    let path = req.uri().path().to_string();
    let https = req
        .headers()
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes() == b"https");
    let console = app.console(base_for(&path, app.public_url), https);
    let cookie = session_cookie(req.headers());
    let form = || req.payload::<Fields>().ok().flatten();
    let unreadable = || console_answer(ConsoleAnswer::unreadable_form());
    let post = *req.method() == Method::POST;
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    let answer = match route {
        ConsoleRoute::Page(page) if get => {
            let query: Fields = req
                .query_string_parameters_ref()
                .map(|q| {
                    q.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                })
                .unwrap_or_default();
            console.page(cookie.as_deref(), page, &query).await
        }
        ConsoleRoute::SignIn if get => Ok(console.sign_in_page()),
        ConsoleRoute::SignIn if post => match form() {
            Some(f) => Ok(console.sign_in(&f)),
            None => return unreadable(),
        },
        ConsoleRoute::SignOut if post => match form() {
            Some(f) => Ok(console.sign_out(cookie.as_deref(), &f)),
            None => return unreadable(),
        },
        ConsoleRoute::Act if post => match form() {
            Some(f) => console.act(cookie.as_deref(), &f).await,
            None => return unreadable(),
        },
        ConsoleRoute::Unknown => return plain(404, "No such page."),
        _ => return plain(405, "That page does not take this method."),
    };
    match answer {
        Ok(a) => console_answer(a),
        Err(e) => {
            tracing::error!(error = %e, "console request failed");
            plain(503, "The console is unavailable; try again shortly.")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_the_last_path_segment() {
        assert_eq!(token("/v1/approvals/abc.def"), Some("abc.def"));
        assert_eq!(token("/prod/v1/approvals/abc/"), Some("abc"));
        assert_eq!(token("/v1/approvals/"), None);
        assert_eq!(token("/v1/approvals/a/b"), None);
        assert_eq!(token("/v1/jobs/x"), None);
    }

    #[test]
    fn console_paths_are_routed_under_any_prefix() {
        assert_eq!(
            console_route("/ui"),
            Some(ConsoleRoute::Page(Page::Overview))
        );
        assert_eq!(
            console_route("/ui/jobs"),
            Some(ConsoleRoute::Page(Page::Jobs))
        );
        assert_eq!(
            console_route("/lambda-url/tollgate-approval/ui/act"),
            Some(ConsoleRoute::Act)
        );
        assert_eq!(console_route("/ui/sign-in"), Some(ConsoleRoute::SignIn));
        assert_eq!(console_route("/ui/nope"), Some(ConsoleRoute::Unknown));
        assert_eq!(console_route("/v1/approvals/x"), None);
        assert_eq!(console_route("/uix"), None);
    }
}
