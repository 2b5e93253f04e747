"""The instructor dashboard: the whole workshop room in one table, refreshed in the background.

One row per participant (the row key is the label), read by the room source every ``refresh_s``
seconds in a thread worker: the source asks AWS, so nothing here waits for it on the UI loop.
Between refreshes a one-second tick moves the time-on-step and last-beacon columns and marks a
row STUCK the moment it passes the roster's threshold; the tick only touches cells whose text
changed, so a room of sixty does not stutter. ``Enter`` opens a participant, ``p`` runs
preflight over every account, ``c``/``C`` clean up one participant or everyone.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from typing import Any

from rich.style import Style
from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.cache import LRUCache
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from ..events import elapsed_text
from ..instructor.records import FAILED, UNREACHABLE, UNREADABLE, Room, RoomSource, Row
from ..untrusted import shown, shown_text
from .instructor_screens import (
    DASH,
    EVERYONE,
    STATE_STYLES,
    CleanupConfirm,
    CleanupScreen,
    ParticipantScreen,
    PreflightScreen,
    ago_text,
    clock,
    deliver,
    one_line,
    where_text,
)

STEP_WIDTH = 28  # "provision · instance-profile"; an unreachable row's reason wraps inside it
#: (key, heading, fixed width or None to fit the content)
COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("label", "Participant", None),
    ("account", "Account", None),
    ("region", "Region", None),
    ("step", "Step", STEP_WIDTH),
    ("state", "State", 17),  # "STUCK · cancelled"
    ("on_step", "On step", 7),  # "1:02:03"
    ("instances", "Instances", None),
    ("batch", "Batch", None),
    ("spend", "Spend", None),
    ("updated", "Updated", 9),  # "59 s ago"
)
FIXED = frozenset(key for key, _, width in COLUMNS if width)
STUCK_STYLE = "bold on dark_goldenrod"
LIVE_INSTANCE = ("pending", "running")
#: Batch job states, counted in these words
JOB_WORDS = (
    ("run", ("RUNNING", "STARTING")),
    ("wait", ("SUBMITTED", "PENDING", "RUNNABLE")),
    ("ok", ("SUCCEEDED",)),
    ("failed", ("FAILED",)),
)


def step_text(row: Row) -> str:
    """The row's step (a participant's beacon wrote it: shown safely)."""
    return f"{row.exercise} · {row.step}" if row.exercise else (shown(row.step, 60) or DASH)


def reason_row(row: Row) -> bool:
    """A row whose Step column says why it could not be read (and wraps to say it)."""
    return row.state in (UNREACHABLE, UNREADABLE)


def instances_text(row: Row) -> str:
    """ "1 inf1.2xlarge": the live instances by type, then any others by state."""
    live = Counter(i.type for i in row.instances if i.state in LIVE_INSTANCE)
    other = Counter(i.state for i in row.instances if i.state not in LIVE_INSTANCE)
    parts = [f"{n} {t}" for t, n in live.items()] + [f"{n} {s}" for s, n in other.items()]
    return ", ".join(parts) or "0"


def batch_text(row: Row) -> str:
    """ "jobs 2 run · 1 ok / 1 CE": the sweep's jobs by state and its compute environments."""
    known = {s for _, states in JOB_WORDS for s in states}
    counts = [(word, sum(row.batch_jobs.get(s, 0) for s in states)) for word, states in JOB_WORDS]
    counts += [(s.lower(), n) for s, n in row.batch_jobs.items() if s not in known]
    jobs = " · ".join(f"{n} {word}" for word, n in counts if n)
    text = f"jobs {jobs}" if jobs else ""
    if row.compute_envs:
        text += f"{' / ' if text else ''}{len(row.compute_envs)} CE"
    return text or DASH


def ticking_cells(row: Row, now: float) -> dict[str, Text]:
    """The cells that move with the clock: state (STUCK), time on step, last beacon."""
    if row.state == UNREACHABLE:
        return {
            "state": Text(UNREACHABLE, style="red"),
            "on_step": Text(DASH, style="dim"),
            "updated": Text(DASH, style="dim"),
        }
    if row.state == UNREADABLE:
        return {
            "state": Text(UNREADABLE, style="bold red"),
            "on_step": Text(DASH, style="dim"),
            "updated": Text(ago_text(now - row.updated) if row.updated else DASH, style="dim", justify="right"),
        }
    stuck = row.stuck(now)
    on_step = row.on_step_s(now)
    if stuck:
        state = Text(f"STUCK · {row.state}", style="bold red" if row.state == FAILED else "bold yellow")
    else:
        state = Text(row.state, style=STATE_STYLES.get(row.state, ""))
    return {
        "state": state,
        "on_step": Text(
            elapsed_text(on_step) if on_step is not None else DASH, style=STUCK_STYLE if stuck else "", justify="right"
        ),
        "updated": Text(ago_text(now - row.updated) if row.updated else DASH, style="dim", justify="right"),
    }


