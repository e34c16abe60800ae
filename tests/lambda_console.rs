//! The operator console on the approval function, as API Gateway invokes
//! it (payload 2.0 events, cookies in their own list) over DynamoDB and SQS
//! in moto: sign in, the census, a CSRF refusal, an approval the executor
//! then runs, the filters, and links under cargo lambda's prefix.

#[path = "../shared/tests/support/moto.rs"]
mod moto;
#[path = "lambda/support.rs"]
mod support;

use jira_sim::limits::Limits;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;
use support::*;
use tollgate::domain::ids::JobId;
use tollgate::domain::job::JobState;
use tollgate::domain::policy::Policy;
use tollgate::ports::JobStore;

/// The text between `attr="` and the next quote after `marker`.
fn attribute_after<'h>(html: &'h str, marker: &str, attr: &str) -> &'h str {
    let from = html
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in {html}"));
    let rest = &html[from..];
    let at = rest.find(&format!("{attr}=\"")).unwrap() + attr.len() + 2;
    rest[at..].split('"').next().unwrap()
}

/// The number a census card or cell shows, after `marker`.
fn figure_after(html: &str, marker: &str) -> String {
    let from = html
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in {html}"));
    let rest = &html[from + marker.len()..];
    let rest = rest.split_once('>').unwrap().1;
    let rest = rest.strip_prefix("<b>").unwrap_or(rest);
    rest.split('<').next().unwrap().to_string()
}

fn text(resp: &lambda_http::Response<lambda_http::Body>) -> String {
    String::from_utf8_lossy(resp.body().as_ref()).into_owned()
}

