"""Engine events as Textual messages: one message class per event record, one handler each.

The engine calls its listener on a worker thread; :func:`message_for` wraps the record so
the screen can post it across to the UI loop (``post_message`` is thread-safe).
"""

from __future__ import annotations

from textual.message import Message

from ..events import BatchJobsChanged, EngineEvent, JobLines, StepFound, StepLogged, StepProgress, StepStateChanged


class StepStateMessage(Message):
    """A step changed state (handler: ``on_step_state_message``)."""

    def __init__(self, event: StepStateChanged):
        super().__init__()
        self.event = event


class StepLogMessage(Message):
    """A line for the step log."""

    def __init__(self, event: StepLogged):
        super().__init__()
        self.event = event


class StepProgressMessage(Message):
    """What the running step is doing, and for how long (once a second while it works)."""

    def __init__(self, event: StepProgress):
        super().__init__()
        self.event = event


class JobLinesMessage(Message):
    """Lines of a remote job's output."""

    def __init__(self, event: JobLines):
        super().__init__()
        self.event = event


class StepFoundMessage(Message):
    """The background check found a step's work gone, or a job still running."""

    def __init__(self, event: StepFound):
        super().__init__()
        self.event = event


class BatchJobsMessage(Message):
    """The sweep's Batch job table changed (handler: ``on_batch_jobs_message``)."""

    def __init__(self, event: BatchJobsChanged):
        super().__init__()
        self.event = event


_MESSAGES: dict[type, type[Message]] = {
    StepStateChanged: StepStateMessage,
    StepLogged: StepLogMessage,
    StepProgress: StepProgressMessage,
    JobLines: JobLinesMessage,
    StepFound: StepFoundMessage,
    BatchJobsChanged: BatchJobsMessage,
}


def message_for(event: EngineEvent) -> Message:
    return _MESSAGES[type(event)](event)


class WorkFinished(Message):
    """A piece of engine work (a step, a range, undo, resume) ended."""

    def __init__(self, what: str, ok: bool, error: str = "", finished: bool = False):
        super().__init__()
        self.what, self.ok, self.error, self.finished = what, ok, error, finished
