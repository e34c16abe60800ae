//! Standard Webhooks (standardwebhooks.com, as Svix and others send them):
//! `webhook-id`, `webhook-timestamp` (unix seconds) and `webhook-signature`,
//! a space-separated list of `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`
//! (several during a rotation). Secrets are `whsec_` + base64 of the key; a
//! secret without that form is used as its bytes, so one configured secret
//! serves both this scheme and `Tollgate-Signature`. Same tolerance as the
//! tollgate scheme; comparisons in constant time; every failure but an old
//! timestamp reads the same.

use super::secret::Secret;
use super::signature::{SignatureError, TOLERANCE_SECONDS};
use base64::Engine;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = hmac::Hmac<Sha256>;

pub const ID_HEADER: &str = "webhook-id";
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// Longest `webhook-id` taken (it keys the delivery's replay mark).
const MAX_ID_CHARS: usize = 256;

/// The three headers, as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers<'a> {
    pub id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// The key bytes of a secret: `whsec_<base64>` decoded, anything else as
/// it is.
fn key(secret: &Secret) -> Vec<u8> {
    let s = secret.expose();
    s.strip_prefix("whsec_")
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .unwrap_or_else(|| s.as_bytes().to_vec())
}

fn mac(secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(&key(secret))
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    m.update(id.as_bytes());
    m.update(b".");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The `webhook-signature` value for one delivery (a sender's side; the
/// tests and the CLI's senders use it).
pub fn sign(secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let sig = mac(secret, id, timestamp, body).finalize().into_bytes();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(sig)
    )
}

/// A `webhook-id` for a body, as a sender that names messages by their
/// content would (tollgate's own senders and tests).
pub fn delivery_id(body: &[u8]) -> String {
    use sha2::Digest;
    format!("msg_{}", &hex::encode(Sha256::digest(body))[..24])
}

/// The three headers of one delivery of `body`.
pub fn headers(
    secret: &Secret,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> [(&'static str, String); 3] {
    [
        (ID_HEADER, id.to_string()),
        (TIMESTAMP_HEADER, timestamp.to_string()),
        (SIGNATURE_HEADER, sign(secret, id, timestamp, body)),
    ]
}

/// Checks a delivery; on success, its `webhook-id`.
pub fn verify<'a>(
    headers: Headers<'a>,
    body: &[u8],
    secrets: &[Secret],
    now_unix: i64,
) -> Result<&'a str, SignatureError> {
    if secrets.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let (Some(id), Some(timestamp), Some(signature)) =
        (headers.id, headers.timestamp, headers.signature)
    else {
        return Err(SignatureError::Missing);
    };
    if id.is_empty()
        || id.chars().count() > MAX_ID_CHARS
        || id.chars().any(char::is_control)
        || signature.len() > 4096
    {
        return Err(SignatureError::Malformed);
    }
    let t: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::Malformed)?;
    if (now_unix - t).abs() > TOLERANCE_SECONDS {
        return Err(SignatureError::Expired);
    }
    let sent: Vec<Vec<u8>> = signature
        .split_whitespace()
        .filter_map(|part| part.strip_prefix("v1,"))
        .filter_map(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .collect();
    if sent.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let matched = secrets.iter().any(|s| {
        let expected = mac(s, id, t, body);
        sent.iter()
            .any(|sig| expected.clone().verify_slice(sig).is_ok())
    });
    if matched {
        Ok(id)
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The specification's example (also in its reference libraries).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn headers<'a>(id: &'a str, ts: &'a str, sig: &'a str) -> Headers<'a> {
        Headers {
            id: Some(id),
            timestamp: Some(ts),
            signature: Some(sig),
        }
    }

    #[test]
    fn signing_matches_the_specifications_vector() {
        assert_eq!(sign(&Secret::new(SECRET), ID, TS, BODY), SIGNATURE);
    }

    #[test]
    fn the_specifications_vector_verifies_within_the_tolerance() {
        let ts = TS.to_string();
        assert_eq!(
            verify(
                headers(ID, &ts, SIGNATURE),
                BODY,
                &[Secret::new(SECRET)],
                TS + 60
            ),
            Ok(ID)
        );
        assert_eq!(
            verify(
                headers(ID, &ts, SIGNATURE),
                BODY,
                &[Secret::new(SECRET)],
                TS + 301
            ),
            Err(SignatureError::Expired)
        );
    }

    #[test]
    fn any_of_several_signatures_and_any_of_several_secrets_will_do() {
        let ts = TS.to_string();
        let several = format!("v1,Zm9vYmFy v2,ignored {SIGNATURE}");
        let secrets = [Secret::new("whsec_bmV3LXNlY3JldA=="), Secret::new(SECRET)];
        assert_eq!(
            verify(headers(ID, &ts, &several), BODY, &secrets, TS),
            Ok(ID)
        );
    }

    #[test]
    fn a_tampered_body_id_or_timestamp_is_refused() {
        let s = [Secret::new(SECRET)];
        let ts = TS.to_string();
        assert_eq!(
            verify(headers(ID, &ts, SIGNATURE), br#"{"test": 1}"#, &s, TS),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(headers("msg_other", &ts, SIGNATURE), BODY, &s, TS),
            Err(SignatureError::Mismatch)
        );
        let later = (TS + 1).to_string();
        assert_eq!(
            verify(headers(ID, &later, SIGNATURE), BODY, &s, TS),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn missing_or_malformed_headers_are_refused() {
        let s = [Secret::new(SECRET)];
        let ts = TS.to_string();
        let missing = Headers {
            id: None,
            timestamp: Some(&ts),
            signature: Some(SIGNATURE),
        };
        assert_eq!(verify(missing, BODY, &s, TS), Err(SignatureError::Missing));
        assert_eq!(
            verify(headers(ID, "soon", SIGNATURE), BODY, &s, TS),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(headers(ID, &ts, "v1,not base64!"), BODY, &s, TS),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(headers(ID, &ts, SIGNATURE), BODY, &[], TS),
            Err(SignatureError::NoSecret)
        );
    }

    #[test]
    fn a_plain_secret_is_used_as_its_bytes() {
        let plain = Secret::new("not-whsec-shaped");
        let sig = sign(&plain, ID, TS, BODY);
        let ts = TS.to_string();
        assert_eq!(verify(headers(ID, &ts, &sig), BODY, &[plain], TS), Ok(ID));
    }
}
