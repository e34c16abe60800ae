//! The pure core: data and rules, no I/O, no async, no AWS or HTTP types.

pub mod adf;
pub mod approval;
pub mod audit;
pub mod backoff;
pub mod batch;
pub mod canonical;
pub mod coalesce;
pub mod degraded;
pub mod event;
pub mod followup;
pub mod governor;
pub mod idempotency;
pub mod ids;
pub mod job;
pub mod limits;
pub mod notice;
pub mod plan;
pub mod policy;
pub mod ratelimit;
pub mod rejection;
pub mod response;
pub mod secret;
pub mod signature;
pub mod time;
pub mod transition;
pub mod validation;
