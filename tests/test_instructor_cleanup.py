"""The instructor's cleanup beside participants who are still working, and beside another cleanup.

A participant's job stops with a sentence when the cleanup takes its instance; the cleanup says the
session was still active; two cleanups never run at once; a killed cleanup leaves its stand-in store
under the lab's home (not the system's temporary directory) and the next one removes it; the
sandbox waits for the processes it stops when an instance is terminated.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import threading
import time

import pytest
from conftest import sandbox_aws

from inflab import config, sandbox as sb
from inflab.aws import beacon, tags
from inflab.engine import Engine
from inflab.instructor import roster
from inflab.instructor.cleanup import WORK_DIR, CleanupBusy, exclusive
from inflab.instructor.room import RoomReader
from inflab.lab_steps.base import StepError
from inflab.lab_steps.remote_job import run_job
from inflab.session import RUNNING

TICKS = 'for i in $(seq 1 600); do echo "tick $i"; sleep 0.2; done'


def shared_roster(label: str, session: str = "") -> roster.Roster:
    text = f'[workshop]\nname = "room"\nsandbox = true\n[[participant]]\nlabel = "{label}"\nshared = true\n'
    return roster.from_dict(config.parse_toml(text + (f'session = "{session}"\n' if session else "")))


def own_account_roster_text(label: str, account: str) -> str:
    return (
        f'[workshop]\nname = "room"\nsandbox = true\n[[participant]]\nlabel = "{label}"\n'
        f'role_arn = "arn:aws:iam::{account}:role/Inflab"\n'
    )


def test_a_participant_whose_instance_is_cleaned_up_mid_job_stops_with_a_sentence(store, name, sandbox, inflab_home):
    cfg = config.from_dict({"lab": {"participant": "pat"}}, sandbox=True)
    store.create_session(name, cfg.data, sandbox=True, track=cfg.track)
    engine = Engine(store, name)
    assert engine.run("connect").ok
    engine.publish_progress("benchmark", RUNNING)  # as the engine does when the step starts
    ctx = engine.context(engine.step("benchmark"))
    lines: list[str] = []
    ctx.output = lines.extend
    outcome: dict[str, BaseException] = {}

    def participant() -> None:
        try:
            run_job(ctx, "bench", TICKS)
        except BaseException as e:  # noqa: BLE001 (the test looks at what it was)
            outcome["error"] = e

    worker = threading.Thread(target=participant)
    worker.start()
    for _ in range(600):
        if lines or outcome:
            break
        time.sleep(0.05)
    assert lines and not outcome, outcome  # the job is running on the instance
    reader = RoomReader(shared_roster("pat", name), inflab_home)
    logged: list[str] = []
    try:
        results = reader.cleanup(["pat"], delete_data=False, log=logged.append)
    finally:
        reader.close()
    worker.join(180)
    assert not worker.is_alive()
    error = outcome.get("error")
    assert isinstance(error, StepError), repr(error)
    assert "was terminated while job bench-1 ran" in str(error) and "cleanup" in str(error)
    # the instructor was told: the session was busy when it was cleaned
    assert results[0].ok and results[0].sessions == (name,)
    assert results[0].active and "step benchmark was running" in results[0].active[0]
    assert any("still active" in line for line in logged)


def test_a_second_cleanup_says_who_holds_the_lock_and_touches_nothing(sandbox, inflab_home, cli, tmp_path):
    path = tmp_path / "room.toml"
    path.write_text(shared_roster("ana").to_toml())
    with exclusive(inflab_home, "inflab instructor room.toml --cleanup-all"):
        r = cli("instructor", str(path), "--cleanup-all", "--yes", timeout=120)
        reader = RoomReader(shared_roster("ana"), inflab_home)  # the dashboard's cleanup asks the same lock
        try:
            with pytest.raises(CleanupBusy, match=f"pid {os.getpid()} "):
                reader.cleanup(["ana"], delete_data=False, log=lambda line: None)
        finally:
            reader.close()
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("inflab: error: --cleanup-all: another cleanup is running")
    assert f"pid {os.getpid()} (inflab instructor room.toml --cleanup-all) since " in r.stderr
    assert r.stdout == ""


def test_a_killed_cleanup_leaves_its_store_under_the_home_and_the_next_one_removes_it(
    sandbox, inflab_home, cli, tmp_path
):
    account = str(10**11 + secrets.randbelow(9 * 10**11))
    session = "k" + secrets.token_hex(4)
    aws = sandbox_aws(sandbox, per_thread=False, role_arn=f"arn:aws:iam::{account}:role/Inflab")
    now = time.time()
    beacon.publish(
        aws,
        beacon.Beacon(session, participant="kim", step="compile", state="running", since=now - 5, updated=now),
        tags(session, "inf1"),
        tagged=False,
    )
    path = tmp_path / "room.toml"
    path.write_text(own_account_roster_text("kim", account))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    killed = cli(
        "instructor",
        str(path),
        "--cleanup-all",
        "--yes",
        timeout=300,
        env={"TMPDIR": str(tmp), "INFLAB_FAULT_POINT": "instructor-cleanup:stand-in"},
    )
    assert killed.returncode == 137, killed.stderr
    assert list(tmp.iterdir()) == []  # nothing in the system's temporary directory
    left = list((inflab_home / WORK_DIR).iterdir())
    assert len(left) == 1 and left[0].name.startswith(f"{session}-") and (left[0] / "inflab.db").exists()

    again = cli("instructor", str(path), "--cleanup-all", "--yes", timeout=300, env={"TMPDIR": str(tmp)})
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Removed 1 stand-in store(s)" in again.stdout
    assert list((inflab_home / WORK_DIR).iterdir()) == [] and list(tmp.iterdir()) == []
    assert "✓ kim" in again.stdout and "nothing tagged is left" in again.stdout
    assert f"⚠ kim: session {session}: step compile was running" in again.stdout and "still active" in again.stdout
    assert beacon.read(aws, session) is None


# -- the sandbox waits for what it stops ---------------------------------------------------------------
def fake_job(home, instance: str, job: str, script: str) -> subprocess.Popen:
    """A detached job on an emulated instance: its own process group, its pid file where the lab writes it."""
    d = sb.state_dir(home) / "instances" / instance / ".inflab" / "jobs" / job
    d.mkdir(parents=True)
    proc = subprocess.Popen(["bash", "-c", script], start_new_session=True)
    (d / "pid").write_text(f"{proc.pid}\n")
    return proc


def test_terminating_an_emulated_instance_returns_once_its_jobs_have_ended(tmp_path):
    """A server that takes a moment to stop (TorchServe's JVM does) has ended when the terminate returns."""
    ready = tmp_path / "ready"
    slow = fake_job(
        tmp_path, "i-0123abcd", "serve-1", f"trap 'sleep 1; exit 0' TERM; touch {ready}; while :; do sleep 0.1; done"
    )
    for _ in range(200):
        if ready.exists():
            break
        time.sleep(0.05)
    assert sb.forget_instance(tmp_path, "i-0123abcd") == []
    assert slow.poll() == 0, "the server was still stopping when the instance was forgotten"
    assert not (sb.state_dir(tmp_path) / "instances" / "i-0123abcd").exists()


def test_a_job_that_ignores_sigterm_is_killed_within_the_bound(tmp_path):
    ready = tmp_path / "ready"
    stubborn = fake_job(tmp_path, "i-0456abcd", "serve-1", f"trap '' TERM; touch {ready}; while :; do sleep 0.1; done")
    for _ in range(200):
        if ready.exists():
            break
        time.sleep(0.05)
    assert sb.stop_jobs(tmp_path, "i-0456abcd", wait=0.5) == []
    assert stubborn.poll() == -signal.SIGKILL
