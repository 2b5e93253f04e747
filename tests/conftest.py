"""Shared fixtures: one sandbox cloud (a real moto server daemon) for the whole test run.

Every test gets its own session name, so tests do not see each other's resources even
though they share the daemon and the INFLAB_HOME.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


#: fixtures that start a daemon: the shared sandbox, a test's own sandbox, a real OpenSSH server
DAEMON_FIXTURES = {"sandbox", "own_sandbox", "enforced", "sshd"}
#: fixtures that compile or measure real models (seconds to minutes of CPU)
MODEL_FIXTURES = {"compiled", "packaged", "steady_run", "bert_run"}


def pytest_collection_modifyitems(config, items):
    """The tiers, from what a test uses (its fixtures, directly or through others, or its marks): one
    that starts a daemon is ``sandbox``, one that compiles or measures models is ``slow``, the rest
    are ``unit`` — what ``make test-fast`` runs."""
    for item in items:
        used = set(item.fixturenames)
        if used & DAEMON_FIXTURES:
            item.add_marker(pytest.mark.sandbox)
        if used & MODEL_FIXTURES:
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("slow") is None and item.get_closest_marker("sandbox") is None:
            item.add_marker(pytest.mark.unit)
    # The longest files first (``make test`` hands out whole files, in this order, with
    # --no-loadscope-reorder): a file of whole-track runs that started last would run on alone
    # while the other test processes sit idle.
    rank: dict[str, int] = {}
    for item in items:
        tier = 0 if item.get_closest_marker("slow") else 1 if item.get_closest_marker("sandbox") else 2
        rank[item.path] = min(tier, rank.get(item.path, 2))
    items.sort(key=lambda item: rank[item.path])


def _uses_sandbox(args: tuple[str, ...]) -> bool:
    """Would ``inflab *args`` start (or talk to) the sandbox of the test home?"""
    return "--sandbox" in args or (len(args) > 1 and args[0] == "sandbox" and args[1] == "start")


@pytest.fixture(scope="session")
def inflab_home(tmp_path_factory, worker_id) -> Path:
    """The test process's lab home. Its sandbox's image store (the job virtualenvs, a minute and a
    gigabyte each) is one the test processes share: a build of an image another process is making
    waits for it (the build's own lock) instead of making it again."""
    home = tmp_path_factory.mktemp("inflab-home")
    os.environ["INFLAB_HOME"] = str(home)
    if worker_id != "master":  # pytest-xdist: every worker's base directory is under the run's own
        shared = tmp_path_factory.getbasetemp().parent / "sandbox-images"
        shared.mkdir(mode=0o700, exist_ok=True)
        (home / "sandbox").mkdir(mode=0o700)
        (home / "sandbox" / "images").symlink_to(shared, target_is_directory=True)
    return home


@pytest.fixture(scope="session")
def sandbox(inflab_home, tmp_path_factory):
    """The sandbox every test shares, answering as AWS does and checking the lab's calls as a user
    holding only the participant policy (``inflab sandbox start --aws-like --iam-policy <participant>``)."""
    import json

    from inflab import sandbox as sb
    from inflab.aws import policy

    policy_file = tmp_path_factory.mktemp("policy") / "participant.json"
    policy_file.write_text(json.dumps(policy.participant()))
    running = sb.status(inflab_home)
    if running is not None:  # something started it without this fixture: a kinder emulator than the suite's
        pytest.fail(
            "The shared sandbox was started before its fixture (without --aws-like and the participant "
            "policy): give the test that started it the `sandbox` fixture"
        )
    info = sb.ensure_running(inflab_home, iam_policy=policy_file, aws_like=True)
    yield info
    sb.set_faults(info, {})
    sb.stop(inflab_home)


@pytest.fixture
def faults(sandbox):
    """Set sandbox faults for one test, over the AWS-like ones the sandbox starts with (which
    ``faults({})`` brings back); restored afterwards."""
    from inflab import sandbox as sb
    from inflab.sandbox.faults import merged

    baseline = sb.get_faults(sandbox)

    def set_(table: dict) -> None:
        sb.set_faults(sandbox, merged(baseline, table))

    yield set_
    sb.set_faults(sandbox, baseline)


@pytest.fixture
def name() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def home_store(tmp_path, monkeypatch):
    """A store in a home of the test's own (INFLAB_HOME points there for the test)."""
    from inflab.session import Store

    monkeypatch.setenv("INFLAB_HOME", str(tmp_path))
    return Store(tmp_path)


@pytest.fixture
def store(inflab_home):
    from inflab.session import Store

    return Store(inflab_home)


def run_cli(
    *args: str, home: Path, timeout: float = 180, input: str | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
    e = dict(os.environ, INFLAB_HOME=str(home), PYTHONUNBUFFERED="1")
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "inflab.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        env=e,
        cwd=ROOT,
    )


@pytest.fixture
def cli(inflab_home, request):
    """``inflab`` in the test home; a command that uses the sandbox gets the shared one (started by
    its fixture, so AWS-like and checking the participant policy)."""

    def call(*args: str, **kw) -> subprocess.CompletedProcess:
        if _uses_sandbox(args) and "INFLAB_HOME" not in (kw.get("env") or {}):  # another home: not ours
            if request.node.get_closest_marker("unit"):
                pytest.fail(f"inflab {' '.join(args)} uses the sandbox: mark the test (or its module) sandbox")
            request.getfixturevalue("sandbox")
        return run_cli(*args, home=inflab_home, **kw)

    return call


def sandbox_aws(info, region: str = "us-west-2", who: str = "admin", **kw):
    """An Aws on the sandbox ``info``, signing as its ``who`` ("admin", or "lab": the participant the lab
    signs as) when the sandbox checks an IAM policy (placeholders otherwise)."""
    from inflab.aws import Aws, Credentials

    key = info.access_key(who)
    return Aws(
        region=region,
        endpoint_url=info.endpoint,
        headers=info.headers,
        credentials=Credentials(*key) if key else None,
        **kw,
    )


@pytest.fixture
def aws(sandbox):
    """boto3 clients on the sandbox endpoint (the lab's own, carrying its secret), to look at what the lab made
    (as the sandbox's administrator when the sandbox checks an IAM policy)."""
    from inflab.aws import Aws, Credentials

    regions: dict[str, Aws] = {}
    admin = sandbox.access_key("admin")
    key = Credentials(*admin) if admin else None

    def client(service: str, region: str = "us-west-2"):
        return regions.setdefault(
            region, Aws(region=region, endpoint_url=sandbox.endpoint, headers=sandbox.headers, credentials=key)
        ).client(service)

    return client


def launch_templates(ec2, session: str, prefix: str) -> list[dict]:
    """The session's launch templates, by tag and by name. (The emulator answers at most 15 templates
    to an unfiltered describe, with no next page, so a shared sandbox must be asked precisely.)"""
    from botocore.exceptions import ClientError

    found = ec2.describe_launch_templates(Filters=[{"Name": "tag:inflab:session", "Values": [session]}])[
        "LaunchTemplates"
    ]
    try:
        found += ec2.describe_launch_templates(LaunchTemplateNames=[prefix])["LaunchTemplates"]
    except ClientError:
        pass  # no template of that name
    return list({t["LaunchTemplateId"]: t for t in found}.values())


@pytest.fixture
def tagged(aws):
    """What boto3 itself finds in the sandbox for a session: by its inflab:session tag or its inflab-NAME names.

    Returns a function NAME -> {"instances": [...], "key_pairs": [...], "security_groups": [...],
    "launch_templates": [...], "roles": [...], "instance_profiles": [...]}; terminated instances are left out.
    """

    def find(session: str) -> dict[str, list[dict]]:
        ec2, iam = aws("ec2"), aws("iam")
        prefix = f"inflab-{session}"

        def ours(item: dict, name: str) -> bool:
            tags = {t["Key"]: t["Value"] for t in item.get("Tags") or []}
            return tags.get("inflab:session") == session or name == prefix or name.startswith(prefix + "-")

        instances = [
            i
            for r in ec2.describe_instances()["Reservations"]
            for i in r["Instances"]
            if i["State"]["Name"] != "terminated" and ours(i, "")
        ]
        roles = []
        for page in iam.get_paginator("list_roles").paginate():
            for r in page["Roles"]:
                tags = iam.list_role_tags(RoleName=r["RoleName"])["Tags"]
                if ours({"Tags": tags}, r["RoleName"]):
                    roles.append(r)
        profiles = []
        for page in iam.get_paginator("list_instance_profiles").paginate():
            profiles += [p for p in page["InstanceProfiles"] if ours(p, p["InstanceProfileName"])]
        return {
            "instances": instances,
            "key_pairs": [k for k in ec2.describe_key_pairs()["KeyPairs"] if ours(k, k["KeyName"])],
            "security_groups": [g for g in ec2.describe_security_groups()["SecurityGroups"] if ours(g, g["GroupName"])],
            "launch_templates": launch_templates(ec2, session, prefix),
            "roles": roles,
            "instance_profiles": profiles,
        }

    return find


def unusable_config(kind: str, d: Path) -> str:
    """A --config path that is not a usable config file (``d`` is an empty directory)."""
    import socket

    p = d / "lab.toml"
    makers = {
        "fifo": lambda: os.mkfifo(p),  # opening it would wait for a writer
        "socket": lambda: socket.socket(socket.AF_UNIX).bind(str(p)),
        "symlink-loop": lambda: (os.symlink(d / "b.toml", p), os.symlink(p, d / "b.toml")),
        "not-utf8": lambda: p.write_bytes(b'[aws]\nprofile = "\xff\xfe"\n'),
        "deep-array": lambda: p.write_text("[bench]\nrate = " + "[" * 50_000 + "]" * 50_000 + "\n"),
        "huge-integer": lambda: p.write_text("[bench]\nbatch_size = " + "9" * 5000 + "\n"),
        "too-big": lambda: p.write_text("# a comment line\n" * 70_000),  # 1.1 MB
    }
    elsewhere = {
        "directory": str(d),
        "long-name": str(d / ("x" * 300 + ".toml")),
        "dev-zero": "/dev/zero",
        "proc-mem": "/proc/self/mem",
    }
    if kind in elsewhere:
        return elsewhere[kind]
    makers[kind]()
    return str(p)
