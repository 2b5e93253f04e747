"""The sweep's design of experiments and the names of everything the Batch steps make.

One job per (model family, instance type, batch size) from ``[batch]``; the target follows from
the instance type (inf1 → torch-neuron, inf2 → torch-neuronx, GPU → CUDA, CPU → fp32 and int8).
Job definitions are one per (family, instance type, batch size): each asks for a whole instance of its type.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import names
from ..config import CONTAINER_TARGETS
from .base import StepContext
from .records import Identity, SweepRound

SWEEP = "sweep"  # the S3 prefix under the session's: s3://BUCKET/SESSION/sweep/<job name>/


@dataclass(frozen=True)
class GridPoint:
    session: str
    family: str
    instance_type: str
    batch_size: int
    kind: str  # container kind: inf1 inf2 gpu cpu

    @property
    def target(self) -> str:
        return CONTAINER_TARGETS[self.kind]

    @property
    def job_name(self) -> str:
        return names.job(self.session, self.family, self.instance_type, self.batch_size)

    @property
    def definition(self) -> str:
        """One per instance type: each job definition asks for that type's whole instance."""
        return names.job(self.session, self.family, self.instance_type, self.batch_size)

    @property
    def queue(self) -> str:
        return names.job_queue(self.session, self.instance_type)

    @property
    def short(self) -> str:
        return f"{self.family} {self.instance_type} b{self.batch_size}"


def grid(ctx: StepContext) -> list[GridPoint]:
    b = ctx.config.batch
    return [
        GridPoint(ctx.name, family, itype, size, ctx.runtime.batch_kind(ctx.config, itype))
        for family in b.families
        for itype in b.instance_types
        for size in b.sizes
    ]


def account(ctx: StepContext) -> str:
    identity = ctx.load(Identity)
    if identity and identity.account:
        return identity.account
    known: str = ctx.aws.client("sts").get_caller_identity()["Account"]
    ctx.save(Identity(account=known, arn=identity.arn if identity else ""))
    return known


def bucket(ctx: StepContext) -> str:
    return names.results_bucket(ctx.name, account(ctx))


def results_uri(ctx: StepContext, point: GridPoint) -> str:
    return f"s3://{bucket(ctx)}/{ctx.name}/{SWEEP}/{point.job_name}"


def sweep(ctx: StepContext) -> SweepRound | None:
    """The current round of the sweep (None before one was submitted)."""
    return ctx.load(SweepRound)
