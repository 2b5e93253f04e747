"""What steps hand on and how they talk to the engine while they run, seen from the engine.

- a session written before the typed records opens: its states, its host, what is in flight, the
  sweep's jobs, every step's commands, and the check of everything against what exists;
- a damaged record stops the step that reads it with one line naming the key and the step to run again;
- ``ctx.creating`` leaves the ledger's intent when the create call fails; ``ctx.retrying`` calls again
  while AWS catches up, saying why each time;
- ``ctx.emit`` reaches the engine's listener, and what a front end asks of a step
  (``Engine.ask``) reaches that step's ``ctx.asked`` and no other's.
"""

from __future__ import annotations

import pytest
from test_records import legacy, open_legacy

from inflab import config, sandbox as sb
from inflab.engine import Engine
from inflab.events import BatchJobsChanged, StepLogged
from inflab.lab_steps.base import Step, StepContext
from inflab.lab_steps.batch_jobs import BatchMonitor
from inflab.remote.host import HostUnavailable
from inflab.runtime.select import for_session
from inflab.session import CREATED, DONE, FAILED, INTENDED, STALE, Store
from inflab.track import StepSpec


@pytest.fixture
def own_home(tmp_path, monkeypatch):
    """A store in a home of this test's own, with no sandbox running in it."""
    monkeypatch.setenv("INFLAB_HOME", str(tmp_path))
    yield Store(tmp_path)
    sb.stop(tmp_path)  # (nothing to stop unless a test started one by mistake)


@pytest.fixture
def own_sandbox(own_home):
    """A store of this test's own whose sandbox daemon the runtime starts when asked (and that goes afterwards)."""
    return own_home


def quiet_session(store: Store, name: str = "s") -> str:
    """A sandbox session that publishes no beacon (so nothing here starts the sandbox by itself)."""
    cfg = config.from_dict({"lab": {"beacon": False}}, sandbox=True)
    store.create_session(name, cfg.data, sandbox=True, track="inf1")
    return name


# ------------------------------------------------------------------ a session of the old code
def test_a_session_written_before_the_records_opens_in_the_engine(own_sandbox):
    name = open_legacy(own_sandbox)
    engine = Engine(own_sandbox, name)

    states = engine.states()
    assert states["report"]["state"] == DONE and states["terminate"]["state"] == "pending"
    # the host, from its record and its pinned key (the sandbox's SSH port: the sandbox starts for it)
    host = engine.host()
    state = {r["key"]: r["value"] for r in legacy()["state"]}
    assert host.instance_id == state["host"]["instance_id"] and host.address == "127.0.0.1" and host.port > 0
    assert host.pinned and host.fingerprint == state["host_key"]["fingerprint"] and host.user == "ubuntu"
    assert engine.in_flight() is None  # every job on the host ended; the sweep ended
    table = engine.recorded_batch_jobs()
    assert table is not None and table.done == table.total == 2 and {j.state for j in table.jobs} == {"SUCCEEDED"}
    for step in engine.steps:  # every step names its commands from the records
        assert engine.cli_lines(step.id), step.id

    found = engine.reconcile()  # every done step checked against this (empty) sandbox: gone, never unreadable
    assert found and all(f.state == STALE for f in found)
    assert not [f.message for f in found if "could not check" in f.message]
    assert engine.states()["credentials"]["state"] == DONE  # the same account: still done


def test_the_old_sessions_job_numbering_goes_on(own_home):
    from inflab.lab_steps.remote_job import job_id

    name = open_legacy(own_home)
    engine = Engine(own_home, name)
    ctx = engine.context(engine.step("benchmark"))
    assert job_id(ctx, "benchmark") == "benchmark-2"  # benchmark-1 ended: a new attempt, numbered on
    assert own_home.get(name, "jobs")["benchmark"] == "benchmark-2" and own_home.get(name, "jobs")["benchmark#"] == 2
    assert own_home.get(name, "jobs")["compile"] == "compile-1"  # the others as they were


# ------------------------------------------------------------------ a damaged record
def test_a_damaged_record_fails_the_step_that_reads_it_with_one_line(own_home):
    name = quiet_session(own_home)
    own_home.put(name, "sweep", {"round": "r1", "setup": "s", "jobs": ["not", "an", "object"]})
    engine = Engine(own_home, name)

    result = engine.run_step("report")

    assert not result.ok
    assert result.error == (
        "the session's 'sweep' record, field 'jobs': expected an object, got ['not', 'an', "
        "'object'] (written by another version of inflab, or edited): run the batch-submit step again"
    )
    assert engine.states()["report"] == {**engine.states()["report"], "state": FAILED, "error": result.error}
    assert engine.recorded_batch_jobs() is None  # the Jobs tab shows nothing rather than failing to open


def test_a_damaged_host_record_is_said_by_the_live_views(own_home):
    name = quiet_session(own_home)
    own_home.put(name, "host", {"instance_id": "i-0abc", "public_ip": None, "user": "ubuntu"})
    with pytest.raises(
        HostUnavailable,
        match=r"'host' record, field 'public_ip': expected text, got None .* "
        r"run the wait-running step again",
    ):
        Engine(own_home, name).host()


