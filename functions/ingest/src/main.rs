//! Ingest Lambda (API Gateway → `POST /v1/events`, `GET /v1/jobs/{id}`).
//!
//! The handler is written against the ports and calls the shared use case;
//! the AWS wiring (lambda_http runtime, DynamoDB and SQS adapters built once
//! at init) arrives with the serverless issue. Until then this binary refuses
//! to start rather than pretend to serve.

mod handler;

fn main() -> anyhow::Result<()> {
    anyhow::bail!(
        "tollgate-ingest is not deployable yet: its DynamoDB/SQS adapters land with the serverless work; run `tollgate serve` instead"
    )
}
