"""The instructor dashboard, driven with Pilot on a room source made here (no AWS).

The fake source hands out canned rooms built from :mod:`inflab.instructor.records`; its
``refresh`` sleeps a little (or waits on an event) the way a real one waits on AWS, and it
records every call so the tests can say what the screens asked for.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from typing import Callable

from rich.console import Console
from textual.widgets import Button, DataTable, Input, Static

from inflab.instructor.records import (
    FAILED,
    FINISHED,
    RUNNING,
    UNREACHABLE,
    WAITING,
    AccountPreflight,
    Check,
    CleanupResult,
    Instance,
    Room,
    Row,
    StepMark,
    summarize,
)
from inflab.tui.instructor import STUCK_STYLE, DashboardScreen, InstructorApp
from inflab.tui.instructor_screens import CleanupConfirm, CleanupScreen, ParticipantScreen, PreflightScreen
from inflab.tui.widgets import ConfirmModal, LogPane

SIZE = (160, 48)
LABELS = ("alice", "bob", "carol", "dave")
REASON = "The config profile (nope) could not be found"
LAUNCH_ERROR = (
    "InsufficientInstanceCapacity: We currently do not have sufficient inf1.2xlarge capacity in the "
    "Availability Zone you requested (us-east-1e)."
)
QUOTA_DETAIL = (
    "Running On-Demand Inf instances quota is 0 vCPUs; inf1.2xlarge needs 8. Ask for an increase: "
    "Service Quotas → Amazon EC2 → L-1945791B"
)


# -- the room --------------------------------------------------------------------------------------
def room_rows(now: float, *, later: bool = False) -> tuple[Row, ...]:
    """Four participants: waiting, running a sweep, failed at launch, unreachable. ``later``: the
    same people a while on (alice now running, bob finished)."""
    alice = Row(
        "alice",
        "us-east-1",
        "profile alice",
        account="111111111111",
        session="lab-alice",
        step="build-image",
        state=RUNNING if later else WAITING,
        since=now - 65,
        stuck_after_s=900,
        updated=now - 12,
        track="neuron",
        version="0.9.0",
    )
    bob = Row(
        "bob",
        "us-east-1",
        "profile bob",
        account="222222222222",
        session="lab-bob",
        step="batch-monitor",
        state=FINISHED if later else RUNNING,
        since=now - 200,
        stuck_after_s=1800,
        updated=now - 3,
        instances=(Instance("i-0b0b", "inf1.2xlarge", "running", now - 3600, "us-east-1a", 0.36),),
        batch_jobs={"RUNNING": 2, "SUCCEEDED": 1},
        compute_envs=("inflab-lab-bob VALID/ENABLED",),
        spend_usd=0.37,
        price_source="AWS price list 2026-05-01",
    )
    carol = Row(
        "carol",
        "us-east-1",
        "profile carol",
        account="333333333333",
        session="lab-carol",
        step="launch",
        state=FAILED,
        since=now - 30,
        stuck_after_s=600,
        updated=now - 30,
        error=LAUNCH_ERROR,
        history=(
            StepMark("credentials", "done", now - 300, now - 299),
            StepMark("keypair", "done", now - 299, now - 298),
            StepMark("launch", "failed", now - 60, now - 30, LAUNCH_ERROR),
        ),
    )
    dave = Row("dave", "us-east-1", "profile nope", state=UNREACHABLE, reason=REASON)
    return alice, bob, carol, dave


class FakeSource:
    """A RoomSource: ``rooms`` are served in turn (the last one again and again); each is a Room,
    a function of the time returning rows, or an exception to raise."""

    workshop = "neuron-101"

    def __init__(
        self, rooms: list, *, labels: tuple[str, ...] = LABELS, delay: float = 0.3, gate: threading.Event | None = None
    ):
        self.labels = labels
        self.rooms = rooms
        self.delay = delay
        self.gate = gate
        self.refresh_calls = 0
        self.refreshed = 0  # refreshes that returned
        self.refresh_threads: list[threading.Thread] = []
        self.last_room: Room | None = None
        self.resources_asked: list[str] = []
        self.resources_gate = threading.Event()
        self.resources_gate.set()
        self.cleanup_calls: list[tuple[list[str], bool]] = []
        self.cleanup_gate: threading.Event | None = None
        self.cleanup_results: list[CleanupResult] = []
        self.preflight_results: list[AccountPreflight] = []
        self.preflight_gate = threading.Event()
        self.preflight_gate.set()

    def refresh(self) -> Room:
        self.refresh_threads.append(threading.current_thread())
        item = self.rooms[min(self.refresh_calls, len(self.rooms) - 1)]
        self.refresh_calls += 1
        if self.gate is not None:
            assert self.gate.wait(30), "the test never opened the gate"
        time.sleep(self.delay)
        if isinstance(item, Exception):
            self.refreshed += 1
            raise item
        now = time.time()
        room = item if isinstance(item, Room) else Room(self.workshop, tuple(item(now)), now, self.delay)
        self.last_room = room
        self.refreshed += 1
        return room

    def resources(self, label: str) -> list[dict[str, str]]:
        self.resources_asked.append(label)
        assert self.resources_gate.wait(30), "the test never opened the resources gate"
        if label == "dave":
            raise RuntimeError("ProfileNotFound: " + REASON)
        return [
            {"type": "ec2:key-pair", "id": "key-0c4", "name": f"lab-{label}"},
            {"type": "ec2:security-group", "id": "sg-0c4", "name": f"lab-{label}-ssh"},
        ]

    def preflight(self) -> list[AccountPreflight]:
        assert self.preflight_gate.wait(30), "the test never opened the preflight gate"
        return self.preflight_results

    def cleanup(self, labels: list[str], *, delete_data: bool, log: Callable[[str], None]) -> list[CleanupResult]:
        self.cleanup_calls.append((list(labels), delete_data))
        log("cleanup: 3 participants in 3 accounts")
        if self.cleanup_gate is not None:
            assert self.cleanup_gate.wait(30), "the test never opened the cleanup gate"
        # progress comes from several threads, as the real one's does
        workers = [threading.Thread(target=log, args=(f"{label}: terminating the instance",)) for label in labels]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        log("cleanup: looking by tag for anything left")
        return self.cleanup_results


# -- helpers ---------------------------------------------------------------------------------------
async def wait_for(pilot, predicate: Callable[[], object], timeout: float = 15) -> bool:
    """Until ``predicate()`` holds (True) or ``timeout`` seconds pass (what it says then): generous, as
    it returns as soon as it holds, and a busy machine paints late."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if predicate():
            return True
        await pilot.pause(0.05)
    return bool(predicate())


