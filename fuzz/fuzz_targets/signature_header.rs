//! The Tollgate-Signature header and the senders' schemes: any header and
//! body verify or are refused, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tollgate::domain::secret::Secret;
use tollgate::domain::sender_auth::{Scheme, verify};
use tollgate::domain::signature;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let header = String::from_utf8_lossy(&data[..split]);
    let body = data.get(split + 1..).unwrap_or_default();
    let secrets = [Secret::new("fuzz-secret"), Secret::new("user:pass")];
    let _ = signature::verify(Some(&header), body, &secrets, 1_800_000_000);
    for scheme in [
        Scheme::Tollgate,
        Scheme::PagerDuty,
        Scheme::GitHub,
        Scheme::Bearer,
        Scheme::Basic,
    ] {
        let _ = verify(scheme, Some(&header), body, &secrets, 1_800_000_000);
    }
});
