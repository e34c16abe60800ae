#!/usr/bin/env python3
"""Checks scripts/deploy-code against a local emulator's Lambda API (moto):
three functions exist as SAM would leave them (role, memory, timeout,
environment); deploy-code updates them with the built code; afterwards each
function's code is the new one and its configuration is what it was.

    python3 infra/deploy_code_check.py      # after scripts/build-lambdas

Run by the test command right after the Lambda build.
"""

import io
import os
import socket
import subprocess
import sys
import time
import zipfile

import boto3

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REGION = "us-east-1"
STACK = "deploy-code-check"
FUNCTIONS = {"tollgate-ingest": f"{STACK}-ingest", "tollgate-approval": f"{STACK}-approval",
             "tollgate-executor": f"{STACK}-executor"}
KEPT = ("Role", "MemorySize", "Timeout", "Environment", "Handler", "Runtime", "Architectures")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def placeholder_zip():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\necho placeholder\n")
    return out.getvalue()


def main():
    port = free_port()
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                   AWS_REGION=REGION, AWS_DEFAULT_REGION=REGION)
        session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                        region_name=REGION)
        client = lambda name: session.client(name, endpoint_url=endpoint)
        # What SAM left: a stack, and its functions with their configuration.
        client("cloudformation").create_stack(
            StackName=STACK,
            TemplateBody='{"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}')
        role = client("iam").create_role(
            RoleName=f"{STACK}-role",
            AssumeRolePolicyDocument='{"Version": "2012-10-17", "Statement": []}')["Role"]["Arn"]
        lam = client("lambda")
        before = {}
        for i, name in enumerate(FUNCTIONS.values()):
            lam.create_function(
                FunctionName=name, Runtime="provided.al2023", Handler="bootstrap", Role=role,
                Architectures=["arm64"], MemorySize=128, Timeout=10 + i,
                Environment={"Variables": {"TOLLGATE_TABLE": "kept", "WHICH": name}},
                Code={"ZipFile": placeholder_zip()})
            before[name] = lam.get_function(FunctionName=name)["Configuration"]

        subprocess.run([os.path.join(ROOT, "scripts", "deploy-code"), "--stack", STACK,
                        "--endpoint-url", endpoint, "--region", REGION, "--no-build"],
                       cwd=ROOT, env=env, check=True)

        for binary, name in FUNCTIONS.items():
            after = lam.get_function(FunctionName=name)["Configuration"]
            old = before[name]
            if after["CodeSha256"] == old["CodeSha256"]:
                sys.exit(f"{name}: its code did not change")
            if after["CodeSize"] < 1_000_000:
                sys.exit(f"{name}: {after['CodeSize']} bytes is not {binary}'s build")
            for key in KEPT:
                if after.get(key) != old.get(key):
                    sys.exit(f"{name}: {key} changed from {old.get(key)!r} to {after.get(key)!r}")
            print(f"{name}: code replaced ({after['CodeSize']} bytes); configuration as SAM left it")
    finally:
        moto.terminate()
        moto.wait(timeout=10)


if __name__ == "__main__":
    main()
