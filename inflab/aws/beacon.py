"""The progress beacon: a small JSON document per session in SSM Parameter Store.

``/inflab/sessions/<session>`` in the session's own account and region, tagged like everything
else, rewritten at each step transition, removed by cleanup. The instructor reads a room's
beacons with one ``GetParametersByPath`` per account. It holds progress only — step states and
times, the last error line, instance ids and launch times, the names the session's resources
follow from — never a key, a token or a credential.

One schema, here, for both ends: the session builds a :class:`Beacon` and it writes itself
(:meth:`Beacon.encode`); the instructor gets the same record back from :meth:`Beacon.parse`.
A participant's account is theirs, so what the instructor reads there is untrusted: parsing is
bounded (size, nesting depth, types, finite times in a sane range, the session name the same
rule as ``--name``) and a parameter that is not a beacon we write is a :class:`Published` with
the reason, never an exception that stops the room being read.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from ..config import SESSION_NAME_RE
from ..errors import InflabError
from . import Aws, error_code

PREFIX = "/inflab/sessions/"
MAX_BYTES = 4096  # a standard-tier parameter's value
SCHEMA = 1
MAX_DEPTH = 6  # the document nests 4 deep (names → batch → families); a little room, no more
MAX_ERROR = 1000  # characters of the error line
MAX_TEXT = 200  # characters of any other string
MAX_ITEMS = 64  # history steps, instances, list entries
LATEST_TIME = 1e11  # epoch seconds (the year 5138): a larger time is not a time
STATES = ("running", "failed", "cancelled", "waiting", "finished")


class BeaconError(InflabError, ValueError):
    """A parameter under the prefix that is not a beacon inflab writes; the message says why (one line)."""


def path(session: str) -> str:
    return PREFIX + session


# -- the record -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mark:
    """One step of the session's history: its state and when it started and ended (epoch seconds)."""

    step: str
    state: str
    started: float | None = None
    finished: float | None = None


@dataclass(frozen=True)
class BeaconInstance:
    id: str
    zone: str = ""
    launched: float | None = None


@dataclass(frozen=True)
class Names:
    """The configuration values the session's resource names follow from (what cleanup needs)."""

    region: str = ""
    track: str = ""
    instance_type: str = ""
    model_family: str = ""
    batch_families: tuple[str, ...] = ()
    batch_sizes: tuple[int, ...] = ()
    batch_instance_types: tuple[str, ...] = ()

    def config(self) -> dict[str, dict[str, Any]]:
        """As a lab configuration's tables (what the beacon holds, and what ``config.from_dict`` reads)."""
        out: dict[str, dict[str, Any]] = {}
        for section, key, value in (
            ("aws", "region", self.region),
            ("lab", "track", self.track),
            ("instance", "type", self.instance_type),
            ("model", "family", self.model_family),
        ):
            if value:
                out.setdefault(section, {})[key] = value
        for key, values in (
            ("families", self.batch_families),
            ("sizes", self.batch_sizes),
            ("instance_types", self.batch_instance_types),
        ):
            if values:
                out.setdefault("batch", {})[key] = list(values)
        return out


