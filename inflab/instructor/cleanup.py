"""Clean up after a participant from the instructor's machine.

The participant's session store is on their laptop, not here; what the lab made is found the way
``inflab cleanup`` verifies it — by name and by the ``inflab:session`` tag. So each session is
cleaned by the lab's own cleanup (every step's undo, newest first, then the look by tag) run on a
stand-in session: a throwaway store holding only the session's name and the configuration values
its resource names follow from (the beacon carries them; without a readable beacon the defaults —
tags decide what is there, the beacon only helps find it by name). The stand-in publishes no
beacon, and the cleanup deletes the participant's, readable or not.

One cleanup at a time per lab home: an OS lock (released by the kernel if the holder dies) under
``<home>/locks/``; a second says who holds it. The stand-in stores live under
``<home>/instructor-cleanup/`` (not the system's temporary directory), and what a stopped cleanup
left there is removed when the next one starts.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .. import config, faultpoints
from ..aws import Aws
from ..aws.beacon import Beacon, Names
from ..config import SESSION_NAME_RE
from ..engine import Engine
from ..errors import InflabError, InputError
from ..events import StepLogged, StepStateChanged
from ..session import SessionBusy, SessionLock, Store
from ..untrusted import shown
from .records import CleanupResult

LOCK_NAME = "instructor.cleanup"  # <home>/locks/instructor.cleanup.lock (a dot: never a session's lock)
WORK_DIR = "instructor-cleanup"  # <home>/instructor-cleanup/<session>-<random>: the stand-in stores
ACTIVE_S = 60.0  # a beacon written this recently: the participant's lab is still going


class CleanupBusy(InputError, RuntimeError):
    """Another cleanup holds this lab home's lock; the message says who (pid, command, since when)."""


class CleanupError(InflabError, RuntimeError):
    """The cleanup cannot start here (its work directory is not one this user owns)."""


@contextmanager
def exclusive(home: Path, command: str) -> Iterator[Path]:
    """Hold the lab home's cleanup lock for as long as the block runs; yields the directory for
    stand-in stores. :class:`CleanupBusy` (nothing done) when another cleanup holds it."""
    lock = SessionLock(Path(home), LOCK_NAME)
    try:
        lock.acquire(command)
    except SessionBusy:
        raise CleanupBusy(
            f"another cleanup is running from this lab's home: {lock.holder()}; "
            "wait for it to end (nothing was removed)"
        ) from None
    try:
        yield work_dir(Path(home))
    finally:
        lock.release()


def work_dir(home: Path) -> Path:
    """``<home>/instructor-cleanup``: a directory of this user's, private (0700)."""
    d = home / WORK_DIR
    try:
        d.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = os.lstat(d)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise CleanupError(f"{d} is not a directory of this user's: move it away and run the cleanup again")
    os.chmod(d, 0o700)
    return d


def clear_leftovers(work: Path) -> int:
    """Remove what a stopped cleanup left in ``work`` (call it holding the lock); how many entries."""
    n = 0
    for entry in list(work.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        n += 1
    return n


def stand_in_config(names: Names | None, region: str, *, sandbox: bool) -> config.LabConfig:
    """The configuration a session's names follow from: the beacon's, else the defaults (in ``region``)."""
    user = (names or Names()).config()
    user.setdefault("aws", {})["region"] = region
    user.setdefault("lab", {})["beacon"] = False
    try:
        return config.from_dict(user, sandbox=sandbox)
    except (
        config.ConfigError
    ):  # a beacon from another version: the defaults find what they can, the look by tag the rest
        return config.from_dict({"aws": {"region": region}, "lab": {"beacon": False}}, sandbox=sandbox)


def activity(doc: Beacon | None, modified: float | None, now: float | None = None) -> str:
    """Why a session looks like it is still running ("" when it does not): a step running, or a beacon
    written in the last minute (AWS's time of the write when known)."""
    now = now or time.time()
    why = []
    if doc is not None and doc.state == "running":
        why.append(f"step {shown(doc.step, 40)} was running")
    last = modified if modified is not None else (doc.updated if doc is not None else None)
    if last is not None and now - last < ACTIVE_S:
        why.append(f"its beacon was written {max(0, int(now - last))} s before")
    return " and ".join(why)


def clean_session(
    aws: Aws, session: str, names: Names | None, *, runtime, delete_data: bool, log: Callable[[str], None], work: Path
) -> tuple[list[str], list[dict], list[dict]]:
    """Remove everything ``session`` made in ``aws``'s account; (errors, leftovers, kept)."""
    if not SESSION_NAME_RE.fullmatch(session):  # the room never passes one: a name is a path below
        raise ValueError(f"{shown(repr(session), 80)} is not a session name")
    sandbox = runtime.kind == "sandbox"
    cfg = stand_in_config(names, aws.region, sandbox=sandbox)

    def listener(ev) -> None:
        if isinstance(ev, StepLogged):
            log(ev.message)
        elif isinstance(ev, StepStateChanged) and ev.state == "failed":
            log(f"✗ {ev.step}: {ev.message}")

    with tempfile.TemporaryDirectory(prefix=f"{session}-", dir=work) as tmp:  # 0700, gone afterwards
        store = Store(Path(tmp))
        store.create_session(session, cfg.data, sandbox=sandbox, track=cfg.track)
        faultpoints.hit("instructor-cleanup:stand-in")  # a cleanup killed here leaves this store behind
        engine = Engine(store, session, listener=listener, aws=aws, runtime=runtime)
        errors, leftovers = engine.cleanup(delete_data=delete_data)
        return errors, leftovers, list(engine.kept)


def clean_participant(
    label: str,
    aws: Aws,
    account: str,
    sessions: list[str],
    beacons: dict[str, Beacon],
    modified: dict[str, float],
    *,
    refused: list[str] | tuple[str, ...] = (),
    runtime,
    delete_data: bool,
    log: Callable[[str], None],
    work: Path,
) -> CleanupResult:
    """Clean each of the participant's sessions; ``refused``: lines for names that are not session
    names (reported as errors, never cleaned)."""
    errors: list[str] = list(refused)
    leftovers: list[dict] = []
    kept: list[dict] = []
    active: list[str] = []
    for line in refused:
        log(f"{label}: ✗ {line}")
    if not sessions:
        log(f"{label}: no session found in account {account} ({aws.region}): nothing to remove")
    for session in sessions:
        busy = activity(beacons.get(session), modified.get(session))
        if busy:
            active.append(f"{session}: {busy}")
            log(f"{label}/{session}: ⚠ looks still active ({busy}): if it is, its lab stops at its next step")
        log(f"{label}: cleaning up session {session} in account {account} ({aws.region})")
        doc = beacons.get(session)
        try:
            e, left, k = clean_session(
                aws,
                session,
                doc.names if doc else None,
                runtime=runtime,
                delete_data=delete_data,
                log=lambda line, s=session: log(f"{label}/{s}: {line}"),
                work=work,
            )
        except Exception as exc:  # the account stopped answering half-way
            from ..engine import describe_exception

            e, left, k = [f"{session}: {describe_exception(exc)}"], [], []
        errors += [f"{session}: {x}" if not x.startswith(f"{session}:") else x for x in e]
        leftovers += [dict(r, session=session) for r in left]
        kept += [dict(r, session=session) for r in k]
        log(
            f"{label}/{session}: "
            + ("nothing tagged for it is left" if not left else f"{len(left)} resource(s) still tagged")
            + (" but the results bucket (kept)" if k else "")
        )
    return CleanupResult(
        label, account, aws.region, tuple(sessions), tuple(errors), tuple(leftovers), tuple(kept), active=tuple(active)
    )
