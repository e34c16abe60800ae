//! The SAM template and the code agree: `infra/template.yaml` is translated
//! (aws-sam-translator) and deployed into a local emulator's CloudFormation
//! (moto) by `infra/deploy_to_emulator.py`; then the three functions'
//! handlers run against the table, queues and secret *that stack created*,
//! configured from the environment the template gives each function. And
//! each function's role grants exactly the actions listed beside its code.

#[path = "../shared/tests/support/moto.rs"]
mod moto;

use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use tollgate::adapters::dynamodb::DynamoStore;
use tollgate::adapters::jira::JiraClient;
use tollgate::adapters::lambda_env::LambdaSettings;
use tollgate::adapters::secrets_manager::SecretBundle;
use tollgate::adapters::sqs::SqsQueue;
use tollgate::app::approvals::{Approvals, Links};
use tollgate::app::execute::{Executor, ExecutorConfig};
use tollgate::app::governor::{Governor, GovernorConfig};
use tollgate::app::ingest::Ingest;
use tollgate::domain::approval::Decision;
use tollgate::domain::ids::JobId;
use tollgate::domain::signature;
use tollgate::ports::{ApprovalStore, JobStore, SystemClock};
use tollgate_executor::Budget;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

/// Deploys the template into the emulator; the script's JSON report.
fn deploy(stack: &str, jira_url: &str, approvers: &str) -> Value {
    let python = std::env::var("TOLLGATE_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .arg(repo_root().join("infra/deploy_to_emulator.py"))
        .args(["--endpoint", moto::endpoint(), "--stack", stack])
        .args(["--jira-url", jira_url, "--approvers", approvers])
        .output()
        .expect("run infra/deploy_to_emulator.py");
    assert!(
        out.status.success(),
        "deploying the template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the deploy report is JSON")
}

fn settings(report: &Value, function: &str) -> LambdaSettings {
    let env: HashMap<String, String> =
        serde_json::from_value(report["functions"][function]["environment"].clone()).unwrap();
    LambdaSettings::from_env(|k| env.get(k).cloned())
        .unwrap_or_else(|e| panic!("{function}'s environment from the template: {e}"))
}

fn resource<'a>(report: &'a Value, name: &str) -> &'a Value {
    &report["template"]["Resources"][name]
}

/// The actions a function's role grants, and whether any is a wildcard.
fn granted(report: &Value, function: &str) -> BTreeSet<String> {
    let role = report["functions"][function]["role"]["Fn::GetAtt"][0]
        .as_str()
        .unwrap_or_else(|| panic!("{function} has no role of the template's own"));
    let mut actions = BTreeSet::new();
    for policy in resource(report, role)["Properties"]["Policies"]
        .as_array()
        .unwrap()
    {
        for statement in policy["PolicyDocument"]["Statement"].as_array().unwrap() {
            let list = match &statement["Action"] {
                Value::String(a) => vec![a.clone()],
                Value::Array(a) => a.iter().map(|v| v.as_str().unwrap().to_string()).collect(),
                other => panic!("unexpected Action {other}"),
            };
            actions.extend(list);
        }
    }
    actions
}

fn listed(dir: &str) -> BTreeSet<String> {
    std::fs::read_to_string(
        repo_root()
            .join("functions")
            .join(dir)
            .join("iam-actions.txt"),
    )
    .unwrap()
    .lines()
    .map(str::trim)
    .filter(|l| !l.is_empty() && !l.starts_with('#'))
    .map(String::from)
    .collect()
}

#[test]
fn each_role_grants_exactly_the_actions_its_function_calls_and_no_wildcard() {
    let report = deploy(&moto::unique("iam"), "https://example.atlassian.net", "");
    for (function, dir) in [
        ("IngestFunction", "ingest"),
        ("ApprovalFunction", "approval"),
        ("ExecutorFunction", "executor"),
    ] {
        let actions = granted(&report, function);
        assert!(
            actions.iter().all(|a| !a.contains('*')),
            "{function}: a wildcard action in {actions:?}"
        );
        assert_eq!(
            actions,
            listed(dir),
            "{function} vs functions/{dir}/iam-actions.txt"
        );
        let f = &report["functions"][function];
        assert_eq!(f["runtime"], "provided.al2023");
        assert_eq!(f["architectures"], json!(["arm64"]));
        assert_eq!(f["handler"], "bootstrap");
    }
    // No policy anywhere in the template grants "*".
    let text = report["template"].to_string();
    assert!(
        !text.contains("\"Action\":\"*\""),
        "a wildcard action somewhere"
    );
}

