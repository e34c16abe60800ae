//! DynamoDB adapter: jobs, audit trails, dedup records, links, leases and
//! governor state in one table (single-table design), for the Lambda
//! functions. Same behaviour as the SQLite adapter; both pass the suite in
//! `shared/tests/conformance`.
//!
//! One table, keyed by `pk` and `sk` (strings); every write that must not
//! create an item it expects to exist carries `attribute_exists(pk)`. Each
//! aggregate's module opens with the items it owns: [`jobs`] (jobs, audit,
//! dedup, entity and batch membership, the outbox), [`leases`], [`links`]
//! (links and field revisions), [`governor`], [`approvals`], [`batches`],
//! [`rejections`], [`counters`] (counters and stats); [`census`] counts
//! through the index.
//!
//! * GSI `gsi1` (`gsi1pk`, `gsi1sk`, keys only) holds listings: jobs by
//!   state, open approvals, the manual queue. GSI `gsi2` is the outbox.
//!   Job partitions are sharded 8 ways so ingest never writes one hot
//!   partition.
//! * `ttl` (epoch seconds) is the table's TTL attribute; what carries it
//!   is said per item.

use super::aws_error::{backend, conditional};
use crate::domain::approval::{ApprovalId, ApprovalRecord, Decided, Decision};
use crate::domain::audit::AuditEntry;
use crate::domain::batch::{BatchRecord, JobSummary};

mod approvals;
mod batches;
mod census;
mod counters;
mod governor;
mod jobs;
mod leases;
mod links;
mod rejections;

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
    KeySchemaElement, KeyType, KeysAndAttributes, Projection, ProjectionType, Put, PutRequest,
    ReturnValue, ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TimeToLiveSpecification,
    TransactWriteItem, Update, WriteRequest,
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

fn epoch_seconds(t: Timestamp) -> i64 {
    t.0.div_euclid(1000)
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

    /// Items by `(pk, sk)`, 100 keys a `BatchGetItem`, unprocessed keys
    /// retried; missing items are left out, order is not kept.
    async fn items_by_key(
        &self,
        keys: Vec<(String, String)>,
        consistent: bool,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(100) {
            let mut keys: Vec<Item> = chunk
                .iter()
                .map(|(pk, sk)| HashMap::from([("pk".into(), s(pk)), ("sk".into(), s(sk))]))
                .collect();
            while !keys.is_empty() {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(consistent)
                    .build()
                    .map_err(corrupt)?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(backend)?;
                items.extend(
                    out.responses
                        .unwrap_or_default()
                        .remove(&self.table)
                        .unwrap_or_default(),
                );
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
        Ok(items)
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

    /// Writes items 25 at a time, retrying what DynamoDB leaves unprocessed.
    async fn write_all(&self, items: Vec<Item>) -> Result<(), StoreError> {
        for chunk in items.chunks(25) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|item| {
                    PutRequest::builder()
                        .set_item(Some(item.clone()))
                        .build()
                        .map(|p| WriteRequest::builder().put_request(p).build())
                        .map_err(corrupt)
                })
                .collect::<Result<_, _>>()?;
            let mut attempt = 0u32;
            while !requests.is_empty() {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(backend)?;
                requests = out
                    .unprocessed_items
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default();
                if !requests.is_empty() {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50 << attempt.min(5))).await;
                }
            }
        }
        Ok(())
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
