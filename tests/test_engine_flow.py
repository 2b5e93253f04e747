"""How a session flows: opening it finds what vanished, a finished session stays finished,
long steps say what they do, and a remote job survives dropped connections (the product's loop)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from inflab import config, engine as engine_module
from inflab.engine import Engine
from inflab.events import JobLines, StepFound, StepProgress
from inflab.lab_steps import remote_job
from inflab.lab_steps.base import StepError
from inflab.session import STALE


@pytest.fixture
def session(store, name, sandbox):
    cfg = config.load(None, sandbox=True)
    store.create_session(name, cfg.data, sandbox=True, track="inf1")
    return name


def test_opening_a_session_finds_an_instance_terminated_outside_inflab(store, session, aws, tagged):
    assert Engine(store, session).run("connect").ok
    iid = store.get(session, "host")["instance_id"]
    aws("ec2").terminate_instances(InstanceIds=[iid])  # e.g. from the console, behind the lab's back

    found: list = []
    engine = Engine(store, session, listener=found.append)
    engine.reconcile()

    stale = {e.step for e in found if isinstance(e, StepFound) and e.state == STALE}
    assert {"launch", "wait-running", "connect"} <= stale
    assert not stale & {"credentials", "keypair", "security-group", "launch-template"}, "what still exists stays done"
    states = engine.states()
    assert states["connect"]["state"] == STALE and "instance is gone" in states["connect"]["error"]
    assert engine.next_step() == "launch"
    # The live views say so at once, instead of trying to connect.
    with pytest.raises(Exception, match="gone"):
        engine.host()
    # Running again brings a new instance: exactly one is live.
    assert engine.run("connect").ok
    live = tagged(session)["instances"]
    assert len(live) == 1 and live[0]["InstanceId"] != iid


def test_a_finished_session_stays_finished(cli, store, session, aws, tagged):
    assert Engine(store, session).run("wait-running").ok
    assert Engine(store, session).run_one("terminate").ok
    assert Engine(store, session).finished()["step"] == "terminate"
    before = {k: len(v) for k, v in tagged(session).items()}
    instances = len(
        aws("ec2").describe_instances(Filters=[{"Name": "tag:inflab:session", "Values": [session]}])["Reservations"]
    )

    r = cli("run", "--name", session, "--json")

    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ok"] and out["nothing_to_do"] and out["finished"]
    assert "nothing to do" in r.stderr and "--again" in r.stderr
    assert {k: len(v) for k, v in tagged(session).items()} == before
    after = len(
        aws("ec2").describe_instances(Filters=[{"Name": "tag:inflab:session", "Values": [session]}])["Reservations"]
    )
    assert after == instances, "no instance was launched"
    r = cli("resources", session, "--json")
    assert [x["type"] for x in json.loads(r.stdout) if x["type"] == "ec2:instance"] == []

    # --again runs it on purpose (every step checks first, so only the instance is new).
    r = cli("run", "--name", session, "--until", "wait-running", "--again")
    assert r.returncode == 0, r.stderr
    assert len(tagged(session)["instances"]) == 1
    assert len(tagged(session)["key_pairs"]) == 1


def test_after_terminate_the_track_goes_on_without_launching_again(store, session, aws, tagged):
    assert Engine(store, session).run("connect").ok
    assert Engine(store, session).run_one("terminate").ok
    store.delete(session, "finished")  # as when one run goes on past terminate to the sweep
    logs: list = []
    engine = Engine(store, session, listener=logs.append)
    found = engine.reconcile()
    assert not [f for f in found if f.state == STALE], "an instance ended on purpose is not 'gone'"
    assert engine.run("connect").ok
    assert tagged(session)["instances"] == [], "no instance was launched again"
    assert any("terminated on purpose" in getattr(e, "message", "") for e in logs)
    # --from (or --again) still brings one back when asked
    assert Engine(store, session).run("connect", from_step="launch").ok
    assert len(tagged(session)["instances"]) == 1


def test_from_step_redoes_steps_that_look_done(store, session):
    engine = Engine(store, session)
    assert engine.run("security-group").ok
    logs: list = []
    engine = Engine(store, session, listener=logs.append)
    assert engine.run("security-group", from_step="keypair").ok
    text = " ".join(getattr(e, "message", "") for e in logs)
    assert "Already done" not in text, "--from applies the steps instead of checking them"
    assert "imported its public half" in text and "replacing both" in text


def test_a_long_step_says_what_it_does_and_for_how_long(store, session, monkeypatch):
    # Beats every 20 ms instead of every second: the step waits for what the user should see
    # (a beat, a count of seconds) instead of sleeping and hoping the heartbeat thread got the CPU.
    monkeypatch.setattr(engine_module, "HEARTBEAT_S", 0.02)
    engine = Engine(store, session, listener=None)
    events: list = []
    engine.listener = events.append
    step = engine.step("credentials")

    def beats():
        return [e for e in list(events) if isinstance(e, StepProgress) and e.step == "credentials"]

    def wait_for_beat(shows: str, elapsed: float) -> None:
        """Until a beat shows ``shows`` at ``elapsed`` s or later (at most 30 s)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(shows in e.message and e.elapsed >= elapsed for e in beats()):
            time.sleep(0.01)

    def slow_apply(ctx):
        ctx.progress(None, "asking who you are")
        wait_for_beat("asking who you are", 0.3)  # silent, and the heartbeat keeps counting
        ctx.output(["pip: Successfully uninstalled setuptools"])
        wait_for_beat("Successfully uninstalled", 0.6)  # then the last output line, still counting

    monkeypatch.setattr(step, "check", lambda ctx: False)
    monkeypatch.setattr(step, "apply", slow_apply)
    assert engine.run_one("credentials").ok
    shown = beats()
    asking = [e.elapsed for e in shown if e.message == "asking who you are"]
    first = next((i for i, e in enumerate(shown) if "Successfully uninstalled setuptools" in e.message), None)
    assert first is not None, "the last output line is shown"
    output = shown[first:]
    assert len(asking) >= 2 and max(asking) >= 0.3, "while the step is silent, beats say what it does, counting"
    assert all(e.message.startswith("last output: pip: Successfully uninstalled setuptools") for e in output), (
        "once shown, the output line stays"
    )
    assert max(e.elapsed for e in output) >= 0.6, "the elapsed time keeps counting"


