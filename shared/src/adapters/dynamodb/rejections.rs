//! The manual queue of rejected events.
//!
//! | item      | pk              | sk         | attributes |
//! |-----------|-----------------|------------|------------|
//! | rejection | `REJECTED#<id>` | `REJECTED` | body (at most 256 KiB; `truncated`: the size and SHA-256 of a larger one), errors and origin (JSON), `resubmittedAs` or `discarded` (JSON), each set once; in `gsi1` under `REJECTED` while open, under `REJECTED#CLOSED` once re-submitted or discarded (same `gsi1sk`: received time, id) |
//!
//! * Kept with `attribute_not_exists(pk)`: a batch item's id is its own, so
//!   the same item posted again is the same rejection.

use super::*;

/// Open rejections' `gsi1` partition.
pub(super) const REJECTED_INDEX: &str = "REJECTED";
/// Re-submitted or discarded rejections' `gsi1` partition (the listing
/// reads both; the census counts the open one).
const CLOSED_REJECTIONS: &str = "REJECTED#CLOSED";

pub(super) fn rejection_from_item(item: &Item) -> Result<Rejection, StoreError> {
    Ok(Rejection {
        id: RejectionId::from_stored(get_s(item, "id")?),
        received_at: Timestamp(get_n(item, "receivedAt")?),
        source_system: opt_s(item, "sourceSystem"),
        errors: serde_json::from_str(&get_s(item, "errors")?).map_err(corrupt)?,
        body: get_s(item, "body")?,
        truncated: opt_s(item, "truncated")
            .map(|t| serde_json::from_str(&t).map_err(corrupt))
            .transpose()?,
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
            (
                "gsi1pk".into(),
                s(if r.resubmitted_as.is_some() || r.discarded.is_some() {
                    CLOSED_REJECTIONS
                } else {
                    REJECTED_INDEX
                }),
            ),
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
        if let Some(t) = &r.truncated {
            item.insert(
                "truncated".into(),
                s(serde_json::to_string(t).map_err(corrupt)?),
            );
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
        // The newest of both partitions, merged by their sort key.
        let mut keys: Vec<(String, String)> = Vec::new();
        for partition in [REJECTED_INDEX, CLOSED_REJECTIONS] {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(GSI_BY_STATE)
                .key_condition_expression("gsi1pk = :r")
                .expression_attribute_values(":r", s(partition))
                .scan_index_forward(false)
                .limit(limit.clamp(1, 1000) as i32)
                .send()
                .await
                .map_err(backend)?;
            for key in out.items.unwrap_or_default() {
                keys.push((get_s(&key, "gsi1sk")?, get_s(&key, "pk")?));
            }
        }
        keys.sort_by(|a, b| b.cmp(a));
        keys.truncate(limit);
        let mut found = Vec::new();
        for (_, pk) in keys {
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
            .update_expression("SET resubmittedAs = :job, gsi1pk = :closed")
            .condition_expression(
                "attribute_exists(pk) AND attribute_not_exists(resubmittedAs) AND attribute_not_exists(discarded)",
            )
            .expression_attribute_values(":job", s(job.as_str()))
            .expression_attribute_values(":closed", s(CLOSED_REJECTIONS))
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
            .update_expression("SET discarded = :d, gsi1pk = :closed")
            .condition_expression(
                "attribute_exists(pk) AND attribute_not_exists(resubmittedAs) AND attribute_not_exists(discarded)",
            )
            .expression_attribute_values(":d", s(serde_json::to_string(discarded).map_err(corrupt)?))
            .expression_attribute_values(":closed", s(CLOSED_REJECTIONS))
            .send()
            .await;
        conditional(r, |e| e.is_conditional_check_failed_exception())
    }
}