def screen_text(app) -> str:
    """The screen as the user sees it, as plain text."""
    console = Console(
        width=app.size.width,
        height=app.size.height,
        file=io.StringIO(),
        record=True,
        legacy_windows=False,
        color_system=None,
    )
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


async def shows(pilot, app, *texts: str) -> bool:
    """The screen shows every one of ``texts`` once it has painted (later than the widgets' state on a
    busy machine)."""
    return await wait_for(pilot, lambda: all(t in screen_text(app) for t in texts))


def cells(screen, label: str) -> dict[str, str]:
    table = screen.query_one("#room", DataTable)
    return {
        str(col.key.value): str(value) for col, value in zip(table.ordered_columns, table.get_row(label), strict=True)
    }


def cell(screen, label: str, column: str):
    return screen.query_one("#room", DataTable).get_cell(label, column)


def text_of(widget: Static) -> str:
    return str(widget.render())


async def open_dashboard(pilot, app, refreshes: int = 1) -> DashboardScreen:
    screen = app.screen
    assert isinstance(screen, DashboardScreen)
    assert await wait_for(pilot, lambda: screen.refreshes >= refreshes), screen.status_text()
    await pilot.pause()
    return screen


# -- the tests -------------------------------------------------------------------------------------
async def test_the_room_shows_each_participant_and_the_summary():
    source = FakeSource([room_rows])
    app = InstructorApp(source, refresh_s=60)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_dashboard(pilot, app)
        assert source.refresh_threads[0] is not threading.main_thread()
        table = screen.query_one("#room", DataTable)
        assert [str(k.value) for k in table.rows] == list(LABELS)
        alice, bob, carol, dave = (cells(screen, label) for label in LABELS)
        assert (alice["step"], alice["state"], alice["account"]) == ("model · build-image", "waiting", "111111111111")
        assert (bob["step"], bob["state"]) == ("sweep · batch-monitor", "running")
        assert bob["instances"] == "1 inf1.2xlarge"
        assert bob["batch"] == "jobs 2 run · 1 ok / 1 CE"
        assert bob["spend"] == "$0.37"
        assert (carol["step"], carol["state"]) == ("provision · launch", "failed")
        assert "red" in str(cell(screen, "carol", "state").style)
        assert dave["step"] == REASON and dave["state"] == UNREACHABLE
        assert {dave[k] for k in ("instances", "batch", "spend", "on_step", "updated")} == {"—"}
        assert alice["updated"].endswith("s ago") and alice["on_step"].startswith("1:0")

        summary = text_of(screen.query_one("#room-summary", Static))
        expected = summarize(source.last_room.rows).line()
        assert summary.startswith(expected), (summary, expected)
        assert "prices: AWS price list 2026-05-01" in summary
        # the Step cell wraps the long reason; the summary line is on screen too
        assert await shows(pilot, app, "The config profile (nope)", "could not be found", expected), screen_text(app)
        status = text_of(screen.query_one("#room-status", Static))
        assert status.startswith("refreshed ") and " in 0.3 s · next in " in status
        assert app.sub_title == "neuron-101" and app.title == "inflab instructor"


