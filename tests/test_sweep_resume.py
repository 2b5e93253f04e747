"""Quitting while the sweep runs, and opening the session again: the sweep is picked up like a job
on the instance, and the Jobs tab has the submitted jobs at once.

The sweep runs on a sandbox of its own (its own INFLAB_HOME and daemon) whose image store holds
a stand-in image for the session's hash: its "python" sleeps, so the first job stays RUNNING and
the second RUNNABLE (the sandbox runs one job at a time) for as long as the test needs.
"""

from __future__ import annotations

import asyncio
import stat
import time

import pytest
from test_tui_wizard import step_prompts, wait_for

from inflab import config, sandbox as sb
from inflab.engine import Engine
from inflab.lab_steps.image import image_hash
from inflab.session import CANCELLED, RUNNING, SessionLock, Store
from inflab.tui.app import InflabApp
from inflab.tui.jobs_pane import JobsPane
from inflab.tui.widgets import ConfirmModal, LogPane
from inflab.tui.wizard import Wizard

SMALL = {"batch": {"sizes": [2, 4], "min_duration_s": 1, "max_duration_s": 2}, "model": {"int8": False}}
SIZE = (160, 48)


@pytest.fixture
def own_sandbox(tmp_path, monkeypatch):
    """A store and a sandbox daemon of this test's own; both go afterwards."""
    monkeypatch.setenv("INFLAB_HOME", str(tmp_path))
    store = Store(tmp_path)
    yield store
    sb.stop(tmp_path)


def stand_in_image(home, digest: str) -> None:
    """An image store entry for ``digest`` whose python sleeps (what a job runs with it never ends by itself)."""
    venv = sb.state_dir(home) / "images" / digest / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text("#!/bin/sh\nexec sleep 120\n")
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    (venv / ".inflab-image").write_text(digest + "\n")


def submitted_sweep(store: Store, name: str) -> Engine:
    cfg = config.from_dict(SMALL, sandbox=True)
    store.create_session(name, cfg.data, sandbox=True, track="inf1")
    engine = Engine(store, name)
    for step in engine.steps[: engine.index("batch-setup")]:  # the sweep on its own: no instance
        if step.id not in ("credentials", "ecr-repo"):
            engine.skip(step.id)
    assert engine.run("ecr-repo").ok
    stand_in_image(store.home, image_hash(engine.context(engine.step("batch-setup")), "cpu"))
    for step in ("batch-setup", "batch-submit"):
        result = engine.run_one(step)
        assert result.ok, result.error
    return engine


def jobs_tab(wizard: Wizard) -> dict[str, str]:
    """Batch size -> the row the Jobs tab shows for it."""
    pane = wizard.query_one(JobsPane)
    return {str(j.batch_size): row for j, row in zip(pane.jobs.values(), pane.rows_text())}


async def test_quitting_while_the_sweep_runs_and_opening_again_picks_it_up(own_sandbox, name):
    store = own_sandbox
    engine = await asyncio.to_thread(submitted_sweep, store, name)
    batch = engine.aws.client("batch")
    ids = sorted(store.get(name, "sweep")["jobs"].values())

    # In the lab, the submitted sweep is watched (batch-monitor starts by itself); quitting while it runs.
    app = InflabApp(store, engines=Engine, mode="resume", name=name)
    async with app.run_test(size=SIZE) as pilot:
        wizard = app.screen
        assert await wait_for(pilot, lambda: wizard.busy == "checking the session", timeout=10)
        assert await wait_for(pilot, lambda: "RUNNING" in " ".join(jobs_tab(wizard).values()), timeout=60), jobs_tab(
            wizard
        )
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmModal)  # "Quit while 'step batch-monitor' runs?"
        await pilot.press("y")
    deadline = time.monotonic() + 30
    while store.step_states(name)["batch-monitor"]["state"] == RUNNING and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    quit_state = store.step_states(name)["batch-monitor"]
    assert quit_state["state"] == CANCELLED and "keep running on AWS Batch" in quit_state["error"], quit_state
    assert {j["status"] for j in batch.describe_jobs(jobs=ids)["jobs"]} <= {"RUNNING", "RUNNABLE", "STARTING"}

    # Opened read-only (another process holds the session): nothing runs, and the Jobs tab has
    # the submitted jobs from the record at once.
    holder = SessionLock(store.home, name).acquire("a test holding the session")
    try:
        app = InflabApp(store, engines=Engine, mode="resume", name=name)
        async with app.run_test(size=SIZE) as pilot:
            wizard = app.screen
            assert await wait_for(pilot, lambda: set(jobs_tab(wizard)) == {"2", "4"}), jobs_tab(wizard)
            assert wizard.read_only and not wizard.busy
            rows = jobs_tab(wizard)
            assert "RUNNING" in rows["2"] and "RUNNABLE" in rows["4"], rows
            assert "No sweep jobs yet" not in wizard.query_one(JobsPane).progress
    finally:
        holder.release()

    # Opened again: the monitor reattaches by itself, and time in state is Batch's own.
    app = InflabApp(store, engines=Engine, mode="resume", name=name)
    async with app.run_test(size=SIZE) as pilot:
        wizard = app.screen
        log = wizard.query_one(LogPane)
        assert await wait_for(pilot, lambda: "▶" in step_prompts(wizard)["batch-monitor"], timeout=60), step_prompts(
            wizard
        )["batch-monitor"]
        assert await wait_for(pilot, lambda: any("Reattaching: the sweep's 2 job(s)" in line for line in log.history))
        assert await wait_for(pilot, lambda: wizard.query_one("#bottom").active == "tab-jobs")
        described = {j["jobId"]: j for j in batch.describe_jobs(jobs=ids)["jobs"]}
        pane = wizard.query_one(JobsPane)
        running = [j for j in pane.jobs.values() if j.state == "RUNNING"]
        assert running, pane.rows_text()
        started = described[running[0].job_id]["startedAt"] / 1000
        assert running[0].since == pytest.approx(started, abs=0.01)  # since Batch started it, not since we looked
        for job_id in ids:
            batch.terminate_job(jobId=job_id, reason="the test is over")
        assert await wait_for(pilot, lambda: not wizard.busy, timeout=60)
