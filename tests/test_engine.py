"""The engine driven directly (as the TUI does), on the shared sandbox cloud."""

from __future__ import annotations

import pytest

from inflab import config
from inflab.engine import Engine, EngineEvent
from inflab.events import StepLogged, StepStateChanged

STEPS = [
    "credentials",
    "preflight",
    "keypair",
    "security-group",
    "instance-profile",
    "launch-template",
    "launch",
    "wait-running",
]


@pytest.fixture
def session(store, name, sandbox):
    cfg = config.load(None, sandbox=True)
    store.create_session(name, cfg.data, sandbox=True, track="inf1")
    return name


class Recorder:
    def __init__(self):
        self.events: list[EngineEvent] = []

    def __call__(self, ev: EngineEvent) -> None:
        self.events.append(ev)

    def states(self) -> list[tuple[str, str]]:
        return [(e.step, e.state) for e in self.events if isinstance(e, StepStateChanged)]


def _key_pairs(aws, session):
    return aws("ec2").describe_key_pairs(Filters=[{"Name": "tag:inflab:session", "Values": [session]}])["KeyPairs"]


def test_events_reach_the_listener_in_order(store, session, tagged):
    rec = Recorder()
    engine = Engine(store, session, listener=rec)

    result = engine.run("launch-template")

    assert result.ok, result.error
    expected = [(s, st) for s in STEPS[: STEPS.index("launch-template") + 1] for st in ("running", "done")]
    assert rec.states() == expected
    assert engine.next_step() == "launch"
    assert {sid: st["state"] for sid, st in engine.states().items()} == {
        **{s.id: "pending" for s in engine.steps},
        **{s: "done" for s in STEPS[:6]},
    }
    # Log lines carry the step they belong to and land between its running and done.
    logs = [e for e in rec.events if isinstance(e, StepLogged)]
    assert any(e.step == "keypair" and "imported its public half" in e.message for e in logs)
    assert len(tagged(session)["launch_templates"]) == 1


def test_second_run_checks_and_does_not_apply_again(store, session, tagged):
    assert Engine(store, session).run("keypair").ok
    rec = Recorder()

    result = Engine(store, session, listener=rec).run("keypair")

    assert result.ok
    assert rec.states() == [("credentials", "done"), ("preflight", "done"), ("keypair", "done")]
    assert any("Already done" in e.message for e in rec.events if isinstance(e, StepLogged))
    assert len(tagged(session)["key_pairs"]) == 1


def test_skip_marks_the_step_and_run_does_not_apply_it(store, session, aws, inflab_home):
    rec = Recorder()
    engine = Engine(store, session, listener=rec)

    engine.skip("keypair")
    assert engine.states()["keypair"]["state"] == "skipped"
    result = engine.run("keypair")

    assert result.ok, result.error
    assert ("keypair", "running") not in rec.states()
    assert engine.states()["keypair"]["state"] == "skipped"
    assert _key_pairs(aws, session) == []
    assert not (inflab_home / "sessions" / session / f"inflab-{session}.pem").exists()
    assert [r for r in store.ledger(session) if r.kind == "ec2:key-pair"] == []
    assert engine.next_step() == "security-group"


def test_skip_of_an_unknown_step_is_refused(store, session):
    with pytest.raises(KeyError):
        Engine(store, session).skip("no-such-step")


def test_undo_of_keypair_removes_the_key_pair_and_the_file(store, session, aws, inflab_home):
    engine = Engine(store, session)
    assert engine.run("keypair").ok
    pem = inflab_home / "sessions" / session / f"inflab-{session}.pem"
    assert pem.exists()
    assert len(_key_pairs(aws, session)) == 1

    result = engine.undo("keypair")

    assert result.ok, result.error
    assert _key_pairs(aws, session) == []
    assert not pem.exists()
    assert engine.states()["keypair"]["state"] == "undone"
    assert [r.status for r in store.ledger(session) if r.kind == "ec2:key-pair"] == ["deleted"]
    assert [r for r in store.ledger(session, live_only=True) if r.kind == "ec2:key-pair"] == []
    assert engine.next_step() == "keypair"

    # Undoing again is harmless, and running again makes a fresh pair.
    assert engine.undo("keypair").ok
    assert engine.run("keypair").ok
    assert pem.exists() and len(_key_pairs(aws, session)) == 1


