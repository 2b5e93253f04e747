"""The instructor dashboard's other screens: one participant, preflight, cleanup and its typed confirmation.

Everything they show comes from :mod:`inflab.instructor.records`; every call on the room source
blocks (it asks AWS), so each runs in a thread worker and hands its answer back to the UI thread.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Checkbox, DataTable, Footer, Header, Input, Label, Static
from textual.worker import get_current_worker

from ..events import elapsed_text
from ..instructor.records import (
    CANCELLED,
    FAILED,
    FINISHED,
    NO_SESSION,
    NOT_STARTED,
    RUNNING,
    UNREACHABLE,
    UNREADABLE,
    WAITING,
    AccountPreflight,
    CleanupResult,
    RoomSource,
    Row,
)
from ..untrusted import shown, shown_text
from .widgets import LogPane

DASH = "—"
EVERYONE = "everyone"
STATE_STYLES = {
    RUNNING: "yellow",
    WAITING: "",
    FAILED: "bold red",
    CANCELLED: "magenta",
    FINISHED: "green",
    NOT_STARTED: "dim",
    NO_SESSION: "dim",
    UNREACHABLE: "dim red",
    UNREADABLE: "bold red",
}
CHECK_MARKS = {True: ("✓", "green"), False: ("✗", "bold red"), None: ("?", "yellow")}
MARK_STYLES = {
    "done": "green",
    "failed": "bold red",
    "running": "yellow",
    "cancelled": "magenta",
    "stale": "dim",
    "undone": "dim",
    "skipped": "dim",
}


# -- formatting (plain functions: the screens and the tests share them) ------------------------------
def one_line(e: BaseException) -> str:
    """An exception as one line a person can read."""
    text = str(e).strip().splitlines()
    return f"{e.__class__.__name__}: {text[0]}" if text else e.__class__.__name__


def clock(ts: float | None) -> str:
    """Epoch seconds as local HH:MM:SS."""
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else DASH


def ago_text(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s} s ago"
    if s < 3600:
        return f"{s // 60} m ago"
    if s < 86400:
        return f"{s // 3600} h ago"
    return f"{s // 86400} d ago"


def where_text(account: str, region: str, reach: str) -> str:
    """An account as the instructor knows it: its number when it answered, else how it is reached."""
    return f"{account or reach or '?'} · {region}"


def thread_safe(app, fn: Callable[..., Any]) -> Callable[..., None]:
    """``fn`` wrapped to run on the UI thread, whichever thread calls it; quiet once the app has gone."""
    ui_thread = threading.get_ident()

    def call(*args: Any) -> None:
        if threading.get_ident() == ui_thread:
            fn(*args)
            return
        try:
            app.call_from_thread(fn, *args)
        except RuntimeError:  # the app has exited while the call was on its way
            pass

    return call


def deliver(app, fn: Callable[..., Any], *args: Any) -> None:
    """From a thread worker: run ``fn(*args)`` on the UI thread unless the worker was cancelled
    (its screen has gone) or the app has exited."""
    if get_current_worker().is_cancelled:
        return
    try:
        app.call_from_thread(fn, *args)
    except RuntimeError:
        pass


def resource_text(r: dict[str, str]) -> str:
    """A resource found by tag, in a few words (its name comes from the participant's account: shown safely)."""
    name = r.get("name") or r.get("id", "?")
    return shown(f"{r.get('type', '?')} {name}" + (f" [{r['state']}]" if r.get("state") else ""), 200)


# -- one participant ---------------------------------------------------------------------------------
class ParticipantScreen(Screen):
    """Everything the last refresh knows about one participant, and what AWS has tagged for them."""

    BINDINGS = [Binding("escape", "close", "Back"), Binding("f5", "look_again", "Look again")]

    def __init__(self, source: RoomSource, row: Row):
        super().__init__()
        self.source = source
        self.row = row
        self.resources: list[dict[str, str]] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="participant"):
            yield Static(self._header_text(), id="participant-header")
            yield Static(self._error_text(), id="participant-error")
            yield Static(self._warnings_text(), id="participant-warnings")
            yield Label("Step history", classes="section")
            yield DataTable(id="history", cursor_type="row", zebra_stripes=True)
            yield Label("Resources found by tag", classes="section")
            yield Static("looking…", id="resources-status", markup=False)
            yield DataTable(id="resources", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = shown(f"{self.source.workshop} · {self.row.label}", 120)
        self.query_one("#participant-warnings").display = bool(self.row.warnings)
        history = self.query_one("#history", DataTable)
        history.add_column("Step", key="step")
        history.add_column("State", key="state")
        history.add_column("Started", key="started")
        history.add_column("Took", key="took")
        history.add_column("Error", key="error", width=max(30, self.app.size.width - 60))
        now = time.time()
        for n, mark in enumerate(self.row.history):
            if mark.started and mark.finished:
                took = elapsed_text(max(0.0, mark.finished - mark.started))
            elif mark.started and mark.state == "running":
                took = f"{elapsed_text(max(0.0, now - mark.started))} so far"
            else:
                took = DASH
            history.add_row(
                shown_text(mark.step, limit=60),
                shown_text(mark.state, MARK_STYLES.get(mark.state, ""), limit=30),
                clock(mark.started),
                Text(took, justify="right"),
                shown_text(mark.error, "red", limit=1000),
                key=f"{n}:{mark.step}",
                height=None if mark.error else 1,
            )
        if not self.row.history:
            history.display = False
        table = self.query_one("#resources", DataTable)
        for key, heading in (("type", "Type"), ("name", "Name"), ("id", "ID"), ("state", "State")):
            table.add_column(heading, key=key)
        table.display = False
        history.focus()
        self.action_look_again()

    def _header_text(self) -> Text:
        r = self.row
        text = Text()
        text.append(shown(r.label), style="bold")
        text.append(shown(f"   account {r.account or DASH} · {r.region} · {r.reach}") + "\n")
        text.append(
            shown(f"session {r.session or DASH} · track {r.track or DASH} · inflab {r.version or DASH}", 300) + "\n"
        )
        state = f"{r.state} at {r.exercise} · {r.step}" if r.exercise else shown(f"{r.state} {r.step}".strip(), 80)
        on = r.on_step_s()
        text.append("now: ")
        text.append(state, style=STATE_STYLES.get(r.state, ""))
        if on is not None:
            text.append(f" for {elapsed_text(on)}")
        if r.stuck():
            text.append("  STUCK", style="bold on dark_goldenrod")
        if r.updated:
            text.append(f" · beacon {clock(r.updated)} ({ago_text(time.time() - r.updated)})")
        return text

    def _error_text(self) -> Text:
        r = self.row
        if r.state in (UNREACHABLE, UNREADABLE) or r.reason:
            return shown_text(
                f"Could not read this participant: {r.reason or 'no reason given'}", "bold red", limit=1000
            )
        if r.error:
            return shown_text(f"Last error: {r.error}", "red", limit=1100)
        return Text("Last error: none", style="dim")

    def _warnings_text(self) -> Text:
        text = Text()
        for n, line in enumerate(self.row.warnings):
            text.append(("\n" if n else "") + "⚠ " + shown(line, 400), style="yellow")
        return text

    def action_look_again(self) -> None:
        self.query_one("#resources-status", Static).update("looking…")
        self._look()

    @work(thread=True, exclusive=True, group="participant-resources", exit_on_error=False)
    def _look(self) -> None:
        try:
            found = self.source.resources(self.row.label)
        except Exception as e:  # one line, never a crash
            deliver(self.app, self._failed, one_line(e))
            return
        deliver(self.app, self._found, list(found))

    def _failed(self, line: str) -> None:
        self.query_one("#resources-status", Static).update(Text(f"Could not look for resources: {line}", style="red"))

    def _found(self, found: list[dict[str, str]]) -> None:
        self.resources = found
        status = self.query_one("#resources-status", Static)
        table = self.query_one("#resources", DataTable)
        table.clear()
        if not found:
            status.update("Nothing is tagged for this participant's session(s).")
            table.display = False
            return
        status.update(f"{len(found)} resource(s) tagged for this participant's session(s) (f5: look again)")
        for n, r in enumerate(found):  # names and ids from the participant's account: never markup, never raw
            table.add_row(*(shown_text(r.get(k, ""), limit=200) for k in ("type", "name", "id", "state")), key=str(n))
        table.display = True

    def action_close(self) -> None:
        self.app.pop_screen()


# -- preflight -----------------------------------------------------------------------------------------
def preflight_lines(results: list[AccountPreflight]) -> list[tuple[str, str]]:
    """(line, style): what will fail, what could not be told, and how many accounts are ready."""
    lines: list[tuple[str, str]] = []
    for a in results:
        who = f"{where_text(a.account, a.region, a.reach)} ({', '.join(a.participants) or 'nobody'})"
        for c in a.failing:
            lines.append((f"✗ {who}: {c.name} — {c.detail} · the lab WILL FAIL there", "bold red"))
        for c in a.unknown:
            lines.append((f"? {who}: {c.name} could not be checked — {c.detail}", "yellow"))
    ready = sum(1 for a in results if not a.failing)  # as the headless summary counts: nothing will fail
    failing = sum(1 for a in results if a.failing)
    unknown = sum(1 for a in results if a.unknown and not a.failing)
    line = f"{ready} of {len(results)} account(s) ready"
    line += (f" · {failing} will fail" if failing else "") + (f" · {unknown} not fully checked" if unknown else "")
    if not results:
        line = "The roster names no accounts to check."
    lines.append((line, "bold green" if results and ready == len(results) else "bold"))
    return lines


class PreflightScreen(Screen):
    """Preflight of every account the roster names: what will fail before anyone starts."""

    BINDINGS = [Binding("escape", "close", "Back"), Binding("f5", "check_again", "Check again")]

    def __init__(self, source: RoomSource, accounts: int | None = None):
        super().__init__()
        self.source = source
        self.accounts = accounts  # how many accounts the last refresh saw (None: not known yet)
        self.started: float | None = None
        self.results: list[AccountPreflight] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="preflight"):
            yield Static("", id="preflight-status", markup=False)
            yield Static("", id="preflight-summary", markup=False)
            yield DataTable(id="preflight-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = shown(f"{self.source.workshop} · preflight", 120)
        self.query_one("#preflight-table").display = False
        self.set_interval(1, self._tick)
        self.action_check_again()

    def action_check_again(self) -> None:
        if self.started is not None:
            return
        self.started = time.monotonic()
        self._tick()
        self._check()

    def _tick(self) -> None:
        if self.started is None:
            return
        n = len(self.source.labels)
        what = (
            f"{self.accounts} account(s) for {n} participant(s)"
            if self.accounts
            else f"the accounts of {n} participant(s)"
        )
        self.query_one("#preflight-status", Static).update(
            f"checking {what}… ({elapsed_text(time.monotonic() - self.started)})"
        )

    @work(thread=True, exclusive=True, group="preflight", exit_on_error=False)
    def _check(self) -> None:
        try:
            results = self.source.preflight()
        except Exception as e:
            deliver(self.app, self._failed, one_line(e))
            return
        deliver(self.app, self._done, list(results))

    def _failed(self, line: str) -> None:
        took = elapsed_text(time.monotonic() - (self.started or time.monotonic()))
        self.started = None
        self.query_one("#preflight-status", Static).update(
            Text(f"Preflight failed after {took}: {line} (f5: check again)", style="bold red")
        )

    def _done(self, results: list[AccountPreflight]) -> None:
        took = elapsed_text(time.monotonic() - (self.started or time.monotonic()))
        self.started = None
        self.results = results
        self.query_one("#preflight-status", Static).update(
            f"checked at {clock(time.time())} in {took} (f5: check again)"
        )
        summary = Text()
        for n, (line, style) in enumerate(preflight_lines(results)):
            summary.append(("\n" if n else "") + shown(line), style=style)
        self.query_one("#preflight-summary", Static).update(summary)
        self._fill(results)

    def _fill(self, results: list[AccountPreflight]) -> None:
        table = self.query_one("#preflight-table", DataTable)
        table.clear(columns=True)
        wheres = [f"{where_text(a.account, a.region, a.reach)}" for a in results]
        names = [c.name for a in results for c in a.checks] or ["check"]
        where_w = min(44, max([len(w) for w in wheres] + [len(a.reach) for a in results] + [22]))
        people_w = 24
        name_w = max(len(n) for n in names)
        detail_w = max(30, self.app.size.width - (where_w + people_w + name_w + 1) - 2 * 5 - 6)
        table.add_column("Account · region", key="where", width=where_w)
        table.add_column("Participants", key="people", width=people_w)
        table.add_column("Check", key="check", width=name_w)
        table.add_column("", key="ok", width=1)
        table.add_column("Detail", key="detail", width=detail_w)
        for a, where in zip(results, wheres, strict=True):
            people = ", ".join(a.participants)
            for n, c in enumerate(a.checks):
                mark = Text(*CHECK_MARKS[c.ok])
                first = n == 0
                account = Text()
                if first:  # the account, then how it is reached
                    account.append(shown(where), style="bold" if a.failing else "")
                    if a.account and a.reach:
                        account.append("\n" + shown(a.reach), style="dim")
                table.add_row(
                    account,
                    shown_text(people if first else "", "dim"),
                    shown_text(c.name),
                    mark,
                    shown_text(c.detail, "red" if c.ok is False else ""),
                    key=f"{where}:{a.reach}:{n}",
                    height=None,
                )
        table.display = bool(results)
        if results:
            table.focus()

    def action_close(self) -> None:
        self.app.pop_screen()


# -- cleanup -------------------------------------------------------------------------------------------
class CleanupConfirm(ModalScreen[bool | None]):
    """Type the participant's label (or ``everyone``) to clean up. Dismisses with ``delete_data``, or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, expected: str):
        super().__init__()
        self.question = question
        self.expected = expected

    def compose(self) -> ComposeResult:
        with Grid(id="confirm-grid"):
            yield Label(self.question, id="confirm-question", markup=False)
            yield Label(Text.assemble("Type ", (self.expected, "bold"), " to confirm:"), id="confirm-prompt")
            yield Input(placeholder=self.expected, id="confirm-input")
            yield Checkbox("Also delete the results buckets (S3)", value=False, id="delete-data")
            with Horizontal(id="confirm-buttons"):
                yield Button("Clean up", variant="error", id="confirm", disabled=True)
                yield Button("Cancel", variant="primary", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#confirm-input", Input).focus()

    @property
    def matches(self) -> bool:
        return self.query_one("#confirm-input", Input).value == self.expected

    @on(Input.Changed, "#confirm-input")
    def _typed(self) -> None:
        self.query_one("#confirm", Button).disabled = not self.matches

    @on(Input.Submitted, "#confirm-input")
    def _submitted(self) -> None:
        if self.matches:
            self._confirm()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "confirm" and self.matches:
            self._confirm()
        elif event.button.id == "cancel":
            self.dismiss(None)

    def _confirm(self) -> None:
        self.dismiss(self.query_one("#delete-data", Checkbox).value)

    def action_cancel(self) -> None:
        self.dismiss(None)


def leftovers_text(result: CleanupResult) -> Text:
    """What the final look by tag found (never "nothing left" without having looked)."""
    if not result.looked:
        return Text(result.outcome(), style="yellow")
    if not result.leftovers:
        return Text(result.outcome(), style="green" if result.sessions else "dim")
    return Text("; ".join(resource_text(r) for r in result.leftovers), style="bold red")


def result_text(result: CleanupResult) -> Text:
    """The Result cell: ok or what failed, and whether a session was still active when cleaned."""
    text = (
        Text("✓ ok", style="green")
        if result.ok
        else shown_text("✗ " + ("; ".join(result.errors) if result.errors else "something is left"), "red", limit=1000)
    )
    for busy in result.active:
        text.append("\n" + shown(f"⚠ looked still active: {busy}", 300), style="bold yellow")
    return text


class CleanupScreen(Screen):
    """Runs the cleanup of some participants, shows its log, then what each one ended with."""

    BINDINGS = [Binding("escape", "close", "Back")]

    def __init__(
        self, source: RoomSource, labels: list[str], delete_data: bool, on_done: Callable[[], None] | None = None
    ):
        super().__init__()
        self.source = source
        self.labels = list(labels)
        self.delete_data = delete_data
        self.on_done = on_done
        self.started: float | None = None
        self.results: list[CleanupResult] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="cleanup"):
            yield Static("", id="cleanup-status", markup=False)
            yield LogPane(id="cleanup-log")
            yield DataTable(id="cleanup-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    @property
    def running(self) -> bool:
        return self.started is not None

    def on_mount(self) -> None:
        self.sub_title = shown(f"{self.source.workshop} · cleanup", 120)
        self.query_one("#cleanup-table").display = False
        self.started = time.monotonic()
        self.app.cleaning = True
        pane = self.query_one(LogPane)
        self._log = thread_safe(self.app, lambda line: pane.push(shown(line, 2000)))
        self.set_interval(1, self._tick)
        self._tick()
        self._run()

    def _who(self) -> str:
        return self.labels[0] if len(self.labels) == 1 else f"{len(self.labels)} participants"

    def _tick(self) -> None:
        if self.started is None:
            return
        data = " and their results buckets" if self.delete_data else ""
        self.query_one("#cleanup-status", Static).update(
            f"cleaning up {self._who()}{data}… ({elapsed_text(time.monotonic() - self.started)})"
        )

    @work(thread=True, exclusive=True, group="cleanup", exit_on_error=False)
    def _run(self) -> None:
        try:
            results = self.source.cleanup(list(self.labels), delete_data=self.delete_data, log=self._log)
        except Exception as e:
            self._finish_from_thread(self._failed, one_line(e))
            return
        self._finish_from_thread(self._done, list(results))

    def _finish_from_thread(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            self.app.call_from_thread(fn, *args)
        except RuntimeError:  # quit while it ran
            pass

    def _finished(self) -> str:
        took = elapsed_text(time.monotonic() - (self.started or time.monotonic()))
        self.started = None
        self.app.cleaning = False
        if self.on_done is not None:
            self.on_done()
        return took

    def _failed(self, line: str) -> None:
        took = self._finished()
        self.query_one("#cleanup-status", Static).update(
            shown_text(
                f"The cleanup stopped after {took}: {line}. What it did not delete is still there: "
                "run it again (Esc: back to the room)",
                "bold red",
                limit=800,
            )
        )

    def _done(self, results: list[CleanupResult]) -> None:
        took = self._finished()
        self.results = results
        clean = sum(r.ok for r in results)
        style = "bold green" if clean == len(results) else "bold red"
        self.query_one("#cleanup-status", Static).update(
            Text(f"Done in {took}: {clean} of {len(results)} participant(s) clean. Esc: back to the room.", style=style)
        )
        table = self.query_one("#cleanup-table", DataTable)
        table.clear(columns=True)
        fitted = [
            max([len(heading)] + [len(value(r)) for r in results])
            for heading, value in (
                ("Participant", lambda r: r.label),
                ("Account", lambda r: r.account or DASH),
                ("Region", lambda r: r.region),
            )
        ]
        # Long errors and leftovers wrap inside their columns; Leftovers gets what the others leave.
        leftovers_w = max(30, self.app.size.width - sum(fitted) - (18 + 26 + 24) - 2 * 7 - 6)
        for (key, heading), width in zip(
            (
                ("label", "Participant"),
                ("account", "Account"),
                ("region", "Region"),
                ("sessions", "Sessions"),
                ("ok", "Result"),
                ("leftovers", "Leftovers"),
                ("kept", "Kept"),
            ),
            (*fitted, 18, 26, leftovers_w, 24),
            strict=True,
        ):
            table.add_column(heading, key=key, width=width)
        for n, r in enumerate(results):
            kept = ", ".join(k.get("name") or k.get("id", "?") for k in r.kept)
            table.add_row(
                shown_text(r.label),
                shown_text(r.account or DASH),
                shown_text(r.region),
                shown_text(", ".join(r.sessions), limit=200) if r.sessions else Text("none found", style="dim"),
                result_text(r),
                leftovers_text(r),
                shown_text(kept or DASH, limit=200),
                key=f"{n}:{r.label}",
                height=None,
            )
        table.display = True
        table.focus()

    def action_close(self) -> None:
        if self.running:
            self.notify(
                "The cleanup is still running: this screen stays until it ends (q quits anyway).", severity="warning"
            )
            return
        self.app.pop_screen()
