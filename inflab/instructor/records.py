"""What instructor mode passes around: typed records, no AWS calls, no Textual.

The room reader (:mod:`.room`), preflight (:mod:`.preflight`), cleanup (:mod:`.cleanup`), the CLI
and the dashboard screen all speak these. ``to_json`` gives the ``--json`` shapes.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Protocol

from .. import track

# Row.state values
RUNNING, FAILED, CANCELLED, WAITING, FINISHED = "running", "failed", "cancelled", "waiting", "finished"
NOT_STARTED, NO_SESSION, UNREACHABLE = "not started", "no session", "unreachable"
#: the account answered, but what it shows for this participant is not what inflab writes (a beacon
#: that does not parse, a session name that is not one): the reason says what; tags still show
UNREADABLE = "unreadable"

# The workshop's exercises, by the steps they hold (the summary line counts participants per exercise).
EXERCISES = {name: track.steps_of(name) for name in track.EXERCISES}
exercise_of = track.exercise_of


@dataclass(frozen=True)
class StepMark:
    """One step of a session's history, as its beacon tells it."""

    step: str
    state: str  # done, failed, running, cancelled, stale, undone, skipped
    started: float | None = None  # epoch seconds
    finished: float | None = None
    error: str = ""


@dataclass(frozen=True)
class Instance:
    """An instance found by the session's tag."""

    id: str
    type: str
    state: str  # pending running stopping stopped shutting-down
    launched: float  # epoch seconds
    zone: str = ""
    per_hour: float | None = None  # USD; None: no price known for the type

    def hours(self, now: float | None = None) -> float:
        return max(0.0, ((now or time.time()) - self.launched) / 3600)

    def spend(self, now: float | None = None) -> float:
        return (self.per_hour or 0.0) * self.hours(now)


@dataclass(frozen=True)
class Row:
    """One participant as the last refresh found them."""

    label: str
    region: str
    reach: str  # how the account is reached: "profile NAME", "role ARN", "shared"
    account: str = ""  # 12 digits; "" when the account could not be reached
    session: str = ""  # the session the row follows ("" when none was found)
    step: str = ""  # the current step: the running or failed one, else the next to run
    state: str = NO_SESSION  # one of the Row.state values above
    since: float | None = None  # epoch seconds: when the session entered this step/state
    stuck_after_s: float = 0.0  # the roster's threshold for this step (0: never stuck)
    instances: tuple[Instance, ...] = ()
    batch_jobs: dict[str, int] = field(default_factory=dict)  # Batch job state -> count
    compute_envs: tuple[str, ...] = ()  # "NAME STATE/STATUS"
    spend_usd: float = 0.0  # instance hours x price, so far
    price_source: str = ""
    updated: float | None = None  # when the session last published its beacon
    error: str = ""  # the session's last error line
    reason: str = ""  # why the row could not be read (unreachable, unreadable); "" when it was
    warnings: tuple[str, ...] = ()  # what the account shows that could not be used (a bad beacon or tag)
    history: tuple[StepMark, ...] = ()
    track: str = ""
    version: str = ""  # the participant's inflab version

    @property
    def exercise(self) -> str:
        return exercise_of(self.step)

    def on_step_s(self, now: float | None = None) -> float | None:
        if self.since is None:
            return None
        return max(0.0, (now or time.time()) - self.since)

    def stuck(self, now: float | None = None) -> bool:
        """Past the roster's threshold on a step it has not finished (running, waiting or failed)."""
        on = self.on_step_s(now)
        return (
            on is not None
            and self.stuck_after_s > 0
            and on >= self.stuck_after_s
            and self.state in (RUNNING, WAITING, FAILED, CANCELLED)
        )

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        out = asdict(self)
        out["exercise"] = self.exercise
        out["on_step_s"] = self.on_step_s(now)
        out["stuck"] = self.stuck(now)
        return out


@dataclass(frozen=True)
class Summary:
    """The room in one line."""

    participants: int
    at: dict[str, int]  # exercise -> participants on it
    stuck: int
    failed: int
    finished: int
    unreachable: int
    spend_usd: float
    price_source: str = ""
    unreadable: int = 0

    def line(self) -> str:
        at = " · ".join(f"{n} at {ex}" for ex, n in self.at.items() if n) or "nobody started"
        unreadable = f" · {self.unreadable} unreadable" if self.unreadable else ""
        return (
            f"{self.participants} participants: {at} · {self.stuck} stuck · {self.failed} failed · "
            f"{self.finished} finished · {self.unreachable} unreachable{unreadable} · spend ${self.spend_usd:,.2f}"
        )


