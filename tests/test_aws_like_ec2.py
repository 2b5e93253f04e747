"""Where a real account differs from the emulator, for the instance: the sandbox answers as AWS does
(``--aws-like``, the faults table) and the lab copes.

Each test names the behaviour it stands for: deprecated AMIs hidden from DescribeImages, the Neuron
DLAMIs that dropped Inf1, GPU types on their own AMI, a client token of a terminated instance
refused, an instance that dies while pending, waiter errors that are not worth waiting on, the
quota a family counts against, SSO expiry, the instance role's one policy, Batch hosts tagged for
the session.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import boto3
import pytest
from botocore.stub import Stubber

from inflab import accelerators
from inflab.sandbox import images

NEURON_2204 = "Deep Learning AMI Neuron (Ubuntu 22.04) *"

pytestmark = pytest.mark.sandbox  # the lab runs here on the AWS-like sandbox


def _config(tmp_path, text: str) -> str:
    path = tmp_path / "lab.toml"
    path.write_text(text)
    return str(path)


def _catalogue(pattern_prefix: str, *, include_deprecated: bool) -> list[images.Image]:
    now = datetime.now(timezone.utc)
    return [
        i for i in images.CATALOGUE if i.name.startswith(pattern_prefix) and (include_deprecated or i.deprecation > now)
    ]


# -- images -----------------------------------------------------------------------------------
def test_deprecated_images_are_hidden_unless_named_or_asked_for(aws):
    """AWS lists a deprecated public AMI only by id or with IncludeDeprecated (the fault ec2.deprecated_amis)."""
    ec2 = aws("ec2")
    flt = [{"Name": "name", "Values": [NEURON_2204]}]
    shown = {i["Name"] for i in ec2.describe_images(Owners=["amazon"], Filters=flt)["Images"]}
    every = ec2.describe_images(Owners=["amazon"], Filters=flt, IncludeDeprecated=True)["Images"]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    deprecated = {i["Name"] for i in every if i["DeprecationTime"] <= now}
    assert deprecated, "the 2024 DLAMIs are past their two years"
    assert shown == {i["Name"] for i in every} - deprecated
    old = next(i for i in every if i["Name"] in deprecated)
    assert ec2.describe_images(ImageIds=[old["ImageId"]])["Images"][0]["Name"] == old["Name"]  # by id: still there


def test_inf1_gets_the_newest_dlami_whose_neuron_sdk_still_supports_it(name, cli, store):
    r = cli("run", "--sandbox", "--name", name, "--until", "preflight")
    assert r.returncode == 0, r.stdout + r.stderr
    fits = [
        i
        for i in _catalogue("Deep Learning AMI Neuron (Ubuntu 22.04)", include_deprecated=False)
        if accelerators.neuron_sdk(i.description) <= accelerators.INF1_LAST_SDK
    ]
    newest = max(fits, key=lambda i: i.created)
    ami = store.get(name, "preflight")["ami"]
    assert ami["name"] == newest.name and ami["user"] == "ubuntu"
    assert ami["neuron_sdk"] == "2.26.0"  # not 2.26.1 or later: those DLAMIs dropped Inf1
    assert f"Neuron SDK {ami['neuron_sdk']}" in r.stdout and "no longer supports Inf1" in r.stdout


def test_when_only_deprecated_images_match_the_lab_takes_one_and_says_so(name, cli, store, tmp_path):
    """The 2024 DLAMIs the lab used to look for are all deprecated: DescribeImages without
    IncludeDeprecated finds none of them, and the lab asks again with it."""
    config = _config(tmp_path, '[instance]\nami_name = "Deep Learning AMI Neuron (Ubuntu 22.04) 202407*"\n')
    r = cli("run", "--sandbox", "--name", name, "--config", config, "--until", "preflight")
    assert r.returncode == 0, r.stdout + r.stderr
    ami = store.get(name, "preflight")["ami"]
    assert ami["name"] == "Deep Learning AMI Neuron (Ubuntu 22.04) 20240722" and ami["deprecated"]
    assert "deprecated" in r.stdout


def test_a_dlami_without_inf1_is_refused_for_an_inf1_instance(name, cli, tmp_path):
    config = _config(tmp_path, '[instance]\nami_name = "Deep Learning AMI Neuron (Ubuntu 22.04) 20251223"\n')
    r = cli("run", "--sandbox", "--name", name, "--config", config, "--until", "preflight")
    assert r.returncode == 1
    assert "instance.ami_name" in r.stderr and "no longer supports Inf1" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "itype, image, user",
    [
        ("g5.xlarge", "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04)", "ubuntu"),
        ("inf2.xlarge", "Deep Learning AMI Neuron (Ubuntu 24.04)", "ubuntu"),
        ("c6i.2xlarge", "al2023-ami-ecs-hvm", "ec2-user"),
    ],
)
def test_each_kind_boots_its_own_image(itype, image, user, name, cli, store, tmp_path):
    """A GPU type on the Neuron DLAMI has no NVIDIA driver: each kind has its AMI and login user."""
    r = cli(
        "run",
        "--sandbox",
        "--name",
        name,
        "--config",
        _config(tmp_path, f'[instance]\ntype = "{itype}"\n'),
        "--until",
        "preflight",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    ami = store.get(name, "preflight")["ami"]
    assert ami["name"].startswith(image) and ami["user"] == user
    assert f"login user {user}" in r.stdout


# -- launching --------------------------------------------------------------------------------
def test_a_client_token_of_a_terminated_instance_is_refused_and_a_live_one_is_idempotent(aws):
    ec2 = aws("ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    first = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro", ClientToken="tok-a1")
    again = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro", ClientToken="tok-a1")
    iid = first["Instances"][0]["InstanceId"]
    assert again["Instances"][0]["InstanceId"] == iid  # the same instance, not a second one
    ec2.terminate_instances(InstanceIds=[iid])
    with pytest.raises(Exception) as e:
        ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro", ClientToken="tok-a1")
    assert e.value.response["Error"]["Code"] == "IdempotentInstanceTerminated"


def test_an_instance_terminated_behind_the_labs_back_is_launched_anew(name, cli, aws, tagged, store):
    assert cli("run", "--sandbox", "--name", name, "--until", "wait-running").returncode == 0
    first = tagged(name)["instances"][0]["InstanceId"]
    aws("ec2").terminate_instances(InstanceIds=[first])  # the console, or an instructor's cleanup
    r = cli("run", "--sandbox", "--name", name, "--until", "wait-running")
    assert r.returncode == 0, r.stdout + r.stderr
    (now,) = tagged(name)["instances"]
    assert now["InstanceId"] != first and now["State"]["Name"] == "running"
    tokens = [x.name for x in store.ledger(name) if x.kind == "ec2:instance"]
    assert len(set(tokens)) == len(tokens) == 2  # a fresh token per launch
    assert cli("cleanup", name, "--yes").returncode == 0


def test_an_instance_that_dies_while_pending_is_launched_in_the_next_zone(name, cli, faults, tagged):
    faults({"ec2": {"pending_death": {"us-west-2a": "Server.InsufficientInstanceCapacity"}}})
    r = cli("run", "--sandbox", "--name", name, "--until", "wait-running")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "died while starting in us-west-2a" in r.stdout and "Server.InsufficientInstanceCapacity" in r.stdout
    (inst,) = tagged(name)["instances"]
    assert inst["State"]["Name"] == "running" and inst["Placement"]["AvailabilityZone"] == "us-west-2b"
    assert cli("cleanup", name, "--yes").returncode == 0


def test_an_instance_that_dies_everywhere_fails_with_ec2s_reason(name, cli, faults, tagged):
    faults({"ec2": {"pending_death": {"*": "Server.InsufficientInstanceCapacity"}}})
    r = cli("run", "--sandbox", "--name", name, "--until", "wait-running")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert len(r.stderr.splitlines()) == 1 and "no zone after it is left" in r.stderr
    assert r.stdout.count("died while starting") == 4  # us-west-2a..d
    assert not tagged(name)["instances"]


def test_a_waiter_error_that_is_not_a_failure_state_stops_at_once():
    """UnauthorizedOperation is no reason to poll for 15 minutes."""
    from inflab.lab_steps.base import StepContext, StepError

    ec2 = boto3.client("ec2", region_name="us-west-2", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(ec2) as stub:
        stub.add_client_error(
            "describe_instances", "UnauthorizedOperation", "You are not authorized to perform this operation."
        )
        ctx = StepContext(name="t", config=None, runtime=None, store=None)  # type: ignore[arg-type]
        with pytest.raises(StepError) as e:
            ctx.wait_for(ec2, "instance_running", "Instance i-1 starting", InstanceIds=["i-1"], timeout=900)
    assert "UnauthorizedOperation" in str(e.value)


@pytest.mark.parametrize(
    "itype, quota",
    [("g5.xlarge", "Running On-Demand G and VT instances"), ("c6i.2xlarge", "Running On-Demand Standard")],
)
def test_a_quota_refusal_names_the_quota_of_the_instance_family(itype, quota, name, cli, faults, tmp_path):
    faults({"run_instances": {"*": "VcpuLimitExceeded"}})
    r = cli(
        "run",
        "--sandbox",
        "--name",
        name,
        "--config",
        _config(tmp_path, f'[instance]\ntype = "{itype}"\n'),
        "--until",
        "launch",
    )
    assert r.returncode == 1
    assert quota in r.stderr and "Inf instances" not in r.stderr
    assert accelerators.quota_of(itype)[0] in r.stderr


def test_an_expired_sso_session_says_how_to_log_in_again():
    from botocore.exceptions import SSOTokenLoadError, TokenRetrievalError, UnauthorizedSSOTokenError

    from inflab.engine import describe_exception

    for exc in (
        UnauthorizedSSOTokenError(),
        SSOTokenLoadError(error_msg="Token for lab does not exist"),
        TokenRetrievalError(provider="sso", error_msg="Token has expired and refresh failed"),
    ):
        line = describe_exception(exc, "workshop")
        assert "aws sso login --profile workshop" in line and "\n" not in line


def test_the_instance_role_has_one_policy_scoped_to_the_session(name, cli, aws):
    assert cli("run", "--sandbox", "--name", name, "--until", "instance-profile").returncode == 0
    iam = aws("iam")
    role = f"inflab-{name}-instance"
    assert iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"] == []  # no AmazonSSMManagedInstanceCore
    assert iam.list_role_policies(RoleName=role)["PolicyNames"] == ["inflab-lab-access"]
    doc = iam.get_role_policy(RoleName=role, PolicyName="inflab-lab-access")["PolicyDocument"]
    doc = json.loads(doc) if isinstance(doc, str) else doc
    resources = json.dumps([s["Resource"] for s in doc["Statement"] if s["Sid"] != "EcrLogin"])
    assert f'repository/inflab-{name}"' in resources and f'log-group:/inflab/{name}"' in resources
    assert f"inflab-{name}*" not in resources  # exact names: nothing of session NAME-2
    assert cli("cleanup", name, "--yes").returncode == 0


def test_a_batch_host_tagged_for_the_session_is_not_taken_for_its_instance(name, cli, aws):
    """Batch launches the sweep's hosts with the compute environment's tags, the session's among them."""
    ec2 = aws("ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    host = ec2.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        InstanceType="inf1.2xlarge",
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [
                    {"Key": "inflab:session", "Value": name},
                    {"Key": "inflab:lab", "Value": "inf1"},
                    {"Key": "inflab:role", "Value": "batch-host"},
                ],
            }
        ],
    )["Instances"][0]["InstanceId"]
    r = cli("run", "--sandbox", "--name", name, "--until", "launch")
    assert r.returncode == 0
    assert "Launched i-" in r.stdout  # a new instance of its own, the host was not adopted
    found = json.loads(cli("resources", name, "--json").stdout)
    assert {x["id"] for x in found if x["type"] == "batch:host"} == {host}
    assert len([x for x in found if x["type"] == "ec2:instance"]) == 1
    ec2.terminate_instances(InstanceIds=[host])
    assert cli("cleanup", name, "--yes").returncode == 0
