"""Read a room: every participant's account, their session's beacon and what is tagged for it.

One refresh reads each account once — the beacons (one GetParametersByPath), the instances with
an ``inflab:session`` tag (one DescribeInstances), the Batch compute environments and queues
tagged for a session and their jobs — then builds a row per participant from that. Accounts
are read in parallel, at most ``roster.concurrency`` at a time, each client with adaptive
retries; an account that cannot be read (a missing profile, a refused AssumeRole, no network)
becomes rows with the reason, and the others are read all the same.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from ..aws import TAG_SESSION, Aws, beacon, tag_dict
from ..config import SESSION_NAME_RE
from ..engine import describe_exception
from ..prices import default as default_prices
from ..untrusted import shown
from .records import (
    CANCELLED,
    FAILED,
    FINISHED,
    NO_SESSION,
    NOT_STARTED,
    RUNNING,
    UNREACHABLE,
    UNREADABLE,
    WAITING,
    AccountPreflight,
    CleanupResult,
    Instance,
    Room,
    Row,
    StepMark,
)
from .roster import Participant, Roster

STATES = {"running": RUNNING, "failed": FAILED, "cancelled": CANCELLED, "waiting": WAITING, "finished": FINISHED}
JOB_STATES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED")
SANDBOX_NOTE = " (sandbox: nothing is billed)"


def _tagged_session(tags: dict[str, str] | None) -> str:
    return (tags or {}).get(TAG_SESSION, "")


class Account:
    """What one refresh found in one account and region.

    A participant's account is theirs: every session name it shows (a beacon's, a tag's) must be a
    session name by the same rule as ``--name`` before it is used for anything — a key into these
    tables, a path, a cleanup. A name that is not one is kept aside in ``bad_names`` (name → where
    it was seen) for the rows and the cleanup to report, shown safely.
    """

    def __init__(self, aws: Aws):
        self.aws = aws
        self.id = aws.client("sts").get_caller_identity()["Account"]
        self.beacons: dict[str, beacon.Beacon] = {}  # session -> its beacon (parsed, bounded)
        self.unread: dict[str, beacon.Published] = {}  # session -> a parameter at its path that is not a beacon
        self.modified: dict[str, float] = {}  # session -> when AWS last saw its beacon written
        self.bad_names: dict[str, str] = {}  # a name that is not a session name -> where it was seen
        for p in beacon.read_all(aws):
            if not p.valid_name:
                self._bad(p.name, f"the beacon {beacon.PREFIX}{shown(p.name, 80)}")
                continue
            if p.modified is not None:
                self.modified[p.name] = p.modified
            if p.beacon is not None:
                self.beacons[p.name] = p.beacon
            else:
                self.unread[p.name] = p
        self.instances: dict[str, list[dict[str, Any]]] = {}
        ec2 = aws.client("ec2")
        filters = [
            {"Name": "tag-key", "Values": [TAG_SESSION]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
        ]
        for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
            for res in page["Reservations"]:
                for inst in res["Instances"]:
                    owner = self._owner(_tagged_session(tag_dict(inst.get("Tags"))), f"instance {inst['InstanceId']}")
                    if owner:
                        self.instances.setdefault(owner, []).append(inst)
        batch = aws.client("batch")
        self.compute_envs: dict[str, list[str]] = {}
        self.jobs: dict[str, dict[str, int]] = {}
        for page in batch.get_paginator("describe_compute_environments").paginate():
            for ce in page["computeEnvironments"]:
                owner = self._owner(
                    _tagged_session(ce.get("tags")), f"compute environment {ce['computeEnvironmentName']}"
                )
                if owner:
                    self.compute_envs.setdefault(owner, []).append(
                        f"{ce['computeEnvironmentName']} {ce.get('state')}/{ce.get('status')}"
                    )
        for page in batch.get_paginator("describe_job_queues").paginate():
            for q in page["jobQueues"]:
                owner = self._owner(_tagged_session(q.get("tags")), f"job queue {q['jobQueueName']}")
                if not owner:
                    continue
                counts = self.jobs.setdefault(owner, {})
                for status in JOB_STATES:
                    for jp in batch.get_paginator("list_jobs").paginate(jobQueue=q["jobQueueName"], jobStatus=status):
                        if jp["jobSummaryList"]:
                            counts[status] = counts.get(status, 0) + len(jp["jobSummaryList"])

    def _bad(self, name: str, where: str) -> None:
        self.bad_names.setdefault(name, where)

    def _owner(self, name: str, where: str) -> str:
        """The session a tag names, or "" (no tag, or a name that is not a session name: set aside)."""
        if not name:
            return ""
        if not SESSION_NAME_RE.fullmatch(name):
            self._bad(name, f"{shown(where, 120)} (tag {TAG_SESSION})")
            return ""
        return name

    def sessions(self) -> set[str]:
        """Every session the account shows a sign of (a beacon, readable or not, a tagged instance or Batch resource)."""
        return set(self.beacons) | set(self.unread) | set(self.instances) | set(self.compute_envs) | set(self.jobs)

    def unread_reason(self, session: str) -> str:
        p = self.unread[session]
        return f"its beacon {beacon.path(session)} is not one inflab writes: {shown(p.problem, 200)}"

    def bad_name_lines(self) -> list[str]:
        """One line per name that is not a session name: not read, not cleaned up."""
        return [
            f"{where} names the session {shown(repr(name), 80)}, which is not a session name "
            "(lowercase letters, digits and '-'): not read and not cleaned up — look at it by hand"
            for name, where in sorted(self.bad_names.items())
        ]


def _newest(found: Account, sessions: list[str]) -> str:
    """The session whose beacon was written last (AWS's clock first, then the writer's)."""

    def when(s: str) -> tuple[float, float]:
        doc = found.beacons.get(s)
        return found.modified.get(s, 0.0), (doc.updated or 0.0) if doc else 0.0

    return max(sessions, key=when) if sessions else ""


def follow(p: Participant, found: Account) -> str:
    """The session a participant's row follows: the roster's, else the newest beacon naming them
    (a shared account), else the account's newest beacon, readable or not (their own account)."""
    if p.session:
        return p.session
    if p.shared:
        return _newest(found, [s for s, d in found.beacons.items() if d.participant == p.label or d.session == p.label])
    return _newest(found, list(found.beacons) + list(found.unread))


