#!/usr/bin/env python3
"""Measures each Lambda function's init time and peak memory on this machine.

Runs the native release binaries (target/release/tollgate-{ingest,executor})
under a minimal Lambda Runtime API emulator written here, against moto
(DynamoDB, SQS) and jira-sim, under /usr/bin/time for peak resident memory.
Init time is from process start to the runtime's first request for work
(what Lambda bills as Init Duration); each function then serves real
invocations: API Gateway events for ingest (N creates and N/5 transitions
that wait for approval), a GET of the page and a POST decision per request
for the approval function, SQS batches for the executor.

    cargo build --release -p tollgate-ingest -p tollgate-executor -p tollgate-approval
    cargo build -p jira-sim
    python3 scripts/measure-lambdas.py [N]

Prints a Markdown table for docs/benchmarks.md.
"""

import base64, hashlib, hmac, json, os, subprocess, sys, threading, time, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import logging
import urllib.request

import boto3
from moto.server import ThreadedMotoServer

logging.getLogger("werkzeug").setLevel(logging.ERROR)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 50
SECRET = "whsec_measure"


class Runtime:
    """The Lambda Runtime API: hands out events, collects responses."""

    def __init__(self, events):
        self.events = list(events)
        self.first_next = None
        self.responses = {}
        self.durations = []
        self.sent = {}
        self.done = threading.Event()
        runtime = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if runtime.first_next is None:
                    runtime.first_next = time.monotonic()
                if not runtime.events:
                    runtime.done.set()
                    time.sleep(3600)  # a real runtime blocks until work arrives
                    return
                rid, event = str(uuid.uuid4()), runtime.events.pop(0)
                body = json.dumps(event).encode()
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", rid)
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:measure")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                runtime.sent[rid] = time.monotonic()

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                payload = self.rfile.read(length)
                rid = self.path.split("/")[-2]
                runtime.responses[rid] = (self.path.split("/")[-1], payload)
                if rid in runtime.sent:
                    runtime.durations.append(time.monotonic() - runtime.sent[rid])
                self.send_response(202)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.address = "127.0.0.1:%d" % self.server.server_address[1]


