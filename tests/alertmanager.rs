//! A real Prometheus Alertmanager (Debian's `prometheus-alertmanager`, the
//! binary, not the service) sending to `tollgate serve` through the
//! Alertmanager preset exactly as the README documents it
//! (`examples/alertmanager.yml`, `examples/sources.toml`), while jira-sim
//! loses some answers after doing the work, and `serve` is killed and
//! restarted once mid-run. Alerts are posted to Alertmanager's API v2 as
//! Prometheus does (active alerts re-posted every evaluation), some then
//! resolved.

use serde_json::{Value, json};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tollgate_e2e::*;

const TOKEN: &str = "am-bearer-token";
const ALERTS: usize = 10;
const RESOLVED: usize = 4;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn alertmanager_binary() -> PathBuf {
    for p in ["/usr/bin/prometheus-alertmanager", "/usr/bin/alertmanager"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!(
        "Alertmanager is not installed: run ./scripts/ensure-test-tools (Debian's prometheus-alertmanager)"
    );
}

/// A child process killed when dropped.
struct KilledOnDrop(Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_serve(port: u16, db: &Path, sim_url: &str) -> Proc {
    let mut cmd = Command::new(bin("tollgate"));
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--jira-url", sim_url])
        .arg("--db")
        .arg(db)
        .arg("--sources")
        .arg(repo("examples/sources.toml"))
        .args(["--workers", "4", "--jira-timeout-secs", "2"])
        .env("TOLLGATE_WEBHOOK_SECRET", "am-test-webhook-secret")
        .env("TOLLGATE_JIRA_EMAIL", SIM_EMAIL)
        .env("TOLLGATE_JIRA_API_TOKEN", SIM_TOKEN)
        // Every sender of the example document needs its secret.
        .env("TOLLGATE_SOURCE_ALERTMANAGER_SECRETS", TOKEN)
        .env("TOLLGATE_SOURCE_GRAFANA_SECRETS", "grafana:pass")
        .env("TOLLGATE_SOURCE_PAGERDUTY_SECRETS", "pd-secret")
        .env("TOLLGATE_SOURCE_GITHUB_SECRETS", "gh-secret")
        .env("TOLLGATE_SOURCE_INVENTORY_SECRETS", "inv-secret")
        .env("RUST_LOG", "warn");
    Proc::start(cmd, "tollgate listening on ").expect("serve starts")
}

/// The README's Alertmanager configuration, pointed at this serve, with
/// its timings shortened for a test.
fn alertmanager_config(dir: &Scratch, serve_port: u16) -> PathBuf {
    let text = std::fs::read_to_string(repo("examples/alertmanager.yml")).unwrap();
    let token_file = dir.path("tollgate-token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let config = text
        .replace(
            "https://tollgate.example.com",
            &format!("http://127.0.0.1:{serve_port}"),
        )
        .replace(
            "/etc/alertmanager/tollgate-token",
            token_file.to_str().unwrap(),
        )
        .replace("group_wait: 30s", "group_wait: 1s")
        .replace("group_interval: 5m", "group_interval: 1s")
        .replace("repeat_interval: 4h", "repeat_interval: 20s");
    assert_ne!(config, text);
    let path = dir.path("alertmanager.yml");
    std::fs::write(&path, config).unwrap();
    path
}

fn rfc3339(t: std::time::SystemTime) -> String {
    let ms = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    tollgate::domain::time::Timestamp(ms).to_rfc3339()
}

fn alert(i: usize, starts: &str, ends: &str) -> Value {
    json!({
        "labels": {"alertname": "DiskFull", "instance": format!("db-{i:02}"), "severity": "page"},
        "annotations": {"summary": format!("Disk 95% full on db-{i:02}")},
        "startsAt": starts,
        "endsAt": ends,
        "generatorURL": "http://prometheus:9090/graph?g0.expr=disk"
    })
}

async fn wait_for(what: &str, limit: Duration, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn issue_of<'a>(report: &'a Value, instance: &str) -> Option<&'a Value> {
    report["issues"]
        .as_array()?
        .iter()
        .find(|i| i["summary"] == format!("DiskFull on {instance}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_alertmanager_makes_each_issue_once_and_resolves_each_resolved_one_once() {
    let dir = Scratch::new("alertmanager");
    // Jira loses about one answer in eight, after doing the work.
    let mut sim_cmd = Command::new(bin("jira-sim"));
    sim_cmd
        .args(["--listen", "127.0.0.1:0", "--fault-drop", "0.12"])
        .env("JIRA_SIM_EMAIL", SIM_EMAIL)
        .env("JIRA_SIM_API_TOKEN", SIM_TOKEN);
    let sim = Proc::start(sim_cmd, "jira-sim listening on ").unwrap();
    let serve_port = free_port();
    let db = dir.path("tollgate.db");
    let mut serve = start_serve(serve_port, &db, &sim.url);

    let am_port = free_port();
    let am_log = dir.path("alertmanager.log");
    let am = KilledOnDrop(
        Command::new(alertmanager_binary())
            .arg(format!(
                "--config.file={}",
                alertmanager_config(&dir, serve_port).display()
            ))
            .arg(format!("--storage.path={}", dir.path("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&am_log).unwrap())
            .spawn()
            .expect("alertmanager starts"),
    );
    let http = reqwest::Client::new();
    let am_url = format!("http://127.0.0.1:{am_port}");
    wait_for(
        "Alertmanager to be ready",
        Duration::from_secs(30),
        async || {
            http.get(format!("{am_url}/-/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        },
    )
    .await;

    // Prometheus' side: active alerts re-posted every second.
    let started = rfc3339(std::time::SystemTime::now());
    let resolved_at = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let poster = {
        let (http, am_url, started, resolved_at) = (
            http.clone(),
            am_url.clone(),
            started.clone(),
            resolved_at.clone(),
        );
        tokio::spawn(async move {
            loop {
                let now = std::time::SystemTime::now();
                let active_until = rfc3339(now + Duration::from_secs(60));
                let resolved = resolved_at.lock().unwrap().clone();
                let alerts: Vec<Value> = (0..ALERTS)
                    .map(|i| match (&resolved, i < RESOLVED) {
                        (Some(at), true) => alert(i, &started, at),
                        _ => alert(i, &started, &active_until),
                    })
                    .collect();
                let _ = http
                    .post(format!("{am_url}/api/v2/alerts"))
                    .json(&alerts)
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let report = || async { sim_report(&sim.url).await.unwrap() };

    // Every alert becomes one issue.
    wait_for("an issue per alert", Duration::from_secs(90), async || {
        let r = report().await;
        (0..ALERTS).all(|i| issue_of(&r, &format!("db-{i:02}")).is_some())
    })
    .await;

    // serve dies and comes back on the same address.
    serve.kill_hard();
    serve = start_serve(serve_port, &db, &sim.url);

    // Some alerts resolve.
    *resolved_at.lock().unwrap() = Some(rfc3339(std::time::SystemTime::now()));
    wait_for(
        "the resolved alerts' issues to be Done",
        Duration::from_secs(120),
        async || {
            let r = report().await;
            (0..RESOLVED).all(|i| {
                issue_of(&r, &format!("db-{i:02}")).is_some_and(|issue| {
                    issue["status"] == "Done"
                        && issue["comments"].as_array().is_some_and(|c| !c.is_empty())
                })
            })
        },
    )
    .await;
    // Repeats and retries keep coming for a while: let them.
    tokio::time::sleep(Duration::from_secs(5)).await;
    poster.abort();

    let r = report().await;
    let totals = &r["totals"];
    assert_eq!(
        totals["issues"], ALERTS,
        "one issue per alert: {}",
        r["issues"]
    );
    assert_eq!(totals["duplicateIssues"], 0, "{r}");
    assert_eq!(totals["duplicateComments"], 0, "{r}");
    for i in 0..ALERTS {
        let issue = issue_of(&r, &format!("db-{i:02}")).unwrap();
        if i < RESOLVED {
            assert_eq!(issue["transitions"], json!(["Done"]), "moved once: {issue}");
            let comments = issue["comments"].as_array().unwrap();
            assert_eq!(comments.len(), 1, "{issue}");
            assert!(
                comments[0].as_str().unwrap().starts_with("Resolved at"),
                "{issue}"
            );
        } else {
            assert_eq!(issue["status"], "To Do", "still firing, untouched: {issue}");
            assert_eq!(issue["transitions"], json!([]), "{issue}");
        }
    }
    // Every notification was answered 2xx in the end: Alertmanager counts a
    // notification failed only when all its attempts failed.
    let metrics = http
        .get(format!("{am_url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let figure = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains("integration=\"webhook\""))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in Alertmanager's metrics"))
    };
    assert!(figure("alertmanager_notifications_total") > 0.0);
    assert_eq!(figure("alertmanager_notifications_failed_total"), 0.0);
    let log = std::fs::read_to_string(&am_log).unwrap();
    assert!(
        !log.contains("Notify for alerts failed"),
        "Alertmanager logged a failed notification:\n{log}"
    );
    drop(am);
    drop(serve);
}

#[test]
fn the_readme_shows_the_configuration_this_test_runs() {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let config = std::fs::read_to_string(repo("examples/alertmanager.yml")).unwrap();
    assert!(
        readme.contains(&config),
        "README.md must show examples/alertmanager.yml as it is"
    );
}
