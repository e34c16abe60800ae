//! Executor Lambda (SQS → Jira). The handler maps each message through the
//! shared executor; the lambda_runtime wiring and the SQS batch response
//! arrive with the serverless issue. Until then this binary refuses to start.

mod handler;

fn main() -> anyhow::Result<()> {
    anyhow::bail!(
        "tollgate-executor is not deployable yet: its DynamoDB/SQS adapters land with the serverless work; run `tollgate serve` instead"
    )
}
