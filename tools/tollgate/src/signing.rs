//! Signature timestamps for the CLI's own senders (demo, bench, load): each
//! delivery gets a distinct one, as a sender re-signing a retry would, since
//! `serve` refuses a signature it has already accepted (a replay).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Now, minus a few seconds that differ from call to call (well within the
/// 5-minute tolerance).
pub fn delivery_time() -> i64 {
    static SENT: AtomicI64 = AtomicI64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    now - SENT.fetch_add(1, Ordering::Relaxed) % 240
}
