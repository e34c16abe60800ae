//! DynamoDB adapter: jobs, audit trails, dedup records, links, leases and
//! governor state in one table (single-table design), for the Lambda
//! functions. Same behaviour as the SQLite adapter; both pass the suite in
//! `shared/tests/conformance`.
//!
//! Storage layout (`pk`, `sk` strings; every write that must not create an
//! item it expects to exist carries `attribute_exists(pk)`):
//!
//! | item        | pk               | sk                        | attributes |
//! |-------------|------------------|---------------------------|------------|
//! | job         | `JOB#<jobId>`    | `JOB`                     | every `JobRecord` field; `gsi1*` (by state), `gsi2*` (outbox, only while not enqueued) |
//! | audit entry | `JOB#<jobId>`    | `AUDIT#<ms>#<uuidv7>`     | `entry` (JSON) |
//! | dedup       | `DEDUP#<dedupId>`| `DEDUP`                   | `jobId` |
//! | entity job  | `ENTITY#<linkId>`| `JOB#<jobId>`             | one per admitted job of an entity (job ids sort by time) |
//! | link        | `LINK#<linkId>`  | `LINK`                    | `creator`, `issueKey` |
//! | lease       | `LEASE#<name>`   | `LEASE`                   | `holder`, `expiresAt` (ms), `fence` (the fencing token) |
//! | revision    | `LINK#<linkId>`  | `REV#<field>`             | `jobId`: the newest revision applied to that field of the entity's issue |
//! | governor    | `GOV#<site>`     | `GOV`                     | `version`, `state` (JSON) |
//! | approval    | `APPROVAL#<id>`  | `APPROVAL`                | every `ApprovalRecord` field; `gsi1*` while open |
//! | approval ref| `JOB#<jobId>`    | `APPROVAL`                | `approvalId` (the job's approval; one per job of a batch chunk's request, `also`) |
//! | counter     | `COUNT#<key>`    | `W#<window>`              | `n`, bumped by `ADD` (atomic); expires a day after |
//! | batch       | `BATCH#<id>`     | `BATCH`                   | `record` (JSON), `paused` (kept by re-posts) |
//! | batch job   | `BATCH#<id>`     | `JOB#<jobId>`             | one per admitted job of the batch |
//! | stats       | `STATS#<hour>`   | `STATS`                   | one `c|<counter>` number per counter, added by `ADD` in one update per flush; expires with retention |
//! | rejection   | `REJECTED#<id>`  | `REJECTED`                | body, errors and origin (JSON), `resubmittedAs` or `discarded` (JSON), each set once; kept with `attribute_not_exists(pk)` (a batch item's id is its own); in `gsi1` under `REJECTED` |
//!
//! * Admission is one `TransactWriteItems`: the dedup item with
//!   `attribute_not_exists(pk)` and `ReturnValuesOnConditionCheckFailure =
//!   ALL_OLD` (a duplicate names its job without a second query), the job,
//!   its entity item and its first audit entries — all or nothing.
//! * State changes are `UpdateItem … ConditionExpression #state = :expected`,
//!   transacted with their audit entry when there is one.
//! * Leases are conditional `UpdateItem`s: a renewal (`holder = :me`) keeps
//!   the fencing token; a take-over (absent or expired) adds one to it.
//!   Release only sets `expiresAt` to now, and the item outlives its
//!   expiry by a day, so tokens never go back while a worker lives.
//! * A fenced write is a `TransactWriteItems` whose first item is a
//!   `ConditionCheck` on the lease (`fence = :token`): a worker that lost
//!   its lease writes nothing more.
//! * A field revision is raised by `UpdateItem … attribute_not_exists(pk)
//!   OR jobId < :id`, transacted with the fence check.
//! * Governor rows are written with `version = :expected` (optimistic).
//! * An approval's decision is `UpdateItem … attribute_not_exists(decision)`
//!   (once); open approvals sit in `gsi1` under `APPROVALS#OPEN` until then.
//! * GSI `gsi1` (`STATE#<state>#<shard>`, `<ms>#<jobId>`, keys only) lists
//!   jobs by state; GSI `gsi2` (`OUTBOX#<shard>`, same sort key, keys only)
//!   is sparse: a job is in it while it will run and has no message sent —
//!   from admission (or approval) until its message is sent, and never once
//!   it is denied, expired or over; the sweep pages through it.
//!   Both are sharded 8 ways so ingest never writes one hot partition.
//! * `ttl` (epoch seconds, the table's TTL attribute) on audit, dedup and
//!   entity items (admission + retention), on leases, and on a job only once
//!   it is over (its end + retention; removed again if it is re-run):
//!   retention never deletes work that may still run. Links and governor
//!   rows never expire: an entity's issue is forever.

use super::aws_error::{backend, conditional};
use crate::domain::approval::{ApprovalId, ApprovalRecord, Decided, Decision};
use crate::domain::audit::AuditEntry;
use crate::domain::batch::{BatchRecord, JobSummary};
use crate::domain::event::{OperationKind, Priority};
use crate::domain::governor::SiteGovernor;
use crate::domain::idempotency::{DedupId, Fingerprint, IdempotencyKey, LinkId};
use crate::domain::ids::{BatchId, ExternalId, IssueKey, JobId, SourceSystem};
use crate::domain::job::JobState;
use crate::domain::rejection::{Discarded, Rejection, RejectionId};
use crate::domain::stats::CallStats;
use crate::domain::time::Timestamp;
use crate::ports::{
    Admission, ApprovalStore, BatchStore, Clock, Counters, Fence, FieldRevisions, GovernorStore,
    JobRecord, JobStore, Leases, Link, LinkStore, RejectionStore, StatsStore, StoreError,
    SystemClock,
};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, KeysAndAttributes, Projection, ProjectionType, Put, ReturnValue,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TimeToLiveSpecification,
    TransactWriteItem, Update,
};
use std::collections::HashMap;
use std::time::Duration;

type Item = HashMap<String, AttributeValue>;

/// Shards of each GSI partition key.
const SHARDS: u32 = 8;
/// GSI names, as the SAM template declares them.
pub const GSI_BY_STATE: &str = "gsi1";
pub const GSI_OUTBOX: &str = "gsi2";
/// The table's TTL attribute.
pub const TTL_ATTRIBUTE: &str = "ttl";
const CONDITIONAL_FAILED: &str = "ConditionalCheckFailed";

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    /// How long admitted jobs, their audit and dedup records are kept.
    retention: Duration,
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s(item: &Item, name: &str) -> Result<String, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v.clone()),
        other => Err(corrupt(format!("attribute {name}: {other:?}"))),
    }
}

fn opt_s(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}

fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    opt_n(item, name)?.ok_or_else(|| corrupt(format!("attribute {name} is missing")))
}

fn opt_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<Option<T>, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map(Some)
            .map_err(|_| corrupt(format!("attribute {name}: {v:?}"))),
        Some(other) => Err(corrupt(format!("attribute {name}: {other:?}"))),
        None => Ok(None),
    }
}

fn batch_pk(id: &BatchId) -> String {
    format!("BATCH#{id}")
}

fn entity_pk(link: &LinkId) -> String {
    format!("ENTITY#{link}")
}

fn job_pk(id: &str) -> String {
    format!("JOB#{id}")
}

/// Zero-padded so the sort key orders numerically.
fn sort_time(ms: i64) -> String {
    format!("{:015}", ms.max(0))
}

/// A stable shard for a job, so its GSI keys spread over `SHARDS` partitions.
fn shard(id: &JobId) -> u32 {
    id.as_str()
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32))
        % SHARDS
}

