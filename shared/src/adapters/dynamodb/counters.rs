//! Counters and hourly hotspot figures, both added to atomically.
//!
//! | item    | pk              | sk           | attributes |
//! |---------|-----------------|--------------|------------|
//! | counter | `COUNT#<key>`   | `W#<window>` | `n`, bumped by `ADD`; expires a day after |
//! | stats   | `STATS#<hour>`  | `STATS`      | one `c|<counter>` number per counter, added by `ADD` in one update per flush; expires with retention |

use super::*;

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
