"""The session picker and the config review screen."""

from __future__ import annotations

import time

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Header, Label, Static, TextArea

from ..config import ConfigError, from_dict, parse_toml, validate_session_name
from ..session import DONE, SKIPPED


def _ago(ts: float) -> str:
    s = max(0, time.time() - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{int(s // size)}{unit} ago"
    return "just now"


class SessionPicker(Screen):
    """Resume a saved session or start a new one."""

    BINDINGS = [
        Binding("enter", "resume", "Resume", show=True),
        Binding("r,R", "report", "Report"),
        Binding("n", "new(True)", "New sandbox session"),
        Binding("w", "new(False)", "New AWS session"),
        Binding("q", "app.quit", "Quit"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="picker"):
            yield Static("[b]inflab[/b] — learn and measure ML inference on AWS Inferentia", id="picker-title")
            yield Label("Saved sessions", classes="section")
            yield DataTable(id="sessions", cursor_type="row", zebra_stripes=True)
            yield Static("", id="picker-empty")
            with Horizontal(id="picker-buttons"):
                yield Button("New sandbox session", id="new-sandbox", variant="primary")
                yield Button("New AWS session", id="new-aws")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "inflab"
        self.sub_title = "sessions"
        self.refresh_sessions()

    def refresh_sessions(self) -> None:
        table = self.query_one(DataTable)
        table.clear(columns=True)
        table.add_columns("Name", "Where", "Region", "Instance", "Progress", "Next step", "Last used")
        sessions = self.app.store.list_sessions()
        for s in sessions:
            try:
                engine = self.app.engines(self.app.store, s.name)
            except ConfigError as e:  # a snapshot from an older version, or edited by hand
                progress, where_now = "?", f"config unreadable: {e}"
            else:
                states = engine.states()
                done = sum(st["state"] in (DONE, SKIPPED) for st in states.values())
                progress = f"{done}/{len(states)}"
                where_now = "finished" if engine.finished() else (engine.next_step() or "—")
            snapshot = s.config if isinstance(s.config, dict) else {}
            table.add_row(
                s.name,
                "sandbox" if s.sandbox else "AWS",
                (snapshot.get("aws") or {}).get("region", "?"),
                (snapshot.get("instance") or {}).get("type", "?"),
                progress,
                where_now,
                _ago(s.updated),
                key=s.name,
            )
        empty = self.query_one("#picker-empty", Static)
        empty.update(
            "" if sessions else "No saved sessions yet. Press [b]n[/b] for a sandbox session (no AWS account needed)."
        )
        if sessions:
            table.focus()
        else:
            self.query_one("#new-sandbox", Button).focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.app.open_session(event.row_key.value)

    def _highlighted(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def action_resume(self) -> None:
        name = self._highlighted()
        if name:
            self.app.open_session(name)

    def action_report(self) -> None:
        """The highlighted session's report, without opening (or locking) the session."""
        from .report_screen import ReportScreen

        name = self._highlighted()
        if name:
            self.app.push_screen(ReportScreen(self.app.store, name))
        else:
            self.notify("No session to report on yet", severity="warning", timeout=3)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_new(event.button.id == "new-sandbox")

    def action_new(self, sandbox: bool) -> None:
        from .. import config

        self.app.push_screen(
            ConfigReview(self.app.store.new_session_name(), config.load(None, sandbox=sandbox), sandbox)
        )


class ConfigReview(Screen):
    """Review (and edit) the lab configuration before anything is created."""

    BINDINGS = [
        Binding("ctrl+s", "start", "Start the lab", priority=True),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, name: str, config, sandbox: bool):
        super().__init__()
        self.session_name = name
        self.config = config
        self.sandbox = sandbox

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="review"):
            where = (
                "the sandbox — AWS emulated on this machine, nothing is billed"
                if self.sandbox
                else "your AWS account — this creates billed resources"
            )
            yield Static(f"New session [b]{self.session_name}[/b] in {where}.", id="review-where")
            yield Static(
                "This is the lab's configuration (TOML): PageDown reads on, and you can change what you need. "
                "Then press [b]Ctrl+S[/b] (or Tab to Start). Nothing is created until you start.",
                id="review-help",
            )
            yield TextArea(self.config.to_toml(), id="config-text", show_line_numbers=True)
            yield Static("", id="config-image")
            yield Static("", id="config-error")
            with Horizontal(id="review-buttons"):
                yield Button("Start", id="start", variant="success")
                yield Button("Back", id="back")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "review the configuration"
        self.query_one("#config-text", TextArea).focus()  # what there is to review: PageDown reads on
        self._image_timer = None
        self._describe_image()

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        """Change the instance type and the machine image it boots follows: say so as the text changes."""
        if self._image_timer is not None:
            self._image_timer.stop()
        self._image_timer = self.set_timer(0.3, self._describe_image)

    def _describe_image(self) -> None:
        label = self.query_one("#config-image", Static)
        try:
            cfg = from_dict(parse_toml(self.query_one("#config-text", TextArea).text), sandbox=self.sandbox)
        except ConfigError:
            label.update("")  # Start says what is wrong
            return
        image = cfg.host_image
        where = image.ssm_parameter or image.name
        label.update(
            f"[b]{escape(cfg.instance_type)}[/b] ({cfg.instance_kind}) boots {escape(image.what)}"
            + (f" — {escape(where)}" if where and where not in image.what else "")
            + f"; it logs in as [b]{escape(cfg.login_user)}[/b]"
        )

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "start":
            self.action_start()
        else:
            self.action_back()

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()
        else:
            self.app.exit()

    def action_start(self) -> None:
        error = self.query_one("#config-error", Static)
        text = self.query_one("#config-text", TextArea).text
        try:
            user = parse_toml(text)
        except ConfigError as e:
            error.update(f"[b red]The configuration is {escape(str(e))}[/]")
            return
        try:
            validate_session_name(self.session_name)
            cfg = from_dict(user, sandbox=self.sandbox)
        except ConfigError as e:
            error.update(f"[b red]{escape(str(e))}[/]")
            return
        store = self.app.store
        if store.has_session(self.session_name):
            error.update(f"[b red]A session named {self.session_name} exists already.[/]")
            return
        store.create_session(self.session_name, cfg.data, sandbox=self.sandbox, track=cfg.track)
        self.app.open_session(self.session_name)
