//! The operator console in a real headless Chromium: sign in with the
//! operator token; the overview's charts (the last hour by minute, 24
//! hours by hour, the quota Jira announced) agree with `tollgate stats`;
//! approve a batch's chunk and see its jobs run; pause and resume the
//! batch; re-submit an edited rejection; a job page with its trail; usable
//! at 400 px; sign out and be refused. And over plain HTTP: no session, a
//! form without its CSRF token, a stale session — each refused.
//! Screenshots of the overview and a job page go to docs/screenshots/.

use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tollgate::app::console::percent_encode;
use tollgate::domain::console_session::{issue, session_key};
use tollgate::domain::policy::Policy;
use tollgate::domain::secret::Secret;
use tollgate::domain::time::Timestamp;
use tollgate_e2e::InProcess;
use tollgate_e2e::webdriver::Browser;

const TOKEN: &str = "test-operator-token";

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots")
}

async fn rig(name: &str) -> InProcess {
    let policy = Policy::parse(
        "approvers = [\"lead@example.com\"]\nbatch_approval = { over = 3, chunk = 2 }",
    )
    .unwrap();
    // A site with a points quota: its answers announce it, and the charts
    // draw it.
    let limits = jira_sim::limits::Limits {
        quota_points: 65_000,
        window_seconds: 3_600.0,
        ..Default::default()
    };
    InProcess::with_policy(name, 2, Duration::ZERO, limits, policy).await
}

async fn post_batch(s: &InProcess, batch: &Value) -> Value {
    let sent = s
        .api
        .signed(
            reqwest::Method::POST,
            "/v1/batches",
            &serde_json::to_vec(batch).unwrap(),
            &s.secret,
        )
        .await
        .unwrap();
    assert_eq!(sent.status, 202, "{}", sent.body);
    sent.body
}

