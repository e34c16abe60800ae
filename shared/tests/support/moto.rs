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
///
/// moto makes a transaction all-or-nothing by deep-copying every table it
/// touches before each one, so a write costs time in proportion to the
/// whole table (seconds per transaction once a table holds a large batch).
/// The same guarantee is kept here by saving only the items the
/// transaction names and putting them back if it fails: nothing else can
/// change inside it.
const SERVER: &str = r#"
import copy, logging, os, sys, threading
logging.getLogger("werkzeug").setLevel(logging.ERROR)
from werkzeug.serving import make_server
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models.table import Table
from moto.dynamodb.models.dynamo_type import DynamoType

class TablesPassThrough:
    def __getattr__(self, name):
        return getattr(copy, name)
    @staticmethod
    def deepcopy(x, memo=None):
        return x if isinstance(x, Table) else copy.deepcopy(x, memo)

dynamodb_models.copy = TablesPassThrough()
whole_table_transaction = dynamodb_models.DynamoDBBackend.transact_write_items

def item_slot(table, attrs):
    h = DynamoType(attrs[table.hash_key_attr])
    r = DynamoType(attrs[table.range_key_attr]) if table.range_key_attr else None
    return h, r

def transact_write_items(self, transact_items):
    saved = []
    for entry in transact_items:
        op_type, op = next(iter(entry.items()))
        table = self.tables.get(op.get("TableName"))
        attrs = op.get("Item") if op_type == "Put" else op.get("Key")
        if table is None or not attrs or table.hash_key_attr not in attrs:
            continue
        if table.range_key_attr and table.range_key_attr not in attrs:
            continue
        h, r = item_slot(table, attrs)
        if r is None:
            current = table.items.get(h)
        else:
            current = table.items.get(h, {}).get(r)
        saved.append((table, h, r, copy.deepcopy(current)))
    try:
        return whole_table_transaction(self, transact_items)
    except Exception:
        for table, h, r, item in reversed(saved):
            if r is None:
                if item is None:
                    table.items.pop(h, None)
                else:
                    table.items[h] = item
            else:
                part = table.items[h]
                if item is None:
                    part.pop(r, None)
                else:
                    part[r] = item
                if not part:
                    table.items.pop(h, None)
        raise

dynamodb_models.DynamoDBBackend.transact_write_items = transact_write_items
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
