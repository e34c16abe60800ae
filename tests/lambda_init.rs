//! A Lambda function that cannot start says why, at once: each function,
//! started as the built binary with its settings missing, reports one
//! readable error to the Runtime API's init-error endpoint (a stand-in
//! here, as `cargo lambda watch` or Lambda itself would be) and exits —
//! no invocation waits for a runtime that will never ask for work.

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tollgate_e2e::bin;

type Reports = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

async fn runtime_api() -> (String, Reports) {
    let reports: Reports = Arc::default();
    let app = Router::new()
        .route(
            "/2018-06-01/runtime/init/error",
            post(
                |State(r): State<Reports>, headers: HeaderMap, body: String| async move {
                    let kind = headers
                        .get("lambda-runtime-function-error-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    r.lock()
                        .unwrap()
                        .push((kind, serde_json::from_str(&body).unwrap_or_default()));
                    "{\"status\":\"OK\"}"
                },
            ),
        )
        .with_state(reports.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr.to_string(), reports)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_without_its_settings_reports_one_readable_init_error_and_exits() {
    for (binary, name) in [
        ("tollgate-ingest", "the ingest function"),
        ("tollgate-approval", "the approval function"),
        ("tollgate-executor", "the executor"),
    ] {
        let (api, reports) = runtime_api().await;
        let started = Instant::now();
        let out = tokio::task::spawn_blocking(move || {
            Command::new(bin(binary))
                .env_clear()
                .env("AWS_LAMBDA_RUNTIME_API", api)
                .env("AWS_REGION", "us-east-1")
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(!out.status.success(), "{binary} must not start");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{binary} failed fast"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("_URL is required") || stderr.contains("TOLLGATE_TABLE is required"),
            "{binary}: {stderr}"
        );
        assert!(
            !stderr.contains("Settings(") && !stderr.contains("Missing("),
            "{binary}: a Debug rendering: {stderr}"
        );
        let reports = reports.lock().unwrap().clone();
        assert_eq!(reports.len(), 1, "{binary}: one report");
        assert_eq!(reports[0].0, "Runtime.InitError");
        let message = reports[0].1["errorMessage"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(&format!("{name} cannot start")) && message.contains("is required"),
            "{binary}: {message}"
        );
    }
}
