"""The sandbox instance: the `connect` step, plain OpenSSH into it, a PTY, and who may log in."""

from __future__ import annotations

import subprocess

import pytest

from inflab.remote.ssh import ConnectFailed, HostKeyPin, Target, connect
from test_remote_ssh import render_top


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
        ["ssh", "-p", str(target.port), "-i", target.key_path, "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", f"{target.user}@127.0.0.1", "pwd; echo $INFLAB_SANDBOX_INSTANCE"],
        capture_output=True, text=True, timeout=30,
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
