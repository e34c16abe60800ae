//! Jira Cloud REST v3 adapter (reqwest, rustls).
//!
//! Protocol: basic auth (account email + API token) or a bearer token
//! (OAuth 2.0). Calls used:
//! * `POST /rest/api/3/issue` — create, with `properties` set atomically
//! * `POST /rest/api/3/issue/bulk` — up to 50 creates; `201` (or `400` when
//!   every element failed) lists the created issues in order and the
//!   refused elements by `failedElementNumber`
//! * `PUT /rest/api/3/issue/{key}` — edit (`fields` to set, `update.labels` to add)
//! * `POST /rest/api/3/issue/{key}/comment` — comment in ADF, with a
//!   `tollgate` comment property as the marker; `GET …/comment?expand=properties`
//!   to look for it
//! * `GET|POST /rest/api/3/issue/{key}/transitions` — resolve name → id, move
//! * `GET /rest/api/3/issue/{key}?fields=status` — current status
//! * `POST /rest/api/3/search/jql` — find issues by label
//! * Confluence on the same site (same governor): `POST /wiki/api/v2/pages`
//!   (storage format; titles are unique per space, so a lost answer is
//!   reconciled with `GET /wiki/api/v2/pages?space-id=…&title=…`),
//!   `POST /wiki/api/v2/footer-comments` (reconciled by looking for the same
//!   body among `GET /wiki/api/v2/pages/{id}/footer-comments`)
//!
//! Every response is classified by [`crate::domain::response::classify`] and
//! its rate-limit headers parsed by [`RateLimitSignal::from_headers`]; a
//! connection failure or timeout is transient (and, for a create, ambiguous:
//! the executor reconciles before repeating it).

use crate::domain::adf::to_adf;
use crate::domain::ids::{IssueKey, PageId, SpaceId};
use crate::domain::ratelimit::RateLimitSignal;
use crate::domain::response::{Classified, classify};
use crate::domain::secret::Secret;
use crate::domain::storage_format;
use crate::domain::time::Timestamp;
use crate::domain::transition::{AvailableTransition, already_in, find_transition};
use crate::ports::{
    Answer, ElementError, NewIssueRequest, Tracker, TrackerError, TrackerResult, TransitionDone,
};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};
use std::time::Duration;

#[derive(Clone, Debug)]
pub enum JiraAuth {
    Basic { email: String, api_token: Secret },
    Bearer(Secret),
}

#[derive(Clone)]
pub struct JiraClient {
    http: reqwest::Client,
    base: String,
    auth: JiraAuth,
}

#[derive(Debug, thiserror::Error)]
pub enum JiraConfigError {
    #[error("Jira URL {0:?} must start with http:// or https://")]
    BadUrl(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

impl JiraClient {
    /// `base` is the site, e.g. `https://your-domain.atlassian.net`.
    pub fn new(base: &str, auth: JiraAuth, timeout: Duration) -> Result<Self, JiraConfigError> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(JiraConfigError::BadUrl(base.to_string()));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| JiraConfigError::Client(e.to_string()))?;
        Ok(JiraClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            auth,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Sends one request; returns the body of a success, or the classified
    /// failure.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> TrackerResult<Vec<u8>> {
        let (status, signal, bytes) = self.exchange(method, path, body).await?;
        match classify(status, &bytes) {
            Classified::Success => Ok(Answer {
                value: bytes,
                status,
                signal,
            }),
            Classified::Throttled => Err(TrackerError::Throttled { status, signal }),
            Classified::Transient { message } => Err(TrackerError::Transient {
                status: Some(status),
                message,
                signal,
            }),
            Classified::Permanent { message } => Err(TrackerError::Permanent { status, message }),
        }
    }

    /// Sends one request and reads the whole answer, whatever its status;
    /// only a failure to get an answer is an error (transient).
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, RateLimitSignal, Vec<u8>), TrackerError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self
            .http
            .request(method, &url)
            .header("Accept", "application/json");
        req = match &self.auth {
            JiraAuth::Basic { email, api_token } => req.basic_auth(email, Some(api_token.expose())),
            JiraAuth::Bearer(token) => req.bearer_auth(token.expose()),
        };
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return Err(TrackerError::Transient {
                    status: None,
                    message: network_message(e),
                    signal: RateLimitSignal::default(),
                });
            }
        };
        let status = resp.status().as_u16();
        let signal = RateLimitSignal::from_headers(
            resp.headers()
                .iter()
                .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v))),
        );
        match resp.bytes().await {
            Ok(b) => Ok((status, signal, b.to_vec())),
            Err(e) => Err(TrackerError::Transient {
                status: Some(status),
                message: network_message(e),
                signal,
            }),
        }
    }

    async fn call_json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> TrackerResult<Value> {
        let a = self.call(method, path, body).await?;
        let value = if a.value.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&a.value).map_err(|e| TrackerError::Transient {
                status: Some(a.status),
                message: format!("unreadable JSON from Jira: {e}"),
                signal: a.signal.clone(),
            })?
        };
        Ok(Answer {
            value,
            status: a.status,
            signal: a.signal,
        })
    }
}

