//! The nightly-sync profile: a CMDB sync of 10,000 events — new CIs
//! created (some updated again in the same night), existing issues updated
//! one to five times each, 5 % invalid — sent as batches through `serve`'s
//! pipeline, and through a one-call-per-event client in the same run.
//!
//! What is measured: calls and points per event, create calls per create
//! (bulk create), edit calls per updated issue (coalescing), duplicates, and
//! lost work — an issue whose final fields are not the newest values sent
//! for it counts as lost, so a reordered or dropped update is caught too.

use super::ideal::{Need, ideal_makespan};
use super::{RunResult, unix_now};
use indicatif::ProgressBar;
use jira_sim::limits::Limits;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;
use tollgate::adapters::jira::{JiraAuth, JiraClient};
use tollgate::domain::ids::IssueKey;
use tollgate::domain::secret::Secret;
use tollgate::domain::signature;
use tollgate::domain::validation::validate_event;
use tollgate::ports::{Tracker, TrackerError};

pub const EVENTS: usize = 10_000;
const NEW_CIS: usize = 3_000;
/// New CIs updated twice more in the same night.
const NEW_UPDATED: usize = 500;
const EXISTING: usize = 2_000;
const INVALID: usize = EVENTS / 20;
const BATCH_SIZE: usize = 1_000;
const VERSION_FIELD: &str = "customfield_10200";
const CI_FIELD: &str = "customfield_10201";

/// The figures only this profile has.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NightlyFigures {
    pub valid_events: usize,
    pub calls_per_event: f64,
    /// Create calls (single or bulk) per create event.
    pub create_calls_per_create: f64,
    /// Edit calls per issue that received updates.
    pub edit_calls_per_updated_issue: f64,
    /// Invalid items the client reported, by index; all of them must be.
    pub invalid_reported: usize,
    pub invalid_sent: usize,
}

