//! tollgate: governed, rate-limit-aware execution of event-driven work
//! against Jira Cloud.
//!
//! Hexagonal layout: [`domain`] is pure (no I/O, no async), [`ports`] are the
//! small traits the use cases in [`app`] are written against, and
//! [`adapters`] implement those ports on real infrastructure.

pub mod adapters;
pub mod app;
pub mod domain;
pub mod ports;
