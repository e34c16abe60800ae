//! Rate-limit signals from arbitrary header values: parsed or ignored,
//! never a panic, and any wait derived stays finite.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tollgate::domain::ratelimit::RateLimitSignal;
use tollgate::domain::time::Timestamp;

const NAMES: [&str; 8] = [
    "Retry-After",
    "X-RateLimit-Reset",
    "X-RateLimit-Remaining",
    "X-RateLimit-NearLimit",
    "RateLimit-Reason",
    "RateLimit-Policy",
    "RateLimit",
    "Beta-RateLimit",
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let values: Vec<&str> = text.split('\n').collect();
    let headers: Vec<(&str, &str)> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (NAMES[i % NAMES.len()], *v))
        .collect();
    let signal = RateLimitSignal::from_headers(headers);
    let _ = signal.wait_hint(Timestamp(1_800_000_000_000));
});
