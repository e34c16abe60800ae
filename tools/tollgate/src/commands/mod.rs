//! One module per command, as cargo's `commands/` lays them out. Each takes
//! its arguments and the [`Global`] options and only translates: the work
//! is done by the shared use cases over the same ports `serve` uses.

pub mod approvals;
pub mod backend;
pub mod batches;
pub mod bench;
pub mod completions;
pub mod demo;
pub mod jobs;
pub mod load;
pub mod policy;
pub mod rejected;
pub mod serve;
pub mod sim;
pub mod sites;
pub mod sources;
pub mod stats;

use anyhow::Context;
use std::path::{Path, PathBuf};
use tollgate::adapters::sqlite::SqliteDb;
use tollgate_cli::config::{self, FileConfig};
use tollgate_cli::telemetry::LogFormat;

/// How read commands print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// JSON, as the HTTP API answers.
    Json,
}

/// Options every command takes, before or after its name.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// The SQLite database [default: tollgate.toml's `db`, else ./tollgate.db].
    #[arg(long, global = true, env = "TOLLGATE_DB")]
    pub db: Option<PathBuf>,
    /// The config file [default: ./tollgate.toml when present].
    #[arg(long, global = true, env = "TOLLGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// How read commands print.
    #[arg(long, global = true, value_enum, default_value = "table")]
    pub output: Output,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Act on a deployed stack (its CloudFormation outputs name the table
    /// and queues) instead of a SQLite file.
    #[arg(long, global = true, env = "TOLLGATE_STACK")]
    pub stack: Option<String>,
    /// A deployed stack's DynamoDB table, given directly (with --queue-url).
    #[arg(long, global = true)]
    pub table: Option<String>,
    /// A deployed stack's work queue URL.
    #[arg(long, global = true)]
    pub queue_url: Option<String>,
    /// A deployed stack's bulk queue URL [default: the work queue].
    #[arg(long, global = true)]
    pub bulk_queue_url: Option<String>,
    /// The Jira site whose governor row `sites` reads on a stack.
    #[arg(long, global = true)]
    pub site: Option<String>,
}

impl Global {
    /// The database path: `--db` (or TOLLGATE_DB), then tollgate.toml's
    /// `db`, then the default.
    pub fn db_path(&self) -> anyhow::Result<PathBuf> {
        if let Some(db) = &self.db {
            return Ok(db.clone());
        }
        let file = FileConfig::load(self.config.as_deref())?;
        Ok(file.db.unwrap_or_else(|| PathBuf::from(config::DEFAULT_DB)))
    }

    /// Opens an existing database for a command that only reads: read-only,
    /// and refused when it is not tollgate's.
    pub fn read_db(&self) -> anyhow::Result<SqliteDb> {
        let path = self.db_path()?;
        ensure_exists(&path)?;
        SqliteDb::open_read_only(&path)
            .with_context(|| format!("cannot read database {}", path.display()))
    }

    /// Opens an existing database for a command that changes it.
    pub fn write_db(&self) -> anyhow::Result<SqliteDb> {
        let path = self.db_path()?;
        ensure_exists(&path)?;
        SqliteDb::open(&path).with_context(|| format!("cannot open database {}", path.display()))
    }

    pub fn json(&self) -> bool {
        self.output == Output::Json
    }
}

fn ensure_exists(path: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        path.exists(),
        "no database at {} (pass --db, set TOLLGATE_DB, or `db` in tollgate.toml)",
        path.display()
    );
    Ok(())
}

/// Prints a JSON value for `--output json`.
pub fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// An operator's name for the audit trail: not empty, not tollgate's own.
pub fn operator_name(who: &str) -> anyhow::Result<&str> {
    let who = who.trim();
    anyhow::ensure!(
        !who.is_empty() && !who.starts_with("tollgate:"),
        "--as needs a name (not starting with \"tollgate:\")"
    );
    Ok(who)
}
