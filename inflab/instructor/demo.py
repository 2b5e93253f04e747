"""A room to rehearse on: N sandbox sessions left at different steps (one failed), and their roster.

Each session is a real sandbox session run by the engine up to its stop — so its beacon, its key
pair, security group and instance are real in the emulated account — and one launch is refused
with the capacity error AWS gives when a zone has no inf1 left (a sandbox fault, set only while
that session launches).
"""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from .. import config, track
from ..engine import Engine
from ..session import Store
from .roster import Participant, Roster

NAMES = (
    "ana",
    "ben",
    "cy",
    "dee",
    "eli",
    "fay",
    "gus",
    "hal",
    "ivy",
    "jo",
    "kai",
    "lea",
    "max",
    "noa",
    "oli",
    "pia",
    "quin",
    "rae",
    "sam",
    "tia",
)
# Where the sessions stop, in turn: after these steps of the provisioning exercise (by their place
# in it); the third session (None) is the failed one, refused at the first launch.
_PROVISION = track.steps_of("provision")
STOPS = tuple(_PROVISION[i] if i is not None else None for i in (2, -1, None, 3, -2, 0, 5))
FAILS_AT = track.first("provides_host").id
MAX_ROOM = 60


def label(i: int) -> str:
    return NAMES[i % len(NAMES)] + (str(i // len(NAMES) + 1) if i >= len(NAMES) else "")


def plan(n: int) -> list[tuple[str, str | None]]:
    """(label, stop) per participant; stop None: the one that fails at launch."""
    out = []
    for i in range(n):
        stop = STOPS[i % len(STOPS)]
        if stop is None and any(s is None for _, s in out):
            stop = STOPS[0]  # one failed participant is enough to see
        out.append((label(i), stop))
    if n < 3 and all(s is not None for _, s in out):
        out[-1] = (out[-1][0], None)
    return out


def make_room(store: Store, n: int, *, log: Callable[[str], None], workers: int = 2) -> Roster:
    from .. import sandbox as sb

    if not 1 <= n <= MAX_ROOM:
        raise ValueError(f"--demo: {n} is not a room size (1..{MAX_ROOM})")
    prefix = f"room-{secrets.token_hex(2)}"
    people = plan(n)
    names = {lab: f"{prefix}-{lab}" for lab, _ in people}

    def run(lab: str, stop: str | None) -> None:
        name = names[lab]
        cfg = config.from_dict({"lab": {"participant": lab}}, sandbox=True)
        store.create_session(name, cfg.data, sandbox=True, track=cfg.track)
        engine = Engine(store, name)
        result = engine.run(stop or FAILS_AT)
        where = f"stopped after {stop}" if result.ok else f"{result.step} failed: {result.error}"
        log(f"{lab}: session {name} {where}")

    failing = [(lab, stop) for lab, stop in people if stop is None]
    for lab, _ in failing:  # alone: the capacity fault applies to every launch while it is set
        info = sb.ensure_running(store.home)
        before = sb.get_faults(info)
        sb.set_faults(info, {**before, "run_instances": {"*": "InsufficientInstanceCapacity"}})
        try:
            run(lab, None)
        finally:
            sb.set_faults(info, before)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for f in [pool.submit(run, lab, stop) for lab, stop in people if stop is not None]:
            f.result()
    region = config.from_dict({}, sandbox=True).region
    return Roster(
        name=f"sandbox rehearsal ({n} participants)",
        region=region,
        sandbox=True,
        participants=tuple(Participant(label=lab, region=region, shared=True, session=names[lab]) for lab, _ in people),
        stuck_min={"default": 20.0},
    )
