"""The engine: runs a session's steps, records every transition, resumes, cancels.

The TUI and ``inflab run`` both drive this one class. It is synchronous and blocking
(call it from a thread in the TUI); it reports through a listener callback that receives
the records of :mod:`inflab.events` from whatever thread the engine runs on.

It picks the session's host runtime (AWS or the sandbox) once and hands it to the steps.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Callable

from .config import LabConfig
from .errors import InflabError
from .events import (
    BatchJobsChanged,
    EngineEvent,
    JobLines,
    RunResult,
    StepFound,
    StepLogged,
    StepProgress,
    StepStateChanged,
    elapsed_text,
)
from .lab_steps import records
from .lab_steps.base import Cancelled, Step, StepContext, StepError
from .lab_steps.records import HostJobs, HostRecord, RecordError
from .remote.host import Host, HostUnavailable
from .runtime.base import HostRuntime
from .session import CANCELLED, DONE, FAILED, PENDING, RUNNING, SKIPPED, STALE, UNDONE, Store
from .track import TRACK, UNDO, StepSpec, first, last

if TYPE_CHECKING:
    from .aws.beacon import Beacon

__all__ = ["Engine", "EngineEvent", "RunResult", "describe_exception", "CANCELLED", "FAILED", "UNDONE"]

#: errors whose message is written for the user (no class name, no traceback)
USER_ERRORS = (InflabError,)
HEARTBEAT_S = 1.0
TRACK_ENDED = "track_ended"  # the store key: the end-of-track teardown ran to its end
QUIET_S = 10.0  # after this long without output, the progress line says so


def describe_exception(exc: BaseException, profile: str = "") -> str:
    """One line a user can act on, for errors steps did not explain themselves (``profile``: the
    session's named AWS profile, for the SSO login command)."""
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

    from .lab_steps.account import NO_CREDENTIALS, sso_expired

    if isinstance(exc, USER_ERRORS):
        return str(exc)
    if isinstance(exc, NoCredentialsError):
        return NO_CREDENTIALS
    expired = sso_expired(exc, profile)
    if expired:
        return expired
    if isinstance(exc, EndpointConnectionError):
        return f"Could not reach AWS ({exc}). Check your network, or the sandbox: inflab sandbox status"
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        op = getattr(exc, "operation_name", "")
        return f"AWS refused {op}: {err.get('Code', '?')}: {err.get('Message', '')}".strip()
    if isinstance(exc, BotoCoreError):
        return f"AWS client error: {exc}"
    return f"{exc.__class__.__name__}: {exc}"


class _Heartbeat:
    """While a step works, say every second what it is doing and for how long."""

    def __init__(self, step: str, emit: Callable[[EngineEvent], None]):
        self.step, self.emit = step, emit
        self.started = time.monotonic()
        self.message, self.fraction = "working", None
        self.last_output, self.last_output_at = "", 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{step}", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(2)

    def progress(self, fraction: float | None, message: str) -> None:
        self.message, self.fraction = message, fraction
        self.tick()

    def output(self, lines: list[str]) -> None:
        shown = [line for line in lines if line.strip()]
        if shown:
            self.last_output, self.last_output_at = shown[-1].strip()[:120], time.monotonic()

    def text(self) -> str:
        now = time.monotonic()
        if self.last_output_at:
            quiet = now - self.last_output_at
            line = f"last output: {self.last_output}"
            return line + (f" (nothing new for {quiet:.0f} s — still working)" if quiet >= QUIET_S else "")
        return self.message

    def tick(self) -> None:
        self.emit(StepProgress(self.step, self.text(), self.fraction, time.monotonic() - self.started))

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self.tick()


class Engine:
    def __init__(
        self,
        store: Store,
        name: str,
        *,
        listener: Callable[[EngineEvent], None] | None = None,
        aws=None,
        runtime: HostRuntime | None = None,
        track: tuple[StepSpec, ...] = TRACK,
        steps: list[Step] | None = None,
    ):
        """``track``: the steps to run, in order (the lab's own by default); ``steps``: step objects to
        use instead of building the track's (each with its spec: an engine's own tests)."""
        from .lab_steps import build
        from .runtime.select import for_session

        self.store = store
        self.name = name
        self.info = store.get_session(name)
        self.config = LabConfig.from_snapshot(self.info.config, sandbox=self.info.sandbox)
        self.runtime = runtime or for_session(self.info.sandbox, store.home)
        self.listener = listener or (lambda e: None)
        self._aws = aws
        self._aws_lock = threading.Lock()
        self.cancel_event = threading.Event()
        # Set with cancel when the app quits: remote jobs keep running and are reattached later.
        self.detach_event = threading.Event()
        self.steps: list[Step] = steps if steps is not None else build(track)
        self.track = tuple(s.spec for s in self.steps)
        self._by_id = {s.id: s for s in self.steps}
        #: cleanup (and the batch-cleanup step) also delete the results bucket
        self._delete_data = False  # this run's answer: does the teardown delete the results bucket too?
        self.kept: list[dict] = []  # what the last cleanup left on purpose (the results bucket)
        self._asked: dict[tuple[str, str], str] = {}  # (step, key) -> what the user asked of that step
        self._beacon_tagged = False
        self._beacon_failing = False
        self._beacon_off = False  # set while cleanup removes the beacon for good

    def describe(self, exc: BaseException) -> str:
        """An error in one line a learner can act on (what :func:`describe_exception` says, with this
        session's profile): for front ends that must not know AWS's exception classes."""
        return describe_exception(exc, self.config.aws.profile)

    def ask(self, step_id: str, key: str, value: str) -> None:
        """Tell a step what the user asked of it while it runs (or when it next runs): the step reads
        it with ``ctx.asked(key)`` — e.g. which of the sweep's jobs to follow (the keys a step answers
        to are named by the events it emits, e.g. :attr:`BatchJobsChanged.FOLLOW`)."""
        self.step(step_id)  # KeyError for a step this engine does not have
        self._asked[(step_id, key)] = value

    # -- wiring ------------------------------------------------------------------
    @property
    def aws(self):
        with self._aws_lock:
            if self._aws is None:
                from .aws import Aws

                self._aws = Aws(
                    region=self.config.region,
                    profile=self.config["aws"]["profile"] or None,
                    endpoint_url=self.runtime.aws_endpoint(),
                    headers=self.runtime.aws_headers(),
                    credentials=self.runtime.aws_credentials(),
                )
            return self._aws

    def step(self, step_id: str) -> Step:
        if step_id not in self._by_id:
            raise KeyError(step_id)
        return self._by_id[step_id]

    def context(self, step: Step, heartbeat: _Heartbeat | None = None) -> StepContext:
        def progress(fraction, message, s=step.id):
            if heartbeat:
                heartbeat.progress(fraction, message)
            else:
                self.listener(StepProgress(s, message, fraction))

        def output(lines, s=step.id):
            if heartbeat:
                heartbeat.output(lines)
            self.listener(JobLines(s, tuple(lines)))

        return StepContext(
            name=self.name,
            config=self.config,
            runtime=self.runtime,
            store=self.store,
            aws_factory=lambda: self.aws,
            step_id=step.id,
            log=lambda msg, s=step.id: self._log(s, msg),
            progress=progress,
            output=output,
            cancel=self.cancel_event,
            detach=self.detach_event,
            emit=self.listener,
            asked=lambda key, s=step.id: self._asked.get((s, key)),
            delete_data=self._delete_data,
        )

    def _log(self, step: str | None, message: str) -> None:
        self.store.event(self.name, step, "log", message)
        self.listener(StepLogged(step, message))

    def _set(self, step: str, state: str, error: str | None = None) -> None:
        self.store.set_step(self.name, step, state, error)
        self.store.event(self.name, step, "state", state + (f": {error}" if error else ""))
        self.listener(StepStateChanged(step, state, error or ""))
        self.publish_progress(step, state)

    # -- the progress beacon (what an instructor's dashboard reads) ---------------------------
    def progress_document(self, step: str | None = None, state: str | None = None) -> Beacon:
        """The beacon (an :class:`inflab.aws.beacon.Beacon`): where the session is, its step history, the
        last error, its instances, and the config values its resource names follow from. Progress only:
        never a key, token or credential."""
        import importlib.metadata

        from .aws import beacon

        recorded = self.store.step_states(self.name)
        order = [s.id for s in self.steps]
        history = tuple(
            beacon.Mark(sid, recorded[sid]["state"], recorded[sid]["started"], recorded[sid]["finished"])
            for sid in order
            if sid in recorded and recorded[sid]["state"] != PENDING
        )
        failed = [recorded[sid] for sid in order if recorded.get(sid, {}).get("state") in (FAILED, CANCELLED)]
        now = time.time()
        if self.finished():
            current, where = "", "finished"
        elif state in (RUNNING, FAILED, CANCELLED):
            current, where = step, state
        else:
            current, where = self.next_step() or "", "waiting"
        cfg = self.config
        instances = tuple(
            beacon.BeaconInstance(r.physical_id, r.detail.get("zone", ""), r.created)
            for r in self.store.ledger(self.name, live_only=True)
            if r.kind == "ec2:instance" and r.physical_id
        )
        try:
            version = importlib.metadata.version("inflab")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        return beacon.Beacon(
            session=self.name,
            participant=cfg.lab.participant or self.name,
            track=cfg.track,
            sandbox=self.info.sandbox,
            step=current or "",
            state=where,
            since=now,
            updated=now,
            error=(failed[-1]["error"] or "")[: beacon.MAX_ERROR] if failed and where in (FAILED, CANCELLED) else "",
            history=history,
            instances=instances,
            version=version,
            names=beacon.Names(
                region=cfg.region,
                track=cfg.track,
                instance_type=cfg.instance_type,
                model_family=cfg.model.family,
                batch_families=tuple(cfg.batch.families),
                batch_sizes=tuple(cfg.batch.sizes),
                batch_instance_types=tuple(cfg.batch.instance_types),
            ),
        )

    def publish_progress(self, step: str | None = None, state: str | None = None) -> None:
        """Write the beacon (unless the config turns it off). A failure never fails a step: one log
        line says so, and the next transition tries again."""
        if not self.config.lab.beacon or self._beacon_off:
            return
        from .aws import beacon, tags

        try:
            beacon.publish(
                self.aws,
                self.progress_document(step, state),
                tags(self.name, self.config.track),
                tagged=self._beacon_tagged,
            )
            self._beacon_tagged, self._beacon_failing = True, False
        except Exception as e:
            if not self._beacon_failing:
                self._beacon_failing = True
                self._log(
                    None,
                    f"Could not publish the progress beacon for the instructor ({describe_exception(e)}); "
                    "the steps go on without it",
                )

    # -- queries -----------------------------------------------------------------
    def states(self) -> dict[str, dict]:
        recorded = self.store.step_states(self.name)
        return {
            s.id: recorded.get(s.id, {"state": PENDING, "started": None, "finished": None, "error": None})
            for s in self.steps
        }

    def next_step(self) -> str | None:
        """The first step not done or skipped, by the record (no AWS calls)."""
        for sid, st in self.states().items():
            if st["state"] not in (DONE, SKIPPED):
                return sid
        return None

    def index(self, step_id: str) -> int:
        return [s.id for s in self.steps].index(step_id)

    def finished(self) -> dict | None:
        """When and how the session finished ({"step", "at"}), or None while it has not."""
        return self.store.get(self.name, "finished")

    def cli_lines(self, step_id: str) -> list[str]:
        """The AWS CLI commands a step stands for, with this session's names (no AWS call, nothing started)."""
        return self.step(step_id).cli(self.context(self.step(step_id)))

    # -- actions ------------------------------------------------------------------
    def cancel(self) -> None:
        self.cancel_event.set()

    def detach(self) -> None:
        """Stop at the next safe point but leave remote jobs running (the app is quitting)."""
        self.detach_event.set()
        self.cancel_event.set()

    def run_step(self, step_id: str, *, check_first: bool = True, ends_run: bool = True) -> RunResult:
        """Run one step (check first). ``ends_run``: nothing follows it in this run, so a
        destructive step (terminate) finishes the session; one the run goes on from does not."""
        step = self.step(step_id)
        try:
            why = step.not_for(self.context(step))
            if why:
                self._log(step.id, f"Skipped: {why}")
                self._set(step.id, SKIPPED)
                return RunResult(True, step.id)
            if check_first:
                if step.check(self.context(step)) and (
                    not step.spec.ends_track or self.store.get(self.name, TRACK_ENDED)
                ):
                    self._log(step.id, "Already done — nothing to change")
                    self._set(step.id, DONE)
                    self._note_finish(step, ends_run)
                    return RunResult(True, step.id)
            self._set(step.id, RUNNING)
            with _Heartbeat(step.id, self.listener) as beat:
                ctx = self.context(step, beat)
                ctx.check_cancel()
                step.apply(ctx)
                if step.spec.ends_track:
                    self._end_track(step, beat)
            took = time.monotonic() - beat.started
            self._log(step.id, f"Finished in {took:.1f} s" if took < 60 else f"Finished in {elapsed_text(took)}")
            self._set(step.id, DONE)
            self._note_finish(step, ends_run)
            return RunResult(True, step.id)
        except Cancelled as e:
            self._set(step.id, CANCELLED, str(e) if str(e) != "cancelled" else "cancelled by you")
            return RunResult(False, step.id, "cancelled", cancelled=True)
        except Exception as e:  # StepError and the like say what to do; AWS or network errors are described
            msg = describe_exception(e, self.config.aws.profile)
            self._set(step.id, FAILED, msg)
            return RunResult(False, step.id, msg)

    def _end_track(self, ending: Step, beat: _Heartbeat) -> None:
        """The track ends with ``ending``: what the steps before it made goes too — their undo, newest
        first, each in its own context (a step whose work is results, or went already, is left: its
        spec's teardown is KEEP)."""
        from .aws import beacon

        for step in reversed(self.steps[: self.index(ending.id)]):
            if step.spec.teardown != UNDO:
                continue
            ctx = self.context(step, beat)
            ctx.check_cancel()
            try:
                step.undo(ctx)
            except (StepError, Cancelled):
                raise
            except Exception as e:
                raise StepError(
                    f"Removing what {step.id} made failed: {describe_exception(e, self.config.aws.profile)}"
                ) from None
        self.store.put(self.name, TRACK_ENDED, {"step": ending.id, "at": time.time()})
        kept = ([] if self._delete_data else ["the results bucket"]) + (
            [
                f"the progress beacon {beacon.path(self.name)}, so that the instructor sees the session finished "
                f"(inflab cleanup {self.name} deletes it last)"
            ]
            if self.config.lab.beacon
            else []
        )
        self._log(
            ending.id, "Everything this session made is gone" + (", except " + " and ".join(kept) if kept else "")
        )

    def _note_finish(self, step: Step, ends_run: bool) -> None:
        if step is self.steps[-1] or (step.destructive and ends_run):
            self.store.put(self.name, "finished", {"step": step.id, "at": time.time()})
            self.publish_progress(step.id, DONE)  # the beacon says finished, not waiting

    def _fresh(self, delete_data: bool = False) -> None:
        self._delete_data = delete_data
        self.cancel_event.clear()
        self.detach_event.clear()

    def run_one(self, step_id: str, *, delete_data: bool = False) -> RunResult:
        """Run a single step on its own (the TUI's "run" action). ``delete_data``: a teardown it runs
        deletes the results bucket too."""
        self._fresh(delete_data)
        return self.run_step(step_id)

    def run(
        self,
        until: str | None = None,
        *,
        again: bool = False,
        from_step: str | None = None,
        exclude: tuple[str, ...] = (),
        delete_data: bool = False,
    ) -> RunResult:
        """Run every step up to and including ``until``; already-done steps are checked and skipped.

        A finished session (terminated, or through its last step) runs nothing unless asked:
        ``again`` starts over (each step checks, so what still exists is kept), ``from_step``
        redoes that step and the ones after it even if they look done. ``exclude`` leaves
        steps out (e.g. the step that ends the instance: everything but terminate). ``delete_data``:
        the teardown at the end of the track deletes the results bucket too.
        """
        self._fresh(delete_data)
        fin = self.finished()
        if fin and not (again or from_step):
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(fin["at"]))
            self._log(
                None,
                f"Session {self.name} finished at {when} (step {fin['step']}): nothing to do. "
                "To run it again: --again (or --from STEP to redo from a step)",
            )
            return RunResult(True, fin["step"], finished=True)
        if fin:
            self.store.delete(self.name, "finished")
            self._log(None, "Running the finished session again" + (f" from {from_step}" if from_step else ""))
        last = self.index(until) if until else len(self.steps) - 1
        first = self.index(from_step) if from_step else 0
        states = self.states()
        todo = [
            s
            for s in self.steps[first : last + 1]
            if not (s.id in exclude or (states[s.id]["state"] == SKIPPED and not from_step))
        ]
        told = False
        for step in todo:
            if self.cancel_event.is_set():
                return RunResult(False, step.id, "cancelled", cancelled=True)
            if not (again or from_step) and self.ended_on_purpose(step, states):
                if not told:
                    self._log(
                        None,
                        "The instance was terminated on purpose: its steps stay done and are not run "
                        "again (--from STEP redoes them, --again starts over)",
                    )
                    told = True
                continue
            result = self.run_step(step.id, check_first=not from_step, ends_run=step is todo[-1])
            if not result.ok:
                return result
        return RunResult(True, until)

    def skip(self, step_id: str) -> None:
        self.step(step_id)
        self._log(step_id, "Skipped by you")
        self._set(step_id, SKIPPED)

    def undo(self, step_id: str, *, delete_data: bool = False) -> RunResult:
        step = self.step(step_id)
        self._fresh(delete_data)
        try:
            self._set(step_id, RUNNING)
            step.undo(self.context(step))
            if step.spec.ends_track:
                self.store.delete(self.name, TRACK_ENDED)
            self._set(step_id, UNDONE)
            if (self.finished() or {}).get("step") == step_id:
                self.store.delete(self.name, "finished")
            return RunResult(True, step_id)
        except Cancelled:
            self._set(step_id, CANCELLED, "cancelled by you")
            return RunResult(False, step_id, "cancelled", cancelled=True)
        except Exception as e:
            msg = describe_exception(e)
            self._set(step_id, FAILED, msg)
            return RunResult(False, step_id, msg)

    def cleanup(self, *, delete_data: bool = False) -> tuple[list[str], list[dict]]:
        """Undo every step in reverse order, then look for anything still tagged for the session;
        the results bucket stays unless ``delete_data``.

        Returns (errors, leftovers).
        """
        from .aws import beacon, inventory

        errors = []
        for step in reversed(self.steps):
            result = self.undo(step.id, delete_data=delete_data)
            if not result.ok:
                errors.append(f"{step.id}: {result.error}")
        self._beacon_off = True  # it goes last, and stays gone until the session runs again
        try:
            if beacon.delete(self.aws, self.name):
                self._log(None, f"Deleted the progress beacon {beacon.path(self.name)}")
        except Exception as e:
            errors.append(f"beacon: {describe_exception(e)}")
        self._beacon_off = False
        try:
            found = inventory.session_resources(self.aws, self.name)
        except Exception as e:  # AWS refused the look (a missing permission) or did not answer
            errors.append(f"the look by tag: {describe_exception(e)}")
            return errors, []
        kept = self.kept = [r for r in found if r["type"] == "s3:bucket" and not delete_data]
        leftovers = [r for r in found if r not in kept]
        if leftovers:
            self._log(
                None,
                "Still tagged for this session: " + ", ".join(f"{r['type']} {r['id'] or r['name']}" for r in leftovers),
            )
        else:
            self._log(
                None,
                f"Verified: nothing tagged inflab:session={self.name} is left in {self.config.region}"
                + (" but the results bucket" if kept else ""),
            )
        return errors, leftovers

    # -- opening a session: what is really there --------------------------------------
    def running_job_step(self) -> str | None:
        """The step whose work is still running outside this process (see :meth:`in_flight`)."""
        found = self.in_flight()
        return found[0] if found else None

    def in_flight(self) -> tuple[str, str] | None:
        """(step, what) for work still running outside this process that its step follows when run
        again: a job the record says runs on the current instance, or what a step not done says it
        started (a submitted sweep whose jobs have not all ended). From the record: no AWS call."""
        jobs = records.load(self.store, self.name, HostJobs) or HostJobs()
        recorded = self.recorded_host()
        host = recorded.instance_id if recorded else None
        for kind, job_id in jobs.current.items():
            if kind not in self._by_id:
                continue
            rec = self.store.job(self.name, job_id)
            if rec and rec["status"] == "running" and host and rec["host"] == host:
                return kind, "its job is still running on the instance"
        states = self.states()
        for step in self.steps:
            if states[step.id]["state"] not in (DONE, SKIPPED):
                what = step.in_flight(self.context(step))
                if what:
                    return step.id, what
        return None

    def recorded_batch_jobs(self) -> BatchJobsChanged | None:
        """The sweep's jobs as the record last has them (no AWS call), or None before any is
        submitted: what the Jobs tab shows at once when a session opens, before the monitor polls."""
        from .lab_steps.batch_jobs import BatchMonitor, recorded_table

        monitor = next((s for s in self.steps if isinstance(s, BatchMonitor)), None)
        if monitor is None:
            return None
        try:
            jobs, done, total = recorded_table(self.context(monitor))
        except RecordError:
            return None  # the monitor says what is wrong with the record when it runs
        return BatchJobsChanged(monitor.id, tuple(jobs), done, total) if jobs else None

    def ended_on_purpose(self, step: Step, states: dict | None = None) -> bool:
        """An instance step before a done step that removes the instance (terminate): its work
        is gone because the user ended it, not because something went wrong."""
        if not (step.needs_host or step.provides_host):
            return False
        states = states or self.states()
        at = self.index(step.id)
        return any(s.ends_host and states[s.id]["state"] == DONE and self.index(s.id) > at for s in self.steps)

    def reconcile(self) -> list[StepFound]:
        """Check every done step against what is really there; mark what vanished as stale.

        Steps that need the instance are not probed once the instance itself is found gone.
        A finished session is left as it is (its instance is meant to be gone).
        """
        self._fresh()
        found: list[StepFound] = []
        if self.finished():
            return found
        gone: str | None = None
        states = self.states()
        for step in self.steps:
            if self.cancel_event.is_set():
                break
            if states[step.id]["state"] != DONE or self.ended_on_purpose(step, states):
                continue
            if step.needs_host and gone:
                reason = gone
            else:
                try:
                    ok = step.check(self.context(step))
                    reason = "" if ok else "what it made is no longer there"
                except Exception as e:
                    reason = f"could not check it ({describe_exception(e)})"
            if not reason:
                continue
            if step.provides_host:
                gone = f"the instance is gone (found at {step.id})"
            message = f"{reason}: run it again"
            self._set(step.id, STALE, message)
            found.append(StepFound(step.id, STALE, message))
            self.listener(found[-1])
        running = self.in_flight()
        if running:
            found.append(StepFound(running[0], RUNNING, f"{running[1]}: reattaching"))
            self.listener(found[-1])
        summary = (
            f"{len([f for f in found if f.state == STALE])} step(s) need running again"
            if found
            else "everything is where it was"
        )
        self._log(None, f"Checked the session against what exists: {summary}")
        return found

    def resume(self) -> RunResult:
        """Open the session: reconcile, then reattach to work still running outside this process
        (a job on the instance, a sweep's jobs on AWS Batch)."""
        self.reconcile()
        running = self.in_flight()
        if running and not self.cancel_event.is_set():
            self._log(running[0], f"Reattaching: {running[1]}")
            return self.run_one(running[0])
        return RunResult(True)

    # -- the host, for live views (monitor, terminal, ssh) ---------------------------------
    def host(self) -> Host:
        """The instance to watch, or HostUnavailable saying why there is none."""
        states = self.states()
        try:
            record = self.recorded_host()
        except RecordError as e:
            raise HostUnavailable(str(e)) from None
        ender, first_host, ready, pinner = (
            first("ends_host", self.track),
            first("provides_host", self.track),
            last("provides_host", self.track),
            first("pins_host", self.track),
        )
        if not record:
            if ender and states.get(ender.id, {}).get("state") == DONE:
                raise HostUnavailable(
                    f"The instance was terminated (step {ender.id}). Run the steps from "
                    f"{first_host.id if first_host else 'the start'} to get a new one"
                )
            raise HostUnavailable(f"No instance yet: run the steps up to {ready.id if ready else 'the instance'}")
        if ready and states.get(ready.id, {}).get("state") == STALE:
            raise HostUnavailable(
                "The instance is gone (terminated outside inflab, or the sandbox was stopped): "
                f"run the steps from {first_host.id if first_host else 'the start'} again"
            )
        try:
            host = self.context(self._pinner()).host()
        except RecordError as e:  # the pinned key's record
            raise HostUnavailable(str(e)) from None
        if not host.pinned:
            raise HostUnavailable(
                f"Run the {pinner.id} step first (it checks and pins the host key)"
                if pinner
                else "Nothing in this track checks and pins the instance's host key"
            )
        return host

    def recorded_host(self) -> HostRecord | None:
        """The instance the record names (no AWS call), or None before there is one; a damaged record
        is a :class:`~inflab.lab_steps.records.RecordError` saying which step to run again."""
        return records.load(self.store, self.name, HostRecord)

    def _pinner(self) -> Step:
        """The step that pins the host key: the context the live views connect in."""
        spec = first("pins_host", self.track)
        return self.step(spec.id) if spec else self.steps[0]

    async def open_host(self, timeout: float = 15):
        """An SSH connection to the instance for a live view (host key checked)."""
        import asyncio

        from .remote.host import open_connection

        host = await asyncio.to_thread(self.host)  # may start the sandbox daemon: never on the UI loop
        return await open_connection(host, timeout=timeout)

    def ssh_command(self, *remote: str) -> list[str]:
        """The OpenSSH command line for the instance, checked against the pinned key."""
        from .lab_steps.connect import ssh_command

        self.host()
        return ssh_command(self.context(self._pinner()), *remote)
