//! The approval function: `GET /v1/approvals/{token}` answers the
//! confirmation page and never decides (chat unfurlers and mail scanners
//! fetch links); `POST` decides, once. The same pages and status codes as
//! `tollgate serve`, since both render through `tollgate::app::approval_page`.

use lambda_http::http::{Method, StatusCode, header::HeaderValue};
use lambda_http::{Body, Request, Response};
use tollgate::app::approval_page::{HtmlAnswer, PAGE_HEADERS, decide_answer, escape, view_answer};
use tollgate::app::approvals::Approvals;
use tollgate::ports::{ApprovalStore, Clock, JobStore, WorkQueue};

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

pub async fn handle<S, Q, C>(approvals: &Approvals<'_, S, Q, C>, req: Request) -> Response<Body>
where
    S: JobStore + ApprovalStore,
    Q: WorkQueue,
    C: Clock,
{
    let Some(token) = token(req.uri().path()) else {
        return plain(404, "No such page.");
    };
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
}
