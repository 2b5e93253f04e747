"""The wizard: the step list, the step's instructions and CLI, actions, the live log.

It is a view on the engine: engine work runs in a thread worker, the engine's events come
back as one Textual message per kind (:mod:`inflab.tui.messages`), and the live panes
(monitor, terminal) keep their own SSH streams; the wizard only says which tab shows.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Header, Label, Markdown, OptionList, ProgressBar, Static, TabbedContent, TabPane
from textual.widgets.option_list import Option

from ..errors import InflabError
from ..events import BatchJobsChanged, EngineEvent, RunResult, elapsed_text
from ..remote.host import HostUnavailable
from ..session import CANCELLED, DONE, FAILED, PENDING, RUNNING, SKIPPED, STALE, UNDONE
from ..track import first
from .jobs_pane import JobsPane
from .messages import (
    BatchJobsMessage,
    JobLinesMessage,
    StepFoundMessage,
    StepLogMessage,
    StepProgressMessage,
    StepStateMessage,
    WorkFinished,
    message_for,
)
from .panes import JobOutput, MonitorPane
from .terminal import TerminalPane
from .widgets import ChoiceModal, ConfirmModal, KeyBar, LogPane

ICONS = {PENDING: "○", RUNNING: "▶", DONE: "✓", SKIPPED: "»", FAILED: "✗", UNDONE: "↺", CANCELLED: "■", STALE: "!"}
STYLES = {
    DONE: "green",
    FAILED: "red",
    RUNNING: "yellow",
    CANCELLED: "magenta",
    SKIPPED: "dim",
    UNDONE: "cyan",
    STALE: "bold yellow",
}
#: the answers to `a`
ALL_BUT_TERMINATE, EVERYTHING = "all-but-terminate", "everything"
KEEP_DATA, DELETE_DATA = "keep-data", "delete-data"
OPENING = "checking the session"
TABS = Binding.Group("Tabs", compact=True)
#: once done, Enter or r on this step opens the report screen (Ctrl+P runs it again)


def status_line(state: str, message: str | None) -> str:
    """The state as the instructions show it: "failed — why", "cancelled by you", "stale — what to do"."""
    if not message:
        return state
    return message if message.startswith(state) else f"{state} — {message}"


class Wizard(Screen):
    BINDINGS = [
        Binding("r", "run_selected", "Run step"),
        Binding("t", "run_to_here", "Run to here"),
        Binding("a", "run_all", "Run all"),
        Binding("s", "skip", "Skip"),
        Binding("u", "undo", "Undo"),
        Binding("c", "cancel", "Cancel"),
        Binding("C", "cleanup", "Clean up all", show=False),
        Binding("1", "tab('tab-log')", "Log tab", group=TABS),
        Binding("2", "tab('tab-monitor')", "Monitor tab", group=TABS),
        Binding("3", "tab('tab-terminal')", "Terminal tab", group=TABS),
        Binding("4", "tab('tab-job')", "Job output tab", group=TABS),
        Binding("5", "tab('tab-jobs')", "Batch jobs tab", group=TABS),
        Binding("R", "report", "Report"),
        Binding("o", "open_terminal", "ssh in my terminal", show=False),
        Binding("z", "zoom", "Zoom"),
        Binding("escape", "back", "Sessions", show=False),
    ]
    #: left out of the key bar when the screen is too narrow for every key (they still work; F1 lists them)
    KEYBAR_SECONDARY = ("run_to_here", "skip", "undo")
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    ALLOW_IN_MAXIMIZED_VIEW = "Header, Footer"

    def __init__(self, store, name: str, engines: Callable[..., Any]):
        super().__init__()
        self.app_store = store
        self.session_name = name
        self.engine = engines(store, name, listener=self._from_engine)
        self.busy: str | None = None
        self._job_step: str | None = None  # the step whose job output the Job tab shows
        self._progress_step: str | None = None  # the step the progress row is about
        self._working_step: str | None = None  # the step the engine is running now
        #: set when another process drives the session: the wizard only shows it
        self.read_only: str | None = None
        self._jobs_seen = False  # the Jobs tab comes forward once, when the sweep's first table arrives
        self._lock = None

    # -- layout ------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="wizard"):
            with Vertical(id="left"):
                yield Label("Steps", classes="section")
                yield OptionList(*self._options(), id="steps")
                yield Static("", id="session-info")
            with Vertical(id="right"):
                with VerticalScroll(id="instructions-box"):
                    yield Markdown("", id="instructions")
                with VerticalScroll(id="cli-box"):  # scrolls when it is longer than the room it has
                    yield Static("", id="cli", classes="cli", markup=False)
                with Horizontal(id="progress-row"):
                    yield ProgressBar(total=None, show_eta=False, show_percentage=False, id="progress")
                    yield Label("", id="progress-label", markup=False)
                with TabbedContent(id="bottom", initial="tab-log"):
                    with TabPane("Log", id="tab-log"):
                        yield LogPane(id="log", max_lines=10_000)
                    with TabPane("Monitor", id="tab-monitor"):
                        yield MonitorPane(id="monitor")
                    with TabPane("Terminal", id="tab-terminal"):
                        yield TerminalPane(id="terminal")
                    with TabPane("Job", id="tab-job"):
                        yield JobOutput(id="job")
                    with TabPane("Jobs", id="tab-jobs"):
                        yield JobsPane(id="jobs")
        yield KeyBar()

    def _prompt(self, step_id: str, state: str) -> str:
        text = f"{ICONS.get(state, '○')} {step_id}"
        style = STYLES.get(state)
        return f"[{style}]{text}[/]" if style else text

    def _options(self) -> list[Option]:
        states = self.engine.states()
        return [Option(self._prompt(s.id, states[s.id]["state"]), id=s.id) for s in self.engine.steps]

    def on_mount(self) -> None:
        self.title = "inflab"
        self.sub_title = (
            f"{self.session_name} · {'sandbox' if self.engine.info.sandbox else 'AWS ' + self.engine.config.region}"
        )
        nxt = self.engine.next_step() or self.engine.steps[-1].id
        self._highlight(nxt)
        self.query_one("#steps", OptionList).focus()
        self.query_one("#progress-row").display = False
        log = self.query_one(LogPane)
        for ev in self.app_store.events(self.session_name)[-200:]:
            if ev["kind"] in ("log", "session"):
                log.push(f"[{ev['step'] or 'lab'}] {ev['message']}")
        self._show_step(nxt)
        recorded = self.engine.recorded_batch_jobs()  # the sweep's jobs as last recorded, before any poll
        if recorded is not None:
            self.call_after_refresh(self.query_one(JobsPane).show, recorded)
        from ..session import SessionBusy, SessionLock

        try:  # one process drives a session at a time; a second one only looks
            self._lock = SessionLock(self.app_store.home, self.session_name).acquire(
                f"inflab TUI on {self.session_name}"
            )
        except SessionBusy as e:
            self.read_only = str(e)
            self.sub_title += " · read-only"
            log.push(f"[lab] Read-only: {e}")
            self.notify(str(e), title="Read-only", severity="warning", timeout=15, markup=False)
        self._refresh_info()
        if not self.read_only:
            # What really exists, checked in the background; a job still running is reattached.
            self._go(OPENING, self.engine.resume, announce=False)

    def on_unmount(self) -> None:
        self.engine.detach()  # the app is closing: stop at the next safe point, leave remote jobs running
        if self._lock is not None:
            self._lock.release()

    # -- showing -------------------------------------------------------------------
    @property
    def selected(self) -> str:
        opt = self.query_one("#steps", OptionList).highlighted_option
        return opt.id if opt else self.engine.steps[0].id

    def _highlight(self, step_id: str) -> None:
        steps = self.query_one("#steps", OptionList)
        steps.highlighted = steps.get_option_index(step_id)

    @on(OptionList.OptionHighlighted, "#steps")
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self._show_step(event.option.id)

    @on(OptionList.OptionSelected, "#steps")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.action_run_selected()

    def _show_step(self, step_id: str) -> None:
        step = self.engine.step(step_id)
        st = self.engine.states()[step_id]
        status = f"**Status:** {status_line(st['state'], st.get('error'))}"
        if self.engine.step(step_id).spec.opens_report and st["state"] == DONE:
            status += " — press `Enter` or `r` for the report screen (`R` from any step; Ctrl+P runs the step again)"
        # The status right under the title, where a short screen still shows it.
        title, newline, body = step.instructions().partition("\n")
        text = (
            f"{title}\n\n{status}\n{newline}{body}" if title.startswith("# ") else f"{status}\n\n{title}{newline}{body}"
        )
        self.query_one("#instructions", Markdown).update(text)
        try:
            cmds = self.engine.cli_lines(step_id)
        except Exception as e:  # a step that cannot name its commands yet must not break the view
            cmds = [f"# (not available yet: {self.engine.describe(e)})"]
        self.query_one("#cli-box").border_title = "The same with the AWS CLI"
        self.query_one("#cli", Static).update("\n".join(f"$ {c}" for c in cmds) or "(no AWS call)")

    def _refresh_info(self) -> None:
        info = self.engine.info
        try:
            host = self.engine.recorded_host()
        except InflabError:
            host = None  # a damaged record: the steps that read it say what to do
        lines = [
            f"[b]{info.name}[/b]",
            "sandbox (emulated AWS)" if info.sandbox else f"AWS · {info.config['aws']['region']}",
            f"{info.config['instance']['type']}",
        ]
        if host:
            lines.append(f"{host.instance_id}\n{host.public_ip}")
        if self.engine.finished():
            lines.append("[green]finished[/]")
        if self.read_only:
            lines.append("[red]read-only: another process drives this session[/]")
        if self.busy:
            now = f" (now: {self._working_step})" if self._working_step and self._working_step not in self.busy else ""
            lines.append(f"[yellow]working: {self.busy}{now}[/]")
        self.query_one("#session-info", Static).update("\n".join(lines))

    def _next_not_done(self, after: str) -> str | None:
        states = self.engine.states()
        ids = [s.id for s in self.engine.steps]
        return next((i for i in ids[ids.index(after) + 1 :] if states[i]["state"] not in (DONE, SKIPPED)), None)

    # -- engine events: posted from the worker thread, handled here one kind each ---------
    def _from_engine(self, event: EngineEvent) -> None:
        self.post_message(message_for(event))

    def on_step_state_message(self, message: StepStateMessage) -> None:
        ev = message.event
        self.query_one("#steps", OptionList).replace_option_prompt(ev.step, self._prompt(ev.step, ev.state))
        if ev.state == RUNNING or ev.step == self._working_step:
            self._working_step = ev.step if ev.state == RUNNING else None
            self._refresh_info()
        if ev.state == RUNNING and ev.step != self.selected:
            self._highlight(ev.step)  # follow the work
        elif ev.state in (DONE, SKIPPED) and ev.step == self.selected:
            nxt = self._next_not_done(ev.step)
            if nxt:
                self._highlight(nxt)  # move on with the user
        note = f": {ev.message}" if ev.message and ev.state in (FAILED, CANCELLED, STALE) else ""
        self.query_one(LogPane).push(f"[{ev.step}] {ev.state}{note}")
        if ev.step == self._job_step and ev.state != RUNNING:
            self.query_one(JobOutput).finish()
            self._job_step = None
        if ev.step == self._progress_step and ev.state != RUNNING:
            self._hide_progress()
        if ev.step == self.selected:
            self._show_step(ev.step)
        if ev.state == FAILED:
            self.notify(ev.message, title=f"{ev.step} failed", severity="error", timeout=8, markup=False)
        step = self.engine.step(ev.step)
        if ev.state in (DONE, UNDONE, STALE) and (step.provides_host or step.destructive or step.spec.pins_host):
            self._host_changed()

    def on_step_log_message(self, message: StepLogMessage) -> None:
        self.query_one(LogPane).push(f"[{message.event.step or 'lab'}] {message.event.message}")

    def on_step_progress_message(self, message: StepProgressMessage) -> None:
        ev = message.event
        self._progress_step = ev.step
        self.query_one("#progress-row").display = True
        bar = self.query_one("#progress", ProgressBar)
        if ev.fraction is None:
            bar.update(total=None)  # an animated bar: working, no measure of how far
        else:
            bar.update(total=1, progress=ev.fraction)
        self.query_one("#progress-label", Label).update(f"{ev.step} · {elapsed_text(ev.elapsed)} · {ev.message}")

    def _hide_progress(self) -> None:
        self._progress_step = None
        self.query_one("#progress-row").display = False

    def on_job_lines_message(self, message: JobLinesMessage) -> None:
        """A remote job's lines: into the Job tab, which comes forward when a job starts."""
        ev = message.event
        pane = self.query_one(JobOutput)
        if ev.step != self._job_step:
            self._job_step = ev.step
            pane.feed(f"── {ev.step} " + "─" * 40 + "\n")
            tabs = self.query_one("#bottom", TabbedContent)
            if tabs.active == "tab-log":  # do not pull the user away from Monitor or Terminal
                tabs.active = "tab-job"
        pane.feed("\n".join(ev.lines) + "\n")

    def on_batch_jobs_message(self, message: BatchJobsMessage) -> None:
        """The sweep's job table: into the Jobs tab, which comes forward the first time."""
        ev = message.event
        pane = self.query_one(JobsPane)
        pane.show(ev)  # the monitor heads each job's log in the Job tab itself, where its lines begin
        if not self._jobs_seen:
            self._jobs_seen = True
            tabs = self.query_one("#bottom", TabbedContent)
            if tabs.active in ("tab-log", "tab-job"):  # not away from Monitor or Terminal
                tabs.active = "tab-jobs"

    def on_jobs_pane_follow(self, message: JobsPane.Follow) -> None:
        """A job chosen in the Jobs tab: its log streams into the Job tab."""
        self.engine.ask(message.step, BatchJobsChanged.FOLLOW, message.job_id)
        self.action_tab("tab-job")
        self.notify(f"Following {message.name}: its log from the next poll on", timeout=4)

    def on_step_found_message(self, message: StepFoundMessage) -> None:
        ev = message.event
        self.query_one("#steps", OptionList).replace_option_prompt(ev.step, self._prompt(ev.step, ev.state))
        if ev.step == self.selected:
            self._show_step(ev.step)
        if ev.state == STALE:
            self.notify(ev.message, title=f"{ev.step} needs running again", severity="warning", markup=False)

    def on_work_finished(self, message: WorkFinished) -> None:
        self.busy = None
        self._hide_progress()
        self._refresh_info()
        if message.what == OPENING:  # the check found steps to run again before this one: show the first
            states = self.engine.states()
            ids = [st.id for st in self.engine.steps]
            stale = [sid for sid in ids[: ids.index(self.selected)] if states[sid]["state"] == STALE]
            if stale:
                self._highlight(stale[0])
        self._show_step(self.selected)
        if message.finished:
            self.notify(
                "The session has finished: nothing to run. Ctrl+P → “Run the whole session again” to start over",
                timeout=6,
            )
        elif message.ok and message.what != OPENING:
            self.notify(f"{message.what}: done", timeout=3)
        elif message.error == "cancelled":
            self.notify(f"{message.what}: cancelled", severity="warning", timeout=3)

    # -- actions ---------------------------------------------------------------------
    @work(thread=True, group="engine", exit_on_error=False)
    def _engine_work(self, what: str, fn) -> None:
        try:
            result: RunResult = fn()
            done = WorkFinished(what, result.ok, result.error, result.finished)
        except Exception as e:  # e.g. the sandbox would not start
            err = self.engine.describe(e)
            self.app.call_from_thread(self.query_one(LogPane).push, f"[lab] error: {err}")
            self.app.call_from_thread(self.notify, err, title=what, severity="error", timeout=8, markup=False)
            done = WorkFinished(what, False, err)
        self.post_message(done)

    def _go(self, what: str, fn, *args, announce: bool = True, **kwargs) -> None:
        if self.read_only:
            self.notify(self.read_only, title="Read-only", severity="warning", markup=False)
            return
        if self.busy:
            self.notify(f"Busy with {self.busy}; press c to cancel it first", severity="warning")
            return
        self.busy = what
        self._refresh_info()
        self._engine_work(what, partial(fn, *args, **kwargs))

    def action_run_selected(self) -> None:
        """Run the highlighted step; on the report step once it is done, open the report screen."""
        if (
            self.selected
            and self.engine.step(self.selected).spec.opens_report
            and self.engine.states()[self.selected]["state"] == DONE
        ):
            self.action_report()
            return
        self.run_highlighted()

    def run_highlighted(self) -> None:
        """Run the highlighted step, whatever its state (the palette's "Run step")."""
        sid = self.selected
        step = self.engine.step(sid)
        if step.destructive:
            self._confirm(
                f"{step.title}? This cannot be undone.",
                lambda: self._ask_data(
                    [sid], lambda data: self._go(f"step {sid}", self.engine.run_one, sid, delete_data=data)
                ),
            )
        else:
            self._go(f"step {sid}", self.engine.run_one, sid)

    def action_run_to_here(self) -> None:
        """Run steps in order up to the highlighted one; ask first when that would do something destructive."""
        until = self.selected
        states = self.engine.states()
        risky = [
            s
            for s in self.engine.steps[: self.engine.index(until) + 1]
            if s.destructive and states[s.id]["state"] not in (DONE, SKIPPED)
        ]
        what = f"steps up to {until}"
        if risky:
            self._confirm(
                f"Run {what}? That includes '{risky[0].title}', which cannot be undone.",
                lambda: self._ask_data(
                    [s.id for s in risky], lambda data: self._go(what, self.engine.run, until, delete_data=data)
                ),
            )
        else:
            self._go(what, self.engine.run, until)

    def action_run_all(self) -> None:
        """Everything but terminate (the instance stays up), or everything, or nothing."""
        if self.busy:
            self.notify(f"Busy with {self.busy}", severity="warning")
            return

        def answered(choice: str | None) -> None:
            if choice == ALL_BUT_TERMINATE:  # the instance exercise, up to the step before terminate
                ender = first("ends_host", self.engine.track)
                before = self.engine.steps[self.engine.index(ender.id) - 1].id if ender else None
                self._go("all steps but terminate", self.engine.run, before)
            elif choice == EVERYTHING:
                self._ask_data(
                    [s.id for s in self.engine.steps],
                    lambda data: self._go("all steps", self.engine.run, delete_data=data),
                )

        self.app.push_screen(
            ChoiceModal(
                "Run every remaining step? Steps already done are checked, not redone. "
                "All but terminate stops before terminate and leaves the instance running; All + terminate goes on "
                "through the Batch sweep and its report, and ends by taking everything down.",
                [
                    (ALL_BUT_TERMINATE, "All but terminate", "primary", "a"),
                    (EVERYTHING, "All + terminate", "error", "t"),
                    ("cancel", "Cancel", "default", "n"),
                ],
            ),
            answered,
        )

    def _ask_data(self, step_ids: list[str], then: Callable[[bool], None]) -> None:
        """Before a range whose teardown could take the results: keep the results bucket, or delete it
        too? ``then`` gets the answer (delete_data)."""
        if not any(self.engine.step(s).spec.asks_delete_data for s in step_ids):
            then(False)
            return

        def answered(choice: str | None) -> None:
            if choice in (KEEP_DATA, DELETE_DATA):
                then(choice == DELETE_DATA)

        self.app.push_screen(
            ChoiceModal(
                "The teardown keeps the S3 bucket with your results (models, logs, the report) unless you say so.",
                [
                    (KEEP_DATA, "Keep the results", "primary", "k"),
                    (DELETE_DATA, "Delete them too", "error", "d"),
                    ("cancel", "Cancel", "default", "n"),
                ],
            ),
            answered,
        )

    def action_run_again(self) -> None:
        self._confirm(
            "Run the whole session again? Every step checks first, so what still exists is kept.",
            lambda: self._go("the session again", self.engine.run, again=True),
        )

    def action_skip(self) -> None:
        if self.read_only:
            self.notify(self.read_only, title="Read-only", severity="warning", markup=False)
            return
        if self.busy:
            self.notify(f"Busy with {self.busy}", severity="warning")
            return
        self.engine.skip(self.selected)

    def action_undo(self) -> None:
        sid = self.selected
        step = self.engine.step(sid)
        self._confirm(
            f"Undo '{step.title}'? This deletes what the step created.",
            lambda: self._go(f"undo {sid}", self.engine.undo, sid),
        )

    def action_cleanup(self) -> None:
        def cleanup() -> RunResult:
            errors, leftovers = self.engine.cleanup()
            return RunResult(
                not errors and not leftovers, None, "; ".join(errors) or ("leftovers" if leftovers else "")
            )

        self._confirm(
            f"Clean up session {self.session_name}? This terminates the instance and deletes everything the session created.",
            lambda: self._go("clean-up", cleanup),
        )

    def _confirm(self, question: str, then) -> None:
        if self.busy:
            self.notify(f"Busy with {self.busy}", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                then()

        self.app.push_screen(ConfirmModal(question), answered)

    def action_cancel(self) -> None:
        if self.busy:
            self.engine.cancel()
            self.notify(f"Cancelling {self.busy}…", severity="warning", timeout=3)

    def action_report(self) -> None:
        """The session's report, over the wizard; Esc comes back here (work keeps running)."""
        from .report_screen import ReportScreen

        self.app.push_screen(ReportScreen(self.app_store, self.session_name))

    def action_back(self) -> None:
        if self.busy:
            self.notify(f"Busy with {self.busy}; cancel it first", severity="warning")
            return
        self.app.show_picker()

    # -- the bottom pane: tabs, zoom, live views ---------------------------------------
    def action_tab(self, tab: str) -> None:
        self.query_one("#bottom", TabbedContent).active = tab
        self._start_live(tab)
        if tab == "tab-terminal":
            self.query_one(TerminalPane).focus()
        elif tab == "tab-jobs":  # so Enter follows the highlighted job
            self.query_one("#jobs-table").focus()
        elif self.focused is not None and self.query_one("#bottom") in self.focused.ancestors:
            self.query_one("#steps", OptionList).focus()  # not left in a tab now hidden: ↑/↓ choose steps again

    @on(TabbedContent.TabActivated, "#bottom")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self._start_live(event.pane.id)

    def _start_live(self, tab: str | None) -> None:
        if tab == "tab-monitor":
            self.query_one(MonitorPane).start(self._connect)
        elif tab == "tab-terminal":
            self.query_one(TerminalPane).start(self._connect)

    async def _connect(self):
        return await self.engine.open_host(timeout=15)

    def _host_changed(self) -> None:
        """The instance came, went or changed: live panes that were in use look again."""
        for pane in (self.query_one(MonitorPane), self.query_one(TerminalPane)):
            if pane.started:
                pane.restart(self._connect)

    def on_terminal_pane_leave(self, message: TerminalPane.Leave) -> None:
        self.query_one("#steps", OptionList).focus()

    def action_zoom(self) -> None:
        if self.maximized is None:
            self.maximize(self.query_one("#bottom", TabbedContent))
        else:
            self.minimize()

    def action_open_terminal(self) -> None:
        """Suspend the lab and run the real ssh, checked against the pinned host key."""
        import subprocess

        try:
            cmd = self.engine.ssh_command()
        except HostUnavailable as e:
            self.notify(str(e), title="ssh", severity="warning", markup=False)
            return
        try:
            with self.app.suspend():
                print(f"$ {' '.join(cmd)}\n(exit the shell to come back to inflab)", flush=True)
                subprocess.run(cmd)
        except FileNotFoundError:
            self.notify("No ssh client on this machine: install OpenSSH", severity="error")
