//! Approvals: show what a link would decide (never deciding on a GET — link
//! scanners and chat unfurlers fetch links), decide once on a POST, and the
//! sweep that expires overdue requests, settles decisions a crash left
//! half-applied, and retries notifications.

use super::AppError;
use super::ingest::enqueue;
use crate::domain::approval::{
    ApprovalId, ApprovalNotice, ApprovalRecord, ApprovalStatus, ApproverLinks, Decided, Decision,
    EXPIRY_ACTOR, LinkClaim, TokenError, sign_link, verify_link,
};
use crate::domain::audit::{AuditEntry, Stage};
use crate::domain::ids::JobId;
use crate::domain::job::{JobEvent, JobState};
use crate::domain::notice::Notice;
use crate::domain::secret::Secret;
use crate::ports::{ApprovalStore, Clock, JobRecord, JobStore, Notifier, WorkQueue};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use std::time::Duration;

/// Where links point and what signs them.
pub struct Links<'a> {
    /// Active keys, newest first: links are signed with the first.
    pub keys: &'a [Secret],
    /// The public base URL of the approval routes, e.g. `https://h.example`.
    pub base_url: &'a str,
}

impl Links<'_> {
    pub fn token(
        &self,
        approval: &ApprovalRecord,
        approver: &str,
        decision: Decision,
    ) -> Option<String> {
        let key = self.keys.first()?;
        Some(sign_link(
            key,
            &LinkClaim {
                approval: approval.id.clone(),
                decision,
                approver: approver.to_string(),
                expires: approval.expires_at,
            },
        ))
    }

    pub fn url(&self, token: &str) -> String {
        format!(
            "{}/v1/approvals/{token}",
            self.base_url.trim_end_matches('/')
        )
    }
}

/// What the confirmation page shows.
#[derive(Debug, Clone, PartialEq)]
pub struct PageView {
    pub approval: ApprovalRecord,
    pub status: ApprovalStatus,
    /// Who the link belongs to.
    pub approver: String,
    /// The decision the link was sent for (its button comes first).
    pub offered: Decision,
    pub approve_token: String,
    pub deny_token: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ViewOutcome {
    Page(Box<PageView>),
    Refused(Refusal),
}

#[derive(Debug, Clone, PartialEq)]
pub enum DecideOutcome {
    Decided {
        approval: ApprovalId,
        decision: Decision,
        by: String,
        job: Box<JobRecord>,
    },
    Refused(Refusal),
}

/// Why a link does nothing; each has its own status and page.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    InvalidLink,
    LinkExpired,
    NotFound,
    NotAnApprover { approver: String },
    AlreadyDecided(Decided),
    RequestExpired,
    NoKey,
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::InvalidLink | Refusal::NotAnApprover { .. } => 403,
            Refusal::NotFound => 404,
            Refusal::AlreadyDecided(_) => 409,
            Refusal::LinkExpired | Refusal::RequestExpired => 410,
            Refusal::NoKey => 503,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Refusal::InvalidLink => {
                "This approval link is not valid. Use the link exactly as you received it.".into()
            }
            Refusal::LinkExpired | Refusal::RequestExpired => {
                "This approval request has expired; nothing was changed.".into()
            }
            Refusal::NotFound => "There is no such approval request.".into(),
            Refusal::NotAnApprover { approver } => {
                format!(
                    "{approver} is not among the approvers of this request; nothing was changed."
                )
            }
            Refusal::AlreadyDecided(d) => format!(
                "This request was already {} by {} at {}; nothing was changed.",
                past_tense(d.decision),
                d.by,
                d.at.to_rfc3339()
            ),
            Refusal::NoKey => "Approval links are not configured on this server.".into(),
        }
    }
}

pub fn past_tense(d: Decision) -> &'static str {
    match d {
        Decision::Approve => "approved",
        Decision::Deny => "denied",
    }
}

fn token_refusal(e: TokenError) -> Refusal {
    match e {
        TokenError::Invalid => Refusal::InvalidLink,
        TokenError::Expired => Refusal::LinkExpired,
        TokenError::NoKey => Refusal::NoKey,
    }
}

pub struct Approvals<'a, S, Q, C> {
    pub store: &'a S,
    pub queue: &'a Q,
    pub clock: &'a C,
    pub links: Links<'a>,
}

