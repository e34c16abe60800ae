//! Admission of a stored batch post, page by page behind its cursor.
//!
//! Each page is an idempotent unit: its items' job ids, its chunk approval
//! id and its rejection ids are derived from the post and the item's index,
//! so admitting a page again (a crash, a lost continuation, two admitters)
//! creates nothing twice; the cursor and the batch's counts move together,
//! once per page. Items of a page are admitted a few at a time: a page of a
//! few hundred items takes about a second on DynamoDB.

use super::AppError;
use super::ingest::{Ingest, IngestOutcome, PageItem, describe};
use crate::domain::admission::{AdmissionRecord, BatchPage, PostId, Tally};
use crate::domain::approval::{ApprovalId, ApprovalRecord};
use crate::domain::batch::{RejectedItem, item_errors, read_item_text};
use crate::domain::event::{Event, Priority};
use crate::domain::idempotency::{DedupId, Fingerprint, IdempotencyKey, LinkId};
use crate::domain::ids::{BatchId, JobId};
use crate::domain::job::JobState;
use crate::domain::policy::{MassCreate, PolicyDecision};
use crate::domain::rejection::Rejection;
use crate::domain::time::Timestamp;
use crate::ports::{Clock, IngestStore, StoreError, WorkQueue};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde_json::Value;
use std::time::Duration;

/// An item ready for admission: its event, payload and derived job id.
type ValidItem = (Event, Value, JobId);

/// A rule's share of a page: its name, approvers and expiry, and the new
/// items it holds (index, event, job id).
type RuleGroup<'a> = (
    &'a str,
    &'a [String],
    Duration,
    Vec<(u32, &'a Event, JobId)>,
);

/// Entities of one page admitted at once.
const CONCURRENCY: usize = 16;

/// A stored post the sweep found stalled, and what resuming it did.
#[derive(Debug, Clone, PartialEq)]
pub struct Resumed {
    pub batch: BatchId,
    pub post: PostId,
    pub pages: u32,
    pub next_page: u32,
}

