"""End to end on the sandbox cloud: `inflab run`, re-run, kill and re-run, cleanup, capacity and quota faults."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys

import pytest
from conftest import ROOT


def _counts(found: dict) -> dict[str, int]:
    return {k: len(v) for k, v in found.items()}


def _resources(cli, name) -> list[dict]:
    r = cli("resources", name, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_run_until_wait_running_provisions_a_locked_down_instance(name, cli, aws, tagged, inflab_home):
    r = cli("run", "--sandbox", "--name", name, "--until", "wait-running")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert f"Session {name}: done up to wait-running." in r.stdout

    ec2 = aws("ec2")
    res = ec2.describe_instances(Filters=[{"Name": "tag:inflab:session", "Values": [name]}])["Reservations"]
    insts = [i for rr in res for i in rr["Instances"] if i["State"]["Name"] != "terminated"]
    assert len(insts) == 1
    inst = insts[0]
    assert inst["State"]["Name"] == "running"
    tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
    assert tags["inflab:session"] == name
    assert tags["inflab:lab"] == "inf1"
    assert inst["InstanceType"] == "inf1.2xlarge"
    assert inst["MetadataOptions"]["HttpTokens"] == "required"
    assert inst["PublicIpAddress"]

    # SSH from loopback only: one rule, tcp/22, 127.0.0.1/32.
    assert len(inst["SecurityGroups"]) == 1
    sg = ec2.describe_security_groups(GroupIds=[inst["SecurityGroups"][0]["GroupId"]])["SecurityGroups"][0]
    assert {t["Key"]: t["Value"] for t in sg["Tags"]}["inflab:session"] == name
    perms = sg["IpPermissions"]
    assert len(perms) == 1, perms
    p = perms[0]
    assert (p["IpProtocol"], p["FromPort"], p["ToPort"]) == ("tcp", 22, 22)
    assert [x["CidrIp"] for x in p.get("IpRanges", [])] == ["127.0.0.1/32"]
    assert not p.get("Ipv6Ranges") and not p.get("UserIdGroupPairs") and not p.get("PrefixListIds")

    # The launch template asks for a 256 GB encrypted gp3 root volume.
    lt = tagged(name)["launch_templates"]
    assert len(lt) == 1
    data = ec2.describe_launch_template_versions(LaunchTemplateId=lt[0]["LaunchTemplateId"])["LaunchTemplateVersions"][
        0
    ]["LaunchTemplateData"]
    ebs = data["BlockDeviceMappings"][0]["Ebs"]
    assert (ebs["VolumeSize"], ebs["VolumeType"], ebs["Encrypted"]) == (256, "gp3", True)
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    # ...and the instance really got it, tagged for the session.
    vols = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [inst["InstanceId"]]}])["Volumes"]
    ours = [v for v in vols if v["Size"] == 256]
    assert len(ours) == 1 and ours[0]["Encrypted"] and ours[0]["VolumeType"] == "gp3"
    assert {t["Key"]: t["Value"] for t in ours[0]["Tags"]}["inflab:session"] == name
    assert inst["IamInstanceProfile"]["Arn"].endswith(f"/inflab-{name}-instance")

    # Secrets on disk are private.
    pem = inflab_home / "sessions" / name / f"inflab-{name}.pem"
    assert pem.exists()
    assert _mode(pem) == 0o600
    assert pem.read_text().strip()
    assert _mode(inflab_home / "inflab.db") == 0o600

    # What `inflab resources` reports matches what AWS has.
    listed = _resources(cli, name)
    assert {x["type"] for x in listed} == {
        "ec2:instance",
        "ec2:key-pair",
        "ec2:security-group",
        "ec2:launch-template",
        "iam:instance-profile",
        "iam:role",
        "ssm:parameter",  # the progress beacon
    }
    assert [x["id"] for x in listed if x["type"] == "ec2:instance"] == [inst["InstanceId"]]

    # Running it again changes nothing.
    before = _counts(tagged(name))
    assert before == {
        "instances": 1,
        "key_pairs": 1,
        "security_groups": 1,
        "launch_templates": 1,
        "roles": 1,
        "instance_profiles": 1,
    }
    pem_before = pem.read_text()
    r2 = cli("run", "--sandbox", "--name", name, "--until", "wait-running")
    assert r2.returncode == 0, r2.stdout + r2.stderr
    after = tagged(name)
    assert _counts(after) == before
    assert after["instances"][0]["InstanceId"] == inst["InstanceId"]
    assert pem.read_text() == pem_before
    assert "▶" not in r2.stdout  # no step had to run again
    assert sorted(_resources(cli, name), key=lambda x: x["id"]) == sorted(listed, key=lambda x: x["id"])


def _run_and_kill_at(pattern: str, name: str, inflab_home) -> list[str]:
    """Start `inflab run`, SIGKILL it as soon as a line of its output matches ``pattern``; return what it printed."""
    env = dict(os.environ, INFLAB_HOME=str(inflab_home), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "inflab.cli", "run", "--sandbox", "--name", name, "--until", "wait-running"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=ROOT,
    )
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if re.match(pattern, line):
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.wait(timeout=60)
    return seen


def _started(step: str) -> str:
    return rf"▶ {re.escape(step)}\s"


KILL_POINTS = {
    # as soon as the step starts
    "keypair": _started("keypair"),
    "security-group": _started("security-group"),
    "instance-profile": _started("instance-profile"),
    "launch-template": _started("launch-template"),
    "launch": _started("launch"),
    "wait-running": _started("wait-running"),
    # in the middle of a step: the role exists, its instance profile does not yet
    "instance-profile-after-role": r"\s+Created role ",
    # in the middle of the launch: one zone refused, the next not tried yet
    "launch-after-first-zone": r"\s+No inf1\.2xlarge capacity in us-west-2a",
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_killed_run_resumes_to_exactly_one_instance(point, name, cli, tagged, faults, inflab_home):
    if point == "launch-after-first-zone":
        faults({"run_instances": {"us-west-2a": "InsufficientInstanceCapacity"}})
    seen = _run_and_kill_at(KILL_POINTS[point], name, inflab_home)
    assert seen and re.match(KILL_POINTS[point], seen[-1]), seen
    faults({})

    r = cli("run", "--sandbox", "--name", name, "--until", "wait-running")
    assert r.returncode == 0, r.stdout + r.stderr

    found = tagged(name)
    assert len(found["instances"]) == 1, found["instances"]
    assert found["instances"][0]["State"]["Name"] == "running"
    assert _counts(found) == {
        "instances": 1,
        "key_pairs": 1,
        "security_groups": 1,
        "launch_templates": 1,
        "roles": 1,
        "instance_profiles": 1,
    }
    assert (inflab_home / "sessions" / name / f"inflab-{name}.pem").exists()

    sessions = {s["name"]: s for s in json.loads(cli("sessions", "--json").stdout)}
    assert sessions[name]["next_step"] == "connect"  # everything up to wait-running is done

    # And cleanup still finds everything, including what the killed run made.
    r = cli("cleanup", name, "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert _resources(cli, name) == []


def test_cleanup_removes_everything_the_session_made(name, cli, tagged, store, inflab_home):
    r = cli("run", "--sandbox", "--name", name, "--until", "wait-running")
    assert r.returncode == 0, r.stdout + r.stderr
    assert all(_counts(tagged(name)).values())

    r = cli("cleanup", name, "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert f"Session {name}: everything it created is gone." in r.stdout

    assert _resources(cli, name) == []
    assert _counts(tagged(name)) == {k: 0 for k in _counts(tagged(name))}
    assert not (inflab_home / "sessions" / name / f"inflab-{name}.pem").exists()
    assert store.ledger(name, live_only=True) == []

    # A second cleanup finds nothing to do and still succeeds.
    r = cli("cleanup", name, "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert _resources(cli, name) == []


def test_capacity_in_the_first_zones_falls_through_to_the_next(name, cli, aws, tagged, faults):
    faults(
        {
            "run_instances": {
                "us-west-2a": "InsufficientInstanceCapacity",
                "us-west-2b": "InsufficientInstanceCapacity",
                "us-west-2c": "Unsupported",
            }
        }
    )

    r = cli("run", "--sandbox", "--name", name, "--until", "wait-running")

    assert r.returncode == 0, r.stdout + r.stderr
    insts = tagged(name)["instances"]
    assert len(insts) == 1
    assert insts[0]["Placement"]["AvailabilityZone"] == "us-west-2d"
    for zone in ("us-west-2a", "us-west-2b", "us-west-2c"):
        assert zone in r.stdout, r.stdout
    assert "InsufficientInstanceCapacity" in r.stdout and "Unsupported" in r.stdout


def test_no_capacity_anywhere_fails_cleanly(name, cli, tagged, faults, store):
    faults({"run_instances": {"*": "InsufficientInstanceCapacity"}})

    r = cli("run", "--sandbox", "--name", name, "--until", "wait-running")

    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert "launch" in lines[0] and "capacity" in lines[0].lower()
    assert not tagged(name)["instances"]
    assert [x.kind for x in store.ledger(name, live_only=True) if x.kind == "ec2:instance"] == []
    states = store.step_states(name)
    assert states["launch"]["state"] == "failed"
    assert "capacity" in states["launch"]["error"].lower()

    faults({})
    r = cli("cleanup", name, "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert _resources(cli, name) == []


@pytest.mark.parametrize("code", ["InstanceLimitExceeded", "VcpuLimitExceeded"])
def test_quota_stops_with_a_message_about_the_quota(code, name, cli, tagged, faults, store):
    faults({"run_instances": {"*": code}})

    r = cli("run", "--sandbox", "--name", name, "--until", "wait-running")

    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert "quota" in lines[0].lower() and code in lines[0]
    assert not tagged(name)["instances"]
    assert [x for x in store.ledger(name, live_only=True) if x.kind == "ec2:instance"] == []


def test_failed_launch_can_be_retried_once_capacity_returns(name, cli, tagged, faults):
    faults({"run_instances": {"*": "InsufficientInstanceCapacity"}})
    assert cli("run", "--sandbox", "--name", name, "--until", "wait-running").returncode == 1
    faults({})

    r = cli("run", "--sandbox", "--name", name, "--until", "wait-running")

    assert r.returncode == 0, r.stdout + r.stderr
    assert len(tagged(name)["instances"]) == 1


def test_run_json_summary(sandbox, name, cli):
    r = cli("run", "--sandbox", "--json", "--name", name, "--until", "keypair")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["session"] == name and out["ok"] is True and out["sandbox"] is True
    assert out["steps"]["keypair"] == "done" and out["steps"]["security-group"] == "pending"
    assert "▶ keypair" in r.stderr  # progress goes to stderr


def test_sandbox_status_and_start_are_idempotent(cli, sandbox):
    r = cli("sandbox", "status")
    assert r.returncode == 0, r.stderr
    assert f"pid {sandbox.pid}" in r.stdout
    assert f"AWS endpoint: {sandbox.endpoint}" in r.stdout and f"port {sandbox.ssh_port}" in r.stdout

    r = cli("sandbox", "status", "--json")
    got = json.loads(r.stdout)
    assert {k: got[k] for k in ("running", "pid", "endpoint", "ssh_port", "aws_like")} == {
        "running": True,
        "pid": sandbox.pid,
        "endpoint": sandbox.endpoint,
        "ssh_port": sandbox.ssh_port,
        "aws_like": True,
    }
    assert got["iam_policy"] == sandbox.iam_policy and got["faults"]["ec2"]["client_tokens"] is True

    first = cli("sandbox", "start")
    second = cli("sandbox", "start")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert f"pid {sandbox.pid}" in first.stdout
    assert first.stdout == second.stdout


def test_sessions_shows_where_to_resume(sandbox, name, cli):
    r = cli("run", "--sandbox", "--name", name, "--until", "keypair")
    assert r.returncode == 0, r.stdout + r.stderr

    rows = {s["name"]: s for s in json.loads(cli("sessions", "--json").stdout)}
    assert rows[name]["next_step"] == "security-group"
    assert rows[name]["steps_done"] == 3
    assert rows[name]["sandbox"] is True

    text = cli("sessions").stdout
    line = next(l for l in text.splitlines() if l.startswith(name + " "))
    assert "security-group" in line and "sandbox" in line

    # Continuing picks up there: the earlier steps are not run again.
    r = cli("run", "--sandbox", "--name", name, "--until", "security-group")
    assert r.returncode == 0, r.stdout + r.stderr
    started = [l.split()[1] for l in r.stdout.splitlines() if l.startswith("▶")]
    assert started == ["security-group"]


def test_sandbox_status_without_a_daemon_exits_1(cli, tmp_path):
    r = cli("sandbox", "status", env={"INFLAB_HOME": str(tmp_path)})
    assert r.returncode == 1
    assert r.stdout.startswith("sandbox not running")
    r = cli("sandbox", "stop", env={"INFLAB_HOME": str(tmp_path)})
    assert r.returncode == 0 and r.stdout.strip() == "sandbox was not running"


def test_interrupt_stops_the_run_and_a_rerun_finishes(name, cli, tagged, inflab_home):
    env = dict(os.environ, INFLAB_HOME=str(inflab_home), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "inflab.cli", "run", "--sandbox", "--name", name, "--until", "wait-running"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=ROOT,
    )
    for line in proc.stdout:
        if re.match(_started("keypair"), line):
            proc.send_signal(signal.SIGINT)  # Ctrl-C
            break
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in out + err
    assert not tagged(name)["instances"]
    rows = {s["name"]: s for s in json.loads(cli("sessions", "--json").stdout)}
    assert rows[name]["next_step"] is not None

    r = cli("run", "--sandbox", "--name", name, "--until", "wait-running")
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(tagged(name)["instances"]) == 1