/// Pages of open requests one sweep reads at most (100 each).
const OPEN_PAGES: usize = 100;
/// Jobs of one decision moved at once: a chunk of hundreds moves within
/// the approval function's seconds.
const APPLY_CONCURRENCY: usize = 16;

impl<S, Q, C> Approvals<'_, S, Q, C>
where
    S: JobStore + ApprovalStore,
    Q: WorkQueue,
    C: Clock,
{
    /// The confirmation page for a link. Reads only.
    pub async fn view(&self, token: &str) -> Result<ViewOutcome, AppError> {
        let claim = match verify_link(token, self.links.keys, self.clock.now()) {
            Ok(c) => c,
            Err(e) => return Ok(ViewOutcome::Refused(token_refusal(e))),
        };
        let Some(approval) = self.store.approval(&claim.approval).await? else {
            return Ok(ViewOutcome::Refused(Refusal::NotFound));
        };
        if !approval.may_decide(&claim.approver) {
            return Ok(ViewOutcome::Refused(Refusal::NotAnApprover {
                approver: claim.approver,
            }));
        }
        let (Some(approve_token), Some(deny_token)) = (
            self.links
                .token(&approval, &claim.approver, Decision::Approve),
            self.links.token(&approval, &claim.approver, Decision::Deny),
        ) else {
            return Ok(ViewOutcome::Refused(Refusal::NoKey));
        };
        Ok(ViewOutcome::Page(Box::new(PageView {
            status: approval.status(self.clock.now()),
            approver: claim.approver,
            offered: claim.decision,
            approve_token,
            deny_token,
            approval,
        })))
    }

    /// Decides through a link: once, by an approver, before expiry.
    pub async fn decide(&self, token: &str) -> Result<DecideOutcome, AppError> {
        let claim = match verify_link(token, self.links.keys, self.clock.now()) {
            Ok(c) => c,
            Err(e) => return Ok(DecideOutcome::Refused(token_refusal(e))),
        };
        self.decide_as(&claim.approval, claim.decision, &claim.approver, "link")
            .await
    }

    /// Decides as `who` (an approver, or an operator on the CLI — `via` says
    /// which) and applies the decision to the job.
    pub async fn decide_as(
        &self,
        id: &ApprovalId,
        decision: Decision,
        who: &str,
        via: &str,
    ) -> Result<DecideOutcome, AppError> {
        let Some(approval) = self.store.approval(id).await? else {
            return Ok(DecideOutcome::Refused(Refusal::NotFound));
        };
        if via == "link" && !approval.may_decide(who) {
            return Ok(DecideOutcome::Refused(Refusal::NotAnApprover {
                approver: who.to_string(),
            }));
        }
        match approval.status(self.clock.now()) {
            ApprovalStatus::Expired => {
                self.expire(&approval).await?;
                return Ok(DecideOutcome::Refused(Refusal::RequestExpired));
            }
            ApprovalStatus::Decided(_) => {
                let decided = approval.decided.clone().ok_or_else(|| {
                    AppError::Store(crate::ports::StoreError::Corrupt(
                        "decided without a decision".into(),
                    ))
                })?;
                return Ok(DecideOutcome::Refused(Refusal::AlreadyDecided(decided)));
            }
            ApprovalStatus::Pending => {}
        }
        let decided = Decided {
            decision,
            by: who.to_string(),
            at: self.clock.now(),
        };
        if !self.store.decide(id, &decided).await? {
            // Another decider won the race (say who), or the request expired
            // in the meantime.
            return Ok(DecideOutcome::Refused(
                match self.store.approval(id).await?.and_then(|a| a.decided) {
                    Some(winner) if winner.by != EXPIRY_ACTOR => Refusal::AlreadyDecided(winner),
                    _ => {
                        self.expire(&approval).await?;
                        Refusal::RequestExpired
                    }
                },
            ));
        }
        tracing::info!(approval_id = %id, decision = decision.as_str(), by = who, via, "approval decided");
        let job = self.apply(&approval, &decided, via).await?;
        Ok(DecideOutcome::Decided {
            approval: id.clone(),
            decision,
            by: who.to_string(),
            job: Box::new(job),
        })
    }

    /// Moves every job the decision covers as it says (idempotent: a job
    /// that already moved is left alone), queueing approved work, a few
    /// jobs at a time; then marks the request applied. A decider stopped
    /// partway leaves it unapplied, and the sweep finishes the job.
    /// Answers the request's first job.
    async fn apply(
        &self,
        approval: &ApprovalRecord,
        decided: &Decided,
        via: &str,
    ) -> Result<JobRecord, AppError> {
        let ids: Vec<JobId> = approval.jobs().cloned().collect();
        let moved: Vec<Option<JobRecord>> = stream::iter(ids)
            .map(|id: JobId| async move {
                // A chunk's job id that was never admitted (a redelivered
                // item is the earlier job) has nothing to move.
                match self.store.job(&id).await? {
                    Some(job) => self.apply_to(job, decided, via).await.map(Some),
                    None => Ok(None),
                }
            })
            .buffered(APPLY_CONCURRENCY)
            .try_collect()
            .await?;
        // Applied once a job it names exists and moved. None yet: its batch
        // page is still being admitted, and the sweep comes back (for a
        // day; after that nothing more will come).
        let stale = self.clock.now() > approval.requested_at.plus(Duration::from_secs(86_400));
        if moved.iter().any(Option::is_some) || stale {
            self.store.mark_applied(&approval.id).await?;
        }
        // The first job, or the first that was admitted.
        moved.into_iter().flatten().next().ok_or_else(|| {
            AppError::Store(crate::ports::StoreError::Corrupt(format!(
                "approval {} names no admitted job",
                approval.id
            )))
        })
    }

    async fn apply_to(
        &self,
        mut job: JobRecord,
        decided: &Decided,
        via: &str,
    ) -> Result<JobRecord, AppError> {
        if job.state != JobState::PendingApproval {
            return Ok(job);
        }
        let (event, to) = match decided.decision {
            Decision::Approve => (JobEvent::Approve, JobState::Queued),
            Decision::Deny => (JobEvent::Deny, JobState::Denied),
        };
        job.state = JobState::PendingApproval.apply(event)?;
        job.updated_at = self.clock.now();
        let entry = AuditEntry::new(
            self.clock.now(),
            Stage::Approval,
            &decided.by,
            format!(
                "{} by {} at {} (via {via})",
                past_tense(decided.decision),
                decided.by,
                decided.at.to_rfc3339()
            ),
        )
        .state(to);
        if self
            .store
            .update(&job, JobState::PendingApproval, Some(&entry))
            .await?
            && to == JobState::Queued
        {
            enqueue(self.store, self.queue, &job).await?;
        }
        Ok(job)
    }

    /// Closes an overdue request: the job ends EXPIRED, nothing runs, and
    /// the request leaves the open list.
    async fn expire(&self, approval: &ApprovalRecord) -> Result<(), AppError> {
        let closed = Decided {
            decision: Decision::Deny,
            by: EXPIRY_ACTOR.to_string(),
            at: self.clock.now(),
        };
        if !self.store.close_expired(&approval.id, &closed).await? {
            // A person decided first (or it has not expired after all):
            // their decision stands, and is what the jobs follow.
            if let Some(current) = self.store.approval(&approval.id).await?
                && let Some(decided) = &current.decided
            {
                self.apply(&current, decided, "recovery").await?;
            }
            return Ok(());
        }
        self.expire_jobs(approval).await
    }

    async fn expire_jobs(&self, approval: &ApprovalRecord) -> Result<(), AppError> {
        for id in approval.jobs() {
            if let Some(job) = self.store.job(id).await? {
                self.expire_job(job, approval).await?;
            }
        }
        self.store.mark_applied(&approval.id).await?;
        Ok(())
    }

    async fn expire_job(
        &self,
        mut job: JobRecord,
        approval: &ApprovalRecord,
    ) -> Result<(), AppError> {
        if job.state != JobState::PendingApproval {
            return Ok(());
        }
        job.state = JobState::PendingApproval.apply(JobEvent::Expire)?;
        job.updated_at = self.clock.now();
        let entry = AuditEntry::new(
            self.clock.now(),
            Stage::Approval,
            "tollgate",
            format!(
                "approval request expired at {} undecided",
                approval.expires_at.to_rfc3339()
            ),
        )
        .state(JobState::Expired);
        self.store
            .update(&job, JobState::PendingApproval, Some(&entry))
            .await?;
        Ok(())
    }

    /// The sweep: expire overdue requests, apply decisions whose job did not
    /// move (a crash between the two writes), notify approvers not yet
    /// notified. Returns how many requests it acted on.
    pub async fn sweep<N: Notifier>(&self, notifier: &N) -> Result<usize, AppError> {
        let mut acted = 0;
        let now = self.clock.now();
        // Every open request, a page at a time (a large batch opens many).
        let mut after: Option<ApprovalRecord> = None;
        for _ in 0..OPEN_PAGES {
            let page = self.store.open_approvals_after(after.as_ref(), 100).await?;
            let Some(last) = page.last().cloned() else {
                break;
            };
            for approval in page {
                if approval.status(now) == ApprovalStatus::Expired {
                    self.expire(&approval).await?;
                    acted += 1;
                } else if !approval.notified && self.notify(&approval, notifier).await? {
                    acted += 1;
                }
            }
            after = Some(last);
        }
        // Decisions and expiries whose decider stopped before every job
        // moved (a chunk of hundreds, a timeout), oldest first.
        for approval in self.store.unapplied_approvals(100).await? {
            if let Some(decided) = &approval.decided {
                let settled = if decided.by == EXPIRY_ACTOR {
                    self.expire_jobs(&approval).await
                } else {
                    self.apply(&approval, decided, "recovery").await.map(|_| ())
                };
                // One that cannot be settled yet never holds up the others.
                match settled {
                    Ok(()) => acted += 1,
                    Err(e) => {
                        tracing::warn!(approval_id = %approval.id, error = %e, "decision not applied yet; the next sweep tries again")
                    }
                }
            }
        }
        // Decisions made before requests were marked applied.
        for job in self
            .store
            .list(Some(JobState::PendingApproval), 100)
            .await?
        {
            if let Some(approval) = self.store.approval_for_job(&job.id).await?
                && let Some(decided) = &approval.decided
            {
                self.apply(&approval, decided, "recovery").await?;
                acted += 1;
            }
        }
        Ok(acted)
    }

    /// The links for each approver.
    pub fn notice(&self, approval: &ApprovalRecord) -> ApprovalNotice {
        let approvers = approval
            .approvers
            .iter()
            .filter_map(|a| {
                Some(ApproverLinks {
                    approver: a.clone(),
                    approve_url: self.links.url(&self.links.token(
                        approval,
                        a,
                        Decision::Approve,
                    )?),
                    deny_url: self
                        .links
                        .url(&self.links.token(approval, a, Decision::Deny)?),
                })
            })
            .collect();
        ApprovalNotice {
            approval_id: approval.id.clone(),
            job_id: approval.job_id.to_string(),
            requested_by: approval.requested_by.clone(),
            rule: approval.rule.clone(),
            intent: approval.intent.clone(),
            expires_at: approval.expires_at.to_rfc3339(),
            approvers,
        }
    }

    /// Sends the request to the approvers; a failure is logged and left for
    /// the next sweep (the request itself is safe in the store).
    pub async fn notify<N: Notifier>(
        &self,
        approval: &ApprovalRecord,
        notifier: &N,
    ) -> Result<bool, AppError> {
        if !notifier.configured() {
            // Left unsent: it goes out when a notifier is configured.
            return Ok(false);
        }
        let notice = Notice::ApprovalRequested(self.notice(approval));
        if let Err(e) = notifier.notify(&notice).await {
            tracing::warn!(approval_id = %approval.id, error = %e, "approval notification failed; the sweep retries it");
            return Ok(false);
        }
        self.store.mark_notified(&approval.id).await?;
        Ok(true)
    }
}

/// The open requests of a batch (one chunk's when `chunk` is given, counted
/// from 1), oldest first: an operator decides a batch or a chunk at once.
pub async fn open_batch_requests<S: JobStore + ApprovalStore>(
    store: &S,
    batch: &crate::domain::ids::BatchId,
    chunk: Option<u32>,
) -> Result<Vec<ApprovalRecord>, AppError> {
    let mut found = Vec::new();
    let mut after: Option<ApprovalRecord> = None;
    for _ in 0..OPEN_PAGES {
        let page = store.open_approvals_after(after.as_ref(), 100).await?;
        let Some(last) = page.last().cloned() else {
            break;
        };
        for approval in page {
            let of_batch = match chunk {
                Some(n) => super::admission::chunk_of(&approval, batch) == Some(n),
                None => store
                    .job(&approval.job_id)
                    .await?
                    .is_some_and(|j| j.batch.as_ref() == Some(batch)),
            };
            if of_batch {
                found.push(approval);
            }
        }
        after = Some(last);
    }
    Ok(found)
}
