"""An instructor's roster: the workshop and how to reach each participant's account.

One TOML file, validated like the lab config — the first problem found is a
:class:`~inflab.config.ConfigError` naming the key (``participant[3].role_arn: …``), which the
CLI prints on one line with exit code 2, before any AWS call::

    [workshop]
    name = "Inferentia lab, room 3"
    region = "us-west-2"                 # default for every participant
    instance_types = ["inf1.2xlarge"]    # what each participant runs (preflight checks these)

    [sweep]                              # the AWS Batch sweep each participant runs (preflight counts its hosts)
    instance_types = ["inf1.2xlarge"]    # default: the lab's batch.instance_types
    jobs = 3                             # jobs per instance type (families x batch sizes); 0: no sweep
    max_vcpus = 64                       # each compute environment's vCPU limit (the lab's batch.max_vcpus)

    [stuck]                              # minutes on a step before a participant counts as stuck
    default = 20
    build-image = 40

    [[participant]]
    label = "ana"
    profile = "room3-ana"                # an AWS profile on the instructor's machine

    [[participant]]
    label = "ben"
    role_arn = "arn:aws:iam::111122223333:role/InflabInstructor"
    external_id = "room3"                # optional

    [[participant]]
    label = "cy"
    shared = true                        # the instructor's own account, shared by the room
    session = "cy-lab"                   # optional: else the session whose beacon names "cy"

Cheap to import (no boto3): the CLI validates a roster before anything else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import (
    LABEL_RE,
    LABEL_TEXT,
    MAX_SWEEP_JOBS,
    MAX_TEXT,
    REGIONS,
    SESSION_NAME_RE,
    BatchSection,
    ConfigError,
    _check_instance_type,
    _key_name,
    _shown,
    _type_name,
    parse_toml,
    read_config_file,
)
from ..remote.payload import limits

MAX_PARTICIPANTS = 200
ROLE_ARN_RE = r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}"
EXTERNAL_ID_RE = r"[\w+=,.@:/-]{2,1224}"
PROFILE_RE = r"[\w.+@-]+"
STUCK_DEFAULT_MIN = 20.0


@dataclass(frozen=True)
class Participant:
    label: str
    region: str
    profile: str = ""
    role_arn: str = ""
    external_id: str = field(default="", repr=False)
    shared: bool = False
    session: str = ""  # shared accounts: the session to follow ("" = the one whose beacon names the label)

    @property
    def reach(self) -> str:
        """How the account is reached, for the screen (never a secret: an external id is not shown)."""
        if self.profile:
            return f"profile {self.profile}"
        if self.role_arn:
            return f"role {self.role_arn}"
        return "shared"

    @property
    def account_key(self) -> tuple[str, str, str]:
        """Participants with the same key share one account and region (read once per refresh)."""
        return (self.profile, self.role_arn, self.region) if not self.shared else ("", "", self.region)


@dataclass(frozen=True)
class Roster:
    name: str
    region: str
    participants: tuple[Participant, ...]
    instance_types: tuple[str, ...] = ("inf1.2xlarge",)
    stuck_min: dict[str, float] = field(default_factory=dict)  # step id or "default" -> minutes
    refresh_s: float = 10.0
    concurrency: int = 8
    sandbox: bool = False
    sweep_types: tuple[str, ...] = ("inf1.2xlarge",)
    sweep_jobs: int = 3  # per instance type and participant
    sweep_max_vcpus: int = 64

    def sweep_vcpus(self, vcpus: dict[str, int]) -> dict[str, int]:
        """vCPUs each participant's sweep can hold at once per instance type: every job takes a whole
        instance, up to the compute environment's limit."""
        return {
            t: min(self.sweep_max_vcpus, self.sweep_jobs * vcpus[t])
            for t in self.sweep_types
            if t in vcpus and self.sweep_jobs
        }

    def stuck_after_s(self, step: str) -> float:
        return 60 * self.stuck_min.get(step, self.stuck_min.get("default", STUCK_DEFAULT_MIN))

    def participant(self, label: str) -> Participant:
        return next(p for p in self.participants if p.label == label)

    def to_toml(self) -> str:
        """The roster as a file :func:`load` reads back (the same roster)."""
        import tomli_w

        parts = [
            "[workshop]\n"
            + tomli_w.dumps(
                {
                    "name": self.name,
                    "region": self.region,
                    "instance_types": list(self.instance_types),
                    "refresh_s": self.refresh_s,
                    "concurrency": self.concurrency,
                    "sandbox": self.sandbox,
                }
            ),
            "[sweep]\n"
            + tomli_w.dumps(
                {"instance_types": list(self.sweep_types), "jobs": self.sweep_jobs, "max_vcpus": self.sweep_max_vcpus}
            ),
            "# minutes on a step before a participant counts as stuck\n[stuck]\n" + tomli_w.dumps(dict(self.stuck_min)),
        ]
        for p in self.participants:
            entry: dict[str, Any] = {"label": p.label}
            if p.region != self.region:
                entry["region"] = p.region
            for key in ("profile", "role_arn", "external_id", "session"):
                if getattr(p, key):
                    entry[key] = getattr(p, key)
            if p.shared:
                entry["shared"] = True
            parts.append("[[participant]]\n" + tomli_w.dumps(entry))
        return "\n".join(parts)


