//! The work queue.
//!
//! * `queue` — SQS semantics: a message is received by moving its
//!   `visible_at` forward in one `UPDATE … RETURNING` (no two receivers get
//!   the same message), and carries a fresh receipt per receive; delete and
//!   visibility changes go by receipt. `interactive` sorts before `bulk`;
//!   within a priority the oldest message goes first once visible, so work
//!   that waited out a throttle is not sent to the back of the line. The
//!   receive reads only visible messages (the `visible_at` index): most of a
//!   busy queue is deferred work, which a scan in `id` order would wade
//!   through.

use super::*;

pub(super) fn priority_rank(p: Priority) -> i64 {
    match p {
        Priority::Interactive => 0,
        Priority::Bulk => 1,
    }
}

impl WorkQueue for SqliteDb {
    async fn send(&self, msg: &WorkMessage, delay: Duration) -> Result<(), StoreError> {
        let msg = msg.clone();
        self.with(move |c| {
            let now = now_ms();
            c.execute(
                "INSERT INTO queue (job_id, priority, visible_at, sent_at) VALUES (?1, ?2, ?3, ?4)",
                params![
                    msg.job_id.as_str(),
                    priority_rank(msg.priority),
                    now + ms(delay),
                    now
                ],
            )
            .map(|_| ())
        })
        .await
    }

    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Delivery>, StoreError> {
        self.with(move |c| {
            let now = now_ms();
            let nonce = uuid::Uuid::new_v4().simple().to_string();
            let mut st = c.prepare_cached(
                "UPDATE queue SET visible_at = ?1, receive_count = receive_count + 1, receipt = ?2 || '.' || id
                 WHERE id IN (SELECT id FROM queue INDEXED BY queue_by_visibility WHERE visible_at <= ?3 ORDER BY priority, id LIMIT ?4)
                 RETURNING job_id, receipt, receive_count",
            )?;
            let rows = st.query_map(params![now + ms(visibility), nonce, now, max as i64], |r| {
                Ok(Delivery {
                    job_id: JobId::from_stored(r.get(0)?),
                    receipt: r.get(1)?,
                    receive_count: r.get(2)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn delete(&self, receipt: &str) -> Result<(), StoreError> {
        let receipt = receipt.to_string();
        self.with(move |c| {
            c.execute("DELETE FROM queue WHERE receipt = ?1", [receipt])
                .map(|_| ())
        })
        .await
    }

    async fn change_visibility(&self, receipt: &str, after: Duration) -> Result<(), StoreError> {
        let receipt = receipt.to_string();
        self.with(move |c| {
            c.execute(
                "UPDATE queue SET visible_at = ?1 WHERE receipt = ?2",
                params![now_ms() + ms(after), receipt],
            )
            .map(|_| ())
        })
        .await
    }
}