fn by_state_pk(state: JobState, shard: u32) -> String {
    format!("STATE#{}#{shard}", state.as_str())
}

/// States a worker acts on: only these belong in the outbox.
fn runnable(state: JobState) -> bool {
    matches!(
        state,
        JobState::Queued | JobState::Waiting | JobState::Running
    )
}

/// Pages of the outbox one sweep reads per shard at most.
const OUTBOX_PAGES: usize = 20;

fn outbox_pk(shard: u32) -> String {
    format!("OUTBOX#{shard}")
}

fn job_sort(job: &JobRecord) -> String {
    format!("{}#{}", sort_time(job.created_at.0), job.id)
}

fn epoch_seconds(t: Timestamp) -> i64 {
    t.0.div_euclid(1000)
}

fn audit_item(id: &JobId, entry: &AuditEntry, at: Timestamp, ttl: i64) -> Result<Item, StoreError> {
    let json = serde_json::to_string(entry).map_err(corrupt)?;
    Ok(HashMap::from([
        ("pk".into(), s(job_pk(id.as_str()))),
        (
            "sk".into(),
            s(format!(
                "AUDIT#{}#{}",
                sort_time(at.0),
                uuid::Uuid::now_v7()
            )),
        ),
        ("entry".into(), s(json)),
        (TTL_ATTRIBUTE.into(), n(ttl)),
    ]))
}

fn job_item(job: &JobRecord, ttl: i64) -> Item {
    let sh = shard(&job.id);
    let mut item: Item = HashMap::from([
        ("pk".into(), s(job_pk(job.id.as_str()))),
        ("sk".into(), s("JOB")),
        ("id".into(), s(job.id.as_str())),
        ("dedup".into(), s(job.dedup.as_str())),
        ("idemKey".into(), s(job.key.as_str())),
        ("fingerprint".into(), s(job.fingerprint.as_str())),
        ("link".into(), s(job.link.as_str())),
        ("kind".into(), s(job.kind.as_str())),
        ("priority".into(), s(job.priority.as_str())),
        ("sourceSystem".into(), s(job.source_system.as_str())),
        ("externalId".into(), s(job.external_id.as_str())),
        ("payload".into(), s(job.payload.clone())),
        ("createdAt".into(), n(job.created_at.0)),
        ("gsi1pk".into(), s(by_state_pk(job.state, sh))),
        ("gsi1sk".into(), s(job_sort(job))),
    ]);
    // Retention never deletes work that is not over: the job expires only
    // once it ends (see `update_job`).
    if job.state.is_terminal() && job.state != JobState::Exhausted {
        item.insert(TTL_ATTRIBUTE.into(), n(ttl));
    }
    if let Some(batch) = &job.batch {
        item.insert("batch".into(), s(batch.as_str()));
    }
    // The outbox holds only work that will run and has no message yet: a
    // job waiting for a person enters it when it is approved.
    if !job.enqueued && runnable(job.state) {
        item.insert("gsi2pk".into(), s(outbox_pk(sh)));
        item.insert("gsi2sk".into(), s(job_sort(job)));
    }
    for (name, value) in mutable_fields(job) {
        if let Some(v) = value {
            item.insert(name.into(), v);
        }
    }
    item
}

/// The fields `update` writes; `None` means "remove the attribute".
fn mutable_fields(job: &JobRecord) -> Vec<(&'static str, Option<AttributeValue>)> {
    vec![
        ("jobState", Some(s(job.state.as_str()))),
        ("issueKey", job.issue_key.as_ref().map(|k| s(k.as_str()))),
        ("stepsDone", Some(n(job.steps_done))),
        ("stepStarted", job.step_started.map(|(i, _)| n(i))),
        ("stepStartedAt", job.step_started.map(|(_, at)| n(at.0))),
        ("attempts", Some(n(job.attempts))),
        ("throttles", Some(n(job.throttles))),
        ("lastError", job.last_error.as_ref().map(|e| s(e.clone()))),
        ("updatedAt", Some(n(job.updated_at.0))),
        ("enqueued", Some(AttributeValue::Bool(job.enqueued))),
        (
            "mergedInto",
            job.merged_into.as_ref().map(|j| s(j.as_str())),
        ),
        ("pointsMilli", Some(n(job.points_milli))),
        ("notBefore", job.not_before.map(|t| n(t.0))),
    ]
}

fn job_from_item(item: &Item) -> Result<JobRecord, StoreError> {
    let kind = get_s(item, "kind")?;
    let priority = get_s(item, "priority")?;
    let state = get_s(item, "jobState")?;
    let started: Option<u32> = opt_n(item, "stepStarted")?;
    let started_at: Option<i64> = opt_n(item, "stepStartedAt")?;
    Ok(JobRecord {
        id: JobId::from_stored(get_s(item, "id")?),
        key: IdempotencyKey::from_stored(get_s(item, "idemKey")?),
        fingerprint: Fingerprint::from_stored(get_s(item, "fingerprint")?),
        dedup: DedupId::from_stored(get_s(item, "dedup")?),
        link: LinkId::from_stored(get_s(item, "link")?),
        kind: OperationKind::parse(&kind).ok_or_else(|| corrupt(format!("operation {kind}")))?,
        priority: Priority::parse(&priority)
            .ok_or_else(|| corrupt(format!("priority {priority}")))?,
        source_system: SourceSystem::from_stored(get_s(item, "sourceSystem")?),
        external_id: ExternalId::from_stored(get_s(item, "externalId")?),
        payload: get_s(item, "payload")?,
        state: JobState::parse(&state).ok_or_else(|| corrupt(format!("state {state}")))?,
        issue_key: opt_s(item, "issueKey").map(IssueKey::from_stored),
        steps_done: get_n(item, "stepsDone")?,
        step_started: started.zip(started_at).map(|(i, at)| (i, Timestamp(at))),
        attempts: get_n(item, "attempts")?,
        throttles: get_n(item, "throttles")?,
        last_error: opt_s(item, "lastError"),
        created_at: Timestamp(get_n(item, "createdAt")?),
        updated_at: Timestamp(get_n(item, "updatedAt")?),
        enqueued: matches!(item.get("enqueued"), Some(AttributeValue::Bool(true))),
        merged_into: opt_s(item, "mergedInto").map(JobId::from_stored),
        batch: opt_s(item, "batch").map(BatchId::from_stored),
        points_milli: opt_n(item, "pointsMilli")?.unwrap_or(0),
        not_before: opt_n(item, "notBefore")?.map(Timestamp),
    })
}

/// An update expression built with placeholders, so no attribute name can
/// collide with DynamoDB's reserved words.
#[derive(Default)]
struct Expr {
    set: Vec<String>,
    remove: Vec<String>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    fn name(&mut self, attr: &str) -> String {
        let placeholder = format!("#{attr}");
        self.names.insert(placeholder.clone(), attr.to_string());
        placeholder
    }

    fn value(&mut self, v: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), v);
        placeholder
    }

    fn set(&mut self, attr: &str, v: AttributeValue) {
        let (name, value) = (self.name(attr), self.value(v));
        self.set.push(format!("{name} = {value}"));
    }

    fn remove(&mut self, attr: &str) {
        let name = self.name(attr);
        self.remove.push(name);
    }

    fn update_expression(&self) -> String {
        let mut parts = Vec::new();
        if !self.set.is_empty() {
            parts.push(format!("SET {}", self.set.join(", ")));
        }
        if !self.remove.is_empty() {
            parts.push(format!("REMOVE {}", self.remove.join(", ")));
        }
        parts.join(" ")
    }
}

/// Whether a transaction was cancelled because one of its conditions failed,
/// and the old item of the first failed condition, when returned.
enum Cancelled {
    Condition(Option<Item>),
    /// Another transaction was touching the same items: try again.
    Conflict,
}

