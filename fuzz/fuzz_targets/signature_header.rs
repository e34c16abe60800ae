//! The Tollgate-Signature header, Standard Webhooks' headers and the
//! senders' schemes: any header and body verify or are refused, never a
//! panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tollgate::domain::secret::Secret;
use tollgate::domain::sender_auth::{Scheme, verify};
use tollgate::domain::signature;
use tollgate::domain::standard_webhooks;

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
    // The same bytes as the three Standard Webhooks headers.
    let mut parts = header.splitn(3, '\n');
    let headers = standard_webhooks::Headers {
        id: parts.next(),
        timestamp: parts.next(),
        signature: parts.next(),
    };
    let secrets = [Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), Secret::new("plain")];
    let _ = standard_webhooks::verify(headers, body, &secrets, 1_800_000_000);
});
