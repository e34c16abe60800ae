//! Input limits, in one place so errors and docs quote the same numbers.

/// Largest accepted request body. Jira's own request limit is far above this;
/// events bigger than this are almost always a sender bug (a log dump).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Jira rejects summaries longer than 255 characters.
pub const MAX_SUMMARY_CHARS: usize = 255;
/// Jira's limit for a text field (description, comment body).
pub const MAX_TEXT_CHARS: usize = 32_767;
/// Jira's limit for one label.
pub const MAX_LABEL_CHARS: usize = 255;
pub const MAX_LABELS: usize = 50;
/// One event may fan out into at most this many sub-tasks; larger fan-outs
/// belong in a batch, where they are chunked and approved.
pub const MAX_CHILDREN: usize = 50;
pub const MAX_SOURCE_SYSTEM_CHARS: usize = 64;
pub const MAX_EXTERNAL_ID_CHARS: usize = 255;
pub const MAX_FIELDS: usize = 100;
pub const MAX_TRANSITION_CHARS: usize = 255;
/// Deepest nesting of arrays and objects in a body; events need a handful
/// of levels (`fields` values, ADF-like structures), a sender's payload a
/// few more.
pub const MAX_JSON_DEPTH: usize = 32;
