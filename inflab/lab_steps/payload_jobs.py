"""How the lab runs its payload scripts: the command lines of compile and benchmark jobs, on the
instance (``payload_command``) and in a sweep's Batch job (``job_args``), built from one place, and
the small facts those jobs are filed under (settings digests, the instance they ran on).
"""

from __future__ import annotations

import hashlib
import json
import shlex

from .base import StepContext
from .image import image_uri, kind
from .records import CompiledModel, HostRecord
from .sweep_grid import GridPoint

MODELS = "models"  # under WORK_DIR
RESULTS = "results"


def digest(obj) -> str:
    """A short stable hash of plain data: what a step's settings were when it last ran."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def python_prefix(ctx: StepContext, job: str, host_network: bool = False) -> str:
    """How a payload script is started on the host (the runtime decides: a container, a virtualenv)."""
    return ctx.runtime.payload_prefix(
        session=ctx.name, job=job, image_uri=image_uri(ctx), kind=kind(ctx), host_network=host_network
    )


def payload_command(ctx: StepContext, job: str, script: str, args: list[str], host_network: bool = False) -> str:
    return python_prefix(ctx, job, host_network) + script + '" ' + " ".join(shlex.quote(a) for a in args)


def instance_label(ctx: StepContext) -> str:
    return ctx.runtime.instance_label(ctx.config)


def model_args(ctx: StepContext, *, family: str, target: str) -> list[str]:
    """compile.py's arguments for what to compile (shared by the instance's compile and a sweep's jobs):
    the model's family, name, target, shapes and size, and whether to add an int8 copy."""
    m = ctx.config.model
    args = [
        "--family",
        family,
        "--target",
        target,
        "--size",
        ctx.runtime.model_size(ctx.config),
        "--max-length",
        str(m.max_length),
        "--image-size",
        str(m.image_size),
    ]
    if family == m.family:
        args += ["--name", ctx.config.model_name]
    if m.offline:
        args.append("--offline")
    if m.int8 and target == "cpu":
        args.append("--int8")
    return args


def measure_args(ctx: StepContext, *, min_duration_s: int, max_duration_s: int) -> list[str]:
    """bench.py's arguments for how to measure (shared likewise); the durations are the caller's."""
    b = ctx.config.bench
    args = [
        "--workers",
        str(b.workers_per_model),
        "--min-duration",
        str(min_duration_s),
        "--min-queries",
        str(b.min_queries),
        "--max-duration",
        str(max_duration_s),
        "--mode",
        b.mode,
        "--repeats",
        str(b.repeats),
    ]
    if b.harness != "inflab":
        args += ["--harness", b.harness]
    if b.n_models:
        args += ["--n-models", str(b.n_models)]
    if b.mode == "open":
        args += ["--rate", str(b.rate)]
    return args


def compile_args(ctx: StepContext) -> list[str]:
    return [
        *model_args(ctx, family=ctx.config.model.family, target=ctx.runtime.payload_target(ctx.config)),
        "--batch-size",
        str(ctx.config.bench.batch_size),
        "--out",
        MODELS,
        "--instance-type",
        instance_label(ctx),
    ]


def bench_args(ctx: StepContext, artifact: CompiledModel) -> list[str]:
    b = ctx.config.bench
    stem = artifact.stem
    return [
        f"{MODELS}/{artifact.file}",
        *measure_args(ctx, min_duration_s=b.min_duration_s, max_duration_s=b.max_duration_s),
        "--instance-type",
        instance_label(ctx),
        "--out",
        f"{RESULTS}/{stem}.bench.json",
    ]


def instance_id(ctx: StepContext) -> str:
    """The instance the session's host record names ("" before there is one)."""
    host = ctx.load(HostRecord)
    return host.instance_id if host else ""


def job_args(ctx: StepContext, point: GridPoint) -> list[str]:
    """batch_job.py's arguments for one definition (the batch size comes from its environment)."""
    b = ctx.config.batch
    compile = model_args(ctx, family=point.family, target=point.target)
    first = b.sizes[0]
    if (
        point.batch_size != first
    ):  # the compiled model is checked against eager once per settings, by the first size's job
        checker = GridPoint(point.session, point.family, point.instance_type, first, point.kind)
        compile += ["--checked-by", f"job {checker.job_name} (settings digest {digest(compile)[:12]})"]
    return [
        "--label",
        ctx.name,
        "--runtime",
        ctx.runtime.kind,
        "--compile",
        *compile,
        "--bench",
        *measure_args(ctx, min_duration_s=b.min_duration_s, max_duration_s=b.max_duration_s),
    ]