async fn batch(s: &InProcess, id: &str) -> Value {
    s.api
        .signed(
            reqwest::Method::GET,
            &format!("/v1/batches/{id}"),
            b"",
            &s.secret,
        )
        .await
        .unwrap()
        .body
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A form body, as a browser encodes it.
fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn create(id: &str) -> Value {
    json!({"externalId": id, "desiredOperation": "create", "projectKey": "OPS",
           "issueType": "Task", "summary": format!("Server {id}")})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_signs_in_reads_the_charts_approves_a_chunk_resubmits_and_signs_out() {
    let s = rig("console").await;
    let base = format!("http://{}", s.running.addr);
    // Some history: creates that ran, a batch waiting chunk by chunk, and
    // an event refused as invalid.
    for i in 0..3 {
        let id = s
            .send(
                &json!({"sourceSystem": "monitoring", "externalId": format!("m{i}"),
                          "desiredOperation": "create", "projectKey": "OPS",
                          "issueType": "Incident", "summary": format!("alert {i}")}),
            )
            .await;
        s.api
            .wait_terminal(&id, Duration::from_secs(20))
            .await
            .unwrap();
    }
    let events: Vec<Value> = (0..4).map(|i| create(&format!("n{i}"))).collect();
    post_batch(
        &s,
        &json!({"batchId": "nightly", "sourceSystem": "cmdb", "events": events}),
    )
    .await;
    let refused = s
        .api
        .post_signed(
            json!({"sourceSystem": "itsm", "externalId": "chg-1", "desiredOperation": "create",
                   "issueType": "Task", "summary": "no project"})
            .to_string()
            .as_bytes(),
            &s.secret,
        )
        .await
        .unwrap();
    assert_eq!(refused.status, 400);

    let b = Browser::start().await.unwrap();
    b.resize(1200, 1400).await.unwrap();
    b.open(&format!("{base}/ui")).await.unwrap();
    assert!(
        b.url().await.unwrap().ends_with("/ui/sign-in"),
        "no session: sign in first"
    );
    b.type_into("#operator", "dana").await.unwrap();
    b.type_into("#token", TOKEN).await.unwrap();
    b.click("#sign-in").await.unwrap();
    assert_eq!(b.text("#operator").await.unwrap(), "dana");

    // The charts' figures are the ones `tollgate stats` reads (once the
    // counters of those calls are flushed to the store, every few seconds).
    let mut stats = Value::Null;
    eventually("the calls' counters reach the store", async || {
        let (ok, out) = s.cli(&["stats", "--output", "json"]);
        assert!(ok, "{out}");
        stats = serde_json::from_str(&out).unwrap();
        stats["requests"].as_f64().unwrap_or(0.0) >= 3.0
    })
    .await;
    b.open(&format!("{base}/ui")).await.unwrap();
    let charted = |id: &'static str| {
        let b = &b;
        async move {
            b.execute(&format!(
                "return document.querySelector('#{id} .total').dataset.total"
            ))
            .await
            .unwrap()
            .as_str()
            .unwrap_or_default()
            .parse::<f64>()
            .unwrap()
        }
    };
    assert_eq!(
        charted("chart-requests").await,
        stats["requests"].as_f64().unwrap()
    );
    assert_eq!(
        charted("chart-points").await,
        stats["points"].as_f64().unwrap()
    );
    assert_eq!(
        charted("chart-throttled").await,
        stats["throttled"].as_f64().unwrap()
    );
    // The last hour, by minute: the same calls (all made within it), and
    // the quota Jira announced as the even-share line.
    eventually("the per-minute figures reach the store", async || {
        b.open(&format!("{base}/ui")).await.unwrap();
        charted("chart-minute-points").await == stats["points"].as_f64().unwrap()
    })
    .await;
    assert_eq!(
        charted("chart-minute-throttled").await,
        stats["throttled"].as_f64().unwrap()
    );
    let even_share = b
        .execute("return document.querySelector('#chart-minute-points .limit').dataset.value")
        .await
        .unwrap();
    assert_eq!(even_share.as_str(), Some("1083.3"), "65,000 points an hour");
    let quota = b
        .execute("return document.querySelector('#chart-points .limit').dataset.value")
        .await
        .unwrap();
    assert_eq!(quota.as_str(), Some("65000"));
    assert!(
        b.text("#chart-endpoint-0")
            .await
            .unwrap()
            .contains("pace held"),
        "the busiest endpoint's requests against the pace held"
    );
    b.screenshot(&screenshots().join("console-overview.png"))
        .await
        .unwrap();

    // Approve the first chunk of the batch: its two jobs run.
    b.open(&format!("{base}/ui/approvals")).await.unwrap();
    b.click("section.approval button[data-action=approve]")
        .await
        .unwrap();
    assert!(b.text("p.flash").await.unwrap().contains("approved"));
    eventually("the approved chunk's jobs ran", async || {
        batch(&s, "nightly").await["counts"]["SUCCEEDED"] == 2
    })
    .await;

    // Pause and resume the batch.
    b.open(&format!("{base}/ui/batches")).await.unwrap();
    b.click("button[data-action=pause]").await.unwrap();
    assert!(b.text("p.flash").await.unwrap().contains("paused by dana"));
    eventually("the batch is paused", async || {
        batch(&s, "nightly").await["paused"] == true
    })
    .await;
    b.click("button[data-action=resume]").await.unwrap();
    // The click returns before the form's answer may have come back.
    eventually("the batch is resumed", async || {
        batch(&s, "nightly").await["paused"] == false
    })
    .await;

    // Re-submit the rejection, corrected in the text area.
    let rejection = refused.body["rejectionId"].as_str().unwrap().to_string();
    b.open(&format!("{base}/ui/rejections?id={rejection}"))
        .await
        .unwrap();
    assert!(b.text("#reasons").await.unwrap().contains("projectKey"));
    b.type_into(
        "#body",
        &json!({"sourceSystem": "itsm", "externalId": "chg-1", "desiredOperation": "create",
                "projectKey": "OPS", "issueType": "Task", "summary": "no project"})
        .to_string(),
    )
    .await
    .unwrap();
    b.click("button[data-action=resubmit]").await.unwrap();
    let flash = b.text("p.flash").await.unwrap();
    assert!(flash.starts_with("re-submitted as job"), "{flash}");
    let job = flash.rsplit(' ').next().unwrap().to_string();
    let ran = s
        .api
        .wait_terminal(&job, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(ran["state"], "SUCCEEDED", "{ran}");

    // A job page: its trail as a timeline.
    b.open(&format!("{base}/ui/jobs?id={job}")).await.unwrap();
    assert!(b.text("#trail").await.unwrap().contains("SUCCEEDED"));
    b.screenshot(&screenshots().join("console-job.png"))
        .await
        .unwrap();

    // At a phone's width nothing spills sideways.
    b.resize(400, 900).await.unwrap();
    b.open(&format!("{base}/ui")).await.unwrap();
    let width = b
        .execute("return document.documentElement.scrollWidth")
        .await
        .unwrap()
        .as_u64()
        .unwrap();
    assert!(width <= 400, "the overview is {width} px wide at 400 px");

    // Signed out, the console is closed again.
    b.click("button[data-action=sign-out]").await.unwrap();
    eventually("signed out", async || {
        b.url().await.unwrap().ends_with("/ui/sign-in")
    })
    .await;
    b.open(&format!("{base}/ui/jobs")).await.unwrap();
    assert!(b.url().await.unwrap().ends_with("/ui/sign-in"));
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_session_forms_without_their_csrf_token_and_stale_sessions_are_refused()
{
    let s = rig("console-refusals").await;
    let base = format!("http://{}", s.running.addr);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let id = s
        .send(
            &json!({"sourceSystem": "itsm", "externalId": "x1", "desiredOperation": "transition",
                      "issueKey": "OPS-1", "transition": "Done"}),
        )
        .await;
    let job = s.api.job(&id).await.unwrap();
    let approval = job["approvalId"].as_str().unwrap().to_string();

    // No session: a page sends to sign-in, an action does nothing.
    let page = http
        .get(format!("{base}/ui/approvals"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 303);
    let act = http
        .post(format!("{base}/ui/act"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form(&[("action", "approve"), ("approval", &approval)]))
        .send()
        .await
        .unwrap();
    assert_eq!(act.status().as_u16(), 303);

    // A wrong token does not sign in.
    let wrong = http
        .post(format!("{base}/ui/sign-in"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form(&[("operator", "eve"), ("token", "guess")]))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);

    // Signed in, but the form lacks its CSRF token (or has another's).
    let signed = http
        .post(format!("{base}/ui/sign-in"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form(&[("operator", "dana"), ("token", TOKEN)]))
        .send()
        .await
        .unwrap();
    let cookie = signed.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    for csrf in ["", "bm90LWl0"] {
        let act = http
            .post(format!("{base}/ui/act"))
            .header("Cookie", &session)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("action", "approve"),
                ("approval", approval.as_str()),
                ("csrf", csrf),
            ]))
            .send()
            .await
            .unwrap();
        assert_eq!(act.status().as_u16(), 403, "csrf {csrf:?}");
    }

    // A session that expired is refused too.
    let key = session_key(&Secret::new(TOKEN));
    let stale = issue(&key, "dana", Timestamp(1_000_000_000_000));
    let page = http
        .get(format!("{base}/ui"))
        .header("Cookie", format!("tollgate_session={stale}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 401);
    assert!(page.text().await.unwrap().contains("expired"));

    // Nothing was decided by any of them.
    assert_eq!(s.api.job(&id).await.unwrap()["state"], "PENDING_APPROVAL");
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_pause_shows_as_a_period_with_its_429s_by_reason_in_the_last_hour() {
    // Three points a minute, announced only on the 429 (successes carry no
    // quota headers, so nothing warns tollgate): the fourth create meets a
    // quota 429 and the whole site waits for the window's reset.
    let limits = jira_sim::limits::Limits {
        quota_points: 3,
        window_seconds: 60.0,
        headers_on_success: false,
        ..Default::default()
    };
    let s = InProcess::with_policy(
        "console-pause",
        1,
        Duration::ZERO,
        limits,
        Policy::default(),
    )
    .await;
    let base = format!("http://{}", s.running.addr);
    for i in 0..4 {
        let id = s
            .send(
                &json!({"sourceSystem": "monitoring", "externalId": format!("q{i}"),
                          "desiredOperation": "create", "projectKey": "OPS",
                          "issueType": "Incident", "summary": format!("alert {i}")}),
            )
            .await;
        if i < 3 {
            // One at a time, so no two creates share a bulk call.
            s.api
                .wait_terminal(&id, Duration::from_secs(20))
                .await
                .unwrap();
        }
    }
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed = http
        .post(format!("{base}/ui/sign-in"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form(&[("operator", "dana"), ("token", TOKEN)]))
        .send()
        .await
        .unwrap();
    let session = signed.headers()["set-cookie"].to_str().unwrap().to_string();
    let session = session.split(';').next().unwrap().to_string();
    let mut html = String::new();
    eventually("the pause and its 429 reach the overview", async || {
        html = http
            .get(format!("{base}/ui"))
            .header("Cookie", &session)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        html.contains("id=\"pauses\"")
            && html.contains("data-reason=\"jira-quota-global-based\">")
            && html.contains("even share of 3 points per 60 s")
    })
    .await;
    let pauses = &html[html.find("id=\"pauses\"").unwrap()..];
    let pauses = &pauses[..pauses.find("</table>").unwrap()];
    assert!(pauses.contains("jira-quota-global-based"), "{pauses}");
    s.running.shutdown().await;
}
