"""The instructor dashboard over a room of 60: how long one refresh takes (target <= 10 s) and how
quickly the screen answers a key while a refresh runs (target <= 100 ms).

Setup (untimed): a fresh sandbox and a demo room of N real sandbox sessions left at different
steps (``inflab instructor --demo N``) — one shared account, as a workshop in one account is.
Then:

1. a refresh of that room (N sessions, one account: beacons, tagged instances, Batch), R times;
2. the same N participants each reached by their own assumed role (N emulated accounts, each
   read on its own: AssumeRole + the same calls per account) at the roster's concurrency and at 1,
   to show what bounded concurrency buys;
3. the dashboard (Textual, headless) on the N-account room: `down` pressed every 50 ms while
   refreshes run back to back (refresh_s 0.5, against the roster's 10); each press's latency is the
   time from the key entering the app's queue until the cursor has moved.

    .venv/bin/python bench/instructor.py [--participants 60] [--repeat 3] [--home DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def timed_refreshes(reader, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        room = reader.refresh()
        out.append(room.took_s)
    return out


def per_account(roster, concurrency: int):
    """The same participants, each in an emulated account of its own (reached by an assumed role)."""
    from inflab.instructor.roster import Participant

    people = tuple(
        Participant(label=p.label, region=p.region, role_arn=f"arn:aws:iam::{100000000000 + i:012d}:role/Inflab")
        for i, p in enumerate(roster.participants)
    )
    return dataclasses.replace(roster, participants=people, concurrency=concurrency)


async def key_latency(reader, presses: int) -> tuple[list[float], int]:
    from textual.widgets import DataTable

    from inflab.tui.instructor import InstructorApp

    app = InstructorApp(reader, refresh_s=0.5)  # refreshes back to back while the keys are pressed
    latencies: list[float] = []
    async with app.run_test(size=(160, 48)) as pilot:
        table = app.screen.query_one(DataTable)
        deadline = time.monotonic() + 60
        while table.row_count < len(reader.labels) and time.monotonic() < deadline:
            await pilot.pause(0.1)
        refreshes_before = getattr(app.screen, "refreshes", 0)
        for i in range(presses):
            if table.cursor_row >= table.row_count - 1:
                table.move_cursor(row=0)
                await pilot.pause()
            before = table.cursor_row
            t0 = time.perf_counter()
            app.simulate_key("down")  # queued like a key from the terminal
            while table.cursor_row == before and time.perf_counter() - t0 < 5:
                await asyncio.sleep(0)
            latencies.append(time.perf_counter() - t0)
            await asyncio.sleep(0.05)
        refreshes = getattr(app.screen, "refreshes", 0) - refreshes_before
    return latencies, refreshes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--participants", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--presses", type=int, default=200)
    ap.add_argument("--home", help="INFLAB_HOME to use (default: a new temporary one, removed after)")
    args = ap.parse_args()
    home = Path(args.home or tempfile.mkdtemp(prefix="inflab-bench-"))
    os.environ["INFLAB_HOME"] = str(home)

    from inflab import sandbox
    from inflab.instructor.demo import make_room
    from inflab.instructor.room import RoomReader
    from inflab.session import Store

    store = Store(home)
    try:
        t0 = time.monotonic()
        sandbox.ensure_running(home)
        roster = make_room(store, args.participants, log=lambda line: None)
        print(f"setup: sandbox + demo room of {args.participants} sessions in {time.monotonic() - t0:.1f} s (untimed)")

        reader = RoomReader(roster, home)
        shared = timed_refreshes(reader, args.repeat)
        room = reader.refresh()
        reader.close()
        print(
            f"1. one shared account, {len(room.rows)} sessions: refresh median {statistics.median(shared):.2f} s "
            f"(runs: {', '.join(f'{s:.2f}' for s in shared)}) — {room.summary().line()}"
        )

        wide = per_account(roster, roster.concurrency)
        reader = RoomReader(wide, home)
        timed_refreshes(reader, 1)  # first AssumeRole per account and thread
        many = timed_refreshes(reader, args.repeat)
        serial_reader = RoomReader(per_account(roster, 1), home)
        timed_refreshes(serial_reader, 1)
        serial = timed_refreshes(serial_reader, 1)
        serial_reader.close()
        print(
            f"2. {args.participants} accounts (assumed roles), concurrency {wide.concurrency}: refresh median "
            f"{statistics.median(many):.2f} s (target <= 10 s: {'met' if statistics.median(many) <= 10 else 'MISSED'}); "
            f"concurrency 1: {serial[0]:.2f} s; speed-up {serial[0] / statistics.median(many):.1f}x"
        )

        latencies, refreshes = asyncio.run(key_latency(reader, args.presses))
        reader.close()
        ms = sorted(1000 * x for x in latencies)
        p95 = ms[max(0, int(round(0.95 * len(ms))) - 1)]
        print(
            f"3. key latency during refreshes ({len(ms)} presses, {refreshes} refreshes of {args.participants} "
            f"accounts meanwhile): median {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms, max {ms[-1]:.1f} ms "
            f"(target <= 100 ms: {'met' if p95 <= 100 else 'MISSED'})"
        )
    finally:
        sandbox.stop(home)
        if not args.home:
            import shutil

            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
