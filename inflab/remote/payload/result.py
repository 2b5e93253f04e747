"""The benchmark result: one schema for the harness that writes it, the steps that store it
and the report that reads it.

A result is a :class:`BenchResult`; on disk and in the session it is the JSON object that
:meth:`BenchResult.to_dict` makes. Its measurement fields keep neuronperf's names
(``throughput_avg``, ``latency_ms_p50`` … ``latency_ms_p99.9``, ``latency_ms_max``,
``batch_size``, ``n_models``, ``workers_per_model``), so its tools read our results too.
``latency_ms_p99.9`` is not a Python identifier: the attribute is ``latency_ms_p99_9``.

:meth:`BenchResult.from_dict` accepts keys it does not know (a newer writer, or a caller's
additions) and refuses, naming them, missing required fields and values of the wrong type.

Standard library only: this module runs on the benchmark host (Python 3.10+).
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import types
import typing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

FORMAT = "inflab-bench/2"  # the schema version; bump it when a required field changes
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
SANDBOX_RUNTIME = "sandbox"  # ``runtime`` of results measured on the local sandbox host (this machine)


class SchemaError(ValueError):
    """A dict that is not a benchmark result of this schema; the message names the field."""


def new_run_id() -> str:
    """A short random run id (8 hex digits): enough to tell a session's runs apart."""
    return secrets.token_hex(4)


