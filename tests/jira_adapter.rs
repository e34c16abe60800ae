//! The Jira adapter's classification of real HTTP answers: each status and
//! header combination Jira Cloud (or a gateway in front of it) produces,
//! served over a socket, read back by the real reqwest client.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use serde_json::Map;
use std::time::Duration;
use tollgate::adapters::jira::{JiraAuth, JiraClient};
use tollgate::domain::ids::IssueKey;
use tollgate::domain::ratelimit::LimitReason;
use tollgate::domain::secret::Secret;
use tollgate::ports::{Tracker, TrackerError};

/// Answers an edit of issue `KEY` as that key's scenario says.
async fn scripted(Path(key): Path<String>) -> Response {
    let json = |status: StatusCode, body: &str| {
        (
            status,
            [("content-type", "application/json")],
            body.to_string(),
        )
            .into_response()
    };
    match key.as_str() {
        "OK-1" => StatusCode::NO_CONTENT.into_response(),
        "BAD-400" => json(
            StatusCode::BAD_REQUEST,
            r#"{"errorMessages":[],"errors":{"customfield_10050":"Field 'customfield_10050' cannot be set."}}"#,
        ),
        "AUTH-401" => (
            StatusCode::UNAUTHORIZED,
            "Client must be authenticated to access this resource.",
        )
            .into_response(),
        "NF-404" => json(
            StatusCode::NOT_FOUND,
            r#"{"errorMessages":["Issue does not exist or you do not have permission to see it."],"errors":{}}"#,
        ),
        "CON-409" => json(
            StatusCode::CONFLICT,
            r#"{"errorMessages":["The issue is being edited."],"errors":{}}"#,
        ),
        "RA-429" => {
            let mut h = HeaderMap::new();
            h.insert("Retry-After", HeaderValue::from_static("7"));
            h.insert(
                "RateLimit-Reason",
                HeaderValue::from_static("jira-burst-based"),
            );
            h.insert(
                "X-RateLimit-Reset",
                HeaderValue::from_static("2026-03-01T12:00Z"),
            );
            (StatusCode::TOO_MANY_REQUESTS, h, "").into_response()
        }
        "NORA-429" => (
            StatusCode::TOO_MANY_REQUESTS,
            [("content-type", "text/html")],
            "<html><body><h1>429 Too Many Requests</h1></body></html>",
        )
            .into_response(),
        "BUSY-503" => (
            StatusCode::SERVICE_UNAVAILABLE,
            [("Retry-After", "3"), ("content-type", "text/html")],
            "<html>maintenance</html>",
        )
            .into_response(),
        "SLOW-1" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            StatusCode::NO_CONTENT.into_response()
        }
        _ => StatusCode::IM_A_TEAPOT.into_response(),
    }
}

async fn client() -> JiraClient {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/rest/api/3/issue/{key}", put(scripted));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let auth = JiraAuth::Bearer(Secret::new("t"));
    JiraClient::new(&format!("http://{addr}"), auth, Duration::from_millis(500)).unwrap()
}

async fn edit(c: &JiraClient, key: &str) -> Result<u16, TrackerError> {
    let key = IssueKey::parse(key).unwrap();
    c.edit_issue(&key, &Map::new(), &[]).await.map(|a| a.status)
}

#[tokio::test]
async fn a_204_is_a_success() {
    assert_eq!(edit(&client().await, "OK-1").await, Ok(204));
}

#[tokio::test]
async fn a_400_is_permanent_and_names_jiras_field() {
    match edit(&client().await, "BAD-400").await {
        Err(TrackerError::Permanent {
            status: 400,
            message,
        }) => assert!(message.contains("customfield_10050"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_401_and_a_404_are_permanent() {
    let c = client().await;
    assert!(matches!(
        edit(&c, "AUTH-401").await,
        Err(TrackerError::Permanent { status: 401, .. })
    ));
    match edit(&c, "NF-404").await {
        Err(TrackerError::Permanent {
            status: 404,
            message,
        }) => assert!(message.contains("does not exist")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_409_is_transient() {
    assert!(matches!(
        edit(&client().await, "CON-409").await,
        Err(TrackerError::Transient {
            status: Some(409),
            ..
        })
    ));
}

#[tokio::test]
async fn a_429_with_retry_after_carries_its_signals() {
    match edit(&client().await, "RA-429").await {
        Err(TrackerError::Throttled {
            status: 429,
            signal,
        }) => {
            assert_eq!(signal.retry_after, Some(Duration::from_secs(7)));
            assert_eq!(signal.reason, Some(LimitReason::Burst));
            assert!(signal.reset_at.is_some());
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_429_with_an_html_body_and_no_headers_is_still_a_throttle() {
    match edit(&client().await, "NORA-429").await {
        Err(TrackerError::Throttled {
            status: 429,
            signal,
        }) => assert!(signal.is_empty()),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_503_is_transient_and_keeps_retry_after() {
    match edit(&client().await, "BUSY-503").await {
        Err(TrackerError::Transient {
            status: Some(503),
            signal,
            message,
        }) => {
            assert_eq!(signal.retry_after, Some(Duration::from_secs(3)));
            assert!(message.contains("HTML"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_timeout_is_transient_without_a_status() {
    match edit(&client().await, "SLOW-1").await {
        Err(TrackerError::Transient {
            status: None,
            message,
            ..
        }) => assert!(message.contains("timed out"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_dropped_connection_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            drop(stream);
        }
    });
    let c = JiraClient::new(
        &format!("http://{addr}"),
        JiraAuth::Bearer(Secret::new("t")),
        Duration::from_secs(2),
    )
    .unwrap();
    assert!(matches!(
        edit(&c, "OK-1").await,
        Err(TrackerError::Transient { status: None, .. })
    ));
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = JiraClient::new(
        &format!("http://127.0.0.1:{port}"),
        JiraAuth::Bearer(Secret::new("t")),
        Duration::from_secs(2),
    )
    .unwrap();
    match edit(&c, "OK-1").await {
        Err(TrackerError::Transient {
            status: None,
            message,
            ..
        }) => assert!(message.contains("connect"), "{message}"),
        other => panic!("{other:?}"),
    }
}
