//! The `tollgate` command as an operator meets it, run as the built binary:
//! global options anywhere, tollgate.toml's `db`, `--output json` on every
//! read command, headers and "no … found" lines, read-only reads,
//! completions and the man page.

use std::path::Path;
use std::process::Command;
use tollgate_e2e::{Scratch, bin};

fn run(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin("tollgate"))
        .args(args)
        .current_dir(dir)
        .env_remove("TOLLGATE_DB")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fresh_db(dir: &Scratch, name: &str) {
    drop(tollgate::adapters::sqlite::SqliteDb::open(dir.path(name)).unwrap());
}

#[test]
fn global_options_mean_the_same_before_or_after_the_subcommand() {
    let dir = Scratch::new("cli-global");
    fresh_db(&dir, "t.db");
    let placements: [&[&str]; 3] = [
        &["--db", "t.db", "jobs", "list"],
        &["jobs", "--db", "t.db", "list"],
        &["jobs", "list", "--db", "t.db"],
    ];
    for args in placements {
        let (ok, out, err) = run(&dir.0, args);
        assert!(ok, "{args:?}: {err}");
        assert_eq!(out.trim(), "no jobs found", "{args:?}");
    }
    let (ok, out, _) = run(
        &dir.0,
        &["approvals", "list", "--output", "json", "--db", "t.db"],
    );
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap(),
        serde_json::json!({"approvals": []})
    );
    let (ok, _, err) = run(&dir.0, &["jobs", "list", "--output", "yaml"]);
    assert!(!ok);
    assert!(err.contains("table") && err.contains("json"), "{err}");
}

#[test]
fn the_config_files_db_is_used_by_every_operator_command() {
    let dir = Scratch::new("cli-toml");
    fresh_db(&dir, "ops.db");
    std::fs::write(dir.path("tollgate.toml"), "db = \"ops.db\"\n").unwrap();
    for args in [
        &["jobs", "list"][..],
        &["approvals", "list"],
        &["batches", "list"],
        &["rejected", "list"],
        &["sites"],
        &["stats"],
    ] {
        let (ok, _, err) = run(&dir.0, args);
        assert!(ok, "{args:?} read ops.db through tollgate.toml: {err}");
    }
    assert!(
        !dir.path("tollgate.db").exists(),
        "no default database made"
    );
}

#[test]
fn every_read_command_prints_json_and_empty_lists_say_so() {
    let dir = Scratch::new("cli-json");
    fresh_db(&dir, "t.db");
    for (args, key) in [
        (&["jobs", "list"][..], "jobs"),
        (&["approvals", "list"], "approvals"),
        (&["batches", "list"], "batches"),
        (&["rejected", "list"], "rejections"),
        (&["sites"], "sites"),
        (&["stats"], "requests"),
    ] {
        let mut with_json = args.to_vec();
        with_json.extend(["--db", "t.db", "--output", "json"]);
        let (ok, out, err) = run(&dir.0, &with_json);
        assert!(ok, "{args:?}: {err}");
        let v: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"));
        assert!(v.get(key).is_some(), "{args:?}: {v}");
    }
    for (args, line) in [
        (&["jobs", "list"][..], "no jobs found"),
        (&["approvals", "list"], "no approval requests found waiting"),
        (&["batches", "list"], "no batches found"),
        (&["rejected", "list"], "no rejections found"),
    ] {
        let mut with_db = args.to_vec();
        with_db.extend(["--db", "t.db"]);
        let (ok, out, _) = run(&dir.0, &with_db);
        assert!(ok);
        assert_eq!(out.trim(), line, "{args:?}");
    }
}

#[test]
fn a_read_command_changes_no_byte_of_the_database() {
    let dir = Scratch::new("cli-read-only");
    fresh_db(&dir, "t.db");
    let before = std::fs::read(dir.path("t.db")).unwrap();
    for args in [
        &["jobs", "list"][..],
        &["stats"],
        &["sites"],
        &["batches", "list"],
    ] {
        let mut with_db = args.to_vec();
        with_db.extend(["--db", "t.db"]);
        assert!(run(&dir.0, &with_db).0);
    }
    assert_eq!(std::fs::read(dir.path("t.db")).unwrap(), before);
    let (ok, _, err) = run(&dir.0, &["jobs", "list", "--db", "missing.db"]);
    assert!(!ok);
    assert!(err.contains("no database at missing.db"), "{err}");
    assert!(!dir.path("missing.db").exists(), "a read never creates one");
}

#[test]
fn completions_and_the_man_page_come_from_the_same_definitions() {
    let dir = Scratch::new("cli-completions");
    for shell in ["bash", "zsh", "fish"] {
        let (ok, out, err) = run(&dir.0, &["completions", shell]);
        assert!(ok, "{shell}: {err}");
        assert!(
            out.contains("approvals") && out.contains("--output"),
            "{shell}"
        );
    }
    let (ok, man, _) = run(&dir.0, &["man"]);
    assert!(ok);
    assert!(man.contains(".TH tollgate 1"), "{man}");
    assert!(man.contains("serve") && man.contains("jobs"));
}

#[test]
fn serve_sim_says_its_issues_live_in_memory_and_restarts_keep_one_site() {
    let dir = Scratch::new("cli-sim-restarts");
    for _ in 0..2 {
        let log = std::fs::File::create(dir.path("serve.log")).unwrap();
        let mut serve = Command::new(bin("tollgate"))
            .args(["serve", "--sim", "--listen", "127.0.0.1:0", "--db", "t.db"])
            .current_dir(&dir.0)
            .env("TOLLGATE_WEBHOOK_SECRET", "s")
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let text = loop {
            let text = std::fs::read_to_string(dir.path("serve.log")).unwrap_or_default();
            if text.contains("tollgate serving") {
                break text;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "serve did not start: {text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        // Its governor row exists once the site is first seen.
        std::thread::sleep(std::time::Duration::from_millis(500));
        let _ = serve.kill();
        let _ = serve.wait();
        assert!(text.contains("keeps its issues in memory only"), "{text}");
    }
    let (ok, out, err) = run(&dir.0, &["sites", "--db", "t.db", "--output", "json"]);
    assert!(ok, "{err}");
    let sites: serde_json::Value = serde_json::from_str(&out).unwrap();
    let all = sites["sites"].as_array().unwrap();
    assert!(
        all.len() <= 1,
        "restarts of --sim do not pile up sites: {out}"
    );
}
