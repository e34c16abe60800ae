//! Classifying a Jira response: what the executor should do with it.

use super::audit::ResponseSummary;
use super::ratelimit::RateLimitSignal;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Classified {
    Success,
    /// 429: wait as the signal says; not a failure.
    Throttled,
    /// Worth retrying with backoff: 5xx, 408, 409 (edit conflicts), and
    /// network failures (no status).
    Transient {
        message: String,
    },
    /// Retrying cannot help: bad input, missing issue, no permission.
    Permanent {
        message: String,
    },
}

pub fn classify(status: u16, body: &[u8]) -> Classified {
    match status {
        200..=299 => Classified::Success,
        429 => Classified::Throttled,
        408 | 409 | 500..=599 => Classified::Transient {
            message: format!("HTTP {status}: {}", error_message(body)),
        },
        401 => Classified::Permanent {
            message: "HTTP 401: Jira refused the credentials (check the Jira email and API token)"
                .to_string(),
        },
        _ => Classified::Permanent {
            message: format!("HTTP {status}: {}", error_message(body)),
        },
    }
}

/// Jira's `{"errorMessages":[…],"errors":{field:msg}}` flattened to one line;
/// anything else (HTML from a gateway, empty) reduced to a short note.
pub fn error_message(body: &[u8]) -> String {
    if body.iter().all(u8::is_ascii_whitespace) {
        return "empty body".to_string();
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => {
            let mut parts: Vec<String> = v["errorMessages"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m.as_str().map(str::to_string))
                .collect();
            if let Some(errors) = v["errors"].as_object() {
                for (field, msg) in errors {
                    parts.push(format!("{field}: {}", msg.as_str().unwrap_or("invalid")));
                }
            }
            if let Some(m) = v["message"].as_str() {
                parts.push(m.to_string());
            }
            if parts.is_empty() {
                "no error message".to_string()
            } else {
                truncate(&parts.join("; "), 500)
            }
        }
        Err(_)
            if body.starts_with(b"<")
                || body.windows(5).any(|w| w.eq_ignore_ascii_case(b"<html")) =>
        {
            "non-JSON (HTML) body".to_string()
        }
        Err(_) => truncate(&String::from_utf8_lossy(body), 200),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

/// The part of a response worth keeping in the audit trail.
pub fn summarize(
    status: Option<u16>,
    signal: &RateLimitSignal,
    message: Option<String>,
) -> ResponseSummary {
    ResponseSummary {
        status,
        reason: signal.reason.as_ref().map(|r| r.as_str().to_string()),
        retry_after_ms: signal.retry_after.map(|d| d.as_millis() as u64),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_and_no_content_are_successes() {
        assert_eq!(classify(201, b"{}"), Classified::Success);
        assert_eq!(classify(204, b""), Classified::Success);
    }

    #[test]
    fn a_400_names_jira_field_errors() {
        let body = br#"{"errorMessages":[],"errors":{"summary":"You must specify a summary of the issue."}}"#;
        match classify(400, body) {
            Classified::Permanent { message } => {
                assert!(message.contains("summary: You must specify"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_401_says_to_check_credentials() {
        match classify(401, b"Client must be authenticated") {
            Classified::Permanent { message } => assert!(message.contains("API token")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_404_is_permanent_and_keeps_jira_message() {
        let body = br#"{"errorMessages":["Issue does not exist or you do not have permission to see it."],"errors":{}}"#;
        match classify(404, body) {
            Classified::Permanent { message } => assert!(message.contains("does not exist")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_409_and_5xx_are_transient() {
        assert!(matches!(classify(409, b""), Classified::Transient { .. }));
        assert!(matches!(
            classify(503, b"<html>busy</html>"),
            Classified::Transient { .. }
        ));
        assert!(matches!(classify(500, b""), Classified::Transient { .. }));
    }

    #[test]
    fn a_429_is_throttled_whatever_its_body() {
        for body in [
            &b""[..],
            b"<html><body>Too Many Requests</body></html>",
            b"{\"message\":\"slow\"}",
            b"\xff\xfe",
        ] {
            assert_eq!(classify(429, body), Classified::Throttled);
        }
    }

    #[test]
    fn html_and_empty_bodies_become_short_notes() {
        assert_eq!(
            error_message(b"<!DOCTYPE html><html>...</html>"),
            "non-JSON (HTML) body"
        );
        assert_eq!(error_message(b"  "), "empty body");
        assert_eq!(error_message(&[b'x'; 1000]).chars().count(), 201);
    }
}