def utc_now() -> str:
    """Now, ISO 8601 in UTC to the second: ``2026-05-01T12:34:56+00:00``."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _key(name: str) -> dict:
    """Field metadata: the JSON key of a field whose name cannot be an attribute."""
    return {"key": name}


@dataclass(frozen=True)
class Window:
    """One measuring window: its end (nominal seconds since go), queries done, samples/s."""

    t: float
    queries: int
    throughput: float
    trial: int = 1  # which trial it belongs to (results of one trial say 1)


@dataclass(frozen=True)
class ModelCopy:
    """One model process: how it was pinned and what it did."""

    index: int
    pid: int
    env: dict[str, str]
    threads: int | None  # intra-op threads per worker (None: the runtime's default)
    queries: int
    load_ms: float
    warmup_ms: float | None


@dataclass(frozen=True, kw_only=True)
class Trial:
    """One independent trial of a configuration: its own warm-up, its own stop rule."""

    index: int
    throughput: float  # samples/s
    latency_ms_p50: float
    latency_ms_p90: float
    latency_ms_p95: float
    latency_ms_p99: float
    latency_ms_p99_9: float = field(metadata=_key("latency_ms_p99.9"))
    queries: int
    duration_s: float
    stop_reason: str  # stable | max-duration (inflab); VALID | INVALID (LoadGen)
    interference: float | None = None  # share of the host's CPU other processes took (0..1)
    steal: float | None = None  # share the hypervisor stole (0..1), where the kernel reports it
    loadgen: dict[str, Any] | None = None  # LoadGen's own verdicts of this trial's scenarios


@dataclass(frozen=True, kw_only=True)
class BenchResult:
    """One benchmark run of one compiled model on one host."""

    format: str = FORMAT
    run_id: str
    timestamp: str  # when the run started, ISO 8601 UTC
    label: str = ""  # free text from the caller (e.g. the session's name)
    runtime: str = ""  # the host runtime that ran it, as the caller names it ("aws", "sandbox")
    instance_type: str
    # the model, from its manifest (X.json beside X.pt); None for a py: model
    model_filename: str
    family: str | None
    name: str | None
    size: str | None  # full | tiny
    precision: str | None
    target: str  # inf1 | inf2 | cuda | cpu
    weights: str | None
    # the set-up (neuronperf's names)
    batch_size: int
    n_models: int
    workers_per_model: int
    pipeline_size: int = 1
    mode: str  # closed | open
    target_rate: float | None  # open loop: queries/s over all models
    # the measurement (neuronperf's names; latencies per batch, ms)
    throughput_avg: float  # samples/s
    throughput_peak: float
    latency_ms_p0: float
    latency_ms_p50: float
    latency_ms_p90: float
    latency_ms_p95: float
    latency_ms_p99: float
    latency_ms_p99_9: float = field(metadata=_key("latency_ms_p99.9"))
    latency_ms_p100: float
    latency_ms_max: float
    latency_ms_mean: float
    total_infs: int
    total_samples: int
    duration_s: float
    stable: bool
    stop_reason: str  # stable | max-duration
    load_avg_ms: float
    warmup_avg_ms: float | None
    windows: list[Window]
    models: list[ModelCopy]
    settings: dict[str, Any]  # the stop rule and warm-up the run used
    system: dict[str, Any]  # host, CPU, Python, SDK package versions (sysinfo.system_info)
    neuronperf: str | None = None  # path of neuronperf's cross-check report, when it ran
    # Trust (added within inflab-bench/2: older results load with these defaults). With
    # repeats > 1, throughput_avg and the latency percentiles above are the medians of the
    # trials, and each *_ci95 is [low, high], the 95% CI of that median (stats.py).
    harness: str = "inflab"  # inflab | loadgen (MLPerf LoadGen ran the same model: loadgen_harness.py)
    repeats: int = 1
    throughput_ci95: list[float] | None = None
    latency_ms_p50_ci95: list[float] | None = None
    latency_ms_p90_ci95: list[float] | None = None
    latency_ms_p95_ci95: list[float] | None = None
    latency_ms_p99_ci95: list[float] | None = None
    interference: float | None = None  # share of the host's CPU others took while it measured (interference.py)
    steal: float | None = None
    quality: str | None = None  # ok | noisy (the CI is wide) | disturbed (interference over 10%)
    trials: list[Trial] = field(default_factory=list)
    inputs: dict[str, Any] | None = None  # the input pool: {"pool", "order", "kind"}
    loadgen: dict[str, Any] | None = None  # harness loadgen: its version and VALID/INVALID verdicts

    @property
    def sandbox(self) -> bool:
        """Measured on the local sandbox host (this machine's CPU), not on an instance."""
        return self.runtime == SANDBOX_RUNTIME

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: fields in order, under their JSON keys."""
        return {_json_key(f): _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Any) -> BenchResult:
        """A result from its JSON object. Unknown keys are ignored; a missing required field,
        a value of the wrong type or another schema version is a :class:`SchemaError`."""
        if not isinstance(data, dict):
            raise SchemaError(f"a benchmark result is a JSON object, not {type(data).__name__}")
        if data.get("format", FORMAT) != FORMAT:
            raise SchemaError(
                f"benchmark result field 'format': {data['format']!r} is not {FORMAT!r} "
                "(written by another version of the harness; run the benchmark again)"
            )
        return _build(cls, data, "benchmark result")


# ---------------------------------------------------------------- conversion


def _json_key(f: dataclasses.Field) -> str:
    return f.metadata.get("key", f.name)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {_json_key(f): _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _build(cls: type, data: dict, where: str) -> Any:
    fields = dataclasses.fields(cls)
    missing = [_json_key(f) for f in fields if _required(f) and _json_key(f) not in data]
    if missing:
        raise SchemaError(f"{where} is missing required field{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
    hints = typing.get_type_hints(cls)
    values = {
        f.name: _convert(data[_json_key(f)], hints[f.name], f"{where} field {_json_key(f)!r}")
        for f in fields
        if _json_key(f) in data
    }
    return cls(**values)


def _convert(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against the type ``hint`` (ints accepted as floats; nested records built)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise SchemaError(f"{where}: expected an object, got {value!r}")
        return _build(hint, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise SchemaError(f"{where}: expected a list, got {value!r}")
        return [_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise SchemaError(f"{where}: expected an object, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise SchemaError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value