fn cancellation(
    e: &aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
) -> Option<Cancelled> {
    let aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) = e else {
        return None;
    };
    let reasons = c.cancellation_reasons();
    if let Some(r) = reasons
        .iter()
        .find(|r| r.code() == Some(CONDITIONAL_FAILED))
    {
        return Some(Cancelled::Condition(r.item().cloned()));
    }
    if reasons
        .iter()
        .any(|r| r.code() == Some("TransactionConflict"))
        || reasons.is_empty()
    {
        return Some(Cancelled::Conflict);
    }
    None
}

impl DynamoStore {
    /// `client` is built once at init and shared (it is a handle on one
    /// connection pool).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
            retention: Duration::from_secs(90 * 24 * 3600),
        }
    }

    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table as the SAM template declares it (tests and local
    /// runs; production tables come from the template) and waits until it
    /// is active.
    pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(corrupt)
        };
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(corrupt)
        };
        let gsi = |name: &str, pk: &str, sk: &str| -> Result<GlobalSecondaryIndex, StoreError> {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key(pk, KeyType::Hash)?)
                .key_schema(key(sk, KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::KeysOnly)
                        .build(),
                )
                .build()
                .map_err(corrupt)
        };
        client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .attribute_definitions(attr("pk")?)
            .attribute_definitions(attr("sk")?)
            .attribute_definitions(attr("gsi1pk")?)
            .attribute_definitions(attr("gsi1sk")?)
            .attribute_definitions(attr("gsi2pk")?)
            .attribute_definitions(attr("gsi2sk")?)
            .global_secondary_indexes(gsi(GSI_BY_STATE, "gsi1pk", "gsi1sk")?)
            .global_secondary_indexes(gsi(GSI_OUTBOX, "gsi2pk", "gsi2sk")?)
            .send()
            .await
            .map_err(backend)?;
        for _ in 0..100 {
            let status = client
                .describe_table()
                .table_name(table)
                .send()
                .await
                .map_err(backend)?
                .table()
                .and_then(|t| t.table_status().cloned());
            if status == Some(aws_sdk_dynamodb::types::TableStatus::Active) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(TTL_ATTRIBUTE)
                    .enabled(true)
                    .build()
                    .map_err(corrupt)?,
            )
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }

    fn ttl_from(&self, t: Timestamp) -> i64 {
        epoch_seconds(t.plus(self.retention))
    }

    fn put(&self, item: Item, condition: Option<&str>) -> Result<Put, StoreError> {
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .set_condition_expression(condition.map(str::to_string))
            .build()
            .map_err(corrupt)
    }

    async fn get(&self, pk: String, sk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend)?;
        Ok(out.item)
    }

    /// The job ids listed under `pk` as `JOB#<jobId>` items (an entity's
    /// or a batch's jobs), all pages.
    async fn member_job_ids(&self, pk: String) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :job)")
                .expression_attribute_values(":pk", s(pk.clone()))
                .expression_attribute_values(":job", s("JOB#"))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(backend)?;
            for item in out.items.unwrap_or_default() {
                if let Some(id) = get_s(&item, "sk")?.strip_prefix("JOB#") {
                    ids.push(id.to_string());
                }
            }
            match out.last_evaluated_key {
                Some(k) => start = Some(k),
                None => break,
            }
        }
        Ok(ids)
    }

    /// Fetches jobs by id (consistent reads, 100 keys a call).
    async fn jobs_by_id(&self, ids: &[String]) -> Result<Vec<JobRecord>, StoreError> {
        let mut jobs = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(100) {
            let mut keys: Vec<Item> = chunk
                .iter()
                .map(|id| HashMap::from([("pk".into(), s(job_pk(id))), ("sk".into(), s("JOB"))]))
                .collect();
            while !keys.is_empty() {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(corrupt)?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(backend)?;
                for item in out
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default()
                {
                    jobs.push(job_from_item(&item)?);
                }
                keys = out
                    .unprocessed_keys
                    .unwrap_or_default()
                    .remove(&self.table)
                    .map(|k| k.keys)
                    .unwrap_or_default();
                if !keys.is_empty() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        Ok(jobs)
    }

    /// Job ids from one GSI partition whose sort key is below `below`,
    /// newest first when `newest_first`.
    async fn index_ids(
        &self,
        index: &str,
        pk: String,
        below: Option<String>,
        newest_first: bool,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        // Each index's keys are named after it: `gsi1pk`, `gsi1sk`.
        let (pk_attr, sk_attr) = (format!("{index}pk"), format!("{index}sk"));
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .expression_attribute_names("#pk", &pk_attr)
                .expression_attribute_values(":pk", s(pk.clone()))
                .scan_index_forward(!newest_first)
                .limit(limit.clamp(1, 1000) as i32)
                .set_exclusive_start_key(start.take());
            q = match &below {
                Some(b) => q
                    .key_condition_expression("#pk = :pk AND #sk < :below")
                    .expression_attribute_names("#sk", &sk_attr)
                    .expression_attribute_values(":below", s(b.clone())),
                None => q.key_condition_expression("#pk = :pk"),
            };
            let out = q.send().await.map_err(backend)?;
            for item in out.items.unwrap_or_default() {
                let sort = get_s(&item, &sk_attr)?;
                let id = get_s(&item, "pk")?
                    .strip_prefix("JOB#")
                    .map(str::to_string)
                    .ok_or_else(|| corrupt("a GSI entry that is not a job"))?;
                found.push((sort, id));
            }
            match out.last_evaluated_key {
                Some(k) if found.len() < limit => start = Some(k),
                _ => break,
            }
        }
        found.truncate(limit);
        Ok(found)
    }

    /// One page of an outbox shard below `below`, oldest first, and where
    /// the next page starts.
    async fn outbox_page(
        &self,
        pk: String,
        below: String,
        limit: usize,
        start: Option<Item>,
    ) -> Result<(Vec<String>, Option<Item>), StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI_OUTBOX)
            .key_condition_expression("gsi2pk = :pk AND gsi2sk < :below")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":below", s(below))
            .scan_index_forward(true)
            .limit(limit.clamp(1, 1000) as i32)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(backend)?;
        let ids = out
            .items
            .unwrap_or_default()
            .iter()
            .map(|item| {
                get_s(item, "pk")?
                    .strip_prefix("JOB#")
                    .map(str::to_string)
                    .ok_or_else(|| corrupt("an outbox entry that is not a job"))
            })
            .collect::<Result<_, _>>()?;
        Ok((ids, out.last_evaluated_key.filter(|k| !k.is_empty())))
    }

    /// The condition that the lease still carries the writer's token.
    fn fence_check(&self, fence: &Fence) -> Result<TransactWriteItem, StoreError> {
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .key("pk", s(lease_pk(&fence.lease)))
            .key("sk", s("LEASE"))
            .condition_expression("fence = :token")
            .expression_attribute_values(":token", n(fence.token))
            .build()
            .map_err(corrupt)?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    /// Runs a transaction; false when one of its conditions failed. Retries
    /// a conflict with another transaction a few times.
    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<bool, StoreError> {
        for attempt in 0..5 {
            let r = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            match r {
                Ok(_) => return Ok(true),
                Err(err) => match err.as_service_error().and_then(cancellation) {
                    Some(Cancelled::Condition(_)) => return Ok(false),
                    Some(Cancelled::Conflict) if attempt < 4 => {
                        tokio::time::sleep(Duration::from_millis(20 << attempt)).await
                    }
                    _ => return Err(backend(err)),
                },
            }
        }
        Err(StoreError::Backend("transaction kept conflicting".into()))
    }

    async fn update_job(
        &self,
        job: &JobRecord,
        expected: JobState,
        audit: Option<&AuditEntry>,
        fence: Option<&Fence>,
    ) -> Result<bool, StoreError> {
        let mut e = Expr::default();
        for (name, value) in mutable_fields(job) {
            match (name, value) {
                // The outbox flag only ever goes up (see `mark_enqueued`).
                ("enqueued", Some(AttributeValue::Bool(false))) => {}
                (name, Some(v)) => e.set(name, v),
                (name, None) => e.remove(name),
            }
        }
        // Out of the outbox once its message is sent or it will not run
        // (denied, expired, over); into it when it becomes runnable without
        // a message (approved). Otherwise as it is: a worker's stale copy
        // must not put a sent job back.
        if job.enqueued || !runnable(job.state) {
            e.remove("gsi2pk");
            e.remove("gsi2sk");
        } else if !runnable(expected) {
            e.set("gsi2pk", s(outbox_pk(shard(&job.id))));
            e.set("gsi2sk", s(job_sort(job)));
        }
        e.set("gsi1pk", s(by_state_pk(job.state, shard(&job.id))));
        // Kept while it may still run (an exhausted job waits for a re-run);
        // retention counts from its end.
        if job.state.is_terminal() && job.state != JobState::Exhausted {
            e.set(TTL_ATTRIBUTE, n(self.ttl_from(job.updated_at)));
        } else {
            e.remove(TTL_ATTRIBUTE);
        }
        let state_name = e.name("jobState");
        let expected_value = e.value(s(expected.as_str()));
        let condition = format!("attribute_exists(pk) AND {state_name} = {expected_value}");
        let key = HashMap::from([
            ("pk".to_string(), s(job_pk(job.id.as_str()))),
            ("sk".to_string(), s("JOB")),
        ]);
        if audit.is_none() && fence.is_none() {
            let r = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key))
                .update_expression(e.update_expression())
                .condition_expression(condition)
                .set_expression_attribute_names(Some(e.names))
                .set_expression_attribute_values(Some(e.values))
                .send()
                .await;
            return conditional(r, |e| e.is_conditional_check_failed_exception());
        }
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression(e.update_expression())
            .condition_expression(condition)
            .set_expression_attribute_names(Some(e.names))
            .set_expression_attribute_values(Some(e.values))
            .build()
            .map_err(corrupt)?;
        let mut items = Vec::with_capacity(3);
        if let Some(f) = fence {
            items.push(self.fence_check(f)?);
        }
        items.push(TransactWriteItem::builder().update(update).build());
        if let Some(entry) = audit {
            let now = SystemClock.now();
            let audit = self.put(
                audit_item(&job.id, entry, now, self.ttl_from(job.created_at))?,
                None,
            )?;
            items.push(TransactWriteItem::builder().put(audit).build());
        }
        self.transact(items).await
    }
}

