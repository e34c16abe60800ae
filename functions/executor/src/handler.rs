//! One SQS message → one run of the shared executor. A message that must
//! come back later is reported as a batch item failure after its visibility
//! has been set to the wait the executor asked for.

#![allow(dead_code)]

use std::time::Duration;
use tollgate::app::AppError;
use tollgate::app::execute::{Disposition, Executor};
use tollgate::app::governor::Pace;
use tollgate::domain::ids::JobId;
use tollgate::ports::{Clock, JobStore, Leases, LinkStore, Tracker, WorkQueue};

/// Whether the message is done (`None`) or comes back after a wait.
pub async fn handle_message<S, T, C, G, Q>(
    executor: &Executor<'_, S, T, C, G>,
    queue: &Q,
    job_id: &JobId,
    receipt: &str,
) -> Result<Option<Duration>, AppError>
where
    S: JobStore + LinkStore + Leases,
    T: Tracker,
    C: Clock,
    G: Pace,
    Q: WorkQueue,
{
    match executor.run(job_id).await? {
        Disposition::Done => Ok(None),
        Disposition::RetryAfter(wait) => {
            queue.change_visibility(receipt, wait).await?;
            Ok(Some(wait))
        }
    }
}
