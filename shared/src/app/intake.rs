//! Intake from real senders: `POST /v1/sources/{name}`. The sender is
//! authenticated by its own scheme over the raw body, its payload mapped to
//! v1 events, and each event admitted like any other (deduplicated,
//! policy-checked). Nothing is dropped: an unreadable payload, an item the
//! mapping cannot turn into a valid event, or a refused event is kept in the
//! manual queue with the reason and the path of the field at fault.

use super::AppError;
use super::ingest::{Ingest, IngestOutcome};
use crate::domain::ids::SourceSystem;
use crate::domain::limits::MAX_BODY_BYTES;
use crate::domain::rejection::{Rejection, RejectionId};
use crate::domain::secret::Secret;
use crate::domain::sender_auth::{self, AuthError, Scheme};
use crate::domain::source::{Source, Sources, UnmatchedPolicy};
use crate::domain::standard_webhooks;
use crate::domain::stats::{CallStats, SenderStats, hour_window};
use crate::domain::validation::{FieldError, validate_event};
use crate::ports::{Clock, IngestStore, WorkQueue};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Largest payload a sender may post (an Alertmanager group of many
/// alerts is larger than one event).
pub const MAX_SOURCE_BYTES: usize = 1024 * 1024;

/// What became of one item of the payload.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemOutcome {
    /// Where the item sits in the payload (`alerts[3]`).
    pub path: String,
    pub result: Result<IngestOutcome, (Vec<FieldError>, RejectionId)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum IntakeOutcome {
    UnknownSource,
    Unauthorized(AuthError),
    TooLarge {
        size: usize,
        limit: usize,
    },
    /// Not JSON: kept whole in the manual queue.
    Unreadable {
        errors: Vec<FieldError>,
        rejection: RejectionId,
    },
    Received {
        source: SourceSystem,
        items: Vec<ItemOutcome>,
        /// What no rule of the mapping takes, where the sender's entry says
        /// to ignore it (otherwise it is kept, among the rejected items).
        ignored: Vec<IgnoredItem>,
    },
}

/// Something of the payload no rule took, answered as ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct IgnoredItem {
    pub path: String,
    pub reason: String,
}

/// The senders and their secrets, as one entrypoint holds them.
pub struct Intake<'a, S, Q, C> {
    pub ingest: &'a Ingest<'a, S, Q, C>,
    pub sources: &'a Sources,
    /// Secrets by source name, newest first.
    pub secrets: &'a HashMap<String, Vec<Secret>>,
}

