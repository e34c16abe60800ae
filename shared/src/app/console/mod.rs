//! The operator console (`GET /ui`): server-rendered pages over the same
//! use cases as the operator routes — sign-in with the operator token, a
//! signed session cookie, a CSRF token on every form, every action recorded
//! in the audit trail with the operator's name. Entrypoints translate
//! requests to [`Console`] calls and [`ConsoleAnswer`]s back; no rule lives
//! there.

mod actions;
pub mod charts;
mod last_hour;
mod layout;
mod overview;
mod work;

use super::AppError;
use super::approval_page::PAGE_HEADERS;
use super::operator_api::OperatorApi;
use crate::domain::console_session::{
    SESSION_TTL, Session, SessionError, csrf_matches, csrf_token, issue, session_key, verify,
};
use crate::domain::operator_auth::{OperatorAccess, check};
use crate::domain::secret::Secret;
use crate::ports::{
    CensusStore, Clock, GovernorStore, IngestStore, Notifier, QueueGauge, WorkQueue,
};
use layout::Frame;
use std::collections::HashMap;

/// What the console reads and changes: the operator use cases' store,
/// whole-store counts and the governor's row.
pub trait ConsoleStore: IngestStore + CensusStore + GovernorStore {}
impl<T: IngestStore + CensusStore + GovernorStore> ConsoleStore for T {}

/// The work queue, and its depth for the overview.
pub trait ConsoleQueue: WorkQueue + QueueGauge {}
impl<T: WorkQueue + QueueGauge> ConsoleQueue for T {}

/// The session cookie's name.
pub const COOKIE: &str = "tollgate_session";

/// The session cookie's value among a request's `Cookie` header values.
pub fn session_cookie<'h>(cookie_headers: impl IntoIterator<Item = &'h str>) -> Option<String> {
    cookie_headers
        .into_iter()
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|v| !v.is_empty())
}

/// A submitted form, or a query string, by field.
pub type Fields = HashMap<String, String>;

/// What the entrypoint sends back.
#[derive(Debug, Clone, PartialEq)]
pub enum ConsoleAnswer {
    Html {
        status: u16,
        html: String,
    },
    /// 303 See Other, with a `Set-Cookie` value when the session changes.
    Redirect {
        to: String,
        cookie: Option<String>,
    },
}

/// The console's pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Overview,
    Jobs,
    Approvals,
    Rejections,
    Batches,
    Senders,
}

impl Page {
    pub fn parse(slug: &str) -> Option<Page> {
        Some(match slug {
            "" | "overview" => Page::Overview,
            "jobs" => Page::Jobs,
            "approvals" => Page::Approvals,
            "rejections" => Page::Rejections,
            "batches" => Page::Batches,
            "senders" => Page::Senders,
            _ => return None,
        })
    }
}

pub struct Console<'a, S, Q, C, N> {
    pub api: OperatorApi<'a, S, Q, C, N>,
    /// The operator tokens (sessions are signed with keys derived from them).
    pub operator_tokens: &'a [Secret],
    /// The Jira site's governor row.
    pub site: &'a str,
    /// `Secure` cookies (the console is served over HTTPS).
    pub secure_cookies: bool,
    /// The path `/ui` hangs under ([`base_for`]): links, redirects and the
    /// cookie's path carry it.
    pub base: String,
}

/// The path `/ui` hangs under, as the browser sees it: the prefix before
/// `/ui` in the request's path when a proxy passed it on, else the path of
/// the public URL (a proxy that strips its prefix — cargo lambda's
/// `/lambda-url/<function>`, a reverse proxy at `/tollgate` — is named
/// there). Anything but plain path characters reads as none.
pub fn base_for(request_path: &str, public_url: &str) -> String {
    let in_path = match request_path.strip_suffix("/ui") {
        Some(before) => before,
        None => request_path.find("/ui/").map_or("", |i| &request_path[..i]),
    };
    let configured = public_url
        .split_once("://")
        .map_or("", |(_, rest)| rest.find('/').map_or("", |i| &rest[i..]));
    let base = if in_path.is_empty() {
        configured
    } else {
        in_path
    };
    let base = base.trim_end_matches('/');
    let plain = base
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'));
    if plain
        && !base.contains("//")
        && !base.contains("..")
        && (base.is_empty() || base.starts_with('/'))
    {
        base.to_string()
    } else {
        String::new()
    }
}

/// Who is signed in, and the CSRF token their forms carry.
pub struct SignedIn {
    pub session: Session,
    pub csrf: String,
}

