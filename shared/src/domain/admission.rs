//! Admission of a batch in pages.
//!
//! A batch request is checked as a whole and stored as pages before any of
//! its items is admitted, so the request is answered at once whatever its
//! size; the pages are then admitted in order, each one an idempotent unit
//! (its jobs, approval and rejection ids are derived from the post and the
//! item's index), behind a cursor that only moves forward. A page is what
//! one chunk approval covers, and what one stored item can hold.

use super::approval::ApprovalId;
use super::ids::{BatchId, JobId};
use super::time::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::ops::Range;

/// Most bytes of items one page holds: a stored page stays well below
/// DynamoDB's 400 KB item limit (an item alone is at most
/// [`super::limits::MAX_BODY_BYTES`]).
pub const PAGE_BYTES: usize = 300 * 1024;
/// Most valid items on one page when no chunk size applies; also the cap
/// on a page's invalid items, so one page is always a small unit of work.
pub const PAGE_ITEMS: usize = 250;

/// One request that posted to a batch, named by its content: the same body
/// posted again is the same post, and adds nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PostId(String);

impl PostId {
    pub fn of(batch: &BatchId, body: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(b"tollgate batch post\x1f");
        h.update(batch.as_str().as_bytes());
        h.update(b"\x1f");
        h.update(body);
        PostId(hex(&h.finalize()[..16]))
    }

    /// A post id as stored (32 hex digits); anything else is refused.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        .then(|| PostId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The job id the item at `index` of this post takes: a UUIDv7 whose
    /// time is the post's, so it sorts with other jobs by admission time
    /// (later items of a post are newer revisions) and is the same on
    /// every attempt to admit the page.
    pub fn job_id(&self, posted_at: Timestamp, index: u32) -> JobId {
        let digest = self.digest(b"job", index);
        let mut b = [0u8; 16];
        let ms = posted_at.0.max(0) as u64;
        b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
        let i = index & 0x3fff;
        b[6] = 0x70 | ((i >> 10) & 0x0f) as u8;
        b[7] = ((i >> 2) & 0xff) as u8;
        b[8] = 0x80 | (((i & 0x3) as u8) << 4) | (digest[0] & 0x0f);
        b[9..].copy_from_slice(&digest[1..8]);
        JobId::from_stored(uuid::Uuid::from_bytes(b).hyphenated().to_string())
    }

    /// The id of the approval request of page `page`: created once, however
    /// often the page is admitted.
    pub fn approval_id(&self, page: u32) -> ApprovalId {
        derived_approval(self.digest(b"approval", page))
    }

    /// The request a page's items that a policy rule holds wait on
    /// together (one per rule and page, however many items it holds):
    /// derived like the chunk's, so admitting the page again makes none
    /// twice.
    pub fn rule_approval_id(&self, page: u32, rule: &str) -> ApprovalId {
        let mut what = b"rule-approval\x1f".to_vec();
        what.extend_from_slice(rule.as_bytes());
        derived_approval(self.digest(&what, page))
    }

    fn digest(&self, what: &[u8], n: u32) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(what);
        h.update(b"\x1f");
        h.update(self.0.as_bytes());
        h.update(b"\x1f");
        h.update(n.to_be_bytes());
        h.finalize().into()
    }
}

/// An approval id from a digest: a version-8 (custom) UUID.
fn derived_approval(digest: [u8; 32]) -> ApprovalId {
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = 0x80 | (b[6] & 0x0f);
    b[8] = 0x80 | (b[8] & 0x3f);
    ApprovalId::from_uuid(uuid::Uuid::from_bytes(b))
}

impl std::fmt::Display for PostId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One post's admission: how many pages it has and which comes next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRecord {
    pub batch: BatchId,
    pub post: PostId,
    /// Items in the request.
    pub items: u32,
    pub pages: u32,
    /// The first page not admitted yet; `pages` when done.
    pub next_page: u32,
    /// Its chunks wait for approval (the request was over the policy's
    /// batch threshold when posted).
    pub gated: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl AdmissionRecord {
    pub fn is_done(&self) -> bool {
        self.next_page >= self.pages
    }
}