impl<S, Q, C> Intake<'_, S, Q, C>
where
    S: IngestStore,
    Q: WorkQueue,
    C: Clock,
{
    /// `header(name)` reads a request header (case-insensitively).
    pub async fn receive(
        &self,
        name: &str,
        header: impl Fn(&str) -> Option<String>,
        body: &[u8],
    ) -> Result<IntakeOutcome, AppError> {
        let Some(source) = self.sources.get(name) else {
            return Ok(IntakeOutcome::UnknownSource);
        };
        if body.len() > MAX_SOURCE_BYTES {
            return Ok(IntakeOutcome::TooLarge {
                size: body.len(),
                limit: MAX_SOURCE_BYTES,
            });
        }
        let now = self.ingest.clock.now();
        let secrets = self
            .secrets
            .get(source.name.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        let verified = if source.auth == Scheme::StandardWebhooks {
            let (id, timestamp, signature) = (
                header(standard_webhooks::ID_HEADER),
                header(standard_webhooks::TIMESTAMP_HEADER),
                header(standard_webhooks::SIGNATURE_HEADER),
            );
            let headers = standard_webhooks::Headers {
                id: id.as_deref(),
                timestamp: timestamp.as_deref(),
                signature: signature.as_deref(),
            };
            sender_auth::verify_standard(headers, body, secrets, now.unix_seconds())
        } else {
            let sent = header(source.auth.header());
            sender_auth::verify(
                source.auth,
                sent.as_deref(),
                body,
                secrets,
                now.unix_seconds(),
            )
        };
        if let Err(e) = verified {
            tracing::warn!(source = %source.name, error = %e, "sender authentication refused");
            return Ok(IntakeOutcome::Unauthorized(e));
        }
        let limit = 2 * crate::domain::limits::MAX_JSON_DEPTH;
        let unreadable = SenderStats {
            rejected: 1,
            ..SenderStats::default()
        };
        if crate::domain::nesting::deeper_than(body, limit) {
            let errors = vec![crate::domain::validation::too_deep(limit)];
            let rejection = self
                .keep(&source.name, "body", body, body, errors.clone(), now)
                .await?;
            self.count_stats(&source.name, unreadable, now).await;
            return Ok(IntakeOutcome::Unreadable { errors, rejection });
        }
        let payload: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                let errors = vec![FieldError::new("body", format!("is not valid JSON: {e}"))];
                let rejection = self
                    .keep(&source.name, "body", body, body, errors.clone(), now)
                    .await?;
                self.count_stats(&source.name, unreadable, now).await;
                return Ok(IntakeOutcome::Unreadable { errors, rejection });
            }
        };
        let mapped = source.mapping.apply(&payload, &source.name, &source.params);
        let mut items = Vec::with_capacity(mapped.mapped.len());
        for m in mapped.mapped {
            let result = match m.event {
                Ok(event_json) => match validate_event(&event_json) {
                    Ok(event) => {
                        let outcome = self
                            .ingest
                            .admit(event, event_json.clone(), now, None, None)
                            .await?;
                        match outcome {
                            IngestOutcome::Conflict { .. } => {
                                let errors = vec![FieldError::new(
                                    m.path.clone(),
                                    "this key was already accepted with a different payload, and a create happens once",
                                )];
                                let item = serde_json::to_vec(&event_json).unwrap_or_default();
                                Err((
                                    errors.clone(),
                                    self.keep(&source.name, &m.path, body, &item, errors, now)
                                        .await?,
                                ))
                            }
                            other => Ok(other),
                        }
                    }
                    Err(e) => {
                        let errors: Vec<FieldError> = e
                            .0
                            .into_iter()
                            .map(|f| FieldError::new(format!("{}.{}", m.path, f.field), f.message))
                            .collect();
                        let item = serde_json::to_vec(&event_json).unwrap_or_default();
                        Err((
                            errors.clone(),
                            self.keep(&source.name, &m.path, body, &item, errors, now)
                                .await?,
                        ))
                    }
                },
                Err(errors) => {
                    let item = serde_json::to_vec(
                        &json!({ "source": source.name.as_str(), "item": m.item }),
                    )
                    .unwrap_or_default();
                    Err((
                        errors.clone(),
                        self.keep(&source.name, &m.path, body, &item, errors, now)
                            .await?,
                    ))
                }
            };
            items.push(ItemOutcome {
                path: m.path,
                result,
            });
        }
        // Nothing is dropped without a record: what no rule takes is kept,
        // unless the sender's entry says to ignore it.
        let reason = format!("no rule of sender {} matched", source.name);
        let mut ignored = Vec::new();
        for u in mapped.unmatched {
            match source.unmatched {
                UnmatchedPolicy::Keep => {
                    let errors = vec![FieldError::new(u.path.clone(), reason.clone())];
                    let item = serde_json::to_vec(
                        &json!({ "source": source.name.as_str(), "item": u.item }),
                    )
                    .unwrap_or_default();
                    let kept = self
                        .keep(&source.name, &u.path, body, &item, errors.clone(), now)
                        .await?;
                    items.push(ItemOutcome {
                        path: u.path,
                        result: Err((errors, kept)),
                    });
                }
                UnmatchedPolicy::Ignore => ignored.push(IgnoredItem {
                    path: u.path,
                    reason: reason.clone(),
                }),
            }
        }
        if !ignored.is_empty() && warn_due(source.name.as_str(), now) {
            tracing::warn!(source = %source.name, ignored = ignored.len(), reason = %reason, "sender payload items ignored (its entry says unmatched = \"ignore\"); logged once a minute per sender");
        }
        self.count(&source.name, &items, ignored.len(), now).await;
        tracing::info!(source = %source.name, items = items.len(), ignored = ignored.len(), "sender payload received");
        Ok(IntakeOutcome::Received {
            source: source.name.clone(),
            items,
            ignored,
        })
    }

    /// Adds the delivery's items to the sender's figures (`tollgate stats`).
    /// A figure that cannot be stored is logged, never a failed delivery.
    async fn count(
        &self,
        source: &SourceSystem,
        items: &[ItemOutcome],
        ignored: usize,
        now: crate::domain::time::Timestamp,
    ) {
        let mut st = SenderStats {
            ignored: ignored as u64,
            ..SenderStats::default()
        };
        for item in items {
            match &item.result {
                Ok(IngestOutcome::Accepted {
                    duplicate: true, ..
                }) => st.duplicate += 1,
                Ok(IngestOutcome::Accepted { .. }) => st.accepted += 1,
                _ => st.rejected += 1,
            }
        }
        self.count_stats(source, st, now).await;
    }

    async fn count_stats(
        &self,
        source: &SourceSystem,
        st: SenderStats,
        now: crate::domain::time::Timestamp,
    ) {
        let mut stats = CallStats::default();
        stats.senders.insert(source.as_str().to_string(), st);
        if let Err(e) = self
            .ingest
            .store
            .add_stats(hour_window(now.0), &stats)
            .await
        {
            tracing::warn!(source = %source, error = %e, "sender figures not stored");
        }
    }

    /// Keeps what failed in the manual queue with the sender and the path
    /// at fault, and the whole payload, so a re-submission runs the
    /// sender's mapping again. A payload too large to keep whole keeps the
    /// item alone (`item`), re-submitted as a corrected v1 event.
    async fn keep(
        &self,
        source: &SourceSystem,
        path: &str,
        payload: &[u8],
        item: &[u8],
        errors: Vec<FieldError>,
        now: crate::domain::time::Timestamp,
    ) -> Result<RejectionId, AppError> {
        let rejection = if payload.len() <= MAX_BODY_BYTES {
            Rejection::from_sender(source.as_str(), path, payload, errors, now)
        } else {
            Rejection::new(item, errors, now)
        };
        self.ingest.store.keep_rejection(&rejection).await?;
        Ok(rejection.id)
    }
}

