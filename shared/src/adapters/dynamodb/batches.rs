//! Batch records.
//!
//! | item  | pk           | sk      | attributes |
//! |-------|--------------|---------|------------|
//! | batch | `BATCH#<id>` | `BATCH` | `record` (JSON), `paused` (kept by re-posts) |

use super::*;

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
