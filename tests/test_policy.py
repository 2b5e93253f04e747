"""The least-privilege policies (`inflab policy participant|instructor`): valid IAM, nothing the lab
does not call, everything it calls, on its own resources."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from inflab.aws import policy as pol

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "inflab"

# The client variables' names the code uses for each service (a call on any other name is found only
# when the client is made on the same line or assigned in the same module).
CLIENT_NAMES = {
    "ec2": "ec2",
    "iam": "iam",
    "s3": "s3",
    "ssm": "ssm",
    "logs": "logs",
    "batch": "batch",
    "ecr": "ecr",
    "sts": "sts",
    "quotas": "service-quotas",
    "pricing": "pricing",
    "pricing_client": "pricing",
}

# The project's own objects whose methods share a name with an AWS operation (Store.create_session).
NOT_CLIENTS = {"self", "cls", "store"}

# Actions that have no resource type in AWS's Service Authorization Reference (list_amazonec2, list_awsbatch,
# list_awsidentityandaccessmanagementiam, list_amazons3, list_amazoncloudwatchlogs, list_amazonelasticcontainerregistry,
# list_awspricelist, list_servicequotas, list_awssecuritytokenservice, list_amazonsagemaker, list_amazoncloudwatch): the
# only ones a statement may grant on "*".
NO_RESOURCE_TYPE = frozenset(
    {
        "sts:GetCallerIdentity",
        "ec2:DescribeImages",
        "ec2:DescribeInstanceTypeOfferings",
        "ec2:DescribeInstanceTypes",
        "ec2:DescribeSubnets",
        "ec2:DescribeInstances",
        "ec2:DescribeKeyPairs",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeLaunchTemplates",
        "ec2:DescribeVolumes",
        "ec2:DescribeAvailabilityZones",
        "ec2:DescribeVpcs",
        "iam:ListRoles",
        "iam:ListInstanceProfiles",
        "ecr:GetAuthorizationToken",
        "s3:ListAllMyBuckets",
        "logs:DescribeLogGroups",
        "batch:DescribeComputeEnvironments",
        "batch:DescribeJobQueues",
        "batch:DescribeJobDefinitions",
        "batch:DescribeJobs",
        "batch:ListJobs",
        "servicequotas:GetAWSDefaultServiceQuota",
        "pricing:GetProducts",
        "sagemaker:ListEndpointConfigs",
        "cloudwatch:GetMetricStatistics",
    }
)


def _models():
    import botocore.session
    from botocore import xform_name

    session = botocore.session.get_session()
    cache: dict[str, tuple[dict, dict]] = {}

    def model(service: str) -> tuple[dict, dict]:
        if service not in cache:
            m = session.get_service_model(service)
            ops = {xform_name(o): o for o in m.operation_names}
            try:
                w = session.get_waiter_model(service)
                waiters = {xform_name(n): w.get_waiter(n).operation for n in w.waiter_names}
            except Exception:
                waiters = {}
            cache[service] = (ops, waiters)
        return cache[service]

    return model


def scan(paths: list[Path]) -> tuple[dict[tuple[str, str], list[str]], list[str]]:
    """The boto3 calls in ``paths``: {(service, Operation): [file:line, ...]}, and the client-looking calls
    whose service could not be told (``x.describe_instances(`` on a name the scan does not know)."""
    model = _models()
    found: dict[tuple[str, str], list[str]] = {}
    unknown: list[str] = []
    every_op = set()
    for service in set(CLIENT_NAMES.values()):
        every_op |= set(model(service)[0])
    for path in paths:
        tree = ast.parse(path.read_text())
        assigned: dict[str, str] = {}
        for node in ast.walk(tree):  # ec2 = ctx.aws.client("ec2")
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                f = node.value.func
                if (
                    isinstance(f, ast.Attribute)
                    and f.attr == "client"
                    and node.value.args
                    and isinstance(node.value.args[0], ast.Constant)
                ):
                    for target in node.targets:
                        if isinstance(target, ast.Name):
                            assigned[target.id] = node.value.args[0].value

        def service_of(value) -> str | None:
            if (
                isinstance(value, ast.Call)
                and isinstance(value.func, ast.Attribute)
                and value.func.attr == "client"
                and value.args
                and isinstance(value.args[0], ast.Constant)
            ):
                return value.args[0].value
            if isinstance(value, ast.Name):
                return assigned.get(value.id) or CLIENT_NAMES.get(value.id)
            return None

        where = str(path.relative_to(ROOT))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            name = node.func.attr
            if name == "wait_for" and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant):
                service = service_of(node.args[0])  # ctx.wait_for(ec2, "instance_running", ...)
                if service:
                    found.setdefault((service, model(service)[1][node.args[1].value]), []).append(
                        f"{where}:{node.lineno}"
                    )
                continue
            service = service_of(node.func.value)
            if service is None:
                if name in every_op and not (
                    isinstance(node.func.value, ast.Name) and node.func.value.id in NOT_CLIENTS
                ):
                    unknown.append(f"{where}:{node.lineno} .{name}(")
                continue
            ops, waiters = model(service)
            if name in ("get_paginator", "get_waiter") and node.args and isinstance(node.args[0], ast.Constant):
                op = ops[node.args[0].value] if name == "get_paginator" else waiters[node.args[0].value]
            elif name in ops:
                op = ops[name]
            else:
                continue
            found.setdefault((service, op), []).append(f"{where}:{node.lineno}")
    return found, unknown


def _sources(*parts: str) -> list[Path]:
    return [
        p
        for p in PACKAGE.rglob("*.py")
        if "payload" not in p.parts
        and "sandbox" not in p.parts
        and (not parts or p.relative_to(PACKAGE).parts[0] in parts)
    ]


def _lab_sources() -> list[Path]:
    return [p for p in _sources() if p.relative_to(PACKAGE).parts[0] != "instructor"]


def _actions(doc: dict) -> list[str]:
    return [a for s in doc["Statement"] for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])]


# -- the documents ------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [pol.participant, pol.instructor], ids=["participant", "instructor"])
def test_documents_are_valid_iam_policies_that_fit_a_managed_policy(make):
    from moto.iam.policy_validation import IAMPolicyDocumentValidator

    doc = make()
    IAMPolicyDocumentValidator(json.dumps(doc)).validate()  # raises MalformedPolicyDocument
    assert doc["Version"] == "2012-10-17"
    sids = [s["Sid"] for s in doc["Statement"]]
    assert len(sids) == len(set(sids)), "statement ids are unique"
    assert all(s["Effect"] == "Allow" for s in doc["Statement"])
    assert pol.size(doc) <= pol.MANAGED_POLICY_LIMIT, f"{pol.size(doc)} characters: over IAM's limit"
    assert pol.split(doc) == [doc]


def test_the_trust_policy_is_a_valid_trust_policy_that_asks_for_the_external_id():
    from moto.iam.policy_validation import IAMTrustPolicyDocumentValidator

    doc = pol.trust("111122223333", "room3")
    IAMTrustPolicyDocumentValidator(json.dumps(doc)).validate()
    (s,) = doc["Statement"]
    assert s["Principal"] == {"AWS": "arn:aws:iam::111122223333:root"} and s["Action"] == "sts:AssumeRole"
    assert s["Condition"] == {"StringEquals": {"sts:ExternalId": "room3"}}
    for bad in (("1234", "room3"), ("111122223333", "x"), ("111122223333", "no spaces")):
        with pytest.raises(ValueError):
            pol.trust(*bad)


@pytest.mark.parametrize("make", [pol.participant, pol.instructor], ids=["participant", "instructor"])
def test_no_statement_allows_a_whole_service_and_star_only_where_aws_has_no_resource_type(make):
    for s in make()["Statement"]:
        for action in s["Action"]:
            assert re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9]+", action), f"{s['Sid']}: {action!r} is not one exact action"
        if s["Resource"] == "*" or "*" in s["Resource"]:
            assert set(s["Action"]) <= NO_RESOURCE_TYPE, (
                f"{s['Sid']} grants {sorted(set(s['Action']) - NO_RESOURCE_TYPE)} on every resource"
            )
        else:
            assert all(r.startswith("arn:aws:") for r in s["Resource"])


def test_a_document_too_long_for_one_managed_policy_is_split_in_order():
    doc = pol.participant()
    parts = pol.split(doc, limit=pol.size(doc) // 2)
    assert len(parts) >= 2
    assert [s for p in parts for s in p["Statement"]] == doc["Statement"]
    assert all(pol.size(p) <= pol.size(doc) // 2 for p in parts)


# -- what the lab calls -------------------------------------------------------------------------
def test_the_scan_finds_the_calls_it_should():
    """The scan itself: it sees chained, assigned and paginated calls, waiters and ctx.wait_for."""
    found, _ = scan(_lab_sources())
    for call in [
        ("ec2", "RunInstances"),
        ("iam", "GetRole"),
        ("iam", "ListRoles"),
        ("ec2", "DescribeInstances"),
        ("sts", "GetCallerIdentity"),
        ("ssm", "PutParameter"),
        ("pricing", "GetProducts"),
        ("s3", "DeleteObjects"),
        ("batch", "SubmitJob"),
        ("iam", "GetInstanceProfile"),
    ]:
        assert call in found, call


def test_every_call_the_lab_makes_is_listed_and_every_client_call_is_recognised():
    found, unknown = scan(_lab_sources())
    assert not unknown, f"calls on a client the scan cannot name (name the variable after its service): {unknown}"
    missing = {f"{s}:{o} ({', '.join(w[:2])})" for (s, o), w in found.items() if (s, o) not in pol.LAB_CALLS}
    assert not missing, f"the lab calls these, and inflab.aws.policy.LAB_CALLS does not list them: {sorted(missing)}"


def test_every_call_the_instructor_makes_is_listed():
    found, unknown = scan(_sources("instructor"))
    assert not unknown, unknown
    assert found, "the scan found the room's calls"
    missing = sorted(f"{s}:{o}" for s, o in found if (s, o) not in pol.INSTRUCTOR_CALLS)
    assert not missing, f"the instructor's room calls these, and INSTRUCTOR_CALLS does not list them: {missing}"


def test_every_listed_call_is_made():
    found, _ = scan(_lab_sources())
    assert sorted(f"{s}:{o}" for s, o in pol.LAB_CALLS - set(found)) == []


def test_the_participant_policy_allows_every_call_and_what_aws_implies_for_it():
    doc = pol.participant()
    refused = sorted(a for a in pol.needed(pol.LAB_CALLS) | set(pol.REGISTRY_ACTIONS) if not pol.allowed(doc, a))
    assert not refused, f"the lab needs these and the policy does not allow them: {refused}"


def test_the_participant_policy_allows_nothing_the_lab_does_not_need():
    extra = sorted(set(_actions(pol.participant())) - pol.needed(pol.LAB_CALLS) - set(pol.REGISTRY_ACTIONS))
    assert not extra, f"the policy allows actions no lab call needs: {extra}"


def test_the_instructor_policy_reads_the_room_and_cleans_up_but_makes_nothing():
    doc = pol.instructor()
    refused = sorted(a for a in pol.needed(pol.INSTRUCTOR_CALLS) if not pol.allowed(doc, a))
    assert not refused, refused
    for action in [
        "ec2:TerminateInstances",
        "ec2:DeleteSecurityGroup",
        "iam:DeleteRole",
        "iam:RemoveRoleFromInstanceProfile",
        "batch:UpdateComputeEnvironment",
        "batch:DeleteJobQueue",
        "s3:DeleteObjectVersion",
        "ssm:DeleteParameter",
        "logs:DeleteLogGroup",
        "ecr:DeleteRepository",
        "iam:ListRoles",
    ]:
        assert pol.allowed(doc, action), action
    for action in _actions(doc):
        verb = action.split(":")[1]
        assert not verb.startswith(
            ("Create", "Put", "Run", "Submit", "Register", "Tag", "Attach", "Pass", "Import", "Authorize", "Add")
        ), action
        assert pol.cleanup_action(action) or action in pol.needed(pol.INSTRUCTOR_CALLS), action


def test_the_lab_attaches_only_the_managed_policies_the_policy_lets_it():
    text = "".join(p.read_text() for p in _sources("lab_steps"))
    from inflab.lab_steps.access import SSM_CORE

    # (Session Manager's policy is named only to detach it from roles earlier versions of the lab made)
    attached = set(re.findall(r"arn:aws:iam::aws:policy/[\w/+=,.@-]+", text)) - {SSM_CORE}
    assert attached == set(pol.MANAGED_POLICIES)


# -- the lab's own resources --------------------------------------------------------------------
def test_the_names_the_steps_make_are_inside_the_scoping_and_others_are_not():
    from inflab import names
    from inflab.aws import beacon
    from inflab.lab_steps import access, sweep_grid

    doc = pol.participant()
    ctx = SimpleNamespace(name="lab1", prefix="inflab-lab1")
    acct, region = "111122223333", "us-west-2"
    roles = [names.instance_role(ctx.name), *names.batch_roles(ctx.name).values()]
    definition = sweep_grid.GridPoint(ctx.prefix, "bert", "inf1.2xlarge", 8, "inf1").definition
    bucket = names.results_bucket(ctx.name, acct)

    def ok(action: str, arn: str) -> bool:
        return pol.allowed(doc, action, arn)

    assert names.IAM_PATH == pol.IAM_PATH
    for r in roles:
        for action in ("iam:CreateRole", "iam:PutRolePolicy", "iam:AttachRolePolicy", "iam:DeleteRole", "iam:PassRole"):
            assert ok(action, f"arn:aws:iam::{acct}:role{pol.IAM_PATH}{r}"), (action, r)
        assert ok("iam:GetRole", f"arn:aws:iam::{acct}:role/{r}")  # a look-up before it exists
        assert ok("iam:CreateInstanceProfile", f"arn:aws:iam::{acct}:instance-profile{pol.IAM_PATH}{r}")
        assert ok("iam:GetInstanceProfile", f"arn:aws:iam::{acct}:instance-profile/{r}")
    assert ok("ec2:ImportKeyPair", f"arn:aws:ec2:{region}:{acct}:key-pair/{names.key_pair(ctx.name)}")
    assert names.ssh_security_group(ctx.name).startswith("inflab-") and names.batch_security_group(ctx.name).startswith(
        "inflab-"
    )
    for itype in ("inf1.2xlarge", "g5.xlarge"):
        assert ok(
            "batch:CreateComputeEnvironment",
            f"arn:aws:batch:{region}:{acct}:compute-environment/{names.compute_environment(ctx.name, itype)}",
        )
        assert ok("batch:CreateJobQueue", f"arn:aws:batch:{region}:{acct}:job-queue/{names.job_queue(ctx.name, itype)}")
        assert ok("batch:SubmitJob", f"arn:aws:batch:{region}:{acct}:job-queue/{names.job_queue(ctx.name, itype)}")
    assert ok("batch:RegisterJobDefinition", f"arn:aws:batch:{region}:{acct}:job-definition/{definition}")
    assert ok("batch:DeregisterJobDefinition", f"arn:aws:batch:{region}:{acct}:job-definition/{definition}:3")
    assert ok("ecr:CreateRepository", f"arn:aws:ecr:{region}:{acct}:repository/{names.repository(ctx.name)}")
    assert ok("ecr:PutImage", f"arn:aws:ecr:{region}:{acct}:repository/{names.repository(ctx.name)}")
    assert ok("s3:CreateBucket", f"arn:aws:s3:::{bucket}")
    assert ok("s3:PutObject", f"arn:aws:s3:::{bucket}/{ctx.name}/report/report.md")
    assert ok("logs:CreateLogGroup", f"arn:aws:logs:{region}:{acct}:log-group:{names.log_group(ctx.name)}")
    assert ok(
        "logs:GetLogEvents",
        f"arn:aws:logs:{region}:{acct}:log-group:{names.log_group(ctx.name)}:log-stream:sweep/default/1",
    )
    assert ok("ssm:PutParameter", f"arn:aws:ssm:{region}:{acct}:parameter{beacon.path(ctx.name)}")
    assert ok("ssm:GetParametersByPath", f"arn:aws:ssm:{region}:{acct}:parameter{beacon.PREFIX.rstrip('/')}")
    assert ok(
        "ssm:GetParameter",
        f"arn:aws:ssm:{region}::parameter/aws/service/ecs/optimized-ami/amazon-linux-2023/neuron/recommended/image_id",
    )
    assert ok(
        "iam:CreateServiceLinkedRole",
        f"arn:aws:iam::{acct}:role/aws-service-role/batch.amazonaws.com/AWSServiceRoleForBatch",
    )
    # ... and nothing of anyone else's
    for action, arn in [
        ("iam:CreateRole", f"arn:aws:iam::{acct}:role/Admin"),
        ("iam:PutRolePolicy", f"arn:aws:iam::{acct}:role/inflab-lab1-instance"),  # not under /inflab/
        ("iam:PassRole", f"arn:aws:iam::{acct}:role/OrganizationAccountAccessRole"),
        ("iam:CreateServiceLinkedRole", f"arn:aws:iam::{acct}:role/aws-service-role/ecs.amazonaws.com/X"),
        ("ec2:DeleteKeyPair", f"arn:aws:ec2:{region}:{acct}:key-pair/prod"),
        ("batch:DeleteComputeEnvironment", f"arn:aws:batch:{region}:{acct}:compute-environment/prod"),
        ("ecr:DeleteRepository", f"arn:aws:ecr:{region}:{acct}:repository/prod"),
        ("s3:DeleteBucket", "arn:aws:s3:::prod-data"),
        ("s3:GetObject", "arn:aws:s3:::prod-data/x"),
        ("logs:DeleteLogGroup", f"arn:aws:logs:{region}:{acct}:log-group:/aws/lambda/prod"),
        ("ssm:GetParameter", f"arn:aws:ssm:{region}:{acct}:parameter/prod/db-password"),
        ("ssm:PutParameter", f"arn:aws:ssm:{region}:{acct}:parameter/inflab/other"),
    ]:
        assert not ok(action, arn), (action, arn)
    assert access.TRUST["Statement"][0]["Principal"]["Service"] in pol.ROLE_SERVICES


def test_changes_to_resources_named_by_id_need_the_labs_tag():
    doc = pol.participant()
    for action in (
        "ec2:TerminateInstances",
        "ec2:DeleteSecurityGroup",
        "ec2:DeleteLaunchTemplate",
        "ec2:RevokeSecurityGroupIngress",
        "batch:TerminateJob",
    ):
        (s,) = [s for s in doc["Statement"] if action in s["Action"]]
        assert s["Condition"] == {"Null": {"aws:ResourceTag/inflab:session": "false"}}, action
    (tags,) = [s for s in doc["Statement"] if "ec2:CreateTags" in s["Action"]]
    assert set(tags["Condition"]["StringEquals"]["ec2:CreateAction"]) == {
        op for (svc, op), implied in pol.IMPLIED.items() if svc == "ec2" and "ec2:CreateTags" in implied
    }


# -- the evaluator -----------------------------------------------------------------------------
def test_the_evaluator_matches_actions_without_case_and_resources_with_wildcards():
    doc = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"},
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::b/*"]},
            {"Effect": "Deny", "Action": "iam:*", "Resource": "*"},
        ],
    }
    assert pol.allowed(doc, "ec2:describeinstances") and not pol.allowed(doc, "ec2:RunInstances")
    assert pol.allowed(doc, "s3:GetObject", "arn:aws:s3:::b/k/1") and not pol.allowed(
        doc, "s3:GetObject", "arn:aws:s3:::c/k"
    )
    assert not pol.allowed(doc, "iam:GetRole")


# -- the command line ---------------------------------------------------------------------------
def test_inflab_policy_prints_the_documents(tmp_path):
    from conftest import run_cli

    home = tmp_path / "home"
    for which, make in (("participant", pol.participant), ("instructor", pol.instructor)):
        r = run_cli("policy", which, home=home)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout) == make() and r.stderr == ""
    r = run_cli("policy", "instructor", "--trust", "111122223333", "--external-id", "room3", home=home)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == pol.trust("111122223333", "room3")
    assert not home.exists(), "printing a policy creates nothing"


@pytest.mark.parametrize(
    "args, flag",
    [
        (["--trust", "1234", "--external-id", "room3"], "--trust"),
        (["--trust", "111122223333"], "--external-id"),
        (["--external-id", "room3"], "--external-id"),
        (["--trust", "111122223333", "--external-id", "a b"], "--external-id"),
    ],
)
def test_inflab_policy_instructor_refuses_bad_trust_arguments_in_one_line(tmp_path, args, flag):
    from conftest import run_cli

    r = run_cli("policy", "instructor", *args, home=tmp_path / "home")
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and flag in r.stderr and "Traceback" not in r.stderr