impl ConsoleAnswer {
    /// Status, headers and body, for any HTTP entrypoint to send as they
    /// are: pages carry the approval page's strict headers, redirects say
    /// where and set the session cookie when it changes.
    pub fn into_parts(self) -> (u16, Vec<(&'static str, String)>, String) {
        match self {
            ConsoleAnswer::Html { status, html } => (
                status,
                PAGE_HEADERS
                    .iter()
                    .map(|(name, value)| (*name, value.to_string()))
                    .collect(),
                html,
            ),
            ConsoleAnswer::Redirect { to, cookie } => {
                let mut headers = vec![("location", to), ("cache-control", "no-store".into())];
                headers.extend(cookie.map(|c| ("set-cookie", c)));
                (303, headers, String::new())
            }
        }
    }

    /// A form body that could not be read.
    pub fn unreadable_form() -> ConsoleAnswer {
        html(
            400,
            "<!doctype html><title>Bad form</title><p>That form could not be read.</p>".into(),
        )
    }
}

fn html(status: u16, html: String) -> ConsoleAnswer {
    ConsoleAnswer::Html { status, html }
}

impl<S, Q, C, N> Console<'_, S, Q, C, N>
where
    S: ConsoleStore,
    Q: ConsoleQueue,
    C: Clock,
    N: Notifier,
{
    fn keys(&self) -> Vec<Secret> {
        self.operator_tokens.iter().map(session_key).collect()
    }

    fn cookie(&self, value: &str, max_age: u64) -> String {
        format!(
            "{COOKIE}={value}; Path={}/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
            self.base,
            if self.secure_cookies { "; Secure" } else { "" }
        )
    }

    fn to_sign_in(&self) -> ConsoleAnswer {
        ConsoleAnswer::Redirect {
            to: format!("{}/ui/sign-in", self.base),
            cookie: None,
        }
    }

    pub fn sign_in_page(&self) -> ConsoleAnswer {
        if self.operator_tokens.is_empty() {
            return html(
                503,
                layout::sign_in_page(
                    &self.base,
                    Some("The console is off: set TOLLGATE_OPERATOR_TOKEN to use it."),
                ),
            );
        }
        html(200, layout::sign_in_page(&self.base, None))
    }

    /// Checks the token and starts a session for the named operator.
    pub fn sign_in(&self, form: &Fields) -> ConsoleAnswer {
        let operator = form.get("operator").map(|o| o.trim()).unwrap_or_default();
        let token = form.get("token").map(String::as_str).unwrap_or_default();
        if operator.is_empty() || operator.len() > 80 || operator.starts_with("tollgate:") {
            return html(
                400,
                layout::sign_in_page(
                    &self.base,
                    Some("Give your name (it is recorded with every action)."),
                ),
            );
        }
        match check(self.operator_tokens, Some(&format!("Bearer {token}"))) {
            OperatorAccess::Allowed => {}
            OperatorAccess::Off => return self.sign_in_page(),
            _ => {
                tracing::warn!(operator, "console sign-in refused");
                return html(
                    401,
                    layout::sign_in_page(&self.base, Some("That operator token is not valid.")),
                );
            }
        }
        let Some(key) = self.keys().into_iter().next() else {
            return self.sign_in_page();
        };
        let value = issue(&key, operator, self.api.clock.now());
        tracing::info!(operator, "console sign-in");
        ConsoleAnswer::Redirect {
            to: format!("{}/ui", self.base),
            cookie: Some(self.cookie(&value, SESSION_TTL.as_secs())),
        }
    }

    /// The session a request carries, or the answer that refuses it.
    pub fn signed_in(&self, cookie: Option<&str>) -> Result<SignedIn, ConsoleAnswer> {
        let Some(value) = cookie else {
            return Err(self.to_sign_in());
        };
        let keys = self.keys();
        match verify(&keys, value, self.api.clock.now()) {
            Ok(session) => {
                let csrf = keys
                    .first()
                    .map(|k| csrf_token(k, value))
                    .unwrap_or_default();
                Ok(SignedIn { session, csrf })
            }
            Err(SessionError::Expired) => Err(html(
                401,
                layout::sign_in_page(&self.base, Some("Your session has expired; sign in again.")),
            )),
            Err(SessionError::Invalid) => Err(self.to_sign_in()),
        }
    }

    /// A form's session and CSRF token, both good — or the refusal.
    fn form_session(&self, cookie: Option<&str>, form: &Fields) -> Result<SignedIn, ConsoleAnswer> {
        let signed = self.signed_in(cookie)?;
        let presented = form.get("csrf").map(String::as_str).unwrap_or_default();
        if !csrf_matches(&self.keys(), cookie.unwrap_or_default(), presented) {
            tracing::warn!(operator = %signed.session.operator, "console form without a valid CSRF token refused");
            return Err(html(
                403,
                layout::sign_in_page(
                    &self.base,
                    Some("That form is not from this session; reload the page and try again."),
                ),
            ));
        }
        Ok(signed)
    }

    pub fn sign_out(&self, cookie: Option<&str>, form: &Fields) -> ConsoleAnswer {
        if let Err(refused) = self.form_session(cookie, form) {
            return refused;
        }
        ConsoleAnswer::Redirect {
            to: format!("{}/ui/sign-in", self.base),
            cookie: Some(self.cookie("", 0)),
        }
    }

    /// A page for the signed-in operator.
    pub async fn page(
        &self,
        cookie: Option<&str>,
        page: Page,
        query: &Fields,
    ) -> Result<ConsoleAnswer, AppError> {
        let signed = match self.signed_in(cookie) {
            Ok(s) => s,
            Err(refused) => return Ok(refused),
        };
        let frame = Frame {
            operator: &signed.session.operator,
            csrf: &signed.csrf,
            flash: query.get("done").map(String::as_str),
            refresh: (page == Page::Overview).then_some(30),
            base: &self.base,
        };
        let html_page = match page {
            Page::Overview => overview::render(self, &frame).await?,
            Page::Jobs => match query.get("id") {
                Some(id) => self.job(&frame, id).await?,
                None => self.jobs(&frame, query).await?,
            },
            Page::Approvals => self.approvals(&frame).await?,
            Page::Rejections => match query.get("id") {
                Some(id) => self.rejection(&frame, id).await?,
                None => self.rejections(&frame).await?,
            },
            Page::Batches => self.batches(&frame).await?,
            Page::Senders => self.senders(&frame).await?,
        };
        Ok(html(200, html_page))
    }

    /// A form's action, in the operator's name; back to `back` with what
    /// became of it.
    pub async fn act(
        &self,
        cookie: Option<&str>,
        form: &Fields,
    ) -> Result<ConsoleAnswer, AppError> {
        let signed = match self.form_session(cookie, form) {
            Ok(s) => s,
            Err(refused) => return Ok(refused),
        };
        let outcome = actions::act(self, &signed.session.operator, form).await?;
        let back = form
            .get("back")
            .filter(|b| b.starts_with("/ui") && !b.contains("//"))
            .cloned()
            .unwrap_or_else(|| "/ui".into());
        let sep = if back.contains('?') { '&' } else { '?' };
        Ok(ConsoleAnswer::Redirect {
            to: format!("{}{back}{sep}done={}", self.base, percent_encode(&outcome)),
            cookie: None,
        })
    }
}

/// Percent-encodes a query value.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{base_for, session_cookie};

