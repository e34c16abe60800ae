#!/usr/bin/env python3
"""Runs tollgate's Lambda stack on this machine, the way cargo-lambda users
run functions: `./scripts/lambda-local` (see the README, "Run the Lambda
stack locally").

What it starts, and stops on Ctrl-C:

* an AWS emulator (moto) on a free loopback port;
* jira-sim (unless --jira-url names a real site), with the Jira
  credentials put in the stack's secret;
* the stack's table, queues, dead-letter queue and secret, created from
  infra/template.yaml by infra/deploy_to_emulator.py;
* `cargo lambda watch` running the three functions with the environment
  the template gives them (pointed at the emulator), under
  http://127.0.0.1:PORT/lambda-url/<function>/;
* an event-source-mapping emulator: it polls the work and bulk queues and
  invokes the executor with real SQS event batches (batch size 5, as the
  template), deletes what the executor did not report as a batch item
  failure, and leaves the rest to come back when its visibility says;
  and the one-minute schedule of the sweep;
* a small notify webhook that prints each approval request's links;
* an operator token in the secret, for the console (`/ui` on the approval
  function).

It prints the ingest URL, the webhook secret and a command that sends a
signed test event; then `lambda-local ready` (scripts wait for that line).
"""

import argparse
import hashlib
import hmac
import json
import os
import secrets as secrets_module
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REGION = "us-east-1"
STACK = "tollgate-local"
BATCH_SIZE = 5
SWEEP_EVERY = 60.0

children = []
stopping = threading.Event()


def say(text):
    print(text, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd, **kw):
    """A child in its own process group, so stopping it stops what it ran."""
    p = subprocess.Popen(cmd, start_new_session=True, **kw)
    children.append(p)
    return p


def stop_all():
    stopping.set()
    for p in reversed(children):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.time() + 10
    for p in children:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def wait_for_port(port, what, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"{what} did not start on port {port}")


def target_dir():
    return os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))


