//! `kill -9` of `serve` in the middle of work, then a restart on the same
//! database: every job finishes, and Jira holds no duplicate.

use serde_json::json;
use std::time::{Duration, Instant};
use tollgate_e2e::*;

const SECRET: &str = "whsec_crash";
const ALERTS: usize = 24;

#[tokio::test]
async fn a_killed_server_restarted_on_its_database_finishes_every_job_without_duplicates() {
    let dir = Scratch::new("crash");
    let db = dir.path("tollgate.db");
    // Jira takes 150 ms per answer, so the kill lands while calls are in
    // flight: some creates will have happened in Jira with their answer lost.
    let sim = start_sim(150).unwrap();
    let opts = ServeOptions {
        db: &db,
        jira_url: &sim.url,
        secrets: SECRET,
        workers: 4,
        visibility_secs: 2,
    };
    let mut first = start_serve(&opts).unwrap();
    let api = Api::new(&first.url);

    let mut jobs = Vec::new();
    for i in 0..ALERTS {
        let id = format!("crash-{i:03}");
        let create = serde_json::to_vec(&json!({
            "sourceSystem": "alertmanager", "externalId": id, "desiredOperation": "create",
            "projectKey": "OPS", "issueType": "Incident", "summary": format!("Alert {i}"),
            "comment": "Opened by tollgate."
        }))
        .unwrap();
        let comment = serde_json::to_vec(&json!({
            "sourceSystem": "alertmanager", "externalId": id, "desiredOperation": "comment",
            "comment": format!("Still firing ({i}).")
        }))
        .unwrap();
        for body in [&create, &create, &comment] {
            let sent = api.post_signed(body, SECRET).await.unwrap();
            assert_eq!(sent.status, 202, "{}", sent.body);
            jobs.push(sent.body["jobId"].as_str().unwrap().to_string());
        }
    }
    jobs.sort();
    jobs.dedup();
    assert_eq!(jobs.len(), ALERTS * 2);

    // Kill once a few issues exist and most work is still ahead.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let issues = sim_report(&sim.url).await.unwrap()["totals"]["issues"]
            .as_u64()
            .unwrap();
        if issues >= 4 {
            break;
        }
        assert!(Instant::now() < deadline, "no progress before the kill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill_hard();
    let at_kill = sim_report(&sim.url).await.unwrap();
    let created_at_kill = at_kill["totals"]["issues"].as_u64().unwrap();
    assert!(
        created_at_kill < ALERTS as u64,
        "the kill must land mid-run (had {created_at_kill})"
    );

    let second = start_serve(&opts).unwrap();
    let api = Api::new(&second.url);
    for id in &jobs {
        let job = api
            .wait_terminal(id, Duration::from_secs(90))
            .await
            .unwrap();
        assert_eq!(job["state"], "SUCCEEDED", "{job}");
    }
    let report = sim_report(&sim.url).await.unwrap();
    assert_eq!(
        report["totals"]["duplicateIssues"], 0,
        "{}",
        report["duplicates"]
    );
    assert_eq!(
        report["totals"]["duplicateComments"], 0,
        "{}",
        report["duplicateComments"]
    );
    assert_eq!(report["totals"]["issues"], ALERTS as u64);
    assert_eq!(report["totals"]["comments"], (ALERTS * 2) as u64);
}
