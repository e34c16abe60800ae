//! Start-up failures of a Lambda function, reported through the Runtime
//! API: `POST http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/init/error`
//! with `Lambda-Runtime-Function-Error-Type: Runtime.InitError` and
//! `{errorType, errorMessage}`. Lambda (and `cargo lambda watch`) then fails
//! the waiting invocation with that message at once, instead of letting
//! the caller wait for a runtime that will never ask for work.

use std::fmt;
use std::time::Duration;

/// The error `main` returns after a failed start: its Debug is its
/// message, so the process's last line reads as words, not as a Rust
/// structure.
pub struct InitFailure(pub String);

impl fmt::Display for InitFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for InitFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InitFailure {}

/// The Runtime API's body for an init error.
pub fn init_error_body(message: &str) -> serde_json::Value {
    serde_json::json!({"errorType": "Runtime.InitError", "errorMessage": message})
}

/// The endpoint: Lambda gives `host:port`; `cargo lambda watch` gives a
/// whole base URL (`http://127.0.0.1:9000/.rt/tollgate-ingest`).
pub fn init_error_url(api: &str) -> String {
    let base = api.trim_end_matches('/');
    if base.starts_with("http://") || base.starts_with("https://") {
        format!("{base}/2018-06-01/runtime/init/error")
    } else {
        format!("http://{base}/2018-06-01/runtime/init/error")
    }
}

/// Logs the failure, reports it to the Runtime API when there is one, and
/// returns the error for `main` to end with.
pub async fn fail_init(function: &str, error: impl fmt::Display) -> InitFailure {
    let message = format!("{function} cannot start: {error}");
    tracing::error!(error = %error, "{function} cannot start");
    if let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") {
        let url = init_error_url(&api);
        let sent = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map(|c| {
                c.post(&url)
                    .header("Lambda-Runtime-Function-Error-Type", "Runtime.InitError")
                    .json(&init_error_body(&message))
                    .send()
            });
        match sent {
            Ok(request) => {
                if let Err(e) = request.await {
                    tracing::warn!(error = %e, "the init error could not be reported to the runtime");
                }
            }
            Err(e) => tracing::warn!(error = %e, "no HTTP client for the init error report"),
        }
    }
    InitFailure(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_init_failure_reads_as_its_message_in_debug_too() {
        let f = InitFailure(
            "executor cannot start: environment variable TOLLGATE_TABLE is required".into(),
        );
        assert_eq!(format!("{f:?}"), f.to_string());
        assert_eq!(init_error_body(&f.0)["errorType"], "Runtime.InitError");
    }
}
