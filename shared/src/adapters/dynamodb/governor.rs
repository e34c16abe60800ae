//! Governor rows: one per Jira site, shared by every executor.
//!
//! | item     | pk           | sk    | attributes |
//! |----------|--------------|-------|------------|
//! | governor | `GOV#<site>` | `GOV` | `version`, `state` (JSON); never expires |
//!
//! * Written with `version = :expected` (optimistic concurrency).

use super::*;

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
