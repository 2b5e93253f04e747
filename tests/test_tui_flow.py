"""The wizard moves with the user: resume, highlight, zoom, run-all, the live tabs after terminate, help, wrapping."""

from __future__ import annotations

import asyncio
import re
import threading
import time

from test_tui_wizard import step_prompts, wait_for, wait_idle
from textual.widgets import Footer, Header, Label, Markdown, OptionList

from inflab import config
from inflab.engine import Engine
from inflab.events import JobLines, StepLogged
from inflab.lab_steps.base import Cancelled
from inflab.lab_steps.remote_job import run_job
from inflab.tui.app import InflabApp
from inflab.tui.panes import JobOutput, MonitorPane
from inflab.tui.screens import SessionPicker
from inflab.tui.terminal import TerminalPane
from inflab.tui.widgets import ChoiceModal, LogPane
from inflab.tui.wizard import Wizard

SLOW_STEPS = (
    "build-image",
    "push-image",
    "compile",
    "benchmark",
    "package-model",
    "serve",
    "serve-check",
    "load-test",
    "serve-stop",
    "sagemaker-package",
    "sagemaker-endpoint",
    "sagemaker-check",
    "sagemaker-load-test",
    "sagemaker-delete",
)
# A job that prints a numbered line with the host's clock (ns) five times a second, for two minutes.
TICKS = 'for i in $(seq 1 600); do echo "tick $i $(date +%s%N)"; sleep 0.2; done'


def new_session(store, name: str) -> Engine:
    cfg = config.load(None, sandbox=True)
    store.create_session(name, cfg.data, sandbox=True, track=cfg.track)
    return Engine(store, name)


async def open_wizard(pilot, app) -> Wizard:
    wizard = app.screen
    assert isinstance(wizard, Wizard)
    await wait_idle(pilot, wizard)  # the background check of the session
    return wizard


def flat(text: str) -> str:
    return " ".join(text.split())


async def test_resume_reattaches_a_running_job_with_no_key_press(sandbox, store, name):
    seen: list[str] = []
    new_session(store, name)
    engine = Engine(store, name, listener=lambda e: seen.extend(e.lines) if isinstance(e, JobLines) else None)
    assert (await asyncio.to_thread(engine.run, "connect")).ok  # steps run asyncio themselves: not on the test's loop

    # The product's own path starts the job and records it; quitting (detach) leaves it running.
    ctx = engine.context(engine.step("build-image"))
    worker = threading.Thread(target=lambda: _run_quietly(ctx), daemon=True)
    worker.start()
    deadline = time.monotonic() + 60
    while not seen and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert seen, "the job printed nothing"
    engine.detach()
    await asyncio.to_thread(worker.join, 30)
    job_id = store.get(name, "jobs")["build-image"]
    assert store.job(name, job_id)["status"] == "running"

    opened_ns = time.time_ns()
    app = InflabApp(store, engines=Engine, mode="resume", name=name)
    async with app.run_test(size=(140, 45)) as pilot:
        wizard = app.screen
        job = wizard.query_one(JobOutput)

        def printed_after_opening() -> bool:
            stamps = [int(m.group(1)) for line in job.log.lines if (m := re.match(r"tick \d+ (\d+)$", line))]
            return any(ns > opened_ns for ns in stamps)

        assert await wait_for(pilot, printed_after_opening, timeout=60), job.log.lines[-5:]
        assert wizard.query_one("#bottom").active == "tab-job"  # the Job tab came forward by itself
        assert wizard.busy and "▶" in step_prompts(wizard)["build-image"]
        # No silent stretch: the progress row says what the step is doing and for how long.
        label = wizard.query_one("#progress-label", Label)
        assert await wait_for(pilot, lambda: "last output: tick" in str(label.render())), str(label.render())
        assert wizard.query_one("#progress-row").display
        assert re.match(r"build-image · \d+:\d\d · last output: tick \d+", str(label.render())), str(label.render())

        await pilot.press("c")  # cancel: the job stops on the host
        await wait_idle(pilot, wizard, timeout=60)
        assert not wizard.query_one("#progress-row").display
        assert "■" in step_prompts(wizard)["build-image"]
        status = wizard.query_one("#instructions", Markdown).source
        assert "**Status:** cancelled by you" in status and "cancelled — cancelled" not in status
    assert store.job(name, job_id)["status"] != "running"


