"""From a configuration's independent trials to the figures its result reports.

Each trial (``result.Trial``) has its own warm-up, its own stop rule and its own throughput
and latency percentiles. The result reports, for throughput and for p50/p90/p95/p99, the
median over the trials with its 95% confidence interval (``stats.median_ci``); p99.9 is the
median only. ``stable`` is the CI's verdict (``stats.is_stable``), and ``quality`` adds the
interference the trials measured (``stats.quality``): the share of the host's CPU other
processes took over all the trials, each weighted by its duration. :func:`build_result` makes
the whole result of one model from what its trials measured (:class:`Measured`).

Standard library only: this module runs on the benchmark host.
"""

from __future__ import annotations

import dataclasses
import os
from array import array
from typing import Any

try:
    from . import inputs as input_pool, stats, targets
    from .result import BenchResult, ModelCopy, Trial
except ImportError:  # run as a script on the host
    import inputs as input_pool
    import stats
    import targets
    from result import BenchResult, ModelCopy, Trial

CI_KEYS = ("p50", "p90", "p95", "p99")  # latency percentiles reported with a CI


def _ci(values: list[float]) -> list[float] | None:
    ci = stats.median_ci(values)
    return None if ci is None else [ci[0], ci[1]]


def weighted_interference(trials: list[Trial], key: str = "interference") -> float | None:
    """The trials' interference (or steal), each weighted by its duration; None if none measured it."""
    known = [(getattr(t, key), t.duration_s) for t in trials if getattr(t, key) is not None]
    if not known:
        return None
    total = sum(d for _, d in known)
    if total <= 0:
        return sum(v for v, _ in known) / len(known)
    return sum(v * d for v, d in known) / total


def summarize(trials: list[Trial]) -> dict[str, Any]:
    """The result's fields that come from its trials (``BenchResult`` keyword arguments)."""
    if not trials:
        raise ValueError("no trial to summarize")
    throughputs = [t.throughput for t in trials]
    centre = stats.median(throughputs)
    ci = stats.median_ci(throughputs)
    out: dict[str, Any] = {
        "repeats": len(trials),
        "throughput_avg": centre,
        "throughput_ci95": None if ci is None else [ci[0], ci[1]],
        "throughput_peak": max(throughputs),
    }  # of the trials (the result: of the windows)
    for name in CI_KEYS:
        values = [getattr(t, f"latency_ms_{name}") for t in trials]
        out[f"latency_ms_{name}"] = stats.median(values)
        out[f"latency_ms_{name}_ci95"] = _ci(values)
    out["latency_ms_p99_9"] = stats.median([t.latency_ms_p99_9 for t in trials])
    interference = weighted_interference(trials)
    stop_rule_stable = all(t.stop_reason in ("stable", "VALID") for t in trials)
    out.update(
        interference=interference,
        steal=weighted_interference(trials, "steal"),
        stable=stats.is_stable(centre, ci, stop_rule_stable),
        quality=stats.quality(centre, ci, interference, stop_rule_stable),
        total_infs=sum(t.queries for t in trials),
        duration_s=sum(t.duration_s for t in trials),
    )
    return out


def describe(trials: list[Trial], summary: dict[str, Any]) -> str:
    """One line for the log: the trials' throughputs, the median and its CI, interference, quality."""
    each = ", ".join(f"{t.throughput:,.1f}" for t in trials)
    ci = summary.get("throughput_ci95")
    interval = f" (95% CI {ci[0]:,.1f} – {ci[1]:,.1f})" if ci else ""
    other = summary.get("interference")
    busy = "" if other is None else f"; other processes took {other:.0%} of the CPU"
    return (
        f"{len(trials)} trial(s): {each} samples/s; median {summary['throughput_avg']:,.1f}{interval}{busy}; "
        f"quality {summary['quality']}"
    )


@dataclasses.dataclass
class Measured:
    """What the trials of one model gave."""

    trials: list = dataclasses.field(default_factory=list)
    windows: list = dataclasses.field(default_factory=list)
    latencies: array = dataclasses.field(default_factory=lambda: array("q"))  # all trials' (ns): p0, max, mean
    extremes: dict = dataclasses.field(default_factory=dict)  # LoadGen: min, max and mean latency (ms)
    per_copy: list = dataclasses.field(default_factory=list)  # queries per model copy
    copies: dict = dataclasses.field(default_factory=dict)  # copy index -> {"pid", "load_ms", "warmup_ms"}
    warmups: list = dataclasses.field(default_factory=list)
    pool: int | None = None
    loadgen: list = dataclasses.field(default_factory=list)  # each trial's LoadGen verdicts


