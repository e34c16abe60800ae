//! Keeps `docs/openapi.yaml` honest: every route `serve` has is documented,
//! every documented operation exists, and what a live server answers to a
//! plain (unsigned, made-up) request is among the statuses documented for it.

use jira_sim::limits::Limits;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;
use tollgate_e2e::InProcess;

/// (path with `{}` for parameters, method) → documented statuses.
fn documented() -> BTreeMap<(String, String), BTreeSet<u16>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("docs/openapi.yaml")).unwrap();
    let mut ops = BTreeMap::new();
    let (mut path, mut method) = (None::<String>, None::<String>);
    let mut in_paths = false;
    for line in text.lines() {
        if !line.starts_with(' ') {
            in_paths = line == "paths:";
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(p) = line.strip_prefix("  /").and_then(|l| l.strip_suffix(':')) {
            path = Some(normalize(&format!("/{p}")));
            method = None;
        } else if let Some(m) = line.strip_prefix("    ").and_then(|l| l.strip_suffix(':'))
            && matches!(m, "get" | "post" | "put" | "delete")
        {
            method = Some(m.to_string());
            ops.insert((path.clone().unwrap(), m.to_string()), BTreeSet::new());
        } else if let (Some(p), Some(m)) = (&path, &method)
            && let Some(code) = line
                .strip_prefix("        \"")
                .and_then(|l| l.get(..3))
                .and_then(|c| c.parse::<u16>().ok())
        {
            ops.get_mut(&(p.clone(), m.clone())).unwrap().insert(code);
        }
    }
    ops
}

/// `/v1/jobs/{job_id}` and `/v1/jobs/{jobId}` are the same route.
fn normalize(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            c if !in_param => out.push(c),
            _ => {}
        }
    }
    out
}

/// The routes `serve` registers, read from its router.
fn served() -> BTreeSet<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = [
        "tools/tollgate/src/http.rs",
        "tools/tollgate/src/operator_routes.rs",
        "tools/tollgate/src/console_routes.rs",
    ]
    .map(|f| std::fs::read_to_string(root.join(f)).unwrap())
    .join("\n");
    let mut routes = BTreeSet::new();
    let calls: Vec<&str> = text.split(".route(").skip(1).collect();
    for call in calls {
        let Some(path) = call.split('"').nth(1) else {
            continue;
        };
        let end = call.find("\n        .").unwrap_or(call.len());
        let handlers = &call[..end];
        for method in ["get", "post", "put", "delete"] {
            if handlers.contains(&format!("{method}(")) {
                routes.insert((normalize(path), method.to_string()));
            }
        }
    }
    routes
}

#[test]
fn every_served_route_is_documented_and_every_documented_one_is_served() {
    let documented: BTreeSet<(String, String)> = documented().into_keys().collect();
    let served = served();
    assert!(served.len() >= 10, "router not read: {served:?}");
    assert_eq!(
        served.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "served but not in docs/openapi.yaml"
    );
    assert_eq!(
        documented.difference(&served).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "documented but not served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_server_answers_each_operation_with_a_documented_status() {
    let s = InProcess::start("openapi", 1, Duration::ZERO, Limits::default()).await;
    let job = "01a20000-0000-7000-8000-000000000000";
    for ((path, method), statuses) in documented() {
        let concrete = path
            .replacen(
                "{}",
                if path.starts_with("/v1/jobs") {
                    job
                } else {
                    "nothing"
                },
                1,
            )
            .replace("{}", "pause");
        let url = format!("{}{concrete}", s.api.base);
        let req = match method.as_str() {
            "get" => s.api.http.get(&url),
            _ => s
                .api
                .http
                .post(&url)
                .header("Content-Type", "application/json")
                .body("{}"),
        };
        let status = req.send().await.unwrap().status().as_u16();
        assert!(
            statuses.contains(&status),
            "{method} {path}: answered {status}, documented {statuses:?}"
        );
    }
    s.running.shutdown().await;
}
