//! Confluence through the same pipeline: a page created and commented on by
//! events, deduplicated, governed by the site's governor, and reconciled
//! after answers lost on the way back.

use jira_sim::limits::{Faults, Limits};
use serde_json::json;
use std::time::Duration;
use tollgate_e2e::InProcess;

const WAIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_page_is_created_and_commented_once_even_when_deliveries_repeat() {
    let s = InProcess::start("confluence", 2, Duration::ZERO, Limits::default()).await;
    let page = json!({"sourceSystem": "deploys", "externalId": "release-42", "desiredOperation": "createPage",
                      "spaceId": "65538", "title": "Release 42 <notes>", "body": "Shipped:\n- <b>fast</b> & safe\n\nRollback: none"});
    let first = s.send(&page).await;
    let again = s.send(&page).await;
    assert_eq!(first, again, "a redelivery is the same job");
    let done = s.api.wait_terminal(&first, WAIT).await.unwrap();
    assert_eq!(done["state"], "SUCCEEDED", "{done}");
    let report = s.sim.report();
    assert_eq!(report["totals"]["pages"], 1);
    let created = &report["pages"][0];
    assert_eq!(created["title"], "Release 42 <notes>");
    assert_eq!(
        created["body"],
        "<p>Shipped:<br />- &lt;b&gt;fast&lt;/b&gt; &amp; safe</p><p>Rollback: none</p>",
        "text is escaped into storage format, never markup"
    );
    assert_eq!(
        created["markers"],
        json!([format!("tollgate-{first}-0")]),
        "the page carries its job's anchor, set in the create call"
    );
    let page_id = created["id"].as_str().unwrap().to_string();
    let comment = json!({"sourceSystem": "deploys", "externalId": "release-42-verified", "desiredOperation": "pageComment",
                         "pageId": page_id, "comment": "Verified in production."});
    let c1 = s.send(&comment).await;
    s.send(&comment).await;
    let c = s.api.wait_terminal(&c1, WAIT).await.unwrap();
    assert_eq!(c["state"], "SUCCEEDED", "{c}");
    let report = s.sim.report();
    assert_eq!(
        report["pages"][0]["comments"],
        json!(["<p>Verified in production.</p>"])
    );
    assert_eq!(report["totals"]["duplicatePageComments"], 0);
    // The same site governor counted the calls.
    assert!(
        report["requestsByEndpoint"]["POST /wiki/api/v2/pages"].as_u64() >= Some(1),
        "{report}"
    );
    // A comment on a page that does not exist fails for good, with Jira's
    // (Confluence's) word for it.
    let missing = s
        .send(
            &json!({"sourceSystem": "deploys", "externalId": "x", "desiredOperation": "pageComment",
                      "pageId": "999999", "comment": "lost"}),
        )
        .await;
    let m = s.api.wait_terminal(&missing, WAIT).await.unwrap();
    assert_eq!(m["state"], "FAILED", "{m}");
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_answers_from_confluence_are_reconciled_without_duplicates() {
    // One answer in five is lost after Confluence acted: every retry must
    // find the page or comment instead of making another. (Reads are lost
    // too, and a lost read backs off like any transient failure.)
    let limits = Limits {
        faults: Faults {
            drop: 0.2,
            ..Default::default()
        },
        ..Limits::default()
    };
    let s = InProcess::start("confluence-drops", 3, Duration::ZERO, limits).await;
    let mut pages = Vec::new();
    for i in 0..8 {
        pages.push(
            s.send(&json!({"sourceSystem": "docs", "externalId": format!("p-{i}"), "desiredOperation": "createPage",
                           "spaceId": "7", "title": format!("Runbook {i}"), "body": format!("Step {i}")}))
                .await,
        );
    }
    for id in &pages {
        let j = s.api.wait_terminal(id, WAIT).await.unwrap();
        assert_eq!(j["state"], "SUCCEEDED", "{j}");
    }
    let report = s.sim.report();
    assert_eq!(report["totals"]["pages"], 8, "{}", report["pages"]);
    let first_page = report["pages"][0]["id"].as_str().unwrap().to_string();
    let mut comments = Vec::new();
    for i in 0..6 {
        comments.push(
            s.send(&json!({"sourceSystem": "docs", "externalId": format!("c-{i}"), "desiredOperation": "pageComment",
                           "pageId": first_page, "comment": format!("note {i}")}))
                .await,
        );
    }
    for id in &comments {
        let j = s.api.wait_terminal(id, WAIT).await.unwrap();
        assert_eq!(j["state"], "SUCCEEDED", "{j}");
    }
    let report = s.sim.report();
    assert_eq!(report["totals"]["pageComments"], 6, "{}", report["pages"]);
    assert_eq!(report["totals"]["duplicatePageComments"], 0);
    s.running.shutdown().await;
}
