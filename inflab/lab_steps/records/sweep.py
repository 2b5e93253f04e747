"""What the sweep's steps hand on: what Batch was set up with, the round of jobs submitted and
what the monitor saw of them, the report made of it, and the prices it was costed with."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from .base import Record, omitted, omitted_map


@dataclass(frozen=True, kw_only=True)
class BatchEnvironment(Record):
    """What batch-setup made for the sweep (a digest of its settings, the results bucket, the job
    definitions' ARNs by name, the hosts' security group, the roles' ARNs, what each instance type has)."""

    KEY = "batch"
    WRITER = "batch-setup"
    settings: str
    bucket: str
    definitions: Mapping[str, str] = field(default_factory=dict)
    security_group: str = ""
    roles: Mapping[str, str] = field(default_factory=dict)  # host, job, profile
    devices: Mapping[str, str] = field(default_factory=dict)  # instance type -> its accelerators, in words


class JobSeen(NamedTuple):
    """A job as the monitor last saw it: its state, since when (epoch seconds), attempts started.
    Stored as a list of three."""

    state: str
    since: float
    attempts: int


@dataclass(frozen=True, kw_only=True)
class JobEnd:
    state: str  # SUCCEEDED | FAILED
    reason: str = ""  # why it failed


@dataclass(frozen=True, kw_only=True)
class SweepRound(Record):
    """One round of the sweep: its id (the jobs' round tag), the Batch setup it was submitted on,
    its jobs by name, what the monitor saw of each (by job id), and once it ended, when and how
    each job ended."""

    KEY = "sweep"
    WRITER = "batch-submit"
    round: str = ""
    setup: str = ""  # the digest of the Batch setup's settings
    jobs: Mapping[str, str] = field(default_factory=dict)  # job name -> job id
    seen: Mapping[str, JobSeen] = omitted_map()
    ended: float | None = omitted()
    states: Mapping[str, JobEnd] = omitted_map()


@dataclass(frozen=True, kw_only=True)
class SweepReport(Record):
    """The report step gathered this round's results."""

    KEY = "sweep_report"
    WRITER = "report"
    round: str
    results: int = 0
    failed: int = 0


@dataclass(frozen=True, kw_only=True)
class RefreshedPrices(Record):
    """Prices the report step fetched from the AWS Pricing API (:func:`inflab.prices.from_store`
    reads them over the table shipped with inflab)."""

    KEY = "prices"
    WRITER = "report"
    source: str
    date: str
    prices: Mapping[str, float] = field(default_factory=dict)  # instance type -> USD an hour