def build_row(p: Participant, roster: Roster, found: Account, prices, *, sandbox: bool) -> Row:
    session = follow(p, found)
    doc = found.beacons.get(session) if session else None
    instances = []
    for inst in found.instances.get(session, []) if session else []:
        quote = prices.quote(inst.get("InstanceType"))
        instances.append(
            Instance(
                inst["InstanceId"],
                inst.get("InstanceType", ""),
                inst["State"]["Name"],
                inst["LaunchTime"].timestamp(),
                inst.get("Placement", {}).get("AvailabilityZone", ""),
                quote.per_hour if quote else None,
            )
        )
    quotes = {prices.quote(i.type) for i in instances}
    source = "; ".join(sorted({q.source for q in quotes if q})) + (SANDBOX_NOTE if sandbox and instances else "")
    # Own account: everything odd in it is this participant's. Shared: a bad name or an unreadable
    # beacon belongs to nobody we can tell, so rows that found no session to follow say so.
    warnings: list[str] = []
    if not p.shared or not session:
        warnings = found.bad_name_lines() + [found.unread_reason(s) for s in sorted(found.unread) if s != session]
    base = dict(
        label=p.label,
        region=p.region,
        reach=p.reach,
        account=found.id,
        session=session,
        instances=tuple(instances),
        batch_jobs=dict(found.jobs.get(session, {})) if session else {},
        compute_envs=tuple(found.compute_envs.get(session, [])) if session else (),
        spend_usd=round(sum(i.spend() for i in instances), 4),
        price_source=source,
        warnings=tuple(warnings),
    )
    if session in found.unread:
        return Row(**base, state=UNREADABLE, reason=found.unread_reason(session), updated=found.modified.get(session))
    if not session and warnings and not p.shared:  # their account shows only what cannot be used
        more = f" (and {len(warnings) - 1} more)" if len(warnings) > 1 else ""
        return Row(**base, state=UNREADABLE, reason=warnings[0] + more)
    if doc is None:
        return Row(
            **base, state=NO_SESSION, reason="" if session or instances else "no session has published progress yet"
        )
    history = [StepMark(m.step, m.state, m.started, m.finished) for m in doc.history]
    step, state = doc.step, STATES.get(doc.state, WAITING)
    if state == WAITING and not history:
        state = NOT_STARTED
    if doc.error and history and history[-1].state in (FAILED, CANCELLED):
        history[-1] = StepMark(
            history[-1].step, history[-1].state, history[-1].started, history[-1].finished, doc.error
        )
    return Row(
        **base,
        step=step,
        state=state,
        since=doc.since,
        stuck_after_s=roster.stuck_after_s(step),
        updated=doc.updated,
        error=doc.error,
        history=tuple(history),
        track=doc.track,
        version=doc.version,
    )


