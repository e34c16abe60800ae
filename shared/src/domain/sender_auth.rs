//! How a sender proves it is who its route says: each source names one
//! scheme and one or more secrets (several during a rotation). Every check
//! runs over the raw body before anything parses it, compares in constant
//! time, and fails with the same answer whether a header is missing,
//! malformed or wrong, so a failure tells a forger nothing.
//!
//! * `tollgate` — `Tollgate-Signature: t=…,v1=…` (see [`super::signature`]).
//! * `pagerduty` — `X-PagerDuty-Signature: v1=<hex HMAC-SHA256 of body>`,
//!   several comma-separated during PagerDuty's own rotations.
//! * `github` — `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of body>`.
//! * `bearer` — `Authorization: Bearer <token>`.
//! * `basic` — `Authorization: Basic base64(user:password)`; the secret is
//!   `user:password`.
//! * `standard-webhooks` — `webhook-id`, `webhook-timestamp`,
//!   `webhook-signature` (see [`super::standard_webhooks`]).

use super::secret::Secret;
use super::signature;
use base64::Engine;
use hmac::{KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

type HmacSha256 = hmac::Hmac<Sha256>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Tollgate,
    PagerDuty,
    GitHub,
    Bearer,
    Basic,
    #[serde(rename = "standard-webhooks")]
    StandardWebhooks,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Tollgate => "tollgate",
            Scheme::PagerDuty => "pagerduty",
            Scheme::GitHub => "github",
            Scheme::Bearer => "bearer",
            Scheme::Basic => "basic",
            Scheme::StandardWebhooks => "standard-webhooks",
        }
    }

    /// The header the scheme reads.
    pub fn header(self) -> &'static str {
        match self {
            Scheme::Tollgate => signature::HEADER,
            Scheme::PagerDuty => "X-PagerDuty-Signature",
            Scheme::GitHub => "X-Hub-Signature-256",
            Scheme::Bearer | Scheme::Basic => "Authorization",
            Scheme::StandardWebhooks => super::standard_webhooks::SIGNATURE_HEADER,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Missing, malformed or wrong: deliberately one answer.
    #[error("the request is not authenticated for this source")]
    Refused,
    /// The tollgate scheme's timestamp is too old or too new.
    #[error("signature timestamp outside the tolerance; check the sender's clock")]
    Expired,
    #[error("no secret is configured for this source")]
    NoSecret,
}

/// Checks a Standard Webhooks delivery (its three headers) for a source.
pub fn verify_standard(
    headers: super::standard_webhooks::Headers<'_>,
    body: &[u8],
    secrets: &[Secret],
    now_unix: i64,
) -> Result<(), AuthError> {
    super::standard_webhooks::verify(headers, body, secrets, now_unix)
        .map(|_| ())
        .map_err(|e| match e {
            signature::SignatureError::Expired => AuthError::Expired,
            signature::SignatureError::NoSecret => AuthError::NoSecret,
            _ => AuthError::Refused,
        })
}

/// Checks `header` (the value of [`Scheme::header`], if sent) over `body`.
pub fn verify(
    scheme: Scheme,
    header: Option<&str>,
    body: &[u8],
    secrets: &[Secret],
    now_unix: i64,
) -> Result<(), AuthError> {
    if secrets.is_empty() {
        return Err(AuthError::NoSecret);
    }
    let header = header
        .filter(|h| h.len() <= 4096)
        .ok_or(AuthError::Refused)?;
    let ok = match scheme {
        Scheme::Tollgate => {
            return signature::verify(Some(header), body, secrets, now_unix).map_err(|e| match e {
                signature::SignatureError::Expired => AuthError::Expired,
                signature::SignatureError::NoSecret => AuthError::NoSecret,
                _ => AuthError::Refused,
            });
        }
        Scheme::PagerDuty => {
            let sent: Vec<Vec<u8>> = header
                .split(',')
                .filter_map(|part| part.trim().strip_prefix("v1="))
                .filter_map(|hex_sig| hex::decode(hex_sig).ok())
                .collect();
            secrets.iter().any(|s| {
                let expected = body_mac(s, body);
                sent.iter()
                    .any(|sig| expected.clone().verify_slice(sig).is_ok())
            })
        }
        Scheme::GitHub => match header
            .trim()
            .strip_prefix("sha256=")
            .and_then(|h| hex::decode(h).ok())
        {
            Some(sig) => secrets
                .iter()
                .any(|s| body_mac(s, body).verify_slice(&sig).is_ok()),
            None => false,
        },
        Scheme::Bearer => match strip_scheme(header, "Bearer") {
            Some(token) => secrets
                .iter()
                .any(|s| constant_time_eq(token.as_bytes(), s.expose().as_bytes())),
            None => false,
        },
        Scheme::Basic => match strip_scheme(header, "Basic").and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        }) {
            Some(pair) => secrets
                .iter()
                .any(|s| constant_time_eq(&pair, s.expose().as_bytes())),
            None => false,
        },
        // Three headers: the caller uses `verify_standard`.
        Scheme::StandardWebhooks => false,
    };
    if ok { Ok(()) } else { Err(AuthError::Refused) }
}

