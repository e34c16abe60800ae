//! Who may use the operator routes: a bearer token from
//! `TOLLGATE_OPERATOR_TOKEN` (several, comma-separated, while one is
//! rotated out). Compared in constant time against every configured token,
//! so a near-miss takes as long as a wild guess.

use super::secret::Secret;
use super::sender_auth::{constant_time_eq, strip_scheme};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorAccess {
    Allowed,
    /// No token is configured: the operator routes are off.
    Off,
    /// No `Authorization: Bearer …` header.
    Missing,
    Refused,
}

impl OperatorAccess {
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorAccess::Allowed => "allowed",
            OperatorAccess::Off => "operator routes are off",
            OperatorAccess::Missing => "no bearer token",
            OperatorAccess::Refused => "token not valid",
        }
    }
}

pub fn check(tokens: &[Secret], authorization: Option<&str>) -> OperatorAccess {
    if tokens.is_empty() {
        return OperatorAccess::Off;
    }
    let Some(presented) = authorization.and_then(|h| strip_scheme(h, "Bearer")) else {
        return OperatorAccess::Missing;
    };
    // Every token is compared (no early exit on a match).
    let matched = tokens.iter().fold(false, |any, t| {
        any | constant_time_eq(presented.as_bytes(), t.expose().as_bytes())
    });
    if matched {
        OperatorAccess::Allowed
    } else {
        OperatorAccess::Refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Vec<Secret> {
        vec![Secret::new("new-token"), Secret::new("old-token")]
    }

    #[test]
    fn any_configured_token_lets_an_operator_in_during_a_rotation() {
        assert_eq!(
            check(&tokens(), Some("Bearer new-token")),
            OperatorAccess::Allowed
        );
        assert_eq!(
            check(&tokens(), Some("bearer old-token")),
            OperatorAccess::Allowed
        );
    }

    #[test]
    fn a_wrong_or_missing_token_is_refused_and_no_token_turns_the_routes_off() {
        assert_eq!(
            check(&tokens(), Some("Bearer new-toke")),
            OperatorAccess::Refused
        );
        assert_eq!(
            check(&tokens(), Some("Basic new-token")),
            OperatorAccess::Missing
        );
        assert_eq!(check(&tokens(), None), OperatorAccess::Missing);
        assert_eq!(check(&[], Some("Bearer anything")), OperatorAccess::Off);
    }
}