impl JobStore for DynamoStore {
    async fn admit(
        &self,
        job: &JobRecord,
        audit: &[AuditEntry],
        approval: Option<&ApprovalRecord>,
    ) -> Result<Admission, StoreError> {
        let ttl = self.ttl_from(job.created_at);
        let dedup = Put::builder()
            .table_name(&self.table)
            .set_item(Some(HashMap::from([
                ("pk".into(), s(format!("DEDUP#{}", job.dedup))),
                ("sk".into(), s("DEDUP")),
                ("jobId".into(), s(job.id.as_str())),
                (TTL_ATTRIBUTE.into(), n(ttl)),
            ])))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(corrupt)?;
        let mut items = vec![
            TransactWriteItem::builder().put(dedup).build(),
            TransactWriteItem::builder()
                .put(self.put(job_item(job, ttl), Some("attribute_not_exists(pk)"))?)
                .build(),
            TransactWriteItem::builder()
                .put(self.put(
                    HashMap::from([
                        ("pk".into(), s(entity_pk(&job.link))),
                        ("sk".into(), s(format!("JOB#{}", job.id))),
                        (TTL_ATTRIBUTE.into(), n(ttl)),
                    ]),
                    None,
                )?)
                .build(),
        ];
        if let Some(batch) = &job.batch {
            items.push(
                TransactWriteItem::builder()
                    .put(self.put(
                        HashMap::from([
                            ("pk".into(), s(batch_pk(batch))),
                            ("sk".into(), s(format!("JOB#{}", job.id))),
                            (TTL_ATTRIBUTE.into(), n(ttl)),
                        ]),
                        None,
                    )?)
                    .build(),
            );
        }
        if let Some(a) = approval {
            let (item, reference) = self.approval_items(a);
            items.push(
                TransactWriteItem::builder()
                    .put(self.put(item, Some("attribute_not_exists(pk)"))?)
                    .build(),
            );
            items.push(
                TransactWriteItem::builder()
                    .put(self.put(reference, None)?)
                    .build(),
            );
        }
        for entry in audit {
            items.push(
                TransactWriteItem::builder()
                    .put(self.put(audit_item(&job.id, entry, job.created_at, ttl)?, None)?)
                    .build(),
            );
        }
        for attempt in 0..6 {
            let r = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let err = match r {
                Ok(_) => return Ok(Admission::New),
                Err(err) => err,
            };
            match err.as_service_error().and_then(cancellation) {
                Some(Cancelled::Condition(old)) => {
                    let old = match old {
                        Some(item) => item,
                        None => self
                            .get(format!("DEDUP#{}", job.dedup), "DEDUP")
                            .await?
                            .ok_or_else(|| corrupt("dedup condition failed on an absent item"))?,
                    };
                    let id = get_s(&old, "jobId")?;
                    let existing = self
                        .get(job_pk(&id), "JOB")
                        .await?
                        .ok_or_else(|| corrupt(format!("dedup record names a missing job {id}")))?;
                    return Ok(Admission::Existing(Box::new(job_from_item(&existing)?)));
                }
                Some(Cancelled::Conflict) if attempt < 5 => {
                    tokio::time::sleep(Duration::from_millis(
                        10 + fastrand::u64(0..(20 << attempt)),
                    ))
                    .await;
                }
                _ => return Err(backend(err)),
            }
        }
        Err(StoreError::Backend("admission kept conflicting".into()))
    }

    async fn job_by_dedup(&self, dedup: &DedupId) -> Result<Option<JobId>, StoreError> {
        Ok(self
            .get(format!("DEDUP#{dedup}"), "DEDUP")
            .await?
            .map(|item| get_s(&item, "jobId"))
            .transpose()?
            .map(JobId::from_stored))
    }

    async fn job(&self, id: &JobId) -> Result<Option<JobRecord>, StoreError> {
        self.get(job_pk(id.as_str()), "JOB")
            .await?
            .map(|item| job_from_item(&item))
            .transpose()
    }

    async fn update_fenced(
        &self,
        job: &JobRecord,
        expected: JobState,
        audit: Option<&AuditEntry>,
        fence: Option<&Fence>,
    ) -> Result<bool, StoreError> {
        self.update_job(job, expected, audit, fence).await
    }