fn body_mac(secret: &Secret, body: &[u8]) -> HmacSha256 {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    mac
}

/// `Bearer abc` → `abc` (the scheme name is case-insensitive).
pub(crate) fn strip_scheme<'h>(header: &'h str, scheme: &str) -> Option<&'h str> {
    let (name, rest) = header.trim().split_once(' ')?;
    name.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

/// Equal bytes, in time that depends only on the lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Signs `body` as the scheme's sender would (for tests, fixtures and
/// `tollgate sources test`).
pub fn sign(scheme: Scheme, secret: &Secret, body: &[u8], now_unix: i64) -> String {
    match scheme {
        Scheme::Tollgate => signature::sign(secret, now_unix, body),
        Scheme::PagerDuty => format!(
            "v1={}",
            hex::encode(body_mac(secret, body).finalize().into_bytes())
        ),
        Scheme::GitHub => format!(
            "sha256={}",
            hex::encode(body_mac(secret, body).finalize().into_bytes())
        ),
        Scheme::Bearer => format!("Bearer {}", secret.expose()),
        Scheme::Basic => format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(secret.expose())
        ),
        // With `webhook-id: delivery_id(body)` and `webhook-timestamp:
        // now_unix` (see `standard_webhooks::headers`).
        Scheme::StandardWebhooks => super::standard_webhooks::sign(
            secret,
            &super::standard_webhooks::delivery_id(body),
            now_unix,
            body,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"alerts":[]}"#;
    const NOW: i64 = 1_800_000_000;

    fn secrets(list: &[&str]) -> Vec<Secret> {
        list.iter().map(|s| Secret::new(*s)).collect()
    }

    #[test]
    fn each_scheme_accepts_its_own_signature_and_a_rotated_secret() {
        for scheme in [
            Scheme::Tollgate,
            Scheme::PagerDuty,
            Scheme::GitHub,
            Scheme::Bearer,
            Scheme::Basic,
        ] {
            let old = Secret::new("user:old-secret");
            let header = sign(scheme, &old, BODY, NOW);
            let active = secrets(&["user:new-secret", "user:old-secret"]);
            assert_eq!(
                verify(scheme, Some(&header), BODY, &active, NOW),
                Ok(()),
                "{scheme:?}"
            );
            assert_eq!(
                verify(
                    scheme,
                    Some(&header),
                    BODY,
                    &secrets(&["user:new-secret"]),
                    NOW
                ),
                Err(AuthError::Refused),
                "{scheme:?}: the retired secret no longer works"
            );
            assert_eq!(
                verify(scheme, None, BODY, &active, NOW),
                Err(AuthError::Refused),
                "{scheme:?}: missing header"
            );
        }
    }

    #[test]
    fn a_tampered_body_fails_every_signing_scheme() {
        for scheme in [Scheme::Tollgate, Scheme::PagerDuty, Scheme::GitHub] {
            let s = Secret::new("k");
            let header = sign(scheme, &s, BODY, NOW);
            assert_eq!(
                verify(scheme, Some(&header), br#"{"alerts":[1]}"#, &[s], NOW),
                Err(AuthError::Refused),
                "{scheme:?}"
            );
        }
    }

    #[test]
    fn pagerduty_accepts_any_of_several_signatures() {
        let s = Secret::new("pd");
        let good = sign(Scheme::PagerDuty, &s, BODY, NOW);
        let header = format!("v1=00ff, {good}");
        assert_eq!(
            verify(Scheme::PagerDuty, Some(&header), BODY, &[s], NOW),
            Ok(())
        );
    }

    #[test]
    fn malformed_headers_are_refused_like_wrong_ones() {
        let s = secrets(&["t"]);
        for (scheme, header) in [
            (Scheme::GitHub, "sha1=abcd"),
            (Scheme::GitHub, "sha256=zz"),
            (Scheme::Bearer, "Basic dDp0"),
            (Scheme::Basic, "Basic !!!"),
            (Scheme::PagerDuty, "v0=abcd"),
            (Scheme::Tollgate, "nonsense"),
        ] {
            assert_eq!(
                verify(scheme, Some(header), BODY, &s, NOW),
                Err(AuthError::Refused),
                "{scheme:?} {header}"
            );
        }
        assert_eq!(
            verify(Scheme::Bearer, Some("Bearer t"), BODY, &[], NOW),
            Err(AuthError::NoSecret)
        );
    }
}