def _run_quietly(ctx) -> None:
    try:
        run_job(ctx, "build-image", TICKS)
    except Cancelled:
        pass  # detached: the job keeps running on the host


async def test_after_a_step_finishes_the_next_is_highlighted(sandbox, store, name):
    new_session(store, name)
    app = InflabApp(store, engines=Engine, mode="resume", name=name)
    async with app.run_test(size=(140, 45)) as pilot:
        wizard = await open_wizard(pilot, app)
        assert wizard.selected == "credentials"
        await pilot.press("r")
        await wait_idle(pilot, wizard)
        assert wizard.selected == "preflight"
        assert "instance type, zones and ami" in wizard.query_one("#instructions", Markdown).source.lower()
        await pilot.press("r")
        await wait_idle(pilot, wizard)
        assert wizard.selected == "keypair"
        # a skipped step is passed over too
        steps = wizard.query_one("#steps", OptionList)
        await pilot.press("s")
        await pilot.pause()
        steps.highlighted = steps.get_option_index("credentials")
        await pilot.press("r")  # already done: checked, and the highlight moves past the skipped keypair
        await wait_idle(pilot, wizard)
        assert wizard.selected == "security-group"


async def test_zoom_gives_the_bottom_pane_the_whole_screen(sandbox, store, name):
    new_session(store, name)
    app = InflabApp(store, engines=Engine, mode="resume", name=name)
    async with app.run_test(size=(120, 40)) as pilot:
        wizard = await open_wizard(pilot, app)
        bottom = wizard.query_one("#bottom")
        log = wizard.query_one(LogPane)
        normal = bottom.region.height
        await pilot.press("z")
        await pilot.pause()
        between = 40 - wizard.query_one(Header).region.height - wizard.query_one(Footer).region.height
        assert bottom.region.height == between, (bottom.region, between)
        assert log.region.height > normal
        await pilot.press("z")
        await pilot.pause()
        assert bottom.region.height == normal


async def test_run_all_but_terminate_leaves_the_instance_running(sandbox, store, name, aws):
    engine = new_session(store, name)
    for sid in SLOW_STEPS:
        engine.skip(sid)
    app = InflabApp(store, engines=Engine, mode="resume", name=name)
    async with app.run_test(size=(140, 45)) as pilot:
        wizard = await open_wizard(pilot, app)
        await pilot.press("a")
        await pilot.pause()
        assert isinstance(app.screen, ChoiceModal)
        assert app.focused.id == "all-but-terminate" and str(app.focused.label) == "All but terminate (a)"
        await pilot.press("enter")
        await wait_idle(pilot, wizard, timeout=300)
        prompts = step_prompts(wizard)
        assert "○" in prompts["terminate"], prompts["terminate"]
        assert wizard.selected == "terminate"  # the one step left
    states = Engine(store, name).states()
    assert states["wait-running"]["state"] == "done" and states["ecr-repo"]["state"] == "done"
    assert states["terminate"]["state"] == "pending"
    iid = store.get(name, "host")["instance_id"]
    found = aws("ec2").describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert found["State"]["Name"] == "running"


async def test_after_terminate_the_live_tabs_say_so_and_the_picker_says_finished(sandbox, store, name):
    engine = new_session(store, name)
    assert (await asyncio.to_thread(engine.run, "wait-running")).ok
    assert (await asyncio.to_thread(engine.run_one, "terminate")).ok
    app = InflabApp(store, engines=Engine, mode="resume", name=name)
    async with app.run_test(size=(140, 45)) as pilot:
        wizard = await open_wizard(pilot, app)
        assert "✓" in step_prompts(wizard)["wait-running"]
        await pilot.press("2")
        monitor = wizard.query_one(MonitorPane)
        assert await wait_for(pilot, lambda: "terminated" in monitor.status), monitor.status
        assert monitor.status.startswith("The instance was terminated (step terminate)")
        await pilot.press("3")
        term = wizard.query_one(TerminalPane)
        assert await wait_for(pilot, lambda: "terminated" in term.status), term.status
        assert "The instance was terminated (step terminate)" in flat(term.text)  # on the pane itself
        assert "connecting" not in term.text.lower()
        assert app.focused is term
        await pilot.press("ctrl+o")  # leave the terminal: back to the step list
        await pilot.pause()
        assert app.focused is wizard.query_one("#steps")

    picker = InflabApp(store, engines=Engine, mode="picker")
    async with picker.run_test(size=(140, 45)) as pilot:
        await pilot.pause()
        assert isinstance(picker.screen, SessionPicker)
        table = picker.screen.query_one("#sessions")
        row = table.get_row(name)
        assert row[5] == "finished"