def start_moto():
    port = free_port()
    start([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, "moto")
    return f"http://127.0.0.1:{port}"


def start_jira_sim():
    subprocess.run(["cargo", "build", "--quiet", "-p", "jira-sim", "--bin", "jira-sim"],
                   cwd=ROOT, check=True)
    env = dict(os.environ, JIRA_SIM_EMAIL="sim@example.com", JIRA_SIM_API_TOKEN="sim-token")
    p = start([os.path.join(target_dir(), "debug", "jira-sim"), "--listen", "127.0.0.1:0"],
              env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in p.stdout:
        if line.startswith("jira-sim listening on "):
            threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
            return line.split()[3]
    raise SystemExit("jira-sim did not start")


def deploy(endpoint, jira_url, approvers):
    out = subprocess.run([sys.executable, os.path.join(HERE, "deploy_to_emulator.py"),
                          "--endpoint", endpoint, "--stack", STACK, "--jira-url", jira_url,
                          "--approvers", approvers, "--region", REGION],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


class NotifyWebhook(BaseHTTPRequestHandler):
    """Receives approval requests (TOLLGATE's notify webhook) and prints
    their links: locally, this is where approvers are told."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
        self.send_response(204)
        self.end_headers()
        try:
            notice = json.loads(body)
        except ValueError:
            return
        if notice.get("type") == "approval.requested":
            say(f"approval requested ({notice.get('rule')}): {' '.join(notice.get('intent', []))}")
            for a in notice.get("approvers", []):
                say(f"  {a['approver']} approve: {a['approveUrl']}")
                say(f"  {a['approver']} deny:    {a['denyUrl']}")
        else:
            say(f"notice: {json.dumps(notice)}")

    def log_message(self, *args):
        pass


def start_notify_webhook():
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotifyWebhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/approvals"


def invoke(port, function, event, timeout=600):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/2015-03-31/functions/{function}/invocations",
        data=json.dumps(event).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        text = r.read().decode() or "null"
        return json.loads(text)


def sqs_event(messages, queue_arn):
    """The event Lambda's SQS event source hands the function."""
    return {"Records": [{
        "messageId": m["MessageId"],
        "receiptHandle": m["ReceiptHandle"],
        "body": m["Body"],
        "attributes": m.get("Attributes", {}),
        "messageAttributes": {},
        "md5OfBody": m.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    } for m in messages]}


def poll_queue(sqs, url, port):
    """One queue's event source mapping: batches of up to five, partial
    batch responses honoured (failed items are left to their visibility)."""
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    while not stopping.is_set():
        try:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=BATCH_SIZE,
                                      WaitTimeSeconds=1, AttributeNames=["All"])
        except Exception as e:  # the emulator stopping, mostly
            if not stopping.is_set():
                say(f"event source: receive failed: {e}")
                time.sleep(1)
            continue
        messages = got.get("Messages", [])
        if not messages:
            continue
        try:
            answer = invoke(port, "tollgate-executor", sqs_event(messages, arn)) or {}
        except (urllib.error.URLError, OSError, ValueError) as e:
            # The whole batch returns after its visibility timeout.
            say(f"event source: the executor failed ({e}); the batch comes back")
            continue
        failed = {f.get("itemIdentifier") for f in answer.get("batchItemFailures", [])}
        for m in messages:
            if m["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def sweep_schedule(port):
    """The template's one-minute schedule (an EventBridge scheduled event)."""
    while not stopping.wait(SWEEP_EVERY):
        event = {"version": "0", "id": "local-sweep", "detail-type": "Scheduled Event",
                 "source": "aws.events", "account": "123456789012", "region": REGION,
                 "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "resources": [], "detail": {}}
        try:
            invoke(port, "tollgate-executor", event)
        except (urllib.error.URLError, OSError, ValueError) as e:
            say(f"sweep: the executor failed ({e}); next minute again")


def signed_curl(url, secret):
    body = ('{"sourceSystem":"monitoring","externalId":"disk-db7","desiredOperation":"create",'
            '"projectKey":"OPS","issueType":"Incident","summary":"Disk 95% full on db-7"}')
    return (f"body='{body}'\n"
            "t=$(date +%s)\n"
            f"sig=$(printf '%s.%s' \"$t\" \"$body\" | openssl dgst -sha256 -hmac '{secret}' -hex | sed 's/^.* //')\n"
            f"curl -sS {url} -H 'Content-Type: application/json' -H \"Tollgate-Signature: t=$t,v1=$sig\" -d \"$body\"")


def interrupted(*_):
    """SIGTERM stops the stack as Ctrl-C does."""
    raise KeyboardInterrupt()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=9000, help="cargo lambda watch's invoke port")
    ap.add_argument("--jira-url", help="a real Jira site instead of jira-sim")
    ap.add_argument("--jira-email", default=os.environ.get("TOLLGATE_JIRA_EMAIL"))
    ap.add_argument("--jira-api-token", default=os.environ.get("TOLLGATE_JIRA_API_TOKEN"))
    ap.add_argument("--approvers", default="lead@example.com",
                    help="approvers of the built-in policy (transitions wait for one)")
    args = ap.parse_args()
    if shutil.which("cargo-lambda") is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", "cargo-lambda", "ziglang"], check=True)

    signal.signal(signal.SIGTERM, interrupted)
    try:
        endpoint = start_moto()
        if args.jira_url:
            jira_url, email, token = args.jira_url, args.jira_email, args.jira_api_token
            if not (email and token):
                raise SystemExit("--jira-url needs --jira-email and --jira-api-token "
                                 "(or TOLLGATE_JIRA_EMAIL / TOLLGATE_JIRA_API_TOKEN)")
        else:
            jira_url, email, token = start_jira_sim(), "sim@example.com", "sim-token"
        report = deploy(endpoint, jira_url, args.approvers)
        outputs = report["outputs"]

        session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                        region_name=REGION)
        secrets = session.client("secretsmanager", endpoint_url=endpoint)
        secret_id = report["functions"]["IngestFunction"]["environment"]["TOLLGATE_SECRET_ID"]
        doc = json.loads(secrets.get_secret_value(SecretId=secret_id)["SecretString"])
        operator_token = secrets_module.token_urlsafe(18)
        doc.update(jiraEmail=email, jiraApiToken=token, notifyWebhookUrl=start_notify_webhook(),
                   operatorTokens=[operator_token])
        secrets.put_secret_value(SecretId=secret_id, SecretString=json.dumps(doc))
        webhook_secret = doc["webhookSecrets"][0] if isinstance(doc["webhookSecrets"], list) \
            else doc["webhookSecrets"].split(",")[0]

        base = f"http://127.0.0.1:{args.port}/lambda-url"
        env = dict(report["functions"]["IngestFunction"]["environment"])
        env.update(report["functions"]["ExecutorFunction"]["environment"])
        env.update(AWS_ENDPOINT_URL=endpoint, AWS_REGION=REGION, AWS_ACCESS_KEY_ID="testing",
                   AWS_SECRET_ACCESS_KEY="testing",
                   TOLLGATE_PUBLIC_URL=f"{base}/tollgate-approval",
                   RUST_LOG=os.environ.get("RUST_LOG", "info"))
        # An env file (values may hold commas); empty settings are left out,
        # as unset ones read the same.
        env_file = os.path.join(target_dir(), "lambda-local.env")
        os.makedirs(os.path.dirname(env_file), exist_ok=True)
        with open(env_file, "w") as f:
            for k, v in env.items():
                if str(v).strip():
                    f.write(f"{k}={v}\n")
        start(["cargo", "lambda", "watch", "--invoke-address", "127.0.0.1",
               "--invoke-port", str(args.port), "--ignore-changes", "--env-file", env_file],
              cwd=ROOT, stdin=subprocess.DEVNULL)
        wait_for_port(args.port, "cargo lambda watch", 120)

        sqs = session.client("sqs", endpoint_url=endpoint)
        for url in {outputs["WorkQueueUrl"], outputs.get("BulkQueueUrl", outputs["WorkQueueUrl"])}:
            threading.Thread(target=poll_queue, args=(sqs, url, args.port), daemon=True).start()
        threading.Thread(target=sweep_schedule, args=(args.port,), daemon=True).start()

        ingest = f"{base}/tollgate-ingest/v1/events"
        say("")
        say("tollgate's Lambda stack runs locally")
        say(f"  ingest     {ingest}")
        say(f"  jobs       {base}/tollgate-ingest/v1/jobs/<jobId>")
        say(f"  approvals  {base}/tollgate-approval/v1/approvals/<token> (links are printed here)")
        console = f"{base}/tollgate-approval/ui"
        say(f"  console    {console}  (operator token {operator_token})")
        say(f"  jira       {jira_url}" + ("  (jira-sim: GET /_sim/report)" if not args.jira_url else ""))
        say(f"  AWS        AWS_ENDPOINT_URL={endpoint} AWS_REGION={REGION} "
            "AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing")
        say(f"  operate    (with the AWS line above) tollgate --stack {STACK} jobs list")
        say(f"  webhook secret  {webhook_secret}")
        say("Send a signed event:")
        say(signed_curl(ingest, webhook_secret))
        say(f"lambda-local ready ingest={ingest} secret={webhook_secret} jira={jira_url} aws={endpoint} "
            f"console={console} operator={operator_token}")
        while not stopping.is_set():
            for p in children:
                if p.poll() is not None:
                    raise SystemExit(f"{p.args[0]} exited ({p.returncode})")
            time.sleep(1)
    except KeyboardInterrupt:
        say("stopping")
    finally:
        stop_all()


if __name__ == "__main__":
    main()
