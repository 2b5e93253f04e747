"""The wizard: the step list, the step's instructions and CLI, actions, the live log."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, Markdown, OptionList, ProgressBar, Static, TabbedContent, TabPane
from textual.widgets.option_list import Option

from ..engine import Engine, EngineEvent
from ..session import CANCELLED, DONE, FAILED, PENDING, RUNNING, SKIPPED, UNDONE
from .panes import JobOutput, MonitorPane
from .terminal import TerminalPane
from .widgets import ConfirmModal, LogPane

TOP_COMMAND = "if command -v neuron-top >/dev/null; then exec neuron-top; elif command -v htop >/dev/null; then exec htop; else exec top; fi"

ICONS = {PENDING: "○", RUNNING: "▶", DONE: "✓", SKIPPED: "»", FAILED: "✗", UNDONE: "↺", CANCELLED: "■"}
STYLES = {DONE: "green", FAILED: "red", RUNNING: "yellow", CANCELLED: "magenta", SKIPPED: "dim", UNDONE: "cyan"}


class EngineUpdate(Message):
    """An engine event, carried from the worker thread to the screen."""

    def __init__(self, event: EngineEvent):
        super().__init__()
        self.event = event


class WorkFinished(Message):
    def __init__(self, what: str, ok: bool, error: str = ""):
        super().__init__()
        self.what, self.ok, self.error = what, ok, error


class Wizard(Screen):
    BINDINGS = [
        Binding("r", "run_selected", "Run step"),
        Binding("t", "run_to_here", "Run to here"),
        Binding("a", "run_all", "Run all"),
        Binding("s", "skip", "Skip"),
        Binding("u", "undo", "Undo"),
        Binding("c", "cancel", "Cancel"),
        Binding("C", "cleanup", "Clean up all", show=False),
        Binding("1", "tab('tab-log')", "Log", show=False),
        Binding("2", "tab('tab-monitor')", "Monitor"),
        Binding("3", "tab('tab-terminal')", "Terminal"),
        Binding("4", "tab('tab-job')", "Job output"),
        Binding("o", "open_terminal", "ssh in my terminal", show=False),
        Binding("z", "zoom", "Zoom pane", show=False),
        Binding("escape", "back", "Sessions", show=False),
    ]

    def __init__(self, store, name: str):
        super().__init__()
        self.app_store = store
        self.session_name = name
        self.engine = Engine(store, name, listener=self._from_engine)
        self.busy: str | None = None
        self._job_step: str | None = None  # the step whose job output the Job tab shows

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
                yield Static("", id="cli", classes="cli", markup=False)
                with Horizontal(id="progress-row"):
                    yield ProgressBar(total=1, show_eta=False, id="progress")
                    yield Label("", id="progress-label")
                with TabbedContent(id="bottom", initial="tab-log"):
                    with TabPane("Log", id="tab-log"):
                        yield LogPane(id="log", max_lines=10_000)
                    with TabPane("Monitor", id="tab-monitor"):
                        yield MonitorPane(id="monitor")
                    with TabPane("Terminal", id="tab-terminal"):
                        yield TerminalPane(id="terminal")
                    with TabPane("Job", id="tab-job"):
                        yield JobOutput(id="job")
        yield Footer()

    def _prompt(self, step, state: str, error: str | None = None) -> str:
        icon = ICONS.get(state, "○")
        style = STYLES.get(state)
        text = f"{icon} {step.id}"
        return f"[{style}]{text}[/]" if style else text

    def _options(self) -> list[Option]:
        states = self.engine.states()
        return [Option(self._prompt(s, states[s.id]["state"]), id=s.id) for s in self.engine.steps]

    def on_mount(self) -> None:
        self.title = "inflab"
        self.sub_title = f"{self.session_name} · {'sandbox' if self.engine.info.sandbox else 'AWS ' + self.engine.config.region}"
        steps = self.query_one("#steps", OptionList)
        nxt = self.engine.next_step() or self.engine.steps[-1].id
        steps.highlighted = steps.get_option_index(nxt)
        steps.focus()
        self.query_one("#progress-row").display = False
        log = self.query_one(LogPane)
        for ev in self.app_store.events(self.session_name)[-200:]:
            if ev["kind"] in ("log", "session"):
                log.push(f"[{ev['step'] or 'lab'}] {ev['message']}")
        self._show_step(nxt)
        self._refresh_info()

    # -- showing -------------------------------------------------------------------
    @property
    def selected(self) -> str:
        steps = self.query_one("#steps", OptionList)
        opt = steps.highlighted_option
        return opt.id if opt else self.engine.steps[0].id

    @on(OptionList.OptionHighlighted, "#steps")
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self._show_step(event.option.id)

    @on(OptionList.OptionSelected, "#steps")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.action_run_selected()

    def _show_step(self, step_id: str) -> None:
        step = self.engine.step(step_id)
        st = self.engine.states()[step_id]
        status = f"\n\n**Status:** {st['state']}" + (f" — {st['error']}" if st.get("error") else "")
        self.query_one("#instructions", Markdown).update(step.instructions() + status)
        cmds = step.cli(self._offline_context(step))
        cli = self.query_one("#cli", Static)
        cli.border_title = "The same with the AWS CLI"
        cli.update("\n".join(f"$ {c}" for c in cmds) or "(no AWS call)")

    def _offline_context(self, step):
        # CLI text needs names and saved state only, not a live AWS connection.
        from ..lab_steps.base import StepContext

        return StepContext(name=self.session_name, config=self.engine.config, sandbox=self.engine.info.sandbox,
                           store=self.app_store, aws=None, step_id=step.id)

    def _refresh_info(self) -> None:
        info = self.engine.info
        host = self.app_store.get(self.session_name, "host") or {}
        lines = [
            f"[b]{info.name}[/b]",
            "sandbox (emulated AWS)" if info.sandbox else f"AWS · {info.config['aws']['region']}",
            f"{info.config['instance']['type']}",
        ]
        if host:
            lines.append(f"{host.get('instance_id')}\n{host.get('public_ip')}")
        if self.busy:
            lines.append(f"[yellow]working: {self.busy}[/]")
        self.query_one("#session-info", Static).update("\n".join(lines))

    # -- engine events (called on the worker thread) --------------------------------
    def _from_engine(self, event: EngineEvent) -> None:
        self.post_message(EngineUpdate(event))

    def on_engine_update(self, message: EngineUpdate) -> None:
        ev = message.event
        log = self.query_one(LogPane)
        if ev.kind == "state":
            step = self.engine.step(ev.step) if ev.step else None
            if step:
                steps = self.query_one("#steps", OptionList)
                steps.replace_option_prompt(ev.step, self._prompt(step, ev.state))
                if ev.state == RUNNING and ev.step != self.selected:
                    steps.highlighted = steps.get_option_index(ev.step)  # follow the work
            note = f": {ev.message}" if ev.message and ev.state in (FAILED, CANCELLED) else ""
            log.push(f"[{ev.step}] {ev.state}{note}")
            if ev.step == self._job_step and ev.state != RUNNING:
                self.query_one(JobOutput).finish()
                self._job_step = None
            if ev.step == self.selected:
                self._show_step(ev.step)
            if ev.state == FAILED:
                self.notify(ev.message, title=f"{ev.step} failed", severity="error", timeout=10, markup=False)
        elif ev.kind == "log":
            log.push(f"[{ev.step or 'lab'}] {ev.message}")
        elif ev.kind == "output":
            self._job_output(ev)
        elif ev.kind == "progress":
            row = self.query_one("#progress-row")
            row.display = True
            bar = self.query_one("#progress", ProgressBar)
            if ev.fraction is None:
                bar.update(total=None)
            else:
                bar.update(total=1, progress=ev.fraction)
            self.query_one("#progress-label", Label).update(ev.message)

    def _job_output(self, ev: EngineEvent) -> None:
        """A remote job's lines: into the Job tab, which comes forward when a job starts."""
        pane = self.query_one(JobOutput)
        if ev.step != self._job_step:
            self._job_step = ev.step
            pane.feed(f"── {ev.step} " + "─" * 40 + "\n")
            tabs = self.query_one("#bottom", TabbedContent)
            if tabs.active == "tab-log":  # do not pull the user away from Monitor or Terminal
                tabs.active = "tab-job"
        pane.feed("\n".join(ev.lines) + "\n")

    def on_work_finished(self, message: WorkFinished) -> None:
        self.busy = None
        self.query_one("#progress-row").display = False
        self._refresh_info()
        self._show_step(self.selected)
        if message.ok:
            self.notify(f"{message.what}: done", timeout=4)
        elif message.error == "cancelled":
            self.notify(f"{message.what}: cancelled", severity="warning")

    # -- actions ---------------------------------------------------------------------
    def _start(self, what: str) -> bool:
        if self.busy:
            self.notify(f"Busy with {self.busy}; press c to cancel it first", severity="warning")
            return False
        self.busy = what
        self._refresh_info()
        return True

    @work(thread=True, group="engine", exit_on_error=False)
    def _engine_work(self, what: str, fn, *args) -> None:
        try:
            result = fn(*args)
            ok, err = result.ok, result.error
        except Exception as e:  # e.g. the sandbox would not start
            from ..engine import describe_exception

            ok, err = False, describe_exception(e)
            self.post_message(EngineUpdate(EngineEvent("log", None, message=f"error: {err}")))
            self.app.call_from_thread(self.notify, err, title=what, severity="error", timeout=10, markup=False)
        self.post_message(WorkFinished(what, ok, err))

    def action_run_selected(self) -> None:
        sid = self.selected
        step = self.engine.step(sid)
        if step.destructive:
            self._confirm(f"{step.title}? This cannot be undone.", lambda: self._go(f"step {sid}", self.engine.run_one, sid))
        else:
            self._go(f"step {sid}", self.engine.run_one, sid)

    def action_run_to_here(self) -> None:
        self._run_range(f"steps up to {self.selected}", self.selected)

    def action_run_all(self) -> None:
        self._run_range("all steps", None)

    def _run_range(self, what: str, until: str | None) -> None:
        """Run steps in order; ask first when the range would do something destructive (terminate)."""
        states = self.engine.states()
        last = self.engine.index(until) if until else len(self.engine.steps) - 1
        risky = [s for s in self.engine.steps[: last + 1] if s.destructive and states[s.id]["state"] not in (DONE, SKIPPED)]
        if risky:
            self._confirm(f"Run {what}? That includes '{risky[0].title}', which cannot be undone.",
                          lambda: self._go(what, self.engine.run, until))
        else:
            self._go(what, self.engine.run, until)

    def _go(self, what: str, fn, *args) -> None:
        if self._start(what):
            self._engine_work(what, fn, *args)

    def action_skip(self) -> None:
        if self.busy:
            self.notify(f"Busy with {self.busy}", severity="warning")
            return
        self.engine.skip(self.selected)

    def action_undo(self) -> None:
        sid = self.selected
        step = self.engine.step(sid)
        self._confirm(f"Undo '{step.title}'? This deletes what the step created.", lambda: self._go(f"undo {sid}", self.engine.undo, sid))

    def action_cleanup(self) -> None:
        def cleanup():
            from ..engine import RunResult

            errors, leftovers = self.engine.cleanup()
            return RunResult(not errors and not leftovers, None, "; ".join(errors) or ("leftovers" if leftovers else ""))

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
            self.notify(f"Cancelling {self.busy}…", severity="warning")

    def action_back(self) -> None:
        if self.busy:
            self.notify(f"Busy with {self.busy}; cancel it first", severity="warning")
            return
        self.app.show_picker()


    # -- live panes: monitor and terminal over SSH -----------------------------------
    def action_tab(self, tab: str) -> None:
        tabs = self.query_one("#bottom", TabbedContent)
        if tabs.active == tab and tab == "tab-terminal" and not self.query_one(TerminalPane).attached:
            self._run_terminal()  # already showing, program ended: start it again
        tabs.active = tab
        if tab == "tab-terminal":
            self.query_one(TerminalPane).focus()

    def action_zoom(self) -> None:
        if self.maximized is None:
            self.maximize(self.query_one("#bottom", TabbedContent))
        else:
            self.minimize()

    @on(TabbedContent.TabActivated, "#bottom")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "tab-monitor":
            self._stream_monitor()
        elif event.pane.id == "tab-terminal":
            self._run_terminal()

    def _remote_ready(self, what: str) -> bool:
        if not (self.app_store.get(self.session_name, "host_key") or {}).get("fingerprint"):
            self.notify(f"{what}: run the connect step first", severity="warning")
            return False
        return True

    async def _open_remote(self, what: str):
        """An SSH connection for a live pane (pinned host key), or None after telling the user why."""
        import asyncio

        from ..remote.host import open_connection, target

        if not self._remote_ready(what):
            return None
        ctx = self._offline_context(self.engine.step("connect"))
        try:
            t = await asyncio.to_thread(target, ctx)  # may start the sandbox daemon: not on the UI loop
            self.notify(f"{what}: connecting to {t.user}@{t.host}:{t.port}…", timeout=3)
            return await asyncio.wait_for(open_connection(ctx, timeout=15), 25)
        except Exception as e:
            self.notify(f"{what}: {e}. Is the instance still running? Press a to check every step again.",
                        severity="error", markup=False, timeout=10)
            return None

    @work(exclusive=True, group="monitor", exit_on_error=False)
    async def _stream_monitor(self) -> None:
        from ..lab_steps.monitor import PAYLOAD_DIR
        from ..remote import monitor

        if not self.app_store.get(self.session_name, "monitor"):
            self.notify("Monitor: run the monitor step first (it installs the agent)", severity="warning")
            return
        pane = self.query_one(MonitorPane)
        conn = await self._open_remote("Monitor")
        if conn is None:
            return
        async with conn:
            proc = await conn.create_process(f"exec python3 {PAYLOAD_DIR}/monitor.py --interval 1")
            async for line in proc.stdout:
                sample = monitor.parse(line)
                if sample:
                    pane.show(sample)

    @work(exclusive=True, group="terminal", exit_on_error=False)
    async def _run_terminal(self) -> None:
        term = self.query_one(TerminalPane)
        term.feed(b"\r\n[connecting...]\r\n")
        conn = await self._open_remote("Terminal")
        if conn is None:
            return
        ended = "the program ended"
        try:
            async with conn:
                cols, rows = term.screen_model.columns, term.screen_model.lines
                proc = await conn.create_process(TOP_COMMAND, term_type="xterm-256color", term_size=(cols, rows), encoding=None)
                term.send = proc.stdin.write
                term.on_resize_pty = lambda c, r: proc.change_terminal_size(c, r)
                term.attached = True
                while True:
                    data = await proc.stdout.read(65536)
                    if not data:
                        break
                    term.feed(data)
        except Exception as e:  # the connection dropped
            ended = f"the connection dropped ({e.__class__.__name__})"
        finally:
            term.attached = False
            term.send = lambda b: None
            term.on_resize_pty = lambda c, r: None
        term.feed(f"\r\n[{ended}: press 3 to start it again]\r\n".encode())

    def action_open_terminal(self) -> None:
        """Suspend the lab and run the real ssh, checked against the pinned host key."""
        import subprocess

        from ..remote.host import ssh_command

        from ..lab_steps.base import StepError

        if not self._remote_ready("ssh"):
            return
        try:
            cmd = ssh_command(self._offline_context(self.engine.step("connect")))
        except StepError as e:
            self.notify(str(e), severity="warning", markup=False)
            return
        try:
            with self.app.suspend():
                print(f"$ {' '.join(cmd)}\n(exit the shell to come back to inflab)", flush=True)
                subprocess.run(cmd)
        except FileNotFoundError:
            self.notify("No ssh client on this machine: install OpenSSH", severity="error")