async def test_stale_steps_show_their_own_icon_and_say_why(sandbox, store, name, aws):
    engine = new_session(store, name)
    assert (await asyncio.to_thread(engine.run, "keypair")).ok
    aws("ec2").delete_key_pair(KeyName=f"inflab-{name}")  # gone behind the lab's back
    app = InflabApp(store, engines=Engine, mode="resume", name=name)
    async with app.run_test(size=(140, 45)) as pilot:
        wizard = await open_wizard(pilot, app)
        prompt = step_prompts(wizard)["keypair"]
        assert "! keypair" in prompt and "yellow" in prompt
        steps = wizard.query_one("#steps", OptionList)
        steps.highlighted = steps.get_option_index("keypair")
        await pilot.pause()
        assert "**Status:** stale — what it made is no longer there: run it again" in (
            wizard.query_one("#instructions", Markdown).source
        )
        assert "✓" in step_prompts(wizard)["credentials"]


async def test_f1_toggles_the_keys_and_toasts_stay_off_the_log(sandbox, store, name):
    from textual.widgets import HelpPanel

    new_session(store, name)
    app = InflabApp(store, engines=Engine, mode="resume", name=name)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        wizard = await open_wizard(pilot, app)
        await pilot.press("f1")
        await pilot.pause()
        assert len(wizard.query(HelpPanel)) == 1
        await pilot.press("f1")
        await pilot.pause()
        assert len(wizard.query(HelpPanel)) == 0

        wizard.notify("a note that must not hide the log", timeout=30)
        assert await wait_for(pilot, lambda: len(app.screen.query("Toast")) == 1)
        toast = app.screen.query_one("Toast")
        log = wizard.query_one(LogPane)
        assert not toast.region.overlaps(log.region), (toast.region, log.region)


async def test_a_long_log_line_wraps_in_a_narrow_window(sandbox, store, name):
    new_session(store, name)
    long_line = "Launched i-0123456789abcdef0 in us-west-2b " + " ".join(f"word{i}" for i in range(60)) + " END"
    app = InflabApp(store, engines=Engine, mode="resume", name=name)
    async with app.run_test(size=(72, 40)) as pilot:
        wizard = await open_wizard(pilot, app)
        wizard.engine.listener(StepLogged("launch", long_line))  # as the engine sends it, from any thread
        log = wizard.query_one(LogPane)
        assert await wait_for(pilot, lambda: any("END" in strip.text for strip in log.lines))
        width = log.scrollable_content_region.width
        rows = [strip.text.rstrip() for strip in log.lines]
        assert all(len(r) <= width for r in rows), (width, max(map(len, rows)))
        assert f"[launch] {long_line}" in flat(" ".join(rows))
        assert log.virtual_size.width <= width  # nothing to scroll sideways for


async def test_log_lines_written_while_another_tab_is_in_front_wrap_at_the_log_width(sandbox, store, name):
    new_session(store, name)
    line = "Submitted bert inf1.2xlarge batch 4 → job 0123abcd"
    app = InflabApp(store, engines=Engine, mode="resume", name=name)
    async with app.run_test(size=(120, 40)) as pilot:
        wizard = await open_wizard(pilot, app)
        log = wizard.query_one(LogPane)
        await pilot.press("4")  # the Job tab in front: the log is hidden
        await pilot.pause()
        assert not log.scrollable_content_region.width
        wizard.engine.listener(StepLogged("batch-submit", line))  # arrives while the log is hidden
        await pilot.pause(0.3)
        await pilot.press("1")
        assert await wait_for(pilot, lambda: any("job 0123abcd" in strip.text for strip in log.lines))
        rows = [strip.text.rstrip() for strip in log.lines]
        assert f"[batch-submit] {line}" in rows, rows[-5:]  # one line, as wide as the pane allows
        assert not any(len(r) == 1 for r in rows), rows[-5:]  # never one character per line


