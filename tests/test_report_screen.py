"""The report screen and the Batch jobs tab, driven with Pilot.

The report is read from a store made here (a sweep over two instance types and three batch
sizes, a model-exercise row and a failed job), so these tests need no cloud; the jobs tab
gets the events the batch-monitor step would post.
"""

from __future__ import annotations

import time

from test_tui_wizard import wait_for, wait_idle
from textual.widgets import DataTable, Input, Select, Static, TabbedContent

from inflab import config
from inflab.engine import Engine
from inflab.events import BatchJob, BatchJobsChanged
from inflab.remote.payload.result import BenchResult, Window
from inflab.session import Store
from inflab.tui.app import InflabApp
from inflab.tui.jobs_pane import JobsPane
from inflab.tui.report_screen import CHEAPEST, FASTEST, ReportScreen
from inflab.tui.screens import SessionPicker
from inflab.tui.wizard import Wizard

SIZE = (160, 48)
# (instance type, target, batch, samples/s, p50, p90, p95, p99): latency grows with the batch;
# inf1 is the cheaper type, inf2 the faster one.
SWEEP = [
    ("inf1.2xlarge", "inf1", 2, 400.0, 4.0, 8.0, 9.0, 30.0),
    ("inf1.2xlarge", "inf1", 4, 700.0, 8.0, 10.0, 11.0, 12.0),
    ("inf1.2xlarge", "inf1", 8, 1000.0, 14.0, 20.0, 22.0, 25.0),
    ("inf2.xlarge", "inf2", 2, 500.0, 2.0, 3.0, 3.5, 4.0),
    ("inf2.xlarge", "inf2", 4, 800.0, 3.0, 4.0, 4.5, 5.0),
    ("inf2.xlarge", "inf2", 8, 1100.0, 6.0, 7.0, 7.5, 8.0),
]
FAILED_REASON = "Essential container in task exited (exit code 137: out of memory)"
# display columns: mark, model, precision, target, instance, batch, samples/s, p50, p90, p95, p99, ...
MARK, INSTANCE, BATCH, SAMPLES = 0, 4, 5, 6


def bench(**changes) -> dict:
    """A benchmark result's JSON object as the harness writes it; ``changes`` by attribute name."""
    fields = dict(
        run_id="r1",
        timestamp="2026-05-01T12:00:00+00:00",
        label="lab",
        runtime="sandbox",
        instance_type="inf1.2xlarge",
        model_filename="bert.pt",
        family="bert",
        name="bert-base-cased-finetuned-mrpc",
        size="tiny",
        precision="fp32",
        target="inf1",
        weights="random",
        batch_size=8,
        n_models=1,
        workers_per_model=1,
        mode="closed",
        target_rate=None,
        throughput_avg=1000.0,
        throughput_peak=1010.0,
        latency_ms_p0=1.0,
        latency_ms_p50=5.0,
        latency_ms_p90=6.0,
        latency_ms_p95=7.0,
        latency_ms_p99=8.0,
        latency_ms_p99_9=9.0,
        latency_ms_p100=10.0,
        latency_ms_max=10.0,
        latency_ms_mean=5.5,
        total_infs=100,
        total_samples=800,
        duration_s=2.0,
        stable=True,
        stop_reason="stable",
        load_avg_ms=100.0,
        warmup_avg_ms=6.0,
        windows=[Window(t=1.0, queries=50, throughput=1000.0)],
        models=[],
        settings={},
        system={},
    )
    fields.update(changes)
    return BenchResult(**fields).to_dict()


def new_session(store: Store, name: str) -> None:
    cfg = config.load(None, sandbox=True)
    store.create_session(name, cfg.data, sandbox=True, track=cfg.track)


