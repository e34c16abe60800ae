//! Signature timestamps for the CLI's own senders (demo, bench, load).
//! `serve` accepts a signature once, so a sender re-sending the same body
//! must sign it anew; with whole-second timestamps, two sends of one body
//! in the same second would otherwise carry the same signature. Each send
//! of a body takes the latest second not yet used for it: now, else the
//! second before, and so on (well within the 5-minute tolerance for any
//! realistic number of redeliveries in one second).

use std::collections::{BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// The timestamp to sign `body` with for this send.
pub fn signing_time(body: &[u8]) -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    signing_time_at(body, now)
}

fn signing_time_at(body: &[u8], now: i64) -> i64 {
    static USED: Mutex<Option<HashMap<u64, BTreeSet<i64>>>> = Mutex::new(None);
    let mut h = DefaultHasher::new();
    body.hash(&mut h);
    let key = h.finish();
    let mut guard = USED.lock().unwrap_or_else(|p| p.into_inner());
    let used = guard
        .get_or_insert_with(HashMap::new)
        .entry(key)
        .or_default();
    // A mark outlives its signature by twice the tolerance at most.
    used.retain(|t| *t > now - 600);
    let t = (0..)
        .map(|back| now - back)
        .find(|t| !used.contains(t))
        .unwrap_or(now);
    used.insert(t);
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

    #[test]
    fn a_body_sent_again_minutes_later_is_signed_with_the_time_then() {
        let body = b"again later";
        assert_eq!(signing_time_at(body, 1_000), 1_000);
        assert_eq!(signing_time_at(body, 1_000), 999);
        assert_eq!(
            signing_time_at(body, 1_400),
            1_400,
            "not 998: that is outside the tolerance"
        );
        assert_eq!(signing_time_at(body, 1_400), 1_399);
        assert_eq!(signing_time_at(body, 1_001), 1_001);
        assert_eq!(signing_time_at(body, 1_001), 998, "999 and 1000 are taken");
    }
}
