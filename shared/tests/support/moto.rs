//! A real local AWS emulator for tests: `moto` (PyPI `moto[server]`), one
//! server per test process on a free loopback port, started on first use.
//!
//! The server watches its stdin and exits when the test process ends (the
//! pipe closes), so no emulator outlives its tests. Each test creates its
//! own uniquely named table and queues.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// moto's WSGI app behind a threaded server, with every request handled
/// under one lock: DynamoDB makes each conditional write atomic, and moto
/// by itself checks a condition and writes without a lock, so two racing
/// conditional updates could both pass. Serialised, the emulator keeps the
/// guarantee the conformance races test.
const SERVER: &str = r#"
import logging, os, sys, threading
logging.getLogger("werkzeug").setLevel(logging.ERROR)
from werkzeug.serving import make_server
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
inner = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()
def app(environ, start_response):
    with lock:
        return list(inner(environ, start_response))
server = make_server("127.0.0.1", 0, app, threaded=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(server.server_port, flush=True)
sys.stdin.read()
os._exit(0)
"#;

pub struct Moto {
    pub endpoint: String,
    _child: Mutex<Child>,
}

static MOTO: OnceLock<Moto> = OnceLock::new();

/// The emulator's URL, starting it on first use.
pub fn endpoint() -> &'static str {
    &MOTO
        .get_or_init(|| {
            let python = std::env::var("TOLLGATE_PYTHON").unwrap_or_else(|_| "python3".into());
            let mut child = Command::new(&python)
                .args(["-c", SERVER])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {python}: {e}"));
            let stdout = child.stdout.take().expect("moto stdout");
            let mut line = String::new();
            BufReader::new(stdout)
                .read_line(&mut line)
                .expect("moto port line");
            let port: u16 = line.trim().parse().unwrap_or_else(|_| {
                panic!("moto did not start (is `moto[server]` installed? ./scripts/test-all installs it); it said {line:?}")
            });
            Moto {
                endpoint: format!("http://127.0.0.1:{port}"),
                _child: Mutex::new(child),
            }
        })
        .endpoint
}

/// SDK configuration pointing at the emulator, with fixed test credentials.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .load()
        .await
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}