def add_sweep(store: Store, name: str, *, failed: bool = True, exercise: bool = True) -> None:
    for itype, target, batch, thr, p50, p90, p95, p99 in SWEEP:
        run_id = f"sweep-{name}-{target}-b{batch}.0"
        store.add_result(
            name,
            "benchmark",
            bench(
                run_id=run_id,
                label=name,
                instance_type=itype,
                target=target,
                batch_size=batch,
                throughput_avg=thr,
                latency_ms_p50=p50,
                latency_ms_p90=p90,
                latency_ms_p95=p95,
                latency_ms_p99=p99,
                latency_ms_p99_9=p99,
                latency_ms_p100=p99,
                latency_ms_max=p99,
            ),
            key=run_id,
        )
    if exercise:  # the model exercise on this machine: no instance type, so no price
        store.add_result(
            name,
            "benchmark",
            bench(
                run_id="benchmark-1.0",
                label=name,
                instance_type="sandbox",
                target="cpu",
                batch_size=8,
                throughput_avg=300.0,
            ),
            key="benchmark-1.0",
        )
    if failed:
        store.add_result(
            name,
            "batch-failed",
            {
                "job_name": f"{name}-bert-inf1-b16",
                "job_id": "job-16",
                "family": "bert",
                "target": "inf1",
                "precision": None,
                "instance_type": "inf1.2xlarge",
                "batch_size": 16,
                "reason": FAILED_REASON,
                "label": name,
            },
            key="job-16",
        )


async def open_report(pilot, app) -> ReportScreen:
    """From the session picker, `r` on the highlighted session."""
    assert isinstance(app.screen, SessionPicker)
    await pilot.press("r")
    screen = app.screen
    assert isinstance(screen, ReportScreen)
    assert await wait_for(pilot, lambda: screen.loaded)
    await pilot.pause()
    return screen


