//! Idempotency: which deliveries are the same work.
//!
//! * The **key** names the intent: source system, external id, operation and
//!   target issue key, hashed.
//! * The **fingerprint** names the exact payload (hash of canonical JSON), to
//!   tell a redelivery from a new revision.
//! * The **dedup id** is what the store's conditional insert is made on: the
//!   key alone for `create` (a create happens once per key, ever), the key and
//!   the fingerprint for everything else (each distinct comment is posted
//!   once; a new update revision is new work).
//! * The **link** is the source system's entity (source + external id): the
//!   unit that owns one Jira issue, so `create` and `upsert` of one entity
//!   never make two issues.

use super::canonical::canonical_json;
use super::event::{Event, OperationKind};
use super::ids::{ExternalId, SourceSystem, string_id};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

string_id!(
    /// Hex SHA-256 of the intent.
    IdempotencyKey
);
string_id!(
    /// Hex SHA-256 of the payload's canonical JSON.
    Fingerprint
);
string_id!(
    /// What the first-writer-wins insert is conditional on.
    DedupId
);
string_id!(
    /// The source system's entity that owns at most one Jira issue.
    LinkId
);

fn sha256_hex(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            // Unit separator: cannot occur in source systems, and makes
            // ("a","bc") differ from ("ab","c").
            h.update([0x1f]);
        }
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

impl IdempotencyKey {
    pub fn of(event: &Event) -> Self {
        IdempotencyKey(sha256_hex(&[
            event.source_system.as_str(),
            event.external_id.as_str(),
            event.operation.kind().as_str(),
            event.issue_key.as_ref().map(|k| k.as_str()).unwrap_or(""),
        ]))
    }
}

impl Fingerprint {
    pub fn of(payload: &serde_json::Value) -> Self {
        Fingerprint(sha256_hex(&[&canonical_json(payload)]))
    }
}

impl DedupId {
    pub fn of(kind: OperationKind, key: &IdempotencyKey, fingerprint: &Fingerprint) -> Self {
        match kind {
            OperationKind::Create => DedupId(key.0.clone()),
            _ => DedupId(format!("{}.{}", key.0, fingerprint.0)),
        }
    }
}

impl LinkId {
    pub fn of(source: &SourceSystem, external_id: &ExternalId) -> Self {
        LinkId(sha256_hex(&["link", source.as_str(), external_id.as_str()]))
    }

    /// The Jira label set on an issue at creation, so a retry after an
    /// ambiguous failure finds the issue instead of creating it again.
    pub fn label(&self) -> String {
        format!("tollgate-{}", &self.0[..24])
    }

    /// The label of the `index`-th child (sub-task) of this entity's issue.
    pub fn child_label(&self, index: usize) -> String {
        format!("tollgate-{}-c{index}", &self.0[..24])
    }
}

/// What to answer when the dedup id is already taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redelivery {
    /// The same payload again: answer with the original job.
    Duplicate,
    /// Same key, different payload, and the operation cannot be revised
    /// (a create happens once): 409.
    Conflict,
}

pub fn classify_redelivery(existing: &Fingerprint, incoming: &Fingerprint) -> Redelivery {
    if existing == incoming {
        Redelivery::Duplicate
    } else {
        Redelivery::Conflict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::validation::parse_event;
    use serde_json::Value;

    fn event(body: &str) -> (Event, Value) {
        parse_event(body.as_bytes()).unwrap()
    }

    #[test]
    fn the_fingerprint_ignores_key_order_and_whitespace() {
        let (_, a) = event(
            r#"{"sourceSystem":"s","externalId":"1","desiredOperation":"comment","comment":"c"}"#,
        );
        let (_, b) = event(
            "{\n \"comment\": \"c\",\n \"desiredOperation\": \"comment\", \"externalId\": \"1\", \"sourceSystem\": \"s\"}",
        );
        assert_eq!(Fingerprint::of(&a), Fingerprint::of(&b));
    }

    #[test]
    fn the_fingerprint_changes_with_the_payload() {
        let (_, a) = event(
            r#"{"sourceSystem":"s","externalId":"1","desiredOperation":"comment","comment":"c"}"#,
        );
        let (_, b) = event(
            r#"{"sourceSystem":"s","externalId":"1","desiredOperation":"comment","comment":"d"}"#,
        );
        assert_ne!(Fingerprint::of(&a), Fingerprint::of(&b));
    }

    #[test]
    fn the_key_depends_on_operation_and_target_but_not_on_the_payload() {
        let (c1, _) = event(
            r#"{"sourceSystem":"s","externalId":"1","desiredOperation":"comment","comment":"c"}"#,
        );
        let (c2, _) = event(
            r#"{"sourceSystem":"s","externalId":"1","desiredOperation":"comment","comment":"d"}"#,
        );
        let (c3, _) = event(
            r#"{"sourceSystem":"s","externalId":"1","desiredOperation":"comment","comment":"c","issueKey":"OPS-1"}"#,
        );
        let (t, _) = event(
            r#"{"sourceSystem":"s","externalId":"1","desiredOperation":"transition","transition":"Done"}"#,
        );
        assert_eq!(IdempotencyKey::of(&c1), IdempotencyKey::of(&c2));
        assert_ne!(IdempotencyKey::of(&c1), IdempotencyKey::of(&c3));
        assert_ne!(IdempotencyKey::of(&c1), IdempotencyKey::of(&t));
    }

    #[test]
    fn fields_cannot_bleed_into_each_other_in_the_key() {
        let (a, _) = event(
            r#"{"sourceSystem":"ab","externalId":"c","desiredOperation":"comment","comment":"x"}"#,
        );
        let (b, _) = event(
            r#"{"sourceSystem":"a","externalId":"bc","desiredOperation":"comment","comment":"x"}"#,
        );
        assert_ne!(IdempotencyKey::of(&a), IdempotencyKey::of(&b));
    }

    #[test]
    fn a_create_dedups_on_its_key_alone_and_a_comment_on_key_and_payload() {
        let key = IdempotencyKey("k".into());
        let f1 = Fingerprint("1".into());
        let f2 = Fingerprint("2".into());
        assert_eq!(
            DedupId::of(OperationKind::Create, &key, &f1),
            DedupId::of(OperationKind::Create, &key, &f2)
        );
        assert_ne!(
            DedupId::of(OperationKind::Comment, &key, &f1),
            DedupId::of(OperationKind::Comment, &key, &f2)
        );
    }

    #[test]
    fn a_redelivery_with_another_payload_is_a_conflict() {
        let f1 = Fingerprint("1".into());
        let f2 = Fingerprint("2".into());
        assert_eq!(classify_redelivery(&f1, &f1), Redelivery::Duplicate);
        assert_eq!(classify_redelivery(&f1, &f2), Redelivery::Conflict);
    }

    #[test]
    fn link_labels_are_jira_safe() {
        let link = LinkId::of(
            &crate::domain::ids::SourceSystem::parse("s").unwrap(),
            &crate::domain::ids::ExternalId::parse("id with spaces").unwrap(),
        );
        assert!(!link.label().contains(' '));
        assert_eq!(link.label().len(), "tollgate-".len() + 24);
    }
}
