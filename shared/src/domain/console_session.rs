//! Console sessions: a signed cookie, so they work alike on one `serve`
//! process and on any number of Lambda instances. The value is
//! `<operator, base64url>.<expiry, unix seconds>.<HMAC-SHA256, base64url>`
//! under a key derived from the operator token (rotating the token ends
//! every session). Every form carries a CSRF token: the HMAC of the session
//! value under the same key, so a form from another session — or from no
//! page of ours — is refused.

use super::secret::Secret;
use super::time::Timestamp;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{KeyInit, Mac};
use sha2::Sha256;
use std::time::Duration;

type HmacSha256 = hmac::Hmac<Sha256>;

/// How long a sign-in lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Values longer than this are refused unread.
const MAX_VALUE_CHARS: usize = 512;

/// A signed-in operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub operator: String,
    pub expires: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("not signed in")]
    Invalid,
    #[error("the session has expired; sign in again")]
    Expired,
}

/// The session key for an operator token.
pub fn session_key(operator_token: &Secret) -> Secret {
    let mut m = mac_over(operator_token);
    m.update(b"tollgate console sessions v1");
    Secret::new(hex::encode(m.finalize().into_bytes()))
}

fn mac_over(key: &Secret) -> HmacSha256 {
    <HmacSha256 as KeyInit>::new_from_slice(key.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
}

fn signature(key: &Secret, operator: &str, expires: i64) -> HmacSha256 {
    let mut m = mac_over(key);
    m.update(format!("session|{operator}|{expires}").as_bytes());
    m
}

/// A session value for `operator`, valid for [`SESSION_TTL`] from `now`.
pub fn issue(key: &Secret, operator: &str, now: Timestamp) -> String {
    let expires = now.plus(SESSION_TTL).unix_seconds();
    let sig = signature(key, operator, expires).finalize().into_bytes();
    format!(
        "{}.{expires}.{}",
        B64.encode(operator.as_bytes()),
        B64.encode(sig)
    )
}

/// The session a cookie value stands for, under any of `keys`.
pub fn verify(keys: &[Secret], value: &str, now: Timestamp) -> Result<Session, SessionError> {
    if value.len() > MAX_VALUE_CHARS {
        return Err(SessionError::Invalid);
    }
    let [operator, expires, sig] = value.split('.').collect::<Vec<_>>()[..] else {
        return Err(SessionError::Invalid);
    };
    let operator = B64
        .decode(operator)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or(SessionError::Invalid)?;
    let expires: i64 = expires.parse().map_err(|_| SessionError::Invalid)?;
    let sig = B64.decode(sig).map_err(|_| SessionError::Invalid)?;
    let genuine = keys.iter().fold(false, |any, k| {
        any | signature(k, &operator, expires).verify_slice(&sig).is_ok()
    });
    if !genuine {
        return Err(SessionError::Invalid);
    }
    if now.unix_seconds() >= expires {
        return Err(SessionError::Expired);
    }
    Ok(Session {
        operator,
        expires: Timestamp(expires * 1000),
    })
}

/// The CSRF token of a session value: every form of that session carries it.
pub fn csrf_token(key: &Secret, session_value: &str) -> String {
    let mut m = mac_over(key);
    m.update(format!("csrf|{session_value}").as_bytes());
    B64.encode(m.finalize().into_bytes())
}

/// Whether a form's CSRF token belongs to the session it came with.
pub fn csrf_matches(keys: &[Secret], session_value: &str, presented: &str) -> bool {
    let Ok(presented) = B64.decode(presented) else {
        return false;
    };
    keys.iter().fold(false, |any, k| {
        let mut m = mac_over(k);
        m.update(format!("csrf|{session_value}").as_bytes());
        any | m.verify_slice(&presented).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Secret {
        session_key(&Secret::new("operator-token"))
    }

    #[test]
    fn a_session_is_good_until_it_expires() {
        let now = Timestamp(1_800_000_000_000);
        let value = issue(&key(), "dana", now);
        let s = verify(&[key()], &value, now).unwrap();
        assert_eq!(s.operator, "dana");
        let later = now.plus(SESSION_TTL);
        assert_eq!(verify(&[key()], &value, later), Err(SessionError::Expired));
    }

    #[test]
    fn a_forged_or_foreign_session_is_refused() {
        let now = Timestamp(1_800_000_000_000);
        let value = issue(&key(), "dana", now);
        let other = session_key(&Secret::new("another token"));
        assert_eq!(verify(&[other], &value, now), Err(SessionError::Invalid));
        let renamed = format!(
            "{}.{}",
            B64.encode("root"),
            value.split_once('.').unwrap().1
        );
        assert_eq!(verify(&[key()], &renamed, now), Err(SessionError::Invalid));
        assert_eq!(verify(&[key()], "junk", now), Err(SessionError::Invalid));
    }

    #[test]
    fn a_csrf_token_belongs_to_its_session_only() {
        let now = Timestamp(1_800_000_000_000);
        let a = issue(&key(), "dana", now);
        let b = issue(&key(), "lee", now);
        let token = csrf_token(&key(), &a);
        assert!(csrf_matches(&[key()], &a, &token));
        assert!(!csrf_matches(&[key()], &b, &token));
        assert!(!csrf_matches(&[key()], &a, ""));
    }
}
