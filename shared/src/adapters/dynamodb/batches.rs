//! Batches and their admission in pages.
//!
//! | item          | pk           | sk                      | attributes |
//! |---------------|--------------|-------------------------|------------|
//! | batch         | `BATCH#<id>` | `BATCH`                 | `record` (JSON: source, creation), `paused`, and the counts `received`, `accepted`, `duplicates` as numbers added by `ADD`; in `gsi1` under `BATCHES` by creation time |
//! | post          | `BATCH#<id>` | `POST#<post>`           | `record` (the admission record, JSON), `nextPage`, `pages`, `updatedAt`; in `gsi1` under `ADMISSIONS#OPEN` while unfinished |
//! | page          | `BATCH#<id>` | `PAGE#<post>#<n>`       | `page` (JSON: the items as received), written once with its post |
//! | rejected item | `BATCH#<id>` | `REJ#<index>`           | `rejectionId`: one per index, so a re-posted bad item is listed once |
//! | batch job     | `BATCH#<id>` | `JOB#<jobId>`           | (see [`super::jobs`]) |
//!
//! * The batch item is created with `attribute_not_exists(pk)`: a re-post
//!   never resets a count or the paused flag.
//! * A post's cursor moves by a `TransactWriteItems` of the post's update
//!   (`nextPage = :page`) and the batch's `ADD` of the page's counts: a page
//!   admitted twice (a crash, two admitters) is counted once.
//! * Every item here expires with the batch (its creation + retention).

use super::*;
use crate::domain::admission::{AdmissionRecord, BatchPage, PostId, Tally};
use crate::domain::batch::{MAX_LISTED_REJECTED, RejectedItem};
use aws_sdk_dynamodb::types::Select;

const OPEN_ADMISSIONS: &str = "ADMISSIONS#OPEN";
/// Every batch, by creation time (the operators' list).
const ALL_BATCHES: &str = "BATCHES";

fn post_sk(post: &PostId) -> String {
    format!("POST#{post}")
}

fn page_sk(post: &PostId, number: u32) -> String {
    format!("PAGE#{post}#{number:06}")
}

fn rejected_sk(index: u32) -> String {
    format!("REJ#{index:010}")
}

fn open_sort(a: &AdmissionRecord) -> String {
    format!("{}#{}#{}", sort_time(a.updated_at.0), a.batch, a.post)
}

fn admission_from_item(item: &Item) -> Result<AdmissionRecord, StoreError> {
    let a: AdmissionRecord = serde_json::from_str(&get_s(item, "record")?).map_err(corrupt)?;
    Ok(AdmissionRecord {
        next_page: get_n(item, "nextPage")?,
        updated_at: Timestamp(get_n(item, "updatedAt")?),
        ..a
    })
}

impl DynamoStore {
    fn batch_ttl(&self, created: Timestamp) -> i64 {
        self.ttl_from(created)
    }

    /// The first rejected items by index, and how many there are.
    async fn rejected_items(&self, id: &BatchId) -> Result<(Vec<RejectedItem>, u32), StoreError> {
        let first = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :rej)")
            .expression_attribute_values(":pk", s(batch_pk(id)))
            .expression_attribute_values(":rej", s("REJ#"))
            .limit(MAX_LISTED_REJECTED as i32)
            .send()
            .await
            .map_err(backend)?;
        let mut listed = Vec::new();
        for item in first.items.unwrap_or_default() {
            let index = get_s(&item, "sk")?
                .strip_prefix("REJ#")
                .and_then(|i| i.parse().ok())
                .ok_or_else(|| corrupt("a rejected-item key"))?;
            listed.push(RejectedItem {
                index,
                rejection_id: RejectionId::from_stored(get_s(&item, "rejectionId")?),
            });
        }
        let mut total = 0u32;
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :rej)")
                .expression_attribute_values(":pk", s(batch_pk(id)))
                .expression_attribute_values(":rej", s("REJ#"))
                .select(Select::Count)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(backend)?;
            total += out.count.max(0) as u32;
            match out.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(k) => start = Some(k),
                None => break,
            }
        }
        Ok((listed, total))
    }
}