/// Runs a sender's mapping again on a kept (or corrected) payload, for a
/// re-submission from the manual queue: the item at `path` (every item, for
/// `body`) is admitted; nothing new is kept. The first accepted item's
/// outcome, or what is still wrong.
pub(crate) async fn remap<S, Q, C>(
    ingest: &Ingest<'_, S, Q, C>,
    sender: &Source,
    payload: &[u8],
    path: &str,
    now: crate::domain::time::Timestamp,
) -> Result<Result<IngestOutcome, Vec<FieldError>>, AppError>
where
    S: IngestStore,
    Q: WorkQueue,
    C: Clock,
{
    let payload: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => {
            return Ok(Err(vec![FieldError::new(
                "body",
                format!("is not valid JSON: {e}"),
            )]));
        }
    };
    let mapped = sender.mapping.apply(&payload, &sender.name, &sender.params);
    let mut first = None;
    let mut errors = Vec::new();
    for m in mapped
        .mapped
        .into_iter()
        .filter(|m| path == "body" || m.path == path)
    {
        match m.event {
            Ok(json) => match validate_event(&json) {
                Ok(event) => match ingest.admit(event, json, now, None, None).await? {
                    IngestOutcome::Conflict { .. } => errors.push(FieldError::new(
                        m.path,
                        "this key was already accepted with a different payload, and a create happens once",
                    )),
                    outcome => {
                        first.get_or_insert(outcome);
                    }
                },
                Err(e) => errors.extend(
                    e.0.into_iter()
                        .map(|f| FieldError::new(format!("{}.{}", m.path, f.field), f.message)),
                ),
            },
            Err(e) => errors.extend(e),
        }
    }
    match first {
        Some(outcome) => Ok(Ok(outcome)),
        None if errors.is_empty() => Ok(Err(vec![FieldError::new(
            path,
            format!("no rule of sender {} matched", sender.name),
        )])),
        None => Ok(Err(errors)),
    }
}

/// Whether an "ignored" warning for `source` is due: once a minute per
/// sender, so a chatty sender does not flood the log.
fn warn_due(source: &str, now: crate::domain::time::Timestamp) -> bool {
    use std::sync::{Mutex, OnceLock};
    static LAST: OnceLock<Mutex<HashMap<String, i64>>> = OnceLock::new();
    let mut last = LAST
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    match last.get(source) {
        Some(&at) if now.0 - at < 60_000 => false,
        _ => {
            last.insert(source.to_string(), now.0);
            true
        }
    }
}