class RoomReader:
    """The room as AWS shows it (a :class:`~.records.RoomSource`). ``home``: INFLAB_HOME (the sandbox
    runs from there)."""

    def __init__(self, roster: Roster, home: Path, *, runtime=None, prices=None):
        from ..runtime.select import for_session

        self.roster = roster
        self.workshop = roster.name
        self.labels = tuple(p.label for p in roster.participants)
        self.home = Path(home)
        self.runtime = runtime or for_session(roster.sandbox, self.home)
        self.prices = prices or default_prices()
        self._pool = ThreadPoolExecutor(max_workers=roster.concurrency, thread_name_prefix="room")
        self._aws: dict[tuple, Aws] = {}
        self._lock = threading.Lock()
        self._last: dict[str, Account] = {}  # label -> the account its last row came from
        self._cleanup_work: Path | None = None  # set while this reader holds the cleanup lock

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def groups(self) -> dict[tuple, list[Participant]]:
        out: dict[tuple, list[Participant]] = {}
        for p in self.roster.participants:
            out.setdefault(p.account_key, []).append(p)
        return out

    def aws_for(self, p: Participant) -> Aws:
        with self._lock:
            aws = self._aws.get(p.account_key)
            if aws is None:
                endpoint = self.runtime.aws_endpoint() if self.roster.sandbox else None
                headers = self.runtime.aws_headers() if self.roster.sandbox else {}
                key = self.runtime.aws_credentials(instructor=True) if self.roster.sandbox else None
                aws = self._aws[p.account_key] = Aws(
                    region=p.region,
                    profile=p.profile or None,
                    endpoint_url=endpoint,
                    headers=headers,
                    credentials=key,
                    role_arn=p.role_arn or None,
                    external_id=p.external_id or None,
                    per_thread=False,
                )
            return aws

    def _read(self, people: list[Participant]) -> list[tuple[Row, Account | None]]:
        try:
            found = Account(self.aws_for(people[0]))
        except Exception as e:
            reason = describe_exception(e)
            return [
                (Row(label=p.label, region=p.region, reach=p.reach, state=UNREACHABLE, reason=reason), None)
                for p in people
            ]
        return [(self._row(p, found), found) for p in people]

    def _row(self, p: Participant, found: Account) -> Row:
        try:
            return build_row(p, self.roster, found, self.prices, sandbox=self.roster.sandbox)
        except Exception as e:  # what the account showed for this one participant: the others are read all the same
            return Row(
                label=p.label,
                region=p.region,
                reach=p.reach,
                account=found.id,
                state=UNREADABLE,
                reason=f"could not make sense of what the account shows: {describe_exception(e)}",
            )

    def refresh(self) -> Room:
        started = time.monotonic()
        rows: dict[str, Row] = {}
        for result in self._pool.map(self._read, self.groups().values()):
            for row, found in result:
                rows[row.label] = row
                if found is not None:
                    self._last[row.label] = found
                else:
                    self._last.pop(row.label, None)
        return Room(self.workshop, tuple(rows[label] for label in self.labels), time.time(), time.monotonic() - started)

    def _account(self, label: str) -> Account:
        found = self._last.get(label)
        return found if found is not None else Account(self.aws_for(self.roster.participant(label)))

    def sessions_of(self, label: str) -> list[str]:
        """The sessions cleanup removes for a participant: in a shared account the one their row
        follows; in their own account every session it shows a sign of."""
        p = self.roster.participant(label)
        found = self._account(label)
        if p.shared:
            session = follow(p, found)
            return [session] if session else []
        return sorted(found.sessions())

    def resources(self, label: str) -> list[dict[str, str]]:
        from ..aws import inventory

        aws = self.aws_for(self.roster.participant(label))
        out = []
        for session in self.sessions_of(label):
            out += [dict(r, session=session) for r in inventory.session_resources(aws, session)]
        return out

    def preflight(self) -> list[AccountPreflight]:
        from .preflight import preflight_account

        def one(people: list[Participant]) -> AccountPreflight:
            p = people[0]
            try:
                aws = self.aws_for(p)
            except Exception as e:  # a profile that is not there
                from .records import Check

                return AccountPreflight(
                    "",
                    p.region,
                    p.reach,
                    tuple(x.label for x in people),
                    (Check("credentials", False, describe_exception(e)),),
                )
            return preflight_account(
                aws,
                reach=p.reach,
                region=p.region,
                participants=tuple(x.label for x in people),
                instance_types=self.roster.instance_types,
                sweep=self.roster.sweep_vcpus,
                sweep_types=self.roster.sweep_types,
            )

        return list(self._pool.map(one, self.groups().values()))

    @contextmanager
    def exclusive_cleanup(self) -> Iterator[Path]:
        """Hold the lab home's cleanup lock (one cleanup at a time: a second raises
        :class:`~.cleanup.CleanupBusy` saying who holds it); yields the directory for stand-in
        stores, cleared of what a stopped cleanup left. Re-entrant within this reader."""
        from .cleanup import exclusive

        if self._cleanup_work is not None:
            yield self._cleanup_work
            return
        with exclusive(self.home, f"inflab instructor, cleanup of {shown(self.workshop, 60)}") as work:
            self._cleanup_work = work
            try:
                yield work
            finally:
                self._cleanup_work = None

    def cleanup(self, labels: list[str], *, delete_data: bool, log: Callable[[str], None]) -> list[CleanupResult]:
        from .cleanup import clean_participant, clear_leftovers

        with self.exclusive_cleanup() as work:
            cleared = clear_leftovers(work)
            if cleared:
                log(f"Removed {cleared} stand-in store(s) left in {work} by a cleanup that was stopped")

            def one(label: str) -> CleanupResult:
                p = self.roster.participant(label)
                try:
                    found = Account(self.aws_for(p))
                    self._last[label] = found
                    sessions = self.sessions_of(label)
                except Exception as e:
                    log(f"{label}: cannot read the account: {describe_exception(e)}")
                    return CleanupResult(
                        label, "", p.region, (), (f"cannot read the account: {describe_exception(e)}",), looked=False
                    )
                # Names that are not session names are never cleaned up (never a path): each is an error to
                # look at by hand — in the participant's own account, or in a shared one when no session is theirs.
                refused = found.bad_name_lines() if not p.shared or not sessions else []
                return clean_participant(
                    label,
                    found.aws,
                    found.id,
                    sessions,
                    found.beacons,
                    found.modified,
                    refused=refused,
                    runtime=self.runtime,
                    delete_data=delete_data,
                    log=log,
                    work=work,
                )

            return list(self._pool.map(one, labels))
