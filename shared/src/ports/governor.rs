//! The governor's shared state, one row per site.

use super::*;

/// The governor's shared state, one row per Jira site, written with
/// optimistic concurrency (a version compared on write).
pub trait GovernorStore: Send + Sync {
    /// The site's state and its version (0 and the default when absent).
    fn load_governor(
        &self,
        site: &str,
    ) -> impl Future<Output = Result<(crate::domain::governor::SiteGovernor, u64), StoreError>> + Send;

    /// Writes the state if the stored version is still `expected`.
    fn save_governor(
        &self,
        site: &str,
        state: &crate::domain::governor::SiteGovernor,
        expected: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}
