"""The SSH client against a real OpenSSH sshd on loopback, and against the sandbox instance."""

from __future__ import annotations

import asyncio
import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import asyncssh
import pyte
import pytest

from inflab.remote.payload.ports import free_ports
from inflab.remote.ssh import ConnectFailed, HostKeyMismatch, HostKeyPin, Target, connect, console_fingerprints

SSHD = "/usr/sbin/sshd"
NO_SSHD = f"openssh-server is not installed ({SSHD} is missing; make test installs it)"
pytestmark = pytest.mark.skipif(not os.path.exists(SSHD), reason=NO_SSHD)


def free_port() -> int:
    """A loopback port below the ephemeral range: sshd binds it later, and an ephemeral port could be
    taken meanwhile by any outgoing connection on the machine."""
    return free_ports(1)[0]


class OpenSSHServer:
    """A real sshd on 127.0.0.1 with its own host key, accepting one client key."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "client")], check=True)
        (root / "authorized_keys").write_text((root / "client.pub").read_text())
        os.chmod(root / "authorized_keys", 0o600)
        self.new_host_key()

    def new_host_key(self) -> None:
        for f in ("host", "host.pub"):
            (self.root / f).unlink(missing_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.root / "host")], check=True)

    @property
    def host_fingerprint(self) -> str:
        return asyncssh.read_public_key(str(self.root / "host.pub")).get_fingerprint("sha256")

    def start(self) -> None:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        cfg = self.root / "sshd_config"
        cfg.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.root / 'host'}\n"
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}\nPidFile {self.root / 'sshd.pid'}\n"
            "UsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
        )
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(cfg)], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {self.proc.stderr.read().decode()}")
            time.sleep(0.05)
        raise RuntimeError("sshd did not listen")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def target(self) -> Target:
        return Target("127.0.0.1", self.port, getpass.getuser(), str(self.root / "client"))


@pytest.fixture
def sshd(tmp_path):
    """A started OpenSSH server; tests in other modules that use it skip too when sshd is missing."""
    if not os.path.exists(SSHD):
        pytest.skip(NO_SSHD)
    server = OpenSSHServer(tmp_path)
    server.start()
    yield server
    server.stop()


async def test_connect_pins_the_key_on_first_use_and_runs_commands(sshd):
    pin = HostKeyPin()
    conn = await connect(sshd.target(), pin, timeout=20)
    async with conn:
        result = await conn.run("echo hello from $(hostname)", check=True)
    assert result.stdout.startswith("hello from")
    assert pin.source == "first-use"
    assert pin.seen == sshd.host_fingerprint

    # With the pin, a second connection to the same server is accepted.
    again = HostKeyPin(fingerprint=pin.seen)
    conn = await connect(sshd.target(), again, timeout=20)
    conn.close()
    assert again.source == "pinned"


async def test_a_changed_host_key_is_refused(sshd):
    pin = HostKeyPin()
    (await connect(sshd.target(), pin, timeout=20)).close()
    sshd.stop()
    sshd.new_host_key()
    sshd.start()
    with pytest.raises(HostKeyMismatch) as err:
        await connect(sshd.target(), HostKeyPin(fingerprint=pin.seen), timeout=20)
    assert "changed" in str(err.value) and sshd.host_fingerprint in str(err.value)


async def test_console_fingerprints_pin_the_key_and_reject_a_different_one(sshd):
    console = f"boot...\n-----BEGIN SSH HOST KEY FINGERPRINTS-----\n256 {sshd.host_fingerprint} root@ip (ED25519)\n-----END SSH HOST KEY FINGERPRINTS-----\n"
    assert console_fingerprints(console) == [sshd.host_fingerprint]
    pin = HostKeyPin(console=tuple(console_fingerprints(console)))
    (await connect(sshd.target(), pin, timeout=20)).close()
    assert pin.source == "console"
    with pytest.raises(HostKeyMismatch):
        await connect(sshd.target(), HostKeyPin(console=("SHA256:somebodyelse",)), timeout=20)


async def test_connect_waits_until_sshd_answers(tmp_path):
    server = OpenSSHServer(tmp_path)
    messages: list[str] = []
    loop = asyncio.get_running_loop()
    loop.call_later(1.5, server.start)  # the instance is still booting at first
    try:
        conn = await connect(server.target(), HostKeyPin(), timeout=30, progress=messages.append)
        conn.close()
    finally:
        server.stop()
    assert messages and "Waiting for SSH" in messages[0]


async def test_connect_gives_up_with_a_clear_message(tmp_path):
    server = OpenSSHServer(tmp_path)  # never started
    with pytest.raises(ConnectFailed) as err:
        await connect(server.target(), HostKeyPin(), timeout=2)
    assert "did not accept SSH within 2 s" in str(err.value)


async def test_output_streams_line_by_line(sshd):
    """Each line arrives while the program runs: it prints a line, then waits for an answer to it."""
    conn = await connect(sshd.target(), HostKeyPin(), timeout=20)
    async with conn:
        proc = await conn.create_process("echo line 1; read a; echo line 2 $a; read b; echo line 3 $b")
        lines = []
        for answer in ("after-1", "after-2", None):
            line = await asyncio.wait_for(proc.stdout.readline(), 30)  # held back until the end: never comes
            lines.append(line.strip())
            if answer:
                proc.stdin.write(answer + "\n")
        await proc.wait_closed()
    assert lines == ["line 1", "line 2 after-1", "line 3 after-2"]


async def render_top(target: Target, pin: HostKeyPin) -> str:
    """Run `top` on a PTY over SSH and render what it draws with pyte."""
    screen = pyte.Screen(100, 30)
    stream = pyte.ByteStream(screen)
    conn = await connect(target, pin, timeout=20)
    async with conn:
        proc = await conn.create_process("top -d 1", term_type="xterm", term_size=(100, 30), encoding=None)
        deadline = asyncio.get_running_loop().time() + 30
        while asyncio.get_running_loop().time() < deadline:
            try:
                data = await asyncio.wait_for(proc.stdout.read(65536), 1)
            except asyncio.TimeoutError:
                continue
            stream.feed(data)
            text = "\n".join(screen.display)
            if all(word in text for word in ("load average", "PID", "COMMAND")):  # the whole first frame
                break
        proc.stdin.write(b"q")
        proc.close()
    return "\n".join(screen.display)


@pytest.mark.skipif(shutil.which("top") is None, reason="top (procps) is not installed")
async def test_top_renders_through_a_pty_into_pyte(sshd):
    text = await render_top(sshd.target(), HostKeyPin())
    assert "load average" in text
    assert "PID" in text and "COMMAND" in text
