"""The sandbox instance: the `connect` step, plain OpenSSH into it, a PTY, and who may log in."""

from __future__ import annotations

import subprocess

import pytest
from test_remote_ssh import render_top

from inflab.remote.ssh import ConnectFailed, HostKeyPin, Target, connect


@pytest.fixture
def connected(name, cli, store, sandbox):
    r = cli("run", "--sandbox", "--name", name, "--until", "connect")
    assert r.returncode == 0, r.stdout + r.stderr
    host = store.get(name, "host")
    key = store.session_dir(name) / f"inflab-{name}.pem"
    return Target("127.0.0.1", sandbox.ssh_port, host["user"], str(key)), r


def test_connect_step_pins_the_host_key_from_the_console(connected, name, store):
    _, r = connected
    assert "matched the instance's console output" in r.stdout
    pin = store.get(name, "host_key")
    assert pin["source"] == "console" and pin["fingerprint"].startswith("SHA256:")
    assert pin["instance_id"] == store.get(name, "host")["instance_id"]
    info = store.get(name, "connect")
    assert info["uname"].startswith("Linux") and info["cores"] >= 1


def test_plain_openssh_client_reaches_the_instance_directory(connected, name, store, inflab_home):
    target, _ = connected
    r = subprocess.run(
        [
            "ssh",
            "-p",
            str(target.port),
            "-i",
            target.key_path,
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            f"{target.user}@127.0.0.1",
            "pwd; echo $INFLAB_SANDBOX_INSTANCE",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    cwd, iid = r.stdout.split()
    assert iid == store.get(name, "host")["instance_id"]
    assert cwd == str(inflab_home / "sandbox" / "instances" / iid)


async def test_top_renders_on_the_sandbox_instance(connected, name, store):
    target, _ = connected
    text = await render_top(target, HostKeyPin(fingerprint=store.get(name, "host_key")["fingerprint"]))
    assert "load average" in text and "PID" in text


async def test_a_terminated_instance_refuses_the_key(connected, name, store):
    from inflab.engine import Engine

    target, _ = connected
    assert Engine(store, name).undo("launch").ok  # terminates the instance; the key file stays
    with pytest.raises(ConnectFailed) as err:
        await connect(target, HostKeyPin(), timeout=2)
    assert "refused the session's key" in str(err.value)


def test_real_ssh_command_uses_the_pinned_host_key(connected, name, store):
    import stat

    from inflab.engine import Engine

    cmd = Engine(store, name).ssh_command("echo", "pinned-ok")
    assert "StrictHostKeyChecking=yes" in cmd
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "pinned-ok"
    # With a different key in the known_hosts file, OpenSSH refuses, as it should.
    kh = store.session_dir(name) / "known_hosts"
    assert stat.S_IMODE(kh.stat().st_mode) == 0o600
    host = kh.read_text().split(" ", 1)[0]
    other = store.session_dir(name) / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    key_type, key_b64 = other.with_suffix(".pub").read_text().split()[:2]
    kh.write_text(f"{host} {key_type} {key_b64}\n")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode != 0 and "HOST IDENTIFICATION HAS CHANGED" in r.stderr.upper()


def test_connect_replaces_a_stale_ssh_rule(connected, name, store, aws):
    """An SSH rule for an address that is no longer yours is removed when the group is checked again."""
    from inflab.engine import Engine

    ec2 = aws("ec2")
    gid = store.get(name, "security_group_id")
    ec2.authorize_security_group_ingress(
        GroupId=gid,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "198.51.100.9/32"}]}
        ],
    )
    assert Engine(store, name).run_one("security-group").ok
    perms = ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]["IpPermissions"]
    assert [r["CidrIp"] for p in perms for r in p["IpRanges"]] == ["127.0.0.1/32"]


async def test_a_key_registered_only_through_the_emulator_is_refused(sandbox, aws, tmp_path):
    """The emulated EC2 API has no authentication: registering a key there must not open a shell."""
    ec2 = aws("ec2")
    key = tmp_path / "intruder"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    ec2.import_key_pair(KeyName=f"intruder-{tmp_path.name}", PublicKeyMaterial=key.with_suffix(".pub").read_bytes())
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    inst = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, KeyName=f"intruder-{tmp_path.name}")["Instances"][0]
    try:
        with pytest.raises(ConnectFailed) as err:
            await connect(Target("127.0.0.1", sandbox.ssh_port, "ubuntu", str(key)), HostKeyPin(), timeout=2)
        assert "refused the session's key" in str(err.value)
    finally:
        ec2.terminate_instances(InstanceIds=[inst["InstanceId"]])


def test_a_job_left_running_on_an_emulated_instance_stops_with_it(tmp_path):
    """A server never ends by itself: terminating the emulated instance (or stopping the sandbox) stops it."""
    import os

    from inflab import sandbox

    jobs = sandbox.state_dir(tmp_path) / "instances" / "i-0123abcd" / ".inflab" / "jobs"
    (jobs / "serve-1").mkdir(parents=True)
    (jobs / "done-1").mkdir()
    server = subprocess.Popen(["sleep", "300"], start_new_session=True)  # its own group, as a detached job is
    (jobs / "serve-1" / "pid").write_text(f"{server.pid}\n")
    (jobs / "done-1" / "pid").write_text(f"{os.getpid()}\n")  # ended: never signalled (its pid is another's now)
    (jobs / "done-1" / "exit_code").write_text("0\n")

    sandbox.forget_instance(tmp_path, "i-0123abcd")

    assert server.wait(10) == -15, "the server's group got SIGTERM"
    assert not jobs.exists()  # (and this test process, whose pid the ended job named, was left alone)