def row_cells(row: Row, now: float) -> dict[str, Text]:
    """Every cell of a participant's row, by column key."""
    if row.state == UNREACHABLE:
        cells = {key: Text(DASH, style="dim") for key, _, _ in COLUMNS}
        cells.update(
            label=shown_text(row.label),
            account=shown_text(row.account or DASH, "dim"),
            region=shown_text(row.region or DASH, "dim"),
            step=shown_text(row.reason or "could not be read", "dim red", limit=300),
        )
    else:
        cells = {
            "label": shown_text(row.label),
            "account": shown_text(row.account or DASH),
            "region": shown_text(row.region),
            "step": Text(step_text(row), overflow="ellipsis", no_wrap=True),
            "instances": shown_text(instances_text(row)),
            "batch": shown_text(batch_text(row)),
            "spend": Text(f"${row.spend_usd:,.2f}", justify="right"),
        }
        if row.state == UNREADABLE:
            cells["step"] = shown_text(row.reason or "could not be read", "red", limit=300)
    cells.update(ticking_cells(row, now))
    return cells


def _sig(value: Text) -> tuple[str, str]:
    return value.plain, str(value.style)


class RoomTable(DataTable):
    """The room's table: Enter opens the highlighted participant (and says so in the footer).

    Any cell update makes a DataTable draw every visible cell again; on the one-second tick only
    two or three cells a row change, so each drawn cell is kept by what it shows, and a tick
    redraws only the cells whose text moved (about a third of the work on a room of sixty).
    """

    BINDINGS = [Binding("enter", "select_cursor", "Details")]

    def __init__(self, *args, **kwargs):
        # before the table's own set-up, which clears the caches
        self._drawn: LRUCache[tuple, Any] = LRUCache(4096)
        self._keep_drawn = True  # off if this Textual's table does not have what the cache reads
        super().__init__(*args, **kwargs)

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ):
        if row_index < 0 or column_index < 0 or not self._keep_drawn:  # the header, row labels
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        try:
            row_key = self._row_locations.get_key(row_index)
            column_key = self._column_locations.get_key(column_index)
            value = self._data[row_key][column_key]
            shows = (value.plain, str(value.style), value.justify) if isinstance(value, Text) else str(value)
            key = (
                row_key,
                column_key,
                shows,
                row_index,
                self.rows[row_key].height,
                base_style,
                width,
                cursor,
                hover,
                self._show_hover_cursor,
                self._pseudo_class_state,
            )
        except (AttributeError, KeyError, TypeError):
            self._keep_drawn = False
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        drawn = self._drawn.get(key)
        if drawn is None:
            drawn = self._drawn[key] = super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        return drawn

    def _clear_caches(self) -> None:
        super()._clear_caches()
        self._drawn.clear()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._drawn.clear()


