"""What the engine tells its listener (the TUI, ``inflab run``, tests): one record per kind.

Events are delivered on whatever thread the engine runs on; a listener hands them on
(the TUI posts one Textual message per kind) and never touches widgets from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class StepStateChanged:
    step: str
    state: str
    message: str = ""


@dataclass(frozen=True)
class StepLogged:
    step: str | None  # None: the session as a whole
    message: str


@dataclass(frozen=True)
class StepProgress:
    step: str
    message: str  # what the step is doing now
    fraction: float | None = None  # None: no measure of how far (a spinner)
    elapsed: float = 0.0  # seconds since the step started


@dataclass(frozen=True)
class JobLines:
    """Lines of a remote job's output, as they stream (not written to the event log)."""

    step: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class StepFound:
    """The background check of a session found a step's work gone, or a job to reattach."""

    step: str
    state: str
    message: str


def elapsed_text(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


@dataclass(frozen=True)
class BatchJob:
    """One job of the Batch sweep as the monitor last saw it."""

    name: str
    job_id: str
    state: str  # SUBMITTED PENDING RUNNABLE STARTING RUNNING SUCCEEDED FAILED
    since: float  # epoch seconds when it entered ``state`` (as far as the monitor knows)
    instance_type: str
    batch_size: int
    family: str
    target: str
    attempt: int = 0  # attempts started so far
    reason: str = ""  # why it failed (the job's status reason and exit code)


@dataclass(frozen=True)
class BatchJobsChanged:
    """The sweep's job table changed (a state, an attempt, a reason).

    To stream another job's log into the job pane, a front end answers the step:
    ``engine.ask(event.step, BatchJobsChanged.FOLLOW, job_id)``."""

    FOLLOW: ClassVar[str] = "follow"

    step: str
    jobs: tuple[BatchJob, ...]
    done: int  # jobs that ended, SUCCEEDED or FAILED
    total: int
    following: str = ""  # the job id whose log streams into the job pane


EngineEvent = StepStateChanged | StepLogged | StepProgress | JobLines | StepFound | BatchJobsChanged


@dataclass(frozen=True)
class RunResult:
    """What a run of the engine (one step, a range, an undo, a cleanup) came to."""

    ok: bool
    step: str | None = None  # the step that failed or was cancelled
    error: str = ""
    cancelled: bool = False
    finished: bool = False  # nothing was run: the session had finished already
