#!/usr/bin/env python3
"""Deploys infra/template.yaml into a local AWS emulator (moto) and prints what
the functions would see, so a test can run their handlers against the very
table, queues and secret the template creates.

    python3 infra/deploy_to_emulator.py --endpoint http://127.0.0.1:PORT \
        --stack tollgate-test --jira-url http://127.0.0.1:8788

1. Translates the SAM template to CloudFormation with aws-sam-translator (as
   `sam deploy` does, after `sam package` has replaced local code with S3
   artifacts), managed policies resolved against the emulator's IAM.
2. Drops the resources the emulator cannot model, by type (Lambda functions
   and their permissions and event source mappings, the HTTP API, the
   schedule's rule, the dashboard); everything else is created by the
   emulator's CloudFormation: table, queues, dead-letter queue, secret,
   roles, log groups, alarms.
3. Prints one JSON document: the translated template, the stack's outputs,
   and per function its environment with every intrinsic resolved against
   the created stack (an API that was not created resolves to a stand-in).
"""

import argparse
import json
import os
import sys
import time

import boto3
from samtranslator.public.translator import ManagedPolicyLoader
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

HERE = os.path.dirname(os.path.abspath(__file__))

# Resource types the emulator's CloudFormation cannot create (or cannot
# without code packages and a real API Gateway).
SKIPPED_TYPES = {
    "AWS::Lambda::Function",
    "AWS::Lambda::Permission",
    "AWS::Lambda::EventSourceMapping",
    "AWS::ApiGatewayV2::Api",
    "AWS::ApiGatewayV2::Stage",
    "AWS::ApiGatewayV2::Integration",
    "AWS::ApiGatewayV2::Route",
    "AWS::Events::Rule",
    "AWS::CloudWatch::Dashboard",
    "AWS::CloudWatch::Alarm",
    # The emulator's CloudFormation ignores secrets; this script creates the
    # secret itself, as CloudFormation would (see create_secrets).
    "AWS::SecretsManager::Secret",
}
API_STAND_IN = "localapi"


def references(node):
    """Names a template fragment refers to (Ref, GetAtt, Sub)."""
    found = set()
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "Ref" and isinstance(v, str):
                found.add(v)
            elif k == "Fn::GetAtt":
                found.add(v[0] if isinstance(v, list) else v.split(".")[0])
            elif k == "Fn::Sub":
                text = v[0] if isinstance(v, list) else v
                for part in text.split("${")[1:]:
                    found.add(part.split("}")[0].split(".")[0])
                if isinstance(v, list):
                    found |= references(v[1])
            else:
                found |= references(v)
    elif isinstance(node, list):
        for item in node:
            found |= references(item)
    return found


