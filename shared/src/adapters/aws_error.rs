//! Errors of the AWS SDK calls, as the ports report them: a failed call is
//! a backend failure, described with the SDK's full context (which names
//! the service error, never a credential); a failed condition is an answer.

use crate::ports::StoreError;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};

pub(crate) fn backend<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StoreError::Backend(DisplayErrorContext(&e).to_string())
}

/// Whether a conditional call applied: `false` when its condition failed
/// (`condition_failed` recognises that error of the operation — a
/// DynamoDB condition, an SQS receipt that is no longer valid).
pub(crate) fn conditional<O, E, R>(
    r: Result<O, SdkError<E, R>>,
    condition_failed: impl Fn(&E) -> bool,
) -> Result<bool, StoreError>
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match r {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(&condition_failed) => Ok(false),
        Err(e) => Err(backend(e)),
    }
}
