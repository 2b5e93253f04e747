"""Where a real account differs from the emulator, for the sweep on AWS Batch: the sandbox answers as
AWS does (``--aws-like``) and the lab copes — a compute environment IAM has not caught up with, the
retired Amazon Linux 2 hosts, a job per whole instance, a log group named like another session's,
a job Batch cannot place.

These tests stop short of running the benchmark in a job, so they stand in for the image the
build-image step makes with the image store's marker, in a home and sandbox of their own.
"""

from __future__ import annotations

import json
import uuid

import pytest
from botocore.exceptions import ClientError

from inflab import accelerators, config
from inflab.engine import Engine
from inflab.events import StepLogged
from inflab.lab_steps.image import image_hash
from inflab.session import Store

pytestmark = pytest.mark.slow
QUICK = {
    "bench": {"min_duration_s": 1, "min_queries": 20, "max_duration_s": 2},
    "batch": {"min_duration_s": 1, "max_duration_s": 2, "sizes": [2]},
    "model": {"int8": False},
}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    from inflab import sandbox as sb

    home = tmp_path_factory.mktemp("aws-like-batch")
    info = sb.ensure_running(home, aws_like=True)
    yield home, info
    sb.stop(home)


@pytest.fixture
def batch(home):
    from inflab.aws import Aws

    aws = Aws(region="us-west-2", endpoint_url=home[1].endpoint, headers=home[1].headers)
    return aws.client


@pytest.fixture
def faults(home):
    from inflab import sandbox as sb
    from inflab.sandbox.faults import merged

    baseline = sb.get_faults(home[1])
    yield lambda table: sb.set_faults(home[1], merged(baseline, table))
    sb.set_faults(home[1], baseline)


def sweep_session(home, extra: dict, name: str | None = None) -> tuple[Store, str]:
    """A session ready for batch-setup: the ECR repository made, its image standing in the image store."""
    store = Store(home[0])
    name = name or "b" + uuid.uuid4().hex[:8]
    cfg = config.from_dict({**QUICK, **extra, "batch": {**QUICK["batch"], **extra.get("batch", {})}}, sandbox=True)
    store.create_session(name, cfg.data, sandbox=True, track="inf1")
    engine = Engine(store, name)
    for step in engine.steps[: engine.index("batch-setup")]:
        if step.id not in ("credentials", "ecr-repo"):
            engine.skip(step.id)
    assert engine.run("ecr-repo").ok
    ctx = engine.context(engine.step("batch-setup"))
    marker = ctx.runtime.image_dir(image_hash(ctx, "cpu")) / "venv" / ".inflab-image"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(image_hash(ctx, "cpu") + "\n")
    return store, name


def run(store: Store, name: str, *steps: str, on_log=None) -> tuple[list[str], object]:
    """Run ``steps`` in order up to the first that fails; what they logged, and the last result.
    ``on_log(message)`` is called as each line is logged, in the step's own thread."""
    logged: list[str] = []

    def listener(e):
        if isinstance(e, StepLogged):
            logged.append(e.message)
            if on_log is not None:
                on_log(e.message)

    engine = Engine(store, name, listener=listener)
    result = None
    for step in steps:
        result = engine.run_one(step)
        if not result.ok:
            break
    return logged, result


def cleanup(store: Store, name: str) -> None:
    engine = Engine(store, name)
    errors, left = engine.cleanup(delete_data=True)
    assert not errors and not left, (errors, left)


def test_a_compute_environment_made_before_iam_caught_up_is_made_again(home, batch, faults, monkeypatch):
    """AWS's IAM takes a while to reach Batch: a compute environment made seconds after its roles goes
    INVALID (CLIENT_ERROR) and stays so; the lab waits and makes it again, saying so."""
    from inflab.lab_steps import batch_setup

    # IAM does not catch up by the clock here (an hour: the lab's first try comes sooner however busy
    # the machine) but while the lab waits to try again: the fault ends when the lab says it will wait.
    faults({"batch": {"ce_role_propagation_s": 3600}})
    monkeypatch.setattr(batch_setup, "REPAIR_WAITS_S", (1, 1, 1, 1))  # not the 10 s a real account needs

    def iam_catches_up(message: str) -> None:
        if "making the environment again" in message:
            faults({"batch": {"ce_role_propagation_s": 0}})

    store, name = sweep_session(home, {})
    logged, result = run(store, name, "batch-setup", on_log=iam_catches_up)
    assert result.ok, result.error
    again = [line for line in logged if "making the environment again" in line]
    assert len(again) == 1 and "is INVALID: CLIENT_ERROR" in again[0], logged  # once: the new one is VALID
    (ce,) = batch("batch").describe_compute_environments(computeEnvironments=[f"inflab-{name}-inf1-2xlarge"])[
        "computeEnvironments"
    ]
    assert ce["status"] == "VALID"
    assert ce["serviceRole"].endswith("role/aws-service-role/batch.amazonaws.com/AWSServiceRoleForBatch")
    # a rerun finds it VALID and leaves it alone
    logged, result = run(store, name, "batch-setup")
    assert result.ok and any("Already done" in line for line in logged)
    cleanup(store, name)


