//! Use cases: orchestrate the ports, hold no I/O of their own. Entrypoints
//! (the `serve` HTTP server, the Lambda functions) call these and only
//! translate requests and answers.

pub mod admission;
pub mod api;
pub mod approval_page;
pub mod approvals;
pub mod batches;
pub mod console;
pub mod dead_letters;
pub mod execute;
pub mod followup;
pub mod governor;
pub mod ingest;
pub mod intake;
pub mod jobs;
pub mod metrics;
pub mod operations;
pub mod operator_api;
pub mod stats;

use crate::ports::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    IllegalTransition(#[from] crate::domain::job::IllegalTransition),
}