#[test]
fn the_queues_and_event_sources_are_set_as_the_executor_needs() {
    let report = deploy(&moto::unique("queues"), "https://example.atlassian.net", "");
    let executor_timeout = report["functions"]["ExecutorFunction"]["timeout"]
        .as_u64()
        .unwrap();
    for queue in ["WorkQueue", "BulkQueue"] {
        let p = &resource(&report, queue)["Properties"];
        assert!(
            p["VisibilityTimeout"].as_u64().unwrap() >= 6 * executor_timeout,
            "{queue}: visibility at least six times the executor timeout"
        );
        assert_eq!(
            p["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0],
            "DeadLetterQueue"
        );
    }
    let mappings: Vec<&Value> = report["template"]["Resources"]
        .as_object()
        .unwrap()
        .values()
        .filter(|r| r["Type"] == "AWS::Lambda::EventSourceMapping")
        .collect();
    assert_eq!(mappings.len(), 2, "interactive and bulk");
    // The pace adds up: the instances the two event sources may run are
    // the ones the executor divides the site's pace among.
    let mut concurrency: Vec<Value> = mappings
        .iter()
        .map(|m| m["Properties"]["ScalingConfig"]["MaximumConcurrency"].clone())
        .collect();
    concurrency.sort_by_key(|v| v.to_string());
    let env = &resource(&report, "ExecutorFunction")["Properties"]["Environment"]["Variables"];
    let mut shares = vec![
        env["TOLLGATE_BULK_CONCURRENCY"].clone(),
        env["TOLLGATE_MAX_CONCURRENCY"].clone(),
    ];
    shares.sort_by_key(|v| v.to_string());
    assert_eq!(
        concurrency, shares,
        "every executor instance counts in the share"
    );
    for m in mappings {
        let p = &m["Properties"];
        assert_eq!(
            p["FunctionResponseTypes"],
            json!(["ReportBatchItemFailures"])
        );
        assert!(p["BatchSize"].as_u64().unwrap() <= 10);
        assert!(
            p["ScalingConfig"]["MaximumConcurrency"].is_object()
                || p["ScalingConfig"]["MaximumConcurrency"].is_number()
        );
    }
    let table = &resource(&report, "Table")["Properties"];
    assert_eq!(table["TimeToLiveSpecification"]["AttributeName"], "ttl");
    assert_eq!(
        table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        true
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_functions_run_against_the_resources_the_stack_created() {
    let (addr, sim, _) = jira_sim::spawn(Default::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let jira_url = format!("http://{addr}");
    let report = deploy(&moto::unique("stack"), &jira_url, "lead@example.com");
    let ingest_settings = settings(&report, "IngestFunction");
    let approval_settings = settings(&report, "ApprovalFunction");
    let executor_settings = settings(&report, "ExecutorFunction");
    assert_eq!(ingest_settings.table, report["outputs"]["TableName"]);
    assert_eq!(
        executor_settings.jira_url.as_deref(),
        Some(jira_url.as_str())
    );
    // The pace adds up: every executor instance takes its share of the
    // site's pace from both queues' concurrency, as deployed.
    assert!(
        executor_settings.bulk_concurrency > 0,
        "the bulk queue's instances count"
    );
    assert_eq!(
        executor_settings.executor_instances(),
        executor_settings.max_concurrency + executor_settings.bulk_concurrency
    );
    assert!(
        executor_settings.dead_letter_url.is_some(),
        "the sweep checks the DLQ"
    );

    // The operator's step after deploying: Jira credentials into the secret
    // the stack made (it generated the webhook secret already).
    let config = moto::sdk_config().await;
    let secrets_client = aws_sdk_secretsmanager::Client::new(&config);
    let secret_id = ingest_settings.secret_id.clone().unwrap();
    let current: Value = serde_json::from_str(
        secrets_client
            .get_secret_value()
            .secret_id(&secret_id)
            .send()
            .await
            .unwrap()
            .secret_string()
            .unwrap(),
    )
    .unwrap();
    let mut doc = current.clone();
    doc["jiraEmail"] = json!("sim@example.com");
    doc["jiraApiToken"] = json!("sim-token");
    doc["operatorTokens"] = json!(["ops-token"]);
    secrets_client
        .put_secret_value()
        .secret_id(&secret_id)
        .secret_string(doc.to_string())
        .send()
        .await
        .unwrap();
    let secrets = SecretBundle::fetch(&secrets_client, &secret_id)
        .await
        .unwrap();
    assert_eq!(secrets.webhook_secrets.len(), 1, "generated at deploy");

    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&config),
        &ingest_settings.table,
    );
    let queue = SqsQueue::new(
        aws_sdk_sqs::Client::new(&config),
        &ingest_settings.queue_url,
        &ingest_settings.bulk_queue_url,
    );
    let link_keys = secrets.link_keys();
    let approvals = Approvals {
        store: &store,
        queue: &queue,
        clock: &SystemClock,
        links: Links {
            keys: &link_keys,
            base_url: &approval_settings.public_url,
        },
    };
    let no_sources = Default::default();
    let no_secrets = Default::default();
    let app = tollgate_ingest::App {
        sources: &no_sources,
        source_secrets: &no_secrets,
        ingest: Ingest {
            store: &store,
            queue: &queue,
            clock: &SystemClock,
            secrets: &secrets.webhook_secrets,
            policy: &ingest_settings.policy,
        },
        approvals: Approvals {
            store: &store,
            queue: &queue,
            clock: &SystemClock,
            links: Links {
                keys: &link_keys,
                base_url: &ingest_settings.public_url,
            },
        },
        notifier: &tollgate_e2e::Delivered,
    };
    let post = |event: Value| {
        let body = event.to_string();
        let sig = signature::sign(
            &secrets.webhook_secrets[0],
            tollgate_e2e::signing_time(body.as_bytes()),
            body.as_bytes(),
        );
        let request = json!({
            "version": "2.0", "routeKey": "$default", "rawPath": "/v1/events", "rawQueryString": "",
            "headers": {"content-type": "application/json", "tollgate-signature": sig},
            "requestContext": {"accountId": "123456789012", "apiId": "localapi", "domainName": "localapi.example",
                "domainPrefix": "localapi", "http": {"method": "POST", "path": "/v1/events", "protocol": "HTTP/1.1",
                "sourceIp": "192.0.2.1", "userAgent": "test"}, "requestId": "r", "routeKey": "$default",
                "stage": "$default", "time": "24/Nov/2026:10:00:00 +0000", "timeEpoch": 1_795_000_000_000u64},
            "body": body, "isBase64Encoded": false
        });
        lambda_http::request::from_str(&request.to_string()).unwrap()
    };
    let created = tollgate_ingest::handle(
        &app,
        post(
            json!({"sourceSystem": "itsm", "externalId": "CHG-1", "desiredOperation": "create",
                    "projectKey": "OPS", "issueType": "Task", "summary": "Rotate certificates"}),
        ),
        None,
    )
    .await;
    assert_eq!(created.status(), 202);
    let gated = tollgate_ingest::handle(
        &app,
        post(
            json!({"sourceSystem": "itsm", "externalId": "CHG-1", "desiredOperation": "transition",
                    "transition": "Done"}),
        ),
        None,
    )
    .await;
    assert_eq!(gated.status(), 202);
    let gated: Value = serde_json::from_slice(gated.body().as_ref()).unwrap();
    assert_eq!(
        gated["state"], "PENDING_APPROVAL",
        "the template's Approvers parameter gates transitions"
    );
    let gated_id = JobId::parse(gated["jobId"].as_str().unwrap()).unwrap();

    // The approval function approves it through a signed link.
    let approval = store.approval_for_job(&gated_id).await.unwrap().unwrap();
    let token = approvals
        .links
        .token(&approval, "lead@example.com", Decision::Approve)
        .unwrap();
    let decide = json!({
        "version": "2.0", "routeKey": "$default", "rawPath": format!("/v1/approvals/{token}"), "rawQueryString": "",
        "headers": {}, "requestContext": {"accountId": "123456789012", "apiId": "localapi",
            "domainName": "localapi.example", "domainPrefix": "localapi",
            "http": {"method": "POST", "path": format!("/v1/approvals/{token}"), "protocol": "HTTP/1.1",
                     "sourceIp": "192.0.2.1", "userAgent": "test"},
            "requestId": "r2", "routeKey": "$default", "stage": "$default",
            "time": "24/Nov/2026:10:00:00 +0000", "timeEpoch": 1_795_000_000_000u64},
        "isBase64Encoded": false
    });
    let approval_site = approval_settings.jira_url.clone().unwrap_or_default();
    let approval_fn = tollgate_approval::App {
        store: &store,
        queue: &queue,
        clock: &SystemClock,
        link_keys: &link_keys,
        public_url: &approval_settings.public_url,
        notifier: &tollgate_e2e::Delivered,
        policy: &approval_settings.policy,
        sources: &approval_settings.sources,
        operator_tokens: &secrets.operator_tokens,
        site: &approval_site,
    };
    let decided = tollgate_approval::handle(
        &approval_fn,
        lambda_http::request::from_str(&decide.to_string()).unwrap(),
    )
    .await;
    assert_eq!(decided.status(), 200);

    // The console on the approval function, with the token the operator
    // put in the stack's secret, counts what the stack's table holds.
    let console = |method: &str, path: &str, cookie: &str, body: &str| {
        let event = json!({
            "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
            "headers": {"content-type": "application/x-www-form-urlencoded",
                        "x-forwarded-proto": "https"},
            "cookies": if cookie.is_empty() { vec![] } else { vec![cookie] },
            "requestContext": {"accountId": "123456789012", "apiId": "localapi",
                "domainName": "localapi.example", "domainPrefix": "localapi",
                "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                         "sourceIp": "192.0.2.1", "userAgent": "test"},
                "requestId": "r3", "routeKey": "$default", "stage": "$default",
                "time": "24/Nov/2026:10:00:00 +0000", "timeEpoch": 1_795_000_000_000u64},
            "body": body, "isBase64Encoded": false
        });
        lambda_http::request::from_str(&event.to_string()).unwrap()
    };
    let signed_in = tollgate_approval::handle(
        &approval_fn,
        console("POST", "/ui/sign-in", "", "operator=ops&token=ops-token"),
    )
    .await;
    assert_eq!(
        signed_in.status(),
        303,
        "the secret's operator token signs in"
    );
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let overview =
        tollgate_approval::handle(&approval_fn, console("GET", "/ui", &cookie, "")).await;
    assert_eq!(overview.status(), 200);
    let html = String::from_utf8_lossy(overview.body().as_ref()).into_owned();
    assert!(
        html.contains("data-state=\"QUEUED\">2<"),
        "the created job and the approved one wait for the executor, counted from the stack's table: {html}"
    );

    // The executor drains the stack's work queue, as its event source would.
    let tracker = JiraClient::new(
        executor_settings.jira_url.as_deref().unwrap(),
        secrets.jira.clone().unwrap(),
        Duration::from_secs(5),
    )
    .unwrap();
    let governor = Governor::new(
        &store,
        &SystemClock,
        GovernorConfig::new(jira_url.clone(), executor_settings.executor_instances()),
    );
    let exec_config = ExecutorConfig::default();
    let executor = Executor {
        store: &store,
        tracker: &tracker,
        clock: &SystemClock,
        config: &exec_config,
        governor: &governor,
        deadline: None,
    };
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queue_arn = format!(
        "arn:aws:sqs:us-east-1:123456789012:{}",
        executor_settings.queue_url.rsplit('/').next().unwrap()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = sqs
            .receive_message()
            .queue_url(&executor_settings.queue_url)
            .max_number_of_messages(5)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        let messages = out.messages.unwrap_or_default();
        if !messages.is_empty() {
            let records: Vec<Value> = messages
                .iter()
                .map(|m| json!({"messageId": m.message_id(), "receiptHandle": m.receipt_handle(),
                                "body": m.body(), "attributes": {}, "messageAttributes": {},
                                "eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": "us-east-1"}))
                .collect();
            let event: SqsEvent = serde_json::from_value(json!({"Records": records})).unwrap();
            let budget = Budget {
                deadline: None,
                per_record: Duration::from_secs(10),
            };
            let ingest = Ingest {
                store: &store,
                queue: &queue,
                clock: &SystemClock,
                secrets: &[],
                policy: &executor_settings.policy,
            };
            let response = tollgate_executor::handle(
                &executor,
                &ingest,
                &queue,
                &event,
                &budget,
                &Default::default(),
            )
            .await;
            for m in &messages {
                let failed = response
                    .batch_item_failures
                    .iter()
                    .any(|f| Some(f.item_identifier.as_str()) == m.message_id());
                if !failed {
                    sqs.delete_message()
                        .queue_url(&executor_settings.queue_url)
                        .receipt_handle(m.receipt_handle().unwrap())
                        .send()
                        .await
                        .unwrap();
                }
            }
        }
        let job = store.job(&gated_id).await.unwrap().unwrap();
        if job.state.is_terminal() {
            assert_eq!(job.state.as_str(), "SUCCEEDED", "{:?}", job.last_error);
            break;
        }
        assert!(Instant::now() < deadline, "jobs did not finish: {job:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let totals = &sim.report()["totals"];
    assert_eq!(totals["issues"], 1);
    assert_eq!(totals["transitions"], 1);
    // The stack's indexes are the ones the adapter queries.
    assert!(
        !store.list(None, 10).await.unwrap().is_empty(),
        "gsi1 answers"
    );
    assert!(
        store
            .unenqueued(tollgate::domain::time::Timestamp(i64::MAX / 2), 10)
            .await
            .unwrap()
            .is_empty(),
        "gsi2 answers"
    );
}

/// The built `tollgate` binary against the emulator, with `--stack`.
fn tollgate_on_stack(stack: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(tollgate_e2e::bin("tollgate"))
        .args(["--stack", stack])
        .args(args)
        .env("AWS_ENDPOINT_URL", moto::endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("TOLLGATE_DB")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_work_on_a_deployed_stack_through_its_outputs() {
    use tollgate::app::ingest::IngestOutcome;
    use tollgate::domain::job::JobState;
    use tollgate::domain::secret::Secret;
    use tollgate::ports::{Clock, GovernorStore};
    let site = "https://ops-test.atlassian.net";
    let stack = moto::unique("ops");
    let report = deploy(&stack, site, "lead@example.com");
    let settings = settings(&report, "IngestFunction");
    let config = moto::sdk_config().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), &settings.table);
    let queue = SqsQueue::new(
        aws_sdk_sqs::Client::new(&config),
        &settings.queue_url,
        &settings.bulk_queue_url,
    );
    let secret = [Secret::new("s")];
    let ingest = Ingest {
        store: &store,
        queue: &queue,
        clock: &SystemClock,
        secrets: &secret,
        policy: &settings.policy,
    };
    let send = |event: Value| {
        let body = event.to_string();
        let sig = signature::sign(
            &secret[0],
            tollgate_e2e::signing_time(body.as_bytes()),
            body.as_bytes(),
        );
        (body, sig)
    };
    let admit = async |event: Value| {
        let (body, sig) = send(event);
        ingest.handle(body.as_bytes(), Some(&sig)).await.unwrap()
    };
    // A job that failed, one that waits for a person, and a rejection.
    let IngestOutcome::Accepted { job_id: failed, .. } = admit(json!({"sourceSystem": "itsm",
        "externalId": "CHG-7", "desiredOperation": "create", "projectKey": "NOPE",
        "issueType": "Task", "summary": "no such project"}))
    .await
    else {
        panic!("create accepted")
    };
    let mut job = store.job(&failed).await.unwrap().unwrap();
    job.state = JobState::Failed;
    job.last_error = Some("Jira refused: project NOPE does not exist".into());
    assert!(store.update(&job, JobState::Queued, None).await.unwrap());
    let IngestOutcome::Accepted {
        job_id: gated,
        state,
        ..
    } = admit(json!({"sourceSystem": "itsm",
        "externalId": "CHG-8", "desiredOperation": "transition", "issueKey": "OPS-1",
        "transition": "Done"}))
    .await
    else {
        panic!("transition accepted")
    };
    assert_eq!(state, JobState::PendingApproval);
    let IngestOutcome::Invalid { rejection, .. } = admit(json!({"sourceSystem": "itsm",
        "externalId": "CHG-9", "desiredOperation": "create", "issueType": "Task",
        "summary": "no project"}))
    .await
    else {
        panic!("refused as invalid")
    };
    // The site went into degraded mode.
    let (mut g, version) = store.load_governor(site).await.unwrap();
    let rules = Default::default();
    for i in 0..10 {
        g.health.on_failure(
            tollgate::domain::time::Timestamp(SystemClock.now().0 + i),
            &rules,
        );
    }
    assert!(g.health.is_degraded());
    assert!(store.save_governor(site, &g, version).await.unwrap());

    let (ok, listed) = tollgate_on_stack(&stack, &["jobs", "list"]);
    assert!(ok, "{listed}");
    assert!(
        listed.contains(&failed.to_string()) && listed.contains("FAILED"),
        "{listed}"
    );
    assert!(listed.contains("PENDING_APPROVAL"), "{listed}");

    let (ok, out) = tollgate_on_stack(
        &stack,
        &["jobs", "retry", &failed.to_string(), "--as", "ops"],
    );
    assert!(ok, "{out}");
    assert_eq!(
        store.job(&failed).await.unwrap().unwrap().state,
        JobState::Queued
    );

    let approval = store.approval_for_job(&gated).await.unwrap().unwrap();
    let (ok, shown) = tollgate_on_stack(&stack, &["approvals", "show", approval.id.as_str()]);
    assert!(ok, "{shown}");
    assert!(
        shown.contains("transition") && shown.contains(&gated.to_string()),
        "{shown}"
    );
    let (ok, out) = tollgate_on_stack(&stack, &["approve", approval.id.as_str(), "--as", "ops"]);
    assert!(ok, "{out}");
    assert_eq!(
        store.job(&gated).await.unwrap().unwrap().state,
        JobState::Queued
    );

    let fixed = std::env::temp_dir().join(format!("{stack}-fixed.json"));
    std::fs::write(
        &fixed,
        json!({"sourceSystem": "itsm", "externalId": "CHG-9", "desiredOperation": "create",
               "projectKey": "OPS", "issueType": "Task", "summary": "no project"})
        .to_string(),
    )
    .unwrap();
    let (ok, out) = tollgate_on_stack(
        &stack,
        &[
            "rejected",
            "resubmit",
            rejection.as_str(),
            "--file",
            fixed.to_str().unwrap(),
        ],
    );
    assert!(ok && out.contains("re-submitted: job"), "{out}");

    let (ok, sites) = tollgate_on_stack(&stack, &["sites"]);
    assert!(ok && sites.contains("DEGRADED"), "{sites}");
    let (ok, out) = tollgate_on_stack(&stack, &["sites", "clear", site, "--as", "ops"]);
    assert!(ok, "{out}");
    assert!(
        !store
            .load_governor(site)
            .await
            .unwrap()
            .0
            .health
            .is_degraded()
    );

    let (ok, stats) = tollgate_on_stack(&stack, &["stats", "--output", "json"]);
    assert!(ok && stats.contains("\"requests\""), "{stats}");
    let (ok, missing) = tollgate_on_stack("no-such-stack", &["jobs", "list"]);
    assert!(!ok && missing.contains("no-such-stack"), "{missing}");
}