def test_cancel_when_launch_template_starts(store, session, tagged):
    engine: Engine
    cancels = []

    def listener(ev: EngineEvent) -> None:
        if isinstance(ev, StepStateChanged) and ev.step == "launch-template" and ev.state == "running" and not cancels:
            cancels.append(ev)
            engine.cancel()

    engine = Engine(store, session, listener=listener)

    result = engine.run("wait-running")

    assert result.cancelled is True
    assert result.ok is False
    assert result.step == "launch-template"
    states = {sid: st["state"] for sid, st in engine.states().items()}
    assert states["launch-template"] == "cancelled"
    assert states["launch"] == "pending" and states["wait-running"] == "pending"
    assert all(states[s] == "done" for s in STEPS[:5])
    assert tagged(session)["instances"] == []

    # A later run picks up again from the cancelled step.
    result = engine.run("launch-template")
    assert result.ok and not result.cancelled
    assert engine.states()["launch-template"]["state"] == "done"


def test_ledger_records_intent_before_the_create_call(store, session, aws):
    engine = Engine(store, session)
    seen_during_create: list = []

    def before_create(**kwargs):
        seen_during_create.extend(store.ledger(session))

    # Look at the ledger at the moment the real ImportKeyPair request goes out.
    engine.aws.client("ec2").meta.events.register("before-call.ec2.ImportKeyPair", before_create)
    result = engine.run("keypair")
    assert result.ok, result.error

    during = [r for r in seen_during_create if r.kind == "ec2:key-pair"]
    assert len(during) == 1
    assert during[0].status == "intended" and during[0].physical_id is None
    assert during[0].name == f"inflab-{session}" and during[0].step == "keypair" and during[0].region == "us-west-2"

    after = [r for r in store.ledger(session) if r.kind == "ec2:key-pair"]
    assert len(after) == 1 and after[0].id == during[0].id
    assert after[0].status == "created"
    pair = _key_pairs(aws, session)[0]
    assert after[0].physical_id == pair["KeyPairId"]


def test_events_are_stored_in_the_event_log(store, session):
    rec = Recorder()
    engine = Engine(store, session, listener=rec)
    assert engine.run("keypair").ok

    stored = store.events(session)
    assert stored[0]["kind"] == "session"  # the session's creation
    state_rows = [(e["step"], e["message"]) for e in stored if e["kind"] == "state"]
    assert state_rows == [(s, st) for s in STEPS[:3] for st in ("running", "done")]
    stored_logs = [(e["step"], e["message"]) for e in stored if e["kind"] == "log"]
    assert stored_logs == [(e.step, e.message) for e in rec.events if isinstance(e, StepLogged)]
    assert any(step == "keypair" and "imported its public half" in msg for step, msg in stored_logs)
    ids = [e["id"] for e in stored]
    assert ids == sorted(ids)
    assert store.events(session, since_id=ids[-2]) == stored[-1:]


def test_failed_step_is_recorded_with_its_error(store, session, faults):
    faults({"run_instances": {"*": "InsufficientInstanceCapacity"}})
    rec = Recorder()
    engine = Engine(store, session, listener=rec)

    result = engine.run("wait-running")

    assert not result.ok and not result.cancelled
    assert result.step == "launch"
    assert "capacity" in result.error.lower()
    assert rec.states()[-1] == ("launch", "failed")
    st = engine.states()
    assert st["launch"]["state"] == "failed" and "capacity" in st["launch"]["error"].lower()
    assert st["wait-running"]["state"] == "pending"
    assert any(
        e["kind"] == "state" and e["step"] == "launch" and e["message"].startswith("failed:")
        for e in store.events(session)
    )


def test_cleanup_undoes_every_step_and_verifies(store, session, tagged, inflab_home):
    engine = Engine(store, session)
    assert engine.run("wait-running").ok
    assert len(tagged(session)["instances"]) == 1

    errors, leftovers = engine.cleanup()

    assert errors == [] and leftovers == []
    assert all(not v for v in tagged(session).values())
    assert store.ledger(session, live_only=True) == []
    assert all(st["state"] == "undone" for st in engine.states().values())