@dataclass(frozen=True)
class Beacon:
    """Where a session is: written by the session at each transition, read by the instructor."""

    session: str
    participant: str = ""
    track: str = ""
    sandbox: bool = False
    step: str = ""  # the running or failed step, else the next one ("" when finished)
    state: str = "waiting"  # one of STATES
    since: float | None = None  # when it entered this step/state
    updated: float | None = None  # when it was written
    error: str = ""  # the last error line (failed or cancelled)
    history: tuple[Mark, ...] = ()
    instances: tuple[BeaconInstance, ...] = ()
    version: str = ""  # the participant's inflab version
    names: Names = Names()
    cut: bool = False  # the oldest history was left out to fit

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "v": SCHEMA,
            "session": self.session,
            "participant": self.participant,
            "track": self.track,
            "sandbox": self.sandbox,
            "step": self.step,
            "state": self.state,
            "since": self.since,
            "updated": self.updated,
            "error": self.error,
            "history": {m.step: [m.state, m.started, m.finished] for m in self.history},
            "instances": [{"id": i.id, "zone": i.zone, "launched": i.launched} for i in self.instances],
            "version": self.version,
            "names": self.names.config(),
        }
        if self.cut:
            doc["cut"] = True
        return doc

    def encode(self) -> str:
        """Compact JSON of at most MAX_BYTES: the history is cut (oldest steps first), then the error
        line, rather than fail."""
        from dataclasses import replace

        b = replace(self, error=self.error[:MAX_ERROR])
        if len(b.history) > MAX_ITEMS:
            b = replace(b, history=b.history[-MAX_ITEMS:], cut=True)
        text = _dumps(b.to_json())
        while len(text.encode()) > MAX_BYTES and b.history:
            b = replace(b, history=b.history[1:], cut=True)
            text = _dumps(b.to_json())
        if len(text.encode()) > MAX_BYTES:
            text = _dumps(replace(b, error=b.error[:200]).to_json())
        return text

    @classmethod
    def parse(cls, text: str) -> Beacon:
        """The beacon in ``text``, or :class:`BeaconError` saying why it is not one we write."""
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_BYTES:
            raise BeaconError(f"{size:,} bytes, larger than a beacon ({MAX_BYTES:,})")
        depth = _depth(text)
        if depth > MAX_DEPTH:
            raise BeaconError(f"nested {depth} levels deep (a beacon nests at most {MAX_DEPTH})")
        try:
            doc = json.loads(text, parse_constant=_no_constant)
        except (ValueError, RecursionError) as e:
            raise BeaconError(f"not JSON ({str(e).splitlines()[0][:80]})") from None
        if not isinstance(doc, dict):
            raise BeaconError(f"a JSON {_kind(doc)}, not an object")
        if doc.get("v") != SCHEMA:
            raise BeaconError(f"schema {_brief(doc.get('v'))}, not {SCHEMA} (another inflab version?)")
        session = _text(doc, "session", MAX_TEXT)
        if not SESSION_NAME_RE.fullmatch(session):
            raise BeaconError(f"session: {_brief(session)} is not a session name")
        state = _text(doc, "state", MAX_TEXT)
        if state not in STATES:
            raise BeaconError(f"state: {_brief(state)} is not one of {', '.join(STATES)}")
        history = _obj(doc, "history")
        if len(history) > MAX_ITEMS:
            raise BeaconError(f"history: {len(history)} steps (at most {MAX_ITEMS})")
        marks = []
        for step, mark in history.items():
            key = f"history.{_brief(step)}"
            if not isinstance(mark, list) or len(mark) != 3:
                raise BeaconError(f"{key}: expected [state, started, finished], got {_brief(mark)}")
            marks.append(
                Mark(
                    _checked_text(step, "history", MAX_TEXT),
                    _checked_text(mark[0], key, MAX_TEXT),
                    _time(mark[1], key),
                    _time(mark[2], key),
                )
            )
        instances = []
        for n, item in enumerate(_list(doc, "instances")):
            if not isinstance(item, dict):
                raise BeaconError(f"instances[{n}]: expected an object, got {_kind(item)}")
            instances.append(
                BeaconInstance(
                    _text(item, "id", MAX_TEXT, key=f"instances[{n}].id"),
                    _text(item, "zone", MAX_TEXT, key=f"instances[{n}].zone"),
                    _time(item.get("launched"), f"instances[{n}].launched"),
                )
            )
        sandbox, cut = doc.get("sandbox", False), doc.get("cut", False)
        if not isinstance(sandbox, bool) or not isinstance(cut, bool):
            raise BeaconError("sandbox and cut are true or false")
        return cls(
            session=session,
            participant=_text(doc, "participant", MAX_TEXT),
            track=_text(doc, "track", MAX_TEXT),
            sandbox=sandbox,
            step=_text(doc, "step", MAX_TEXT),
            state=state,
            since=_time(doc.get("since"), "since"),
            updated=_time(doc.get("updated"), "updated"),
            error=_text(doc, "error", MAX_ERROR),
            history=tuple(marks),
            instances=tuple(instances),
            version=_text(doc, "version", MAX_TEXT),
            names=_names(_obj(doc, "names")),
            cut=cut,
        )


def _dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"), allow_nan=False)


# -- parsing helpers (every one raises BeaconError naming the field) ----------------------------------
def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _depth(text: str) -> int:
    """How deep the JSON in ``text`` nests (brackets outside strings), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _brief(value: Any) -> str:
    """A value from the document as a reason may quote it: its repr, short (shown safely by whoever prints it)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _checked_text(value: Any, key: str, limit: int) -> str:
    if not isinstance(value, str):
        raise BeaconError(f"{key}: expected a string, got {_kind(value)}")
    if len(value) > limit:
        raise BeaconError(f"{key}: {len(value)} characters (at most {limit})")
    return value


def _text(doc: dict, name: str, limit: int, *, key: str = "") -> str:
    value = doc.get(name, "")
    return _checked_text("" if value is None else value, key or name, limit)


def _obj(doc: dict, name: str) -> dict:
    value = doc.get(name) or {}
    if not isinstance(value, dict):
        raise BeaconError(f"{name}: expected an object, got {_kind(value)}")
    return value


def _list(doc: dict, name: str) -> list:
    value = doc.get(name) or []
    if not isinstance(value, list):
        raise BeaconError(f"{name}: expected an array, got {_kind(value)}")
    if len(value) > MAX_ITEMS:
        raise BeaconError(f"{name}: {len(value)} entries (at most {MAX_ITEMS})")
    return value


