"""The sandbox: AWS emulated on loopback, run as a background daemon.

``ensure_running`` is idempotent: a live daemon is reused, a stale state file is
replaced. The daemon's state lives in ``<INFLAB_HOME>/sandbox``: ``state.json`` (pid, ports,
the IAM policy it checks) and ``secret.json``, the secret its endpoint asks of every request and,
while it checks an IAM policy, its emulated users' access keys (both readable by this user only;
see :mod:`.gate` and :mod:`.iam`).
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
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InflabError
from ..private_files import check_dir, open_own, private_dir

START_TIMEOUT = 60.0
STATE_FILE = "state.json"
SECRET_FILE = "secret.json"


class SandboxError(InflabError, RuntimeError):
    pass


@dataclass(frozen=True)
class SandboxInfo:
    pid: int
    port: int
    ssh_port: int = 0
    secret: str = field(default="", repr=False)
    secret_header: str = ""
    #: the --iam-policy file the emulator checks the lab's calls against ("": it checks nothing)
    iam_policy: str = ""
    #: the emulated users' access keys while it checks one: "lab", "admin" → (key id, secret)
    keys: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        """What a request to the endpoint must carry to be answered."""
        return {self.secret_header: self.secret}

    def access_key(self, who: str) -> tuple[str, str] | None:
        """The access key of ``who`` ("lab": the participant the lab signs as; "admin": the sandbox's
        own clients), or None when the emulator checks no IAM policy."""
        return self.keys.get(who)


def state_dir(home: Path) -> Path:
    """``<home>/sandbox``; if it is there it must be this user's, writable by nobody else, and not a
    link (:class:`~inflab.private_files.UnsafePath` otherwise): its files say where the cloud is."""
    d = Path(home) / "sandbox"
    check_dir(d)
    return d


def _read(home: Path, name: str) -> dict:
    try:
        data = json.loads((state_dir(home) / name).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _state_pid(home: Path) -> int | None:
    """The pid the state file names, whatever else it holds."""
    pid = _read(home, STATE_FILE).get("pid")
    return pid if isinstance(pid, int) and pid > 0 else None


def read_state(home: Path) -> SandboxInfo | None:
    """What the daemon's files say (no health check: cheap). None unless both are its."""
    state, access = _read(home, STATE_FILE), _read(home, SECRET_FILE)
    try:
        keys = {
            who: (str(k["access_key_id"]), str(k["secret_access_key"]))
            for who, k in (access.get("credentials") or {}).items()
        }
        info = SandboxInfo(
            int(state["pid"]),
            int(state["port"]),
            int(state.get("ssh_port", 0)),
            str(access["secret"]),
            str(access["header"]),
            str(state.get("iam_policy") or ""),
            keys,
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if access.get("pid") != info.pid or access.get("endpoint") != info.endpoint:
        return None
    return info


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
    info = read_state(home)
    if info and _alive(info.pid) and _healthy(info):
        return info
    return None


def ensure_running(
    home: Path, port: int = 0, iam_policy: str | os.PathLike | None = None, *, aws_like: bool = False
) -> SandboxInfo:
    """The running daemon, started if there is none. ``iam_policy``: a policy file (checked by the
    caller, see :func:`.iam.load_documents`) that a daemon started now checks the lab's calls
    against; ``aws_like``: a daemon started now begins with :data:`.faults.AWS_LIKE`. A daemon
    already running is returned as it is (compare its ``iam_policy``)."""
    info = status(home)
    if info:
        return info
    sdir = private_dir(state_dir(home))
    stale = _state_pid(home)
    if stale is not None and _alive(stale):
        # A process holds the state file but does not answer (or left no secret): replace it.
        _terminate(stale)
    (sdir / STATE_FILE).unlink(missing_ok=True)
    log = os.fdopen(open_own(sdir / "daemon.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND), "ab")
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    args = [sys.executable, "-m", "inflab.sandbox.daemon", "--state-dir", str(sdir), "--port", str(port)]
    if iam_policy is not None:
        args += ["--iam-policy", str(Path(iam_policy).resolve())]
    if aws_like:
        args.append("--aws-like")
    proc = subprocess.Popen(
        args,
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
        info = read_state(home)
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


STOP_WAIT_S = 10.0  # how long a stopped job's processes get to end after SIGTERM before SIGKILL


def _group_running(pgid: int) -> bool:
    """Whether a process of the group is still running (one that has ended but is not reaped yet does not count)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
            return True
        except OSError:
            return False
    for stat_file in proc.glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def stop_jobs(home: Path, instance_id: str | None = None, wait: float = STOP_WAIT_S) -> list[str]:
    """Stop the detached jobs still running on an emulated instance (all of them when None) — a server
    (TorchServe) never ends by itself, and a real instance's processes end with it — and wait for
    their processes to end: SIGTERM, up to ``wait`` seconds, then SIGKILL. Returns a line for each
    job whose processes were still running after that (none: everything stopped has ended)."""
    base = state_dir(home) / "instances"
    dirs = [base / instance_id] if instance_id else sorted(base.glob("i-*"))
    groups: dict[int, str] = {}
    for d in dirs:
        for pid_file in (d / ".inflab" / "jobs").glob("*/pid"):
            if (pid_file.parent / "exit_code").exists():
                continue  # ended: its pid may belong to someone else by now
            try:
                pgid = int(pid_file.read_text().strip())
                os.killpg(pgid, signal.SIGTERM)
            except (ValueError, OSError):
                continue
            groups[pgid] = f"{d.name}/{pid_file.parent.name}"
    for sig, seconds in ((signal.SIGKILL, wait), (None, 2.0)):
        deadline = time.monotonic() + seconds
        while groups and time.monotonic() < deadline:
            groups = {g: job for g, job in groups.items() if _group_running(g)}
            if groups:
                time.sleep(0.05)
        groups = {g: job for g, job in groups.items() if _group_running(g)}
        if sig is not None:
            for g in groups:
                try:
                    os.killpg(g, sig)
                except OSError:
                    pass
    return [
        f"job {job} (process group {g}) was still running {wait + 2:.0f} s after it was stopped"
        for g, job in groups.items()
    ]


def stop(home: Path) -> bool:
    """Stop the daemon and the emulated instances' running jobs; True if the daemon was running."""
    from .sagemaker import stop_leftovers

    stop_jobs(home)
    pid = _state_pid(home)
    running = pid is not None and _alive(pid)
    if running:
        _terminate(pid)
    stop_leftovers(state_dir(home))  # endpoint processes a killed daemon left behind
    for name in (STATE_FILE, SECRET_FILE):
        (state_dir(home) / name).unlink(missing_ok=True)
    return running


def forget_instance(home: Path, instance_id: str) -> list[str]:
    """Stop a terminated emulated instance's jobs (waiting for them to end) and remove its disk (its home
    directory here). Returns a line for each job that would not end."""
    import re
    import shutil

    if not re.fullmatch(r"i-[0-9a-f]+", instance_id):
        return []
    stuck = stop_jobs(home, instance_id)
    shutil.rmtree(state_dir(home) / "instances" / instance_id, ignore_errors=True)
    return stuck


def set_faults(info: SandboxInfo, faults: dict) -> dict:
    req = urllib.request.Request(
        f"{info.endpoint}/inflab-sandbox/faults",
        data=json.dumps(faults).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **info.headers},
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def get_faults(info: SandboxInfo) -> dict:
    req = urllib.request.Request(f"{info.endpoint}/inflab-sandbox/faults", headers=dict(info.headers))
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())
