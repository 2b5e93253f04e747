"""The job-output pane: what a user sees of a streamed log."""

from __future__ import annotations

from test_tui_wizard import wait_for
from textual.app import App, ComposeResult
from textual.widgets import Static

from inflab.tui.panes import JobOutput


class PaneApp(App):
    def __init__(self, **kw):
        super().__init__()
        self.kw = kw

    def compose(self) -> ComposeResult:
        yield JobOutput(**self.kw)


async def test_chunks_cut_anywhere_progress_bars_and_ansi():
    app = PaneApp()
    async with app.run_test(size=(100, 30)) as pilot:
        pane = app.query_one(JobOutput)
        stream = (
            "compiling\n\x1b[32mgreen\x1b[0m text\nstep 1/3\rstep 2/3\rstep 3/3\ndone: 42 samp"
            + "les/s\n"
            + "Downloading 10%\rDownloading 55%"
        )
        for i in range(0, len(stream), 7):  # 7-byte chunks: lines and escapes are cut mid-way
            pane.feed(stream[i : i + 7])
        want = ["compiling", "green text", "step 3/3", "done: 42 samples/s"]
        assert await wait_for(pilot, lambda: pane.log.lines == want), pane.log.lines  # (written in batches)
        assert str(pane.query_one("#live", Static).render()) == "Downloading 55%"
        pane.feed("\rDownloading 100%\n")
        assert await wait_for(pilot, lambda: pane.log.lines[-1] == "Downloading 100%"), pane.log.lines
        assert str(pane.query_one("#live", Static).render()) == ""


async def test_memory_is_bounded_and_the_last_line_is_kept():
    app = PaneApp(max_lines=1000)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = app.query_one(JobOutput)
        pane.feed("".join(f"line {i}\n" for i in range(5000)) + "tail without newline")
        pane.finish()
        assert await wait_for(pilot, lambda: pane.log.lines[-1:] == ["tail without newline"]), pane.log.lines[-3:]
        assert len(pane.log.lines) <= 1000
        assert pane.log.lines[-2] == "line 4999"


async def test_search_jumps_to_the_match_and_stops_following():
    app = PaneApp()
    async with app.run_test(size=(100, 30)) as pilot:
        pane = app.query_one(JobOutput)
        pane.feed("".join(f"line {i}\n" for i in range(500)))
        assert await wait_for(pilot, lambda: len(pane.log.lines) == 500)
        pane.log.focus()
        assert pane.follow
        await pilot.press("slash")
        await pilot.press(*"line 123", "enter")
        await pilot.pause(0.1)
        assert not pane.follow
        assert 100 <= pane.log.scroll_offset.y <= 123
        await pilot.press("f")
        await pilot.pause(0.1)
        assert pane.follow


# -- monitor ---------------------------------------------------------------------------------
import json  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from textual.widgets import Label  # noqa: E402

from inflab.remote import monitor  # noqa: E402
from inflab.tui.panes import MonitorPane  # noqa: E402

DATA = Path(__file__).parent / "data"
AGENT = Path(__file__).parent.parent / "inflab" / "remote" / "payload" / "monitor.py"


class MonitorApp(App):
    def compose(self) -> ComposeResult:
        yield MonitorPane()


async def test_a_recorded_neuron_monitor_report_renders_per_core():
    report = json.loads((DATA / "neuron-monitor-report.json").read_text())
    line = json.dumps({"source": "neuron-monitor", "ts": 0, "report": report})
    app = MonitorApp()
    async with app.run_test(size=(100, 20)) as pilot:
        pane = app.query_one(MonitorPane)
        pane.show(monitor.parse(line))
        await pilot.pause()
        assert str(pane.query_one("#monitor-source", Label).render()) == "NeuronCores via neuron-monitor"
        # One device with 4 NeuronCores; NC2 and NC3 idle. Each row: the core, a 20-cell bar, the percentage.
        assert pane.rows_text() == [
            "NC0 " + "█" * 8 + "░" * 12 + "  37.5%",  # 37.5% of 20 cells: 7.5, drawn as 8
            "NC1 " + "█" * 16 + "░" * 4 + "  82.2%",  # 82.25% (16.45 cells)
            "NC2 " + "░" * 20 + "   0.0%",
            "NC3 " + "░" * 20 + "   0.0%",
        ]
        memory = str(pane.query_one("#monitor-memory", Static).render())
        assert "3.7 GiB of 15.3 GiB" in memory and "p50 58.0 ms" in memory


async def test_a_proc_sample_from_the_real_agent_renders_host_cpus():
    out = subprocess.run(
        [sys.executable, str(AGENT), "--count", "2", "--interval", "0.2", "--no-neuron"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.splitlines()
    assert len(out) == 2
    app = MonitorApp()
    async with app.run_test(size=(100, 20)) as pilot:
        pane = app.query_one(MonitorPane)
        for line in out:
            pane.show(monitor.parse(line))
        await pilot.pause()
        assert str(pane.query_one("#monitor-source", Label).render()) == "host CPU — no Neuron devices on this host"
        rows = pane.rows_text()
        assert len(rows) == len(json.loads(out[0])["cpu_percent"]) >= 1
        for i, row in enumerate(rows):  # the core, a bar as full as the percentage says, the percentage
            m = re.fullmatch(r"cpu(\d+) (█*)(░*) +(\d+\.\d)%", row)
            assert m, row
            assert int(m[1]) == i and len(m[2]) + len(m[3]) == 20
            assert abs(len(m[2]) - float(m[4]) / 5) <= 0.55
        assert len(pane.history["cpu0"]) == 2  # the sparkline keeps the history


def test_partial_and_odd_reports_do_not_break_parsing():
    assert monitor.parse("not json") is None
    assert monitor.parse('{"source": "something else"}') is None
    s = monitor.parse(
        {"source": "neuron-monitor", "report": {"neuron_runtime_data": [{"report": None}], "system_data": None}}
    )
    assert s.source == "NeuronCores via neuron-monitor" and s.cores == [] and "no NeuronCore in use yet" in s.notes


def test_neuron_ls_json_becomes_a_device_table():
    from inflab.lab_steps.monitor import device_table, parse_neuron_ls

    text = json.dumps(
        [
            {
                "neuron_device": 0,
                "bdf": "00:1f.0",
                "connected_to": None,
                "nc_count": 4,
                "memory_size": 8589934592,
                "neuron_processes": [{"pid": 4321, "command": "python3"}],
            }
        ]
    )
    rows = parse_neuron_ls(text)
    assert rows == [{"device": 0, "cores": 4, "memory": 8589934592, "bdf": "00:1f.0", "processes": "4321"}]
    table = device_table(rows)
    assert table[1].split()[:4] == ["0", "4", "8", "GiB"]
    assert parse_neuron_ls("neuron-ls: command not found") == []
