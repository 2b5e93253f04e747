"""Small things a new user meets on a first run: where the focus starts, keys in dialogs, the report
screen keeping its limit, which region a price list is for, `cleanup --json`, what batch-cleanup
leaves on purpose."""

from __future__ import annotations

import asyncio
import json
import threading
import time

from conftest import run_cli
from test_report_screen import SIZE, add_sweep, marked, new_session, open_report, set_limit
from test_tui_wizard import wait_for, wait_idle
from textual.app import App
from textual.widgets import Button, Select, Static, TextArea

from inflab import config, prices, report
from inflab.engine import Engine
from inflab.events import RunResult, StepLogged
from inflab.tui.app import InflabApp
from inflab.tui.report_screen import CHEAPEST
from inflab.tui.screens import ConfigReview
from inflab.tui.widgets import ChoiceModal, ConfirmModal


async def test_the_config_review_opens_on_the_config_so_page_down_reads_on(home_store):
    cfg = config.load(None, sandbox=True)
    app = InflabApp(home_store, engines=Engine, mode="new", name="lab1", config=cfg, sandbox=True)
    async with app.run_test(size=(100, 30)) as pilot:
        assert isinstance(app.screen, ConfigReview)
        area = app.screen.query_one("#config-text", TextArea)
        assert app.focused is area
        await pilot.press("pagedown")
        await pilot.pause()
        assert area.scroll_y > 0 and area.cursor_location[0] > 0  # it moved on through the file
        await pilot.press("ctrl+s")  # and starts from there
        assert await wait_for(pilot, lambda: home_store.has_session("lab1"))


async def test_the_config_review_says_which_image_the_instance_type_boots_as_it_is_edited(home_store):
    """Change the instance type and its machine image and login user change with it: a GPU type never
    boots the Neuron DLAMI the inf1 default found."""
    cfg = config.load(None, sandbox=True)
    app = InflabApp(home_store, engines=Engine, mode="new", name="lab2", config=cfg, sandbox=True)
    async with app.run_test(size=(120, 40)) as pilot:
        line = app.screen.query_one("#config-image", Static)
        assert await wait_for(pilot, lambda: "inf1.2xlarge (inf1) boots the newest Neuron DLAMI" in str(line.render()))
        area = app.screen.query_one("#config-text", TextArea)
        area.load_text(area.text.replace('type = "inf1.2xlarge"', 'type = "c6i.2xlarge"', 1))
        assert await wait_for(
            pilot,
            lambda: (
                "c6i.2xlarge (cpu) boots the current ECS-optimized Amazon Linux 2023 AMI" in str(line.render())
                and "logs in as ec2-user" in str(line.render())
            ),
        )


class Asking(App):
    def __init__(self, modal):
        super().__init__()
        self.modal, self.answers = modal, []

    def on_mount(self) -> None:
        self.push_screen(self.modal, self.answers.append)


async def test_dialogs_answer_to_the_keys_their_buttons_name():
    choices = [
        ("keep-data", "Keep the results", "primary", "k"),
        ("delete-data", "Delete them too", "error", "d"),
        ("cancel", "Cancel", "default", "n"),
    ]
    app = Asking(ChoiceModal("Keep the bucket?", choices))
    async with app.run_test() as pilot:
        labels = [str(b.label) for b in app.screen.query(Button)]
        assert labels == ["Keep the results (k)", "Delete them too (d)", "Cancel (n)"]
        await pilot.press("d")
        await pilot.pause()
        assert app.answers == ["delete-data"]

    app = Asking(ConfirmModal("Undo 'Launch the instance'?"))
    async with app.run_test() as pilot:
        assert [str(b.label) for b in app.screen.query(Button)] == ["Yes, do it (y)", "No, keep it (n)"]
        await pilot.press("y")
        await pilot.pause()
        assert app.answers == [True]


async def test_run_all_answers_n_without_running_anything(sandbox, store, name):
    new_session(store, name)
    app = InflabApp(store, engines=Engine, mode="resume", name=name)
    async with app.run_test(size=SIZE) as pilot:
        wizard = app.screen
        await wait_idle(pilot, wizard)
        await pilot.press("a")
        assert isinstance(app.screen, ChoiceModal)
        assert "All but terminate (a)" in [str(b.label) for b in app.screen.query(Button)]
        await pilot.press("n")
        await pilot.pause()
        assert app.screen is wizard and wizard.busy is None


async def report_of(pilot, app, name: str):
    """From the session picker: the report screen of session ``name``."""
    table = app.screen.query_one("#sessions")
    table.move_cursor(row=table.get_row_index(name))
    return await open_report(pilot, app)


async def test_the_report_screen_remembers_the_limit_and_percentile_per_session(home_store):
    new_session(home_store, "lab")
    add_sweep(home_store, "lab")
    new_session(home_store, "other")
    add_sweep(home_store, "other")
    app = InflabApp(home_store, engines=Engine, mode="picker")
    async with app.run_test(size=SIZE) as pilot:
        screen = await report_of(pilot, app, "lab")
        await set_limit(pilot, screen, "15")
        screen.query_one("#percentile", Select).value = "p50"
        await pilot.pause()
        assert marked(screen, CHEAPEST) == [("inf1.2xlarge", "8")]
        assert await wait_for(pilot, lambda: report.saved_view(home_store, "lab") == (15.0, "p50"))  # as chosen last
        await pilot.press("escape")
    app = InflabApp(home_store, engines=Engine, mode="picker")  # another day: a new app
    async with app.run_test(size=SIZE) as pilot:
        screen = await report_of(pilot, app, "lab")
        assert await wait_for(pilot, lambda: screen.limit_ms == 15 and screen.percentile == "p50")
        assert screen.query_one("#limit").value == "15" and screen.query_one("#percentile", Select).value == "p50"
        assert marked(screen, CHEAPEST) == [("inf1.2xlarge", "8")]
        assert "Under 15 ms p50" in str(screen.query_one("#recommendation", Static).render())
        await pilot.press("escape")
        screen = await report_of(pilot, app, "other")  # its own: none chosen there yet
        assert screen.limit_ms is None and screen.percentile == "p90" and screen.query_one("#limit").value == ""