    #[test]
    fn the_session_cookie_is_found_among_others() {
        assert_eq!(
            session_cookie(["a=1; tollgate_session=abc.def", "b=2"]),
            Some("abc.def".into())
        );
        assert_eq!(session_cookie(["tollgate_session="]), None);
        assert_eq!(session_cookie(["tollgate_sessionx=1"]), None);
    }

    #[test]
    fn the_base_is_what_comes_before_ui() {
        assert_eq!(base_for("/ui", ""), "");
        assert_eq!(base_for("/ui/jobs", "https://api.example"), "");
        assert_eq!(
            base_for("/lambda-url/tollgate-approval/ui/act", ""),
            "/lambda-url/tollgate-approval"
        );
        assert_eq!(
            base_for("/lambda-url/tollgate-approval/ui", ""),
            "/lambda-url/tollgate-approval"
        );
    }

    #[test]
    fn a_stripped_prefix_comes_from_the_public_url() {
        assert_eq!(
            base_for(
                "/ui/jobs",
                "http://127.0.0.1:9000/lambda-url/tollgate-approval"
            ),
            "/lambda-url/tollgate-approval"
        );
        assert_eq!(
            base_for("/ui", "https://ops.example/tollgate/"),
            "/tollgate"
        );
        assert_eq!(base_for("/ui", "http://127.0.0.1:8787"), "");
    }

    #[test]
    fn an_odd_prefix_reads_as_none() {
        assert_eq!(base_for("/a\"x/ui/jobs", ""), "");
        assert_eq!(base_for("//evil.example/ui", ""), "");
        assert_eq!(base_for("/x/../ui", ""), "");
        assert_eq!(base_for("/ui", "https://h/a?b=<c>"), "");
    }
}