fn network_message(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out waiting for Jira".to_string()
    } else if e.is_connect() {
        "could not connect to Jira".to_string()
    } else {
        // Without the URL: it may carry user info in odd configurations.
        format!("network error talking to Jira: {}", e.without_url())
    }
}

/// Matches a bulk create answer to its `n` elements: created issues come in
/// the order of the elements that did not fail. `None` when the answer does
/// not add up (then nothing can be said about any element).
fn bulk_outcome(v: &Value, n: usize) -> Option<Vec<Result<IssueKey, ElementError>>> {
    let created = v.get("issues").and_then(Value::as_array);
    let errors = v.get("errors").and_then(Value::as_array);
    if created.is_none() && errors.is_none() {
        return None;
    }
    let mut out: Vec<Option<Result<IssueKey, ElementError>>> = vec![None; n];
    for e in errors.into_iter().flatten() {
        let index = usize::try_from(e.get("failedElementNumber")?.as_u64()?).ok()?;
        let slot = out.get_mut(index)?;
        let status = e
            .get("status")
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or(400);
        let messages = &e["elementErrors"];
        let mut parts: Vec<String> = messages["errorMessages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m.as_str().map(str::to_string))
            .collect();
        if let Some(fields) = messages["errors"].as_object() {
            parts.extend(
                fields
                    .iter()
                    .map(|(f, m)| format!("{f}: {}", m.as_str().unwrap_or("invalid"))),
            );
        }
        *slot = Some(Err(ElementError {
            status,
            message: if parts.is_empty() {
                "refused by Jira".into()
            } else {
                parts.join("; ")
            },
        }));
    }
    let mut keys = created.into_iter().flatten().map(|i| {
        i.get("key")
            .and_then(Value::as_str)
            .and_then(IssueKey::parse)
    });
    for slot in out.iter_mut().filter(|s| s.is_none()) {
        *slot = Some(Ok(keys.next()??));
    }
    if keys.next().is_some() {
        return None;
    }
    out.into_iter().collect()
}

fn path_key(key: &IssueKey) -> String {
    // Issue keys are validated to [A-Z0-9_-]; nothing to escape.
    key.as_str().to_string()
}

impl Tracker for JiraClient {
    async fn create_issue(
        &self,
        fields: &Map<String, Value>,
        properties: &[(String, Value)],
    ) -> TrackerResult<IssueKey> {
        let props: Vec<Value> = properties
            .iter()
            .map(|(k, v)| json!({ "key": k, "value": v }))
            .collect();
        let body = json!({ "fields": fields, "properties": props });
        let a = self
            .call_json(Method::POST, "/rest/api/3/issue", Some(&body))
            .await?;
        let key = a.value["key"]
            .as_str()
            .and_then(IssueKey::parse)
            .ok_or_else(|| TrackerError::Transient {
                status: Some(a.status),
                message: "Jira answered the create without an issue key".into(),
                signal: a.signal.clone(),
            })?;
        Ok(Answer {
            value: key,
            status: a.status,
            signal: a.signal,
        })
    }

    async fn create_issues(
        &self,
        issues: &[NewIssueRequest],
    ) -> TrackerResult<Vec<Result<IssueKey, ElementError>>> {
        let updates: Vec<Value> = issues
            .iter()
            .map(|i| {
                let props: Vec<Value> = i
                    .properties
                    .iter()
                    .map(|(k, v)| json!({ "key": k, "value": v }))
                    .collect();
                json!({ "fields": i.fields, "properties": props })
            })
            .collect();
        let body = json!({ "issueUpdates": updates });
        let (status, signal, bytes) = self
            .exchange(Method::POST, "/rest/api/3/issue/bulk", Some(&body))
            .await?;
        // A 400 whose body lists failed elements is an answer per element
        // (Jira says 400 when none was created); any other failure is the
        // call's.
        if status == 201 || status == 400 {
            if let Some(outcome) = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| bulk_outcome(&v, issues.len()))
            {
                return Ok(Answer {
                    value: outcome,
                    status,
                    signal,
                });
            }
            if status == 201 {
                return Err(TrackerError::Transient {
                    status: Some(status),
                    message: "Jira's bulk create answer could not be matched to its elements"
                        .into(),
                    signal,
                });
            }
        }
        match classify(status, &bytes) {
            Classified::Throttled => Err(TrackerError::Throttled { status, signal }),
            Classified::Success | Classified::Transient { .. } => Err(TrackerError::Transient {
                status: Some(status),
                message: format!("unexpected bulk create answer (HTTP {status})"),
                signal,
            }),
            Classified::Permanent { message } => Err(TrackerError::Permanent { status, message }),
        }
    }

    async fn edit_issue(
        &self,
        key: &IssueKey,
        fields: &Map<String, Value>,
        add_labels: &[String],
    ) -> TrackerResult<()> {
        let mut body = json!({ "fields": fields });
        if !add_labels.is_empty() {
            let adds: Vec<Value> = add_labels.iter().map(|l| json!({ "add": l })).collect();
            body["update"] = json!({ "labels": adds });
        }
        self.call(
            Method::PUT,
            &format!("/rest/api/3/issue/{}", path_key(key)),
            Some(&body),
        )
        .await
        .map(|a| a.map(|_| ()))
    }

    async fn add_comment(&self, key: &IssueKey, text: &str, marker: &str) -> TrackerResult<()> {
        let body = json!({
            "body": to_adf(text),
            "properties": [{ "key": "tollgate", "value": { "marker": marker } }]
        });
        self.call(
            Method::POST,
            &format!("/rest/api/3/issue/{}/comment", path_key(key)),
            Some(&body),
        )
        .await
        .map(|a| a.map(|_| ()))
    }

    async fn has_comment(
        &self,
        key: &IssueKey,
        marker: &str,
        since: Timestamp,
    ) -> TrackerResult<bool> {
        // Newest first, a page at a time, until the marker is found or the
        // comments are older than the attempt (with a minute's slack for
        // clocks that disagree).
        let oldest = Timestamp(since.0 - 60_000);
        let mut start = 0usize;
        loop {
            let path = format!(
                "/rest/api/3/issue/{}/comment?orderBy=-created&startAt={start}&maxResults={COMMENT_PAGE}&expand=properties",
                path_key(key)
            );
            let a = self.call_json(Method::GET, &path, None).await?;
            let comments = a.value["comments"].as_array().cloned().unwrap_or_default();
            let found = comments.iter().any(|c| {
                c["properties"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["key"] == "tollgate" && p["value"]["marker"] == marker)
            });
            let total = a.value["total"].as_u64().unwrap_or(0) as usize;
            let older = comments.iter().any(|c| {
                c["created"]
                    .as_str()
                    .and_then(Timestamp::parse_jira)
                    .is_some_and(|t| t < oldest)
            });
            start += comments.len();
            if found || older || comments.is_empty() || start >= total {
                return Ok(a.map(|_| found));
            }
        }
    }

    async fn transition(&self, key: &IssueKey, name: &str) -> TrackerResult<TransitionDone> {
        // One read gives the status and the transitions on offer: a
        // transition whose target the issue is already in has been done —
        // by an earlier attempt whose answer was lost, or by a person — and
        // is not repeated (a global "any → Done" transition is offered from
        // Done too, and would re-run its post-functions).
        let got = self
            .call_json(
                Method::GET,
                &format!(
                    "/rest/api/3/issue/{}?fields=status&expand=transitions",
                    path_key(key)
                ),
                None,
            )
            .await?;
        let status = got.value["fields"]["status"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let available: Vec<AvailableTransition> = got.value["transitions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| AvailableTransition {
                id: t["id"].as_str().unwrap_or_default().to_string(),
                name: t["name"].as_str().unwrap_or_default().to_string(),
                to_status: t["to"]["name"].as_str().unwrap_or_default().to_string(),
            })
            .collect();
        let chosen = find_transition(&available, name);
        let target = chosen.map_or(name, |t| t.to_status.as_str());
        if already_in(&status, target) || already_in(&status, name) {
            return Ok(Answer {
                value: TransitionDone::AlreadyThere,
                status: got.status,
                signal: got.signal,
            });
        }
        if let Some(t) = chosen {
            let path = format!("/rest/api/3/issue/{}/transitions", path_key(key));
            let body = json!({ "transition": { "id": t.id } });
            let a = self.call(Method::POST, &path, Some(&body)).await?;
            return Ok(Answer {
                value: TransitionDone::Moved,
                status: a.status,
                signal: a.signal,
            });
        }
        let names: Vec<&str> = available.iter().map(|t| t.name.as_str()).collect();
        Err(TrackerError::Permanent {
            status: StatusCode::BAD_REQUEST.as_u16(),
            message: format!(
                "no transition named {name:?} from status {status:?}; available: {}",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ),
        })
    }

    async fn find_by_label(&self, label: &str) -> TrackerResult<Vec<IssueKey>> {
        // Labels tollgate searches for are its own: `tollgate-<hex>`.
        let body = json!({
            "jql": format!("labels = \"{label}\" ORDER BY created ASC"),
            "fields": ["labels"],
            "maxResults": 10
        });
        let a = self
            .call_json(Method::POST, "/rest/api/3/search/jql", Some(&body))
            .await?;
        let keys = a.value["issues"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["key"].as_str().and_then(IssueKey::parse))
            .collect();
        Ok(Answer {
            value: keys,
            status: a.status,
            signal: a.signal,
        })
    }

    async fn create_page(
        &self,
        space: &SpaceId,
        title: &str,
        body: &str,
        parent: Option<&PageId>,
        marker: &str,
    ) -> TrackerResult<PageId> {
        let mut request = json!({
            "spaceId": space.as_str(),
            "status": "current",
            "title": title,
            "body": { "representation": "storage", "value": storage_format::marked(body, marker) }
        });
        if let Some(p) = parent {
            request["parentId"] = json!(p.as_str());
        }
        let a = self
            .call_json(Method::POST, "/wiki/api/v2/pages", Some(&request))
            .await?;
        let id = a.value["id"]
            .as_str()
            .and_then(PageId::parse)
            .ok_or_else(|| TrackerError::Transient {
                status: Some(a.status),
                message: "Confluence answered the page create without a page id".into(),
                signal: a.signal.clone(),
            })?;
        Ok(a.map(|_| id))
    }

    async fn find_page(
        &self,
        space: &SpaceId,
        title: &str,
        marker: &str,
    ) -> TrackerResult<Option<PageId>> {
        let path = format!(
            "/wiki/api/v2/pages?space-id={}&title={}&status=current&body-format=storage&limit=1",
            space.as_str(),
            query_escape(title)
        );
        let a = self.call_json(Method::GET, &path, None).await?;
        let id = a.value["results"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| {
                p["title"] == title
                    && p["body"]["storage"]["value"]
                        .as_str()
                        .is_some_and(|b| storage_format::carries(b, marker))
            })
            .and_then(|p| p["id"].as_str().and_then(PageId::parse));
        Ok(a.map(|_| id))
    }

    async fn add_page_comment(&self, page: &PageId, body: &str, marker: &str) -> TrackerResult<()> {
        let request = json!({
            "pageId": page.as_str(),
            "body": { "representation": "storage", "value": storage_format::marked(body, marker) }
        });
        let a = self
            .call(Method::POST, "/wiki/api/v2/footer-comments", Some(&request))
            .await?;
        Ok(a.map(|_| ()))
    }

    async fn has_page_comment(&self, page: &PageId, marker: &str) -> TrackerResult<bool> {
        // Cursor paging (`_links.next`), through every footer comment.
        let mut path = format!(
            "/wiki/api/v2/pages/{}/footer-comments?body-format=storage&limit=250",
            page.as_str()
        );
        loop {
            let a = self.call_json(Method::GET, &path, None).await?;
            let found = a.value["results"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| {
                    c["body"]["storage"]["value"]
                        .as_str()
                        .is_some_and(|b| storage_format::carries(b, marker))
                });
            let next = a.value["_links"]["next"]
                .as_str()
                .map(|n| n.strip_prefix("/wiki").unwrap_or(n).to_string());
            match next {
                Some(n) if !found => path = format!("/wiki{n}"),
                _ => return Ok(a.map(|_| found)),
            }
        }
    }
}