class DashboardScreen(Screen):
    """The room: a summary line, the refresh status, one row per participant, the highlighted one in full."""

    BINDINGS = [
        Binding("r", "refresh_now", "Refresh"),
        Binding("enter", "details", "Details"),
        Binding("p", "preflight", "Preflight"),
        Binding("c", "cleanup_one", "Clean up one"),
        Binding("C", "cleanup_all", "Clean up all"),
    ]

    def __init__(self, source: RoomSource, refresh_s: float = 10.0):
        super().__init__()
        self.source = source
        self.refresh_s = refresh_s
        self.room: Room | None = None
        self.rows: dict[str, Row] = {}  # label -> the last refresh's row, in table order
        self.refreshing_since: float | None = None  # monotonic, while a refresh runs
        self.next_at = 0.0  # monotonic: when the next refresh starts
        self.error = ""  # why the last refresh failed ("" when it worked)
        self.error_at = 0.0
        self.refreshes = 0  # refreshes that returned a room
        self._shape: tuple[tuple[str, bool], ...] = ()  # (label, unreachable) per table row, in order
        self._shown: dict[tuple[str, str], tuple[str, str]] = {}  # (label, column) -> what the cell shows

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="dashboard"):
            yield Static("", id="room-summary", markup=False)
            yield Static("", id="room-status", markup=False)
            yield RoomTable(id="room", cursor_type="row", zebra_stripes=True)
            yield Static("", id="room-detail", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#room", DataTable)
        for key, heading, width in COLUMNS:
            table.add_column(heading, key=key, width=width)
        # The roster at once; the first refresh fills it in.
        for label in self.source.labels:
            cells = {key: Text("") for key, _, _ in COLUMNS}
            cells.update(label=Text(label), state=Text("reading…", style="dim"))
            table.add_row(*cells.values(), key=label)
        self._shape = tuple((label, False) for label in self.source.labels)
        table.focus()
        self.set_interval(1, self._tick)
        self.start_refresh()

    # -- refreshing -----------------------------------------------------------------------------
    def start_refresh(self) -> bool:
        """Start a background refresh unless one is running; False when one was."""
        if self.refreshing_since is not None:
            return False
        self.refreshing_since = time.monotonic()
        self._show_status()
        self._refresh_worker()
        return True

    @work(thread=True, exclusive=True, group="room-refresh", exit_on_error=False)
    def _refresh_worker(self) -> None:
        try:
            room = self.source.refresh()
        except Exception as e:  # one line in the status; the last good rows stay
            deliver(self.app, self._refresh_failed, one_line(e))
            return
        deliver(self.app, self._refreshed, room)

    def _refreshed(self, room: Room) -> None:
        self.refreshing_since = None
        self.next_at = time.monotonic() + self.refresh_s
        self.room, self.error = room, ""
        self.refreshes += 1
        self._show_rows(list(room.rows))
        self._show_summary()
        self._show_status()
        self._show_detail()

    def _refresh_failed(self, line: str) -> None:
        self.refreshing_since = None
        self.next_at = time.monotonic() + self.refresh_s
        self.error, self.error_at = line, time.time()
        self._show_status()

    def action_refresh_now(self) -> None:
        if not self.start_refresh():
            self.notify("A refresh is running already.", timeout=2)

    # -- the table -------------------------------------------------------------------------------
    def _show_rows(self, rows: list[Row]) -> None:
        table = self.query_one("#room", DataTable)
        now = time.time()
        shape = tuple((r.label, reason_row(r)) for r in rows)
        self.rows = {r.label: r for r in rows}
        if shape == self._shape:  # the same participants in the same order: cells change in place
            for r in rows:
                for key, value in row_cells(r, now).items():
                    self._put(table, r.label, key, value)
            return
        keep = self.highlighted_label()
        table.clear()
        self._shown.clear()
        for r in rows:
            cells = row_cells(r, now)
            # An unreachable or unreadable row's reason wraps inside the Step column.
            table.add_row(*(cells[key] for key, _, _ in COLUMNS), key=r.label, height=None if reason_row(r) else 1)
            self._shown.update({(r.label, key): _sig(v) for key, v in cells.items()})
        self._shape = shape
        if keep in self.rows:
            table.move_cursor(row=table.get_row_index(keep), animate=False)

    def _put(self, table: DataTable, label: str, key: str, value: Text) -> None:
        """Update one cell, only when what it shows changed (each update redraws the table)."""
        sig = _sig(value)
        if self._shown.get((label, key)) == sig:
            return
        self._shown[(label, key)] = sig
        table.update_cell(label, key, value, update_width=key not in FIXED)

    def _tick(self) -> None:
        """Once a second: time on step, last beacon and STUCK move; the status counts; a refresh is due."""
        now = time.time()
        table = self.query_one("#room", DataTable)
        for label, row in self.rows.items():
            for key, value in ticking_cells(row, now).items():
                self._put(table, label, key, value)
        self._show_summary(now)
        self._show_status()
        if self.refreshing_since is None and time.monotonic() >= self.next_at:
            self.start_refresh()

    def highlighted_label(self) -> str | None:
        table = self.query_one("#room", DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def highlighted_row(self) -> Row | None:
        label = self.highlighted_label()
        return self.rows.get(label) if label is not None else None

    # -- the lines around it ------------------------------------------------------------------------
    def _show_summary(self, now: float | None = None) -> None:
        widget = self.query_one("#room-summary", Static)
        if self.room is None:
            widget.update(f"{len(self.source.labels)} participants: reading the room…")
            return
        summary = self.room.summary(now or time.time())
        text = Text(summary.line(), style="bold")
        if summary.price_source:
            text.append(f" · prices: {shown(summary.price_source)}", style="dim")
        widget.update(text)

    def status_text(self) -> Text:
        now = time.monotonic()
        next_in = f"next in {max(0, math.ceil(self.next_at - now))} s"
        if self.refreshing_since is not None:
            text = Text(f"refreshing… ({int(now - self.refreshing_since)} s)")
            if self.room is not None:
                text.append(f" · showing the room as read at {clock(self.room.at)}", style="dim")
            return text
        if self.error:
            where = f" · showing the room as read at {clock(self.room.at)}" if self.room is not None else ""
            return Text(
                f"refresh failed at {clock(self.error_at)}: {shown(self.error, 300)}{where} · {next_in}",
                style="bold red",
            )
        if self.room is None:
            return Text("")
        return Text(f"refreshed {clock(self.room.at)} in {self.room.took_s:.1f} s · {next_in}")

    def _show_status(self) -> None:
        self.query_one("#room-status", Static).update(self.status_text())

    @on(DataTable.RowHighlighted, "#room")
    def _highlighted(self) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        row = self.highlighted_row()
        widget = self.query_one("#room-detail", Static)
        if row is None:
            widget.update("")
            return
        text = shown_text(f"{row.label} ", "bold")
        text.append(shown(f"({where_text(row.account, row.region, row.reach)}): "))
        if reason_row(row):
            text.append(shown(f"{row.state}: {row.reason}", 300), style="red")
        else:
            text.append(f"{row.state} at {step_text(row)}", style=STATE_STYLES.get(row.state, ""))
            if row.session:
                text.append(f" · session {shown(row.session, 40)}")
            if row.error:
                text.append(f" · last error: {shown(row.error, 300)}", style="red")
        if row.warnings:
            text.append(f" · {len(row.warnings)} warning(s)", style="yellow")
        text.append("   Enter: details", style="dim")
        widget.update(text)

    # -- the other screens ----------------------------------------------------------------------------
    @on(DataTable.RowSelected, "#room")
    def _selected(self) -> None:
        self.action_details()

    def action_details(self) -> None:
        row = self.highlighted_row()
        if row is None:
            self.notify("Nothing read for this participant yet: wait for the first refresh.", timeout=3)
            return
        self.app.push_screen(ParticipantScreen(self.source, row))

    def action_preflight(self) -> None:
        accounts = len({(r.account or r.reach, r.region) for r in self.rows.values()}) if self.rows else None
        self.app.push_screen(PreflightScreen(self.source, accounts))

    def action_cleanup_one(self) -> None:
        label = self.highlighted_label()
        if label is None:
            self.notify("No participant is selected.", timeout=3)
            return
        row = self.rows.get(label)
        where = f" in {shown(where_text(row.account, row.region, row.reach))}" if row is not None else ""
        question = (
            f"Clean up {label}? This deletes everything {label}'s sessions made{where}: the instance, the "
            "Batch sweep, roles, key pair, security group and image repository. It cannot be undone."
        )
        self._confirm_cleanup(question, label, [label])

    def action_cleanup_all(self) -> None:
        labels = list(self.source.labels)
        question = (
            f"Clean up all {len(labels)} participants? This deletes everything every participant's sessions "
            "made in their accounts: instances, Batch sweeps, roles, key pairs, security groups and image "
            "repositories. It cannot be undone."
        )
        self._confirm_cleanup(question, EVERYONE, labels)

    def _confirm_cleanup(self, question: str, expected: str, labels: list[str]) -> None:
        if getattr(self.app, "cleaning", False):
            self.notify("A cleanup is running already.", severity="warning")
            return

        def answered(delete_data: bool | None) -> None:
            if delete_data is not None:
                self.app.push_screen(CleanupScreen(self.source, labels, delete_data, on_done=self.start_refresh))

        self.app.push_screen(CleanupConfirm(question, expected), answered)


class InstructorApp(App):
    """The instructor's view of a workshop room (the dashboard and the screens it opens)."""

    CSS_PATH = "instructor.tcss"
    TITLE = "inflab instructor"
    BINDINGS = [Binding("q", "quit_room", "Quit"), Binding("f1", "help", "Keys")]
    NOTIFICATION_TIMEOUT = 4

    def __init__(self, source: RoomSource, *, refresh_s: float = 10.0):
        super().__init__()
        self.source = source
        self.refresh_s = refresh_s
        self.cleaning = False  # a cleanup runs (quitting asks first)

    def on_mount(self) -> None:
        self.sub_title = shown(self.source.workshop, 80)
        self.push_screen(DashboardScreen(self.source, self.refresh_s))

    @property
    def dashboard(self) -> DashboardScreen:
        return next(s for s in self.screen_stack if isinstance(s, DashboardScreen))

    def action_help(self) -> None:
        """F1 shows the keys; F1 again hides them."""
        from .widgets import toggle_help

        toggle_help(self)

    def action_quit_room(self) -> None:
        if not self.cleaning:
            self.exit()
            return
        from .widgets import ConfirmModal

        def answered(yes: bool | None) -> None:
            if yes:
                self.exit()

        self.push_screen(
            ConfirmModal(
                "A cleanup is running. Quit anyway? It goes on until it ends (inflab exits "
                "then) but you will not see what it left: run the cleanup again later to check.",
                "Quit",
            ),
            answered,
        )
