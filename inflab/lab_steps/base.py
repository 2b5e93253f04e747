"""What a step is, and what it gets to work with.

A step is one readable unit: instructions (Markdown in ``assets/steps/<id>.md``), the
AWS CLI commands it stands for, ``check`` (already done? — makes resume idempotent),
``apply`` and ``undo``. Steps never touch the UI: they log, report progress and read
the cancel flag through their :class:`StepContext`.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_delay, wait_exponential

from .. import track
from ..aws import Aws, tags
from ..config import LabConfig
from ..errors import InflabError
from ..events import EngineEvent
from ..remote.host import Host
from ..runtime.base import HostRuntime
from ..session import Store
from ..track import StepSpec
from . import records
from .records import HostRecord, PinnedHostKey, Record

R = TypeVar("R", bound=Record)
T = TypeVar("T")


class StepError(InflabError, RuntimeError):
    """A step failed in a way the user can understand; the message says what to do."""


class Cancelled(RuntimeError):
    """The user asked to stop."""


@dataclass
class StepContext:
    name: str
    config: LabConfig
    runtime: HostRuntime
    store: Store
    #: boto3 clients; made on first use (so ``cli()`` texts never reach AWS or start the sandbox)
    aws_factory: Callable[[], Aws] | None = None
    step_id: str = ""
    log: Callable[[str], None] = print
    progress: Callable[[float | None, str], None] = lambda f, m: None
    #: a remote job's output lines, for the live job pane (not written to the event log)
    output: Callable[[list[str]], None] = lambda lines: None
    cancel: threading.Event = field(default_factory=threading.Event)
    #: set with ``cancel`` when the app quits: leave remote jobs running, reattach later
    detach: threading.Event = field(default_factory=threading.Event)
    #: an event of this step's own for the engine's listener (the sweep's job table: BatchJobsChanged)
    emit: Callable[[EngineEvent], None] = lambda event: None
    #: what the user asked of this step while it runs, by key (``Engine.ask``); None when nothing was asked
    asked: Callable[[str], str | None] = lambda key: None
    #: cleanup also deletes the results bucket (asked in the TUI, ``--delete-data`` headless)
    delete_data: bool = False

    @property
    def aws(self) -> Aws:
        if self.aws_factory is None:
            raise StepError("No AWS connection in this context")
        return self.aws_factory()

    # -- names -------------------------------------------------------------------
    @property
    def prefix(self) -> str:
        return f"inflab-{self.name}"

    @property
    def key_path(self) -> Path:
        """The session's SSH private key (0600)."""
        return self.session_dir / f"{self.prefix}.pem"

    def host(self, *, start: bool = True) -> Host:
        """The running instance as SSH sees it, with its pinned host key (if it is the same instance)."""
        record = self.load(HostRecord)
        if record is None:
            raise StepError("No running instance recorded: run the wait-running step first")
        known = self.load(PinnedHostKey)
        pin = known.for_host(record) if known else None
        return self.runtime.host(record.to_json(), str(self.key_path), pin.to_json() if pin else {}, start=start)

    @property
    def region(self) -> str:
        return self.config.region

    @property
    def session_dir(self) -> Path:
        return self.store.session_dir(self.name)

    def tags(self, **extra: str) -> list[dict[str, str]]:
        return tags(self.name, self.config.track, **extra)

    def tag_spec(self, resource_type: str, **extra: str) -> dict[str, Any]:
        return {"ResourceType": resource_type, "Tags": self.tags(Name=f"{self.prefix}", **extra)}

    # -- state -------------------------------------------------------------------
    def load(self, record: type[R]) -> R | None:
        """The session's ``record`` (one of :mod:`.records`), or None when no step wrote it; a stored
        value of the wrong shape is a :class:`~.records.RecordError` naming the key and field."""
        return records.load(self.store, self.name, record)

    def require(self, record: type[R]) -> R:
        """The session's ``record``; a :class:`StepError` saying which step writes it when there is none."""
        found = self.load(record)
        if found is None:
            raise StepError(
                f"Nothing recorded under {record.KEY!r} yet: run the {record.WRITER or 'earlier'} step first"
            )
        return found

    def save(self, record: Record) -> None:
        records.save(self.store, self.name, record)

    def forget(self, record: type[Record]) -> None:
        records.forget(self.store, self.name, record)

    def intend(self, kind: str, name: str, detail: dict | None = None) -> int:
        """Record in the ledger that a resource is about to be made (see :meth:`creating`)."""
        return self.store.intend(self.name, self.step_id, kind, name, self.region, detail)

    @contextmanager
    def creating(self, kind: str, name: str, detail: dict | None = None) -> Iterator[Callable[..., None]]:
        """Make a resource with its intent in the ledger first::

            with ctx.creating("iam:role", name) as made:
                arn = iam.create_role(RoleName=name, ...)["Role"]["Arn"]
                made(arn)  # its physical id (and, optionally, the detail to record instead)

        The intent is written before the block runs; ``made`` marks it created. If the block raises,
        the intent stays, so cleanup looks for what the call may have made before it failed.
        """
        rid = self.intend(kind, name, detail)
        marked = False

        def made(physical_id: str, detail: dict | None = None) -> None:
            nonlocal marked
            self.store.mark_created(rid, physical_id, detail)
            marked = True

        yield made
        if not marked:
            raise RuntimeError(f"creating {kind} {name}: the block ended without saying what it made")

    # -- control -----------------------------------------------------------------
    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("cancelled")

    def sleep(self, seconds: float) -> None:
        if self.cancel.wait(seconds):
            raise Cancelled("cancelled")

    def retrying(
        self,
        call: Callable[[], T],
        *,
        when: Callable[[BaseException], bool],
        within_s: float,
        say: Callable[[BaseException | None, float, int], str],
    ) -> T:
        """What ``call()`` returns, calling it again while it fails with an error ``when`` accepts
        (AWS not caught up yet: a new role, a resource still in use). Waits 2 s, doubling to 20 s,
        for at most ``within_s`` (then the last error is raised); cancel stops the wait.
        ``say(error, wait_s, attempt)`` is logged before each wait, so the learner sees why."""

        def before_sleep(state: RetryCallState) -> None:
            err = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            self.log(say(err, wait, state.attempt_number))

        retry = Retrying(
            retry=retry_if_exception(when),
            stop=stop_after_delay(within_s),
            wait=wait_exponential(multiplier=2, min=2, max=20),
            sleep=self.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        return retry(call)

    def wait_for(
        self,
        client: Any,
        waiter_name: str,
        what: str,
        *,
        delay: float = 5,
        timeout: float = 900,
        explain: Callable[[dict], str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Run a boto3 waiter, one poll at a time, so progress shows and cancel works.

        A poll that times out polls again (until ``timeout``); a terminal failure state (an instance
        that terminated while pending) raises :class:`WaitFailed` with ``explain(last response)``
        (e.g. the instance's StateReason); an error answer that is not a failure state (e.g.
        UnauthorizedOperation) is raised at once as a :class:`StepError` instead of polled for
        ``timeout`` seconds.
        """
        from botocore.exceptions import WaiterError

        waiter = client.get_waiter(waiter_name)
        start = time.monotonic()
        while True:
            self.check_cancel()
            try:
                waiter.wait(WaiterConfig={"Delay": 1, "MaxAttempts": 1}, **kwargs)
                self.progress(1.0, f"{what}: done")
                return
            except WaiterError as e:
                reason = str(e.kwargs.get("reason", "")) if hasattr(e, "kwargs") else str(e)
                last = e.last_response or {}
                if reason.startswith("Waiter encountered a terminal failure state"):
                    why = (explain(last) if explain else "") or str(last.get("Error", {}).get("Message", "")) or reason
                    raise WaitFailed(f"{what}: AWS reports a failure state ({why})", last) from None
                if not reason.startswith("Max attempts exceeded"):  # an error answer no acceptor retries
                    err = last.get("Error", {})
                    raise StepError(
                        f"{what}: AWS answered {err.get('Code', '?')}: {err.get('Message', reason)}"
                    ) from None
            elapsed = time.monotonic() - start
            if elapsed > timeout:
                raise StepError(f"{what}: still not done after {timeout:.0f} s")
            self.progress(None, f"{what}… {elapsed:.0f} s")
            self.sleep(delay)


class WaitFailed(StepError):
    """A waiter reached a failure state; ``response`` is AWS's last answer."""

    def __init__(self, message: str, response: dict):
        super().__init__(message)
        self.response = response


class Step(ABC):
    """One step of the track. Its id is its own; what the rest of the lab knows of it (title,
    exercise, flags) is its :class:`~inflab.track.StepSpec` in the track declaration."""

    id: str = ""
    _spec: StepSpec | None = None

    @property
    def spec(self) -> StepSpec:
        return self._spec or track.spec(self.id)

    @spec.setter
    def spec(self, value: StepSpec) -> None:
        self._spec = value

    @property
    def title(self) -> str:
        return self.spec.title

    @property
    def destructive(self) -> bool:
        return self.spec.destructive

    @property
    def needs_host(self) -> bool:
        return self.spec.needs_host

    @property
    def provides_host(self) -> bool:
        return self.spec.provides_host

    @property
    def ends_host(self) -> bool:
        return self.spec.ends_host

    def instructions(self) -> str:
        try:
            return resources.files("inflab.assets").joinpath("steps", f"{self.id}.md").read_text(encoding="utf-8")
        except FileNotFoundError:
            return f"# {self.title}\n"

    def cli(self, ctx: StepContext) -> list[str]:
        """The AWS CLI commands this step stands for, with this session's values."""
        return []

    def not_for(self, ctx: StepContext) -> str:
        """Why this step does not apply to this session (its config turns its exercise off), in a few
        words; "" when it does. The engine skips such a step, saying why."""
        return ""

    @abstractmethod
    def check(self, ctx: StepContext) -> bool:
        """True when the step's work is already done (then apply is not called)."""

    @abstractmethod
    def apply(self, ctx: StepContext) -> None:
        """Do the work; raise StepError with an actionable message on failure."""

    def undo(self, ctx: StepContext) -> None:
        """Remove what apply made. Must be safe to call when nothing is there."""

    def in_flight(self, ctx: StepContext) -> str:
        """Work this step started that goes on outside this process and that it follows when run
        again (a submitted sweep), in a few words; "" when there is none. From the record only (no
        AWS call): opening the session runs the step again to reattach to it."""
        return ""
