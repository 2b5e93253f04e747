"""Benchmark results as a report: one row per run, cost per million inferences, and the answer
the lab exists for — which configuration is cheapest under a latency limit, and which is fastest.

Rows come from the results stored in the session, read through their one schema
(``remote/payload/result.py``), and from the sweep's failed jobs, which stay in the report
marked FAILED with their reason rather than vanishing. Each row names its run (id and time),
so two runs of the same configuration stay two rows. Every cost carries its price's source and
date (:mod:`inflab.prices`). Formats: an aligned text table, CSV, Markdown and JSON; and the
original workshop's CSV columns (:func:`workshop_csv`). Standard library only (it is on the
CLI's path).
"""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

from . import prices as _prices
from .prices import Prices
from .ranking import FAILED, OK, PERCENTILES, Recommendation, check_query, describe, frontier, is_ok, recommend
from .remote.payload.batch_job import RUN_PREFIX as SWEEP_RUN_PREFIX
from .remote.payload.result import BenchResult
from .remote.payload.stats import DISTURBED, DISTURBED_SHARE, NOISY, STABLE_HALF_WIDTH

PRICES = _prices.PRICES  # kept here for callers of the first report module
PRICE_SOURCE = _prices.SOURCE
FORMATS = ("table", "csv", "md", "json")
__all__ = ["FAILED", "OK", "PERCENTILES", "Recommendation", "check_query", "describe", "frontier", "is_ok", "recommend"]

COLUMNS = [  # (key, heading, format): the table, Markdown and the TUI's report screen
    ("model", "MODEL", "{}"),
    ("precision", "PREC", "{}"),
    ("target", "TARGET", "{}"),
    ("instance_type", "INSTANCE", "{}"),
    ("batch_size", "BATCH", "{}"),
    ("throughput_avg", "SAMPLES/S", "{:,.1f}"),
    ("throughput_pm", "±95%", "{}"),
    ("latency_ms_p50", "P50 MS", "{:.2f}"),
    ("latency_ms_p90", "P90 MS", "{:.2f}"),
    ("latency_ms_p95", "P95 MS", "{:.2f}"),
    ("latency_ms_p99", "P99 MS", "{:.2f}"),
    ("models_x_workers", "MODELS×W", "{}"),
    ("quality", "QUALITY", "{}"),
    ("harness", "HARNESS", "{}"),
    ("stable", "STABLE", "{}"),
    ("price_per_hour", "$/HOUR", "{:.4f}"),
    ("cost_per_million", "$/1M INF", "{:.4f}"),
    ("run", "RUN", "{}"),
]
CSV_EXTRA = [
    "n_models",
    "workers_per_model",
    "devices",
    "weights",
    "run_id",
    "timestamp",
    "status",
    "frontier",
    "price_source",
    "price_date",
    "family",
    "input_size",
    "total_infs",
    "duration_s",
    "label",
    "runtime",
    "served",
    "offered_rps",
    "errors",
    "overhead_ms_p50",
    "meets_limit",
    "limit_ms",
    "repeats",
    "throughput_ci95_low",
    "throughput_ci95_high",
    "interference",
    "validity",
    "generator_cpu_share",
    "threads",
    "phase",
    "deployment",
    "instance_count",
    "model_latency_ms",
    "overhead_latency_ms",
]
SERVED_COLUMNS = [  # the served block of the table and Markdown
    ("model", "MODEL", "{}"),
    ("batch_size", "BATCH", "{}"),
    ("n_models", "WORKERS", "{}"),
    ("offered_rps", "OFFERED/S", "{:,.1f}"),
    ("throughput_avg", "ACHIEVED/S", "{:,.1f}"),
    ("latency_ms_p50", "P50 MS", "{:.2f}"),
    ("latency_ms_p90", "P90 MS", "{:.2f}"),
    ("latency_ms_p99", "P99 MS", "{:.2f}"),
    ("errors", "ERRORS", "{}"),
    ("overhead_ms_p50", "OVERHEAD MS", "{:+.2f}"),
    ("meets_limit", "MEETS", "{}"),
    ("generator_cpu_share", "GEN CPU", "{:.1%}"),
    ("interference", "OTHERS", "{:.0%}"),
    ("run", "RUN", "{}"),
]
SAGEMAKER_COLUMNS = [  # the SageMaker block of the table and Markdown
    ("model", "MODEL", "{}"),
    ("precision", "PREC", "{}"),
    ("instance_type", "INSTANCE", "{}"),
    ("instance_count", "×", "{}"),
    ("offered_rps", "OFFERED/S", "{:,.1f}"),
    ("throughput_avg", "ACHIEVED/S", "{:,.1f}"),
    ("latency_ms_p50", "P50 MS", "{:.2f}"),
    ("latency_ms_p90", "P90 MS", "{:.2f}"),
    ("latency_ms_p99", "P99 MS", "{:.2f}"),
    ("errors", "ERRORS", "{}"),
    ("overhead_ms_p50", "OVERHEAD MS", "{:+.2f}"),
    ("price_per_hour", "$/HOUR", "{:.4f}"),
    ("cost_per_million", "$/1M REQ", "{:.4f}"),
    ("meets_limit", "MEETS", "{}"),
    ("run", "RUN", "{}"),
]
WORKSHOP_COLUMNS = [
    "model_name",
    "processor",
    "max_length",
    "batch_size",
    "samples",
    "latency_p50",
    "latency_p90",
    "latency_p95",
    "total_time",
    "throughput",
]
ROW_KEYS = (  # every row has exactly these keys, whatever made it (a result, a failed job, an imported file)
    "model",
    "family",
    "precision",
    "target",
    "instance_type",
    "sandbox",
    "batch_size",
    "input_size",
    "throughput_avg",
    "latency_ms_p50",
    "latency_ms_p90",
    "latency_ms_p95",
    "latency_ms_p99",
    "latency_ms_p99.9",
    "latency_ms_max",
    "n_models",
    "workers_per_model",
    "models_x_workers",
    "devices",
    "mode",
    "stable",
    "stop_reason",
    "weights",
    "total_infs",
    "duration_s",
    "price_per_hour",
    "cost_per_million",
    "price_source",
    "price_date",
    "model_filename",
    "run",
    "run_id",
    "timestamp",
    "label",
    "runtime",
    "status",
    # served rows (TorchServe, one per offered rate of a load test); False/None on direct rows
    "served",
    "offered_rps",
    "errors",
    "overhead_ms_p50",
    "meets_limit",
    "limit_ms",
    "highest_rate_meeting_limit",
    "direct_run_id",
    "direct_latency_ms_p50",
    # trust: trials, their CIs, the CPU others took, which harness measured it (None: not recorded)
    "harness",
    "repeats",
    "throughput_ci95",
    "throughput_pm",
    "latency_ms_p50_ci95",
    "latency_ms_p90_ci95",
    "latency_ms_p95_ci95",
    "latency_ms_p99_ci95",
    "interference",
    "quality",
    "validity",
    "generator_cpu_share",
    "threads",
    "phase",
    # how the model was deployed (:data:`DEPLOYMENTS`), and a SageMaker endpoint's instances behind the row's variant
    "deployment",
    "instance_count",
    # SageMaker's own view of a load test's calls (CloudWatch's ModelLatency and OverheadLatency, averaged over the run)
    "model_latency_ms",
    "overhead_latency_ms",
    "cloudwatch_calls",
    "load_calls",
)
#: the ways the report's rows were served: the direct benchmark on the instance, TorchServe on it, a SageMaker
#: real-time endpoint, the Batch sweep's direct benchmarks — in the order the report groups them
DEPLOYMENTS = ("instance", "batch", "torchserve", "sagemaker")
DEPLOYMENT_NAMES = {
    "instance": "Direct on the instance",
    "batch": "Direct on each type (Batch sweep)",
    "torchserve": "TorchServe on the instance",
    "sagemaker": "SageMaker endpoint",
}
RUN_CHARS = 34  # a run id longer than this is shortened in the table and Markdown
INPUT_SIZE = re.compile(r"_(\d+)_b\d+\.pt$")  # compile.py's model file: FAMILY_TARGET_PRECISION_SIZE_bBATCH.pt


