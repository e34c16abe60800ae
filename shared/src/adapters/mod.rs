//! Adapters: the ports implemented on real infrastructure.

#[cfg(feature = "aws")]
mod aws_error;
#[cfg(feature = "aws")]
pub mod dynamodb;
#[cfg(feature = "aws")]
pub mod emf;
#[cfg(feature = "jira")]
pub mod jira;
#[cfg(all(feature = "aws", feature = "jira"))]
pub mod lambda_env;
#[cfg(all(feature = "aws", feature = "jira"))]
pub mod lambda_init;
#[cfg(all(feature = "aws", feature = "jira"))]
pub mod secrets_manager;
#[cfg(feature = "jira")]
pub mod slack;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(feature = "aws")]
pub mod sqs;
#[cfg(feature = "jira")]
pub mod webhook_notifier;