/// A stored page: consecutive items of one post, as received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchPage {
    pub number: u32,
    /// The index in the request of the page's first item.
    pub first_index: u32,
    /// Each item's JSON text.
    pub items: Vec<String>,
}

/// What admitting one page added to its batch's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub received: u32,
    pub accepted: u32,
    pub duplicates: u32,
    /// New items that wait for a person (answered, not stored: the batch
    /// view counts them from its jobs).
    pub held: u32,
    /// Approval requests these pages opened (answered, not stored).
    pub requests: u32,
}

/// Cuts a request's items into pages: consecutive items, at most
/// `max_valid` valid ones and at most [`PAGE_ITEMS`] invalid ones, and at
/// most [`PAGE_BYTES`] of item text unless one item alone is larger.
/// `items` gives each item's size and whether it is valid.
pub fn paginate(items: &[(usize, bool)], max_valid: usize) -> Vec<Range<usize>> {
    let max_valid = max_valid.max(1);
    let mut pages = Vec::new();
    let (mut start, mut bytes, mut valid, mut invalid) = (0, 0, 0, 0);
    for (i, &(size, ok)) in items.iter().enumerate() {
        let full = i > start
            && (bytes + size > PAGE_BYTES
                || (ok && valid == max_valid)
                || (!ok && invalid == PAGE_ITEMS));
        if full {
            pages.push(start..i);
            (start, bytes, valid, invalid) = (i, 0, 0, 0);
        }
        bytes += size;
        if ok {
            valid += 1;
        } else {
            invalid += 1;
        }
    }
    if start < items.len() {
        pages.push(start..items.len());
    }
    pages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_hold_at_most_a_chunk_of_valid_items_and_keep_invalid_ones_in_place() {
        let mut items = vec![(100, true); 600];
        items[3] = (100, false);
        let pages = paginate(&items, 250);
        assert_eq!(pages, [0..251, 251..501, 501..600]);
    }

    #[test]
    fn pages_stay_under_the_byte_limit_unless_one_item_is_larger() {
        let big = PAGE_BYTES / 2 + 1;
        let items = [(big, true), (big, true), (PAGE_BYTES + 5, true), (10, true)];
        assert_eq!(paginate(&items, 250), [0..1, 1..2, 2..3, 3..4]);
    }

    #[test]
    fn a_page_of_invalid_items_is_still_a_small_unit_of_work() {
        let items = vec![(10, false); 1000];
        let pages = paginate(&items, 250);
        assert_eq!(pages.len(), 4);
        assert!(pages.iter().all(|p| p.len() == 250));
    }

    #[test]
    fn the_same_body_is_the_same_post_and_another_is_not() {
        let b = BatchId::parse("nightly").unwrap();
        assert_eq!(PostId::of(&b, b"{}"), PostId::of(&b, b"{}"));
        assert_ne!(PostId::of(&b, b"{}"), PostId::of(&b, b"{ }"));
        let other = BatchId::parse("other").unwrap();
        assert_ne!(PostId::of(&b, b"{}"), PostId::of(&other, b"{}"));
        let p = PostId::of(&b, b"{}");
        assert_eq!(PostId::parse(p.as_str()), Some(p));
        assert_eq!(PostId::parse("ABC"), None);
    }

    #[test]
    fn derived_job_ids_are_stable_time_ordered_uuid_v7s_in_item_order() {
        let p = PostId::of(&BatchId::parse("b").unwrap(), b"x");
        let at = Timestamp(1_780_000_000_000);
        let ids: Vec<JobId> = (0..10_000).map(|i| p.job_id(at, i)).collect();
        assert_eq!(p.job_id(at, 7), ids[7]);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids sort by index");
        let u = uuid::Uuid::parse_str(ids[9_999].as_str()).unwrap();
        assert_eq!(u.get_version_num(), 7);
        assert_eq!(u.get_variant(), uuid::Variant::RFC4122);
        let later = p.job_id(Timestamp(at.0 + 1), 0);
        assert!(ids[9_999] < later, "a later post's ids sort after");
        assert_eq!(JobId::parse(ids[0].as_str()), Some(ids[0].clone()));
        assert_ne!(p.approval_id(0), p.approval_id(1));
    }
}
