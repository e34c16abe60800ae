//! Newtypes for identifiers, so a job id is never passed where an issue key
//! is expected.

use serde::{Deserialize, Serialize};

/// A newtype over `String` with `as_str`, `from_stored` and `Display`.
macro_rules! string_id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// For adapters reading back what they stored (validated on
            /// the way in).
            pub fn from_stored(s: String) -> Self {
                Self(s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

pub(crate) use string_id;

string_id!(
    /// A tollgate job; UUIDv7 so ids sort by creation time.
    JobId
);
string_id!(
    /// A Jira issue key such as `OPS-17`.
    IssueKey
);
string_id!(
    /// The system an event comes from (`alertmanager`, `cmdb`).
    SourceSystem
);
string_id!(
    /// The sender's own id for the thing the event is about.
    ExternalId
);
string_id!(
    /// A Jira project key such as `OPS`.
    ProjectKey
);
string_id!(
    /// A bulk sync run, named by its sender (`cmdb-2026-11-24`).
    BatchId
);
string_id!(
    /// A Confluence page id (digits).
    PageId
);
string_id!(
    /// A Confluence space id (digits, as the v2 API names spaces).
    SpaceId
);

/// Confluence ids are decimal numbers, sent as strings.
fn confluence_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit())
}

impl PageId {
    pub fn parse(s: &str) -> Option<Self> {
        confluence_id(s).then(|| PageId(s.to_string()))
    }
}

impl SpaceId {
    pub fn parse(s: &str) -> Option<Self> {
        confluence_id(s).then(|| SpaceId(s.to_string()))
    }
}

impl JobId {
    pub fn generate() -> Self {
        JobId(uuid::Uuid::now_v7().to_string())
    }

    /// Accepts only the shape [`JobId::generate`] produces, so a path
    /// parameter can never smuggle anything else into a store lookup.
    pub fn parse(s: &str) -> Option<Self> {
        uuid::Uuid::parse_str(s)
            .ok()
            .map(|u| JobId(u.hyphenated().to_string()))
    }
}

impl IssueKey {
    /// `PROJECT-123`: an uppercase project key, a dash, a positive number.
    pub fn parse(s: &str) -> Option<Self> {
        let (project, number) = s.rsplit_once('-')?;
        let number_ok = !number.is_empty()
            && number.bytes().all(|b| b.is_ascii_digit())
            && !number.starts_with('0');
        (ProjectKey::parse(project).is_some() && number_ok).then(|| IssueKey(s.to_string()))
    }

    pub fn project(&self) -> &str {
        self.0.rsplit_once('-').map(|(p, _)| p).unwrap_or(&self.0)
    }
}

impl ProjectKey {
    /// Jira project keys: an uppercase letter, then uppercase letters, digits
    /// or underscores, 2 to 10 characters in all.
    pub fn parse(s: &str) -> Option<Self> {
        let mut bytes = s.bytes();
        let first_ok = bytes.next().is_some_and(|b| b.is_ascii_uppercase());
        let rest_ok = bytes.all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        (first_ok && rest_ok && (2..=10).contains(&s.len())).then(|| ProjectKey(s.to_string()))
    }
}

impl SourceSystem {
    /// Letters, digits, `.`, `_`, `-`: it ends up in labels and log lines.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty()
            && s.chars().count() <= super::limits::MAX_SOURCE_SYSTEM_CHARS
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        ok.then(|| SourceSystem(s.to_string()))
    }
}

impl BatchId {
    /// Letters, digits, `.`, `_`, `-`, `:`; at most 128 characters: it is a
    /// path segment and a storage key.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
        ok.then(|| BatchId(s.to_string()))
    }
}

impl ExternalId {
    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.trim().is_empty()
            && s.chars().count() <= super::limits::MAX_EXTERNAL_ID_CHARS
            && !s.chars().any(char::is_control);
        ok.then(|| ExternalId(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_keys_need_a_project_and_a_number() {
        assert!(IssueKey::parse("OPS-17").is_some());
        assert!(IssueKey::parse("A1_B-9").is_some());
        assert!(IssueKey::parse("ops-17").is_none());
        assert!(IssueKey::parse("OPS-").is_none());
        assert!(IssueKey::parse("OPS-017").is_none());
        assert!(IssueKey::parse("17").is_none());
        assert!(IssueKey::parse("O-1").is_none());
    }

    #[test]
    fn job_ids_are_uuids_and_nothing_else() {
        let id = JobId::generate();
        assert_eq!(JobId::parse(id.as_str()), Some(id));
        assert!(JobId::parse("../../etc/passwd").is_none());
    }

    #[test]
    fn batch_ids_are_path_safe() {
        assert!(BatchId::parse("cmdb-2026-11-24:night").is_some());
        assert!(BatchId::parse("a/b").is_none());
        assert!(BatchId::parse("").is_none());
        assert!(BatchId::parse(&"x".repeat(129)).is_none());
    }

    #[test]
    fn source_systems_are_restricted_to_label_safe_characters() {
        assert!(SourceSystem::parse("alert-manager_2.prod").is_some());
        assert!(SourceSystem::parse("alert manager").is_none());
        assert!(SourceSystem::parse("").is_none());
    }
}