    async fn mark_enqueued(&self, id: &JobId) -> Result<(), StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(job_pk(id.as_str())))
            .key("sk", s("JOB"))
            .update_expression("SET enqueued = :t REMOVE gsi2pk, gsi2sk")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .send()
            .await;
        conditional(r, |e| e.is_conditional_check_failed_exception()).map(|_| ())
    }

    async fn reset_outbox(&self, job: &JobRecord) -> Result<(), StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(job_pk(job.id.as_str())))
            .key("sk", s("JOB"))
            .update_expression("SET enqueued = :f, gsi2pk = :opk, gsi2sk = :osk")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":f", AttributeValue::Bool(false))
            .expression_attribute_values(":opk", s(outbox_pk(shard(&job.id))))
            .expression_attribute_values(":osk", s(job_sort(job)))
            .send()
            .await;
        conditional(r, |e| e.is_conditional_check_failed_exception()).map(|_| ())
    }

    async fn append_audit(&self, id: &JobId, entry: &AuditEntry) -> Result<(), StoreError> {
        let now = SystemClock.now();
        let ttl = self.ttl_from(now);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(audit_item(id, entry, now, ttl)?))
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn audit_trail(&self, id: &JobId) -> Result<Vec<AuditEntry>, StoreError> {
        let mut entries = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :audit)")
                .expression_attribute_values(":pk", s(job_pk(id.as_str())))
                .expression_attribute_values(":audit", s("AUDIT#"))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(backend)?;
            for item in out.items.unwrap_or_default() {
                let raw = get_s(&item, "entry")?;
                entries.push(serde_json::from_str(&raw).map_err(corrupt)?);
            }
            match out.last_evaluated_key {
                Some(k) => start = Some(k),
                None => break,
            }
        }
        Ok(entries)
    }

    async fn entity_jobs(&self, link: &LinkId) -> Result<Vec<JobRecord>, StoreError> {
        let ids = self.member_job_ids(entity_pk(link)).await?;
        let mut jobs = self.jobs_by_id(&ids).await?;
        jobs.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(jobs)
    }

    async fn queued_creates(&self, limit: usize) -> Result<Vec<JobRecord>, StoreError> {
        // The by-state index does not know the operation: read a few times
        // the limit and keep the creates.
        let mut jobs: Vec<JobRecord> = self
            .list(Some(JobState::Queued), limit.saturating_mul(4))
            .await?
            .into_iter()
            .filter(|j| j.kind.creates())
            .collect();
        jobs.sort_by_key(|j| j.created_at);
        jobs.truncate(limit);
        Ok(jobs)
    }

    async fn unenqueued(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<JobRecord>, StoreError> {
        // Page through each shard, oldest first, until enough runnable jobs
        // are found: entries of jobs that will not run (left by an earlier
        // version, or moved meanwhile) are skipped, never a wall.
        let mut jobs: Vec<JobRecord> = Vec::new();
        let mut skipped = 0usize;
        for sh in 0..SHARDS {
            let mut start: Option<Item> = None;
            for _ in 0..OUTBOX_PAGES {
                let (ids, next) = self
                    .outbox_page(outbox_pk(sh), sort_time(before.0), limit, start.take())
                    .await?;
                for job in self.jobs_by_id(&ids).await? {
                    if !job.enqueued && runnable(job.state) {
                        jobs.push(job);
                    } else {
                        skipped += 1;
                    }
                }
                match next {
                    Some(k) if jobs.len() < limit => start = Some(k),
                    _ => break,
                }
            }
        }
        if skipped > 0 {
            tracing::info!(
                skipped,
                "outbox entries of jobs that will not run were skipped"
            );
        }
        jobs.sort_by_key(|j| j.created_at);
        jobs.truncate(limit);
        Ok(jobs)
    }

    async fn list(
        &self,
        state: Option<JobState>,
        limit: usize,
    ) -> Result<Vec<JobRecord>, StoreError> {
        let states: Vec<JobState> = match state {
            Some(s) => vec![s],
            None => JobState::ALL.to_vec(),
        };
        let mut found = Vec::new();
        for st in states {
            for sh in 0..SHARDS {
                found.extend(
                    self.index_ids(GSI_BY_STATE, by_state_pk(st, sh), None, true, limit)
                        .await?,
                );
            }
        }
        found.sort_by(|a, b| b.cmp(a));
        found.dedup();
        found.truncate(limit);
        let ids: Vec<String> = found.into_iter().map(|(_, id)| id).collect();
        // The index is eventually consistent: keep only jobs still in the
        // state asked for.
        let mut jobs: Vec<JobRecord> = self
            .jobs_by_id(&ids)
            .await?
            .into_iter()
            .filter(|j| state.is_none_or(|s| j.state == s))
            .collect();
        jobs.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        Ok(jobs)
    }
}

fn link_from_item(item: &Item) -> Result<Link, StoreError> {
    Ok(Link {
        creator: JobId::from_stored(get_s(item, "creator")?),
        issue_key: opt_s(item, "issueKey").map(IssueKey::from_stored),
    })
}

fn link_pk(id: &LinkId) -> String {
    format!("LINK#{id}")
}

impl LinkStore for DynamoStore {
    async fn link(&self, id: &LinkId) -> Result<Option<Link>, StoreError> {
        self.get(link_pk(id), "LINK")
            .await?
            .map(|item| link_from_item(&item))
            .transpose()
    }

