"""Clean up after a participant from the instructor's machine.

The participant's session store is on their laptop, not here; what the lab made is found the way
``inflab cleanup`` verifies it — by name and by the ``inflab:session`` tag. So each session is
cleaned by the lab's own cleanup (every step's undo, newest first, then the look by tag) run on a
stand-in session: a throwaway store in a private temporary directory holding only the session's
name and the configuration values its resource names follow from (the beacon carries them;
without a beacon the defaults). The stand-in publishes no beacon, and the cleanup deletes the
participant's.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

from .. import config
from ..aws import Aws
from ..engine import Engine
from ..events import StepLogged, StepStateChanged
from ..session import Store
from .records import CleanupResult


def stand_in_config(doc: dict[str, Any] | None, region: str, *, sandbox: bool) -> config.LabConfig:
    """The configuration a session's names follow from: the beacon's, else the defaults (in ``region``)."""
    names = (doc or {}).get("names")
    user: dict[str, Any] = {k: dict(v) for k, v in names.items() if isinstance(v, dict)} if isinstance(names, dict) else {}
    user.setdefault("aws", {})["region"] = region
    user.setdefault("lab", {})["beacon"] = False
    try:
        return config.from_dict(user, sandbox=sandbox)
    except config.ConfigError:  # a beacon from another version: the defaults find what they can, the look by tag the rest
        return config.from_dict({"aws": {"region": region}, "lab": {"beacon": False}}, sandbox=sandbox)


def clean_session(aws: Aws, session: str, doc: dict[str, Any] | None, *, runtime, delete_data: bool,
                  log: Callable[[str], None]) -> tuple[list[str], list[dict], list[dict]]:
    """Remove everything ``session`` made in ``aws``'s account; (errors, leftovers, kept)."""
    sandbox = runtime.kind == "sandbox"
    cfg = stand_in_config(doc, aws.region, sandbox=sandbox)

    def listener(ev) -> None:
        if isinstance(ev, StepLogged):
            log(ev.message)
        elif isinstance(ev, StepStateChanged) and ev.state == "failed":
            log(f"✗ {ev.step}: {ev.message}")

    with tempfile.TemporaryDirectory(prefix="inflab-cleanup-") as tmp:  # 0700, gone afterwards
        store = Store(Path(tmp))
        store.create_session(session, cfg.data, sandbox=sandbox, track=cfg.track)
        engine = Engine(store, session, listener=listener, aws=aws, runtime=runtime)
        engine.delete_data = delete_data
        errors, leftovers = engine.cleanup()
        return errors, leftovers, list(engine.kept)


def clean_participant(label: str, aws: Aws, account: str, sessions: list[str], beacons: dict[str, dict], *, runtime,
                      delete_data: bool, log: Callable[[str], None]) -> CleanupResult:
    errors: list[str] = []
    leftovers: list[dict] = []
    kept: list[dict] = []
    if not sessions:
        log(f"{label}: no session found in account {account} ({aws.region}): nothing to remove")
    for session in sessions:
        log(f"{label}: cleaning up session {session} in account {account} ({aws.region})")
        try:
            e, left, k = clean_session(aws, session, beacons.get(session), runtime=runtime, delete_data=delete_data,
                                       log=lambda line, s=session: log(f"{label}/{s}: {line}"))
        except Exception as exc:  # the account stopped answering half-way
            from ..engine import describe_exception

            e, left, k = [f"{session}: {describe_exception(exc)}"], [], []
        errors += [f"{session}: {x}" if not x.startswith(f"{session}:") else x for x in e]
        leftovers += [dict(r, session=session) for r in left]
        kept += [dict(r, session=session) for r in k]
        log(f"{label}/{session}: " + ("nothing tagged for it is left" if not left else f"{len(left)} resource(s) still tagged")
            + (" but the results bucket (kept)" if k else ""))
    return CleanupResult(label, account, aws.region, tuple(sessions), tuple(errors), tuple(leftovers), tuple(kept))