impl BatchStore for DynamoStore {
    async fn open_batch(&self, b: &BatchRecord) -> Result<BatchRecord, StoreError> {
        let json = serde_json::to_string(b).map_err(corrupt)?;
        let item = HashMap::from([
            ("pk".into(), s(batch_pk(&b.id))),
            ("sk".into(), s("BATCH")),
            ("record".into(), s(json)),
            ("paused".into(), AttributeValue::Bool(b.paused)),
            (TTL_ATTRIBUTE.into(), n(self.batch_ttl(b.created_at))),
            ("gsi1pk".into(), s(ALL_BATCHES)),
            (
                "gsi1sk".into(),
                s(format!("{}#{}", sort_time(b.created_at.0), b.id)),
            ),
        ]);
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        conditional(r, |e| e.is_conditional_check_failed_exception())?;
        self.batch(&b.id)
            .await?
            .ok_or_else(|| corrupt("a batch item vanished after its put"))
    }

    async fn recent_batches(&self, limit: usize) -> Result<Vec<BatchId>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI_BY_STATE)
            .key_condition_expression("gsi1pk = :all")
            .expression_attribute_values(":all", s(ALL_BATCHES))
            .scan_index_forward(false)
            .limit(limit.clamp(1, 1000) as i32)
            .send()
            .await
            .map_err(backend)?;
        out.items
            .unwrap_or_default()
            .iter()
            .map(|key| {
                let pk = get_s(key, "pk")?;
                pk.strip_prefix("BATCH#")
                    .map(|id| BatchId::from_stored(id.to_string()))
                    .ok_or_else(|| corrupt("a batch index entry that is not a batch"))
            })
            .collect()
    }

    async fn batch(&self, id: &BatchId) -> Result<Option<BatchRecord>, StoreError> {
        let Some(item) = self.get(batch_pk(id), "BATCH").await? else {
            return Ok(None);
        };
        let record: BatchRecord =
            serde_json::from_str(&get_s(&item, "record")?).map_err(corrupt)?;
        let paused = matches!(item.get("paused"), Some(AttributeValue::Bool(true)));
        let (listed, total) = self.rejected_items(id).await?;
        // A record written before counts and rejections had attributes and
        // items of their own carries them itself.
        let count =
            |name: &str| -> Result<u32, StoreError> { Ok(opt_n::<u32>(&item, name)?.unwrap_or(0)) };
        Ok(Some(BatchRecord {
            paused,
            received: record.received + count("received")?,
            accepted: record.accepted + count("accepted")?,
            duplicates: record.duplicates + count("duplicates")?,
            updated_at: opt_n(&item, "updatedAt")?
                .map(Timestamp)
                .unwrap_or(record.updated_at),
            rejected_total: total.max(record.rejected_total),
            rejected: if listed.is_empty() {
                record.rejected
            } else {
                listed
            },
            ..record
        }))
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

    async fn store_post(
        &self,
        admission: &AdmissionRecord,
        pages: &[BatchPage],
    ) -> Result<bool, StoreError> {
        let pk = batch_pk(&admission.batch);
        if self
            .get(pk.clone(), &post_sk(&admission.post))
            .await?
            .is_some()
        {
            return Ok(false);
        }
        let ttl = n(self.batch_ttl(admission.created_at));
        let items = pages
            .iter()
            .map(|p| {
                Ok(HashMap::from([
                    ("pk".into(), s(pk.clone())),
                    ("sk".into(), s(page_sk(&admission.post, p.number))),
                    ("page".into(), s(serde_json::to_string(p).map_err(corrupt)?)),
                    (TTL_ATTRIBUTE.into(), ttl.clone()),
                ]))
            })
            .collect::<Result<Vec<Item>, StoreError>>()?;
        // The pages first: a post item always finds its pages.
        self.write_all(items).await?;
        let mut item = HashMap::from([
            ("pk".into(), s(pk)),
            ("sk".into(), s(post_sk(&admission.post))),
            (
                "record".into(),
                s(serde_json::to_string(admission).map_err(corrupt)?),
            ),
            ("nextPage".into(), n(admission.next_page)),
            ("pages".into(), n(admission.pages)),
            ("updatedAt".into(), n(admission.updated_at.0)),
            (TTL_ATTRIBUTE.into(), ttl),
        ]);
        if !admission.is_done() {
            item.insert("gsi1pk".into(), s(OPEN_ADMISSIONS));
            item.insert("gsi1sk".into(), s(open_sort(admission)));
        }
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        conditional(r, |e| e.is_conditional_check_failed_exception())
    }

    async fn admission(
        &self,
        batch: &BatchId,
        post: &PostId,
    ) -> Result<Option<AdmissionRecord>, StoreError> {
        self.get(batch_pk(batch), &post_sk(post))
            .await?
            .map(|item| admission_from_item(&item))
            .transpose()
    }

    async fn page(
        &self,
        batch: &BatchId,
        post: &PostId,
        number: u32,
    ) -> Result<Option<BatchPage>, StoreError> {
        self.get(batch_pk(batch), &page_sk(post, number))
            .await?
            .map(|item| serde_json::from_str(&get_s(&item, "page")?).map_err(corrupt))
            .transpose()
    }

    async fn note_rejected(
        &self,
        batch: &BatchId,
        items: &[RejectedItem],
    ) -> Result<(), StoreError> {
        let Some(record) = self.get(batch_pk(batch), "BATCH").await? else {
            return Err(corrupt(format!("rejected items of unknown batch {batch}")));
        };
        let ttl = record
            .get(TTL_ATTRIBUTE)
            .cloned()
            .unwrap_or_else(|| n(self.ttl_from(SystemClock.now())));
        let items = items
            .iter()
            .map(|r| {
                HashMap::from([
                    ("pk".into(), s(batch_pk(batch))),
                    ("sk".into(), s(rejected_sk(r.index))),
                    ("rejectionId".into(), s(r.rejection_id.as_str())),
                    (TTL_ATTRIBUTE.into(), ttl.clone()),
                ])
            })
            .collect();
        self.write_all(items).await
    }

    async fn advance_admission(
        &self,
        batch: &BatchId,
        post: &PostId,
        page: u32,
        tally: &Tally,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let Some(current) = self.admission(batch, post).await? else {
            return Ok(false);
        };
        let next = AdmissionRecord {
            next_page: page + 1,
            updated_at: at,
            ..current
        };
        let mut e = Expr::default();
        e.set("nextPage", n(next.next_page));
        e.set("updatedAt", n(at.0));
        if next.is_done() {
            e.remove("gsi1pk");
            e.remove("gsi1sk");
        } else {
            e.set("gsi1sk", s(open_sort(&next)));
        }
        let cursor = e.name("nextPage");
        let expected = e.value(n(page));
        let post_update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(batch_pk(batch)))
            .key("sk", s(post_sk(post)))
            .update_expression(e.update_expression())
            .condition_expression(format!("{cursor} = {expected}"))
            .set_expression_attribute_names(Some(e.names))
            .set_expression_attribute_values(Some(e.values))
            .build()
            .map_err(corrupt)?;
        let counts = Update::builder()
            .table_name(&self.table)
            .key("pk", s(batch_pk(batch)))
            .key("sk", s("BATCH"))
            .update_expression("ADD received :r, accepted :a, duplicates :d SET updatedAt = :at")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":r", n(tally.received))
            .expression_attribute_values(":a", n(tally.accepted))
            .expression_attribute_values(":d", n(tally.duplicates))
            .expression_attribute_values(":at", n(at.0))
            .build()
            .map_err(corrupt)?;
        self.transact(vec![
            TransactWriteItem::builder().update(post_update).build(),
            TransactWriteItem::builder().update(counts).build(),
        ])
        .await
    }

    async fn stalled_admissions(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<AdmissionRecord>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI_BY_STATE)
            .key_condition_expression("gsi1pk = :open AND gsi1sk < :before")
            .expression_attribute_values(":open", s(OPEN_ADMISSIONS))
            .expression_attribute_values(":before", s(sort_time(before.0)))
            .limit(limit.clamp(1, 1000) as i32)
            .send()
            .await
            .map_err(backend)?;
        let mut found = Vec::new();
        for key in out.items.unwrap_or_default() {
            // The index lags and keeps keys only: read each post itself.
            let (pk, sk) = (get_s(&key, "pk")?, get_s(&key, "sk")?);
            if let Some(item) = self.get(pk, &sk).await? {
                let a = admission_from_item(&item)?;
                if !a.is_done() && a.updated_at < before {
                    found.push(a);
                }
            }
        }
        Ok(found)
    }
}
