"""Leaving the lab: what the terminal says after the TUI closes, and the sandbox's image store
(how much it holds when the sandbox stops, and pruning it, never under a running job)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest
from conftest import ROOT, run_cli

from inflab import config, sandbox as sb
from inflab.sandbox import image_store

ANSI = re.compile(r"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b[()][A-Za-z0-9]|\x1b[@-Z\\-_]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)")


def read_until(fd: int, seen: bytearray, predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate(seen):
            return True
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the other end closed: the program ended
                return predicate(seen)
            if not chunk:
                return predicate(seen)
            seen += chunk
    return predicate(seen)


def test_quitting_the_lab_says_how_to_resume_and_that_the_sandbox_keeps_running(sandbox, store, name, inflab_home):
    cfg = config.load(None, sandbox=True)
    store.create_session(name, cfg.data, sandbox=True, track=cfg.track)
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = dict(os.environ, INFLAB_HOME=str(inflab_home), TERM="xterm-256color", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "inflab.cli", "resume", name],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        cwd=ROOT,
        start_new_session=True,
        close_fds=True,
    )
    os.close(follower)
    seen = bytearray()
    try:
        # The lab is up once the step list is on the screen; then q.
        assert read_until(leader, seen, lambda b: b"credentials" in b, 60), ANSI.sub("", seen.decode(errors="replace"))[
            -2000:
        ]
        # q while the background check of the session still runs asks first ("Quit while …?"): say no
        # and try again once it is done (a busy machine checks slowly), so the quit tested is the plain one
        deadline = time.monotonic() + 60
        while True:
            mark = len(seen)
            os.write(leader, b"q")
            if read_until(leader, seen, lambda b: b"inflab sandbox stop" in b or b"Quit while" in b[mark:], 30):
                if b"inflab sandbox stop" in seen:
                    break
            assert time.monotonic() < deadline, ANSI.sub("", seen.decode(errors="replace"))[-2000:]
            os.write(leader, b"n")
            time.sleep(1)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(leader)
    text = " ".join(ANSI.sub("", seen.decode(errors="replace")).split())
    assert proc.returncode == 0
    assert f"Session {name} is saved. Resume it with: inflab resume {name}" in text, text[-600:]
    assert "The sandbox keeps running in the background" in text and "Stop it with: inflab sandbox stop" in text


def fake_image(home, digest: str, size: int) -> None:
    """An image store entry of ``size`` bytes (the store only counts and deletes)."""
    venv = image_store.store_dir(home) / digest / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "lib.bin").write_bytes(os.urandom(size))
    (venv / "bin" / "python").symlink_to(sys.executable)  # a link is counted, not followed
    (venv / ".inflab-image").write_text(digest)


@pytest.mark.sandbox  # a daemon of its own
def test_stop_says_what_the_image_store_holds_and_prune_frees_it_only_when_nothing_runs(tmp_path):
    home = tmp_path
    fake_image(home, "aaaa1111", 3_000_000)
    fake_image(home, "bbbb2222", 2_000_000)
    sb.ensure_running(home)
    try:
        r = run_cli("sandbox", "prune", home=home)
        assert r.returncode == 1 and "nothing deleted: the sandbox is running" in r.stderr, r.stderr
        assert len(list(image_store.store_dir(home).iterdir())) == 2
    finally:
        r = run_cli("sandbox", "stop", home=home)
    assert r.returncode == 0, r.stderr
    assert "sandbox stopped" in r.stdout
    held = re.search(
        r"Its image store keeps ([\d.]+) MB in 2 image\(s\) \((.+)\), for the next session; "
        r"inflab sandbox prune frees it",
        r.stdout,
    )
    assert held and 5.0 <= float(held.group(1)) < 5.5, r.stdout
    assert held.group(2) == str(image_store.store_dir(home))

    # A job of an emulated instance still running (its process group alive): refused, nothing deleted.
    jobs = sb.state_dir(home) / "instances" / "i-0abc" / ".inflab" / "jobs" / "benchmark-1"
    jobs.mkdir(parents=True)
    job = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        (jobs / "pid").write_text(str(job.pid))
        r = run_cli("sandbox", "prune", home=home)
        assert r.returncode == 1 and "benchmark-1 on i-0abc" in r.stderr, r.stderr
        assert len(list(image_store.store_dir(home).iterdir())) == 2
    finally:
        job.kill()
        job.wait()

    r = run_cli("sandbox", "prune", home=home)
    assert r.returncode == 0, r.stderr
    assert re.search(r"Freed 5\.\d MB: deleted 2 image\(s\) from ", r.stdout), r.stdout
    assert list(image_store.store_dir(home).iterdir()) == []
    assert os.path.exists(sys.executable)  # the link was removed, not what it points to
    r = run_cli("sandbox", "prune", home=home)
    assert r.returncode == 0 and "nothing to free" in r.stdout
