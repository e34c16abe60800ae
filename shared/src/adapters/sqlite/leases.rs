//! Leases and their fencing tokens.
//!
//! * `leases` — `name → holder, expires_at, fence`; taken by an upsert that
//!   only overwrites an expired lease or the holder's own. `fence` (the
//!   fencing token) rises by one with every new holder; release only
//!   expires the row, so tokens never go back. A fenced write reads the
//!   lease's token in its own transaction and writes nothing when it
//!   changed. Expired entity leases are purged a day after they ended.

use super::*;

/// Whether the lease still carries the writer's fencing token (always, for
/// a write without a fence).
pub(super) fn fence_holds(c: &Connection, fence: Option<&Fence>) -> rusqlite::Result<bool> {
    let Some(f) = fence else {
        return Ok(true);
    };
    let token: Option<i64> = c
        .query_row(
            "SELECT fence FROM leases WHERE name = ?1",
            [f.lease.as_str()],
            |r| r.get(0),
        )
        .optional()?;
    Ok(token == Some(f.token as i64))
}

impl Leases for SqliteDb {
    async fn acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, StoreError> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.with(move |c| {
            let now = now_ms();
            c.query_row(
                "INSERT INTO leases (name, holder, expires_at, fence) VALUES (?1, ?2, ?3, 1)
                 ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at,
                   fence = CASE WHEN leases.holder = excluded.holder THEN leases.fence ELSE leases.fence + 1 END
                 WHERE leases.expires_at <= ?4 OR leases.holder = excluded.holder
                 RETURNING fence",
                params![name, holder, now + ms(ttl), now],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|t| t.map(|t| t as u64))
        })
        .await
    }

    async fn release(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.with(move |c| {
            c.execute(
                "UPDATE leases SET expires_at = MIN(expires_at, ?3) WHERE name = ?1 AND holder = ?2",
                params![name, holder, now_ms()],
            )
            .map(|_| ())
        })
        .await
    }
}