# ------------------------------------------------------------------ the ledger around a create call
def test_creating_writes_the_intent_first_and_marks_it_created(own_home):
    name = quiet_session(own_home)
    ctx = StepContext(
        name=name,
        config=config.load(None, sandbox=True),
        runtime=for_session(True, own_home.home),
        store=own_home,
        step_id="keypair",
    )
    with ctx.creating("ec2:key-pair", "inflab-s") as made:
        (during,) = own_home.ledger(name)
        made("key-0123", {"fingerprint": "ab:cd"})
    (after,) = own_home.ledger(name)
    assert during.status == INTENDED and during.physical_id is None  # in the ledger before the call
    assert (after.status, after.physical_id, after.detail, after.step) == (
        CREATED,
        "key-0123",
        {"fingerprint": "ab:cd"},
        "keypair",
    )


def test_a_create_call_that_fails_leaves_its_intent_for_cleanup(own_home):
    name = quiet_session(own_home)
    ctx = StepContext(
        name=name,
        config=config.load(None, sandbox=True),
        runtime=for_session(True, own_home.home),
        store=own_home,
        step_id="launch-template",
    )
    with pytest.raises(ConnectionError):
        with ctx.creating("ec2:launch-template", "inflab-s"):
            raise ConnectionError("the answer never came")  # the template may exist: cleanup looks for it
    with pytest.raises(RuntimeError, match="without saying what it made"):
        with ctx.creating("iam:role", "inflab-s-instance"):
            pass
    assert [(r.kind, r.status) for r in own_home.ledger(name)] == [
        ("ec2:launch-template", INTENDED),
        ("iam:role", INTENDED),
    ]


def test_retrying_calls_again_while_aws_catches_up_and_says_why_each_time(own_home):
    """A call AWS refuses for now (a new role, a resource in use) is made again with growing waits,
    each announced in the step's log; any other error, or one that outlasts the limit, is raised."""
    logged: list[str] = []
    slept: list[float] = []
    ctx = StepContext(
        name="s",
        config=config.load(None, sandbox=True),
        runtime=for_session(True, own_home.home),
        store=own_home,
        log=logged.append,
    )
    ctx.sleep = slept.append  # (the waits themselves: cancel's test is the engine's)
    answers = iter([LookupError("not yet"), LookupError("not yet"), "arn:made"])

    def call():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def say(err, wait, attempt):
        return f"{err} (attempt {attempt}); again in {wait:.0f} s"

    wanted = dict(when=lambda e: isinstance(e, LookupError), within_s=60, say=say)
    assert ctx.retrying(call, **wanted) == "arn:made"
    assert slept == [2, 4]
    assert logged == ["not yet (attempt 1); again in 2 s", "not yet (attempt 2); again in 4 s"]

    def refused():
        raise PermissionError("AccessDenied")

    logged.clear()
    with pytest.raises(PermissionError):  # not a "not yet": raised at once, nothing said
        ctx.retrying(refused, **wanted)
    assert logged == []

    def never():
        raise LookupError("still not")

    with pytest.raises(LookupError, match="still not"):
        ctx.retrying(never, **{**wanted, "within_s": 0})  # the limit is spent: the last error


# ------------------------------------------------------------------ events and answers while a step runs
class Asking(Step):
    """A step that reports what it was asked, as a step-specific event."""

    def __init__(self, step_id: str):
        self.id = step_id
        self.spec = StepSpec(step_id, f"Step {step_id}", "model", f"test:{step_id}")

    def check(self, ctx):
        return False

    def apply(self, ctx):
        ctx.emit(BatchJobsChanged(ctx.step_id, (), 0, 0, following=ctx.asked(BatchJobsChanged.FOLLOW) or "-"))


def test_what_is_asked_of_a_step_reaches_that_step_and_its_events_the_listener(own_home):
    name = quiet_session(own_home)
    events: list = []
    engine = Engine(own_home, name, listener=events.append, steps=[Asking("one"), Asking("two")])

    engine.ask("one", BatchJobsChanged.FOLLOW, "job-7")
    assert engine.run().ok

    tables = [e for e in events if isinstance(e, BatchJobsChanged)]
    assert [(t.step, t.following) for t in tables] == [("one", "job-7"), ("two", "-")]  # only the step asked
    assert not [e for e in events if isinstance(e, StepLogged) and "Traceback" in e.message]
    with pytest.raises(KeyError):
        engine.ask("three", BatchJobsChanged.FOLLOW, "job-7")


def test_the_sweep_monitor_streams_the_job_the_user_asked_for(own_home):
    name = quiet_session(own_home)
    shown: list[str] = []
    asked: dict[str, str] = {}
    ctx = StepContext(
        name=name,
        config=config.load(None, sandbox=True),
        runtime=for_session(True, own_home.home),
        store=own_home,
        output=shown.extend,
        asked=asked.get,
    )
    jobs = {"id-1": {"status": "RUNNING", "jobName": "a"}, "id-2": {"status": "SUCCEEDED", "jobName": "b"}}
    names = {"id-1": "a", "id-2": "b"}

    assert BatchMonitor()._follow(ctx, jobs, names, {}, None).job_id == "id-1"  # nothing asked: the running one
    asked[BatchJobsChanged.FOLLOW] = "id-2"
    follower = BatchMonitor()._follow(ctx, jobs, names, {}, None)
    assert follower.job_id == "id-2" and shown[-1] == "──── b · job id-2 ────"
