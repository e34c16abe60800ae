//! Telling people what needs them.

use super::*;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("notification failed: {0}")]
pub struct NotifyError(pub String);

/// Tells people what needs them (Slack, a webhook): approval requests,
/// exhausted work.
pub trait Notifier: Send + Sync {
    fn notify(&self, notice: &Notice) -> impl Future<Output = Result<(), NotifyError>> + Send;

    /// Whether notices go anywhere. Approval requests are marked sent only
    /// through a notifier that is: those that waited while none was
    /// configured are sent once one is.
    fn configured(&self) -> bool {
        true
    }
}

/// No channel configured: approvers find requests with `tollgate approvals
/// list`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoNotifier;

impl Notifier for NoNotifier {
    async fn notify(&self, _: &Notice) -> Result<(), NotifyError> {
        Ok(())
    }

    fn configured(&self) -> bool {
        false
    }
}