def cost_per_million(price_per_hour: float | None, throughput: float | None) -> float | None:
    """Dollars per million inferences (samples) at ``throughput`` samples/s on an instance
    billed ``price_per_hour``; None without a price or a throughput."""
    if not price_per_hour or not throughput or throughput <= 0:
        return None
    return price_per_hour / (throughput * 3600) * 1_000_000


def short_run(run_id: str) -> str:
    return run_id if len(run_id) <= RUN_CHARS else run_id[: RUN_CHARS - 1] + "…"


def new_row(**values: Any) -> dict[str, Any]:
    """A row with every key of :data:`ROW_KEYS` (None unless given); an unknown key is a bug and
    raises KeyError, so every maker of rows keeps the one shape."""
    unknown = set(values) - set(ROW_KEYS)
    if unknown:
        raise KeyError(f"not report row keys: {', '.join(sorted(unknown))}")
    out = dict.fromkeys(ROW_KEYS)
    out.update(values)
    if out["status"] is None:
        out["status"] = OK
    if out["deployment"] is None:
        out["deployment"] = deployment_of(out)
    return out


def deployment_of(r: dict[str, Any]) -> str:
    """How a row's model was served, when its maker did not say: a served row is TorchServe's, a sweep
    job's run (its run id starts ``sweep-``, or a failed job's ``runtime`` is ``batch``) Batch's, anything
    else the direct benchmark on the instance."""
    if r.get("served"):
        return "torchserve"
    if r.get("runtime") == "batch" or str(r.get("run_id") or "").startswith(f"{SWEEP_RUN_PREFIX}-"):
        return "batch"
    return "instance"


def _priced(itype: str | None, throughput: float | None, prices: Prices | None) -> dict[str, Any]:
    quote = (prices or _prices.default()).quote(itype)
    if quote is None:
        return {"price_per_hour": None, "cost_per_million": None, "price_source": None, "price_date": None}
    return {
        "price_per_hour": quote.per_hour,
        "cost_per_million": cost_per_million(quote.per_hour, throughput),
        "price_source": quote.source,
        "price_date": quote.date,
    }