def summarize(rows: list[Row] | tuple[Row, ...], now: float | None = None) -> Summary:
    now = now or time.time()
    at = {name: 0 for name in EXERCISES}
    for r in rows:
        if r.state not in (FINISHED, UNREACHABLE, NO_SESSION, UNREADABLE) and r.exercise:
            at[r.exercise] += 1
    sources = sorted({r.price_source for r in rows if r.price_source})
    return Summary(
        participants=len(rows),
        at=at,
        stuck=sum(r.stuck(now) for r in rows),
        failed=sum(r.state == FAILED for r in rows),
        finished=sum(r.state == FINISHED for r in rows),
        unreachable=sum(r.state == UNREACHABLE for r in rows),
        spend_usd=round(sum(i.spend(now) for r in rows for i in r.instances), 4),
        price_source="; ".join(sources),
        unreadable=sum(r.state == UNREADABLE for r in rows),
    )


@dataclass(frozen=True)
class Room:
    """One refresh of the whole room."""

    workshop: str
    rows: tuple[Row, ...]
    at: float  # when the refresh finished (epoch seconds)
    took_s: float  # how long it took

    def summary(self, now: float | None = None) -> Summary:
        return summarize(self.rows, now)

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        now = now or time.time()
        return {
            "workshop": self.workshop,
            "at": self.at,
            "took_s": round(self.took_s, 3),
            "summary": asdict(self.summary(now)),
            "rows": [r.to_json(now) for r in self.rows],
        }


# -- preflight ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    """One preflight check for one account. ``ok`` None: could not tell (the detail says why)."""

    name: str  # "credentials", "offerings", "quota", "default-vpc"
    ok: bool | None
    detail: str  # one line a person can act on


@dataclass(frozen=True)
class AccountPreflight:
    """Preflight of one account and region, for the participants who use it."""

    account: str  # 12 digits; "" when the credentials did not work
    region: str
    reach: str  # "profile NAME", "role ARN", "shared"
    participants: tuple[str, ...]  # labels
    checks: tuple[Check, ...]

    @property
    def failing(self) -> list[Check]:
        return [c for c in self.checks if c.ok is False]

    @property
    def unknown(self) -> list[Check]:
        return [c for c in self.checks if c.ok is None]

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = not self.failing
        return out


# -- cleanup ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CleanupResult:
    """What cleaning up one participant did, and what a final look by tag still found."""

    label: str
    account: str
    region: str
    sessions: tuple[str, ...]  # the sessions found and removed in that account (shared: the participant's)
    errors: tuple[str, ...] = ()  # steps whose undo failed, names not cleaned, or why the account could not be reached
    leftovers: tuple[dict[str, str], ...] = ()  # still tagged after the cleanup (resource dicts as `inflab resources`)
    kept: tuple[dict[str, str], ...] = ()  # left on purpose (the results bucket, unless delete_data)
    looked: bool = True  # False: the account could not be read, so nothing was looked at (or removed)
    active: tuple[str, ...] = ()  # sessions that were still running when cleaned ("NAME: why it looked active")

    @property
    def ok(self) -> bool:
        return self.looked and not self.errors and not self.leftovers

    def outcome(self) -> str:
        """What the final look found, in words (never "nothing left" without having looked)."""
        if not self.looked:
            return "not looked at: the account could not be read"
        if not self.sessions:
            return "no session found for this participant: nothing removed"
        if self.leftovers:
            return "still tagged: " + ", ".join(
                f"{x.get('type', '?')} {x.get('id') or x.get('name', '?')}" for x in self.leftovers
            )
        return "nothing tagged is left"

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        return out


class RoomSource(Protocol):
    """What the dashboard needs from the room (the real one reads AWS; tests may hand in their own).

    Every method blocks (AWS calls): the screen calls them from thread workers, never on the UI loop.
    """

    workshop: str
    labels: tuple[str, ...]  # the participants, in roster order

    def refresh(self) -> Room:
        """Read every participant (bounded concurrency; an unreachable one is a row with its reason)."""

    def resources(self, label: str) -> list[dict[str, str]]:
        """Everything tagged for the participant's session(s), as `inflab resources --json` rows."""

    def preflight(self) -> list[AccountPreflight]:
        """Preflight every account the roster names."""

    def cleanup(self, labels: list[str], *, delete_data: bool, log: Callable[[str], None]) -> list[CleanupResult]:
        """Remove everything the participants' sessions made, then look by tag; ``log`` gets progress lines
        (called from worker threads)."""