    async fn claim_link(&self, id: &LinkId, creator: &JobId) -> Result<Link, StoreError> {
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(link_pk(id)))
            .item("sk", s("LINK"))
            .item("creator", s(creator.as_str()))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match r {
            Ok(_) => Ok(Link {
                creator: creator.clone(),
                issue_key: None,
            }),
            Err(e) => {
                let old = match e.as_service_error() {
                    Some(aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c)) => c.item().cloned(),
                    _ => return Err(backend(e)),
                };
                let item = match old {
                    Some(item) => item,
                    None => self
                        .get(link_pk(id), "LINK")
                        .await?
                        .ok_or_else(|| corrupt("link condition failed on an absent item"))?,
                };
                link_from_item(&item)
            }
        }
    }

    async fn take_over_link(
        &self,
        id: &LinkId,
        from: &JobId,
        to: &JobId,
    ) -> Result<bool, StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(link_pk(id)))
            .key("sk", s("LINK"))
            .update_expression("SET creator = :to")
            .condition_expression("creator = :from AND attribute_not_exists(issueKey)")
            .expression_attribute_values(":to", s(to.as_str()))
            .expression_attribute_values(":from", s(from.as_str()))
            .send()
            .await;
        conditional(r, |e| e.is_conditional_check_failed_exception())
    }

    async fn set_link_issue(
        &self,
        id: &LinkId,
        creator: &JobId,
        issue: &IssueKey,
        fence: &Fence,
    ) -> Result<bool, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(link_pk(id)))
            .key("sk", s("LINK"))
            .update_expression("SET issueKey = :issue")
            .condition_expression("creator = :creator")
            .expression_attribute_values(":issue", s(issue.as_str()))
            .expression_attribute_values(":creator", s(creator.as_str()))
            .build()
            .map_err(corrupt)?;
        self.transact(vec![
            self.fence_check(fence)?,
            TransactWriteItem::builder().update(update).build(),
        ])
        .await
    }

    async fn field_revisions(&self, id: &LinkId) -> Result<FieldRevisions, StoreError> {
        let mut out = FieldRevisions::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :rev)")
                .expression_attribute_values(":pk", s(link_pk(id)))
                .expression_attribute_values(":rev", s("REV#"))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(backend)?;
            for item in page.items() {
                let sk = get_s(item, "sk")?;
                let field = sk.trim_start_matches("REV#").to_string();
                out.insert(field, JobId::from_stored(get_s(item, "jobId")?));
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }

    async fn record_revisions(
        &self,
        id: &LinkId,
        revisions: &FieldRevisions,
        fence: &Fence,
    ) -> Result<bool, StoreError> {
        // One transaction per field (a newer revision already there fails
        // only that field's condition, which is what "never lower" means).
        for (field, job) in revisions {
            let raise = Update::builder()
                .table_name(&self.table)
                .key("pk", s(link_pk(id)))
                .key("sk", s(format!("REV#{field}")))
                .update_expression("SET jobId = :id")
                .condition_expression("attribute_not_exists(pk) OR jobId < :id")
                .expression_attribute_values(":id", s(job.as_str()))
                .build()
                .map_err(corrupt)?;
            let applied = self
                .transact(vec![
                    self.fence_check(fence)?,
                    TransactWriteItem::builder().update(raise).build(),
                ])
                .await?;
            if !applied && !self.fence_holds(fence).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

fn lease_pk(name: &str) -> String {
    format!("LEASE#{name}")
}

impl DynamoStore {
    /// Whether the lease still carries `fence`'s token (a strongly
    /// consistent read).
    async fn fence_holds(&self, fence: &Fence) -> Result<bool, StoreError> {
        let item = self.get(lease_pk(&fence.lease), "LEASE").await?;
        Ok(match item {
            Some(item) => opt_n::<u64>(&item, "fence")? == Some(fence.token),
            None => false,
        })
    }
}

impl DynamoStore {
    /// Ours already: renew, keeping the token.
    async fn renew_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, StoreError> {
        let now = SystemClock.now();
        let expires = now.plus(ttl);
        // Kept a day past its expiry: the token must outlive any worker
        // that could still write with an older one.
        let keep = n(epoch_seconds(expires) + 86_400);
        // Ours already: renew, keeping the token.
        let renewed = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(lease_pk(name)))
            .key("sk", s("LEASE"))
            .update_expression(
                "SET expiresAt = :exp, #ttl = :keep, fence = if_not_exists(fence, :one)",
            )
            .condition_expression("holder = :holder")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":exp", n(expires.0))
            .expression_attribute_values(":keep", keep.clone())
            .expression_attribute_values(":holder", s(holder))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match renewed {
            Ok(out) => {
                let attrs = out.attributes.unwrap_or_default();
                Ok(Some(opt_n::<u64>(&attrs, "fence")?.unwrap_or(1)))
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(backend(e)),
        }
    }

    /// Absent or expired: take it over with the next token.
    async fn take_over_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, StoreError> {
        let now = SystemClock.now();
        let expires = now.plus(ttl);
        let keep = n(epoch_seconds(expires) + 86_400);
        let taken = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(lease_pk(name)))
            .key("sk", s("LEASE"))
            .update_expression(
                "SET holder = :holder, expiresAt = :exp, #ttl = :keep, fence = if_not_exists(fence, :zero) + :one",
            )
            .condition_expression("attribute_not_exists(pk) OR expiresAt <= :now")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":holder", s(holder))
            .expression_attribute_values(":exp", n(expires.0))
            .expression_attribute_values(":keep", keep)
            .expression_attribute_values(":now", n(now.0))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        match taken {
            Ok(out) => {
                let attrs = out.attributes.unwrap_or_default();
                Ok(Some(opt_n::<u64>(&attrs, "fence")?.unwrap_or(1)))
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(backend(e)),
        }
    }
}

impl Leases for DynamoStore {
    async fn acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, StoreError> {
        // Renew, else take over; a take-over lost to a racer holding the
        // same name (two copies of one delivery) is a renewal after all.
        for _ in 0..2 {
            if let Some(token) = self.renew_lease(name, holder, ttl).await? {
                return Ok(Some(token));
            }
            if let Some(token) = self.take_over_lease(name, holder, ttl).await? {
                return Ok(Some(token));
            }
        }
        Ok(None)
    }

    async fn release(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let now = SystemClock.now();
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(lease_pk(name)))
            .key("sk", s("LEASE"))
            .update_expression("SET expiresAt = :now")
            .condition_expression("holder = :holder AND expiresAt > :now")
            .expression_attribute_values(":holder", s(holder))
            .expression_attribute_values(":now", n(now.0))
            .send()
            .await;
        conditional(r, |e| e.is_conditional_check_failed_exception()).map(|_| ())
    }
}

impl GovernorStore for DynamoStore {
    async fn load_governor(&self, site: &str) -> Result<(SiteGovernor, u64), StoreError> {
        match self.get(format!("GOV#{site}"), "GOV").await? {
            None => Ok((SiteGovernor::default(), 0)),
            Some(item) => {
                let state = serde_json::from_str(&get_s(&item, "state")?).map_err(corrupt)?;
                Ok((state, get_n(&item, "version")?))
            }
        }
    }

    async fn save_governor(
        &self,
        site: &str,
        state: &SiteGovernor,
        expected: u64,
    ) -> Result<bool, StoreError> {
        let json = serde_json::to_string(state).map_err(corrupt)?;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("GOV#{site}")))
            .item("sk", s("GOV"))
            .item("state", s(json))
            .item("version", n(expected + 1));
        let put = if expected == 0 {
            put.condition_expression("attribute_not_exists(pk)")
        } else {
            put.condition_expression("version = :expected")
                .expression_attribute_values(":expected", n(expected))
        };
        conditional(put.send().await, |e| {
            e.is_conditional_check_failed_exception()
        })
    }
}

const OPEN_APPROVALS: &str = "APPROVALS#OPEN";

fn approval_pk(id: &ApprovalId) -> String {
    format!("APPROVAL#{id}")
}

fn list_attr(v: &[String]) -> AttributeValue {
    AttributeValue::L(v.iter().map(|s| s_val(s)).collect())
}

