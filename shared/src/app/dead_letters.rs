//! The dead-letter check: runnable work whose message SQS moved to the
//! dead-letter queue is sent again (a few times), then given up on as
//! EXHAUSTED with the reason — announced, ticketed and re-runnable like any
//! exhausted work. Finished or unknown work's messages are removed; a batch
//! admission's continuation is removed too (the sweep resumes stalled
//! admissions from their cursor).

use super::AppError;
use super::ingest::enqueue;
use crate::domain::audit::{AuditEntry, Stage};
use crate::domain::dead_letter::{DeadLetterAction, MAX_REDRIVES, REDRIVEN, action};
use crate::domain::job::{JobEvent, JobState};
use crate::ports::{Clock, DeadLetters, JobStore, Letter, WorkQueue};
use std::time::Duration;

/// What one check did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeadLetterReport {
    pub redriven: usize,
    pub gave_up: usize,
    pub dropped: usize,
    /// Messages that are not tollgate's: left for a person (and the alarm).
    pub unreadable: usize,
}

/// Receives at most this many messages per check.
const PER_CHECK: usize = 100;

pub async fn check_dead_letters<S, Q, D, C>(
    store: &S,
    queue: &Q,
    dead: &D,
    clock: &C,
) -> Result<DeadLetterReport, AppError>
where
    S: JobStore,
    Q: WorkQueue,
    D: DeadLetters,
    C: Clock,
{
    let mut report = DeadLetterReport::default();
    let mut seen = 0;
    while seen < PER_CHECK {
        let letters = dead.receive(10, Duration::from_secs(300)).await?;
        if letters.is_empty() {
            break;
        }
        seen += letters.len();
        for letter in letters {
            let job_id = match &letter.letter {
                Letter::Job(id) => id,
                Letter::Admission { batch } => {
                    tracing::info!(%batch, "batch admission continuation in the dead-letter queue; the sweep resumes it");
                    dead.delete(&letter.receipt).await?;
                    report.dropped += 1;
                    continue;
                }
                Letter::Unreadable(why) => {
                    tracing::warn!(error = %why, "an unreadable message in the dead-letter queue; left for a person");
                    report.unreadable += 1;
                    continue;
                }
            };
            let job = store.job(job_id).await?;
            let redrives = match &job {
                Some(j) => store
                    .audit_trail(&j.id)
                    .await?
                    .iter()
                    .filter(|e| e.outcome.starts_with(REDRIVEN))
                    .count(),
                None => 0,
            };
            let now = clock.now();
            match (action(job.as_ref().map(|j| j.state), redrives), job) {
                (DeadLetterAction::Redrive, Some(job)) => {
                    let entry = AuditEntry::new(
                        now,
                        Stage::Queue,
                        "tollgate",
                        format!(
                            "{REDRIVEN} ({} of {MAX_REDRIVES}): its message failed to run until SQS set it aside",
                            redrives + 1
                        ),
                    );
                    store.append_audit(&job.id, &entry).await?;
                    store.reset_outbox(&job).await?;
                    enqueue(store, queue, &job).await?;
                    tracing::warn!(job_id = %job.id, redrives = redrives + 1, "job re-driven from the dead-letter queue");
                    report.redriven += 1;
                }
                (DeadLetterAction::GiveUp, Some(mut job)) => {
                    let from = job.state;
                    let reason = format!(
                        "its queue message failed to run after {MAX_REDRIVES} re-drives from the dead-letter queue"
                    );
                    job.state = from.apply(JobEvent::Exhaust)?;
                    job.last_error = Some(reason.clone());
                    job.updated_at = now;
                    let entry = AuditEntry::new(now, Stage::Queue, "tollgate", reason)
                        .state(JobState::Exhausted);
                    if store.update(&job, from, Some(&entry)).await? {
                        tracing::error!(job_id = %job.id, "job given up: its message kept reaching the dead-letter queue");
                        report.gave_up += 1;
                    } else {
                        report.dropped += 1;
                    }
                }
                _ => report.dropped += 1,
            }
            dead.delete(&letter.receipt).await?;
        }
    }
    Ok(report)
}