def table_rows(screen: ReportScreen) -> list[list[str]]:
    table = screen.query_one("#report-table", DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def marked(screen: ReportScreen, mark: str) -> list[tuple[str, str]]:
    """(instance type, batch) of the rows carrying ``mark``."""
    return [(r[INSTANCE], r[BATCH]) for r in table_rows(screen) if mark in r[MARK]]


def recommendation_text(screen: ReportScreen) -> str:
    return str(screen.query_one("#recommendation", Static).render())


async def set_limit(pilot, screen: ReportScreen, text: str) -> None:
    """Clear the limit box and type ``text`` into it, as the user would."""
    box = screen.query_one("#limit", Input)
    if not box.has_focus:
        screen.query_one("#report-table", DataTable).focus()
        await pilot.press("l")  # the key that goes to the limit
        assert box.has_focus
    box.value = ""
    await pilot.pause()
    if text:
        await pilot.press(*text)
    await pilot.pause()


def samples(rows: list[list[str]]) -> list[float]:
    return [float(r[SAMPLES].replace(",", "")) for r in rows if r[SAMPLES] not in ("FAILED", "-")]


# ---------------------------------------------------------------- the report screen


async def test_sorting_by_throughput_orders_rows_by_samples_per_second(home_store):
    new_session(home_store, "sweep1")
    add_sweep(home_store, "sweep1")
    app = InflabApp(home_store, engines=Engine, mode="picker")
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_report(pilot, app)
        assert len(table_rows(screen)) == 8  # six sweep rows, the model exercise, the failed job
        while screen.sort_key != "throughput_avg":
            await pilot.press("s")
        rows = table_rows(screen)
        assert samples(rows) == sorted(samples(rows), reverse=True) == [1100, 1000, 800, 700, 500, 400, 300]
        assert rows[-1][SAMPLES] == "FAILED"  # no measurement: last either way
        heading = str(screen.query_one("#report-table", DataTable).columns["throughput_avg"].label)
        assert heading.endswith("▼")

        await pilot.press("S")  # reversed
        rows = table_rows(screen)
        assert samples(rows) == sorted(samples(rows)) and rows[-1][SAMPLES] == "FAILED"

        await pilot.press("s")  # on to the next column, p50
        assert screen.sort_key == "latency_ms_p50"

        # A click on a heading sorts by that column.
        table = screen.query_one("#report-table", DataTable)
        columns = list(table.ordered_columns)
        index = next(i for i, c in enumerate(columns) if c.key.value == "batch_size")
        x = sum(c.get_render_width(table) for c in columns[:index]) + 1
        await pilot.click("#report-table", offset=(x, 0))
        await pilot.pause()
        assert screen.sort_key == "batch_size"
        batches = [int(r[BATCH]) for r in table_rows(screen)]
        assert batches == sorted(batches)


async def test_the_latency_limit_changes_the_recommendation(home_store):
    new_session(home_store, "lim")
    add_sweep(home_store, "lim")
    app = InflabApp(home_store, engines=Engine, mode="picker")
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_report(pilot, app)
        # No limit: the cheapest per 1M is inf1 at batch 8, the fastest inf2 at batch 8.
        assert marked(screen, CHEAPEST) == [("inf1.2xlarge", "8")]
        assert marked(screen, FASTEST) == [("inf2.xlarge", "8")]
        unlimited = recommendation_text(screen)

        await set_limit(pilot, screen, "12")  # p90 ≤ 12 ms: inf1's batch 8 (20 ms) is out
        assert marked(screen, CHEAPEST) == [("inf1.2xlarge", "4")]
        limited = recommendation_text(screen)
        assert limited != unlimited and "12 ms" in limited
        assert screen.recommendation.cheapest["batch_size"] == 4
        assert "limit 12 ms" in screen.query_one("#plot-latency")._labels

        await set_limit(pilot, screen, "1")  # nothing is that fast
        assert screen.recommendation.cheapest is None and screen.recommendation.fastest is None
        assert marked(screen, CHEAPEST) == [] and marked(screen, FASTEST) == []
        impossible = recommendation_text(screen)
        assert impossible not in (limited, unlimited)
        assert "meet" in impossible.lower() or "no " in impossible.lower(), impossible

        await set_limit(pilot, screen, "")  # empty: no limit again
        assert recommendation_text(screen) == unlimited


async def test_invalid_limit_text_shows_one_line_and_keeps_the_answer(home_store):
    new_session(home_store, "bad")
    add_sweep(home_store, "bad")
    app = InflabApp(home_store, engines=Engine, mode="picker")
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_report(pilot, app)
        error = screen.query_one("#limit-error", Static)
        await set_limit(pilot, screen, "12")
        answer = recommendation_text(screen)
        assert str(error.render()) == ""
        await pilot.press("x")  # "12x"
        await pilot.pause()
        line = str(error.render())
        assert "milliseconds" in line and "\n" not in line
        assert recommendation_text(screen) == answer and screen.limit_ms == 12  # the last good limit stands
        await set_limit(pilot, screen, "-3")
        assert "more than 0" in str(error.render())
        await set_limit(pilot, screen, "0")
        assert "more than 0" in str(error.render())
        await set_limit(pilot, screen, "12 ms")
        assert str(error.render()) == "" and recommendation_text(screen) == answer


async def test_the_percentile_the_limit_applies_to_changes_the_answer(home_store):
    new_session(home_store, "pct")
    add_sweep(home_store, "pct")
    app = InflabApp(home_store, engines=Engine, mode="picker")
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_report(pilot, app)
        await set_limit(pilot, screen, "15")
        assert marked(screen, CHEAPEST) == [("inf1.2xlarge", "4")]  # p90 of batch 8 is 20 ms
        assert "p90 latency" in str(screen.query_one("#plot-latency").border_title)
        screen.query_one("#percentile", Select).value = "p50"  # p50 of batch 8 is 14 ms: it meets 15
        await pilot.pause()
        assert marked(screen, CHEAPEST) == [("inf1.2xlarge", "8")]
        assert screen.recommendation.percentile == "p50"
        assert "p50 latency" in str(screen.query_one("#plot-latency").border_title)
        # the latency plot follows: its points are the p50s now
        assert dict(screen.plotted["plot-latency"]["inf1.2xlarge · inf1 · fp32"]) == {2: 4.0, 4: 8.0, 8: 14.0}


async def test_failed_jobs_are_rows_with_their_reason_and_plots_have_one_line_per_type(home_store):
    new_session(home_store, "fail")
    add_sweep(home_store, "fail")
    app = InflabApp(home_store, engines=Engine, mode="picker")
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_report(pilot, app)
        rows = table_rows(screen)
        failed = [i for i, r in enumerate(rows) if r[SAMPLES] == "FAILED"]
        assert len(failed) == 1 and rows[failed[0]][BATCH] == "16"
        table = screen.query_one("#report-table", DataTable)
        table.move_cursor(row=failed[0])
        await pilot.pause()
        detail = str(screen.query_one("#report-detail", Static).render())
        assert "FAILED" in detail and FAILED_REASON in detail
        # plots: one line per (instance type, target, precision); the failed job is not a point
        lines = screen.plotted["plot-throughput"]
        assert dict(lines["inf1.2xlarge · inf1 · fp32"]) == {2: 400.0, 4: 700.0, 8: 1000.0}
        assert dict(lines["inf2.xlarge · inf2 · fp32"]) == {2: 500.0, 4: 800.0, 8: 1100.0}
        assert "sandbox · cpu · fp32" in lines
        notes = str(screen.query_one("#report-notes", Static).render())
        assert "Prices:" in notes
        # rows off the cost/latency frontier are dimmed: inf2 batch 8 is cheaper than inf1 batch 2 and faster at p90
        styles = {(r[INSTANCE], r[BATCH]): table.get_row_at(i)[SAMPLES].style for i, r in enumerate(rows)}
        assert styles[("inf1.2xlarge", "2")] == "dim"
        assert styles[("inf1.2xlarge", "8")] != "dim"


async def test_an_empty_session_says_how_to_get_results_and_escape_goes_back(home_store):
    new_session(home_store, "empty")
    app = InflabApp(home_store, engines=Engine, mode="picker")
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_report(pilot, app)
        sentence = str(screen.query_one("#report-empty", Static).render())
        assert (
            screen.query_one("#report-empty").display and not screen.query_one("#report-tabs").display
        )  # no table, no plots
        assert "No results in session empty yet" in sentence
        assert "inflab run --name empty --until benchmark" in sentence
        await pilot.press("escape")
        assert isinstance(app.screen, SessionPicker)


async def test_a_one_row_report_reads_well(home_store):
    new_session(home_store, "one")
    home_store.add_result("one", "benchmark", bench(run_id="benchmark-1.0", label="one"), key="benchmark-1.0")
    app = InflabApp(home_store, engines=Engine, mode="picker")
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_report(pilot, app)
        assert len(table_rows(screen)) == 1
        assert marked(screen, CHEAPEST) == [("inf1.2xlarge", "8")] and marked(screen, FASTEST) == [
            ("inf1.2xlarge", "8")
        ]
        assert screen.plotted["plot-throughput"] == {"inf1.2xlarge · inf1 · fp32": [(8, 1000.0)]}
        await pilot.press("q")
        assert isinstance(app.screen, SessionPicker)


# ---------------------------------------------------------------- the Jobs tab of the wizard


def job(name: str, state: str, *, batch: int, ago: float = 0, attempt: int = 1, reason: str = "") -> BatchJob:
    return BatchJob(
        name=name,
        job_id=f"id-{name}",
        state=state,
        since=time.time() - ago,
        instance_type="inf1.2xlarge",
        batch_size=batch,
        family="bert",
        target="inf1",
        attempt=attempt,
        reason=reason,
    )


async def test_the_jobs_tab_shows_the_sweep_and_follows_a_job(sandbox, store, name):
    new_session(store, name)
    app = InflabApp(store, engines=Engine, mode="resume", name=name)
    async with app.run_test(size=SIZE) as pilot:
        wizard = app.screen
        assert isinstance(wizard, Wizard)
        await wait_idle(pilot, wizard)
        tabs = wizard.query_one("#bottom", TabbedContent)
        assert tabs.active == "tab-log"
        pane = wizard.query_one(JobsPane)
        jobs = (
            job("b2", "SUCCEEDED", batch=2),
            job("b4", "RUNNING", batch=4, ago=65),
            job("b8", "RUNNABLE", batch=8, attempt=0),
        )
        wizard._from_engine(BatchJobsChanged("batch-monitor", jobs, done=1, total=3))  # as the engine posts it
        await pilot.pause()
        assert tabs.active == "tab-jobs"  # came forward with the first table
        assert pane.progress == "1 of 3 done (1 running)"
        rows = {r.split()[0]: r for r in pane.rows_text()}
        assert "SUCCEEDED" in rows["b2"] and "RUNNABLE" in rows["b8"]
        assert " 1:0" in rows["b4"]  # time in state, m:ss from `since`

        jobs = (
            job("b2", "SUCCEEDED", batch=2),
            job("b4", "SUCCEEDED", batch=4),
            job("b8", "FAILED", batch=8, attempt=2, reason=FAILED_REASON),
        )
        tabs.active = "tab-log"
        wizard._from_engine(BatchJobsChanged("batch-monitor", jobs, done=2, total=3))
        await pilot.pause()
        assert tabs.active == "tab-log"  # forward once only: the user's choice of tab stands
        await pilot.press("5")
        assert tabs.active == "tab-jobs"
        assert pane.progress == "2 of 3 done (1 failed)"
        rows = {r.split()[0]: r for r in pane.rows_text()}
        assert "FAILED" in rows["b8"] and FAILED_REASON in rows["b8"] and " 2 " in rows["b8"]

        asked: list[tuple[str, str, str]] = []
        wizard.engine.ask = lambda step, key, value: asked.append(
            (step, key, value)
        )  # the engine's hook, seen from here
        table = pane.query_one(DataTable)
        table.focus()
        table.move_cursor(row=table.get_row_index("id-b8"))
        await pilot.pause()
        detail = str(pane.query_one("#jobs-detail", Static).render())
        assert detail.startswith("b8 (id-b8): FAILED") and FAILED_REASON in detail  # the reason in full
        await pilot.press("enter")
        await pilot.pause()
        assert asked == [("batch-monitor", BatchJobsChanged.FOLLOW, "id-b8")]  # asked of the step that sent the table

        await pilot.press("R")  # the report, over the wizard; escape comes back
        assert isinstance(app.screen, ReportScreen)
        await wait_for(pilot, lambda: app.screen.loaded)
        await pilot.press("escape")
        assert app.screen is wizard


async def test_the_done_report_step_opens_the_report_screen_on_enter_or_r(sandbox, store, name):
    from textual.widgets import Markdown

    from inflab.session import DONE

    new_session(store, name)
    add_sweep(store, name)
    store.put(name, "sweep", {"round": "r1"})  # what the report step's check looks at: its round was reported
    store.put(name, "sweep_report", {"round": "r1", "results": 6, "failed": 1})
    store.set_step(name, "report", DONE)
    app = InflabApp(store, engines=Engine, mode="resume", name=name)
    async with app.run_test(size=SIZE) as pilot:
        wizard = app.screen
        assert isinstance(wizard, Wizard)
        await wait_idle(pilot, wizard)
        steps = wizard.query_one("#steps")
        steps.highlighted = steps.get_option_index("report")
        await pilot.pause()
        text = wizard.query_one("#instructions", Markdown).source
        assert "Press `R` for the report screen" in text and "Press `r`" not in text  # the key that opens it
        assert "press `Enter` or `r` for the report screen" in text
        for key in ("r", "enter"):
            await pilot.press(key)
            assert isinstance(app.screen, ReportScreen), key  # not the next step (batch-cleanup's question)
            assert await wait_for(pilot, lambda: app.screen.loaded)
            await pilot.press("escape")
            assert app.screen is wizard
        assert wizard.busy is None and wizard.engine.states()["batch-cleanup"]["state"] == "pending"


# ---------------------------------------------------------------- 80×24

SMALL_SCREEN = (80, 24)


def footer_keys(screen) -> dict[str, object]:
    from textual.widgets._footer import FooterKey

    return {k.key: k.region for k in screen.query(FooterKey)}


async def test_at_80x24_the_wizard_keeps_its_instructions_whole_key_bar_and_job_rows(sandbox, store, name):
    from textual.widgets import Markdown

    new_session(store, name)
    app = InflabApp(store, engines=Engine, mode="resume", name=name)
    async with app.run_test(size=SMALL_SCREEN) as pilot:
        wizard = app.screen
        await wait_idle(pilot, wizard)
        steps = wizard.query_one("#steps")
        steps.highlighted = steps.get_option_index("batch-submit")  # three long commands: the tallest CLI box
        await pilot.pause()
        box = wizard.query_one("#instructions-box")
        text = wizard.query_one("#instructions", Markdown)
        assert box.region.height >= 5 and text.region.height >= 3, (box.region, text.region)
        cli = wizard.query_one("#cli-box")
        assert cli.region.height <= 4 and cli.max_scroll_y > 0  # two lines shown; the rest scrolls
        status = next(p for p in text.query("MarkdownParagraph") if (p.source or "").startswith("**Status:**"))
        assert box.region.contains_region(status.region), (box.region, status.region)  # the state is in sight

        keys = footer_keys(wizard)
        assert {"r", "a", "c", "1", "5", "R", "z", "q", "f1"} <= set(keys), sorted(keys)
        assert all(region.right <= SMALL_SCREEN[0] for region in keys.values()), keys  # none cut off

        jobs = (
            job("b2", "SUCCEEDED", batch=2),
            job("b4", "RUNNING", batch=4, ago=65),
            job("b8", "FAILED", batch=8, attempt=2, reason=FAILED_REASON),
        )
        wizard._from_engine(BatchJobsChanged("batch-monitor", jobs, done=2, total=3))
        await pilot.pause()
        pane = wizard.query_one(JobsPane)
        table = pane.query_one(DataTable)
        assert wizard.query_one("#bottom", TabbedContent).active == "tab-jobs"
        table.move_cursor(row=table.get_row_index("id-b8"))  # the failed job: its reason in full below
        await pilot.pause()
        assert table.region.height >= 1 + len(jobs), table.region  # the heading and every row, without zooming

        # Real names share a long beginning: the Job column shows what tells them apart, so the
        # state and time in state fit in 80 columns.
        named = tuple(
            BatchJob(**{**j.__dict__, "name": f"inflab-lab-20261207-1657-bert-inf1-2xlarge-{j.name}"}) for j in jobs
        )
        wizard._from_engine(BatchJobsChanged("batch-monitor", named, done=2, total=3))
        await pilot.pause()
        assert sorted(r.split()[0] for r in pane.rows_text()) == ["b2", "b4", "b8"]
        widths = [c.get_render_width(table) for c in table.ordered_columns]
        time_column = [c.key.value for c in table.ordered_columns].index("time")
        assert sum(widths[: time_column + 1]) <= table.scrollable_content_region.width, widths


async def test_at_80x24_the_report_table_scrolls_sideways_and_the_plots_have_their_tab(home_store):
    new_session(home_store, "lab")
    add_sweep(home_store, "lab")
    app = InflabApp(home_store, engines=Engine)
    async with app.run_test(size=SMALL_SCREEN) as pilot:
        screen = await open_report(pilot, app)
        table = screen.query_one("#report-table", DataTable)
        assert table.region.height - 1 >= 6, table.region  # six rows or more under the heading
        assert table.max_scroll_x > 0  # wider than the screen: the latency and cost columns are to the right
        for _ in range(16):  # a column a press
            if table.scroll_x >= table.max_scroll_x:
                break
            await pilot.press("right")
            await pilot.pause(0.05)
        assert table.scroll_x == table.max_scroll_x
        keys = footer_keys(screen)
        assert {"s", "l", "p", "1", "2", "escape", "f1"} <= set(keys), sorted(keys)
        assert all(region.right <= SMALL_SCREEN[0] for region in keys.values()), keys

        await pilot.press("2")
        for pid in ("#plot-throughput", "#plot-latency"):
            plot = screen.query_one(pid)
            assert plot.region.width >= 30 and plot.region.height >= 8, (pid, plot.region)
        assert screen.plotted["plot-throughput"]  # the lines are drawn there
        await pilot.press("1")
        assert table.region.height - 1 >= 6


async def test_the_deployments_are_groups_under_headings_read_whole_and_the_answer_names_each(home_store):
    from test_report import served_record
    from test_sagemaker import sagemaker_record

    from inflab.tui.report_screen import GROUP_KEY, MODEL_WIDTH

    new_session(home_store, "deps")
    add_sweep(home_store, "deps", failed=False)
    home_store.add_result("deps", "served", served_record(), key="load-test-1")
    home_store.add_result("deps", "sagemaker", sagemaker_record(count=1), key="sagemaker-load-fp32-1")
    app = InflabApp(home_store, engines=Engine, mode="picker")
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_report(pilot, app)
        table = screen.query_one("#report-table", DataTable)
        rows = table_rows(screen)
        headings = [
            i
            for i in range(table.row_count)
            if str(table.coordinate_to_cell_key((i, 0)).row_key.value).startswith(GROUP_KEY)
        ]
        titles = [rows[i][1] for i in headings]
        assert [t.split(",")[0].split(" (")[0] for t in titles] == [
            "▸ Direct benchmarks",
            "▸ TorchServe",
            "▸ SageMaker",
        ]
        assert all(len(t) <= MODEL_WIDTH and "…" not in t for t in titles), titles  # read whole in the model column
        counts = [int(t.rsplit("(", 1)[1].rstrip(")")) for t in titles]
        assert counts == [len(SWEEP) + 1, 3, 3]  # the sweep and the exercise's row; one row per offered rate
        below = rows[headings[2] + 1 :]
        assert below and all(r[1].startswith("endpoint ") and r[INSTANCE] == "ml.c6i.xlarge" for r in below)
        answer = recommendation_text(screen)
        assert "Which deployment serves it cheapest" in answer
        assert "TorchServe on the instance:" in answer and "SageMaker endpoint: ml.c6i.xlarge" in answer
        table.focus()
        table.move_cursor(row=headings[2])  # a heading row is not a run: no detail, no error
        await pilot.pause()
        assert screen.highlighted_row() is None
        table.move_cursor(row=headings[2] + 1)
        await pilot.pause()
        assert screen.highlighted_row()["deployment"] == "sagemaker"
