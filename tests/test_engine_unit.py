"""The engine on its own, with steps of the test's making: no sandbox, no AWS, no host — the rules
that decide what runs, what is skipped, what is stale, what a cancel or a failure leaves, what a
finished session does and what the end of the track takes down, each in milliseconds.

The steps change a ``World`` (what "exists") and record what the engine asked of them; the track
below has the shape of the lab's own: an instance, work on it, an end of the instance, results that
are kept, and a last step that takes the rest down."""

from __future__ import annotations

import threading

import pytest

from inflab import config
from inflab.engine import TRACK_ENDED, Engine
from inflab.errors import InflabError
from inflab.events import StepFound, StepLogged, StepStateChanged
from inflab.lab_steps.base import Step, StepContext, StepError
from inflab.session import CANCELLED, DONE, FAILED, PENDING, SKIPPED, STALE, UNDONE, Store
from inflab.track import KEEP, StepSpec

SPECS = (
    StepSpec("key", "Make a key", "provision", "fake:Made"),
    StepSpec("host", "Start a host", "provision", "fake:Made", provides_host=True),
    StepSpec("work", "Work on the host", "model", "fake:Made", needs_host=True),
    StepSpec("results", "Keep the results", "model", "fake:Made", teardown=KEEP),
    StepSpec("stop-host", "Stop the host", "model", "fake:Stop", destructive=True, ends_host=True),
    StepSpec("later", "Work without the host", "sweep", "fake:Made"),
    StepSpec(
        "end",
        "Take it all down",
        "sweep",
        "fake:End",
        destructive=True,
        ends_track=True,
        asks_delete_data=True,
        teardown=KEEP,
    ),
)


class World:
    """What exists, and every call the engine made, in order."""

    def __init__(self):
        self.made: set[str] = set()
        self.calls: list[tuple[str, str]] = []
        self.fail: dict[str, BaseException] = {}  # step id → what its apply raises
        self.delete_data: dict[str, bool] = {}  # step id → the ctx.delete_data its apply/undo saw
        self.blocking: threading.Event | None = None  # "work" waits on it (and on the cancel) when set


class Made(Step):
    """A step whose work is one thing in the world: check looks for it, apply makes it, undo removes it."""

    def __init__(self, spec: StepSpec, world: World):
        self.id, self.spec, self.world = spec.id, spec, world

    def check(self, ctx: StepContext) -> bool:
        self.world.calls.append(("check", self.id))
        return self.id in self.world.made

    def apply(self, ctx: StepContext) -> None:
        self.world.calls.append(("apply", self.id))
        self.world.delete_data[self.id] = ctx.delete_data
        if self.id in self.world.fail:
            raise self.world.fail[self.id]
        if self.world.blocking is not None and self.id == "work":
            self.world.blocking.set()
            while True:
                ctx.sleep(0.01)  # raises Cancelled once the engine is cancelled
        self.world.made.add(self.id)

    def undo(self, ctx: StepContext) -> None:
        self.world.calls.append(("undo", self.id))
        self.world.delete_data[self.id] = ctx.delete_data
        self.world.made.discard(self.id)


class Stop(Made):
    """Ends the host: removes what the host step made."""

    def apply(self, ctx: StepContext) -> None:
        super().apply(ctx)
        self.world.made.discard("host")


class End(Made):
    pass


KINDS = {"fake:Made": Made, "fake:Stop": Stop, "fake:End": End}


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def lab(tmp_path, world):
    """A session of its own in a store of its own, and a way to open it with the fake track."""
    store = Store(tmp_path / "home")
    cfg = config.from_dict({"lab": {"beacon": False}}, sandbox=True)
    store.create_session("s", cfg.data, sandbox=True, track="inf1")
    events: list = []

    def engine() -> Engine:
        steps = [KINDS[spec.step](spec, world) for spec in SPECS]
        return Engine(store, "s", listener=events.append, steps=steps)

    engine.events = events
    return engine


