"""Widgets shared by the lab's screens."""

from __future__ import annotations

import re

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Log

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")


def clean_lines(text: str) -> list[str]:
    """Split streamed text into display lines: strip ANSI, keep the last redraw of each ``\\r`` line."""
    out = []
    for line in ANSI_RE.sub("", text).split("\n"):
        if "\r" in line:
            parts = [p for p in line.split("\r") if p]
            line = parts[-1] if parts else ""
        out.append(line)
    return out


class LogPane(Log):
    """A log that stays fast on long output: lines are buffered and written in batches.

    ``Log.write_line`` per line is hundreds of times slower than ``write_lines`` on a
    batch, so writers call :meth:`push` (cheap, any number of times) and a timer
    flushes the buffer every 50 ms.
    """

    FLUSH_INTERVAL = 0.05

    def __init__(self, *args, max_lines: int = 10_000, **kwargs):
        super().__init__(*args, max_lines=max_lines, **kwargs)
        self._pending: list[str] = []
        self.history: list[str] = []  # what was written, for tests and search

    def on_mount(self) -> None:
        self.set_interval(self.FLUSH_INTERVAL, self.flush)

    def push(self, text: str) -> None:
        self._pending.extend(clean_lines(text))

    def flush(self) -> None:
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        self.history.extend(lines)
        if len(self.history) > self.max_lines:
            del self.history[: len(self.history) - self.max_lines]
        self.write_lines(lines)


class ConfirmModal(ModalScreen[bool]):
    """Ask before anything destructive. Dismisses with True only on an explicit yes."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    DEFAULT_CSS = """
    ConfirmModal { align: center middle; }
    ConfirmModal > Grid {
        grid-size: 2; grid-gutter: 1 2; grid-rows: auto 3;
        padding: 1 2; width: 64; height: auto; border: thick $error; background: $surface;
    }
    ConfirmModal #question { column-span: 2; width: 100%; }
    ConfirmModal Button { width: 100%; }
    """

    def __init__(self, question: str, yes_label: str = "Yes, do it"):
        super().__init__()
        self.question = question
        self.yes_label = yes_label

    def compose(self) -> ComposeResult:
        with Grid():
            yield Label(self.question, id="question", markup=False)
            yield Button(self.yes_label, variant="error", id="yes")
            yield Button("No, keep it", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)
