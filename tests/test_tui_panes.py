"""The job-output pane: what a user sees of a streamed log."""

from __future__ import annotations

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
        stream = "compiling\n\x1b[32mgreen\x1b[0m text\nstep 1/3\rstep 2/3\rstep 3/3\ndone: 42 samp" + "les/s\n" + "Downloading 10%\rDownloading 55%"
        for i in range(0, len(stream), 7):  # 7-byte chunks: lines and escapes are cut mid-way
            pane.feed(stream[i:i + 7])
        await pilot.pause(0.2)
        assert pane.log.lines == ["compiling", "green text", "step 3/3", "done: 42 samples/s"]
        assert str(pane.query_one("#live", Static).render()) == "Downloading 55%"
        pane.feed("\rDownloading 100%\n")
        await pilot.pause(0.2)
        assert pane.log.lines[-1] == "Downloading 100%"
        assert str(pane.query_one("#live", Static).render()) == ""


async def test_memory_is_bounded_and_the_last_line_is_kept():
    app = PaneApp(max_lines=1000)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = app.query_one(JobOutput)
        pane.feed("".join(f"line {i}\n" for i in range(5000)) + "tail without newline")
        pane.finish()
        await pilot.pause(0.2)
        assert len(pane.log.lines) <= 1000
        assert pane.log.lines[-1] == "tail without newline"
        assert pane.log.lines[-2] == "line 4999"


async def test_search_jumps_to_the_match_and_stops_following():
    app = PaneApp()
    async with app.run_test(size=(100, 30)) as pilot:
        pane = app.query_one(JobOutput)
        pane.feed("".join(f"line {i}\n" for i in range(500)))
        await pilot.pause(0.2)
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