def _time(value: Any, key: str) -> float | None:
    """Epoch seconds: a finite number from 0 to LATEST_TIME, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BeaconError(f"{key}: expected a time (epoch seconds), got {_kind(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not (math.isfinite(number) and 0 <= number <= LATEST_TIME):
        raise BeaconError(f"{key}: {_brief(value)} is not a time")
    return number


def _names(doc: dict) -> Names:
    def table(section: str) -> dict:
        return _obj(doc, section)

    def text(section: str, key: str) -> str:
        return _text(table(section), key, MAX_TEXT, key=f"names.{section}.{key}")

    def items(key: str, kind: type) -> tuple:
        values = _list(table("batch"), key)
        if not all(isinstance(v, kind) and not isinstance(v, bool) for v in values):
            raise BeaconError(f"names.batch.{key}: expected {'numbers' if kind is int else 'strings'}")
        if kind is str and any(len(v) > MAX_TEXT for v in values):
            raise BeaconError(f"names.batch.{key}: a string is too long")
        if kind is int and any(not 0 <= v <= 1 << 20 for v in values):
            raise BeaconError(f"names.batch.{key}: a size is out of range")
        return tuple(values)

    return Names(
        region=text("aws", "region"),
        track=text("lab", "track"),
        instance_type=text("instance", "type"),
        model_family=text("model", "family"),
        batch_families=items("families", str),
        batch_sizes=items("sizes", int),
        batch_instance_types=items("instance_types", str),
    )


# -- reading and writing ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Published:
    """One parameter under the prefix as the instructor found it: the beacon, or why it is not one."""

    name: str  # the parameter's name after the prefix: untrusted text unless ``beacon`` is set
    modified: float | None  # when AWS last saw it written (epoch seconds; AWS's clock, not the writer's)
    beacon: Beacon | None
    problem: str = ""  # why it is not a beacon we write ("" when ``beacon`` is set)

    @property
    def valid_name(self) -> bool:
        """The name is a session name (the same rule as ``--name``): safe to use for anything."""
        return bool(SESSION_NAME_RE.fullmatch(self.name))


def read_parameter(name: str, value: str, modified: Any = None) -> Published:
    """A parameter (full name, value, LastModifiedDate) as a :class:`Published`."""
    session = name[len(PREFIX) :] if name.startswith(PREFIX) else name
    when = modified.timestamp() if hasattr(modified, "timestamp") else None
    if not SESSION_NAME_RE.fullmatch(session):
        return Published(session, when, None, "its name is not a session name")
    try:
        doc = Beacon.parse(value)
    except BeaconError as e:
        return Published(session, when, None, str(e))
    if doc.session != session:
        return Published(session, when, None, f"it names another session ({doc.session})")
    return Published(session, when, doc)


def read_all(aws: Aws) -> list[Published]:
    """Every parameter under the prefix in the account and region, each read as a beacon or with
    the reason it is not one (one bad parameter never stops the others being read)."""
    out = []
    for page in (
        aws.client("ssm").get_paginator("get_parameters_by_path").paginate(Path=PREFIX.rstrip("/"), Recursive=True)
    ):
        for p in page["Parameters"]:
            out.append(read_parameter(p["Name"], p.get("Value") or "", p.get("LastModifiedDate")))
    return out


def publish(aws: Aws, beacon: Beacon, tags: list[dict[str, str]], *, tagged: bool) -> None:
    """Write the beacon. ``tagged``: it exists with its tags already (an overwrite cannot carry tags)."""
    ssm = aws.client("ssm", quick=True)
    name, value = path(beacon.session), beacon.encode()
    if not tagged:
        try:
            ssm.put_parameter(
                Name=name, Value=value, Type="String", Tags=tags, Description="inflab session progress (no secrets)"
            )
            return
        except ClientError as e:
            if error_code(e) != "ParameterAlreadyExists":
                raise
            ssm.add_tags_to_resource(ResourceType="Parameter", ResourceId=name, Tags=tags)
    ssm.put_parameter(Name=name, Value=value, Type="String", Overwrite=True)


def read(aws: Aws, session: str) -> Published | None:
    """The session's parameter read as a beacon (or with the reason it is not one); None when there is none."""
    try:
        p = aws.client("ssm").get_parameter(Name=path(session))["Parameter"]
    except ClientError as e:
        if error_code(e) == "ParameterNotFound":
            return None
        raise
    return read_parameter(p["Name"], p.get("Value") or "", p.get("LastModifiedDate"))


def delete(aws: Aws, session: str) -> bool:
    """Remove the beacon; True if there was one."""
    try:
        aws.client("ssm").delete_parameter(Name=path(session))
        return True
    except ClientError as e:
        if error_code(e) == "ParameterNotFound":
            return False
        raise