async def test_quick_changes_on_the_report_screen_are_saved_in_the_order_they_were_made(home_store, monkeypatch):
    """A slow write of an earlier choice (a busy disk) does not land over the later one."""
    new_session(home_store, "lab")
    add_sweep(home_store, "lab")
    slow_first = threading.Event()
    real = report.save_view

    def save_view(store, name, limit_ms, percentile):
        if not slow_first.is_set():
            slow_first.set()
            time.sleep(1.0)  # the first save is slow; the second starts meanwhile
        real(store, name, limit_ms, percentile)

    monkeypatch.setattr(report, "save_view", save_view)
    app = InflabApp(home_store, engines=Engine, mode="picker")
    async with app.run_test(size=SIZE) as pilot:
        screen = await report_of(pilot, app, "lab")
        await set_limit(pilot, screen, "15")
        assert await wait_for(pilot, slow_first.is_set)
        screen.query_one("#percentile", Select).value = "p50"
        assert await wait_for(pilot, lambda: report.saved_view(home_store, "lab") == (15.0, "p50"))
        await asyncio.sleep(1.5)  # the slow first save has ended by now
        assert report.saved_view(home_store, "lab") == (15.0, "p50")


async def test_a_price_list_of_another_region_says_so_on_the_screen_and_in_the_report(home_store, tmp_path):
    new_session(home_store, "lab")  # the sandbox's region: us-west-2
    add_sweep(home_store, "lab")
    said = f"Prices: {prices.SOURCE}, {prices.DATE}"
    region = "These are us-east-1 list prices; this lab runs in us-west-2, where these types cost the same."
    app = InflabApp(home_store, engines=Engine, mode="picker")
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_report(pilot, app)
        notes = " ".join(str(screen.query_one("#report-notes", Static).render()).split())
        assert said in notes and region in notes, notes
    r = run_cli("report", "lab", home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"{said}. {region}" in r.stdout
    data = json.loads(run_cli("report", "lab", "--format", "json", home=tmp_path).stdout)
    assert data["prices"][0]["region"] == "us-east-1"


def test_cleanup_json_says_what_is_left_and_kept(sandbox, cli, name, store):
    cfg = config.load(None, sandbox=True)
    store.create_session(name, cfg.data, sandbox=True, track=cfg.track)
    assert Engine(store, name).run("keypair").ok
    r = cli("cleanup", name, "--yes", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)  # progress went to stderr: stdout is the JSON alone
    assert data == {"session": name, "ok": True, "errors": [], "leftovers": [], "kept": []}
    assert "Deleted the progress beacon" in r.stderr


def test_batch_cleanup_says_the_beacon_stays_and_why(sandbox, store, name):
    cfg = config.load(None, sandbox=True)
    store.create_session(name, cfg.data, sandbox=True, track=cfg.track)
    logged: list[str] = []
    engine = Engine(store, name, listener=lambda e: logged.append(e.message) if isinstance(e, StepLogged) else None)
    assert engine.run_one("batch-cleanup", delete_data=True).ok
    last = next(m for m in reversed(logged) if m.startswith("Everything this session made is gone"))
    assert last == (
        f"Everything this session made is gone, except the progress beacon /inflab/sessions/{name}, so that "
        f"the instructor sees the session finished (inflab cleanup {name} deletes it last)"
    )


async def test_back_from_the_jobs_tab_the_arrows_choose_steps_again(sandbox, store, name):
    new_session(store, name)
    app = InflabApp(store, engines=Engine, mode="resume", name=name)
    async with app.run_test(size=SIZE) as pilot:
        wizard = app.screen
        await wait_idle(pilot, wizard)
        assert wizard.selected == "credentials"
        await pilot.press("5")  # the Jobs tab takes the focus (Enter follows a job)
        await pilot.press("1")
        await pilot.press("down")
        await pilot.pause()
        assert wizard.selected == "preflight"


class RecordingEngine(Engine):
    """Runs nothing: records what the TUI asked of run()."""

    runs: list[dict] = []

    def run(self, until=None, **kwargs):
        RecordingEngine.runs.append({"until": until, **kwargs})
        return RunResult(True, until)


async def test_the_teardown_question_reaches_the_run(sandbox, store, name):
    """All + terminate asks about the results bucket; the answer is what the run is given."""
    new_session(store, name)
    for key, wanted in (("d", True), ("k", False)):
        RecordingEngine.runs = []
        app = InflabApp(store, engines=RecordingEngine, mode="resume", name=name)
        async with app.run_test(size=SIZE) as pilot:
            wizard = app.screen
            await wait_idle(pilot, wizard)
            await pilot.press("a")
            await pilot.press("t")
            await pilot.pause()
            assert isinstance(app.screen, ChoiceModal)
            assert "Delete them too (d)" in [str(b.label) for b in app.screen.query(Button)]
            await pilot.press(key)
            await wait_for(pilot, lambda: RecordingEngine.runs)
            assert RecordingEngine.runs == [{"until": None, "delete_data": wanted}]