fn s_val(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn get_list(item: &Item, name: &str) -> Result<Vec<String>, StoreError> {
    match item.get(name) {
        Some(AttributeValue::L(values)) => values
            .iter()
            .map(|v| match v {
                AttributeValue::S(s) => Ok(s.clone()),
                other => Err(corrupt(format!("attribute {name}: {other:?}"))),
            })
            .collect(),
        None => Ok(Vec::new()),
        other => Err(corrupt(format!("attribute {name}: {other:?}"))),
    }
}

fn approval_from_item(item: &Item) -> Result<ApprovalRecord, StoreError> {
    let decided = match opt_s(item, "decision") {
        None => None,
        Some(d) => Some(Decided {
            decision: match d.as_str() {
                "approve" => Decision::Approve,
                "deny" => Decision::Deny,
                other => return Err(corrupt(format!("decision {other}"))),
            },
            by: get_s(item, "decidedBy")?,
            at: Timestamp(get_n(item, "decidedAt")?),
        }),
    };
    Ok(ApprovalRecord {
        id: ApprovalId::from_stored(get_s(item, "id")?),
        job_id: JobId::from_stored(get_s(item, "jobId")?),
        rule: get_s(item, "rule")?,
        intent: get_list(item, "intent")?,
        requested_by: get_s(item, "requestedBy")?,
        approvers: get_list(item, "approvers")?,
        requested_at: Timestamp(get_n(item, "requestedAt")?),
        expires_at: Timestamp(get_n(item, "expiresAt")?),
        decided,
        notified: matches!(item.get("notified"), Some(AttributeValue::Bool(true))),
        also: match item.get("also") {
            Some(_) => get_list(item, "also")?
                .into_iter()
                .map(JobId::from_stored)
                .collect(),
            None => Vec::new(),
        },
    })
}

impl DynamoStore {
    /// The approval item and the job's reference to it.
    fn approval_items(&self, a: &ApprovalRecord) -> (Item, Item) {
        let ttl = self.ttl_from(a.requested_at);
        let mut item: Item = HashMap::from([
            ("pk".into(), s(approval_pk(&a.id))),
            ("sk".into(), s("APPROVAL")),
            ("id".into(), s(a.id.as_str())),
            ("jobId".into(), s(a.job_id.as_str())),
            ("rule".into(), s(a.rule.clone())),
            ("intent".into(), list_attr(&a.intent)),
            ("requestedBy".into(), s(a.requested_by.clone())),
            ("approvers".into(), list_attr(&a.approvers)),
            ("requestedAt".into(), n(a.requested_at.0)),
            ("expiresAt".into(), n(a.expires_at.0)),
            ("notified".into(), AttributeValue::Bool(a.notified)),
            (TTL_ATTRIBUTE.into(), n(ttl)),
        ]);
        if !a.also.is_empty() {
            let also: Vec<String> = a.also.iter().map(|j| j.to_string()).collect();
            item.insert("also".into(), list_attr(&also));
        }
        match &a.decided {
            Some(d) => {
                item.insert("decision".into(), s(d.decision.as_str()));
                item.insert("decidedBy".into(), s(d.by.clone()));
                item.insert("decidedAt".into(), n(d.at.0));
            }
            None => {
                item.insert("gsi1pk".into(), s(OPEN_APPROVALS));
                item.insert(
                    "gsi1sk".into(),
                    s(format!("{}#{}", sort_time(a.requested_at.0), a.id)),
                );
            }
        }
        let reference: Item = HashMap::from([
            ("pk".into(), s(job_pk(a.job_id.as_str()))),
            ("sk".into(), s("APPROVAL")),
            ("approvalId".into(), s(a.id.as_str())),
            (TTL_ATTRIBUTE.into(), n(ttl)),
        ]);
        (item, reference)
    }
}

impl ApprovalStore for DynamoStore {
    async fn create_approval(&self, a: &ApprovalRecord) -> Result<(), StoreError> {
        let (item, reference) = self.approval_items(a);
        // The other jobs' references first: once the request exists, every
        // job it covers finds it (the sweep settles decisions through them).
        let ttl = self.ttl_from(a.requested_at);
        for job in &a.also {
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(HashMap::from([
                    ("pk".into(), s(job_pk(job.as_str()))),
                    ("sk".into(), s("APPROVAL")),
                    ("approvalId".into(), s(a.id.as_str())),
                    (TTL_ATTRIBUTE.into(), n(ttl)),
                ])))
                .send()
                .await
                .map_err(backend)?;
        }
        self.client
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .put(self.put(item, Some("attribute_not_exists(pk)"))?)
                    .build(),
            )
            .transact_items(
                TransactWriteItem::builder()
                    .put(self.put(reference, None)?)
                    .build(),
            )
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn approval(&self, id: &ApprovalId) -> Result<Option<ApprovalRecord>, StoreError> {
        self.get(approval_pk(id), "APPROVAL")
            .await?
            .map(|item| approval_from_item(&item))
            .transpose()
    }

    async fn approval_for_job(&self, job: &JobId) -> Result<Option<ApprovalRecord>, StoreError> {
        let Some(reference) = self.get(job_pk(job.as_str()), "APPROVAL").await? else {
            return Ok(None);
        };
        let id = ApprovalId::from_stored(get_s(&reference, "approvalId")?);
        self.approval(&id).await
    }

    async fn decide(&self, id: &ApprovalId, decided: &Decided) -> Result<bool, StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(approval_pk(id)))
            .key("sk", s("APPROVAL"))
            .update_expression(
                "SET decision = :d, decidedBy = :by, decidedAt = :at REMOVE gsi1pk, gsi1sk",
            )
            .condition_expression(
                "attribute_exists(pk) AND attribute_not_exists(decision) AND expiresAt > :at",
            )
            .expression_attribute_values(":d", s(decided.decision.as_str()))
            .expression_attribute_values(":by", s(decided.by.clone()))
            .expression_attribute_values(":at", n(decided.at.0))
            .send()
            .await;
        conditional(r, |e| e.is_conditional_check_failed_exception())
    }

    async fn close_expired(&self, id: &ApprovalId, closed: &Decided) -> Result<bool, StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(approval_pk(id)))
            .key("sk", s("APPROVAL"))
            .update_expression(
                "SET decision = :d, decidedBy = :by, decidedAt = :at REMOVE gsi1pk, gsi1sk",
            )
            .condition_expression(
                "attribute_exists(pk) AND attribute_not_exists(decision) AND expiresAt <= :at",
            )
            .expression_attribute_values(":d", s(closed.decision.as_str()))
            .expression_attribute_values(":by", s(closed.by.clone()))
            .expression_attribute_values(":at", n(closed.at.0))
            .send()
            .await;
        conditional(r, |e| e.is_conditional_check_failed_exception())
    }

    async fn mark_notified(&self, id: &ApprovalId) -> Result<(), StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(approval_pk(id)))
            .key("sk", s("APPROVAL"))
            .update_expression("SET notified = :t")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .send()
            .await;
        conditional(r, |e| e.is_conditional_check_failed_exception()).map(|_| ())
    }

    async fn open_approvals_after(
        &self,
        after: Option<&ApprovalRecord>,
        limit: usize,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        let q = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI_BY_STATE)
            .expression_attribute_values(":open", s(OPEN_APPROVALS))
            .limit(limit.clamp(1, 1000) as i32);
        // A key condition cannot compare with an empty string: the first
        // page has none.
        let q = match after {
            None => q.key_condition_expression("gsi1pk = :open"),
            Some(a) => q
                .key_condition_expression("gsi1pk = :open AND gsi1sk > :after")
                .expression_attribute_values(
                    ":after",
                    s(format!("{}#{}", sort_time(a.requested_at.0), a.id)),
                ),
        };
        let out = q.send().await.map_err(backend)?;
        let mut found = Vec::new();
        for item in out.items.unwrap_or_default() {
            let id = get_s(&item, "pk")?
                .strip_prefix("APPROVAL#")
                .map(|s| ApprovalId::from_stored(s.to_string()))
                .ok_or_else(|| corrupt("an open-approvals entry that is not an approval"))?;
            // The index lags: keep only those still undecided.
            if let Some(a) = self.approval(&id).await?
                && a.decided.is_none()
            {
                found.push(a);
            }
        }
        Ok(found)
    }
}

impl StatsStore for DynamoStore {
    async fn add_stats(&self, window: i64, stats: &CallStats) -> Result<(), StoreError> {
        let counters = stats.to_counters();
        if counters.is_empty() {
            return Ok(());
        }
        let expires = window * 3600 + self.retention.as_secs() as i64;
        let mut adds = Vec::with_capacity(counters.len());
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("STATS#{window}")))
            .key("sk", s("STATS"))
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":ttl", n(expires));
        for (i, (name, count)) in counters.iter().enumerate() {
            adds.push(format!("#c{i} :c{i}"));
            req = req
                .expression_attribute_names(format!("#c{i}"), format!("c|{name}"))
                .expression_attribute_values(format!(":c{i}"), n(count));
        }
        req.update_expression(format!("ADD {} SET #ttl = :ttl", adds.join(", ")))
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn stats(&self, window: i64) -> Result<CallStats, StoreError> {
        let Some(item) = self.get(format!("STATS#{window}"), "STATS").await? else {
            return Ok(CallStats::default());
        };
        let mut counters = Vec::new();
        for (attr, value) in &item {
            if let (Some(name), AttributeValue::N(v)) = (attr.strip_prefix("c|"), value) {
                counters.push((name, v.parse::<u64>().map_err(corrupt)?));
            }
        }
        Ok(CallStats::from_counters(counters))
    }
}