async def test_a_row_becomes_stuck_while_you_watch():
    def rows(now: float) -> list[Row]:
        return [
            Row(
                "erin",
                "us-east-1",
                "shared",
                account="444444444444",
                session="lab-erin",
                step="compile",
                state=RUNNING,
                since=now - 5,
                stuck_after_s=12,
                updated=now,
            )
        ]  # stuck 7 s after the fetch (time enough to read the row first on a busy machine)

    source = FakeSource([rows], labels=("erin",), delay=0.05)
    app = InstructorApp(source, refresh_s=60)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_dashboard(pilot, app)
        seen_at = time.monotonic()
        first = cells(screen, "erin")
        assert first["state"] == "running" and "STUCK" not in first["state"]
        assert cell(screen, "erin", "on_step").style == ""
        assert await wait_for(pilot, lambda: cells(screen, "erin")["state"] == "STUCK · running", timeout=20)
        assert await wait_for(pilot, lambda: time.monotonic() - seen_at >= 1.5)
        await pilot.pause(0.6)
        later = cells(screen, "erin")
        assert later["on_step"] > first["on_step"], (first, later)  # m:ss, same width: ticks by itself
        assert str(cell(screen, "erin", "on_step").style) == STUCK_STYLE
        assert source.refresh_calls == 1  # the tick did it, not a refresh
        assert " 1 stuck " in text_of(screen.query_one("#room-summary", Static))


async def test_refresh_keeps_the_cursor_and_a_failed_refresh_keeps_the_rows():
    source = FakeSource(
        [
            room_rows,
            lambda now: room_rows(now, later=True),
            RuntimeError("ExpiredToken: The security token included in the request is expired\nmore"),
            lambda now: room_rows(now) + (Row("erin", "us-east-1", "shared", state="not started"),),
        ]
    )
    app = InstructorApp(source, refresh_s=60)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_dashboard(pilot, app)
        table = screen.query_one("#room", DataTable)
        await pilot.press("down", "down")
        assert screen.highlighted_label() == "carol"

        await pilot.press("r")
        assert await wait_for(pilot, lambda: screen.refreshes == 2)
        assert screen.highlighted_label() == "carol" and table.cursor_row == 2
        assert cells(screen, "alice")["state"] == "running" and cells(screen, "bob")["state"] == "finished"

        await pilot.press("r")
        assert await wait_for(pilot, lambda: bool(screen.error))
        status = text_of(screen.query_one("#room-status", Static))
        assert status.startswith("refresh failed at ")
        assert "RuntimeError: ExpiredToken: The security token included in the request is expired" in status
        assert "more" not in status and "\n" not in status
        assert table.row_count == 4 and cells(screen, "alice")["state"] == "running"  # the last good rows stay
        assert screen.highlighted_label() == "carol"

        await pilot.press("r")  # a new participant: the table is rebuilt, the cursor stays on carol
        assert await wait_for(pilot, lambda: screen.refreshes == 3)
        assert table.row_count == 5 and screen.highlighted_label() == "carol"
        assert not screen.error and text_of(screen.query_one("#room-status", Static)).startswith("refreshed ")


