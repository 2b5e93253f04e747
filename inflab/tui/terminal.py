"""A terminal in a widget: a program on the instance in a PTY over SSH, rendered with pyte, keys sent back."""

from __future__ import annotations

import textwrap
from typing import Callable

import pyte
from rich.style import Style
from rich.text import Text
from textual import events, work
from textual.message import Message
from textual.widget import Widget

from ..remote.host import HostUnavailable
from .panes import CONNECTING, Connect, LivePane, reach

#: what runs in the pane: the best live view the instance has
TOP_COMMAND = "if command -v neuron-top >/dev/null; then exec neuron-top; elif command -v htop >/dev/null; then exec htop; else exec top; fi"

KEYS = {
    "enter": b"\r",
    "tab": b"\t",
    "backspace": b"\x7f",
    "escape": b"\x1b",
    "delete": b"\x1b[3~",
    "up": b"\x1b[A",
    "down": b"\x1b[B",
    "right": b"\x1b[C",
    "left": b"\x1b[D",
    "home": b"\x1b[H",
    "end": b"\x1b[F",
    "pageup": b"\x1b[5~",
    "pagedown": b"\x1b[6~",
    "f1": b"\x1bOP",
    "f2": b"\x1bOQ",
    "f3": b"\x1bOR",
    "f4": b"\x1bOS",
    "f5": b"\x1b[15~",
    "f6": b"\x1b[17~",
    "f7": b"\x1b[18~",
    "f8": b"\x1b[19~",
    "f9": b"\x1b[20~",
    "f10": b"\x1b[21~",
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


class TerminalPane(LivePane, Widget, can_focus=True):
    """Runs ``command`` on the instance over its own SSH connection and shows what it draws.

    Typing goes to the program while the pane has focus; Ctrl+O leaves the pane (it posts
    :class:`TerminalPane.Leave`); Ctrl+P still opens the palette. While there is no program,
    the pane says why (connecting, no instance, terminated, the program ended).
    """

    class Leave(Message):
        """The user pressed Ctrl+O to take the keyboard back."""

    DEFAULT_CSS = """
    TerminalPane { height: 1fr; background: $surface; }
    TerminalPane:focus { border: tall $accent; }
    """

    def __init__(self, *, command: str = TOP_COMMAND, cols: int = 100, rows: int = 30, id: str | None = None):
        super().__init__(id=id)
        self.command = command
        self.screen_model = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen_model)
        self.send: Callable[[bytes], None] = lambda b: None
        self.on_resize_pty: Callable[[int, int], None] = lambda c, r: None
        self.attached = False  # a remote program is running in the pane
        self.status = "Press 3 to run neuron-top (or htop, or top) on the instance."

    def on_mount(self) -> None:
        self.say(self.status)

    def feed(self, data: bytes) -> None:
        self.stream.feed(data)
        self.refresh()

    def say(self, text: str) -> None:
        """Clear the screen and write ``text`` on it, wrapped to the pane's width."""
        self.status = text
        self.screen_model.reset()
        lines = textwrap.wrap(text, max(10, self.screen_model.columns - 1)) or [""]
        self.feed("\r\n".join(lines).encode())

    @work(exclusive=True, group="terminal", exit_on_error=False)
    async def _stream(self, connect: Connect) -> None:
        self.say(CONNECTING)
        try:
            conn = await reach(connect)
        except HostUnavailable as e:
            self.say(str(e))
            return
        ended = "the program ended"
        try:
            async with conn:
                cols, rows = self.screen_model.columns, self.screen_model.lines
                proc = await conn.create_process(
                    self.command, term_type="xterm-256color", term_size=(cols, rows), encoding=None
                )
                self.screen_model.reset()
                self.send = proc.stdin.write
                self.on_resize_pty = lambda c, r: proc.change_terminal_size(c, r)
                if (self.screen_model.columns, self.screen_model.lines) != (cols, rows):
                    # the pane changed size while the PTY opened: tell the program, or it draws
                    # for the old size (top's header scrolls off a shorter pane)
                    proc.change_terminal_size(self.screen_model.columns, self.screen_model.lines)
                self.attached = True
                self.status = ""
                while True:
                    data = await proc.stdout.read(65536)
                    if not data:
                        break
                    self.feed(data)
        except Exception as e:  # the connection dropped
            ended = f"the connection dropped ({e.__class__.__name__})"
        finally:
            self.attached = False
            self.send = lambda b: None
            self.on_resize_pty = lambda c, r: None
        self.status = f"[{ended}: press 3 to start it again]"
        self.feed(f"\r\n{self.status}\r\n".encode())

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
                    bold=ch.bold,
                    reverse=ch.reverse or (self.has_focus and x == scr.cursor.x and y == scr.cursor.y),
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
            if not self.attached and self.status:
                self.say(self.status)  # wrapped again to the new width
            self.refresh()

    def on_resize(self, event: events.Resize) -> None:
        self._sync_size()

    def on_focus(self) -> None:
        self.call_after_refresh(self._sync_size)

    def on_blur(self) -> None:
        self.call_after_refresh(self._sync_size)

    def on_key(self, event: events.Key) -> None:
        if event.key == "ctrl+o":
            event.stop()
            self.post_message(self.Leave())
            return
        if not self.attached:  # nothing to type into: keys work as everywhere else...
            if event.key == "q":  # ...except that q here is surely meant for a program, not "quit"
                event.stop()
                self.notify("No program is running here: press 3 to start one, Ctrl+O to leave", severity="warning")
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
