"""The sandbox: AWS emulated on loopback, run as a background daemon.

``ensure_running`` is idempotent: a live daemon is reused, a stale state file is
replaced. The daemon's state lives in ``<INFLAB_HOME>/sandbox``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT = 60.0


class SandboxError(RuntimeError):
    pass


@dataclass(frozen=True)
class SandboxInfo:
    pid: int
    port: int
    ssh_port: int = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def state_dir(home: Path) -> Path:
    return Path(home) / "sandbox"


def _read_state(home: Path) -> SandboxInfo | None:
    try:
        data = json.loads((state_dir(home) / "state.json").read_text())
        return SandboxInfo(int(data["pid"]), int(data["port"]), int(data.get("ssh_port", 0)))
    except (OSError, ValueError, KeyError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _healthy(info: SandboxInfo, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{info.endpoint}/inflab-sandbox/health", timeout=timeout) as r:
            return json.loads(r.read()).get("pid") == info.pid
    except (OSError, ValueError):
        return False


def status(home: Path) -> SandboxInfo | None:
    """The running daemon, or None."""
    info = _read_state(home)
    if info and _alive(info.pid) and _healthy(info):
        return info
    return None


def ensure_running(home: Path, port: int = 0) -> SandboxInfo:
    info = status(home)
    if info:
        return info
    sdir = state_dir(home)
    sdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    stale = _read_state(home)
    if stale and _alive(stale.pid):
        # A process holds the state file but does not answer: leave it be only if it is
        # not ours to stop; otherwise replace it.
        _terminate(stale.pid)
    (sdir / "state.json").unlink(missing_ok=True)
    log = open(sdir / "daemon.log", "ab")
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "inflab.sandbox.daemon", "--state-dir", str(sdir), "--port", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
        close_fds=True,
    )
    log.close()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (sdir / "daemon.log").read_text(errors="replace")[-400:]
            raise SandboxError(f"the sandbox daemon exited at start (code {proc.returncode}): {tail.strip()}")
        info = _read_state(home)
        if info and info.pid == proc.pid and _healthy(info):
            return info
        time.sleep(0.1)
    _terminate(proc.pid)
    raise SandboxError(f"the sandbox daemon did not answer within {START_TIMEOUT:.0f} s (log: {sdir / 'daemon.log'})")


def _terminate(pid: int, timeout: float = 10.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        try:  # reap it if it is our child
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop(home: Path) -> bool:
    """Stop the daemon; True if one was running."""
    info = _read_state(home)
    if not info or not _alive(info.pid):
        (state_dir(home) / "state.json").unlink(missing_ok=True)
        return False
    _terminate(info.pid)
    (state_dir(home) / "state.json").unlink(missing_ok=True)
    return True


def forget_instance(home: Path, instance_id: str) -> None:
    """Remove a terminated emulated instance's disk (its home directory here)."""
    import re
    import shutil

    if re.fullmatch(r"i-[0-9a-f]+", instance_id):
        shutil.rmtree(state_dir(home) / "instances" / instance_id, ignore_errors=True)


def set_faults(info: SandboxInfo, faults: dict) -> dict:
    req = urllib.request.Request(
        f"{info.endpoint}/inflab-sandbox/faults",
        data=json.dumps(faults).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())