def devices_used(system: dict[str, Any]) -> str | None:
    """What the run's host gave it, from the result's system record: its NeuronCores, else its GPUs,
    else its CPUs (a sweep job has a whole instance, so this is the instance's)."""
    for key, what in (("neuron_cores", "NeuronCores"), ("gpus", "GPUs"), ("cpu_count", "vCPUs")):
        n = system.get(key)
        if isinstance(n, int) and not isinstance(n, bool) and n > 0:
            return f"{n} {what}"
    return None


def row(result: dict[str, Any] | BenchResult, prices: Prices | None = None) -> dict[str, Any]:
    """One report row from a benchmark result (its JSON object or the record); a dict that is
    not a result of the current schema raises :class:`SchemaError`, naming the field.

    The price is the instance type's in ``prices`` (default: the shipped table). A sandbox sweep
    row names the type it stands in for and is priced as that type; the model exercise's sandbox
    rows name the type ``sandbox``, which has no price."""
    r = result if isinstance(result, BenchResult) else BenchResult.from_dict(result)
    size = INPUT_SIZE.search(r.model_filename)
    return new_row(
        model=(r.name or r.model_filename) + (" (tiny)" if r.size == "tiny" else ""),
        family=r.family,
        precision=r.precision,
        target=r.target,
        instance_type=r.instance_type,
        sandbox=r.sandbox,
        batch_size=r.batch_size,
        input_size=int(size.group(1)) if size else None,
        throughput_avg=r.throughput_avg,
        latency_ms_p50=r.latency_ms_p50,
        latency_ms_p90=r.latency_ms_p90,
        latency_ms_p95=r.latency_ms_p95,
        latency_ms_p99=r.latency_ms_p99,
        **{"latency_ms_p99.9": r.latency_ms_p99_9},
        latency_ms_max=r.latency_ms_max,
        n_models=r.n_models,
        workers_per_model=r.workers_per_model,
        models_x_workers=f"{r.n_models}×{r.workers_per_model}",
        devices=devices_used(r.system),
        mode=r.mode,
        stable=r.stable,
        stop_reason=r.stop_reason,
        weights=r.weights,
        total_infs=r.total_infs,
        duration_s=r.duration_s,
        **_priced(r.instance_type, r.throughput_avg, prices),
        model_filename=r.model_filename,
        run=short_run(r.run_id),
        run_id=r.run_id,
        timestamp=r.timestamp,
        label=r.label,
        runtime=r.runtime,
        status=OK,
        served=False,
        harness=r.harness,
        repeats=r.repeats,
        throughput_ci95=r.throughput_ci95,
        throughput_pm=_pm(r.throughput_ci95, r.throughput_avg),
        latency_ms_p50_ci95=r.latency_ms_p50_ci95,
        latency_ms_p90_ci95=r.latency_ms_p90_ci95,
        latency_ms_p95_ci95=r.latency_ms_p95_ci95,
        latency_ms_p99_ci95=r.latency_ms_p99_ci95,
        interference=r.interference,
        quality=r.quality,
        validity=(r.loadgen or {}).get("validity"),
        threads=r.models[0].threads if r.models else None,
    )


def _pm(ci: list[float] | None, centre: float | None) -> str | None:
    """The CI's half-width as ``±1.2%`` of the median (None without a CI)."""
    if not ci or not centre:
        return None
    return f"±{(ci[1] - ci[0]) / 2 / abs(centre):.1%}"


def served_rows(record: dict[str, Any], prices: Prices | None = None) -> list[dict[str, Any]]:
    """The rows of one load test of the served model (the ``served`` record the load-test step
    stores): one per offered rate, throughput = requests answered per second (one sample each),
    latencies per request from its scheduled time, and the serving overhead = served p50 − the
    direct benchmark's p50 at the same batch. A record without rates raises ValueError."""
    if not isinstance(record, dict) or not isinstance(record.get("rates"), list) or not record.get("run_id"):
        raise ValueError("a served record needs its run_id and rates")
    direct = record.get("direct") or {}
    base = direct.get("latency_ms_p50")
    workers = record.get("workers")
    size = INPUT_SIZE.search(record.get("model_filename") or "")
    out = []
    for r in record["rates"]:
        p50, rate = r.get("latency_ms_p50"), r.get("offered_rps")
        out.append(
            new_row(
                model=(record.get("name") or record.get("model_filename") or "-")
                + (" (tiny)" if record.get("size") == "tiny" else ""),
                family=record.get("family"),
                precision=record.get("precision"),
                target=record.get("target"),
                instance_type=record.get("instance_type"),
                sandbox=bool(record.get("sandbox")),
                batch_size=record.get("batch_size"),
                input_size=int(size.group(1)) if size else None,
                throughput_avg=r.get("achieved_rps"),
                latency_ms_p50=p50,
                latency_ms_p90=r.get("latency_ms_p90"),
                latency_ms_p99=r.get("latency_ms_p99"),
                latency_ms_max=r.get("latency_ms_max"),
                n_models=workers,
                workers_per_model=1,
                models_x_workers=f"{workers}×1" if workers else None,
                mode="served",
                stop_reason=record.get("stop_reason"),
                weights=record.get("weights"),
                total_infs=r.get("ok"),
                duration_s=r.get("duration_s"),
                **_priced(record.get("instance_type"), r.get("achieved_rps"), prices),
                model_filename=record.get("model_filename"),
                run=short_run(
                    f"{record['run_id']}@{rate:g}/s" + ("" if r.get("phase") in (None, "rise") else f" {r['phase']}")
                ),
                run_id=record["run_id"],
                timestamp=record.get("timestamp"),
                label=record.get("label"),
                runtime="torchserve",
                status=OK,
                served=True,
                offered_rps=rate,
                errors=r.get("errors"),
                overhead_ms_p50=None if p50 is None or base is None else p50 - base,
                meets_limit=r.get("meets_limit"),
                limit_ms=record.get("limit_ms"),
                highest_rate_meeting_limit=record.get("highest_rate_meeting_limit"),
                direct_run_id=direct.get("run_id"),
                direct_latency_ms_p50=base,
                interference=r.get("interference"),
                generator_cpu_share=r.get("generator_cpu_share"),
                threads=record.get("threads_per_worker"),
                phase=r.get("phase"),
                quality=None
                if r.get("interference") is None
                else (DISTURBED if r["interference"] > DISTURBED_SHARE else "ok"),
            )
        )
    return out


