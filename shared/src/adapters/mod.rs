//! Adapters: the ports implemented on real infrastructure.

#[cfg(feature = "jira")]
pub mod jira;
#[cfg(feature = "sqlite")]
pub mod sqlite;
