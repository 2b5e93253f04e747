"""The engine: runs a session's steps, records every transition, resumes, cancels.

The TUI and ``inflab run`` both drive this one class. It is synchronous and blocking
(call it from a thread in the TUI); it reports through a listener callback that receives
:class:`EngineEvent` objects from whatever thread the engine runs on.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from .config import LabConfig
from .lab_steps.base import Cancelled, Step, StepContext, StepError
from .session import CANCELLED, DONE, FAILED, PENDING, RUNNING, SKIPPED, UNDONE, Store


@dataclass(frozen=True)
class EngineEvent:
    kind: str  # "state", "log", "progress" or "output" (a remote job's lines)
    step: str | None
    state: str | None = None
    message: str = ""
    fraction: float | None = None
    lines: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunResult:
    ok: bool
    step: str | None = None  # the step that failed or was cancelled
    error: str = ""
    cancelled: bool = False


def describe_exception(exc: BaseException) -> str:
    """One line a user can act on, for errors steps did not explain themselves."""
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

    from .lab_steps.account import NO_CREDENTIALS

    if isinstance(exc, NoCredentialsError):
        return NO_CREDENTIALS
    if isinstance(exc, EndpointConnectionError):
        return f"Could not reach AWS ({exc}). Check your network, or the sandbox: inflab sandbox status"
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        op = getattr(exc, "operation_name", "")
        return f"AWS refused {op}: {err.get('Code', '?')}: {err.get('Message', '')}".strip()
    if isinstance(exc, BotoCoreError):
        return f"AWS client error: {exc}"
    return f"{exc.__class__.__name__}: {exc}"


class Engine:
    def __init__(self, store: Store, name: str, *, listener: Callable[[EngineEvent], None] | None = None, aws=None):
        self.store = store
        self.name = name
        info = store.get_session(name)
        self.info = info
        self.config = LabConfig(info.config)
        self.listener = listener or (lambda e: None)
        self._aws = aws
        self._aws_lock = threading.Lock()
        self.cancel_event = threading.Event()
        # Set with cancel when the app quits: remote jobs keep running and are reattached later.
        self.detach_event = threading.Event()
        from .lab_steps import available_steps

        self.steps: list[Step] = available_steps()
        self._by_id = {s.id: s for s in self.steps}

    # -- wiring ------------------------------------------------------------------
    @property
    def aws(self):
        with self._aws_lock:
            if self._aws is None:
                from .aws import Aws

                endpoint = None
                if self.info.sandbox:
                    from . import sandbox

                    endpoint = sandbox.ensure_running(self.store.home).endpoint
                self._aws = Aws(region=self.config.region, profile=self.config["aws"]["profile"] or None, endpoint_url=endpoint)
            return self._aws

    def step(self, step_id: str) -> Step:
        if step_id not in self._by_id:
            raise KeyError(step_id)
        return self._by_id[step_id]

    def context(self, step: Step) -> StepContext:
        return StepContext(
            name=self.name,
            config=self.config,
            sandbox=self.info.sandbox,
            store=self.store,
            aws=self.aws,
            step_id=step.id,
            log=lambda msg, s=step.id: self._log(s, msg),
            progress=lambda f, msg, s=step.id: self.listener(EngineEvent("progress", s, message=msg, fraction=f)),
            output=lambda lines, s=step.id: self.listener(EngineEvent("output", s, lines=tuple(lines))),
            cancel=self.cancel_event,
            detach=self.detach_event,
        )

    def _log(self, step: str | None, message: str) -> None:
        self.store.event(self.name, step, "log", message)
        self.listener(EngineEvent("log", step, message=message))

    def _set(self, step: str, state: str, error: str | None = None) -> None:
        self.store.set_step(self.name, step, state, error)
        self.store.event(self.name, step, "state", state + (f": {error}" if error else ""))
        self.listener(EngineEvent("state", step, state=state, message=error or ""))

    # -- queries -----------------------------------------------------------------
    def states(self) -> dict[str, dict]:
        recorded = self.store.step_states(self.name)
        return {s.id: recorded.get(s.id, {"state": PENDING, "started": None, "finished": None, "error": None}) for s in self.steps}

    def next_step(self) -> str | None:
        """The first step not done or skipped, by the record (no AWS calls)."""
        for sid, st in self.states().items():
            if st["state"] not in (DONE, SKIPPED):
                return sid
        return None

    def index(self, step_id: str) -> int:
        return [s.id for s in self.steps].index(step_id)

    # -- actions ------------------------------------------------------------------
    def cancel(self) -> None:
        self.cancel_event.set()

    def detach(self) -> None:
        """Stop at the next safe point but leave remote jobs running (the app is quitting)."""
        self.detach_event.set()
        self.cancel_event.set()

    def run_step(self, step_id: str, *, check_first: bool = True) -> RunResult:
        step = self.step(step_id)
        try:
            ctx = self.context(step)
            if check_first:
                if step.check(ctx):
                    self._log(step.id, "Already done — nothing to change")
                    self._set(step.id, DONE)
                    return RunResult(True, step.id)
            self._set(step.id, RUNNING)
            ctx.check_cancel()
            started = time.monotonic()
            step.apply(ctx)
            self._log(step.id, f"Finished in {time.monotonic() - started:.1f} s")
            self._set(step.id, DONE)
            return RunResult(True, step.id)
        except Cancelled:
            self._set(step.id, CANCELLED, "cancelled")
            return RunResult(False, step.id, "cancelled", cancelled=True)
        except StepError as e:
            self._set(step.id, FAILED, str(e))
            return RunResult(False, step.id, str(e))
        except Exception as e:  # AWS or network errors the step did not expect
            msg = describe_exception(e)
            self._set(step.id, FAILED, msg)
            return RunResult(False, step.id, msg)

    def _fresh(self) -> None:
        self.cancel_event.clear()
        self.detach_event.clear()

    def run_one(self, step_id: str) -> RunResult:
        """Run a single step on its own (the TUI's "run" action)."""
        self._fresh()
        return self.run_step(step_id)

    def run(self, until: str | None = None) -> RunResult:
        """Run every step up to and including ``until``; already-done steps are checked and skipped."""
        self._fresh()
        last = self.index(until) if until else len(self.steps) - 1
        states = self.states()
        for step in self.steps[: last + 1]:
            if self.cancel_event.is_set():
                return RunResult(False, step.id, "cancelled", cancelled=True)
            if states[step.id]["state"] == SKIPPED:
                continue
            result = self.run_step(step.id)
            if not result.ok:
                return result
        return RunResult(True, until)

    def skip(self, step_id: str) -> None:
        self.step(step_id)
        self._log(step_id, "Skipped by you")
        self._set(step_id, SKIPPED)

    def undo(self, step_id: str) -> RunResult:
        step = self.step(step_id)
        self._fresh()
        try:
            self._set(step_id, RUNNING)
            step.undo(self.context(step))
            self._set(step_id, UNDONE)
            return RunResult(True, step_id)
        except Cancelled:
            self._set(step_id, CANCELLED, "cancelled")
            return RunResult(False, step_id, "cancelled", cancelled=True)
        except StepError as e:
            self._set(step_id, FAILED, str(e))
            return RunResult(False, step_id, str(e))
        except Exception as e:
            msg = describe_exception(e)
            self._set(step_id, FAILED, msg)
            return RunResult(False, step_id, msg)

    def cleanup(self) -> tuple[list[str], list[dict]]:
        """Undo every step in reverse order, then look for anything still tagged for the session.

        Returns (errors, leftovers).
        """
        from .aws import inventory

        errors = []
        for step in reversed(self.steps):
            result = self.undo(step.id)
            if not result.ok:
                errors.append(f"{step.id}: {result.error}")
        leftovers = inventory.session_resources(self.aws, self.name)
        if leftovers:
            self._log(None, "Still tagged for this session: " + ", ".join(f"{r['type']} {r['id'] or r['name']}" for r in leftovers))
        else:
            self._log(None, f"Verified: nothing tagged inflab:session={self.name} is left in {self.config.region}")
        return errors, leftovers
