//! The tracker: Jira (and Confluence) as the executor calls it.

use super::*;

/// A Jira answer that worked, with the rate-limit signals it carried.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer<T> {
    pub value: T,
    pub status: u16,
    pub signal: RateLimitSignal,
}

impl<T> Answer<T> {
    /// The same answer (status, signals) carrying another value.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Answer<U> {
        Answer {
            value: f(self.value),
            status: self.status,
            signal: self.signal,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TrackerError {
    #[error("throttled (HTTP {status})")]
    Throttled {
        status: u16,
        signal: RateLimitSignal,
    },
    /// May have taken effect: a timeout after sending counts here.
    #[error("transient failure: {message}")]
    Transient {
        status: Option<u16>,
        message: String,
        signal: RateLimitSignal,
    },
    #[error("permanent failure: {message}")]
    Permanent { status: u16, message: String },
    /// Not sent: the governor holds the call back for `wait`.
    #[error("held by the governor for {wait:?}: {reason}")]
    Held { wait: Duration, reason: String },
}

impl TrackerError {
    /// Whether the call may have changed Jira although it failed: a lost
    /// connection or timeout, or a server error mid-request. A 429, a 503 or
    /// a 4xx is Jira saying it did nothing; a held call was never sent.
    pub fn may_have_taken_effect(&self) -> bool {
        match self {
            TrackerError::Throttled { .. }
            | TrackerError::Held { .. }
            | TrackerError::Permanent { .. } => false,
            TrackerError::Transient { status, .. } => {
                !matches!(status, Some(429 | 503 | 400..=499))
            }
        }
    }
}

pub type TrackerResult<T> = Result<Answer<T>, TrackerError>;

/// Jira takes at most this many issues per bulk create.
pub const MAX_BULK_CREATE: usize = 50;

/// One issue of a bulk create: its fields and the properties set with it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewIssueRequest {
    pub fields: Map<String, Value>,
    pub properties: Vec<(String, Value)>,
}

/// Why one element of a bulk create was refused (the others may have
/// been created).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementError {
    pub status: u16,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionDone {
    Moved,
    /// The issue already had the wanted status.
    AlreadyThere,
}

/// The issue tracker (Jira Cloud).
pub trait Tracker: Send + Sync {
    /// Creates an issue; `properties` are set in the same call.
    fn create_issue(
        &self,
        fields: &Map<String, Value>,
        properties: &[(String, Value)],
    ) -> impl Future<Output = TrackerResult<IssueKey>> + Send;

    /// Creates several issues in one call (Jira's bulk create, at most
    /// [`MAX_BULK_CREATE`] a call). Each element succeeds or fails on its own:
    /// the answer says which, in the order given.
    fn create_issues(
        &self,
        issues: &[NewIssueRequest],
    ) -> impl Future<Output = TrackerResult<Vec<Result<IssueKey, ElementError>>>> + Send;

    fn edit_issue(
        &self,
        key: &IssueKey,
        fields: &Map<String, Value>,
        add_labels: &[String],
    ) -> impl Future<Output = TrackerResult<()>> + Send;

    /// Posts a comment carrying `marker` as a comment property, so that
    /// [`Tracker::has_comment`] can tell whether a lost answer took effect.
    fn add_comment(
        &self,
        key: &IssueKey,
        text: &str,
        marker: &str,
    ) -> impl Future<Output = TrackerResult<()>> + Send;

    /// Whether a comment carrying `marker` exists, looking through every
    /// comment created since `since` (a minute's slack for clock skew),
    /// however many there are.
    fn has_comment(
        &self,
        key: &IssueKey,
        marker: &str,
        since: Timestamp,
    ) -> impl Future<Output = TrackerResult<bool>> + Send;

    /// Moves the issue through the transition named `name` (or to the status
    /// of that name).
    fn transition(
        &self,
        key: &IssueKey,
        name: &str,
    ) -> impl Future<Output = TrackerResult<TransitionDone>> + Send;

    /// Issues carrying `label` (JQL search), oldest first.
    fn find_by_label(
        &self,
        label: &str,
    ) -> impl Future<Output = TrackerResult<Vec<IssueKey>>> + Send;

    /// Creates a Confluence page (`body` in storage format) carrying
    /// `marker` in the same call (an invisible anchor); its id.
    fn create_page(
        &self,
        space: &SpaceId,
        title: &str,
        body: &str,
        parent: Option<&PageId>,
        marker: &str,
    ) -> impl Future<Output = TrackerResult<PageId>> + Send;

    /// The page titled `title` in the space *that carries `marker`*: a page
    /// of that title without it is someone else's.
    fn find_page(
        &self,
        space: &SpaceId,
        title: &str,
        marker: &str,
    ) -> impl Future<Output = TrackerResult<Option<PageId>>> + Send;

    /// Adds a footer comment (`body` in storage format) carrying `marker`.
    fn add_page_comment(
        &self,
        page: &PageId,
        body: &str,
        marker: &str,
    ) -> impl Future<Output = TrackerResult<()>> + Send;

    /// Whether the page has a footer comment carrying `marker`, looking
    /// through all of them.
    fn has_page_comment(
        &self,
        page: &PageId,
        marker: &str,
    ) -> impl Future<Output = TrackerResult<bool>> + Send;
}