@pytest.fixture
def connected(store, session):
    assert Engine(store, session).run("connect").ok
    return session


def _job_context(store, session, seen: list[str]):
    engine = Engine(store, session)
    ctx = engine.context(engine.step("compile"))
    ctx.output = lambda lines: seen.extend(lines)
    ctx.log = lambda m: seen.append(f"LOG {m}")
    return ctx


def _dropping(monkeypatch, ctx, seen: list[str], *, every: int, times: int):
    """Abort the job's SSH connection (a real drop) after every ``every`` lines, ``times`` times."""
    conns: list = []
    real = remote_job.connect

    async def recording(c, timeout=60):
        conn = await real(c, timeout)
        conns.append(conn)
        return conn

    drops = {"n": 0, "at": 0}
    out = ctx.output

    def output(lines):
        out(lines)
        got = len([s for s in seen if not s.startswith("LOG")])
        if drops["n"] < times and got - drops["at"] >= every:
            drops["n"] += 1
            drops["at"] = got
            conns[-1].abort()

    monkeypatch.setattr(remote_job, "connect", recording)
    monkeypatch.setattr(remote_job, "reconnect_delay", lambda attempt: 0.1)
    ctx.output = output
    return drops


# Slow enough that the job is still printing after three drops and reconnects on a busy machine.
COUNT = "for i in $(seq 1 60); do echo line $i; sleep 0.12; done"


def test_run_job_reconnects_after_drops_without_losing_a_line(store, connected, monkeypatch):
    seen: list[str] = []
    ctx = _job_context(store, connected, seen)
    drops = _dropping(monkeypatch, ctx, seen, every=12, times=3)

    code, tail = remote_job.run_job(ctx, "probe", COUNT)

    assert code == 0 and drops["n"] == 3
    lines = [s for s in seen if not s.startswith("LOG")]
    assert lines == [f"line {i}" for i in range(1, 61)], "every line once, in order"
    assert sum("reattaching at byte" in s for s in seen) == 3
    assert tail[-1] == "line 60"


def test_run_job_gives_up_after_max_reconnects_and_the_job_keeps_running(store, connected, monkeypatch):
    seen: list[str] = []
    ctx = _job_context(store, connected, seen)
    drops = _dropping(monkeypatch, ctx, seen, every=1, times=100)
    slow = "for i in $(seq 1 400); do echo line $i; sleep 0.05; done"

    with pytest.raises(StepError, match=f"Lost the connection to the host {remote_job.MAX_RECONNECTS + 1} times"):
        remote_job.run_job(ctx, "probe", slow)

    assert drops["n"] == remote_job.MAX_RECONNECTS + 1
    job = store.job(connected, (store.get(connected, "jobs") or {})["probe"])
    assert job["status"] == "running", "the job is left running, to be reattached"
    # Reattaching later (no drops) picks up where the stored offset says, and the job can be stopped.
    monkeypatch.undo()
    rest: list[str] = []
    ctx2 = _job_context(store, connected, rest)
    cancel_later = threading.Timer(1.0, ctx2.cancel.set)
    cancel_later.start()
    with pytest.raises(Exception, match="cancelled"):
        remote_job.run_job(ctx2, "probe", slow)
    first = int(next(s for s in rest if s.startswith("line ")).split()[1])
    last_before = max(int(s.split()[1]) for s in seen if s.startswith("line "))
    assert first == last_before + 1, "no line lost or repeated across the give-up"
    assert any(isinstance(x, str) and "reattached at byte" in x for x in rest)


def test_job_lines_reach_the_listener(store, connected):
    events: list = []
    engine = Engine(store, connected, listener=events.append)
    ctx = engine.context(engine.step("compile"))
    code, _ = remote_job.run_job(ctx, "probe2", "echo hello; echo world")
    assert code == 0
    got = [line for e in events if isinstance(e, JobLines) for line in e.lines]
    assert got == ["hello", "world"]


def test_sessions_rm_refuses_while_aws_has_something_then_removes_everything(cli, store, session):
    assert Engine(store, session).run("keypair").ok
    store.add_result(session, "benchmark", {"x": 1}, key="r1")
    r = cli("sessions", "rm", session, "--yes")
    assert (
        r.returncode == 1 and "still has 2 resource(s)" in r.stderr
    )  # the key pair and the progress beacon and f"inflab cleanup {session}" in r.stderr
    assert store.has_session(session)

    assert cli("cleanup", session, "--yes").returncode == 0
    r = cli("sessions", "rm", session)  # no terminal: the results would go too, so it asks for --yes
    assert r.returncode == 2 and "--yes" in r.stderr and store.has_session(session)

    r = cli("sessions", "rm", session, "--yes")
    assert r.returncode == 0, r.stderr
    assert "and its 1 result(s)" in r.stdout
    assert not store.has_session(session) and store.results(session) == []
    assert not (store.home / "sessions" / session).exists(), "the key file and known_hosts go with it"
    assert session not in [s["name"] for s in json.loads(cli("sessions", "--json").stdout)]
