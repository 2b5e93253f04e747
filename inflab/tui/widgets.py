"""Widgets shared by the lab's screens."""

from __future__ import annotations

import re
from typing import Callable

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Label, Log, RichLog
from textual.widgets._footer import FooterKey

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
FLUSH_INTERVAL = 0.05


def clean_lines(text: str) -> list[str]:
    """Split streamed text into display lines: strip ANSI, keep the last redraw of each ``\\r`` line."""
    out = []
    for line in ANSI_RE.sub("", text).split("\n"):
        if "\r" in line:
            parts = [p for p in line.split("\r") if p]
            line = parts[-1] if parts else ""
        out.append(line)
    return out


class _Batched:
    """Writers call :meth:`push` (cheap, any number of times); a timer writes the buffer every 50 ms.

    Writing line by line is hundreds of times slower than writing a batch.
    """

    max_lines: int | None
    #: writes one batch of lines into the widget (each concrete log says how)
    _write_batch: Callable[[list[str]], None]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pending: list[str] = []
        self.history: list[str] = []  # what was written, for tests and search

    def on_mount(self) -> None:
        self.set_interval(FLUSH_INTERVAL, self.flush)

    def push(self, text: str) -> None:
        self._pending.extend(clean_lines(text))

    def flush(self) -> None:
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        self.history.extend(lines)
        if self.max_lines and len(self.history) > self.max_lines:
            del self.history[: len(self.history) - self.max_lines]
        self._write_batch(lines)


class BatchedLog(_Batched, Log):
    """A fast log for long streamed output (a job's); lines do not wrap."""

    def __init__(self, *args, max_lines: int = 10_000, **kwargs):
        super().__init__(*args, max_lines=max_lines, **kwargs)

    def _write_batch(self, lines: list[str]) -> None:
        self.write_lines(lines)


class LogPane(_Batched, RichLog):
    """The step log: long lines wrap at the pane's width (and wrap again when the pane is resized).

    Lines are laid out only at a width the pane really has: while it is hidden (another tab is
    in front) its width is 0, and RichLog would wrap what arrives one character per line. They
    are kept in :attr:`history` meanwhile and laid out when the pane has a width again.
    """

    def __init__(self, *args, max_lines: int = 10_000, **kwargs):
        super().__init__(*args, max_lines=max_lines, wrap=True, markup=False, min_width=1, **kwargs)
        self._wrapped_at = 0  # the width the shown lines were laid out at; 0: they wait for one

    def _write_batch(self, lines: list[str]) -> None:
        if not self.scrollable_content_region.width:  # hidden: kept in history, laid out when shown
            self._wrapped_at = 0
            return
        self.write(Text("\n".join(lines)))

    def on_resize(self, event: events.Resize) -> None:  # RichLog's own handler runs too (Textual calls each class's)
        if event.size.width and event.size.width != self._wrapped_at:
            self._wrapped_at = event.size.width
            self.call_after_refresh(self._rewrap)

    def _rewrap(self) -> None:
        if not self.scrollable_content_region.width:
            self._wrapped_at = 0  # hidden again before this ran: the next resize comes back here
            return
        self.clear()
        if self.history:
            self.write(Text("\n".join(self.history)))


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
            yield Button(f"{self.yes_label} (y)", variant="error", id="yes")
            yield Button("No, keep it (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class ChoiceModal(ModalScreen[str | None]):
    """A question with a few named answers (buttons, each with its key); dismisses with the chosen
    id, or None (Esc)."""

    BINDINGS = [Binding("escape", "choose(None)", "Cancel")]

    DEFAULT_CSS = """
    ChoiceModal { align: center middle; }
    ChoiceModal > Grid {
        grid-size: 1; grid-gutter: 1; grid-rows: auto 3;
        padding: 1 2; width: 80; height: auto; border: thick $warning; background: $surface;
    }
    ChoiceModal #choices { height: 3; }
    ChoiceModal #choices Button { width: 1fr; margin-right: 1; }
    """

    def __init__(self, question: str, choices: list[tuple[str, str, str, str]]):
        """``choices``: (id, button label, variant, key), the first one focused."""
        super().__init__()
        self.question = question
        self.choices = choices
        self.keys = {key: cid for cid, _, _, key in choices}

    def compose(self) -> ComposeResult:
        with Grid():
            yield Label(self.question, id="question", markup=False)
            with Horizontal(id="choices"):
                for cid, label, variant, key in self.choices:
                    yield Button(f"{label} ({key})", id=cid, variant=variant)

    def on_mount(self) -> None:
        self.query_one(f"#{self.choices[0][0]}", Button).focus()

    def on_key(self, event: events.Key) -> None:
        if event.character in self.keys:
            event.stop()
            self.dismiss(self.keys[event.character])

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id)

    def action_choose(self, value: str | None) -> None:
        self.dismiss(value)


def toggle_help(app) -> None:
    """F1 shows the keys; F1 again hides them (both of the lab's apps)."""
    from textual.widgets import HelpPanel

    if app.screen.query(HelpPanel):
        app.action_hide_help_panel()
    else:
        app.action_show_help_panel()


class KeyBar(Footer):
    """The key bar, fitted to the screen's width so that no key is cut off.

    Where the whole bar fits it is Textual's footer; narrower, it is compact (less space between
    keys); narrower still it also leaves out the screen's secondary keys (``KEYBAR_SECONDARY``,
    action names) and the command palette's. Those keys still work, and F1 lists every key.
    """

    DEFAULT_CSS = """
    KeyBar.-compact FooterLabel { margin: 0 1 0 0; }  /* a group's description, apart from the next key */
    """

    FULL, COMPACT, ESSENTIAL = 0, 1, 2

    def __init__(self) -> None:
        super().__init__()
        self.stage = self.FULL

    def _secondary(self) -> frozenset[str]:
        return frozenset(getattr(self.screen, "KEYBAR_SECONDARY", ()))

    def _width(self, compact: bool) -> int:
        """How wide the whole bar would be (the footer's own layout, counted from its bindings)."""
        seen: dict[str, Binding] = {}
        for _, binding, _, _ in self.screen.active_bindings.values():
            if binding.show:
                seen.setdefault(binding.action, binding)
        width, group = 0, None
        for binding in seen.values():
            key = len(self.app.get_key_display(binding))
            if binding.group is not None:
                if binding.group is not group:  # the group's description once, after its keys
                    width += len(binding.group.description) + 3
                width += key + (0 if binding.group.compact else 2)
            else:
                width += key + len(binding.description) + (2 if compact else 3)
            group = binding.group
        return width + (14 if self.app.ENABLE_COMMAND_PALETTE else 0)  # the palette's key, docked right

    def _fit(self, width: int) -> int:
        if not width or self._width(False) <= width:
            return self.FULL
        if self._width(True) <= width:
            return self.COMPACT
        return self.ESSENTIAL

    def compose(self):
        self.stage = self._fit(self.size.width or self.app.size.width)
        self.compact = self.stage != self.FULL
        leave_out = self._secondary() if self.stage == self.ESSENTIAL else frozenset()
        for widget in super().compose():
            if (
                self.stage == self.ESSENTIAL
                and isinstance(widget, FooterKey)
                and (widget.action in leave_out or widget.has_class("-command-palette"))
            ):
                continue
            yield widget

    def on_resize(self, event: events.Resize) -> None:
        if self._bindings_ready and self._fit(event.size.width) != self.stage:
            self.call_after_refresh(self.recompose)
