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
        """Start sshd and wait until it listens: it writes its pid file once its socket is bound. Should
        something else have taken the port since it was drawn, sshd cannot bind it and exits: it is
        started again on another port (``target()`` names the port it got)."""
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        failures: list[str] = []
        for _ in range(5):
            error = self._start_on(self.port)
            if error is None:
                return
            failures.append(f"port {self.port}: {error}")
            if "Address already in use" not in error and "Cannot bind" not in error:
                break
            self.port = free_port()
        raise RuntimeError("sshd did not start: " + "; ".join(failures))

    def _start_on(self, port: int) -> str | None:
        """None once sshd listens on ``port``, or why it did not (what it said as it exited)."""
        cfg = self.root / "sshd_config"
        pid_file = self.root / "sshd.pid"
        pid_file.unlink(missing_ok=True)
        cfg.write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {self.root / 'host'}\n"
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}\nPidFile {pid_file}\n"
            "UsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
        )
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(cfg)], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return self.proc.stderr.read().decode().strip() or f"exit status {self.proc.returncode}"
            try:  # our sshd's own pid: not a listener someone else has on the port
                if int(pid_file.read_text()) == self.proc.pid:
                    return None
            except (OSError, ValueError):  # not written yet, or half written
                pass
            time.sleep(0.05)
        self.stop()
        return "did not listen within 30 s"

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


def test_sshd_moves_to_another_port_when_its_own_was_taken(tmp_path):
    """A port drawn free can be taken before sshd binds it: sshd cannot bind, and starts on another."""
    server = OpenSSHServer(tmp_path)
    taken = server.port
    with socket.socket() as other:
        other.bind(("127.0.0.1", taken))
        other.listen()
        server.start()
        try:
            assert server.port != taken and server.target().port == server.port
            assert int((tmp_path / "sshd.pid").read_text()) == server.proc.pid
        finally:
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
        await asyncio.wait_for(proc.wait_closed(), 30)
    assert lines == ["line 1", "line 2 after-1", "line 3 after-2"]


TOP_FRAME = ("load average", "PID", "COMMAND")  # top's whole first frame: its header and its columns


async def render_top(target: Target, pin: HostKeyPin, within_s: float = 30) -> str:
    """Run `top` on a PTY over SSH and render what it draws with pyte, until its whole first frame
    (:data:`TOP_FRAME`) is on the screen; fails with the screen as it is if that takes over ``within_s``."""
    screen = pyte.Screen(100, 30)
    stream = pyte.ByteStream(screen)
    conn = await connect(target, pin, timeout=20)
    async with conn:
        proc = await conn.create_process("top -d 1", term_type="xterm", term_size=(100, 30), encoding=None)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        text, ended = "", False
        while not all(word in text for word in TOP_FRAME) and not ended and loop.time() < deadline:
            try:
                data = await asyncio.wait_for(proc.stdout.read(65536), min(1.0, max(deadline - loop.time(), 0.01)))
            except asyncio.TimeoutError:
                continue
            ended = not data  # top is gone: nothing more will come
            stream.feed(data)
            text = "\n".join(screen.display)
        proc.stdin.write(b"q")
        proc.close()
    missing = [word for word in TOP_FRAME if word not in text]
    assert not missing, (
        f"top's first frame is missing {missing} after {within_s:.0f} s"
        f"{' (top ended)' if ended else ''}; the screen:\n{text}"
    )
    return text


@pytest.mark.skipif(shutil.which("top") is None, reason="top (procps) is not installed")
async def test_top_renders_through_a_pty_into_pyte(sshd):
    text = await render_top(sshd.target(), HostKeyPin())
    assert "load average" in text
    assert "PID" in text and "COMMAND" in text