def applied(world: World) -> list[str]:
    return [sid for what, sid in world.calls if what == "apply"]


def states(engine: Engine) -> dict[str, str]:
    return {sid: st["state"] for sid, st in engine.states().items()}


def test_a_run_applies_each_step_once_in_order_and_a_second_run_only_checks(lab, world):
    engine = lab()
    assert engine.run("results").ok
    assert applied(world) == ["key", "host", "work", "results"]
    assert states(engine) == {
        "key": DONE,
        "host": DONE,
        "work": DONE,
        "results": DONE,
        "stop-host": PENDING,
        "later": PENDING,
        "end": PENDING,
    }
    world.calls.clear()
    assert lab().run("results").ok
    assert applied(world) == []
    assert [sid for what, sid in world.calls] == ["key", "host", "work", "results"]
    said = [e.message for e in lab.events if isinstance(e, StepLogged) and e.step == "work"]
    assert said[-1] == "Already done — nothing to change"


def test_state_changes_reach_the_listener_as_they_happen(lab, world):
    assert lab().run("host").ok
    changes = [(e.step, e.state) for e in lab.events if isinstance(e, StepStateChanged)]
    assert changes == [("key", "running"), ("key", DONE), ("host", "running"), ("host", DONE)]


def test_a_failure_stops_the_run_with_the_learners_message_and_the_next_run_starts_there(lab, world):
    world.fail["work"] = StepError("The host said no: run it again")
    result = lab().run("results")
    assert not result.ok and result.step == "work" and result.error == "The host said no: run it again"
    assert states(lab())["work"] == FAILED and states(lab())["results"] == PENDING
    assert lab().states()["work"]["error"] == "The host said no: run it again"
    del world.fail["work"]
    world.calls.clear()
    assert lab().run("results").ok
    assert applied(world) == ["work", "results"]  # what was done is checked, not made again


def test_any_inflab_error_is_shown_as_written_and_a_bug_by_its_class(lab, world):
    class Refused(InflabError):
        pass

    world.fail["key"] = Refused("key.name: not allowed here")
    assert lab().run("key").error == "key.name: not allowed here"
    world.fail["key"] = KeyError("oops")
    assert lab().run("key").error == "KeyError: 'oops'"


def test_until_and_from_choose_the_steps_and_from_redoes_done_ones(lab, world):
    assert lab().run("work").ok
    world.calls.clear()
    assert lab().run("results", from_step="host").ok
    assert applied(world) == ["host", "work", "results"]  # no check first: redone even though done
    assert ("check", "host") not in world.calls


def test_a_skipped_step_is_not_run_until_asked_by_name(lab, world):
    engine = lab()
    engine.skip("work")
    assert engine.run("results").ok
    assert applied(world) == ["key", "host", "results"]
    assert states(engine)["work"] == SKIPPED
    assert lab().run_one("work").ok and states(lab())["work"] == DONE


def test_opening_finds_what_vanished_and_the_steps_on_a_vanished_host_are_stale_with_it(lab, world):
    assert lab().run("results").ok
    world.made -= {"host", "work"}  # the host went away behind the lab's back, and its work with it
    world.calls.clear()
    found = lab().reconcile()
    assert [(f.step, f.state) for f in found] == [("host", STALE), ("work", STALE)]
    assert ("check", "work") not in world.calls  # not probed: its host is known to be gone
    assert "the instance is gone (found at host)" in lab().states()["work"]["error"]
    assert states(lab())["key"] == DONE and states(lab())["results"] == DONE
    assert any(isinstance(e, StepFound) for e in lab.events)
    world.calls.clear()
    assert lab().run("results").ok
    assert applied(world) == ["host", "work"]


def test_after_the_host_is_ended_on_purpose_its_steps_stay_done_and_are_not_run_again(lab, world):
    assert lab().run("later").ok  # through stop-host: the host is gone on purpose
    assert "host" not in world.made
    world.calls.clear()
    assert lab().reconcile() == []  # nothing stale: the host went on purpose
    assert ("check", "host") not in world.calls and ("check", "work") not in world.calls
    assert lab().run("later").ok
    assert applied(world) == []
    assert states(lab())["host"] == DONE


