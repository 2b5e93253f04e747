"""Live panes: streamed job output, and the host monitor (which keeps its own SSH stream)."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Awaitable, Callable

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Sparkline, Static
from textual.worker import Worker

from ..remote import monitor
from ..remote.host import HostUnavailable
from ..remote.paths import PAYLOAD_DIR
from .widgets import ANSI_RE, BatchedLog

#: opens an SSH connection to the instance (host key checked) or raises HostUnavailable saying why
Connect = Callable[[], Awaitable[Any]]
CONNECT_LIMIT_S = 25
CONNECTING = f"Connecting to the instance… (gives up after {CONNECT_LIMIT_S} s)"


async def reach(connect: Connect):
    """A connection from ``connect``, or HostUnavailable with a sentence for the pane."""
    try:
        return await asyncio.wait_for(connect(), CONNECT_LIMIT_S)
    except HostUnavailable:
        raise
    except asyncio.TimeoutError:
        raise HostUnavailable(f"The instance did not answer within {CONNECT_LIMIT_S} s: is it still running?") from None
    except Exception as e:  # e.g. the sandbox would not start
        raise HostUnavailable(f"Could not connect: {e}") from None


class LivePane:
    """A pane that keeps one SSH stream of its own; ``start`` is idempotent, ``restart`` is not."""

    _worker: Worker | None = None
    #: starts the pane's own worker streaming from a connection (each pane says what it shows)
    _stream: Callable[[Connect], Worker]

    @property
    def live(self) -> bool:
        """A stream is being opened or runs."""
        return self._worker is not None and not self._worker.is_finished

    @property
    def started(self) -> bool:
        return self._worker is not None

    def start(self, connect: Connect) -> None:
        if not self.live:
            self.restart(connect)

    def restart(self, connect: Connect) -> None:
        self._worker = self._stream(connect)

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()


class JobOutput(Vertical):
    """A remote job's output as it streams in.

    - bytes may arrive cut anywhere; a line is shown once its newline arrives;
    - progress-bar redraws (``\\r``) collapse to one updating line under the log;
    - ANSI escapes are stripped; writes are batched (see :class:`LogPane`);
    - memory is bounded (``max_lines``); ``/`` searches, ``n`` finds the next match,
      ``f`` toggles follow mode (scrolling up also stops following).
    """

    BINDINGS = [
        Binding("slash", "search", "Search"),
        Binding("n", "next_match", "Next match", show=False),
        Binding("f", "toggle_follow", "Follow"),
    ]

    DEFAULT_CSS = """
    JobOutput { height: 1fr; }
    JobOutput BatchedLog { height: 1fr; }
    JobOutput #live { height: 1; color: $warning; }
    """

    def __init__(self, *, max_lines: int = 20_000, id: str | None = None):
        super().__init__(id=id)
        self.max_lines = max_lines
        self._partial = ""
        self._query = ""
        self._match_from = 0

    def compose(self) -> ComposeResult:
        # Hidden and disabled (so it never takes focus) until "/" opens it.
        yield Input(placeholder="search the output (Enter: find, n: next)", id="search", disabled=True)
        yield BatchedLog(max_lines=self.max_lines)
        yield Static("", id="live", markup=False)

    def on_mount(self) -> None:
        self.query_one("#search", Input).display = False

    @property
    def log(self) -> BatchedLog:
        return self.query_one(BatchedLog)

    @property
    def follow(self) -> bool:
        return self.log.auto_scroll

    def feed(self, text: str) -> None:
        """Add streamed text, cut anywhere."""
        data = self._partial + text
        cut = data.rfind("\n")
        if cut >= 0:
            self.log.push(data[:cut])
            data = data[cut + 1 :]
        self._partial = data
        if "\r" in data or "\x1b" in data:
            shown = ANSI_RE.sub("", data).split("\r")
            shown = [s for s in shown if s]
            self.query_one("#live", Static).update(shown[-1] if shown else "")
        elif data:
            self.query_one("#live", Static).update(data)
        else:
            self.query_one("#live", Static).update("")

    def finish(self) -> None:
        """The stream ended: the last partial line becomes a line."""
        if self._partial:
            self.log.push(self._partial)
            self._partial = ""
        self.query_one("#live", Static).update("")
        self.log.flush()

    # -- follow, search --------------------------------------------------------------
    def action_toggle_follow(self) -> None:
        self.log.auto_scroll = not self.log.auto_scroll
        if self.log.auto_scroll:
            self.log.scroll_end(animate=False)
        self.notify("Following the output" if self.follow else "Not following (f to follow again)", timeout=2)

    def on_mouse_scroll_up(self) -> None:
        self.log.auto_scroll = False

    def action_search(self) -> None:
        box = self.query_one("#search", Input)
        box.display = True
        box.disabled = False
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._query = event.value
        self._match_from = 0
        event.input.display = False
        event.input.disabled = True
        self.log.focus()
        self.action_next_match()

    def action_next_match(self) -> None:
        if not self._query:
            return
        lines = self.log.lines
        for i in range(self._match_from, len(lines)):
            if self._query in lines[i]:
                self.log.auto_scroll = False
                self.log.scroll_to(y=max(0, i - 2), animate=False)
                self._match_from = i + 1
                self.notify(f"line {i + 1}: {lines[i][:60]}", timeout=3)
                return
        self._match_from = 0
        self.notify(f"'{self._query}' not found below; n starts again from the top", severity="warning", timeout=3)


def gauge(pct: float, width: int = 20) -> str:
    pct = max(0.0, min(100.0, pct))
    full = int(round(pct / 100 * width))
    return "█" * full + "░" * (width - full) + f" {pct:5.1f}%"


def _gib(n: int | None) -> str:
    return f"{n / 2**30:.1f} GiB" if n else "?"


NO_AGENT = 3  # the agent command's exit status when the agent is not on the host
AGENT = f"{PAYLOAD_DIR}/monitor.py"
AGENT_COMMAND = f"if [ -f {AGENT} ]; then exec python3 {AGENT} --interval 1; else exit {NO_AGENT}; fi"


class MonitorPane(LivePane, Vertical):
    """Per-core gauges and sparklines from the monitor agent, naming where they come from.

    It streams the agent's samples over its own SSH connection; the status line says what
    it is doing, or why there is nothing to show (no instance, terminated, unreachable).
    """

    DEFAULT_CSS = """
    MonitorPane { height: 1fr; padding: 0 1; }
    MonitorPane #monitor-status { height: auto; color: $text-muted; }
    MonitorPane #monitor-status.-problem { color: $warning; }
    MonitorPane #monitor-source { text-style: bold; color: $accent; }
    MonitorPane .core-row { height: 1; }
    MonitorPane .core-name { width: 8; }
    MonitorPane .core-gauge { width: 30; }
    MonitorPane Sparkline { width: 1fr; height: 1; }
    """

    HISTORY = 60

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.history: dict[str, deque] = {}
        self._rows: dict[str, tuple[Label, Static, Sparkline]] = {}

    def compose(self) -> ComposeResult:
        yield Static("Press 2 to watch the instance.", id="monitor-status", markup=False)
        yield Label("", id="monitor-source")
        yield Vertical(id="monitor-rows")
        yield Static("", id="monitor-memory", markup=False)

    @property
    def status(self) -> str:
        return str(self.query_one("#monitor-status", Static).render())

    def say(self, text: str, *, problem: bool = False) -> None:
        line = self.query_one("#monitor-status", Static)
        line.update(text)
        line.set_class(problem, "-problem")

    @work(exclusive=True, group="monitor", exit_on_error=False)
    async def _stream(self, connect: Connect) -> None:
        self.say(CONNECTING)
        try:
            conn = await reach(connect)
        except HostUnavailable as e:
            self._clear_rows()
            self.say(str(e), problem=True)
            return
        try:
            async with conn:
                proc = await conn.create_process(AGENT_COMMAND)
                self.say("Live from the instance: one sample a second")
                async for line in proc.stdout:
                    sample = monitor.parse(line)
                    if sample:
                        self.show(sample)
                await proc.wait()
                code = proc.exit_status
        except Exception as e:  # the connection dropped
            self.say(f"The connection dropped ({e.__class__.__name__}: {e}): press 2 to reconnect", problem=True)
            return
        if code == NO_AGENT:
            self.say(
                "The monitor agent is not on the instance yet: run the monitor step (it installs it)", problem=True
            )
        else:
            self.say(f"The monitor agent stopped (exit {code}): press 2 to start it again", problem=True)

    def _clear_rows(self) -> None:
        self.query_one("#monitor-rows", Vertical).remove_children()
        self._rows.clear()
        self.history.clear()
        self.query_one("#monitor-source", Label).update("")
        self.query_one("#monitor-memory", Static).update("")

    def show(self, sample) -> None:
        """Draw one :class:`inflab.remote.monitor.Sample`."""
        self.query_one("#monitor-source", Label).update(sample.source)
        rows = self.query_one("#monitor-rows", Vertical)
        for name, pct in sample.cores:
            hist = self.history.setdefault(name, deque(maxlen=self.HISTORY))
            hist.append(pct)
            if name not in self._rows:
                widgets = (
                    Label(name, classes="core-name"),
                    Static(gauge(pct), classes="core-gauge", markup=False),
                    Sparkline(list(hist), summary_function=max),
                )
                self._rows[name] = widgets
                rows.mount(Horizontal(*widgets, classes="core-row"))
            else:
                _, bar, spark = self._rows[name]
                bar.update(gauge(pct))
                spark.data = list(hist)
        mem = f"memory {_gib(sample.memory_used)} of {_gib(sample.memory_total)}" if sample.memory_total else ""
        self.query_one("#monitor-memory", Static).update("   ".join(x for x in [mem, *sample.notes] if x))

    def rows_text(self) -> list[str]:
        """What the rows say, for tests and screen readers."""
        return [f"{name} {bar.render()}" for name, (_, bar, _) in self._rows.items()]
