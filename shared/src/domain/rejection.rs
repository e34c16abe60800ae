//! The manual queue: authenticated events that failed validation, kept with
//! their reasons so an operator can fix and re-submit them. (Unsigned or
//! oversized bodies are not kept: they cannot be shown to come from a
//! sender, and storing them would let anyone fill the store.)

use super::ids::JobId;
use super::time::Timestamp;
use super::validation::FieldError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

super::ids::string_id!(
    /// One kept rejection; a UUID.
    RejectionId
);

impl RejectionId {
    pub fn generate() -> Self {
        RejectionId(uuid::Uuid::now_v7().to_string())
    }

    pub fn parse(s: &str) -> Option<Self> {
        uuid::Uuid::parse_str(s)
            .ok()
            .map(|u| RejectionId(u.hyphenated().to_string()))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub id: RejectionId,
    pub received_at: Timestamp,
    /// The sender's `sourceSystem`, when the body had a readable one.
    pub source_system: Option<String>,
    pub errors: Vec<FieldError>,
    /// The body exactly as received (within the body limit).
    pub body: String,
    /// The job a re-submission created.
    pub resubmitted_as: Option<JobId>,
}

impl Rejection {
    /// A rejection of `body` for `errors`; the body is kept as text (bytes
    /// that are not UTF-8 are replaced, the errors already say so).
    pub fn new(body: &[u8], errors: Vec<FieldError>, at: Timestamp) -> Self {
        let text = String::from_utf8_lossy(body).into_owned();
        let source_system = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| {
                v.get("sourceSystem")
                    .and_then(Value::as_str)
                    .map(String::from)
            })
            .filter(|s| s.chars().count() <= 200);
        Rejection {
            id: RejectionId::generate(),
            received_at: at,
            source_system,
            errors,
            body: text,
            resubmitted_as: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejection_keeps_the_body_and_names_the_sender_when_it_can() {
        let r = Rejection::new(
            br#"{"sourceSystem": "cmdb", "externalId": 5}"#,
            vec![FieldError::new("externalId", "must be a string")],
            Timestamp(1),
        );
        assert_eq!(r.source_system.as_deref(), Some("cmdb"));
        assert!(r.body.contains("\"externalId\": 5"));
        let garbage = Rejection::new(b"\xff{not json", vec![], Timestamp(1));
        assert_eq!(garbage.source_system, None);
        assert!(garbage.body.ends_with("{not json"));
    }
}