impl BatchStore for DynamoStore {
    async fn save_batch(&self, b: &BatchRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(b).map_err(corrupt)?;
        let ttl = epoch_seconds(b.created_at) + self.retention.as_secs() as i64;
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(batch_pk(&b.id)))
            .key("sk", s("BATCH"))
            .update_expression("SET #record = :r, paused = if_not_exists(paused, :p), #ttl = :ttl")
            .expression_attribute_names("#record", "record")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":r", s(json))
            .expression_attribute_values(":p", AttributeValue::Bool(b.paused))
            .expression_attribute_values(":ttl", n(ttl))
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn batch(&self, id: &BatchId) -> Result<Option<BatchRecord>, StoreError> {
        let Some(item) = self.get(batch_pk(id), "BATCH").await? else {
            return Ok(None);
        };
        let record: BatchRecord =
            serde_json::from_str(&get_s(&item, "record")?).map_err(corrupt)?;
        let paused = matches!(item.get("paused"), Some(AttributeValue::Bool(true)));
        Ok(Some(BatchRecord { paused, ..record }))
    }

    async fn set_batch_paused(&self, id: &BatchId, paused: bool) -> Result<bool, StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(batch_pk(id)))
            .key("sk", s("BATCH"))
            .update_expression("SET paused = :p")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":p", AttributeValue::Bool(paused))
            .send()
            .await;
        conditional(r, |e| e.is_conditional_check_failed_exception())
    }

    async fn batch_jobs(&self, id: &BatchId) -> Result<Vec<JobSummary>, StoreError> {
        let ids = self.member_job_ids(batch_pk(id)).await?;
        Ok(self
            .jobs_by_id(&ids)
            .await?
            .into_iter()
            .map(|j| JobSummary {
                state: j.state,
                points_milli: j.points_milli,
                updated_at: j.updated_at,
            })
            .collect())
    }
}

impl Counters for DynamoStore {
    async fn count(&self, key: &str, window: i64) -> Result<u64, StoreError> {
        Ok(
            match self
                .get(format!("COUNT#{key}"), &format!("W#{window}"))
                .await?
            {
                Some(item) => get_n(&item, "n")?,
                None => 0,
            },
        )
    }

    async fn bump(&self, key: &str, window: i64) -> Result<(), StoreError> {
        let expires = epoch_seconds(SystemClock.now()) + 2 * 24 * 3600;
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("COUNT#{key}")))
            .key("sk", s(format!("W#{window}")))
            .update_expression("ADD n :one SET #ttl = :ttl")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":ttl", n(expires))
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }
}

const REJECTED_INDEX: &str = "REJECTED";

fn rejection_from_item(item: &Item) -> Result<Rejection, StoreError> {
    Ok(Rejection {
        id: RejectionId::from_stored(get_s(item, "id")?),
        received_at: Timestamp(get_n(item, "receivedAt")?),
        source_system: opt_s(item, "sourceSystem"),
        errors: serde_json::from_str(&get_s(item, "errors")?).map_err(corrupt)?,
        body: get_s(item, "body")?,
        resubmitted_as: opt_s(item, "resubmittedAs").map(JobId::from_stored),
        origin: match opt_s(item, "origin") {
            Some(o) => serde_json::from_str(&o).map_err(corrupt)?,
            None => Default::default(),
        },
        discarded: opt_s(item, "discarded")
            .map(|d| serde_json::from_str(&d).map_err(corrupt))
            .transpose()?,
    })
}

impl RejectionStore for DynamoStore {
    async fn keep_rejection(&self, r: &Rejection) -> Result<bool, StoreError> {
        let mut item: Item = HashMap::from([
            ("pk".into(), s(format!("REJECTED#{}", r.id))),
            ("sk".into(), s("REJECTED")),
            ("id".into(), s(r.id.as_str())),
            ("receivedAt".into(), n(r.received_at.0)),
            (
                "errors".into(),
                s(serde_json::to_string(&r.errors).map_err(corrupt)?),
            ),
            ("body".into(), s(r.body.clone())),
            ("gsi1pk".into(), s(REJECTED_INDEX)),
            (
                "gsi1sk".into(),
                s(format!("{}#{}", sort_time(r.received_at.0), r.id)),
            ),
            (TTL_ATTRIBUTE.into(), n(self.ttl_from(r.received_at))),
        ]);
        if let Some(source) = &r.source_system {
            item.insert("sourceSystem".into(), s(source.clone()));
        }
        if let Some(job) = &r.resubmitted_as {
            item.insert("resubmittedAs".into(), s(job.as_str()));
        }
        item.insert(
            "origin".into(),
            s(serde_json::to_string(&r.origin).map_err(corrupt)?),
        );
        if let Some(d) = &r.discarded {
            item.insert(
                "discarded".into(),
                s(serde_json::to_string(d).map_err(corrupt)?),
            );
        }
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        // Kept already (the same batch item again): as it is.
        conditional(put, |e| e.is_conditional_check_failed_exception())
    }

    async fn rejection(&self, id: &RejectionId) -> Result<Option<Rejection>, StoreError> {
        self.get(format!("REJECTED#{id}"), "REJECTED")
            .await?
            .map(|item| rejection_from_item(&item))
            .transpose()
    }

    async fn rejections(&self, limit: usize) -> Result<Vec<Rejection>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI_BY_STATE)
            .key_condition_expression("gsi1pk = :r")
            .expression_attribute_values(":r", s(REJECTED_INDEX))
            .scan_index_forward(false)
            .limit(limit.clamp(1, 1000) as i32)
            .send()
            .await
            .map_err(backend)?;
        let mut found = Vec::new();
        for key in out.items.unwrap_or_default() {
            let pk = get_s(&key, "pk")?;
            if let Some(item) = self.get(pk, "REJECTED").await? {
                found.push(rejection_from_item(&item)?);
            }
        }
        Ok(found)
    }

    async fn mark_resubmitted(&self, id: &RejectionId, job: &JobId) -> Result<bool, StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("REJECTED#{id}")))
            .key("sk", s("REJECTED"))
            .update_expression("SET resubmittedAs = :job")
            .condition_expression(
                "attribute_exists(pk) AND attribute_not_exists(resubmittedAs) AND attribute_not_exists(discarded)",
            )
            .expression_attribute_values(":job", s(job.as_str()))
            .send()
            .await;
        conditional(r, |e| e.is_conditional_check_failed_exception())
    }

    async fn discard_rejection(
        &self,
        id: &RejectionId,
        discarded: &Discarded,
    ) -> Result<bool, StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("REJECTED#{id}")))
            .key("sk", s("REJECTED"))
            .update_expression("SET discarded = :d")
            .condition_expression(
                "attribute_exists(pk) AND attribute_not_exists(resubmittedAs) AND attribute_not_exists(discarded)",
            )
            .expression_attribute_values(":d", s(serde_json::to_string(discarded).map_err(corrupt)?))
            .send()
            .await;
        conditional(r, |e| e.is_conditional_check_failed_exception())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_keys_order_numerically() {
        assert!(sort_time(999) < sort_time(1000));
        assert!(sort_time(1_700_000_000_000) < sort_time(1_800_000_000_000));
    }

    #[test]
    fn shards_spread_jobs_and_stay_in_range() {
        let shards: std::collections::HashSet<u32> =
            (0..200).map(|_| shard(&JobId::generate())).collect();
        assert!(shards.iter().all(|s| *s < SHARDS));
        assert!(shards.len() > 4, "ids spread over the shards: {shards:?}");
    }

    #[test]
    fn update_expressions_use_placeholders_for_every_name() {
        let mut e = Expr::default();
        e.set("jobState", s("QUEUED"));
        e.remove("lastError");
        assert_eq!(
            e.update_expression(),
            "SET #jobState = :v0 REMOVE #lastError"
        );
        assert_eq!(e.names["#jobState"], "jobState");
    }
}
