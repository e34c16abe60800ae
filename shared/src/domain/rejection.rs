//! The manual queue: authenticated events that failed validation, kept with
//! their reasons so an operator can fix and re-submit them. (Unsigned or
//! oversized bodies are not kept: they cannot be shown to come from a
//! sender, and storing them would let anyone fill the store.)

use super::event::Priority;
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

    /// The one id of item `index` of a batch with this content: a re-posted
    /// batch's same item is the same rejection, not another one.
    pub fn for_batch_item(batch: &str, index: u32, body: &[u8]) -> Self {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"tollgate batch item\x1f");
        h.update(batch.as_bytes());
        h.update(b"\x1f");
        h.update(index.to_be_bytes());
        h.update(b"\x1f");
        h.update(body);
        let digest = h.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        RejectionId(
            uuid::Builder::from_custom_bytes(bytes)
                .into_uuid()
                .hyphenated()
                .to_string(),
        )
    }
}

/// Where a rejected body came from: what re-submitting it runs it through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Origin {
    /// A v1 event (`POST /v1/events`): re-submitted, it is admitted as one.
    #[default]
    Event,
    /// A sender's payload (`POST /v1/sources/{source}`); `path` is what
    /// failed (`alerts[3]`, or `body` for the whole payload). The body kept
    /// is the payload, so a re-submission runs the sender's mapping again.
    #[serde(rename_all = "camelCase")]
    Sender { source: String, path: String },
    /// Item `index` of a batch, kept as received: re-submitted, it rejoins
    /// its batch with the batch's `sourceSystem` and priority.
    #[serde(rename_all = "camelCase")]
    BatchItem {
        batch: String,
        index: u32,
        source_system: String,
        priority: Priority,
    },
}

impl Origin {
    pub fn kind(&self) -> &'static str {
        match self {
            Origin::Event => "event",
            Origin::Sender { .. } => "sender",
            Origin::BatchItem { .. } => "batch item",
        }
    }
}

/// An operator's decision that a rejection needs nothing more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discarded {
    pub by: String,
    pub reason: String,
    pub at: Timestamp,
}

/// Most bytes of a rejected body kept: the limit of one event, so an event
/// or a batch item is kept whole, and a sender's large payload (up to
/// 1 MiB) is kept in part — one stored rejection stays far below
/// DynamoDB's 400 KB item limit.
pub const MAX_KEPT_BODY_BYTES: usize = super::limits::MAX_BODY_BYTES;

/// What was left out of a body kept in part: its size and its digest, to
/// recognise the original.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truncated {
    pub bytes: usize,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub id: RejectionId,
    pub received_at: Timestamp,
    /// The sender's `sourceSystem`, when the body had a readable one.
    pub source_system: Option<String>,
    pub errors: Vec<FieldError>,
    /// The body exactly as received, or its first
    /// [`MAX_KEPT_BODY_BYTES`] when `truncated` says it was larger.
    pub body: String,
    pub truncated: Option<Truncated>,
    /// The job a re-submission created.
    pub resubmitted_as: Option<JobId>,
    pub origin: Origin,
    pub discarded: Option<Discarded>,
}

impl Rejection {
    /// A rejection of `body` for `errors`; the body is kept as text (bytes
    /// that are not UTF-8 are replaced, the errors already say so).
    pub fn new(body: &[u8], errors: Vec<FieldError>, at: Timestamp) -> Self {
        let (kept, truncated) = if body.len() > MAX_KEPT_BODY_BYTES {
            use sha2::{Digest, Sha256};
            let digest: String = Sha256::digest(body)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            (
                &body[..MAX_KEPT_BODY_BYTES],
                Some(Truncated {
                    bytes: body.len(),
                    sha256: digest,
                }),
            )
        } else {
            (body, None)
        };
        // Cut at a byte boundary, so a split character at the end becomes
        // a replacement character.
        let text = String::from_utf8_lossy(kept).into_owned();
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
            truncated,
            resubmitted_as: None,
            origin: Origin::Event,
            discarded: None,
        }
    }

    /// What a sender posted: the whole payload, and the path at fault.
    pub fn from_sender(
        source: &str,
        path: &str,
        payload: &[u8],
        errors: Vec<FieldError>,
        at: Timestamp,
    ) -> Self {
        Rejection {
            source_system: Some(source.to_string()),
            origin: Origin::Sender {
                source: source.to_string(),
                path: path.to_string(),
            },
            ..Rejection::new(payload, errors, at)
        }
    }

    /// Item `index` of a batch, as received; its id is the item's own.
    pub fn of_batch_item(
        batch: &str,
        index: u32,
        source_system: &str,
        priority: Priority,
        item: &[u8],
        errors: Vec<FieldError>,
        at: Timestamp,
    ) -> Self {
        Rejection {
            id: RejectionId::for_batch_item(batch, index, item),
            source_system: Some(source_system.to_string()),
            origin: Origin::BatchItem {
                batch: batch.to_string(),
                index,
                source_system: source_system.to_string(),
                priority,
            },
            ..Rejection::new(item, errors, at)
        }
    }

    /// `open`, `resubmitted` or `discarded`.
    pub fn status(&self) -> &'static str {
        match (&self.resubmitted_as, &self.discarded) {
            (Some(_), _) => "resubmitted",
            (None, Some(_)) => "discarded",
            (None, None) => "open",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_body_is_kept_in_part_with_its_size_and_digest() {
        let big = vec![b'a'; MAX_KEPT_BODY_BYTES + 10];
        let r = Rejection::new(&big, vec![], Timestamp(0));
        assert_eq!(r.body.len(), MAX_KEPT_BODY_BYTES);
        let t = r.truncated.unwrap();
        assert_eq!(t.bytes, MAX_KEPT_BODY_BYTES + 10);
        assert_eq!(t.sha256.len(), 64);
        let small = Rejection::new(b"{}", vec![], Timestamp(0));
        assert_eq!((small.body.as_str(), small.truncated), ("{}", None));
    }

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

    #[test]
    fn the_same_batch_item_is_the_same_rejection() {
        let a = RejectionId::for_batch_item("b-1", 17, b"{\"x\":1}");
        assert_eq!(a, RejectionId::for_batch_item("b-1", 17, b"{\"x\":1}"));
        assert_ne!(a, RejectionId::for_batch_item("b-1", 18, b"{\"x\":1}"));
        assert_ne!(a, RejectionId::for_batch_item("b-2", 17, b"{\"x\":1}"));
        assert_ne!(a, RejectionId::for_batch_item("b-1", 17, b"{\"x\":2}"));
        assert!(RejectionId::parse(a.as_str()).is_some(), "still a UUID");
    }

    #[test]
    fn origins_keep_their_context_as_json() {
        let r = Rejection::of_batch_item(
            "cmdb-1",
            3,
            "cmdb",
            Priority::Bulk,
            b"{}",
            vec![],
            Timestamp(1),
        );
        let json = serde_json::to_value(&r.origin).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "batchItem", "batch": "cmdb-1", "index": 3,
                               "sourceSystem": "cmdb", "priority": "bulk"})
        );
        assert_eq!(serde_json::from_value::<Origin>(json).unwrap(), r.origin);
        assert_eq!(r.source_system.as_deref(), Some("cmdb"));
        assert_eq!(r.status(), "open");
    }
}