def substitute(node, values):
    """The fragment with `{"Ref": name}` replaced by `values[name]`."""
    if isinstance(node, dict):
        if set(node) == {"Ref"} and node["Ref"] in values:
            return values[node["Ref"]]
        return {k: substitute(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute(v, values) for v in node]
    return node


def create_secrets(secretsmanager, stack, resources):
    """Creates each template secret as CloudFormation would: the template
    document with a generated value under GenerateStringKey. Returns their
    ARNs by logical id."""
    import secrets as rand
    import string
    arns = {}
    for name, r in resources.items():
        if r["Type"] != "AWS::SecretsManager::Secret":
            continue
        gen = r["Properties"].get("GenerateSecretString", {})
        doc = json.loads(gen.get("SecretStringTemplate", "{}"))
        if "GenerateStringKey" in gen:
            alphabet = string.ascii_letters + string.digits
            doc[gen["GenerateStringKey"]] = "".join(
                rand.choice(alphabet) for _ in range(gen.get("PasswordLength", 32)))
        out = secretsmanager.create_secret(Name=f"{stack}-{name}", SecretString=json.dumps(doc),
                                           Description=r["Properties"].get("Description", ""))
        arns[name] = out["ARN"]
    return arns


class Resolver:
    """Resolves intrinsic functions against a created stack."""

    def __init__(self, cfn, sqs, stack, params, region, outputs_by_ref):
        self.params = dict(params)
        self.params.update({"AWS::Region": region, "AWS::URLSuffix": "amazonaws.com",
                            "AWS::StackName": stack, "AWS::Partition": "aws",
                            "AWS::AccountId": "123456789012"})
        # The emulator leaves a few resources unnamed in this listing (the
        # secret among them); the stack's outputs name those.
        self.physical = dict(outputs_by_ref)
        self.physical.update({r["LogicalResourceId"]: r["PhysicalResourceId"]
                              for r in cfn.describe_stack_resources(StackName=stack)["StackResources"]
                              if "LogicalResourceId" in r})
        self.sqs = sqs

    def ref(self, name):
        if name in self.params:
            return str(self.params[name])
        if name in self.physical:
            return self.physical[name]
        return API_STAND_IN

    def value(self, node):
        if isinstance(node, (str, int, float, bool)):
            return str(node)
        if "Ref" in node:
            return self.ref(node["Ref"])
        if "Fn::Sub" in node:
            text = node["Fn::Sub"]
            for name in references({"Fn::Sub": text}):
                text = text.replace("${" + name + "}", self.ref(name))
            return text
        raise SystemExit(f"cannot resolve {node}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--stack", default="tollgate-test")
    ap.add_argument("--jira-url", default="http://127.0.0.1:8788")
    ap.add_argument("--approvers", default="")
    ap.add_argument("--region", default="us-east-1")
    args = ap.parse_args()

    # The translator reads the region (a pseudo-parameter) from the default session.
    os.environ["AWS_DEFAULT_REGION"] = args.region
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                    region_name=args.region)
    client = lambda name: session.client(name, endpoint_url=args.endpoint)
    with open(os.path.join(HERE, "template.yaml")) as f:
        sam = yaml_parse(f.read())
    # What `sam package` does: local code becomes an uploaded artifact.
    for name, r in sam["Resources"].items():
        if r["Type"] == "AWS::Serverless::Function":
            r["Properties"]["CodeUri"] = f"s3://tollgate-artifacts/{name}/bootstrap.zip"
    params = {"JiraUrl": args.jira_url, "Approvers": args.approvers}
    translated = transform(sam, params, ManagedPolicyLoader(client("iam")))

    resources = translated["Resources"]
    skipped = {name for name, r in resources.items() if r["Type"] in SKIPPED_TYPES}
    # Secrets are made here, so what refers to them gets their ARN.
    made = create_secrets(client("secretsmanager"), args.stack, resources)
    deployable = {n: substitute(r, made) for n, r in resources.items() if n not in skipped}
    dangling = {n for n, r in deployable.items() if references(r) & skipped}
    if dangling:
        raise SystemExit(f"resources that would be created refer to skipped ones: {sorted(dangling)}")
    outputs = {n: substitute(o, made) for n, o in translated.get("Outputs", {}).items()}
    outputs = {n: o for n, o in outputs.items() if not references(o) & skipped}
    body = dict(translated, Resources=deployable, Outputs=outputs)

    cfn = client("cloudformation")
    cfn.create_stack(StackName=args.stack, TemplateBody=json.dumps(body),
                     Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
                     Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"])
    for _ in range(300):
        status = cfn.describe_stacks(StackName=args.stack)["Stacks"][0]["StackStatus"]
        if status.endswith("_COMPLETE") or status.endswith("_FAILED"):
            break
        time.sleep(0.1)
    if status != "CREATE_COMPLETE":
        events = cfn.describe_stack_events(StackName=args.stack)["StackEvents"]
        raise SystemExit(f"stack {status}: {[e.get('ResourceStatusReason') for e in events][:5]}")

    # Defaults of parameters not passed.
    for name, p in translated.get("Parameters", {}).items():
        params.setdefault(name, p.get("Default", ""))
    stack = cfn.describe_stacks(StackName=args.stack)["Stacks"][0]
    output_values = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    outputs_by_ref = {o["Value"]["Ref"]: output_values[k] for k, o in outputs.items()
                      if isinstance(o.get("Value"), dict) and "Ref" in o["Value"] and k in output_values}
    outputs_by_ref.update(made)
    resolver = Resolver(cfn, client("sqs"), args.stack, params, args.region, outputs_by_ref)
    functions = {}
    for name, r in resources.items():
        if r["Type"] != "AWS::Lambda::Function":
            continue
        env = r["Properties"].get("Environment", {}).get("Variables", {})
        functions[name] = {
            "environment": {k: resolver.value(v) for k, v in env.items()},
            "role": r["Properties"]["Role"],
            "handler": r["Properties"].get("Handler"),
            "runtime": r["Properties"].get("Runtime"),
            "architectures": r["Properties"].get("Architectures"),
            "timeout": r["Properties"].get("Timeout"),
        }
    json.dump({
        "template": translated,
        "skipped": sorted(skipped),
        "outputs": output_values,
        "physical": resolver.physical,
        "functions": functions,
    }, sys.stdout)


if __name__ == "__main__":
    main()
