//! Signature timestamps for the CLI's own senders (demo, bench, load).
//! `serve` accepts a signature once, so a sender re-sending the same body
//! must sign it anew; with whole-second timestamps, two sends of one body
//! in the same second would otherwise carry the same signature. Each body's
//! timestamps therefore step back one second per send (well within the
//! 5-minute tolerance for any realistic number of redeliveries).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// The timestamp to sign `body` with for this send.
pub fn signing_time(body: &[u8]) -> i64 {
    static LAST: Mutex<Option<HashMap<u64, i64>>> = Mutex::new(None);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut h = DefaultHasher::new();
    body.hash(&mut h);
    let key = h.finish();
    let mut guard = LAST.lock().unwrap_or_else(|p| p.into_inner());
    let last = guard.get_or_insert_with(HashMap::new);
    // A mark outlives its signature by twice the tolerance at most.
    let t = match last.get(&key) {
        Some(&prev) if prev > now - 600 => (prev - 1).min(now),
        _ => now,
    };
    last.insert(key, t);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_body_never_gets_the_same_timestamp_twice() {
        let a: Vec<i64> = (0..5).map(|_| signing_time(b"same")).collect();
        let mut unique = a.clone();
        unique.dedup();
        assert_eq!(unique.len(), 5, "{a:?}");
        let other = signing_time(b"other");
        assert!(other >= a[0]);
    }
}
