"""Benchmark results as a report: one row per result, with cost per million inferences.

Rows come from the results the benchmark step stored in the session, read through their one
schema (``remote/payload/result.py``). Each row names its run (id and time), so two runs of
the same configuration stay two rows. Formats: an aligned text table, CSV, Markdown and
JSON. Standard library only (it is on the CLI's path).
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from .remote.payload.result import BenchResult

# On-demand Linux list prices, $/hour, us-east-1 and us-west-2 (the same there). Confirm
# live with the AWS Pricing API (us-east-1 endpoint) before relying on them.
PRICES = {
    "inf1.xlarge": 0.228, "inf1.2xlarge": 0.362, "inf1.6xlarge": 1.18, "inf2.xlarge": 0.7582,
    "g4dn.xlarge": 0.526, "g5.xlarge": 1.006, "c6i.4xlarge": 0.68,
}
PRICE_SOURCE = "AWS on-demand list price (us-east-1/us-west-2) as recorded 2026-11"

COLUMNS = [  # (key, heading, format)
    ("model", "MODEL", "{}"), ("precision", "PREC", "{}"), ("target", "TARGET", "{}"), ("instance_type", "INSTANCE", "{}"),
    ("batch_size", "BATCH", "{}"), ("throughput_avg", "SAMPLES/S", "{:,.1f}"), ("latency_ms_p50", "P50 MS", "{:.2f}"),
    ("latency_ms_p90", "P90 MS", "{:.2f}"), ("latency_ms_p95", "P95 MS", "{:.2f}"), ("latency_ms_p99", "P99 MS", "{:.2f}"),
    ("models_x_workers", "MODELS×W", "{}"), ("price_per_hour", "$/HOUR", "{:.4f}"), ("cost_per_million", "$/1M INF", "{:.4f}"),
    ("run", "RUN", "{}"),
]
CSV_EXTRA = ["n_models", "workers_per_model", "stable", "weights", "run_id", "timestamp"]
RUN_CHARS = 12  # a run id longer than this is shortened in the table and Markdown


def cost_per_million(price_per_hour: float | None, throughput: float) -> float | None:
    """Dollars per million inferences (samples) at ``throughput`` samples/s on an instance
    billed ``price_per_hour``; None without a price or a throughput."""
    if not price_per_hour or throughput <= 0:
        return None
    return price_per_hour / (throughput * 3600) * 1_000_000


def short_run(run_id: str) -> str:
    return run_id if len(run_id) <= RUN_CHARS else run_id[:RUN_CHARS - 1] + "…"


def row(result: dict[str, Any] | BenchResult) -> dict[str, Any]:
    """One report row from a benchmark result (its JSON object or the record); a dict that is
    not a result of the current schema raises :class:`SchemaError`, naming the field."""
    r = result if isinstance(result, BenchResult) else BenchResult.from_dict(result)
    price = PRICES.get(r.instance_type)
    return {
        "model": (r.name or r.model_filename) + (" (tiny)" if r.size == "tiny" else ""),
        "family": r.family,
        "precision": r.precision,
        "target": r.target,
        "instance_type": r.instance_type,
        "sandbox": r.sandbox,
        "batch_size": r.batch_size,
        "throughput_avg": r.throughput_avg,
        "latency_ms_p50": r.latency_ms_p50,
        "latency_ms_p90": r.latency_ms_p90,
        "latency_ms_p95": r.latency_ms_p95,
        "latency_ms_p99": r.latency_ms_p99,
        "latency_ms_p99.9": r.latency_ms_p99_9,
        "latency_ms_max": r.latency_ms_max,
        "n_models": r.n_models,
        "workers_per_model": r.workers_per_model,
        "models_x_workers": f"{r.n_models}×{r.workers_per_model}",
        "mode": r.mode,
        "stable": r.stable,
        "stop_reason": r.stop_reason,
        "weights": r.weights,
        "price_per_hour": price,
        "cost_per_million": cost_per_million(price, r.throughput_avg),
        "price_source": PRICE_SOURCE if price else None,
        "model_filename": r.model_filename,
        "run": short_run(r.run_id),
        "run_id": r.run_id,
        "timestamp": r.timestamp,
        "label": r.label,
        "runtime": r.runtime,
    }


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def render(rows: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        keys = [k for k, _, _ in COLUMNS if k not in ("models_x_workers", "run")] + CSV_EXTRA
        w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue().rstrip("\n")
    cells = [[_cell(r.get(k), f) for k, _, f in COLUMNS] for r in rows]
    heads = [h for _, h, _ in COLUMNS]
    if fmt == "md":
        lines = ["| " + " | ".join(heads) + " |", "|" + "|".join("---" for _ in heads) + "|"]
        lines += ["| " + " | ".join(c) + " |" for c in cells]
    else:
        widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(heads)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths)).rstrip()]
        lines += ["  ".join(c.ljust(w) for c, w in zip(cs, widths)).rstrip() for cs in cells]
    notes = []
    if any(r["price_per_hour"] for r in rows):
        notes.append(f"Prices: {PRICE_SOURCE}.")
    if any(r["sandbox"] for r in rows):
        notes.append("sandbox rows ran on this machine's CPU: no price, and not comparable with an instance.")
    if any(r["weights"] == "random" for r in rows):
        notes.append("Random weights (no model hub): the numbers time the architecture only.")
    return "\n".join(lines + ([""] + notes if notes else []))
