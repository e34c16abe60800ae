//! Where an operator command acts: the SQLite file `serve` runs on, or a
//! deployed stack's DynamoDB table and SQS queues (`--stack NAME`, or
//! `--table` and `--queue-url`). Either way the command runs the same use
//! cases over the same ports — [`on_backend!`] hands it one or the other.

use super::Global;
use anyhow::Context;
use tollgate::adapters::dynamodb::DynamoStore;
use tollgate::adapters::sqlite::SqliteDb;
use tollgate::adapters::sqs::SqsQueue;
use tollgate::domain::governor::SiteGovernor;
use tollgate::ports::GovernorStore;
use tollgate_cli::aws_stack::StackTarget;

pub enum Backend {
    Sqlite(SqliteDb),
    Aws {
        store: Box<DynamoStore>,
        queue: Box<SqsQueue>,
        /// The Jira site's governor row, when the stack names it.
        site: Option<String>,
    },
}

/// Whether the command only reads (SQLite opens read-only then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Runs `$body` with `$store` and `$queue` bound to the backend's adapters.
macro_rules! on_backend {
    ($backend:expr, |$store:ident, $queue:ident| $body:expr) => {
        match $backend {
            $crate::commands::backend::Backend::Sqlite(db) => {
                let ($store, $queue) = (&db, &db);
                $body
            }
            $crate::commands::backend::Backend::Aws { store, queue, .. } => {
                let ($store, $queue) = (store.as_ref(), queue.as_ref());
                $body
            }
        }
    };
}
pub(crate) use on_backend;

impl Global {
    fn aws_target(&self) -> Option<(Option<&str>, Option<&str>)> {
        (self.stack.is_some() || self.table.is_some())
            .then_some((self.stack.as_deref(), self.table.as_deref()))
    }

    /// The backend the global options name: a stack when `--stack` or
    /// `--table` is given, else the SQLite database.
    pub async fn backend(&self, access: Access) -> anyhow::Result<Backend> {
        let Some((stack, table)) = self.aws_target() else {
            return Ok(Backend::Sqlite(match access {
                Access::Read => self.read_db()?,
                Access::Write => self.write_db()?,
            }));
        };
        let config = tollgate::adapters::lambda_env::sdk_config().await;
        let mut target = match stack {
            Some(name) => StackTarget::from_stack(&config, name).await?,
            None => StackTarget {
                table: table.unwrap_or_default().to_string(),
                queue_url: self
                    .queue_url
                    .clone()
                    .context("--table needs --queue-url (the work queue's URL)")?,
                ..StackTarget::default()
            },
        };
        if let Some(t) = table {
            target.table = t.to_string();
        }
        if let Some(q) = &self.queue_url {
            target.queue_url = q.clone();
        }
        if target.bulk_queue_url.is_empty() {
            target.bulk_queue_url = target.queue_url.clone();
        }
        if let Some(q) = &self.bulk_queue_url {
            target.bulk_queue_url = q.clone();
        }
        if let Some(s) = &self.site {
            target.site = Some(s.clone());
        }
        let (store, queue) = target.adapters(&config);
        Ok(Backend::Aws {
            store: Box::new(store),
            queue: Box::new(queue),
            site: target.site,
        })
    }
}

impl Backend {
    /// Every site's governor row: all of them on SQLite, the stack's site
    /// on AWS.
    pub async fn sites(&self) -> anyhow::Result<Vec<(String, SiteGovernor)>> {
        match self {
            Backend::Sqlite(db) => Ok(db.sites().await?),
            Backend::Aws { store, site, .. } => {
                let site = site.as_deref().context(
                    "the stack names no Jira site (output JiraUrl); give --site https://your-domain.atlassian.net",
                )?;
                let (g, version) = store.load_governor(site).await?;
                Ok(if version == 0 {
                    Vec::new()
                } else {
                    vec![(site.to_string(), g)]
                })
            }
        }
    }
}