async def test_the_live_panes_never_stay_connecting(monkeypatch):
    """A host that never answers ends in a sentence on the pane, as does a refused connection."""
    import asyncio as aio

    from textual.app import App, ComposeResult

    from inflab.tui import panes

    class Panes(App):
        def compose(self) -> ComposeResult:
            yield MonitorPane()
            yield TerminalPane()

    async def never():
        await aio.Event().wait()

    async def refused():
        raise ConnectionRefusedError("Connection refused")

    monkeypatch.setattr(panes, "CONNECT_LIMIT_S", 3)  # long enough to see "Connecting" on a busy machine
    app = Panes()
    async with app.run_test(size=(100, 40)) as pilot:
        monitor, term = app.query_one(MonitorPane), app.query_one(TerminalPane)
        monitor.start(never)
        term.start(never)
        await pilot.pause()
        assert monitor.status.startswith("Connecting to the instance") and term.status.startswith("Connecting")
        assert await wait_for(pilot, lambda: not monitor.live and not term.live)
        assert monitor.status == "The instance did not answer within 3 s: is it still running?"
        assert "The instance did not answer within 3 s" in flat(term.text)
        monitor.start(refused)
        term.start(refused)
        assert await wait_for(pilot, lambda: not monitor.live and not term.live)
        assert monitor.status == "Could not connect: Connection refused"
        assert "Could not connect: Connection refused" in flat(term.text)


async def test_a_session_driven_elsewhere_opens_read_only(sandbox, store, name):
    from inflab.session import SessionLock

    new_session(store, name)
    held = SessionLock(store.home, name).acquire(f"inflab run --name {name}")  # as another process would
    try:
        app = InflabApp(store, engines=Engine, mode="resume", name=name)
        async with app.run_test(size=(140, 45)) as pilot:
            await pilot.pause(0.5)
            wizard = app.screen
            assert isinstance(wizard, Wizard)
            assert wizard.read_only and "in use by pid" in wizard.read_only and "inflab run --name" in wizard.read_only
            assert "read-only" in str(wizard.query_one("#session-info").render())
            await pilot.press("r")
            await pilot.pause(0.5)
            assert not wizard.busy
            assert Engine(store, name).states()["credentials"]["state"] == "pending", "nothing ran"
    finally:
        held.release()
    # Once it is free, the wizard drives the session again.
    app = InflabApp(store, engines=Engine, mode="resume", name=name)
    async with app.run_test(size=(140, 45)) as pilot:
        wizard = await open_wizard(pilot, app)
        assert wizard.read_only is None


async def test_a_pane_resized_while_the_program_starts_tells_the_program_its_new_size():
    """The program learns the pane's size even when the pane changed while the remote PTY was opening
    (on a busy machine, e.g. focus drawing the border): else top draws for a taller screen and its
    header scrolls away."""
    import asyncio as aio

    from textual.app import App, ComposeResult

    opened = aio.Event()
    go_on = aio.Event()

    class Process:
        def __init__(self, size):
            self.size = size
            self.stdin = self
            self.stdout = self

        def write(self, data):
            pass

        def change_terminal_size(self, cols, rows):
            self.size = (cols, rows)

        async def read(self, n):
            await aio.Event().wait()

    class Conn:
        process: Process | None = None

        async def __aenter__(self):
            return self

        async def __aexit__(self, *exc):
            return False

        async def create_process(self, command, *, term_type, term_size, encoding):
            opened.set()
            await go_on.wait()  # the PTY is being opened: the pane changes size meanwhile
            Conn.process = Process(term_size)
            return Conn.process

    async def connect():
        return Conn()

    class Panes(App):
        def compose(self) -> ComposeResult:
            yield TerminalPane()

    app = Panes()
    async with app.run_test(size=(100, 40)) as pilot:
        term = app.query_one(TerminalPane)
        await pilot.pause()
        term.start(connect)
        assert await wait_for(pilot, opened.is_set)
        await pilot.resize_terminal(80, 24)
        assert await wait_for(pilot, lambda: term.screen_model.lines < 30)
        go_on.set()
        assert await wait_for(pilot, lambda: term.attached)
        await pilot.pause()
        assert Conn.process.size == (term.screen_model.columns, term.screen_model.lines)
        term.stop()