impl<S, Q, C> Ingest<'_, S, Q, C>
where
    S: IngestStore,
    Q: WorkQueue,
    C: Clock,
{
    /// Admits the post's pages from its cursor until all are admitted or
    /// the next page would not end by `until`, judged by the slowest page
    /// so far. Returns where the admission stands and what the pages
    /// admitted here added.
    pub async fn admit_pages(
        &self,
        batch: &BatchId,
        post: &PostId,
        until: Option<Timestamp>,
    ) -> Result<(AdmissionRecord, Tally), AppError> {
        let mut total = Tally::default();
        let mut slowest = 0i64;
        loop {
            let Some(admission) = self.store.admission(batch, post).await? else {
                return Err(missing(format!("batch {batch} has no post {post}")));
            };
            let started = self.clock.now();
            if admission.is_done() || until.is_some_and(|u| started.0 + slowest >= u.0) {
                return Ok((admission, total));
            }
            let Some(page) = self.store.page(batch, post, admission.next_page).await? else {
                return Err(missing(format!(
                    "post {post} of batch {batch} has no page {}",
                    admission.next_page
                )));
            };
            let tally = self.admit_page(&admission, &page).await?;
            slowest = slowest.max(self.clock.now().0 - started.0);
            if self
                .store
                .advance_admission(batch, post, page.number, &tally, self.clock.now())
                .await?
            {
                total.received += tally.received;
                total.accepted += tally.accepted;
                total.duplicates += tally.duplicates;
                total.held += tally.held;
                total.requests += tally.requests;
                tracing::info!(%batch, %post, page = page.number + 1, of = admission.pages, accepted = tally.accepted, duplicates = tally.duplicates, "batch page admitted");
            }
        }
    }

    /// Admissions whose continuation was lost (not moved for a minute):
    /// resumed until `until`. One that fails is reported and the others
    /// still run.
    pub async fn resume_stalled(&self, until: Option<Timestamp>) -> Result<Vec<Resumed>, AppError> {
        let before = Timestamp(self.clock.now().0 - 60_000);
        let mut resumed = Vec::new();
        for stalled in self.store.stalled_admissions(before, 20).await? {
            if until.is_some_and(|u| self.clock.now() >= u) {
                break;
            }
            match self.admit_pages(&stalled.batch, &stalled.post, until).await {
                Ok((a, _)) => resumed.push(Resumed {
                    batch: a.batch,
                    post: a.post,
                    pages: a.pages,
                    next_page: a.next_page,
                }),
                Err(e) => {
                    tracing::warn!(batch = %stalled.batch, post = %stalled.post, error = %e, "stalled batch admission could not resume")
                }
            }
        }
        Ok(resumed)
    }

    async fn admit_page(
        &self,
        admission: &AdmissionRecord,
        page: &BatchPage,
    ) -> Result<Tally, AppError> {
        let now = self.clock.now();
        let Some(source) = self.store.batch(&admission.batch).await? else {
            return Err(missing(format!("batch {} is gone", admission.batch)));
        };
        let source = source.source_system;
        let mut valid: Vec<(u32, Event, Value, JobId)> = Vec::new();
        let mut rejected = Vec::new();
        for (offset, text) in page.items.iter().enumerate() {
            let index = page.first_index + offset as u32;
            match read_item_text(text, &source) {
                Ok((event, payload)) => {
                    let id = admission.post.job_id(admission.created_at, index);
                    valid.push((index, event, payload, id));
                }
                Err(errors) => {
                    // Its context is kept (the batch, the index, the batch's
                    // source system); the same item posted again is the
                    // same rejection.
                    let rejection = Rejection::of_batch_item(
                        admission.batch.as_str(),
                        index,
                        source.as_str(),
                        Priority::Bulk,
                        text.as_bytes(),
                        item_errors(index as usize, &errors),
                        now,
                    );
                    self.store.keep_rejection(&rejection).await?;
                    rejected.push(RejectedItem {
                        index,
                        rejection_id: rejection.id,
                    });
                }
            }
        }
        self.store
            .note_rejected(&admission.batch, &rejected)
            .await?;
        // Which items are new to tollgate (a redelivered item is the
        // earlier job: it opens nothing and is not counted again).
        let mut fresh = Vec::with_capacity(valid.len());
        for (_, event, payload, id) in &valid {
            let dedup = DedupId::of(
                event.operation.kind(),
                &IdempotencyKey::of(event),
                &Fingerprint::of(payload),
            );
            fresh.push(match self.store.job_by_dedup(&dedup).await? {
                Some(existing) => &existing == id,
                None => true,
            });
        }
        let chunk = match admission.gated {
            true => {
                self.chunk_request(admission, page, &valid, &fresh, now)
                    .await?
            }
            false => None,
        };
        let decided = self.decide_page(&valid, &fresh, now).await?;
        let (held, opened) = self
            .rule_requests(admission, page, &valid, &fresh, &decided, now)
            .await?;
        // One entity's items in order (its create before its update, as
        // posted); different entities a few at a time.
        let mut entities: Vec<(LinkId, Vec<(ValidItem, PolicyDecision)>)> = Vec::new();
        for ((_, event, payload, id), decision) in valid.into_iter().zip(decided) {
            let link = LinkId::of(&event.source_system, &event.external_id);
            let item = ((event, payload, id), decision);
            match entities.iter_mut().find(|(l, _)| *l == link) {
                Some((_, items)) => items.push(item),
                None => entities.push((link, vec![item])),
            }
        }
        let per_entity: Vec<Vec<(JobId, IngestOutcome)>> = stream::iter(entities)
            .map(|(_, items)| {
                let (chunk, held) = (chunk.as_ref(), &held);
                let batch = &admission.batch;
                async move {
                    let mut outcomes = Vec::with_capacity(items.len());
                    for ((event, payload, id), decided) in items {
                        let own = id.clone();
                        let waits_on = match &decided {
                            PolicyDecision::Run { .. } => chunk,
                            PolicyDecision::NeedsApproval { rule, .. } => {
                                held.iter().find(|(r, _)| r == rule).map(|(_, a)| a)
                            }
                        };
                        let item = PageItem {
                            id,
                            decided,
                            waits_on,
                        };
                        let o = self
                            .admit(event, payload, now, Some(batch), Some(item))
                            .await?;
                        outcomes.push((own, o));
                    }
                    Ok::<_, AppError>(outcomes)
                }
            })
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        let outcomes: Vec<(JobId, IngestOutcome)> = per_entity.into_iter().flatten().collect();
        let mut tally = Tally {
            received: page.items.len() as u32,
            ..Tally::default()
        };
        for (own, outcome) in &outcomes {
            match outcome {
                // Its own job, admitted by an earlier attempt at this page,
                // counts as accepted.
                IngestOutcome::Accepted {
                    duplicate: true,
                    job_id,
                    ..
                } if job_id != own => tally.duplicates += 1,
                IngestOutcome::Accepted { state, .. } => {
                    tally.accepted += 1;
                    if *state == JobState::PendingApproval {
                        tally.held += 1;
                    }
                }
                _ => {}
            }
        }
        tally.requests = u32::from(chunk.is_some()) + opened;
        Ok(tally)
    }

    /// Decides the page's items as a whole: the mass-creation guard counts
    /// the creates admitted before the page plus the page's own new ones
    /// before each item, as if they came one by one.
    async fn decide_page(
        &self,
        valid: &[(u32, Event, Value, JobId)],
        fresh: &[bool],
        now: Timestamp,
    ) -> Result<Vec<PolicyDecision>, AppError> {
        let mut counted: Option<u64> = None;
        let mut decided = Vec::with_capacity(valid.len());
        for ((_, event, _, _), new) in valid.iter().zip(fresh) {
            let creates = event.operation.kind().creates();
            let recent = match (&self.policy.mass_create, creates) {
                (Some(m), true) => match counted {
                    Some(n) => n,
                    None => {
                        let key = MassCreate::counter_key(&event.source_system);
                        let n = self.store.count(&key, m.window_index(now)).await?;
                        counted = Some(n);
                        n
                    }
                },
                _ => 0,
            };
            decided.push(self.policy.decide(event, recent));
            if creates && *new {
                counted = counted.map(|n| n + 1);
            }
        }
        Ok(decided)
    }

    /// One request per rule that holds items of the page (the rule's
    /// approvers and expiry), naming those of its items that are new;
    /// created once (derived ids). Returns each rule's request.
    async fn rule_requests(
        &self,
        admission: &AdmissionRecord,
        page: &BatchPage,
        valid: &[(u32, Event, Value, JobId)],
        fresh: &[bool],
        decided: &[PolicyDecision],
        now: Timestamp,
    ) -> Result<(Vec<(String, ApprovalId)>, u32), AppError> {
        let mut groups: Vec<RuleGroup<'_>> = Vec::new();
        for (((index, event, _, id), new), decision) in valid.iter().zip(fresh).zip(decided) {
            let PolicyDecision::NeedsApproval {
                rule,
                approvers,
                expiry,
            } = decision
            else {
                continue;
            };
            let at = match groups.iter().position(|g| g.0 == rule) {
                Some(at) => at,
                None => {
                    groups.push((rule, approvers, *expiry, Vec::new()));
                    groups.len() - 1
                }
            };
            if *new {
                groups[at].3.push((*index, event, id.clone()));
            }
        }
        let source = self.batch_source(&admission.batch).await?;
        let mut out = Vec::with_capacity(groups.len());
        let mut opened = 0;
        for (rule, approvers, expiry, items) in groups {
            let id = admission.post.rule_approval_id(page.number, rule);
            if let Some(first) = items.first() {
                let approval = ApprovalRecord {
                    id: id.clone(),
                    job_id: first.2.clone(),
                    also: items[1..].iter().map(|n| n.2.clone()).collect(),
                    rule: format!("{rule} (its items in this chunk, one request)"),
                    intent: chunk_intent(&admission.batch, page.number, admission.pages, &items),
                    requested_by: source.clone(),
                    approvers: approvers.to_vec(),
                    requested_at: now,
                    expires_at: now.plus(expiry),
                    decided: None,
                    notified: false,
                };
                self.store.create_approval(&approval).await?;
                opened += 1;
                tracing::info!(batch = %admission.batch, chunk = page.number + 1, items = items.len(), approval_id = %id, rule, "batch items wait for approval together");
            }
            out.push((rule.to_string(), id));
        }
        Ok((out, opened))
    }

    async fn batch_source(&self, batch: &BatchId) -> Result<String, AppError> {
        Ok(self
            .store
            .batch(batch)
            .await?
            .map(|b| b.source_system.to_string())
            .unwrap_or_default())
    }

    /// The page's approval request, created once: it names the jobs of the
    /// page's items that are new to tollgate (an item a previous post
    /// admitted is that earlier job, and waits on no second request), and
    /// expires counted from the page's admission.
    async fn chunk_request(
        &self,
        admission: &AdmissionRecord,
        page: &BatchPage,
        valid: &[(u32, Event, Value, JobId)],
        fresh: &[bool],
        now: Timestamp,
    ) -> Result<Option<ApprovalId>, AppError> {
        let new: Vec<(u32, &Event, JobId)> = valid
            .iter()
            .zip(fresh)
            .filter(|(_, new)| **new)
            .map(|((index, event, _, id), _)| (*index, event, id.clone()))
            .collect();
        let Some(first) = new.first() else {
            return Ok(None);
        };
        let over = self.policy.batch_approval.map_or(0, |g| g.over);
        let approval = ApprovalRecord {
            id: admission.post.approval_id(page.number),
            job_id: first.2.clone(),
            also: new[1..].iter().map(|n| n.2.clone()).collect(),
            rule: format!("batch_approval (over {over} items)"),
            intent: chunk_intent(&admission.batch, page.number, admission.pages, &new),
            requested_by: self.batch_source(&admission.batch).await?,
            approvers: self.policy.approvers.clone(),
            requested_at: now,
            expires_at: now.plus(Duration::from_secs(self.policy.expiry_minutes * 60)),
            decided: None,
            notified: false,
        };
        self.store.create_approval(&approval).await?;
        tracing::info!(batch = %admission.batch, chunk = page.number + 1, items = new.len(), approval_id = %approval.id, "batch chunk waits for approval");
        Ok(Some(approval.id))
    }
}

