"""The sweep's Batch jobs as a live table: state, time in state, instance type, batch size, attempt.

The batch-monitor step posts the whole table (:class:`inflab.events.BatchJobsChanged`) when
anything changes; between changes the pane ticks the time-in-state column once a second
itself, from each job's ``since``. Choosing a row asks the wizard to stream that job's log.
"""

from __future__ import annotations

import os
import time

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from ..events import BatchJob, BatchJobsChanged, elapsed_text

FINAL = ("SUCCEEDED", "FAILED")
STATE_STYLES = {"SUCCEEDED": "green", "FAILED": "bold red", "RUNNING": "yellow", "STARTING": "cyan", "RUNNABLE": "cyan"}
COLUMNS = (
    ("name", "Job"),
    ("state", "State"),
    ("time", "In state"),
    ("instance_type", "Instance"),
    ("batch_size", "Batch"),
    ("attempt", "Attempt"),
    ("reason", "Reason"),
)
FOLLOWING = "▸"


def progress_line(done: int, total: int, jobs: tuple[BatchJob, ...]) -> str:
    """ "5 of 9 done", with the failures and what is still running named by count."""
    failed = sum(j.state == "FAILED" for j in jobs)
    running = sum(j.state == "RUNNING" for j in jobs)
    extra = ([f"{failed} failed"] if failed else []) + ([f"{running} running"] if running else [])
    return f"{done} of {total} done" + (f" ({', '.join(extra)})" if extra else "")


def shared_prefix(names: list[str]) -> str:
    """The dash-separated beginning every name shares ("inflab-lab1-bert-inf1-2xlarge-" of its sweep's
    jobs), so the Job column shows what tells them apart; "" for fewer than two names."""
    if len(names) < 2:
        return ""
    common = os.path.commonprefix(names)
    return common[: common.rfind("-") + 1]


class JobsPane(Vertical):
    """The job table; Enter (or a click) on a row follows that job's log in the Job tab."""

    DEFAULT_CSS = """
    JobsPane { height: 1fr; }
    JobsPane #jobs-progress { height: 1; padding: 0 1; text-style: bold; }
    JobsPane DataTable { height: 1fr; min-height: 4; }
    JobsPane #jobs-detail { height: auto; max-height: 2; padding: 0 1; color: $text-muted; }
    """

    class Follow(Message):
        """The user chose a job: stream its log."""

        def __init__(self, step: str, job_id: str, name: str):
            super().__init__()
            self.step, self.job_id, self.name = step, job_id, name

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.jobs: dict[str, BatchJob] = {}
        self.following = ""
        self.step = ""  # the step whose jobs these are (the one that follows a chosen job's log)
        self._prefix = ""  # what every job's name begins with, left out of the Job column (the detail line has it)
        self.done = self.total = 0

    def compose(self) -> ComposeResult:
        yield Static(
            "No sweep jobs yet: they appear here when batch-submit has submitted them.",
            id="jobs-progress",
            markup=False,
        )
        yield DataTable(id="jobs-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="jobs-detail", markup=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, heading in COLUMNS:
            table.add_column(heading, key=key)
        self.set_interval(1, self.tick)

    @property
    def progress(self) -> str:
        return str(self.query_one("#jobs-progress", Static).render())

    def show(self, event: BatchJobsChanged) -> None:
        """Draw the table the monitor saw; rows stay where they are so the cursor does not jump."""
        self.done, self.total, self.following, self.step = event.done, event.total, event.following, event.step
        self._prefix = shared_prefix([j.name for j in event.jobs])
        self.query_one("#jobs-progress", Static).update(progress_line(event.done, event.total, event.jobs))
        table = self.query_one(DataTable)
        seen = set()
        for job in event.jobs:
            seen.add(job.job_id)
            cells = self._cells(job)
            if job.job_id in self.jobs:
                for (key, _), value in zip(COLUMNS, cells):
                    table.update_cell(job.job_id, key, value, update_width=True)  # RUNNABLE → SUCCEEDED is wider
            else:
                table.add_row(*cells, key=job.job_id)
            self.jobs[job.job_id] = job
        for gone in [jid for jid in self.jobs if jid not in seen]:
            table.remove_row(gone)
            del self.jobs[gone]
        self._show_detail()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show_detail()

    def _show_detail(self) -> None:
        """The highlighted job in full (a failure's reason is longer than its column)."""
        table = self.query_one(DataTable)
        job = None
        if table.row_count:
            job = self.jobs.get(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        text = ""
        if job is not None:
            text = f"{job.name} ({job.job_id}): {job.state}"
            if job.reason:
                text += f" — {job.reason}"
            text += (
                "  ·  its log streams into the Job tab (4)"
                if job.job_id == self.following
                else "  ·  Enter: stream its log into the Job tab (4)"
            )
        self.query_one("#jobs-detail", Static).update(text)

    def _cells(self, job: BatchJob) -> list[Text]:
        style = STATE_STYLES.get(job.state, "dim")
        mark = f"{FOLLOWING} " if job.job_id == self.following else "  "
        return [
            Text(mark + job.name.removeprefix(self._prefix)),
            Text(job.state, style=style),
            Text(self._time(job), justify="right"),
            Text(job.instance_type),
            Text(str(job.batch_size), justify="right"),
            Text(str(job.attempt) if job.attempt else "-", justify="right"),
            Text(job.reason, style="red" if job.state == "FAILED" else "yellow") if job.reason else Text(""),
        ]

    @staticmethod
    def _time(job: BatchJob) -> str:
        return elapsed_text(max(0.0, time.time() - job.since)) if job.since else "-"

    def tick(self) -> None:
        """Once a second: the time-in-state column moves on its own (until the sweep has ended)."""
        if self.total and self.done == self.total:
            return
        table = self.query_one(DataTable)
        for jid, job in self.jobs.items():
            table.update_cell(jid, "time", Text(self._time(job), justify="right"))

    def rows_text(self) -> list[str]:
        """What each row says, for tests and screen readers."""
        table = self.query_one(DataTable)
        return [" ".join(str(c) for c in table.get_row_at(i)).strip() for i in range(table.row_count)]

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        job = self.jobs.get(event.row_key.value)
        if job is not None:
            self.post_message(self.Follow(self.step, job.job_id, job.name))
