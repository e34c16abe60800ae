//! Counters and hourly hotspot figures, both added to atomically.
//!
//! | item    | pk              | sk           | attributes |
//! |---------|-----------------|--------------|------------|
//! | counter | `COUNT#<key>`   | `W#<window>` | `n`, bumped by `ADD`; expires a day after |
//! | stats   | `STATS#<hour>`  | `STATS`      | one `c|<counter>` number per counter, added by `ADD` in one update per flush; expires with retention |
//! | minute stats | `STATS#M#<minute>` | `STATS` | the same, for one minute (totals, endpoints, 429 reasons); expires `MINUTES_KEPT` minutes after it |

use super::*;
use crate::domain::stats::MINUTES_KEPT;

impl StatsStore for DynamoStore {
    async fn add_stats(&self, window: i64, stats: &CallStats) -> Result<(), StoreError> {
        let expires = window * 3600 + self.retention.as_secs() as i64;
        self.add_counters(format!("STATS#{window}"), stats, expires)
            .await
    }

    async fn stats(&self, window: i64) -> Result<CallStats, StoreError> {
        match self.get(format!("STATS#{window}"), "STATS").await? {
            Some(item) => stats_from_item(&item),
            None => Ok(CallStats::default()),
        }
    }

    async fn add_minute_stats(&self, minute: i64, stats: &CallStats) -> Result<(), StoreError> {
        let expires = (minute + MINUTES_KEPT) * 60;
        self.add_counters(format!("STATS#M#{minute}"), &stats.minute_part(), expires)
            .await
    }

    async fn minute_stats(&self, from: i64, to: i64) -> Result<Vec<(i64, CallStats)>, StoreError> {
        let keys = (from..=to)
            .map(|m| (format!("STATS#M#{m}"), "STATS".to_string()))
            .collect();
        let mut found = Vec::new();
        for item in self.items_by_key(keys, false).await? {
            let minute = get_s(&item, "pk")?
                .strip_prefix("STATS#M#")
                .and_then(|m| m.parse::<i64>().ok())
                .ok_or_else(|| corrupt("a minute stats item without its minute"))?;
            found.push((minute, stats_from_item(&item)?));
        }
        found.sort_by_key(|(m, _)| *m);
        Ok(found)
    }
}

fn stats_from_item(item: &Item) -> Result<CallStats, StoreError> {
    let mut counters = Vec::new();
    for (attr, value) in item {
        if let (Some(name), AttributeValue::N(v)) = (attr.strip_prefix("c|"), value) {
            counters.push((name, v.parse::<u64>().map_err(corrupt)?));
        }
    }
    Ok(CallStats::from_counters(counters))
}

impl DynamoStore {
    /// Adds every counter of `stats` to one item by `ADD`, in one update.
    async fn add_counters(
        &self,
        pk: String,
        stats: &CallStats,
        expires: i64,
    ) -> Result<(), StoreError> {
        let counters = stats.to_counters();
        if counters.is_empty() {
            return Ok(());
        }
        let mut adds = Vec::with_capacity(counters.len());
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pk))
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
