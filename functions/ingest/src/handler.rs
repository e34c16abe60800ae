//! The ingest entrypoint: raw body and signature header in, contract answer
//! out. No rule lives here; see `tollgate::app::ingest`.

#![allow(dead_code)]

use tollgate::app::AppError;
use tollgate::app::api::{HttpAnswer, ingest_answer};
use tollgate::app::ingest::Ingest;
use tollgate::ports::{Clock, JobStore, LinkStore, WorkQueue};

pub async fn post_event<S, Q, C>(
    ingest: &Ingest<'_, S, Q, C>,
    body: &[u8],
    signature: Option<&str>,
) -> Result<HttpAnswer, AppError>
where
    S: JobStore + LinkStore,
    Q: WorkQueue,
    C: Clock,
{
    Ok(ingest_answer(&ingest.handle(body, signature).await?))
}