def run(binary, env, events):
    runtime = Runtime(events)
    env = dict(os.environ, **env, AWS_LAMBDA_RUNTIME_API=runtime.address,
               AWS_LAMBDA_FUNCTION_NAME="measure", AWS_LAMBDA_FUNCTION_MEMORY_SIZE="128",
               AWS_LAMBDA_FUNCTION_VERSION="1", RUST_LOG=os.environ.get("MEASURE_LOG", "warn"))
    started = time.monotonic()
    proc = subprocess.Popen(["/usr/bin/time", "-f", "maxrss_kb=%M", binary], env=env,
                            stderr=subprocess.PIPE, text=True)
    if not runtime.done.wait(300):
        proc.kill()
        raise SystemExit(f"{binary} did not finish its invocations")
    init = runtime.first_next - started
    # /usr/bin/time reports once the function exits.
    subprocess.run(["pkill", "-TERM", "-f", "^" + binary + "$"])
    _, err = proc.communicate(timeout=30)
    rss = next((int(l.split("=")[1]) for l in err.splitlines() if l.startswith("maxrss_kb=")), 0)
    for line in err.splitlines():
        if '"level":"' in line and '"level":"INFO"' not in line or os.environ.get('MEASURE_LOG'):
            print(os.path.basename(binary), line, file=sys.stderr)
    errors = [r for r, (kind, _) in runtime.responses.items() if kind != "response"]
    if errors:
        raise SystemExit(f"{binary}: {len(errors)} invocations failed: {runtime.responses[errors[0]]}")
    if os.environ.get("MEASURE_LOG"):
        print(os.path.basename(binary), "invocations (ms, in order):",
              [round(x * 1000) for x in runtime.durations], file=sys.stderr)
    d = sorted(runtime.durations)
    return {"init_ms": init * 1000, "rss_mb": rss / 1024, "n": len(d),
            "p50_ms": d[len(d) // 2] * 1000, "p99_ms": d[min(len(d) - 1, int(len(d) * 0.99))] * 1000,
            "responses": runtime.responses}


def http_event(method, path, body=None, headers=None):
    return {"version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
            "headers": headers or {},
            "requestContext": {"accountId": "123456789012", "apiId": "api", "domainName": "api.example",
                               "domainPrefix": "api", "http": {"method": method, "path": path,
                               "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "measure"},
                               "requestId": str(uuid.uuid4()), "routeKey": "$default", "stage": "$default",
                               "time": "24/Nov/2026:10:00:00 +0000", "timeEpoch": int(time.time() * 1000)},
            "body": body, "isBase64Encoded": False}


def apigw(body):
    raw = json.dumps(body).encode()
    t = str(int(time.time()))
    sig = hmac.new(SECRET.encode(), (t + ".").encode() + raw, hashlib.sha256).hexdigest()
    return http_event("POST", "/v1/events", raw.decode(),
                      {"content-type": "application/json", "tollgate-signature": f"t={t},v1={sig}"})


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def link_token(approval_id, approver, expiry_s):
    """An approve link, signed with the key tollgate derives from the webhook secret."""
    key = hmac.new(SECRET.encode(), b"tollgate approval links v1", hashlib.sha256).hexdigest()
    mac = hmac.new(key.encode(), f"tollgate-approval-v1|{approval_id}|a|{approver}|{expiry_s}".encode(),
                   hashlib.sha256).digest()
    return f"{approval_id}.a.{b64url(approver.encode())}.{expiry_s}.{b64url(mac)}"


def main():
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    endpoint = "http://127.0.0.1:%d" % moto.get_host_and_port()[1]
    aws_env = {"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1",
               "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    os.environ.update(aws_env)
    ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
    gsi = lambda n: {"IndexName": n, "KeySchema": [{"AttributeName": n + "pk", "KeyType": "HASH"},
                     {"AttributeName": n + "sk", "KeyType": "RANGE"}], "Projection": {"ProjectionType": "KEYS_ONLY"}}
    ddb.create_table(TableName="tollgate", BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in
                                           ["pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk"]],
                     GlobalSecondaryIndexes=[gsi("gsi1"), gsi("gsi2")])
    queue = sqs.create_queue(QueueName="tollgate-work")["QueueUrl"]
    sim = subprocess.Popen([os.path.join(TARGET, "debug", "jira-sim"), "--listen", "127.0.0.1:0"],
                           stdout=subprocess.PIPE, text=True)
    sim_url = next(l.split()[-1] for l in sim.stdout if "listening on" in l)
    env = {"TOLLGATE_TABLE": "tollgate", "TOLLGATE_QUEUE_URL": queue, "TOLLGATE_JIRA_URL": sim_url,
           "TOLLGATE_WEBHOOK_SECRET": SECRET, "TOLLGATE_JIRA_EMAIL": "sim@example.com",
           "TOLLGATE_JIRA_API_TOKEN": "sim-token", "TOLLGATE_APPROVERS": "lead@example.com",
           "TOLLGATE_PUBLIC_URL": "https://api.example"}
    rows = []
    events = [apigw({"sourceSystem": "measure", "externalId": f"a-{i}", "desiredOperation": "create",
                     "projectKey": "OPS", "issueType": "Incident", "summary": f"alert {i}"}) for i in range(N)]
    gated = N // 5
    events += [apigw({"sourceSystem": "measure", "externalId": f"a-{i}", "desiredOperation": "transition",
                      "transition": "Done"}) for i in range(gated)]
    ingest = run(os.path.join(TARGET, "release", "tollgate-ingest"), env, events)
    statuses = {json.loads(p)["statusCode"] for _, p in ingest["responses"].values()}
    assert statuses == {202}, statuses
    rows.append(("tollgate-ingest", ingest, f"{N} signed creates + {gated} gated transitions (API Gateway v2)"))

    approvals = [i for i in ddb.scan(TableName="tollgate")["Items"] if i["pk"]["S"].startswith("APPROVAL#")]
    assert len(approvals) == gated, len(approvals)
    page_events = []
    for a in approvals:
        path = "/v1/approvals/" + link_token(a["id"]["S"], "lead@example.com", int(a["expiresAt"]["N"]) // 1000)
        page_events += [http_event("GET", path), http_event("POST", path)]
    approval = run(os.path.join(TARGET, "release", "tollgate-approval"), env, page_events)
    codes = sorted(json.loads(p)["statusCode"] for _, p in approval["responses"].values())
    assert codes == [200] * len(page_events), codes
    rows.append(("tollgate-approval", approval, f"{gated} pages (GET) + {gated} decisions (POST)"))

    batches = []
    while True:
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=5, AttributeNames=["All"]).get("Messages", [])
        if not got:
            break
        batches.append({"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"],
                                     "body": m["Body"], "attributes": m.get("Attributes", {}),
                                     "messageAttributes": {}, "eventSource": "aws:sqs",
                                     "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:tollgate-work",
                                     "awsRegion": "us-east-1"} for m in got]})
    executor = run(os.path.join(TARGET, "release", "tollgate-executor"), env, batches)
    rows.append(("tollgate-executor", executor,
                 f"{len(batches)} SQS batches of up to 5 (the creates and the approved transitions)"))
    failures = sum(len(json.loads(p).get("batchItemFailures", [])) for _, p in executor["responses"].values())
    with urllib.request.urlopen(sim_url + "/_sim/report") as r:
        report = json.load(r)
    sim.terminate()
    assert report["totals"]["issues"] == N and report["totals"]["duplicateIssues"] == 0, report["totals"]
    print(f"jira-sim: {report['totals']['issues']} issues, {report['totals']['transitions']} transitions; "
          f"{failures} records handed back for later (transitions waiting for their create)", file=sys.stderr)

    print("| function | init (ms) | peak RSS (MiB) | invocations | p50 (ms) | p99 (ms) | work |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, r, work in rows:
        print(f"| {name} | {r['init_ms']:.0f} | {r['rss_mb']:.1f} | {r['n']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {work} |")


if __name__ == "__main__":
    main()