def sagemaker_rows(record: dict[str, Any], prices: Prices | None = None) -> list[dict[str, Any]]:
    """The rows of one load test of a SageMaker endpoint's variant (the ``sagemaker`` record the
    sagemaker-load-test step stores): one per offered rate, like a served row, priced as SageMaker
    bills the variant — the ml.* type's hourly price × its instance count — so the cost per 1M is per
    million requests answered at that rate. A record without rates raises ValueError."""
    if not isinstance(record, dict) or not isinstance(record.get("rates"), list) or not record.get("run_id"):
        raise ValueError("a SageMaker record needs its run_id and rates")
    count = record.get("instance_count") if isinstance(record.get("instance_count"), int) else 1
    quote = (prices or _prices.default()).quote(record.get("instance_type"))
    cw = record.get("cloudwatch") if isinstance(record.get("cloudwatch"), dict) else {}
    seen = {
        k: (cw.get(f"{k}_ms") or {}).get("avg_ms") if isinstance(cw.get(f"{k}_ms"), dict) else None
        for k in ("model_latency", "overhead_latency")
    }
    calls = (cw.get("model_latency_ms") or {}).get("calls") if isinstance(cw.get("model_latency_ms"), dict) else None
    rows = []
    for r in served_rows({**record, "workers": None}, prices):
        per_hour = quote.per_hour * count if quote else None
        rows.append(
            {
                **r,
                "deployment": "sagemaker",
                "runtime": "sagemaker",
                "instance_count": count,
                "models_x_workers": f"{count} instance{'s' if count > 1 else ''}",
                "n_models": count,
                "price_per_hour": per_hour,
                "cost_per_million": cost_per_million(per_hour, r["throughput_avg"]),
                "price_source": quote.source if quote else None,
                "price_date": quote.date if quote else None,
                "model_latency_ms": seen["model_latency"],
                "overhead_latency_ms": seen["overhead_latency"],
                "cloudwatch_calls": calls,
                "load_calls": cw.get("run_calls"),
            }
        )
    return rows


def failed_row(record: dict[str, Any], prices: Prices | None = None) -> dict[str, Any]:
    """The row of a sweep job that failed (the ``batch-failed`` record the sweep stores): what it
    was meant to measure, no measurements, and ``status`` ``"FAILED: <reason>"``. Its instance
    type keeps its $/hour (what the attempt cost to run), never a cost per inference. A record
    without a reason or a batch size raises ValueError."""
    if not isinstance(record, dict) or not record.get("reason") or not isinstance(record.get("batch_size"), int):
        raise ValueError("a failed-job record needs its reason and batch_size")
    reason = " ".join(str(record["reason"]).split())
    run_id = str(record.get("job_name") or record.get("job_id") or "")
    itype = record.get("instance_type") or ""
    price = _priced(itype, None, prices)
    return new_row(
        model=record.get("family") or "-",
        family=record.get("family"),
        precision=record.get("precision"),
        target=record.get("target"),
        instance_type=itype,
        sandbox=False,
        batch_size=record["batch_size"],
        **price,
        run=short_run(run_id),
        run_id=run_id,
        label=record.get("label"),
        runtime="batch",
        status=f"{FAILED}: {reason}",
    )


