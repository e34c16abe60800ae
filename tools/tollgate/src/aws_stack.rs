//! A deployed stack, for operator commands (`--stack NAME`): the table,
//! the queues, the Jira site and the retention, read from the
//! CloudFormation stack's outputs (`infra/template.yaml` names them), or
//! given one by one (`--table`, `--queue-url`, …). Credentials, region and
//! `AWS_ENDPOINT_URL` come from the SDK's usual chain.

use anyhow::Context;
use std::collections::HashMap;
use std::time::Duration;
use tollgate::adapters::dynamodb::DynamoStore;
use tollgate::adapters::sqs::SqsQueue;

/// Where a deployed stack keeps its state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StackTarget {
    pub table: String,
    pub queue_url: String,
    pub bulk_queue_url: String,
    /// The Jira site (the governor's row), when known.
    pub site: Option<String>,
    pub retention_days: Option<u64>,
    /// The functions, by their template name (`IngestFunction` → name).
    pub functions: HashMap<String, String>,
}

impl StackTarget {
    /// Reads the stack's outputs.
    pub async fn from_stack(config: &aws_config::SdkConfig, name: &str) -> anyhow::Result<Self> {
        let cfn = aws_sdk_cloudformation::Client::new(config);
        let described = cfn
            .describe_stacks()
            .stack_name(name)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot read stack {name:?}: {}", aws_message(&e)))?;
        let stack = described
            .stacks()
            .first()
            .with_context(|| format!("no stack named {name:?}"))?;
        let outputs: HashMap<String, String> = stack
            .outputs()
            .iter()
            .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
            .collect();
        Self::from_outputs(name, &outputs)
    }

    /// The target from a stack's outputs; names the first one missing.
    pub fn from_outputs(name: &str, outputs: &HashMap<String, String>) -> anyhow::Result<Self> {
        let get = |key: &str| {
            outputs.get(key).cloned().with_context(|| {
                format!("stack {name:?} has no output {key} (deployed from an older template? run sam deploy again)")
            })
        };
        let queue_url = get("WorkQueueUrl")?;
        Ok(StackTarget {
            table: get("TableName")?,
            bulk_queue_url: outputs
                .get("BulkQueueUrl")
                .cloned()
                .unwrap_or_else(|| queue_url.clone()),
            queue_url,
            site: outputs.get("JiraUrl").cloned(),
            retention_days: outputs.get("RetentionDays").and_then(|d| d.parse().ok()),
            functions: ["IngestFunction", "ApprovalFunction", "ExecutorFunction"]
                .iter()
                .filter_map(|f| Some((f.to_string(), outputs.get(&format!("{f}Name"))?.clone())))
                .collect(),
        })
    }

    /// The store and queue adapters over clients of one SDK config.
    pub fn adapters(&self, config: &aws_config::SdkConfig) -> (DynamoStore, SqsQueue) {
        let mut store = DynamoStore::new(aws_sdk_dynamodb::Client::new(config), &self.table);
        if let Some(days) = self.retention_days {
            store = store.with_retention(Duration::from_secs(days * 86_400));
        }
        let queue = SqsQueue::new(
            aws_sdk_sqs::Client::new(config),
            &self.queue_url,
            &self.bulk_queue_url,
        );
        (store, queue)
    }
}

/// The service's message, not the SDK's debug dump.
fn aws_message<E: std::error::Error + 'static>(e: &E) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out = format!("{out}: {s}");
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stack_without_its_table_output_is_named_with_what_to_do() {
        let outputs = HashMap::from([("WorkQueueUrl".to_string(), "q".to_string())]);
        let e = StackTarget::from_outputs("prod", &outputs).unwrap_err();
        assert!(e.to_string().contains("no output TableName"), "{e}");
    }

    #[test]
    fn the_bulk_queue_defaults_to_the_work_queue_and_functions_are_named() {
        let outputs = HashMap::from([
            ("TableName".to_string(), "t".to_string()),
            ("WorkQueueUrl".to_string(), "q".to_string()),
            (
                "ExecutorFunctionName".to_string(),
                "prod-Executor-1".to_string(),
            ),
            ("RetentionDays".to_string(), "30".to_string()),
        ]);
        let t = StackTarget::from_outputs("prod", &outputs).unwrap();
        assert_eq!(t.bulk_queue_url, "q");
        assert_eq!(t.retention_days, Some(30));
        assert_eq!(t.functions["ExecutorFunction"], "prod-Executor-1");
    }
}