#[tokio::test]
async fn the_approval_function_serves_the_console_over_dynamodb_and_sqs() {
    let aws = aws().await;
    let (site, sim) = sim(Limits::default()).await;
    let policy = Policy::parse("approvers = [\"lead@example.com\"]").unwrap();
    let executor = Instance::new(&aws, &site, "lambda-console", 1);
    let function = ApprovalFunction::new(policy.clone(), Some("op-token"), &site);
    let https = json!({"x-forwarded-proto": "https"});

    let created = call_ingest_with(&aws, signed_post(&alert(700), false), &policy).await;
    let mut jobs: HashSet<String> = [created.body["jobId"].as_str().unwrap().to_string()].into();
    executor.drain(&jobs, Duration::from_secs(20)).await;
    let transition = json!({"sourceSystem": "alertmanager", "externalId": "alert-700",
                            "desiredOperation": "transition", "transition": "Done"});
    let gated = call_ingest_with(&aws, signed_post(&transition, false), &policy).await;
    assert_eq!(gated.body["state"], "PENDING_APPROVAL");
    let gated_id = gated.body["jobId"].as_str().unwrap().to_string();
    jobs.insert(gated_id.clone());

    // No session: to sign-in; a wrong token is refused.
    let anonymous = function
        .call(&aws, apigw("GET", "/ui", None, https.clone(), false))
        .await;
    assert_eq!(anonymous.status(), 303);
    assert_eq!(anonymous.headers()["location"], "/ui/sign-in");
    let form =
        json!({"content-type": "application/x-www-form-urlencoded", "x-forwarded-proto": "https"});
    let wrong = function
        .call(
            &aws,
            apigw(
                "POST",
                "/ui/sign-in",
                Some(b"operator=Dana&token=nope"),
                form.clone(),
                false,
            ),
        )
        .await;
    assert_eq!(wrong.status(), 401);
    let signed = function
        .call(
            &aws,
            apigw(
                "POST",
                "/ui/sign-in",
                Some(b"operator=Dana&token=op-token"),
                form.clone(),
                true,
            ),
        )
        .await;
    assert_eq!(signed.status(), 303);
    let set_cookie = signed.headers()["set-cookie"].to_str().unwrap().to_string();
    for part in ["Path=/ui", "HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(set_cookie.contains(part), "{part} in {set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let with_cookie = |extra: &Value| {
        let mut h = extra.clone();
        h["cookie"] = json!(cookie);
        h
    };

    // The overview counts what DynamoDB and SQS hold.
    let overview = function
        .call(&aws, apigw("GET", "/ui", None, with_cookie(&https), false))
        .await;
    assert_eq!(overview.status(), 200);
    let html = text(&overview);
    assert_eq!(figure_after(&html, "data-state=\"SUCCEEDED\""), "1");
    assert_eq!(figure_after(&html, "data-state=\"PENDING_APPROVAL\""), "1");
    assert_eq!(figure_after(&html, "id=\"approvals-waiting\""), "1");
    assert_eq!(figure_after(&html, "id=\"queue-depth\""), "0");
    assert!(html.contains("see CloudWatch"), "SQS keeps no oldest age");

    // Approve from the approvals page, with its CSRF token.
    let page = function
        .call(
            &aws,
            apigw("GET", "/ui/approvals", None, with_cookie(&https), false),
        )
        .await;
    let html = text(&page);
    let csrf = attribute_after(&html, "name=\"csrf\"", "value").to_string();
    let approval = attribute_after(&html, "data-approval=", "data-approval").to_string();
    let without_csrf = format!("action=approve&approval={approval}&back=%2Fui%2Fapprovals");
    let refused = function
        .call(
            &aws,
            apigw(
                "POST",
                "/ui/act",
                Some(without_csrf.as_bytes()),
                with_cookie(&form),
                false,
            ),
        )
        .await;
    assert_eq!(refused.status(), 403);
    let job = |id: &str| {
        let store = &aws.store;
        let id = JobId::parse(id).unwrap();
        async move { store.job(&id).await.unwrap().unwrap() }
    };
    assert_eq!(job(&gated_id).await.state, JobState::PendingApproval);
    let approve = format!("{without_csrf}&csrf={csrf}");
    let done = function
        .call(
            &aws,
            apigw(
                "POST",
                "/ui/act",
                Some(approve.as_bytes()),
                with_cookie(&form),
                false,
            ),
        )
        .await;
    assert_eq!(done.status(), 303);
    let back = done.headers()["location"].to_str().unwrap();
    assert!(back.starts_with("/ui/approvals?done="), "{back}");

    executor.drain(&jobs, Duration::from_secs(20)).await;
    assert_eq!(job(&gated_id).await.state, JobState::Succeeded);
    assert_eq!(sim.report()["issues"][0]["status"], "Done");
    let trail = aws
        .store
        .audit_trail(&JobId::parse(&gated_id).unwrap())
        .await
        .unwrap();
    assert!(
        trail.iter().any(|e| e.actor.contains("Dana")),
        "the operator's name is in the trail: {trail:?}"
    );

    // The job page, through a prefix (cargo lambda serves functions under
    // /lambda-url/<name>/): links and forms carry it.
    let prefixed = function
        .call(
            &aws,
            apigw(
                "GET",
                &format!("/lambda-url/tollgate-approval/ui/jobs?id={gated_id}"),
                None,
                with_cookie(&https),
                false,
            ),
        )
        .await;
    assert_eq!(prefixed.status(), 200);
    let html = text(&prefixed);
    assert!(html.contains("SUCCEEDED"), "{html}");
    assert!(
        html.contains("action=\"/lambda-url/tollgate-approval/ui/sign-out\""),
        "{html}"
    );

    // The jobs list filters by time and source, and its form keeps the
    // prefix too.
    let list = |query: &str| {
        let path = format!("/lambda-url/tollgate-approval/ui/jobs?{query}");
        let req = apigw("GET", &path, None, with_cookie(&https), false);
        let function = &function;
        let aws = &aws;
        async move { text(&function.call(aws, req).await) }
    };
    let recent = list("since=15m&source=alertmanager").await;
    assert!(
        recent.contains("action=\"/lambda-url/tollgate-approval/ui/jobs\""),
        "{recent}"
    );
    assert!(recent.contains("<option value=\"15m\" selected>"));
    assert_eq!(recent.matches("ui/jobs?id=").count(), 2, "{recent}");
    let elsewhere = list("since=15m&source=cmdb").await;
    assert!(elsewhere.contains("no jobs found"), "{elsewhere}");
}
