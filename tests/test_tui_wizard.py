"""Drive the TUI with Textual's Pilot against the sandbox cloud."""

from __future__ import annotations

import asyncio

from textual.widgets import Markdown, OptionList, Static

from inflab import config
from inflab.aws import inventory
from inflab.engine import Engine
from inflab.tui.app import InflabApp
from inflab.tui.screens import ConfigReview, SessionPicker
from inflab.tui.widgets import ConfirmModal, LogPane
from inflab.tui.wizard import Wizard

PROVISIONING = [
    "credentials",
    "preflight",
    "keypair",
    "security-group",
    "instance-profile",
    "launch-template",
    "launch",
    "wait-running",
]


async def wait_idle(pilot, wizard: Wizard, timeout: float = 120) -> None:
    """Wait until the wizard's engine worker is done and its messages are handled."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    await pilot.pause()
    while wizard.busy and loop.time() < deadline:
        await pilot.pause(0.1)
    assert not wizard.busy, f"still busy with {wizard.busy}"
    await pilot.pause(0.2)  # let the log pane flush


def step_prompts(wizard: Wizard) -> dict[str, str]:
    steps = wizard.query_one("#steps", OptionList)
    return {
        steps.get_option_at_index(i).id: str(steps.get_option_at_index(i).prompt) for i in range(steps.option_count)
    }


async def test_wizard_provisions_then_resumes_in_a_new_app(sandbox, store, name, aws):
    cfg = config.load(None, sandbox=True)
    app = InflabApp(store, engines=Engine, mode="new", name=name, config=cfg, sandbox=True)
    async with app.run_test(size=(140, 45)) as pilot:
        assert isinstance(app.screen, ConfigReview)
        assert not store.has_session(name), "the review screen must not create anything"
        await pilot.press("ctrl+s")
        await pilot.pause()
        wizard = app.screen
        assert isinstance(wizard, Wizard)
        await wait_idle(pilot, wizard)  # opening a session checks it in the background first
        assert wizard.selected == "credentials"
        assert "credentials" in str(wizard.query_one("#instructions", Markdown).source).lower()
        assert "aws sts get-caller-identity" in str(wizard.query_one("#cli", Static).render())

        # Highlight security-group and run up to it.
        steps = wizard.query_one("#steps", OptionList)
        steps.highlighted = steps.get_option_index("security-group")
        await pilot.press("t")
        await wait_idle(pilot, wizard)
        prompts = step_prompts(wizard)
        for sid in PROVISIONING[:4]:
            assert prompts[sid].count("✓"), f"{sid} should show done: {prompts[sid]}"
        for sid in PROVISIONING[4:]:
            assert "○" in prompts[sid], f"{sid} should still be pending: {prompts[sid]}"
        log = wizard.query_one(LogPane)
        assert any("Allowed SSH (tcp/22) from 127.0.0.1/32 only" in line for line in log.history)
        assert any("imported its public half as key pair" in line for line in log.history)

    # A new app on the same session starts at the first step not done.
    app2 = InflabApp(store, engines=Engine, mode="resume", name=name)
    async with app2.run_test(size=(140, 45)) as pilot:
        wizard = app2.screen
        assert isinstance(wizard, Wizard)
        await wait_idle(pilot, wizard)
        assert wizard.selected == "instance-profile"
        assert any(
            "Checked the session against what exists: everything is where it was" in line
            for line in wizard.query_one(LogPane).history
        )
        assert "role" in str(wizard.query_one("#instructions", Markdown).source).lower()
        steps = wizard.query_one("#steps", OptionList)
        steps.highlighted = steps.get_option_index("wait-running")
        await pilot.press("t")
        await wait_idle(pilot, wizard)
        prompts = step_prompts(wizard)
        assert all("✓" in prompts[s] for s in PROVISIONING), prompts
        history = wizard.query_one(LogPane).history
        # The steps done in the first app were checked, not redone.
        assert any(line.startswith("[keypair] Already done") for line in history)
        assert any("Launched i-" in line for line in history)
        host = store.get(name, "host")
        assert host and host["public_ip"] in str(wizard.query_one("#session-info", Static).render())

    instances = inventory.instances(Engine(store, name).aws, name)
    assert len(instances) == 1 and instances[0]["State"]["Name"] == "running"
    assert len(aws("ec2").describe_key_pairs(KeyNames=[f"inflab-{name}"])["KeyPairs"]) == 1


async def test_undo_asks_first_and_no_keeps_everything(sandbox, store, name, aws):
    cfg = config.load(None, sandbox=True)
    store.create_session(name, cfg.data, sandbox=True, track="inf1")
    Engine(store, name).run("keypair")
    app = InflabApp(store, engines=Engine, mode="resume", name=name)
    async with app.run_test(size=(140, 45)) as pilot:
        wizard = app.screen
        await wait_idle(pilot, wizard)
        steps = wizard.query_one("#steps", OptionList)
        steps.highlighted = steps.get_option_index("keypair")
        await pilot.press("u")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, Wizard)
        assert aws("ec2").describe_key_pairs(KeyNames=[f"inflab-{name}"])["KeyPairs"]

        await pilot.press("u")
        await pilot.pause()
        await pilot.press("y")
        await wait_idle(pilot, wizard)
        assert "↺" in step_prompts(wizard)["keypair"]
        assert not aws("ec2").describe_key_pairs(Filters=[{"Name": "key-name", "Values": [f"inflab-{name}"]}])[
            "KeyPairs"
        ]
        assert not (store.session_dir(name) / f"inflab-{name}.pem").exists()


async def test_picker_lists_sessions_and_opens_one(sandbox, store, name):
    cfg = config.load(None, sandbox=True)
    store.create_session(name, cfg.data, sandbox=True, track="inf1")
    app = InflabApp(store, engines=Engine, mode="picker")
    async with app.run_test(size=(140, 45)) as pilot:
        assert isinstance(app.screen, SessionPicker)
        table = app.screen.query_one("#sessions")
        keys = [table.coordinate_to_cell_key((r, 0)).row_key.value for r in range(table.row_count)]
        assert name in keys
        table.move_cursor(row=keys.index(name))
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, Wizard)
        assert app.screen.session_name == name


async def test_review_screen_rejects_bad_config_without_creating(sandbox, store, name):
    cfg = config.load(None, sandbox=True)
    app = InflabApp(store, engines=Engine, mode="new", name=name, config=cfg, sandbox=True)
    async with app.run_test(size=(140, 45)) as pilot:
        area = app.screen.query_one("#config-text")
        area.text = area.text.replace('region = "us-west-2"', 'region = "mars-north-1"')
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, ConfigReview)
        assert "aws.region" in str(app.screen.query_one("#config-error", Static).render())
        assert not store.has_session(name)


async def test_clean_up_from_the_wizard_removes_everything(sandbox, store, name):
    cfg = config.load(None, sandbox=True)
    store.create_session(name, cfg.data, sandbox=True, track="inf1")
    engine = Engine(store, name)
    assert engine.run("wait-running").ok
    ip = store.get(name, "host")["public_ip"]
    app = InflabApp(store, engines=Engine, mode="resume", name=name)
    async with app.run_test(size=(140, 45)) as pilot:
        wizard = app.screen
        await wait_idle(pilot, wizard)
        assert ip in str(wizard.query_one("#session-info", Static).render())
        await pilot.press("C")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("y")
        await wait_idle(pilot, wizard)
        assert ip not in str(wizard.query_one("#session-info", Static).render())
        assert any("Verified: nothing tagged" in line for line in wizard.query_one(LogPane).history)
    assert inventory.session_resources(engine.aws, name) == []


async def wait_for(pilot, predicate, timeout: float = 20) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if predicate():
            return True
        await pilot.pause(0.1)
    return predicate()


async def test_monitor_and_terminal_tabs_stream_from_the_instance(sandbox, store, name, cli):
    from textual.widgets import Label

    from inflab.tui.panes import MonitorPane
    from inflab.tui.terminal import TerminalPane

    r = cli("run", "--sandbox", "--name", name, "--until", "monitor")
    assert r.returncode == 0, r.stdout + r.stderr
    app = InflabApp(store, engines=Engine, mode="resume", name=name)
    async with app.run_test(size=(140, 50)) as pilot:
        wizard = app.screen
        await wait_idle(pilot, wizard)
        await pilot.press("2")
        pane = wizard.query_one(MonitorPane)
        source = pane.query_one("#monitor-source", Label)
        assert await wait_for(pilot, lambda: len(pane.history.get("cpu0", ())) >= 2), pane.status
        assert str(source.render()) == "host CPU — no Neuron devices on this host"
        assert pane.rows_text()[0].startswith("cpu0")
        assert pane.status == "Live from the instance: one sample a second"

        await pilot.press("3")
        term = wizard.query_one(TerminalPane)
        assert await wait_for(pilot, lambda: "load average" in term.text and "PID" in term.text), term.text
        await pilot.press("q")  # typed into top, which quits
        assert await wait_for(pilot, lambda: "the program ended" in term.text), term.text
        await pilot.press("3")  # starts it again
        assert await wait_for(pilot, lambda: "load average" in term.text), term.text
        await pilot.press("q")
        assert await wait_for(pilot, lambda: "the program ended" in term.text), term.text


async def test_run_all_asks_whether_to_terminate_and_cancel_runs_nothing(sandbox, store, name):
    from textual.widgets import Button

    from inflab.tui.widgets import ChoiceModal

    cfg = config.load(None, sandbox=True)
    store.create_session(name, cfg.data, sandbox=True, track=cfg.track)
    app = InflabApp(store, engines=Engine, mode="resume", name=name)
    async with app.run_test(size=(140, 45)) as pilot:
        wizard = app.screen
        await wait_idle(pilot, wizard)
        await pilot.press("a")
        await pilot.pause()
        assert isinstance(app.screen, ChoiceModal)
        labels = [str(b.label) for b in app.screen.query(Button)]
        assert labels == ["All but terminate (a)", "All + terminate (t)", "Cancel (n)"]  # each with its key
        await pilot.click("#cancel")
        await pilot.pause()
        assert isinstance(app.screen, Wizard)
        assert wizard.busy is None and Engine(store, name).states()["credentials"]["state"] == "pending"
        await pilot.press("a", "escape")  # Esc is "cancel" too
        await pilot.pause()
        assert isinstance(app.screen, Wizard) and wizard.busy is None
        # run-to-here before terminate asks nothing
        steps = wizard.query_one("#steps", OptionList)
        steps.highlighted = steps.get_option_index("credentials")
        await pilot.press("t")
        await pilot.pause()
        assert not isinstance(app.screen, (ConfirmModal, ChoiceModal))
        await wait_idle(pilot, wizard)
        assert Engine(store, name).states()["credentials"]["state"] == "done"
        # run-to-here through terminate asks first
        steps.highlighted = steps.get_option_index("terminate")
        await pilot.press("t")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        assert "Terminate the instance" in str(app.screen.query_one("#question").render())
        await pilot.press("n")
        await pilot.pause()
        assert wizard.busy is None and Engine(store, name).states()["preflight"]["state"] == "pending"