def test_a_destructive_step_that_ends_the_run_finishes_the_session(lab, world):
    assert lab().run("stop-host").ok
    assert lab().finished()["step"] == "stop-host"
    world.calls.clear()
    result = lab().run()
    assert result.ok and result.finished and world.calls == []  # finished: nothing runs unless asked
    assert lab().run(again=True).ok
    assert applied(world) == ["host", "later", "end"]  # again: each step checks; the host it ended is made anew


def test_a_destructive_step_in_the_middle_of_a_run_does_not_finish_it(lab, world):
    assert lab().run("later").ok
    assert not lab().finished()
    assert applied(world) == ["key", "host", "work", "results", "stop-host", "later"]


def test_the_end_of_the_track_undoes_what_the_steps_made_newest_first_and_keeps_results(lab, world):
    assert lab().run("later").ok
    world.calls.clear()
    assert lab().run_one("end").ok
    undone = [sid for what, sid in world.calls if what == "undo"]
    assert undone == ["later", "stop-host", "work", "host", "key"]  # results (KEEP) stay
    assert world.made == {"results", "end"}
    store_said = lab().store.get("s", TRACK_ENDED)
    assert store_said["step"] == "end"
    last = [e.message for e in lab.events if isinstance(e, StepLogged) and e.step == "end"]
    assert "Everything this session made is gone, except the results bucket" in last


def test_whether_the_teardown_deletes_the_results_is_the_runs_answer_and_not_the_next_ones(lab, world):
    engine = lab()
    assert engine.run(delete_data=True).ok
    assert world.delete_data["end"] is True and world.delete_data["key"] is True
    assert engine.undo("end").ok  # a later call on the same engine starts from "keep"
    assert world.delete_data["end"] is False
    said = [e.message for e in lab.events if isinstance(e, StepLogged) and e.step == "end"]
    assert any(m == "Everything this session made is gone" for m in said)


def test_the_teardown_stops_at_an_undo_that_fails_and_names_the_step(lab, world):
    assert lab().run("later").ok

    def broken(ctx):
        raise OSError("disk on fire")

    engine = lab()
    engine.step("work").undo = broken
    result = engine.run_one("end")
    assert not result.ok and result.error == "Removing what work made failed: OSError: disk on fire"
    assert lab().store.get("s", TRACK_ENDED) is None
    assert "key" in world.made  # older steps were not undone past the failure


def test_cancel_stops_the_step_at_its_next_safe_point_and_runs_nothing_after_it(lab, world):
    world.blocking = threading.Event()
    engine = lab()
    out = {}
    runner = threading.Thread(target=lambda: out.update(result=engine.run("results")))
    runner.start()
    assert world.blocking.wait(10)
    engine.cancel()
    runner.join(10)
    assert not runner.is_alive()
    assert out["result"].cancelled and out["result"].step == "work"
    assert states(lab())["work"] == CANCELLED and states(lab())["results"] == PENDING
    assert lab().states()["work"]["error"] == "cancelled by you"
    world.blocking = None
    assert lab().run("results").ok  # a cancel is not remembered by the next run
    assert states(lab())["results"] == DONE


def test_undo_marks_the_step_undone_and_a_finished_session_runs_again_after_undoing_its_end(lab, world):
    assert lab().run("stop-host").ok
    assert lab().undo("stop-host").ok
    assert states(lab())["stop-host"] == UNDONE and not lab().finished()


def test_steps_of_the_test_replace_the_tracks_and_the_engine_reads_their_specs(lab):
    engine = lab()
    assert [s.id for s in engine.steps] == [s.id for s in SPECS]
    assert engine.track == SPECS
    with pytest.raises(KeyError):
        engine.step("launch")  # the lab's own track is not there