def session_rows(store: Any, name: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The report rows of session ``name`` — benchmark results and failed sweep jobs, in the order
    they were stored — priced with the session's prices, and warning lines for what was left out
    (results in an older format, unreadable records, unusable stored prices)."""
    from .remote.payload.result import SchemaError

    warnings: list[str] = []
    try:
        prices = _prices.from_store(store, name)
    except _prices.PriceError as e:
        warnings.append(str(e))
        prices = _prices.default()
    rows: list[dict[str, Any]] = []
    old: list[str] = []
    bad = 0
    for rec in store.results(name):
        if rec["kind"] == "benchmark":
            try:
                rows.append(row(rec["data"], prices))
            except SchemaError as e:
                old.append(str(e))
        elif rec["kind"] == "served":
            try:
                rows.extend(served_rows(rec["data"], prices))
            except ValueError:
                bad += 1
        elif rec["kind"] == "sagemaker":
            try:
                rows.extend(sagemaker_rows(rec["data"], prices))
            except ValueError:
                bad += 1
        elif rec["kind"] == "batch-failed":
            try:
                rows.append(failed_row(rec["data"], prices))
            except ValueError:
                bad += 1
    if old:
        warnings.append(f"{len(old)} stored result(s) left out, written in an older format ({old[0]})")
    if bad:
        warnings.append(f"{bad} failed-job or load-test record(s) left out: incomplete")
    return rows, warnings


# ---------------------------------------------------------------- the answer

VIEW = "report_view"  # the session key: the latency limit and percentile the report screen last had


def saved_view(store: Any, name: str) -> tuple[float | None, str]:
    """The latency limit and percentile last chosen on session ``name``'s report screen; no limit
    and p90 until one is (or when what is stored is not a valid choice)."""
    view = store.get(name, VIEW)
    if not isinstance(view, dict):
        return None, "p90"
    limit, percentile = view.get("limit_ms"), view.get("percentile")
    try:
        check_query(limit, percentile)
    except ValueError:
        return None, "p90"
    return limit, percentile


def save_view(store: Any, name: str, limit_ms: float | None, percentile: str) -> None:
    """Remember the report screen's latency limit and percentile for session ``name``."""
    check_query(limit_ms, percentile)
    store.put(name, VIEW, {"limit_ms": limit_ms, "percentile": percentile})


def deployments(
    rows: list[dict[str, Any]], limit_ms: float | None = None, percentile: str = "p90"
) -> list[dict[str, Any]]:
    """Which deployment serves the model cheapest under the limit: per deployment that has rows (the
    direct benchmark on the instance, the sweep's, TorchServe, SageMaker), its cheapest priced row whose
    ``percentile`` latency is at most ``limit_ms`` — a served row (TorchServe, SageMaker) also without
    errors at that rate; with no limit, a served row must meet its own load test's p99 limit — or why
    there is none. One dict each: deployment, its name, the row (or None), and the line that says it."""
    check_query(limit_ms, percentile)
    key = f"latency_ms_{percentile}"
    out = []
    for dep in DEPLOYMENTS:
        mine = [r for r in rows if r.get("deployment") == dep and is_ok(r)]
        if not mine:
            continue
        served = dep in ("torchserve", "sagemaker")
        if limit_ms is None:
            fits = [r for r in mine if not served or r.get("meets_limit")]
            under = "meeting its load test's p99 limit" if served else "with no latency limit"
        else:
            fits = [
                r for r in mine if r.get(key) is not None and r[key] <= limit_ms and not (served and r.get("errors"))
            ]
            under = f"under {limit_ms:g} ms {percentile}"
        priced = [r for r in fits if r.get("cost_per_million") is not None]
        best = min(priced, key=lambda r: (r["cost_per_million"], -(r["throughput_avg"] or 0))) if priced else None
        name = DEPLOYMENT_NAMES[dep]
        if best is not None:
            unit = "requests" if served else "inferences"
            rate = f" at {best['offered_rps']:g} requests/s" if served and best.get("offered_rps") is not None else ""
            over = (
                f", {best['overhead_ms_p50']:+.2f} ms p50 against the direct run"
                if served and best.get("overhead_ms_p50") is not None
                else ""
            )
            where = describe(best, mine) + (
                f" × {best['instance_count']}" if (best.get("instance_count") or 1) > 1 else ""
            )
            line = (
                f"{name}: {where}{rate}, ${best['cost_per_million']:.4f} per 1M {unit}{over} "
                f"({best['price_source']}, {best['price_date']})"
            )
        elif fits:
            line = f"{name}: {len(fits)} run(s) {under}, none priced (measured on the sandbox host itself, or a type with no price)"
        else:
            lowest = min((r for r in mine if r.get(key) is not None), key=lambda r: r[key], default=None)
            line = f"{name}: nothing {under}" + (f" (lowest {percentile} {lowest[key]:.2f} ms)" if lowest else "")
        out.append({"deployment": dep, "name": name, "row": best, "line": line})
    return out


def deployment_lines(rows: list[dict[str, Any]], limit_ms: float | None = None, percentile: str = "p90") -> list[str]:
    """The deployments side by side (:func:`deployments`), with the sentence that heads them."""
    found = deployments(rows, limit_ms, percentile)
    if len(found) < 2:
        return []
    head = (
        "Which deployment serves it cheapest"
        + (
            f" under {limit_ms:g} ms {percentile}"
            if limit_ms is not None
            else " (served: at its load test's p99 limit)"
        )
        + ":"
    )
    return [head] + ["  " + d["line"] for d in found]


def sort_rows(rows: list[dict[str, Any]], key: str, descending: bool = False) -> list[dict[str, Any]]:
    """Rows ordered by ``key``, rows without a value (None, or a failed run's measurement) last in
    either direction; equal values keep their order."""
    present = [r for r in rows if r.get(key) is not None]
    missing = [r for r in rows if r.get(key) is None]
    try:
        present.sort(key=lambda r: r[key], reverse=descending)
    except TypeError:  # mixed kinds of value in one column: compare as text
        present.sort(key=lambda r: str(r[key]), reverse=descending)
    return present + missing


# ---------------------------------------------------------------- rendering


def _cell(value: Any, fmt: str) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def price_sources(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each distinct price source the rows use, with its date, the region it lists and the instance
    types priced by it."""
    found: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        if r.get("price_source"):
            types = found.setdefault((r["price_source"], r.get("price_date") or ""), [])
            if r.get("instance_type") not in types:
                types.append(r.get("instance_type"))
    return [
        {"source": s, "date": d, "region": _prices.source_region(s), "instance_types": t} for (s, d), t in found.items()
    ]


def price_note(src: dict[str, Any], region: str | None = None, mark: str = "", *, types: bool = False) -> str:
    """One price source's line: where its prices come from and when (``types``: for which instance
    types) — and, when it lists another region than the lab's (``region``), which one, and whether
    that changes them."""
    priced = f" ({', '.join(str(t) for t in src['instance_types'])})" if types else ""
    line = f"Prices{' ' + mark if mark else ''}: {src['source']}, {src['date']}{priced}."
    listed = src.get("region")
    if region and listed and listed != region:
        same = region in _prices.SAME_AS_TABLE and listed in _prices.SAME_AS_TABLE
        line += f" These are {listed} list prices; this lab runs in {region}, " + (
            "where these types cost the same." if same else "where they may differ."
        )
    return line


def session_region(store: Any, name: str) -> str | None:
    """The AWS region session ``name`` runs in (what its prices are compared with)."""
    config = store.get_session(name).config
    region = (config.get("aws") or {}).get("region") if isinstance(config, dict) else None
    return region if isinstance(region, str) else None


def _notes(
    rows: list[dict[str, Any]],
    on: list[bool],
    percentile: str,
    marks: dict,
    region: str | None,
    tied: set[str] = frozenset(),
) -> list[str]:
    notes = []
    if any(on):
        notes.append(
            f"* on the cost/latency frontier at {percentile}: no other run is both no worse and, beyond noise, "
            "better on cost per 1M or latency (runs without a price: higher samples/s instead of lower cost)."
        )
    if tied:
        notes.append("≈ within noise of a recommended run: their 95% CIs overlap, so neither is shown to be better.")
    notes += trust_notes(rows)
    for src in price_sources(rows):
        notes.append(price_note(src, region, marks.get((src["source"], src["date"]), "")))
    for r in rows:
        if not is_ok(r):
            notes.append(f"FAILED {r.get('run_id') or '-'} ({describe(r)}): {r['status'][len(FAILED) + 2 :]}")
    if any(r.get("sandbox") for r in rows):
        extra = (
            "; a sweep or SageMaker row is priced as the instance type it stands in for, so its cost only illustrates"
            if any(r.get("sandbox") and r.get("price_per_hour") for r in rows)
            else ""
        )
        notes.append(f"sandbox rows ran on this machine's CPU: not comparable with an instance{extra}.")
    if any(r.get("weights") == "random" for r in rows):
        notes.append("Random weights (no model hub): the numbers time the architecture only.")
    if any(r.get("runtime") == "workshop" for r in rows):
        notes.append(
            "workshop rows were imported from the original workshop's files (no instance type in them: no price)."
        )
    return notes


def trust_notes(rows: list[dict[str, Any]]) -> list[str]:
    """What the ±95%, QUALITY and HARNESS columns mean, and each disturbed or INVALID run."""
    notes = []
    if any(r.get("throughput_pm") for r in rows):
        notes.append(
            "±95%: half the 95% confidence interval of the median samples/s over the run's trials (a seeded "
            "percentile bootstrap; 2 to 5 trials: their range), as a share of it; one trial has none."
        )
    if any(r.get("quality") for r in rows):
        notes.append(
            f"QUALITY: ok; {NOISY} — the interval is wider than ±{STABLE_HALF_WIDTH:.0%}; {DISTURBED} — other "
            f"processes took more than {DISTURBED_SHARE:.0%} of the host's CPU while it measured (it reads low)."
        )
    for r in rows:
        if r.get("quality") == DISTURBED and not r.get("served"):
            notes.append(
                f"disturbed {r.get('run_id')} ({describe(r)}): other processes took {r['interference']:.0%} of "
                "the CPU while it measured; measure it again on a quiet machine."
            )
    if any(r.get("harness") == "loadgen" for r in rows):
        notes.append(
            "HARNESS loadgen: measured by MLPerf LoadGen on the same model (Offline: samples/s; SingleStream: "
            "latency; Server at the open-loop rate), with LoadGen's verdict VALID or INVALID."
        )
    for r in rows:
        if r.get("validity") == "INVALID":
            notes.append(
                f"INVALID {r.get('run_id')} ({describe(r)}): LoadGen's rules were not met; see the result's "
                "loadgen record for the reasons."
            )
    return notes


def _text_rows(
    rows: list[dict[str, Any]], on: list[bool], marks: dict, tied: set[str] = frozenset()
) -> tuple[list[str], list[list[str]]]:
    heads = [""] + [h for _, h, _ in COLUMNS]
    cells = []
    for r, front in zip(rows, on):
        line = [("*" if front else "") + ("≈" if r.get("run_id") in tied else "")]
        for k, _, f in COLUMNS:
            if k == "throughput_avg" and not is_ok(r):
                line.append(FAILED)
            elif k == "harness" and r.get("validity"):
                line.append(f"{r[k]} {r['validity']}")
            elif k == "price_per_hour" and r.get(k) is not None and marks:
                line.append(_cell(r[k], f) + " " + marks[(r["price_source"], r.get("price_date") or "")])
            else:
                line.append(_cell(r.get(k), f))
        cells.append(line)
    return heads, cells


def render(
    rows: list[dict[str, Any]],
    fmt: str,
    *,
    limit_ms: float | None = None,
    percentile: str = "p90",
    region: str | None = None,
) -> str:
    """The rows in ``fmt`` (table, csv, md or json). The table and Markdown end with the
    recommendation and notes (each price source and date, failed runs and their reasons); CSV is
    the rows only (one line each, for spreadsheets); JSON is ``{"rows", "recommendation",
    "prices", "serving"}``, each row with its ``frontier`` flag. Served rows (TorchServe load tests)
    are in the JSON and CSV rows (``served`` true) and, in the table and Markdown, in their own block
    after the direct runs, with the serving overhead and the highest rate that met the limit. ``region``:
    the lab's, so that a price list of another region says so."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    rec = recommend(rows, limit_ms, percentile)
    on = frontier(rows, percentile)
    if fmt == "json":
        return json.dumps(
            {
                "rows": [dict(r, frontier=f) for r, f in zip(rows, on)],
                "recommendation": rec.to_dict(),
                "prices": price_sources(rows),
                "serving": serving_summary(rows),
                "deployments": deployments(rows, limit_ms, percentile),
            },
            indent=2,
        )
    if fmt == "csv":
        buf = io.StringIO()
        keys = [k for k, _, _ in COLUMNS if k not in ("models_x_workers", "run")] + CSV_EXTRA
        w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(
            dict(
                r,
                frontier=f,
                throughput_ci95_low=(r.get("throughput_ci95") or [None, None])[0],
                throughput_ci95_high=(r.get("throughput_ci95") or [None, None])[1],
            )
            for r, f in zip(rows, on)
        )
        return buf.getvalue().rstrip("\n")
    if not rows:
        lines = ["No results to report yet.", ""] + list(rec.lines)
        return "\n".join(("- " + x if x and fmt == "md" and i > 1 else x) for i, x in enumerate(lines))
    served = [r for r in rows if r.get("served")]
    on = [f for r, f in zip(rows, on) if not r.get("served")]
    rows = [r for r in rows if not r.get("served")]
    sources = price_sources(rows + served)
    marks = {(s["source"], s["date"]): f"[{i}]" for i, s in enumerate(sources, 1)} if len(sources) > 1 else {}
    tied = rec.tied_runs()
    heads, cells = _text_rows(rows, on, marks, tied)
    notes = _notes(rows + served, on + [False] * len(served), percentile, marks, region, tied)
    blocks = served_blocks(served)
    answer = list(rec.lines) + deployment_lines(rows + served, limit_ms, percentile)
    if fmt == "md":
        lines = ["| " + " | ".join(heads) + " |", "|" + "|".join("---" for _ in heads) + "|"] if rows else []
        lines += ["| " + " | ".join(c) + " |" for c in cells]
        for title, s_heads, s_cells, said in blocks:
            lines += [
                "",
                f"**{title}**",
                "",
                "| " + " | ".join(s_heads) + " |",
                "|" + "|".join("---" for _ in s_heads) + "|",
            ] + ["| " + " | ".join(c) + " |" for c in s_cells]
            lines += [""] + ["- " + x for x in said]
        lines += ["", "**Recommendation**", ""] + ["- " + x.strip() for x in answer]
        lines += ["", "**Notes**", ""] + ["- " + x for x in notes] if notes else []
        return "\n".join(lines)
    lines = _aligned(heads, cells) if rows else []
    for title, s_heads, s_cells, said in blocks:
        lines += ["", f"{title}:"] + _aligned(s_heads, s_cells) + said
    lines += [""] + answer
    lines += [""] + notes if notes else []
    return "\n".join(lines).lstrip("\n")


def served_blocks(served: list[dict[str, Any]]) -> list[tuple[str, list[str], list[list[str]], list[str]]]:
    """The served rows' blocks of the table and Markdown, one per deployment: (title, headings, cells,
    the lines under it)."""
    out = []
    for dep, title, columns, said in (
        ("torchserve", "Served by TorchServe", SERVED_COLUMNS, serving_lines),
        ("sagemaker", "Served by a SageMaker endpoint", SAGEMAKER_COLUMNS, sagemaker_lines),
    ):
        mine = [r for r in served if (r.get("deployment") or "torchserve") == dep]
        if mine:
            out.append(
                (
                    title,
                    [h for _, h, _ in columns],
                    [[_cell(r.get(k), f) for k, _, f in columns] for r in mine],
                    said(mine),
                )
            )
    return out


def sagemaker_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The SageMaker block's explanation and, per load test, its answer and SageMaker's own view."""
    lines = [
        "Load from the instance, in the endpoint's region, through InvokeEndpoint (open-loop Poisson arrivals, latency "
        "from each request's scheduled time); $/hour = the ml.* type's on-demand price × the variant's instances; "
        "$/1M REQ = per million requests answered at that rate; overhead = p50 − direct p50 at the same batch."
    ]
    for s in serving_summary(rows):
        best = s["highest_rate_meeting_limit"]
        r = next(x for x in rows if x["run_id"] == s["run_id"])
        mixed = (r.get("cloudwatch_calls") or 0) > (r.get("load_calls") or r.get("cloudwatch_calls") or 0)
        seen = (
            ""
            if r.get("model_latency_ms") is None or r.get("overhead_latency_ms") is None
            else f"; SageMaker saw ModelLatency {r['model_latency_ms']:.2f} ms and OverheadLatency "
            f"{r['overhead_latency_ms']:.2f} ms on average (CloudWatch"
            + (
                f", per minute: {r['cloudwatch_calls']:,} calls, {r['load_calls']:,} of them this run's)"
                if mixed
                else ")"
            )
        )
        lines.append(
            f"Run {s['run_id']} ({r.get('precision')} on {r.get('instance_type')} × {r.get('instance_count')}): "
            f"highest rate meeting p99 ≤ {s['limit_ms']:g} ms: "
            + ("none" if best is None else f"{best:g} requests/s ({s['achieved_at_that_rate']:,.1f} achieved)")
            + f"{seen}; {s['stop_reason']}."
        )
    return lines


def _aligned(heads: list[str], cells: list[list[str]]) -> list[str]:
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(heads)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths)).rstrip()]
    return lines + ["  ".join(c.ljust(w) for c, w in zip(cs, widths)).rstrip() for cs in cells]


def serving_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per load test of the served model: its run, the limit, the highest rate that met it (and
    what was achieved there), the direct run compared with and the overhead at the lowest rate."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("served"):
            runs.setdefault(r["run_id"], []).append(r)
    out = []
    for run_id, rs in runs.items():
        met = [r for r in rs if r.get("meets_limit")]
        best = max(met, key=lambda r: r.get("offered_rps") or 0) if met else None
        out.append(
            {
                "run_id": run_id,
                "deployment": rs[0].get("deployment"),
                "instance_type": rs[0].get("instance_type"),
                "label": rs[0].get("label"),
                "model": rs[0].get("model"),
                "batch_size": rs[0].get("batch_size"),
                "workers": rs[0].get("n_models"),
                "limit_ms": rs[0].get("limit_ms"),
                "percentile": "p99",
                "highest_rate_meeting_limit": rs[0].get("highest_rate_meeting_limit"),
                "achieved_at_that_rate": best.get("throughput_avg") if best else None,
                "direct_run_id": rs[0].get("direct_run_id"),
                "direct_latency_ms_p50": rs[0].get("direct_latency_ms_p50"),
                "overhead_ms_p50_at_lowest_rate": rs[0].get("overhead_ms_p50"),
                "rates": len(rs),
                "threads_per_worker": rs[0].get("threads"),
                "stop_reason": rs[0].get("stop_reason"),
            }
        )
    return out


def serving_lines(served: list[dict[str, Any]]) -> list[str]:
    """The served block's explanation and its answer, one line per load test."""
    lines = [
        "Load from the instance itself (open-loop Poisson arrivals, latency from each request's scheduled time); "
        "throughput = requests answered per second; overhead = served p50 − direct p50 at the same batch; "
        "GEN CPU = the load generator's own share of the host's CPU; OTHERS = the share processes other than the "
        "server and the generator took. A rate over the limit is measured again (repeat), then the answer is "
        "narrowed (bisect)."
    ]
    for s in serving_summary(served):
        best = s["highest_rate_meeting_limit"]
        direct = (
            "no direct benchmark to compare with"
            if s["direct_latency_ms_p50"] is None
            else f"direct p50 {s['direct_latency_ms_p50']:.2f} ms (run {s['direct_run_id']})"
        )
        lines.append(
            f"Run {s['run_id']}: highest rate meeting p99 ≤ {s['limit_ms']:g} ms: "
            + ("none" if best is None else f"{best:g} requests/s ({s['achieved_at_that_rate']:,.1f} achieved)")
            + f"; {direct}; {s['workers']} TorchServe worker(s)"
            + (f" × {s['threads_per_worker']} thread(s)" if s.get("threads_per_worker") else "")
            + f"; {s['stop_reason']}."
        )
    return lines


def workshop_csv(rows: list[dict[str, Any]]) -> str:
    """The rows in the original workshop's CSV columns (:data:`WORKSHOP_COLUMNS`), for its
    spreadsheets and scripts. Latencies are in seconds, as the workshop's logs print them;
    ``samples`` is the number of timed queries (batches), ``total_time`` the measured seconds,
    ``throughput`` samples/s; ``processor`` is the target (inf1, inf2, cuda, cpu). Failed runs
    are left out (the workshop's format has no place for them)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(WORKSHOP_COLUMNS)

    def seconds(ms: float | None) -> float | None:
        return None if ms is None else round(ms / 1000, 9)

    for r in rows:
        if not is_ok(r):
            continue
        w.writerow(
            [
                "" if v is None else v
                for v in (
                    r.get("model"),
                    r.get("target"),
                    r.get("input_size"),
                    r.get("batch_size"),
                    r.get("total_infs"),
                    seconds(r.get("latency_ms_p50")),
                    seconds(r.get("latency_ms_p90")),
                    seconds(r.get("latency_ms_p95")),
                    r.get("duration_s"),
                    r.get("throughput_avg"),
                )
            ]
        )
    return buf.getvalue()