WORKSHOP_KEYS = {
    "name": str,
    "region": str,
    "instance_types": list,
    "refresh_s": float,
    "concurrency": int,
    "sandbox": bool,
}
SWEEP_KEYS = {"instance_types": list, "jobs": int, "max_vcpus": int}
PARTICIPANT_KEYS = {
    "label": str,
    "region": str,
    "profile": str,
    "role_arn": str,
    "external_id": str,
    "shared": bool,
    "session": str,
}
BOUNDS = {"workshop.refresh_s": (2, 3600), "workshop.concurrency": (1, 32)}


def _typed(key: str, value: Any, expected: type) -> Any:
    if expected is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{key}: {value} is not a finite number")
        return float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {_type_name(expected())}, got {_type_name(value)} ({_shown(value)})")
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise ConfigError(f"{key}: {len(value)} characters is too long (at most {MAX_TEXT})")
        if "\n" in value or "\r" in value:
            raise ConfigError(f"{key}: a line break is not allowed here")
    return value


def _table(key: str, value: Any, known: dict[str, type]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a table, got {_type_name(value)}")
    out = {}
    for k, v in value.items():
        if k not in known:
            raise ConfigError(f"{key}.{_key_name(k)}: unknown key (known: {', '.join(known)})")
        out[k] = _typed(f"{key}.{k}", v, known[k])
    return out


def _region(key: str, value: str) -> str:
    if value not in REGIONS:
        raise ConfigError(f"{key}: {value!r} is not an AWS region (like us-west-2)")
    return value


def _format(key: str, value: str, pattern: str, what: str) -> str:
    if not re.fullmatch(pattern, value):
        raise ConfigError(f"{key}: {_shown(value)} is not {what}")
    return value


def _participant(i: int, entry: Any, default_region: str, sandbox: bool) -> Participant:
    key = f"participant[{i}]"
    p = _table(key, entry, PARTICIPANT_KEYS)
    if "label" not in p:
        raise ConfigError(f"{key}.label: missing (each participant needs a label)")
    _format(f"{key}.label", p["label"], LABEL_RE, LABEL_TEXT)
    region = _region(f"{key}.region", p.get("region", default_region))
    ways = [w for w in ("profile", "role_arn", "shared") if p.get(w)]
    if len(ways) != 1:
        raise ConfigError(
            f"{key}: give exactly one of profile, role_arn or shared = true"
            + (f" (found {', '.join(ways)})" if ways else "")
        )
    if p.get("profile"):
        if sandbox:
            raise ConfigError(f"{key}.profile: the sandbox has no AWS profiles; use shared = true or a role_arn")
        _format(f"{key}.profile", p["profile"], PROFILE_RE, "a profile name (letters, digits and . + @ _ -)")
    if p.get("role_arn"):
        _format(
            f"{key}.role_arn",
            p["role_arn"],
            ROLE_ARN_RE,
            "an IAM role ARN (like arn:aws:iam::111122223333:role/InflabInstructor)",
        )
    if p.get("external_id"):
        if not p.get("role_arn"):
            raise ConfigError(f"{key}.external_id: only goes with role_arn")
        _format(
            f"{key}.external_id",
            p["external_id"],
            EXTERNAL_ID_RE,
            "an external id (2-1224 letters, digits and + = , . @ : / _ -)",
        )
    if p.get("session"):
        if not p.get("shared"):
            raise ConfigError(f"{key}.session: only goes with shared = true (an own account shows its newest session)")
        if not SESSION_NAME_RE.fullmatch(p["session"]):
            raise ConfigError(
                f"{key}.session: {_shown(p['session'])} is not a session name "
                "(lowercase letters, digits and '-', up to 31 characters)"
            )
    return Participant(
        label=p["label"],
        region=region,
        profile=p.get("profile", ""),
        role_arn=p.get("role_arn", ""),
        external_id=p.get("external_id", ""),
        shared=bool(p.get("shared")),
        session=p.get("session", ""),
    )


def from_dict(data: dict[str, Any]) -> Roster:
    from ..track import IDS as STEP_IDS

    for section in data:
        if section not in ("workshop", "sweep", "stuck", "participant"):
            raise ConfigError(f"{_key_name(section)}: unknown section (known: workshop, sweep, stuck, participant)")
    ws = _table("workshop", data.get("workshop", {}), WORKSHOP_KEYS)
    name = ws.get("name", "inflab workshop")
    if not name.strip():
        raise ConfigError("workshop.name: must not be empty")
    region = _region("workshop.region", ws.get("region", "us-west-2"))
    for key, (lo, hi) in BOUNDS.items():
        short = key.split(".", 1)[1]
        if short in ws and not lo <= ws[short] <= hi:
            raise ConfigError(f"{key}: {ws[short]} is outside {lo}..{hi}")
    types = _instance_types("workshop.instance_types", ws.get("instance_types", ["inf1.2xlarge"]))
    sweep = _table("sweep", data.get("sweep", {}), SWEEP_KEYS)
    sweep_types = _instance_types(
        "sweep.instance_types", sweep.get("instance_types", list(BatchSection.instance_types))
    )
    for key, default, (lo, hi) in (
        ("jobs", 3, (0, MAX_SWEEP_JOBS)),
        ("max_vcpus", BatchSection.max_vcpus, (limits.MAX_VCPUS.low, limits.MAX_VCPUS.high)),
    ):
        if not lo <= sweep.setdefault(key, default) <= hi:
            raise ConfigError(f"sweep.{key}: {sweep[key]} is outside {lo}..{hi}")
    stuck_raw = data.get("stuck", {})
    if not isinstance(stuck_raw, dict):
        raise ConfigError(f"stuck: expected a table, got {_type_name(stuck_raw)}")
    stuck = {}
    for step, minutes in stuck_raw.items():
        if step != "default" and step not in STEP_IDS:
            shown = step if re.fullmatch(r"[\w-]{1,60}", step, re.ASCII) else _key_name(step)
            raise ConfigError(f"stuck.{shown}: not a step id (see: inflab steps) or 'default'")
        minutes = _typed(f"stuck.{step}", minutes, float)
        if not 0 <= minutes <= 24 * 60:
            raise ConfigError(f"stuck.{step}: {minutes:g} is outside 0..1440 minutes")
        stuck[step] = minutes
    entries = data.get("participant", [])
    if not isinstance(entries, list):
        raise ConfigError(f"participant: expected [[participant]] tables, got {_type_name(entries)}")
    if not entries:
        raise ConfigError("participant: the roster names no participant (add [[participant]] tables)")
    if len(entries) > MAX_PARTICIPANTS:
        raise ConfigError(f"participant: {len(entries)} participants; at most {MAX_PARTICIPANTS}")
    sandbox = bool(ws.get("sandbox", False))
    people = tuple(_participant(i, e, region, sandbox) for i, e in enumerate(entries, 1))
    seen: dict[str, int] = {}
    for i, p in enumerate(people, 1):
        if p.label in seen:
            raise ConfigError(f"participant[{i}].label: {p.label!r} is also participant[{seen[p.label]}]'s label")
        seen[p.label] = i
    sessions = [p.session for p in people if p.session]
    if len(set(sessions)) != len(sessions):
        raise ConfigError("participant.session: two participants follow the same session")
    return Roster(
        name=name,
        region=region,
        participants=people,
        instance_types=tuple(types),
        stuck_min=stuck,
        refresh_s=ws.get("refresh_s", 10.0),
        concurrency=ws.get("concurrency", 8),
        sandbox=sandbox,
        sweep_types=tuple(sweep_types),
        sweep_jobs=sweep["jobs"],
        sweep_max_vcpus=sweep["max_vcpus"],
    )


def _instance_types(key: str, types: list) -> list[str]:
    if not types:
        raise ConfigError(f"{key}: must list at least one instance type")
    for t in types:
        if not isinstance(t, str):
            raise ConfigError(f"{key}: {_shown(t)} is not a string")
        _check_instance_type(key, t)
    if len(set(types)) != len(types):
        raise ConfigError(f"{key}: lists an instance type twice")
    return types


def load(path: str | Path) -> Roster:
    """Read and validate a roster file (a regular UTF-8 TOML file)."""
    text = read_config_file(path, flag="ROSTER", what="a roster")
    try:
        data = parse_toml(text)
    except ConfigError as e:
        raise ConfigError(f"ROSTER: {path} is {e}") from None
    return from_dict(data)
