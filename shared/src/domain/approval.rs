//! Approval requests and the signed links that decide them.
//!
//! A link token is `<approvalId>.<a|d>.<approver, base64url>.<expiry unix s>.<mac>`
//! where `mac` is base64url(HMAC-SHA256(key, "tollgate-approval-v1|id|decision|approver|expiry")).
//! Every part is URL-safe, so the token is a path segment as it is. Several
//! keys may be active (rotation); any match accepts, compared in constant
//! time. A token proves who may decide what until when; whether the approval
//! is still open is the store's to say.

use super::ids::JobId;
use super::secret::Secret;
use super::time::Timestamp;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = hmac::Hmac<Sha256>;

super::ids::string_id!(
    /// One approval request; a UUID.
    ApprovalId
);

impl ApprovalId {
    pub fn generate() -> Self {
        ApprovalId(uuid::Uuid::now_v7().to_string())
    }

    pub fn parse(s: &str) -> Option<Self> {
        uuid::Uuid::parse_str(s)
            .ok()
            .map(|u| ApprovalId(u.hyphenated().to_string()))
    }

    /// An id derived rather than drawn (a batch chunk's request is the same
    /// on every attempt to admit its page).
    pub fn from_uuid(u: uuid::Uuid) -> Self {
        ApprovalId(u.hyphenated().to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Approve,
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Deny => "deny",
        }
    }

    fn code(self) -> &'static str {
        match self {
            Decision::Approve => "a",
            Decision::Deny => "d",
        }
    }
}

/// Who decided, what, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decided {
    pub decision: Decision,
    pub by: String,
    pub at: Timestamp,
}

/// A stored approval request: exactly what will change, who may decide,
/// until when.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalRecord {
    pub id: ApprovalId,
    pub job_id: JobId,
    /// The other jobs one decision covers (a batch chunk), besides `job_id`.
    pub also: Vec<JobId>,
    /// The policy rule that asked for approval.
    pub rule: String,
    /// What will change in Jira, in words, line by line.
    pub intent: Vec<String>,
    /// Who asks (the source system).
    pub requested_by: String,
    pub approvers: Vec<String>,
    pub requested_at: Timestamp,
    pub expires_at: Timestamp,
    pub decided: Option<Decided>,
    /// Whether the approvers were notified (retried until true).
    pub notified: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalStatus {
    Pending,
    Expired,
    Decided(Decision),
}

/// The actor recorded when a request expires undecided: it is closed as
/// denied, so it leaves the open list, and reads as expired. Approver
/// identities may not start with `tollgate:`.
pub const EXPIRY_ACTOR: &str = "tollgate:expiry";

impl ApprovalRecord {
    /// Every job the decision applies to.
    pub fn jobs(&self) -> impl Iterator<Item = &JobId> {
        std::iter::once(&self.job_id).chain(&self.also)
    }

    pub fn status(&self, now: Timestamp) -> ApprovalStatus {
        match &self.decided {
            Some(d) if d.by == EXPIRY_ACTOR => ApprovalStatus::Expired,
            Some(d) => ApprovalStatus::Decided(d.decision),
            None if now >= self.expires_at => ApprovalStatus::Expired,
            None => ApprovalStatus::Pending,
        }
    }

    pub fn may_decide(&self, who: &str) -> bool {
        self.approvers.iter().any(|a| a == who)
    }
}

/// One approver's pair of links.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApproverLinks {
    pub approver: String,
    pub approve_url: String,
    pub deny_url: String,
}

/// What a notification carries.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalNotice {
    pub approval_id: ApprovalId,
    pub job_id: String,
    pub requested_by: String,
    pub rule: String,
    pub intent: Vec<String>,
    pub expires_at: String,
    pub approvers: Vec<ApproverLinks>,
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkClaim {
    pub approval: ApprovalId,
    pub decision: Decision,
    pub approver: String,
    pub expires: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token at all, or altered: the same answer for both, so a
    /// forger learns nothing from it.
    #[error("this approval link is not valid")]
    Invalid,
    #[error("this approval link has expired")]
    Expired,
    #[error("no approval link key is configured")]
    NoKey,
}

/// A link-signing key derived from a webhook secret, for installations that
/// set none of their own: distinct from the secret itself, so a link never
/// reveals or reuses the key senders sign with.
pub fn derive_link_key(secret: &Secret) -> Secret {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    m.update(b"tollgate approval links v1");
    Secret::new(hex::encode(m.finalize().into_bytes()))
}

/// Upper bound on a token's length; anything longer is refused unread.
pub const MAX_TOKEN_CHARS: usize = 1024;

fn mac(key: &Secret, id: &str, decision: &str, approver: &str, expiry: i64) -> HmacSha256 {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    m.update(format!("tollgate-approval-v1|{id}|{decision}|{approver}|{expiry}").as_bytes());
    m
}

