//! `Tollgate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`,
//! Stripe-style. Several `v1` values may be present and several secrets
//! active (rotation); any match accepts. Comparison is constant-time.

use super::secret::Secret;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = hmac::Hmac<Sha256>;

pub const HEADER: &str = "Tollgate-Signature";
/// How far the signed timestamp may be from now, either way.
pub const TOLERANCE_SECONDS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing Tollgate-Signature header")]
    Missing,
    #[error("malformed Tollgate-Signature header: expected t=<unix seconds>,v1=<hex>")]
    Malformed,
    #[error("signature timestamp is outside the {TOLERANCE_SECONDS} s tolerance")]
    Expired,
    #[error("no signature matches")]
    Mismatch,
    #[error("no webhook secret is configured")]
    NoSecret,
    /// This signature was seen before, within the tolerance, over other
    /// bytes. (The same bytes again are a redelivery, answered as one.)
    #[error("this signature was already used for another body")]
    Replayed,
}

/// The mark that records a signature as seen until it could no longer
/// verify (twice the tolerance: it is valid from `t - tolerance` to
/// `t + tolerance`), held in the name of the bytes it signed: the same
/// delivery again — an HTTP client's retry, a proxy's replay — holds it
/// again and is answered as a redelivery; other bytes under a seen
/// signature do not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayMark {
    pub lease: String,
    /// The SHA-256 of the body, hex.
    pub holder: String,
    pub ttl: std::time::Duration,
}

pub fn replay_mark(header: &str, body: &[u8]) -> ReplayMark {
    use sha2::Digest;
    let digest = hex::encode(Sha256::digest(header.trim().as_bytes()));
    ReplayMark {
        lease: format!("replay/{digest}"),
        holder: hex::encode(Sha256::digest(body)),
        ttl: std::time::Duration::from_secs(2 * TOLERANCE_SECONDS as u64),
    }
}

fn mac(secret: &Secret, t: i64, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header value for `body` signed at `t`.
pub fn sign(secret: &Secret, t: i64, body: &[u8]) -> String {
    format!(
        "t={t},v1={}",
        hex::encode(mac(secret, t, body).finalize().into_bytes())
    )
}

struct Parsed {
    t: i64,
    v1: Vec<Vec<u8>>,
}

fn parse(header: &str) -> Result<Parsed, SignatureError> {
    if header.len() > 4096 {
        return Err(SignatureError::Malformed);
    }
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match k {
            "t" => {
                let parsed = v.parse::<i64>().map_err(|_| SignatureError::Malformed)?;
                if t.replace(parsed).is_some() {
                    return Err(SignatureError::Malformed);
                }
            }
            "v1" => v1.push(hex::decode(v).map_err(|_| SignatureError::Malformed)?),
            // Other schemes (v0, future versions) are ignored, as Stripe does.
            _ => {}
        }
    }
    match t {
        Some(t) if !v1.is_empty() => Ok(Parsed { t, v1 }),
        _ => Err(SignatureError::Malformed),
    }
}

/// Checks a header against the raw body. Every secret is tried against every
/// signature, with no early exit on the first mismatch, so timing does not
/// reveal which secret or signature came close.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[Secret],
    now_unix: i64,
) -> Result<(), SignatureError> {
    if secrets.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let header = header.ok_or(SignatureError::Missing)?;
    let parsed = parse(header)?;
    if (now_unix - parsed.t).abs() > TOLERANCE_SECONDS {
        return Err(SignatureError::Expired);
    }
    let mut matched = false;
    for secret in secrets {
        for candidate in &parsed.v1 {
            matched |= mac(secret, parsed.t, body).verify_slice(candidate).is_ok();
        }
    }
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR_BODY: &str = r#"{"sourceSystem":"alertmanager","externalId":"a1b2c3","desiredOperation":"create","projectKey":"OPS","issueType":"Incident","summary":"Disk 95% full on db-7"}"#;
    const VECTOR_HEADER: &str =
        "t=1700000000,v1=97aa50085134c025eb86da2552be6a55644bb255831bf1e5f1a20233281bdc03";

    fn secret() -> Secret {
        Secret::new("whsec_example_only")
    }

    #[test]
    fn signing_matches_the_contract_vector_byte_for_byte() {
        assert_eq!(
            sign(&secret(), 1_700_000_000, VECTOR_BODY.as_bytes()),
            VECTOR_HEADER
        );
        let fixture = include_str!("../../../fixtures/contract/signature-vector.txt");
        assert!(fixture.contains(VECTOR_HEADER) && fixture.contains(VECTOR_BODY));
    }

    #[test]
    fn the_contract_vector_verifies_within_tolerance() {
        let body = VECTOR_BODY.as_bytes();
        assert_eq!(
            verify(Some(VECTOR_HEADER), body, &[secret()], 1_700_000_000 + 299),
            Ok(())
        );
    }

    #[test]
    fn a_signature_older_than_five_minutes_is_expired() {
        let body = VECTOR_BODY.as_bytes();
        assert_eq!(
            verify(Some(VECTOR_HEADER), body, &[secret()], 1_700_000_000 + 301),
            Err(SignatureError::Expired)
        );
        assert_eq!(
            verify(Some(VECTOR_HEADER), body, &[secret()], 1_700_000_000 - 301),
            Err(SignatureError::Expired)
        );
    }

    #[test]
    fn a_changed_body_or_wrong_secret_is_refused() {
        let t = 1_700_000_000;
        assert_eq!(
            verify(Some(VECTOR_HEADER), b"{}", &[secret()], t),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                Some(VECTOR_HEADER),
                VECTOR_BODY.as_bytes(),
                &[Secret::new("other")],
                t
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn during_rotation_either_secret_or_either_signature_is_accepted() {
        let t = 1_700_000_000;
        let body = b"{}";
        let old = Secret::new("old");
        let new = Secret::new("new");
        let signed_old = sign(&old, t, body);
        assert_eq!(
            verify(Some(&signed_old), body, &[new.clone(), old.clone()], t),
            Ok(())
        );
        let new_sig = sign(&new, t, body);
        let (_, new_hex) = new_sig.split_once(",v1=").unwrap();
        let both = format!("{},v1={new_hex}", sign(&Secret::new("stale"), t, body));
        assert_eq!(verify(Some(&both), body, &[new], t), Ok(()));
    }

    #[test]
    fn malformed_and_missing_headers_are_told_apart() {
        let s = [secret()];
        assert_eq!(verify(None, b"", &s, 0), Err(SignatureError::Missing));
        for bad in [
            "",
            "t=1",
            "v1=00",
            "t=x,v1=00",
            "t=1,v1=zz",
            "t=1,t=2,v1=00",
            "garbage",
        ] {
            assert_eq!(
                verify(Some(bad), b"", &s, 1),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn without_a_configured_secret_nothing_is_accepted() {
        assert_eq!(
            verify(Some(VECTOR_HEADER), b"", &[], 0),
            Err(SignatureError::NoSecret)
        );
    }
}