def test_the_sandbox_keeps_such_an_environment_invalid_until_it_is_touched_again(home, batch, faults):
    faults({"batch": {"ce_role_propagation_s": 3600}})  # made well before IAM catches up, however slow the machine
    iam, ec2, b = batch("iam"), batch("ec2"), batch("batch")
    tag = uuid.uuid4().hex[:8]
    iam.create_role(
        RoleName=f"r-{tag}",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
        ),
    )
    profile = iam.create_instance_profile(InstanceProfileName=f"r-{tag}")["InstanceProfile"]["Arn"]
    iam.add_role_to_instance_profile(InstanceProfileName=f"r-{tag}", RoleName=f"r-{tag}")
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:1]
    group = ec2.create_security_group(GroupName=f"r-{tag}", Description="t")["GroupId"]
    b.create_compute_environment(
        computeEnvironmentName=f"ce-{tag}",
        type="MANAGED",
        computeResources={
            "type": "EC2",
            "minvCpus": 0,
            "maxvCpus": 8,
            "instanceTypes": ["c6i.large"],
            "subnets": subnets,
            "securityGroupIds": [group],
            "instanceRole": profile,
        },
    )

    def status():
        return b.describe_compute_environments(computeEnvironments=[f"ce-{tag}"])["computeEnvironments"][0]

    assert status()["status"] == "INVALID" and status()["statusReason"].startswith("CLIENT_ERROR")
    faults({"batch": {"ce_role_propagation_s": 0}})  # IAM has caught up now...
    assert status()["status"] == "INVALID"  # ...but the environment does not recover by itself
    b.update_compute_environment(computeEnvironment=f"ce-{tag}", computeResources={"maxvCpus": 8})
    assert status()["status"] == "VALID"
    b.update_compute_environment(computeEnvironment=f"ce-{tag}", state="DISABLED")
    b.delete_compute_environment(computeEnvironment=f"ce-{tag}")


@pytest.mark.parametrize(
    "image_type, types, words",
    [
        ("ECS_AL2", ["inf1.2xlarge"], "no longer creates compute environments on the Batch-provided Amazon Linux 2"),
        ("ECS_AL2023_NVIDIA", ["p3.2xlarge"], "doesn't support p3 and g3"),
    ],
)
def test_retired_host_images_are_refused_as_batch_refuses_them(image_type, types, words, batch):
    with pytest.raises(ClientError) as e:
        batch("batch").create_compute_environment(
            computeEnvironmentName=f"ce-{uuid.uuid4().hex[:8]}",
            type="MANAGED",
            computeResources={
                "type": "EC2",
                "minvCpus": 0,
                "maxvCpus": 8,
                "instanceTypes": types,
                "subnets": ["subnet-1"],
                "securityGroupIds": ["sg-1"],
                "instanceRole": "x",
                "ec2Configuration": [{"imageType": image_type}],
            },
        )
    assert e.value.response["Error"]["Code"] == "ClientException" and words in e.value.response["Error"]["Message"]