def build_result(args, text, spec, manifest, n, run_id, started_at, system, m) -> BenchResult:
    """One model's result from its trials' measurements ``m`` and the run's arguments."""
    man = manifest or {}
    summary = summarize(m.trials)
    batch = spec["batch_size"]
    if m.latencies:
        ordered = sorted(m.latencies)
        low, high, mean = ordered[0] / 1e6, ordered[-1] / 1e6, sum(ordered) / len(ordered) / 1e6
    else:  # LoadGen: its own extremes
        low, high = m.extremes["min"], m.extremes["max"]
        mean = sum(m.extremes["means"]) / len(m.extremes["means"])
    verdicts = None
    if args.harness == "loadgen":
        reasons = sorted({r for t in m.trials for r in (t.loadgen or {}).get("reasons", [])})
        valid = all((t.loadgen or {}).get("validity") == "VALID" for t in m.trials)
        verdicts = {
            "validity": "VALID" if valid else "INVALID",
            "reasons": reasons,
            "version": next((v.get("version") for v in m.loadgen if v.get("version")), None),
            "sample": f"one batch of {batch} inputs",
            "logs": str(args.loadgen_logs),
        }
    return BenchResult(
        run_id=run_id,
        timestamp=started_at,
        label=args.label,
        runtime=args.runtime,
        instance_type=system["instance_type"],
        model_filename=os.path.basename(spec["path"]) if spec["kind"] == "pt" else text,
        family=man.get("family"),
        name=man.get("name") or spec.get("func"),
        size=man.get("size"),
        precision=man.get("precision"),
        target=spec["target"],
        weights=man.get("weights"),
        batch_size=batch,
        n_models=n,
        workers_per_model=args.workers,
        mode=args.mode,
        target_rate=args.rate,
        throughput_avg=summary["throughput_avg"],
        throughput_peak=max(w.throughput for w in m.windows) if m.windows else summary["throughput_peak"],
        latency_ms_p0=low,
        latency_ms_p50=summary["latency_ms_p50"],
        latency_ms_p90=summary["latency_ms_p90"],
        latency_ms_p95=summary["latency_ms_p95"],
        latency_ms_p99=summary["latency_ms_p99"],
        latency_ms_p99_9=summary["latency_ms_p99_9"],
        latency_ms_p100=high,
        latency_ms_max=high,
        latency_ms_mean=mean,
        total_infs=summary["total_infs"],
        total_samples=summary["total_infs"] * batch,
        duration_s=summary["duration_s"],
        stable=summary["stable"],
        stop_reason=_stop_reason(m.trials),
        load_avg_ms=sum(c["load_ms"] for c in m.copies.values()) / len(m.copies),
        warmup_avg_ms=sum(m.warmups) / len(m.warmups) if m.warmups else None,
        windows=m.windows,
        models=[
            ModelCopy(
                index=i,
                pid=c["pid"],
                env=targets.pin_env(spec["target"], i, n)
                if args.harness == "inflab"
                else targets.pin_env(spec["target"], 0, 1),
                threads=_threads(args, spec, n, i),
                queries=m.per_copy[i],
                load_ms=c["load_ms"],
                warmup_ms=c["warmup_ms"],
            )
            for i, c in sorted(m.copies.items())
        ],
        settings={
            k: getattr(args, k)
            for k in (
                "min_duration",
                "min_queries",
                "max_duration",
                "window",
                "stability",
                "warmup",
                "seed",
                "intra_op_threads",
                "repeats",
            )
        },
        system=system,
        harness=args.harness,
        repeats=summary["repeats"],
        throughput_ci95=summary["throughput_ci95"],
        latency_ms_p50_ci95=summary["latency_ms_p50_ci95"],
        latency_ms_p90_ci95=summary["latency_ms_p90_ci95"],
        latency_ms_p95_ci95=summary["latency_ms_p95_ci95"],
        latency_ms_p99_ci95=summary["latency_ms_p99_ci95"],
        interference=summary["interference"],
        steal=summary["steal"],
        quality=summary["quality"],
        trials=m.trials,
        inputs=_inputs(spec, m.pool),
        loadgen=verdicts,
    )


def _stop_reason(trial_list):
    reasons = [t.stop_reason for t in trial_list]
    if all(r in ("VALID", "INVALID") for r in reasons):
        return "VALID" if all(r == "VALID" for r in reasons) else "INVALID"
    return "stable" if all(r == "stable" for r in reasons) else "max-duration"


def _threads(args, spec, n, index):
    return targets.intra_op_threads(
        spec["target"], targets.pin_env(spec["target"], index, n), args.workers, args.intra_op_threads
    )


def _inputs(spec, pool):
    if spec["kind"] == "pt":
        return input_pool.describe(spec["inputs"], pool or 0)
    return {"pool": pool, "order": "random", "kind": "given by the py: model"}
