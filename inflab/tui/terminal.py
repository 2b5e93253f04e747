"""A terminal in a widget: PTY bytes from SSH rendered with pyte, keys sent back."""

from __future__ import annotations

from typing import Callable

import pyte
from rich.style import Style
from rich.text import Text
from textual import events
from textual.widget import Widget

KEYS = {
    "enter": b"\r", "tab": b"\t", "backspace": b"\x7f", "escape": b"\x1b", "delete": b"\x1b[3~",
    "up": b"\x1b[A", "down": b"\x1b[B", "right": b"\x1b[C", "left": b"\x1b[D",
    "home": b"\x1b[H", "end": b"\x1b[F", "pageup": b"\x1b[5~", "pagedown": b"\x1b[6~",
    "f1": b"\x1bOP", "f2": b"\x1bOQ", "f3": b"\x1bOR", "f4": b"\x1bOS", "f5": b"\x1b[15~", "f6": b"\x1b[17~",
    "f7": b"\x1b[18~", "f8": b"\x1b[19~", "f9": b"\x1b[20~", "f10": b"\x1b[21~",
}
# Keys the app keeps for itself while the terminal has focus.
RESERVED = {"ctrl+p", "ctrl+q", "ctrl+o"}


def key_bytes(event: events.Key) -> bytes | None:
    if event.key in RESERVED:
        return None
    if event.key in KEYS:
        return KEYS[event.key]
    if event.key.startswith("ctrl+") and len(event.key) == 6 and event.key[5].isalpha():
        return bytes([ord(event.key[5].lower()) - 96])
    if event.character:
        return event.character.encode()
    return None


class TerminalPane(Widget, can_focus=True):
    """Shows what a remote program draws; typing goes to it while the pane has focus.

    ``send`` gets the bytes to write; ``on_resize_pty(cols, rows)`` is told the new size.
    Ctrl+O leaves the pane (focus moves on); Ctrl+P still opens the palette.
    """

    DEFAULT_CSS = """
    TerminalPane { height: 1fr; background: $surface; }
    TerminalPane:focus { border: tall $accent; }
    """

    def __init__(self, *, cols: int = 100, rows: int = 30, id: str | None = None):
        super().__init__(id=id)
        self.screen_model = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen_model)
        self.send: Callable[[bytes], None] = lambda b: None
        self.on_resize_pty: Callable[[int, int], None] = lambda c, r: None
        self.attached = False  # a remote program is running in the pane

    def feed(self, data: bytes) -> None:
        self.stream.feed(data)
        self.refresh()

    @property
    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen_model.display)

    def render(self) -> Text:
        scr = self.screen_model
        out = Text(no_wrap=True, overflow="crop")
        for y in range(scr.lines):
            row = scr.buffer[y]
            for x in range(scr.columns):
                ch = row[x]
                style = Style(
                    color=None if ch.fg == "default" else _color(ch.fg),
                    bgcolor=None if ch.bg == "default" else _color(ch.bg),
                    bold=ch.bold, reverse=ch.reverse or (self.has_focus and x == scr.cursor.x and y == scr.cursor.y),
                    underline=ch.underscore,
                )
                out.append(ch.data or " ", style)
            if y < scr.lines - 1:
                out.append("\n")
        return out

    def _sync_size(self) -> None:
        size = self.content_size  # inside the border, which comes and goes with focus
        cols, rows = max(20, size.width), max(5, size.height)
        if (cols, rows) != (self.screen_model.columns, self.screen_model.lines):
            self.screen_model.resize(rows, cols)
            try:
                self.on_resize_pty(cols, rows)
            except Exception:  # the connection is gone; the worker will say so
                self.attached = False
            self.refresh()

    def on_resize(self, event: events.Resize) -> None:
        self._sync_size()

    def on_focus(self) -> None:
        self.call_after_refresh(self._sync_size)

    def on_blur(self) -> None:
        self.call_after_refresh(self._sync_size)

    def on_key(self, event: events.Key) -> None:
        if not self.attached:  # nothing to type into: keys work as everywhere else...
            if event.key == "q":  # ...except that q here is surely meant for a program, not "quit"
                event.stop()
                self.notify("No program is running here: press 3 to start one, Ctrl+O to leave", severity="warning")
            return
        if event.key == "ctrl+o":
            event.stop()
            self.screen.focus_next()
            return
        data = key_bytes(event)
        if data is not None:
            event.stop()
            event.prevent_default()
            try:
                self.send(data)
            except Exception:  # the connection is gone; the worker will say so
                self.attached = False


_NAMED = {"black", "red", "green", "brown", "blue", "magenta", "cyan", "white"}


def _color(name: str) -> str | None:
    if name in _NAMED:
        return "yellow" if name == "brown" else name
    if len(name) == 6:
        try:
            int(name, 16)
            return f"#{name}"
        except ValueError:
            return None
    return None
