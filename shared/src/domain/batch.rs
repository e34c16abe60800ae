//! Batches: a bulk sync run delivered as one request of many events.
//!
//! Each item is validated on its own: a bad item is rejected by its index
//! (and kept in the manual queue), the others are admitted as ordinary jobs
//! that remember their batch. Progress is counted from those jobs; a paused
//! batch's jobs stay queued where they are until it is resumed.

use super::event::{Event, Priority};
use super::ids::{BatchId, SourceSystem};
use super::job::JobState;
use super::rejection::RejectionId;
use super::time::Timestamp;
use super::validation::{FieldError, validate_event};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Largest batch request body. API Gateway takes 10 MB, but a Lambda
/// function is handed at most 6 MB (the whole request, headers included):
/// 5 MiB fits with room to spare, on every deployment alike. A larger run
/// is several requests with the same `batchId`.
pub const MAX_BATCH_BYTES: usize = 5 * 1024 * 1024;
/// Most events in one batch request.
pub const MAX_BATCH_EVENTS: usize = 10_000;

/// What tollgate keeps about a batch besides its jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchRecord {
    pub id: BatchId,
    pub source_system: SourceSystem,
    /// Items received, over every request that named this batch.
    pub received: u32,
    pub accepted: u32,
    /// Items that were redeliveries of work already admitted.
    pub duplicates: u32,
    /// The first rejected items (at most [`MAX_LISTED_REJECTED`]: the record
    /// stays small whatever the batch); all are in the manual queue.
    pub rejected: Vec<RejectedItem>,
    /// Every rejected item, however many.
    #[serde(default)]
    pub rejected_total: u32,
    pub paused: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Rejected items a batch record lists by index (the rest are counted, and
/// kept in the manual queue): one stored record stays far below DynamoDB's
/// 400 KB item limit.
pub const MAX_LISTED_REJECTED: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectedItem {
    pub index: u32,
    pub rejection_id: RejectionId,
}

/// A batch request, read and checked item by item.
#[derive(Debug)]
pub struct BatchRequest {
    pub id: BatchId,
    pub source_system: SourceSystem,
    /// In request order: the event and its payload (as admitted), or the
    /// errors of that item with paths relative to the item.
    pub items: Vec<Result<(Event, Value), Vec<FieldError>>>,
    /// Each item's JSON text, as stored in its page and kept for the
    /// manual queue.
    pub texts: Vec<String>,
}

/// Reads a batch body. Errors here concern the batch as a whole (no item is
/// admitted); item errors are in [`BatchRequest::items`].
pub fn parse_batch(body: &[u8]) -> Result<BatchRequest, Vec<FieldError>> {
    if body.len() > MAX_BATCH_BYTES {
        return Err(vec![FieldError::new(
            "body",
            format!(
                "is {} bytes; the limit is {MAX_BATCH_BYTES} bytes",
                body.len()
            ),
        )]);
    }
    // Two levels for the batch itself, the rest as for one event.
    let limit = super::limits::MAX_JSON_DEPTH + 2;
    if super::nesting::deeper_than(body, limit) {
        return Err(vec![super::validation::too_deep(limit)]);
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| vec![FieldError::new("body", format!("is not valid JSON: {e}"))])?;
    let Some(obj) = value.as_object() else {
        return Err(vec![FieldError::new("body", "must be a JSON object")]);
    };
    let mut errors = Vec::new();
    for key in obj.keys() {
        if !matches!(key.as_str(), "batchId" | "sourceSystem" | "events") {
            errors.push(FieldError::new(key.clone(), "is not a batch field"));
        }
    }
    let id = match obj.get("batchId") {
        None => {
            errors.push(FieldError::new("batchId", "is required"));
            None
        }
        Some(v) => {
            let id = v.as_str().and_then(BatchId::parse);
            if id.is_none() {
                errors.push(FieldError::new(
                    "batchId",
                    "must be 1–128 letters, digits, '.', '_', '-' or ':'",
                ));
            }
            id
        }
    };
    let source = match obj.get("sourceSystem") {
        None => {
            errors.push(FieldError::new("sourceSystem", "is required"));
            None
        }
        Some(v) => {
            let s = v.as_str().and_then(SourceSystem::parse);
            if s.is_none() {
                errors.push(FieldError::new(
                    "sourceSystem",
                    "must be 1–64 letters, digits, '.', '_' or '-'",
                ));
            }
            s
        }
    };
    let events = match obj.get("events").map(Value::as_array) {
        None => {
            errors.push(FieldError::new("events", "is required"));
            None
        }
        Some(None) => {
            errors.push(FieldError::new("events", "must be an array of events"));
            None
        }
        Some(Some(a)) if a.is_empty() => {
            errors.push(FieldError::new("events", "must not be empty"));
            None
        }
        Some(Some(a)) if a.len() > MAX_BATCH_EVENTS => {
            errors.push(FieldError::new(
                "events",
                format!(
                    "has {} items; the limit is {MAX_BATCH_EVENTS} per request (send several requests with the same batchId)",
                    a.len()
                ),
            ));
            None
        }
        Some(Some(a)) => Some(a),
    };
    let (Some(id), Some(source), Some(events)) = (id, source, events) else {
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let texts: Vec<String> = events.iter().map(Value::to_string).collect();
    let items = events
        .iter()
        .zip(&texts)
        .map(|(item, text)| {
            within_event_limit(text)?;
            read_item(item, &source)
        })
        .collect();
    Ok(BatchRequest {
        id,
        source_system: source,
        items,
        texts,
    })
}

/// An item is held to the limit of one event: what it creates must fit in
/// one stored job, as an event's does.
fn within_event_limit(text: &str) -> Result<(), Vec<FieldError>> {
    let limit = super::limits::MAX_BODY_BYTES;
    if text.len() > limit {
        return Err(vec![FieldError::new(
            "",
            format!(
                "is {} bytes; the limit for one event is {limit} bytes",
                text.len()
            ),
        )]);
    }
    Ok(())
}

/// One stored item read again for admission, exactly as [`parse_batch`]
/// read it.
pub fn read_item_text(
    text: &str,
    source: &SourceSystem,
) -> Result<(Event, Value), Vec<FieldError>> {
    within_event_limit(text)?;
    let item: Value = serde_json::from_str(text)
        .map_err(|e| vec![FieldError::new("", format!("is not valid JSON: {e}"))])?;
    read_item(&item, source)
}

/// One item: it inherits the batch's `sourceSystem` and `bulk` priority
/// unless it says otherwise (a different source system is an error).
pub fn read_item(item: &Value, source: &SourceSystem) -> Result<(Event, Value), Vec<FieldError>> {
    let Some(obj) = item.as_object() else {
        return Err(vec![FieldError::new("", "must be a JSON object")]);
    };
    let mut obj = obj.clone();
    match obj.get("sourceSystem").map(Value::as_str) {
        None => {
            obj.insert("sourceSystem".into(), Value::from(source.as_str()));
        }
        Some(Some(s)) if s == source.as_str() => {}
        Some(_) => {
            return Err(vec![FieldError::new(
                "sourceSystem",
                format!("must be the batch's sourceSystem ({source}) or absent"),
            )]);
        }
    }
    obj.entry("priority")
        .or_insert_with(|| Value::from(Priority::Bulk.as_str()));
    let payload = Value::Object(obj);
    match validate_event(&payload) {
        Ok(event) => Ok((event, payload)),
        Err(e) => Err(e.0),
    }
}

/// Prefixes an item's error paths with its place in the batch.
pub fn item_errors(index: usize, errors: &[FieldError]) -> Vec<FieldError> {
    errors
        .iter()
        .map(|e| {
            let field = if e.field.is_empty() {
                format!("events[{index}]")
            } else {
                format!("events[{index}].{}", e.field)
            };
            FieldError::new(field, e.message.clone())
        })
        .collect()
}

/// How far a batch has come, counted from its jobs.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub counts: BTreeMap<JobState, u32>,
    /// Jobs whose work is over (succeeded, merged into another, failed…).
    pub finished: u32,
    pub remaining: u32,
    /// Jira points the batch's jobs spent (a bulk create's point shared).
    pub points: f64,
    /// Time to finish at the pace so far; none before the first job ends.
    pub eta_seconds: Option<u64>,
}

/// One job of a batch, as progress needs it.
#[derive(Debug, Clone, Copy)]
pub struct JobSummary {
    pub state: JobState,
    pub points_milli: u64,
    pub updated_at: Timestamp,
}

pub fn progress(record: &BatchRecord, jobs: &[JobSummary], now: Timestamp) -> Progress {
    let mut counts = BTreeMap::new();
    let mut finished = 0;
    let mut points_milli = 0;
    for j in jobs {
        *counts.entry(j.state).or_insert(0) += 1;
        points_milli += j.points_milli;
        if j.state.is_terminal() {
            finished += 1;
        }
    }
    let remaining = jobs.len() as u32 - finished;
    let elapsed_ms = (now.0 - record.created_at.0).max(1) as f64;
    let eta_seconds = (finished > 0 && !record.paused).then(|| {
        let per_job_ms = elapsed_ms / f64::from(finished);
        (per_job_ms * f64::from(remaining) / 1000.0).ceil() as u64
    });
    Progress {
        counts,
        finished,
        remaining,
        points: points_milli as f64 / 1000.0,
        eta_seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn a_bad_item_is_named_by_its_index_and_the_others_are_read() {
        let b = parse_batch(&body(json!({
            "batchId": "cmdb-night-1", "sourceSystem": "cmdb",
            "events": [
                {"externalId": "ci-1", "desiredOperation": "upsert", "projectKey": "ASSET", "issueType": "Task", "summary": "a"},
                {"externalId": "ci-2", "desiredOperation": "upsert", "projectKey": "ASSET", "issueType": "Task"},
                "not an object",
                {"sourceSystem": "other", "externalId": "ci-4", "desiredOperation": "comment", "comment": "c"}
            ]
        })))
        .unwrap();
        assert_eq!(b.items.len(), 4);
        let (event, payload) = b.items[0].as_ref().unwrap();
        assert_eq!(event.source_system.as_str(), "cmdb");
        assert_eq!(event.priority, Priority::Bulk);
        assert_eq!(payload["sourceSystem"], "cmdb");
        let e1 = item_errors(1, b.items[1].as_ref().unwrap_err());
        assert_eq!(e1[0].field, "events[1].summary");
        let e2 = item_errors(2, b.items[2].as_ref().unwrap_err());
        assert_eq!(e2[0].field, "events[2]");
        let e3 = item_errors(3, b.items[3].as_ref().unwrap_err());
        assert_eq!(e3[0].field, "events[3].sourceSystem");
    }

    #[test]
    fn an_item_may_ask_for_interactive_priority() {
        let b = parse_batch(&body(json!({"batchId": "b", "sourceSystem": "s", "events": [
            {"externalId": "1", "desiredOperation": "comment", "comment": "c", "issueKey": "OPS-1", "priority": "interactive"}
        ]})))
        .unwrap();
        assert_eq!(
            b.items[0].as_ref().unwrap().0.priority,
            Priority::Interactive
        );
    }

    #[test]
    fn the_batch_itself_must_name_itself_its_source_and_some_events() {
        let errs = parse_batch(&body(json!({"events": [], "extra": 1}))).unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["extra", "batchId", "sourceSystem", "events"]);
        let errs = parse_batch(&body(
            json!({"batchId": "a/b", "sourceSystem": "s", "events": [{}]}),
        ))
        .unwrap_err();
        assert_eq!(errs[0].field, "batchId");
        let many: Vec<Value> = (0..=MAX_BATCH_EVENTS).map(|_| json!({})).collect();
        let errs = parse_batch(&body(
            json!({"batchId": "a", "sourceSystem": "s", "events": many}),
        ))
        .unwrap_err();
        assert!(errs[0].message.contains("10000"), "{errs:?}");
        assert!(parse_batch(b"[1]").is_err());
    }

    #[test]
    fn an_item_over_the_limit_of_one_event_is_refused_by_its_index() {
        let long = "x".repeat(super::super::limits::MAX_BODY_BYTES);
        let b = parse_batch(&body(json!({"batchId": "b", "sourceSystem": "s", "events": [
            {"externalId": "1", "desiredOperation": "comment", "comment": long, "issueKey": "OPS-1"},
            {"externalId": "2", "desiredOperation": "comment", "comment": "ok", "issueKey": "OPS-1"}
        ]})))
        .unwrap();
        let errors = b.items[0].as_ref().unwrap_err();
        assert!(
            errors[0].message.contains("limit for one event"),
            "{errors:?}"
        );
        assert!(b.items[1].is_ok());
        assert!(read_item_text(&b.texts[0], &b.source_system).is_err());
        assert!(read_item_text(&b.texts[1], &b.source_system).is_ok());
    }

    #[test]
    fn progress_counts_states_points_and_an_eta_from_the_pace_so_far() {
        let record = BatchRecord {
            id: BatchId::parse("b").unwrap(),
            source_system: SourceSystem::parse("s").unwrap(),
            received: 4,
            accepted: 4,
            duplicates: 0,
            rejected: vec![],
            rejected_total: 0,
            paused: false,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        };
        let job = |state, points_milli| JobSummary {
            state,
            points_milli,
            updated_at: Timestamp(0),
        };
        let jobs = [
            job(JobState::Succeeded, 500),
            job(JobState::Superseded, 0),
            job(JobState::Queued, 0),
            job(JobState::Waiting, 1000),
        ];
        let p = progress(&record, &jobs, Timestamp(10_000));
        assert_eq!(p.finished, 2);
        assert_eq!(p.remaining, 2);
        assert_eq!(p.points, 1.5);
        assert_eq!(p.counts[&JobState::Queued], 1);
        assert_eq!(p.eta_seconds, Some(10));
        let paused = BatchRecord {
            paused: true,
            ..record
        };
        assert_eq!(
            progress(&paused, &jobs, Timestamp(10_000)).eta_seconds,
            None
        );
    }
}
