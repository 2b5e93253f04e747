"""What the steps on the instance hand on: the registry and the image, the compiled models, the
runs that measured them, the model archive, the server, and what the check and the load test found.

The done-markers (``benchmark``, ``load-test``) say a step's work is done for these settings on
this instance; the run records (``benchmark_run``, ``load_test_run``) are written before the
work starts, so a run killed after its results were stored is not measured twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Self

from .base import Record, convert, omitted


@dataclass(frozen=True, kw_only=True)
class Repository(Record):
    """The session's ECR repository."""

    KEY = "ecr"
    WRITER = "ecr-repo"
    name: str
    uri: str
    arn: str


@dataclass(frozen=True, kw_only=True)
class BuiltImage(Record):
    """The image (or, without docker, the job virtualenv) built on the instance."""

    KEY = "image"
    WRITER = "build-image"
    uri: str
    hash: str  # of what it is built from (definition, requirements, payload)
    kind: str = ""  # inf1 | inf2 | gpu | cpu
    runtime: str = ""  # the host runtime that built it (aws, sandbox)
    instance_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class PushedImage(Record):
    KEY = "pushed"
    WRITER = "push-image"
    uri: str
    hash: str
    pushed: bool  # False: the runtime had no registry to push to


@dataclass(frozen=True, kw_only=True)
class CompiledModel:
    """One model file the compile job wrote (from its manifest)."""

    file: str  # under the host's models/ directory
    family: str | None = None
    name: str | None = None
    size: str | None = None  # full | tiny
    precision: str | None = None
    target: str | None = None
    batch_size: int | None = None
    weights: str | None = None

    @property
    def stem(self) -> str:
        return self.file.rsplit(".", 1)[0]

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> CompiledModel:
        """The model a compile job's manifest describes (what the lab keeps of it)."""
        made: CompiledModel = convert(
            {f.name: manifest.get(f.name) for f in fields(cls)}, cls, "the compile job's manifest"
        )
        return made


@dataclass(frozen=True, kw_only=True)
class CompiledModels(Record):
    """What the compile step made, for which settings, on which instance."""

    KEY = "compile"
    WRITER = "compile"
    settings: str
    instance_id: str
    artifacts: tuple[CompiledModel, ...] = ()


@dataclass(frozen=True, kw_only=True)
class BenchmarkRun(Record):
    """The benchmark run started: its settings and the run id of each model's result."""

    KEY = "benchmark_run"
    WRITER = "benchmark"
    settings: str
    instance_id: str
    runs: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class BenchmarkDone(Record):
    KEY = "benchmark"
    WRITER = "benchmark"
    settings: str
    instance_id: str
    results: int = 0  # how many results the run stored


@dataclass(frozen=True, kw_only=True)
class ModelArchive(Record):
    """The TorchServe model archive: the package step's settings and instance, then the
    archive's own description as the payload wrote it (``serve/model-store/inflab.json``)."""

    KEY = "package"
    WRITER = "package-model"
    settings: str
    instance_id: str
    archive: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> Any:
        return {"settings": self.settings, "instance_id": self.instance_id, **self.archive}

    @classmethod
    def from_json(cls, value: Any) -> Self:
        where = cls.where()
        data = convert(value, Mapping[str, Any], where, cls)
        for key, hint in (("settings", str), ("instance_id", str), ("sha256", str), ("mar", str), ("labels", int)):
            if key in data and data[key] is not None:
                convert(data[key], hint, f"{where}, field {key!r}", cls)
        missing = [k for k in ("settings", "instance_id") if k not in data]
        if missing:
            raise cls.error(f"{where}: missing field {', '.join(map(repr, missing))}")
        return cls(
            settings=data["settings"],
            instance_id=data["instance_id"],
            archive={k: v for k, v in data.items() if k not in ("settings", "instance_id")},
        )

    @property
    def sha256(self) -> str | None:
        return self.archive.get("sha256")

    @property
    def mar(self) -> str | None:
        """The archive's file name."""
        return self.archive.get("mar")

    @property
    def labels(self) -> int | None:
        """How many classes the model tells apart."""
        return self.archive.get("labels")


@dataclass(frozen=True, kw_only=True)
class ServerJob(Record):
    """TorchServe on the instance: the job that runs it (numbered: ``serve-N``), its settings, and
    once it was ready, how many workers it has. A server that is gone keeps only its number and job
    (``stopped`` when serve-stop stopped it on purpose)."""

    KEY = "server"
    WRITER = "serve"
    n: int = 0
    job: str = ""
    jdir: str = omitted("")  # the job's directory on the host ("" once the server is gone)
    instance_id: str = omitted("")
    settings: str = omitted("")
    started: float | None = omitted()
    workers: int | None = omitted()
    ready_s: float | None = omitted()
    stopped: bool = omitted(False)

    @property
    def running(self) -> bool:
        """The record names a server that was started and not stopped since."""
        return bool(self.jdir) and not self.stopped

    def ready(self, workers: int, ready_s: float) -> ServerJob:
        """The record once every worker is READY."""
        return replace(self, workers=workers, ready_s=ready_s)

    def gone(self, *, stopped: bool = False) -> ServerJob:
        """The record once the server is gone: its number and job only."""
        return ServerJob(n=self.n, job=self.job, stopped=stopped)


@dataclass(frozen=True, kw_only=True)
class ServeCheckResult(Record):
    """What the serve-check step got: the management API's view of the model and one prediction."""

    KEY = "serve_check"
    WRITER = "serve-check"
    job: str  # the server job it asked
    input: str  # a digest of the request it sent
    table: tuple[str, ...] = ()  # the workers, as the table shown
    workers: tuple[Mapping[str, Any], ...] = ()
    model: Mapping[str, Any] = field(default_factory=dict)
    input_name: str = ""
    prediction: Mapping[str, Any] = field(default_factory=dict)
    ms: float | None = None


@dataclass(frozen=True, kw_only=True)
class LoadTestRun(Record):
    """The load test started: its settings and run id."""

    KEY = "load_test_run"
    WRITER = "load-test"
    settings: str
    instance_id: str
    run: str


@dataclass(frozen=True, kw_only=True)
class LoadTestDone(Record):
    KEY = "load-test"
    WRITER = "load-test"
    settings: str
    instance_id: str
    run: str