/// One night's events, in sending order, and what Jira must hold after.
struct Night {
    events: Vec<Value>,
    invalid: Vec<usize>,
    /// Entity → (summary, version) its issue must end with.
    expected: BTreeMap<Entity, (String, u64)>,
    updated_issues: usize,
    creates: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Entity {
    New(String),
    Existing(String),
}

fn limits() -> Limits {
    Limits {
        quota_points: 1_500,
        window_seconds: 10.0,
        burst_get_post: 100.0,
        burst_put_delete: 50.0,
        per_issue: true,
        ..Limits::default()
    }
}

/// Issues the site held before the night: ASSET-1 … ASSET-2000.
fn seed(sim: &jira_sim::Sim) -> anyhow::Result<Vec<String>> {
    let fields: Vec<Value> = (0..EXISTING)
        .map(|j| {
            json!({"project": {"key": "ASSET"}, "issuetype": {"name": "Task"},
                   "summary": format!("CI old-{j} v0"), VERSION_FIELD: 0})
        })
        .collect();
    sim.seed_issues(&fields).map_err(|e| anyhow::anyhow!(e))
}

fn night(existing: &[String]) -> Night {
    let mut sequences: Vec<(Entity, VecDeque<Value>)> = Vec::new();
    let mut expected = BTreeMap::new();
    for i in 0..NEW_CIS {
        let id = format!("new-{i}");
        let mut seq = VecDeque::from([json!({
            "externalId": id, "desiredOperation": "create", "projectKey": "ASSET",
            "issueType": "Task", "summary": format!("CI {id} v0"),
            "fields": {VERSION_FIELD: 0, CI_FIELD: id}
        })]);
        let mut last = 0;
        if i < NEW_UPDATED {
            for v in 1..=2 {
                seq.push_back(json!({"externalId": id, "desiredOperation": "update",
                                     "summary": format!("CI {id} v{v}"), "fields": {VERSION_FIELD: v}}));
                last = v;
            }
        }
        expected.insert(Entity::New(id.clone()), (format!("CI {id} v{last}"), last));
        sequences.push((Entity::New(id), seq));
    }
    for (j, key) in existing.iter().enumerate() {
        let updates = match j {
            j if j < 500 => 1,
            j if j < 1000 => 2,
            j if j < 1500 => 3,
            _ => 5,
        };
        let id = format!("old-{j}");
        let mut seq = VecDeque::new();
        let mut summary = format!("CI {id} v0");
        for v in 1..=updates {
            // Every other update renames: the newest name must win too.
            let mut e = json!({"externalId": id, "issueKey": key, "desiredOperation": "update",
                               "fields": {VERSION_FIELD: v}});
            if v % 2 == 1 {
                summary = format!("CI {id} v{v}");
                e["summary"] = json!(summary);
            }
            seq.push_back(e);
        }
        expected.insert(Entity::Existing(key.clone()), (summary, updates));
        sequences.push((Entity::Existing(key.clone()), seq));
    }
    // Interleave entities at random, each entity's events in order.
    let mut rng = fastrand::Rng::with_seed(20_261_124);
    let mut events = Vec::with_capacity(EVENTS);
    while !sequences.is_empty() {
        let i = rng.usize(..sequences.len());
        if let Some(e) = sequences[i].1.pop_front() {
            events.push(e);
        }
        if sequences[i].1.is_empty() {
            sequences.swap_remove(i);
        }
    }
    let mut invalid = Vec::with_capacity(INVALID);
    for n in 0..INVALID {
        let at = rng.usize(..=events.len());
        let bad = if n % 2 == 0 {
            json!({"externalId": format!("bad-{n}"), "desiredOperation": "create",
                   "projectKey": "ASSET", "issueType": "Task"})
        } else {
            json!({"externalId": format!("bad-{n}"), "desiredOperation": "update",
                   "issueKey": "asset-17", "fields": {VERSION_FIELD: 1}})
        };
        events.insert(at, bad);
    }
    for (i, e) in events.iter().enumerate() {
        if e["externalId"]
            .as_str()
            .is_some_and(|x| x.starts_with("bad-"))
        {
            invalid.push(i);
        }
    }
    Night {
        events,
        invalid,
        expected,
        updated_issues: NEW_UPDATED + EXISTING,
        creates: NEW_CIS,
    }
}

/// Runs tollgate and the per-event client on the same night.
pub async fn run(
    clients: &[super::Client],
    workers: usize,
    latency: Duration,
    bars: &dyn Fn(&str) -> ProgressBar,
) -> anyhow::Result<Vec<RunResult>> {
    let mut out = Vec::new();
    for &client in clients {
        let name = match client {
            super::Client::Tollgate => "tollgate",
            // The baselines differ only in their 429 handling, which this
            // profile does not stress: one per-event client stands for them.
            super::Client::Fixed3 => "per-event",
            _ => continue,
        };
        out.push(run_one(name, workers, latency, bars(name)).await?);
    }
    Ok(out)
}

async fn run_one(
    client: &str,
    workers: usize,
    latency: Duration,
    bar: ProgressBar,
) -> anyhow::Result<RunResult> {
    let limits = limits();
    let sim_config = jira_sim::SimConfig {
        latency,
        limits: limits.clone(),
        ..Default::default()
    };
    let (addr, sim, sim_task) = jira_sim::spawn(sim_config, "127.0.0.1:0".parse()?).await?;
    let url = format!("http://{addr}");
    let auth = JiraAuth::Basic {
        email: "sim@example.com".into(),
        api_token: Secret::new("sim-token"),
    };
    let existing = seed(&sim)?;
    let night = night(&existing);
    let w = limits.window_seconds;
    tokio::time::sleep(Duration::from_secs_f64(w - unix_now() % w + 0.05)).await;
    let needs = [
        Need {
            method: "POST",
            endpoint: "/rest/api/3/issue/bulk",
            issue: None,
            count: night.creates.div_ceil(50),
        },
        Need {
            method: "PUT",
            endpoint: "/rest/api/3/issue/{key}",
            issue: None,
            count: EXISTING,
        },
    ];
    let ideal = ideal_makespan(&needs, &limits, unix_now(), &[]);
    bar.set_length(night.events.len() as u64);
    let started = Instant::now();
    let invalid_reported = match client {
        "tollgate" => run_tollgate(&url, auth, &night, workers, &bar).await?,
        _ => run_per_event(&url, auth, &night, &bar).await?,
    };
    let makespan = started.elapsed().as_secs_f64();
    let report = sim.report();
    sim_task.abort();
    let (throttled, points) = sim.counters();
    let by_endpoint = &report["requestsByEndpoint"];
    let calls = |e: &str| by_endpoint[e].as_u64().unwrap_or(0);
    let requests = report["totals"]["requests"].as_u64().unwrap_or(0);
    let create_calls = calls("POST /rest/api/3/issue") + calls("POST /rest/api/3/issue/bulk");
    let edit_calls = calls("PUT /rest/api/3/issue/{key}");
    let (lost, duplicates) = check(&report, &night);
    let valid = night.events.len() - night.invalid.len();
    bar.finish();
    Ok(RunResult {
        profile: "nightly-sync".into(),
        client: client.into(),
        events: night.events.len(),
        deliveries: night.events.len(),
        makespan_s: makespan,
        ideal_s: ideal,
        goodput: (lost == 0).then(|| ideal / makespan),
        requests,
        throttled,
        throttled_pct: if requests > 0 {
            100.0 * throttled as f64 / requests as f64
        } else {
            0.0
        },
        throttled_by_reason: report["throttledByReason"].clone(),
        points_per_event: points as f64 / valid as f64,
        duplicates,
        lost,
        p95_interactive_s: None,
        settle_s: None,
        window_s: limits.window_seconds,
        nightly: Some(NightlyFigures {
            valid_events: valid,
            calls_per_event: requests as f64 / valid as f64,
            create_calls_per_create: create_calls as f64 / night.creates as f64,
            edit_calls_per_updated_issue: edit_calls as f64 / night.updated_issues as f64,
            invalid_reported,
            invalid_sent: night.invalid.len(),
        }),
    })
}

/// (lost, duplicates): entities whose issue is missing or does not end with
/// the newest values sent; extra issues for one new CI.
fn check(report: &Value, night: &Night) -> (usize, u64) {
    let mut by_entity: BTreeMap<Entity, Vec<&Value>> = BTreeMap::new();
    for issue in report["issues"].as_array().into_iter().flatten() {
        let entity = match issue["fields"][CI_FIELD].as_str() {
            Some(ci) => Entity::New(ci.to_string()),
            None => Entity::Existing(issue["key"].as_str().unwrap_or_default().to_string()),
        };
        by_entity.entry(entity).or_default().push(issue);
    }
    let mut lost = 0;
    let mut duplicates = 0;
    for (entity, (summary, version)) in &night.expected {
        match by_entity.get(entity).map(Vec::as_slice) {
            Some([issue, rest @ ..]) => {
                duplicates += rest.len() as u64;
                let ok = issue["summary"] == summary.as_str()
                    && issue["fields"][VERSION_FIELD].as_u64() == Some(*version);
                if !ok {
                    lost += 1;
                }
            }
            _ => lost += 1,
        }
    }
    (lost, duplicates)
}

async fn run_tollgate(
    url: &str,
    auth: JiraAuth,
    night: &Night,
    workers: usize,
    bar: &ProgressBar,
) -> anyhow::Result<usize> {
    let (running, secret, dir) = super::start_stack("nightly", url, auth, workers).await?;
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let sign = |body: &[u8]| -> anyhow::Result<String> {
        let t = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
        Ok(signature::sign(&secret, t, body))
    };
    let mut reported = Vec::new();
    let mut batch_ids = Vec::new();
    for (n, chunk) in night.events.chunks(BATCH_SIZE).enumerate() {
        let id = format!("cmdb-night-{n}");
        let body =
            serde_json::to_vec(&json!({"batchId": id, "sourceSystem": "cmdb", "events": chunk}))?;
        let answer: Value = http
            .post(format!("{base}/v1/batches"))
            .header("Content-Type", "application/json")
            .header(signature::HEADER, sign(&body)?)
            .body(body)
            .send()
            .await?
            .json()
            .await?;
        for r in answer["rejected"].as_array().into_iter().flatten() {
            if let Some(i) = r["index"].as_u64() {
                reported.push(n * BATCH_SIZE + i as usize);
            }
        }
        batch_ids.push(id);
    }
    let deadline = Instant::now() + Duration::from_secs(1200);
    loop {
        let mut finished = 0u64;
        let mut remaining = 0u64;
        for id in &batch_ids {
            let answer: Value = http
                .get(format!("{base}/v1/batches/{id}"))
                .header(signature::HEADER, sign(b"")?)
                .send()
                .await?
                .json()
                .await?;
            finished += answer["finished"].as_u64().unwrap_or(0);
            remaining += answer["remaining"].as_u64().unwrap_or(0);
        }
        bar.set_position(finished + reported.len() as u64);
        if remaining == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    reported.sort_unstable();
    anyhow::ensure!(
        reported == night.invalid,
        "invalid items reported at other indexes than sent"
    );
    Ok(reported.len())
}

/// A well-behaved per-event client: validates locally, keeps its own map of
/// CI → issue, sends each entity's events in order (one call each), ten
/// entities at a time, sleeping Retry-After on a 429.
async fn run_per_event(
    url: &str,
    auth: JiraAuth,
    night: &Night,
    bar: &ProgressBar,
) -> anyhow::Result<usize> {
    let jira = Arc::new(JiraClient::new(url, auth, Duration::from_secs(10))?);
    let mut invalid = 0;
    let mut per_entity: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for e in &night.events {
        let mut with_source = e.clone();
        with_source["sourceSystem"] = json!("cmdb");
        if validate_event(&with_source).is_err() {
            invalid += 1;
            bar.inc(1);
            continue;
        }
        let key = e["externalId"].as_str().unwrap_or_default().to_string();
        per_entity.entry(key).or_default().push(e.clone());
    }
    let queue = Arc::new(Mutex::new(per_entity.into_values()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (queue, jira, bar) = (queue.clone(), jira.clone(), bar.clone());
        tasks.spawn(async move {
            loop {
                let Some(events) = queue.lock().await.next() else {
                    break;
                };
                let mut target: Option<IssueKey> = None;
                for e in events {
                    send_one(&jira, &e, &mut target).await;
                    bar.inc(1);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(invalid)
}

async fn send_one(jira: &JiraClient, e: &Value, target: &mut Option<IssueKey>) {
    let mut fields = e["fields"].as_object().cloned().unwrap_or_default();
    if let Some(s) = e.get("summary") {
        fields.insert("summary".into(), s.clone());
    }
    let create = e["desiredOperation"] == "create";
    if create {
        fields.insert("project".into(), json!({"key": e["projectKey"]}));
        fields.insert("issuetype".into(), json!({"name": e["issueType"]}));
    } else if let Some(k) = e["issueKey"].as_str().and_then(IssueKey::parse) {
        *target = Some(k);
    }
    for _ in 0..50 {
        let result = if create {
            jira.create_issue(&fields, &[]).await.map(|a| {
                *target = Some(a.value);
            })
        } else {
            match target {
                Some(k) => jira.edit_issue(k, &fields, &[]).await.map(|_| ()),
                None => return,
            }
        };
        match result {
            Ok(()) => return,
            Err(TrackerError::Throttled { signal, .. })
            | Err(TrackerError::Transient { signal, .. }) => {
                tokio::time::sleep(signal.retry_after.unwrap_or(Duration::from_secs(1))).await;
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_night_has_its_counts_and_keeps_each_entitys_order() {
        let existing: Vec<String> = (1..=EXISTING).map(|i| format!("ASSET-{i}")).collect();
        let n = night(&existing);
        assert_eq!(n.events.len(), EVENTS);
        assert_eq!(n.invalid.len(), INVALID);
        let mut versions: BTreeMap<String, i64> = BTreeMap::new();
        for e in &n.events {
            let id = e["externalId"].as_str().unwrap().to_string();
            let v = e["fields"][VERSION_FIELD].as_i64().unwrap_or(-1);
            if let Some(prev) = versions.insert(id.clone(), v) {
                assert!(v > prev, "{id} out of order");
            }
        }
        assert_eq!(n.expected.len(), NEW_CIS + EXISTING);
    }
}