/// Comments read per page while looking for a marker (Jira's page size).
const COMMENT_PAGE: usize = 100;

/// Percent-encodes a query parameter value (RFC 3986 unreserved kept).
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_bulk_answer_is_matched_to_its_elements_in_order() {
        let v = json!({
            "issues": [{"id": "1", "key": "OPS-1"}, {"id": "2", "key": "OPS-2"}],
            "errors": [{"status": 400, "failedElementNumber": 1,
                        "elementErrors": {"errorMessages": [], "errors": {"summary": "You must specify a summary of the issue."}}}]
        });
        let out = bulk_outcome(&v, 3).unwrap();
        assert_eq!(out[0], Ok(IssueKey::parse("OPS-1").unwrap()));
        assert_eq!(
            out[1],
            Err(ElementError {
                status: 400,
                message: "summary: You must specify a summary of the issue.".into()
            })
        );
        assert_eq!(out[2], Ok(IssueKey::parse("OPS-2").unwrap()));
    }

    #[test]
    fn page_titles_are_escaped_in_queries() {
        assert_eq!(
            query_escape("Runbook: a&b / ü"),
            "Runbook%3A%20a%26b%20%2F%20%C3%BC"
        );
    }

    #[test]
    fn a_bulk_answer_that_does_not_add_up_says_nothing_about_any_element() {
        let too_few = json!({"issues": [{"key": "OPS-1"}], "errors": []});
        assert_eq!(bulk_outcome(&too_few, 2), None);
        let too_many = json!({"issues": [{"key": "OPS-1"}, {"key": "OPS-2"}]});
        assert_eq!(bulk_outcome(&too_many, 1), None);
        let bad_index = json!({"issues": [], "errors": [{"failedElementNumber": 5}]});
        assert_eq!(bulk_outcome(&bad_index, 1), None);
        assert_eq!(bulk_outcome(&json!({"errorMessages": ["x"]}), 1), None);
    }
}
