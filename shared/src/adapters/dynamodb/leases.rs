//! Leases and their fencing tokens.
//!
//! | item  | pk             | sk      | attributes |
//! |-------|----------------|---------|------------|
//! | lease | `LEASE#<name>` | `LEASE` | `holder`, `expiresAt` (ms), `fence` (the fencing token), `ttl` a day past expiry |
//!
//! * A renewal (`holder = :me`) keeps the token; a take-over (absent or
//!   expired) adds one to it. Release only sets `expiresAt` to now, and the
//!   item outlives its expiry by a day, so tokens never go back while a
//!   worker lives.
//! * A fenced write is a `TransactWriteItems` whose first item is a
//!   `ConditionCheck` on the lease (`fence = :token`): a worker that lost its
//!   lease writes nothing more.

use super::*;

impl DynamoStore {
    /// The condition that the lease still carries the writer's token.
    pub(super) fn fence_check(&self, fence: &Fence) -> Result<TransactWriteItem, StoreError> {
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
}

pub(super) fn lease_pk(name: &str) -> String {
    format!("LEASE#{name}")
}

impl DynamoStore {
    /// Whether the lease still carries `fence`'s token (a strongly
    /// consistent read).
    pub(super) async fn fence_holds(&self, fence: &Fence) -> Result<bool, StoreError> {
        let item = self.get(lease_pk(&fence.lease), "LEASE").await?;
        Ok(match item {
            Some(item) => opt_n::<u64>(&item, "fence")? == Some(fence.token),
            None => false,
        })
    }
}

impl DynamoStore {
    /// Ours already: renew, keeping the token.
    pub(super) async fn renew_lease(
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
    pub(super) async fn take_over_lease(
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
