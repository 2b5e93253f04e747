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
from pathlib import Path
from typing import Any, Callable

from ..aws import TAG_SESSION, Aws, beacon, tag_dict
from ..engine import describe_exception
from ..prices import default as default_prices
from .records import (CANCELLED, FAILED, FINISHED, NO_SESSION, NOT_STARTED, RUNNING, UNREACHABLE, WAITING,
                      AccountPreflight, CleanupResult, Instance, Room, Row, StepMark)
from .roster import Participant, Roster

STATES = {"running": RUNNING, "failed": FAILED, "cancelled": CANCELLED, "waiting": WAITING, "finished": FINISHED}
JOB_STATES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED")
SANDBOX_NOTE = " (sandbox: nothing is billed)"


class Account:
    """What one refresh found in one account and region."""

    def __init__(self, aws: Aws):
        self.aws = aws
        self.id = aws.client("sts").get_caller_identity()["Account"]
        self.beacons = beacon.read_all(aws)
        self.instances: dict[str, list[dict[str, Any]]] = {}
        ec2 = aws.client("ec2")
        filters = [{"Name": "tag-key", "Values": [TAG_SESSION]},
                   {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
        for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
            for res in page["Reservations"]:
                for inst in res["Instances"]:
                    self.instances.setdefault(tag_dict(inst.get("Tags")).get(TAG_SESSION, ""), []).append(inst)
        batch = aws.client("batch")
        self.compute_envs: dict[str, list[str]] = {}
        self.jobs: dict[str, dict[str, int]] = {}
        for page in batch.get_paginator("describe_compute_environments").paginate():
            for ce in page["computeEnvironments"]:
                owner = (ce.get("tags") or {}).get(TAG_SESSION)
                if owner:
                    self.compute_envs.setdefault(owner, []).append(
                        f"{ce['computeEnvironmentName']} {ce.get('state')}/{ce.get('status')}")
        for page in batch.get_paginator("describe_job_queues").paginate():
            for q in page["jobQueues"]:
                owner = (q.get("tags") or {}).get(TAG_SESSION)
                if not owner:
                    continue
                counts = self.jobs.setdefault(owner, {})
                for status in JOB_STATES:
                    for jp in batch.get_paginator("list_jobs").paginate(jobQueue=q["jobQueueName"], jobStatus=status):
                        if jp["jobSummaryList"]:
                            counts[status] = counts.get(status, 0) + len(jp["jobSummaryList"])

    def sessions(self) -> set[str]:
        """Every session the account shows a sign of (a beacon, a tagged instance or Batch resource)."""
        return set(self.beacons) | {s for s in self.instances if s} | set(self.compute_envs) | set(self.jobs)


def follow(p: Participant, found: Account) -> str:
    """The session a participant's row follows: the roster's, else the newest beacon naming them
    (a shared account), else the account's newest beacon (their own account)."""
    if p.session:
        return p.session
    docs = list(found.beacons.values())
    if p.shared:
        docs = [d for d in docs if d.get("participant") == p.label or d.get("session") == p.label]
    docs.sort(key=lambda d: d.get("updated") or 0, reverse=True)
    return docs[0]["session"] if docs else ""


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def build_row(p: Participant, roster: Roster, found: Account, prices, *, sandbox: bool) -> Row:
    session = follow(p, found)
    doc = found.beacons.get(session) if session else None
    instances = []
    for inst in found.instances.get(session, []) if session else []:
        quote = prices.quote(inst.get("InstanceType"))
        instances.append(Instance(inst["InstanceId"], inst.get("InstanceType", ""), inst["State"]["Name"],
                                  inst["LaunchTime"].timestamp(), inst.get("Placement", {}).get("AvailabilityZone", ""),
                                  quote.per_hour if quote else None))
    quotes = {prices.quote(i.type) for i in instances}
    source = "; ".join(sorted({q.source for q in quotes if q})) + (SANDBOX_NOTE if sandbox and instances else "")
    base = dict(label=p.label, region=p.region, reach=p.reach, account=found.id, session=session,
                instances=tuple(instances), batch_jobs=dict(found.jobs.get(session, {})) if session else {},
                compute_envs=tuple(found.compute_envs.get(session, [])) if session else (),
                spend_usd=round(sum(i.spend() for i in instances), 4), price_source=source)
    if doc is None:
        return Row(**base, state=NO_SESSION, reason="" if session or instances else "no session has published progress yet")
    history = []
    for step, mark in (doc.get("history") or {}).items():
        if isinstance(mark, list) and len(mark) == 3:
            history.append(StepMark(str(step), str(mark[0]), _num(mark[1]), _num(mark[2])))
    step, state = str(doc.get("step") or ""), STATES.get(str(doc.get("state")), WAITING)
    if state == WAITING and not history:
        state = NOT_STARTED
    error = str(doc.get("error") or "")
    if error and history and history[-1].state in (FAILED, CANCELLED):
        history[-1] = StepMark(history[-1].step, history[-1].state, history[-1].started, history[-1].finished, error)
    return Row(**base, step=step, state=state, since=_num(doc.get("since")), stuck_after_s=roster.stuck_after_s(step),
               updated=_num(doc.get("updated")), error=error, history=tuple(history), track=str(doc.get("track") or ""),
               version=str(doc.get("version") or ""))


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
                aws = self._aws[p.account_key] = Aws(region=p.region, profile=p.profile or None, endpoint_url=endpoint,
                                                     headers=headers, credentials=key, role_arn=p.role_arn or None,
                                                     external_id=p.external_id or None, per_thread=False)
            return aws

    def _read(self, people: list[Participant]) -> list[tuple[Row, Account | None]]:
        try:
            found = Account(self.aws_for(people[0]))
        except Exception as e:
            reason = describe_exception(e)
            return [(Row(label=p.label, region=p.region, reach=p.reach, state=UNREACHABLE, reason=reason), None)
                    for p in people]
        return [(build_row(p, self.roster, found, self.prices, sandbox=self.roster.sandbox), found) for p in people]

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

                return AccountPreflight("", p.region, p.reach, tuple(x.label for x in people),
                                        (Check("credentials", False, describe_exception(e)),))
            return preflight_account(aws, reach=p.reach, region=p.region, participants=tuple(x.label for x in people),
                                     instance_types=self.roster.instance_types, sweep=self.roster.sweep_vcpus,
                                     sweep_types=self.roster.sweep_types)

        return list(self._pool.map(one, self.groups().values()))

    def cleanup(self, labels: list[str], *, delete_data: bool, log: Callable[[str], None]) -> list[CleanupResult]:
        from .cleanup import clean_participant

        def one(label: str) -> CleanupResult:
            p = self.roster.participant(label)
            try:
                found = Account(self.aws_for(p))
                self._last[label] = found
                sessions = self.sessions_of(label)
            except Exception as e:
                log(f"{label}: cannot reach the account: {describe_exception(e)}")
                return CleanupResult(label, "", p.region, (), (f"cannot reach the account: {describe_exception(e)}",))
            return clean_participant(label, found.aws, found.id, sessions, found.beacons, runtime=self.runtime,
                                     delete_data=delete_data, log=log)

        return list(self._pool.map(one, labels))
