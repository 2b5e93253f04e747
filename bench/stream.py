"""Push 200,000 lines through the job-output pane; print ingest rate and key-press latency.

Targets on a 2-core machine: >= 100,000 lines/s ingest, worst key latency <= 100 ms.
Lines arrive in 4 KiB chunks cut anywhere (as from SSH), with progress-bar redraws mixed
in. Ingest is measured feeding as fast as the pane accepts; then the same lines stream at
100,000 lines/s while a key is pressed every 20 ms; its latency is the time from the
press until its binding has run. Runs headless (Textual's test driver), 120x40.

    .venv/bin/python bench/stream.py [--lines 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from textual.app import App, ComposeResult
from textual.binding import Binding

from inflab.tui.panes import JobOutput


class BenchApp(App):
    BINDINGS = [Binding("k", "ping", "ping")]

    def __init__(self):
        super().__init__()
        self.pings: list[float] = []

    def compose(self) -> ComposeResult:
        yield JobOutput(max_lines=20_000)

    def action_ping(self) -> None:
        self.pings.append(time.perf_counter())


def make_stream(n: int) -> list[str]:
    text = "".join(
        f"[{i:>7}] step {i % 500}/500 loss=0.{i % 997:03d} throughput=1234.5 samples/s\n"
        if i % 50
        else f"progress {i % 100}%\rprogress 100%\n"
        for i in range(n)
    )
    return [text[i : i + 4096] for i in range(0, len(text), 4096)]


async def ingest(n: int) -> float:
    """Lines per second the pane takes in, fed as fast as it accepts them."""
    app = BenchApp()
    chunks = make_stream(n)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.query_one(JobOutput)
        t0 = time.perf_counter()
        for i, c in enumerate(chunks):
            pane.feed(c)
            if i % 8 == 0:
                await asyncio.sleep(0)  # let timers and the screen run, as between network reads
        pane.finish()  # the last batch is written into the log
        elapsed = time.perf_counter() - t0
        await pilot.pause()
        assert len(pane.log.lines) == min(n, 20_000)
    return n / elapsed


async def latency(n: int, rate: float) -> list[float]:
    """Key-press latencies while n lines stream in at ``rate`` lines/s."""
    app = BenchApp()
    chunks = make_stream(n)
    per_chunk = n / len(chunks)
    latencies: list[float] = []
    async with app.run_test(size=(120, 40)):
        pane = app.query_one(JobOutput)
        done = asyncio.Event()

        async def producer():
            t0, fed = time.perf_counter(), 0
            while fed < len(chunks):
                due = min(len(chunks), int((time.perf_counter() - t0) * rate / per_chunk) + 1)
                for c in chunks[fed:due]:
                    pane.feed(c)
                fed = due
                await asyncio.sleep(0.005)
            done.set()

        task = asyncio.create_task(producer())
        while not done.is_set():
            before = len(app.pings)
            pressed = time.perf_counter()
            app.simulate_key("k")  # queued like a key from the terminal
            while len(app.pings) == before:
                await asyncio.sleep(0.001)
            latencies.append(app.pings[-1] - pressed)
            await asyncio.sleep(0.02)
        await task
    return latencies


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=200_000)
    args = ap.parse_args()
    rate = asyncio.run(ingest(args.lines))
    print(f"ingest: {args.lines:,} lines at {rate:,.0f} lines/s (target >= 100,000; ratio {rate / 100_000:.2f})")
    lat = asyncio.run(latency(args.lines, 100_000))
    worst = max(lat) * 1000
    print(
        f"key latency while {args.lines:,} lines stream at 100,000 lines/s: {len(lat)} presses, "
        f"median {statistics.median(lat) * 1000:.1f} ms, worst {worst:.1f} ms (target <= 100 ms; ratio {worst / 100:.2f})"
    )


if __name__ == "__main__":
    main()
