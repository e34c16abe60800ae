//! The `tollgate` command's pieces, as a library so the demo and the
//! benchmark run the very stack that `serve` runs.

pub mod access_log;
pub mod aws_stack;
pub mod bench;
pub mod config;
pub mod console_routes;
pub mod demo;
pub mod http;
pub mod load;
pub mod metrics;
pub mod operator_routes;
pub mod signing;
pub mod stack;
pub mod telemetry;
pub mod worker;