async def test_details_of_a_failed_and_an_unreachable_participant():
    source = FakeSource([room_rows])
    source.resources_gate.clear()
    app = InstructorApp(source, refresh_s=60)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_dashboard(pilot, app)
        await pilot.press("down", "down", "enter")
        details = app.screen
        assert isinstance(details, ParticipantScreen) and details.row.label == "carol"
        assert text_of(details.query_one("#resources-status", Static)) == "looking…"
        source.resources_gate.set()
        assert await wait_for(pilot, lambda: details.resources is not None)
        assert source.resources_asked == ["carol"]
        header = text_of(details.query_one("#participant-header", Static))
        assert "carol" in header and "333333333333" in header and "lab-carol" in header
        assert text_of(details.query_one("#participant-error", Static)) == f"Last error: {LAUNCH_ERROR}"
        history = details.query_one("#history", DataTable)
        steps = [[str(c) for c in history.get_row_at(i)] for i in range(history.row_count)]
        assert [s[:2] for s in steps] == [["credentials", "done"], ["keypair", "done"], ["launch", "failed"]]
        assert steps[2][3] == "0:30" and steps[2][4] == LAUNCH_ERROR
        resources = details.query_one("#resources", DataTable)
        found = [[str(c) for c in resources.get_row_at(i)] for i in range(resources.row_count)]
        assert found == [
            ["ec2:key-pair", "lab-carol", "key-0c4", ""],
            ["ec2:security-group", "lab-carol-ssh", "sg-0c4", ""],
        ]
        assert await shows(pilot, app, "Last error: InsufficientInstanceCapacity"), screen_text(app)

        await pilot.press("escape")
        assert app.screen is screen

        await pilot.press("down", "enter")  # dave: could not be read
        details = app.screen
        assert isinstance(details, ParticipantScreen) and details.row.label == "dave"
        assert text_of(details.query_one("#participant-error", Static)) == f"Could not read this participant: {REASON}"
        status = details.query_one("#resources-status", Static)
        assert await wait_for(pilot, lambda: text_of(status).startswith("Could not look for resources: "))
        assert REASON in text_of(status)
        await pilot.press("escape")
        assert app.screen is screen


async def test_preflight_shows_what_will_fail():
    source = FakeSource([room_rows])
    source.preflight_results = [
        AccountPreflight(
            "111111111111",
            "us-east-1",
            "profile alice",
            ("alice", "bob"),
            (
                Check("credentials", True, "arn:aws:iam::111111111111:user/alice"),
                Check("quota", False, QUOTA_DETAIL),
                Check("offerings", None, "could not ask: AccessDenied for ec2:DescribeInstanceTypeOfferings"),
            ),
        )
    ]
    source.preflight_gate.clear()
    app = InstructorApp(source, refresh_s=60)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_dashboard(pilot, app)
        await pilot.press("p")
        pre = app.screen
        assert isinstance(pre, PreflightScreen)
        assert text_of(pre.query_one("#preflight-status", Static)).startswith(
            "checking 4 account(s) for 4 participant(s)… ("
        )
        source.preflight_gate.set()
        assert await wait_for(pilot, lambda: pre.results is not None)
        summary = text_of(pre.query_one("#preflight-summary", Static)).splitlines()
        assert summary[0].startswith("✗ 111111111111 · us-east-1 (alice, bob): quota — Running On-Demand")
        assert summary[0].endswith("WILL FAIL there")
        assert summary[1].startswith("? 111111111111 · us-east-1 (alice, bob): offerings could not be checked")
        assert summary[-1] == "0 of 1 account(s) ready · 1 will fail"
        table = pre.query_one("#preflight-table", DataTable)
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        assert [r[2:4] for r in rows] == [["credentials", "✓"], ["quota", "✗"], ["offerings", "?"]]
        assert rows[1][4] == QUOTA_DETAIL
        # the long detail wraps inside its column, its end still on screen
        assert await shows(pilot, app, "L-1945791B"), screen_text(app)
        await pilot.press("escape")
        assert app.screen is screen