/// Signs a link for `approver` to make `decision`, valid until `expires`.
pub fn sign_link(key: &Secret, claim: &LinkClaim) -> String {
    let approver = B64.encode(claim.approver.as_bytes());
    let expiry = claim.expires.unix_seconds();
    let code = claim.decision.code();
    let m = mac(key, claim.approval.as_str(), code, &claim.approver, expiry);
    format!(
        "{}.{code}.{approver}.{expiry}.{}",
        claim.approval,
        B64.encode(m.finalize().into_bytes())
    )
}

/// Checks a token against the active keys at `now`.
pub fn verify_link(token: &str, keys: &[Secret], now: Timestamp) -> Result<LinkClaim, TokenError> {
    if keys.is_empty() {
        return Err(TokenError::NoKey);
    }
    if token.len() > MAX_TOKEN_CHARS {
        return Err(TokenError::Invalid);
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [id, code, approver, expiry, sig] = parts.as_slice() else {
        return Err(TokenError::Invalid);
    };
    let approval = ApprovalId::parse(id).ok_or(TokenError::Invalid)?;
    let decision = match *code {
        "a" => Decision::Approve,
        "d" => Decision::Deny,
        _ => return Err(TokenError::Invalid),
    };
    let approver = B64
        .decode(approver)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or(TokenError::Invalid)?;
    let expiry: i64 = expiry.parse().map_err(|_| TokenError::Invalid)?;
    let sig = B64.decode(sig).map_err(|_| TokenError::Invalid)?;
    let genuine = keys.iter().any(|k| {
        mac(k, approval.as_str(), code, &approver, expiry)
            .verify_slice(&sig)
            .is_ok()
    });
    if !genuine {
        return Err(TokenError::Invalid);
    }
    // Checked after the signature, so an expired forgery reads as invalid.
    if now.unix_seconds() >= expiry {
        return Err(TokenError::Expired);
    }
    Ok(LinkClaim {
        approval,
        decision,
        approver,
        expires: Timestamp(expiry * 1000),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(decision: Decision) -> LinkClaim {
        LinkClaim {
            approval: ApprovalId::generate(),
            decision,
            approver: "lead@example.com".into(),
            expires: Timestamp(2_000_000_000_000),
        }
    }

    const NOW: Timestamp = Timestamp(1_900_000_000_000);

    #[test]
    fn a_signed_link_verifies_and_says_what_it_was_signed_for() {
        let key = Secret::new("k1");
        let c = claim(Decision::Deny);
        let token = sign_link(&key, &c);
        assert_eq!(verify_link(&token, &[key], NOW), Ok(c));
        assert!(
            token
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
        );
    }

    #[test]
    fn any_altered_part_invalidates_the_link() {
        let key = Secret::new("k1");
        let c = claim(Decision::Deny);
        let token = sign_link(&key, &c);
        let parts: Vec<&str> = token.split('.').collect();
        let alter = |i: usize, v: &str| {
            let mut p = parts.clone();
            p[i] = v;
            p.join(".")
        };
        let other_approver = B64.encode("mallory@example.com");
        for forged in [
            alter(1, "a"),
            alter(2, &other_approver),
            alter(3, "2100000000"),
            alter(0, &ApprovalId::generate().to_string()),
            alter(4, "AAAA"),
            token[..token.len() - 1].to_string(),
            "not-a-token".into(),
            "x".repeat(5000),
        ] {
            assert_eq!(
                verify_link(&forged, std::slice::from_ref(&key), NOW),
                Err(TokenError::Invalid),
                "{forged}"
            );
        }
    }

    #[test]
    fn an_expired_link_is_refused_as_expired() {
        let key = Secret::new("k1");
        let mut c = claim(Decision::Approve);
        c.expires = Timestamp(NOW.0 - 1000);
        let token = sign_link(&key, &c);
        assert_eq!(verify_link(&token, &[key], NOW), Err(TokenError::Expired));
    }

    #[test]
    fn links_signed_with_a_rotated_out_key_stop_working_and_old_ones_work_during_rotation() {
        let (old, new) = (Secret::new("old"), Secret::new("new"));
        let token = sign_link(&old, &claim(Decision::Approve));
        assert!(verify_link(&token, &[new.clone(), old], NOW).is_ok());
        assert_eq!(verify_link(&token, &[new], NOW), Err(TokenError::Invalid));
    }

    #[test]
    fn an_approval_is_pending_until_decided_or_expired() {
        let mut r = ApprovalRecord {
            id: ApprovalId::generate(),
            job_id: JobId::generate(),
            also: Vec::new(),
            rule: "r".into(),
            intent: vec![],
            requested_by: "itsm".into(),
            approvers: vec!["a".into()],
            requested_at: Timestamp(0),
            expires_at: Timestamp(100),
            decided: None,
            notified: false,
        };
        assert_eq!(r.status(Timestamp(99)), ApprovalStatus::Pending);
        assert_eq!(r.status(Timestamp(100)), ApprovalStatus::Expired);
        r.decided = Some(Decided {
            decision: Decision::Deny,
            by: "a".into(),
            at: Timestamp(50),
        });
        assert_eq!(
            r.status(Timestamp(100)),
            ApprovalStatus::Decided(Decision::Deny)
        );
        assert!(r.may_decide("a") && !r.may_decide("b"));
    }
}