def test_each_job_asks_for_a_whole_instance_on_an_al2023_host(home, batch, faults):
    """A job sees every device of its type and is priced as the instance: two jobs never share a host."""
    faults({"batch": {"ce_role_propagation_s": 0}})
    store, name = sweep_session(home, {"batch": {"instance_types": ["inf1.6xlarge", "g4dn.12xlarge"]}})
    logged, result = run(store, name, "batch-setup")
    assert result.ok, result.error
    b, ssm = batch("batch"), batch("ssm")
    defs = {
        d["jobDefinitionName"]: d["containerProperties"]
        for d in b.describe_job_definitions(status="ACTIVE")["jobDefinitions"]
        if d["jobDefinitionName"].startswith(f"inflab-{name}")
    }
    inf = defs[f"inflab-{name}-bert-inf1-6xlarge-b2"]
    req = {r["type"]: r["value"] for r in inf["resourceRequirements"]}
    assert req == {"VCPU": "24", "MEMORY": str(int(49152 * 0.9))}
    assert [d["hostPath"] for d in inf["linuxParameters"]["devices"]] == [f"/dev/neuron{i}" for i in range(4)]
    gpu = {r["type"]: r["value"] for r in defs[f"inflab-{name}-bert-g4dn-12xlarge-b2"]["resourceRequirements"]}
    assert gpu == {"VCPU": "48", "MEMORY": str(int(196608 * 0.9)), "GPU": "4"}
    assert any("4 Neuron devices (16 NeuronCores)" in line for line in logged)
    envs = {
        c["computeEnvironmentName"]: c["computeResources"]
        for c in b.describe_compute_environments()["computeEnvironments"]
        if c["computeEnvironmentName"].startswith(f"inflab-{name}")
    }
    for ce, kind in ((f"inflab-{name}-inf1-6xlarge", "inf1"), (f"inflab-{name}-g4dn-12xlarge", "gpu")):
        host = accelerators.BATCH_HOSTS[kind]
        (config_,) = envs[ce]["ec2Configuration"]
        assert config_["imageType"] == host.image_type and config_["imageType"].startswith("ECS_AL2023")
        assert config_["imageIdOverride"] == ssm.get_parameter(Name=host.ami_parameter)["Parameter"]["Value"]
        assert envs[ce]["tags"]["inflab:role"] == "batch-host"  # its hosts are not taken for the lab's instance
    cleanup(store, name)


def test_a_session_named_like_another_gets_its_own_log_group(home, batch, faults):
    """/inflab/lab-2 starts with /inflab/lab: looked up by prefix, lab would never make its own group
    and every job of its sweep would fail ("The specified log group does not exist")."""
    faults({"batch": {"ce_role_propagation_s": 0}})
    base = "g" + uuid.uuid4().hex[:7]
    other_store, other = sweep_session(home, {}, name=f"{base}-2")
    assert run(other_store, other, "batch-setup")[1].ok
    store, name = sweep_session(home, {}, name=base)
    assert run(store, name, "batch-setup")[1].ok
    logs = batch("logs")
    groups = {g["logGroupName"] for g in logs.describe_log_groups(logGroupNamePrefix=f"/inflab/{base}")["logGroups"]}
    assert groups == {f"/inflab/{base}", f"/inflab/{base}-2"}
    cleanup(store, name)  # and taking it down leaves the other session's group alone
    groups = {g["logGroupName"] for g in logs.describe_log_groups(logGroupNamePrefix=f"/inflab/{base}")["logGroups"]}
    assert groups == {f"/inflab/{base}-2"}
    cleanup(other_store, other)


def test_a_job_whose_log_group_is_missing_fails_as_on_aws(home, batch, faults):
    faults({"batch": {"ce_role_propagation_s": 0}})
    store, name = sweep_session(home, {})
    assert run(store, name, "batch-setup")[1].ok
    batch("logs").delete_log_group(logGroupName=f"/inflab/{name}")
    logged, result = run(store, name, "batch-submit", "batch-monitor")
    assert not result.ok and "Every job of the sweep failed" in result.error
    assert "The specified log group does not exist" in result.error
    cleanup(store, name)


def test_a_job_batch_cannot_place_is_explained_and_cancelled_by_the_queue(home, batch, faults):
    """A job bigger than its compute environment may run stays RUNNABLE on AWS, without end: the
    monitor says why and what to do, and the queue cancels it after batch.runnable_timeout_min."""
    faults({"batch": {"ce_role_propagation_s": 0, "runnable_time_scale": 0.01}})  # 10 min → 6 s
    store, name = sweep_session(home, {"batch": {"max_vcpus": 4, "runnable_timeout_min": 10}})  # inf1.2xlarge: 8 vCPUs
    logged, result = run(store, name, "batch-setup", "batch-submit", "batch-monitor")
    assert not result.ok and "Every job of the sweep failed" in result.error
    assert (
        "Canceled by JobStateTimeLimit action due to reason: MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE"
        in result.error
    )
    note = next(line for line in logged if "RUNNABLE: Batch cannot place it" in line)
    assert "batch.max_vcpus" in note and "cancels it after 10 min" in note
    (queue,) = batch("batch").describe_job_queues(jobQueues=[f"inflab-{name}-inf1-2xlarge"])["jobQueues"]
    assert {(a["reason"], a["maxTimeSeconds"], a["action"]) for a in queue["jobStateTimeLimitActions"]} == {
        ("MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT", 600, "CANCEL"),
        ("MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE", 600, "CANCEL"),
        ("CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY", 600, "CANCEL"),
    }
    cleanup(store, name)
