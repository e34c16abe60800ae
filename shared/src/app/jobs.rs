//! Reading jobs back: `GET /v1/jobs/{id}` and the operator CLI.

use super::AppError;
use super::api::{HttpAnswer, job_answer, not_found};
use crate::domain::ids::JobId;
use crate::domain::job::JobState;
use crate::ports::{ApprovalStore, JobStore};

pub async fn get_job<S: JobStore + ApprovalStore>(
    store: &S,
    raw_id: &str,
) -> Result<HttpAnswer, AppError> {
    let Some(id) = JobId::parse(raw_id) else {
        return Ok(not_found("job"));
    };
    let Some(job) = store.job(&id).await? else {
        return Ok(not_found("job"));
    };
    let audit = store.audit_trail(&id).await?;
    let approval = if job.state == JobState::PendingApproval {
        store.approval_for_job(&id).await?.map(|a| a.id)
    } else {
        None
    };
    Ok(job_answer(&job, &audit, approval.as_ref()))
}