fn missing(what: String) -> AppError {
    AppError::Store(StoreError::Corrupt(what))
}

/// What one chunk will change, for its approvers: where it sits in the
/// batch, how many of each operation, and the first items in words.
/// The chunk (counted from 1) a batch chunk's request is for, read back
/// from its first line of intent: operators approve `--batch B --chunk N`.
pub fn chunk_of(
    approval: &crate::domain::approval::ApprovalRecord,
    batch: &BatchId,
) -> Option<u32> {
    let first = approval.intent.first()?;
    let rest = first.strip_prefix(&format!("batch {batch}, chunk "))?;
    rest.split_once(" of ")?.0.parse().ok()
}

fn chunk_intent(batch: &BatchId, page: u32, of: u32, part: &[(u32, &Event, JobId)]) -> Vec<String> {
    const SHOWN: usize = 20;
    let first = part.first().map_or(0, |p| p.0);
    let last = part.last().map_or(0, |p| p.0);
    let mut lines = vec![format!(
        "batch {batch}, chunk {} of {of}: items {first}–{last}, {} changes",
        page + 1,
        part.len()
    )];
    let mut kinds: std::collections::BTreeMap<&str, usize> = Default::default();
    for (_, e, _) in part {
        *kinds.entry(e.operation.kind().as_str()).or_default() += 1;
    }
    lines.push(
        kinds
            .iter()
            .map(|(k, n)| format!("{n} × {k}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    for (index, event, _) in part.iter().take(SHOWN) {
        let words = describe(event);
        lines.push(format!("#{index}: {}", words.join(" ")));
    }
    if part.len() > SHOWN {
        lines.push(format!("… and {} more", part.len() - SHOWN));
    }
    lines
}