async def test_cleanup_everyone_after_typing_everyone():
    source = FakeSource([room_rows], delay=0.05)
    source.cleanup_gate = threading.Event()
    source.cleanup_results = [
        CleanupResult("alice", "111111111111", "us-east-1", ("lab-alice",)),
        CleanupResult(
            "bob",
            "222222222222",
            "us-east-1",
            ("lab-bob",),
            kept=({"type": "s3:bucket", "id": "inflab-lab-bob-results", "name": "inflab-lab-bob-results"},),
            active=("lab-bob: step batch-monitor was running",),
        ),
        CleanupResult(
            "carol",
            "333333333333",
            "us-east-1",
            ("lab-carol",),
            errors=("terminate: timed out",),
            leftovers=({"type": "ec2:instance", "id": "i-0dead", "name": "lab-carol", "state": "shutting-down"},),
        ),
        CleanupResult("dave", "", "us-east-1", (), errors=(REASON,), looked=False),
    ]
    app = InstructorApp(source, refresh_s=60)
    async with app.run_test(size=SIZE) as pilot:
        try:
            screen = await open_dashboard(pilot, app)
            await pilot.press("c")  # one participant: asks for alice's label; Escape cancels
            modal = app.screen
            assert isinstance(modal, CleanupConfirm) and modal.expected == "alice"
            await pilot.press("escape")
            assert app.screen is screen

            await pilot.press("C")
            modal = app.screen
            assert isinstance(modal, CleanupConfirm) and modal.expected == "everyone"
            confirm = modal.query_one("#confirm", Button)
            assert confirm.disabled and modal.query_one("#confirm-input", Input).has_focus
            await pilot.press(*"everyon")
            assert confirm.disabled
            await pilot.press("enter")  # not yet: nothing happens
            assert app.screen is modal and not source.cleanup_calls
            await pilot.press("e")
            assert not confirm.disabled
            await pilot.click("#confirm")
            cleanup = app.screen
            assert isinstance(cleanup, CleanupScreen)
            assert await wait_for(pilot, lambda: len(source.cleanup_calls) == 1)
            assert source.cleanup_calls == [(list(LABELS), False)]
            status = cleanup.query_one("#cleanup-status", Static)
            assert text_of(status).startswith("cleaning up 4 participants… (0:0")

            await pilot.press("q")  # quitting while it runs asks first
            assert isinstance(app.screen, ConfirmModal)
            await pilot.press("n")
            await pilot.press("escape")  # and Back waits for the end
            assert app.screen is cleanup
        finally:
            source.cleanup_gate.set()

        assert await wait_for(pilot, lambda: cleanup.results is not None)
        log = cleanup.query_one(LogPane)
        assert await wait_for(pilot, lambda: len(log.history) == 6)
        assert log.history[0] == "cleanup: 3 participants in 3 accounts"
        assert sorted(log.history[1:5]) == sorted(f"{label}: terminating the instance" for label in LABELS)
        assert log.history[5] == "cleanup: looking by tag for anything left"
        assert text_of(status).startswith("Done in 0:0") and "2 of 4 participant(s) clean" in text_of(status)
        table = cleanup.query_one("#cleanup-table", DataTable)
        rows = {str(table.get_row_at(i)[0]): [str(c) for c in table.get_row_at(i)] for i in range(table.row_count)}
        assert rows["alice"][4:7] == ["✓ ok", "nothing tagged is left", "—"]
        assert rows["bob"][4:7] == [
            "✓ ok\n⚠ looked still active: lab-bob: step batch-monitor was running",
            "nothing tagged is left",
            "inflab-lab-bob-results",
        ]
        assert rows["carol"][4:6] == ["✗ terminate: timed out", "ec2:instance lab-carol [shutting-down]"]
        assert rows["dave"][4:6] == [f"✗ {REASON}", "not looked at: the account could not be read"]
        assert await shows(pilot, app, "terminating the instance", "ec2:instance lab-carol [shutting-down]"), (
            screen_text(app)
        )
        assert await wait_for(pilot, lambda: screen.refreshes == 2)  # the room is read again after a cleanup
        assert not app.cleaning
        await pilot.press("escape")
        assert app.screen is screen


async def test_the_screen_answers_while_a_refresh_is_slow():
    gate = threading.Event()
    source = FakeSource([room_rows], gate=gate, delay=0.0)
    app = InstructorApp(source, refresh_s=60)
    try:
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            assert isinstance(screen, DashboardScreen)
            assert await wait_for(pilot, lambda: source.refresh_calls == 1)
            table = screen.query_one("#room", DataTable)
            assert table.row_count == 4  # the roster is there before the first answer
            await pilot.press("down")
            assert await wait_for(pilot, lambda: table.cursor_row == 1, timeout=10)
            assert source.refreshed == 0  # the refresh is still waiting: the keys went through anyway
            assert text_of(screen.query_one("#room-status", Static)).startswith("refreshing… (")
            gate.set()
            assert await wait_for(pilot, lambda: screen.refreshes == 1)
            assert screen.highlighted_label() == "bob" and cells(screen, "bob")["state"] == "running"
    finally:
        gate.set()
