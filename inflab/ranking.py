"""The answer the lab exists for, told apart from noise: the cheapest and the fastest
configuration under a latency limit, the runs within noise of each pick, and the cost/latency
frontier.

Each report row may carry 95% confidence intervals of its median throughput and latencies
(``throughput_ci95``, ``latency_ms_p90_ci95`` …: the harness measures every configuration as
independent trials). Two runs whose intervals overlap are **tied**: neither is shown to be
better, whatever their medians say. The picks are still the best medians, and the
recommendation names every run tied with them ("batch 4 and 8 are within noise of each other").
The frontier uses the same rule: a run is off it only when another is no worse on both cost and
latency and *beyond noise* better on one. A row without intervals (one trial, an imported file)
is its own point, so for such rows both rules are the plain comparisons of medians.

Costs per million inferences scale as 1 / throughput, so a cost's interval comes from the
throughput's (its ends swapped). Standard library only (it is on the CLI's path).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any

from .remote.payload.stats import DISTURBED

PERCENTILES = ("p50", "p90", "p95", "p99")
OK = "ok"
FAILED = "FAILED"


def is_ok(r: dict[str, Any]) -> bool:
    return r.get("status", OK) == OK


def check_query(limit_ms: float | None, percentile: str) -> None:
    """ValueError (one line) for a percentile not in :data:`PERCENTILES` or a limit that is not a
    positive finite number of milliseconds."""
    if percentile not in PERCENTILES:
        raise ValueError(f"percentile {percentile!r} is not one of {', '.join(PERCENTILES)}")
    if limit_ms is not None and (
        isinstance(limit_ms, bool)
        or not isinstance(limit_ms, (int, float))
        or not math.isfinite(limit_ms)
        or limit_ms <= 0
    ):
        raise ValueError(f"latency limit {limit_ms!r} ms: give a positive number of milliseconds")


# ---------------------------------------------------------------- intervals


def _interval(r: dict[str, Any], key: str, ci_key: str | None = None) -> tuple[float, float] | None:
    """The row's 95% CI of ``key`` (its value twice when it has none); None without a value."""
    v = r.get(key)
    if v is None:
        return None
    ci = r.get(ci_key or f"{key}_ci95")
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(x, (int, float)) for x in ci):
        return (min(ci[0], v), max(ci[1], v))
    return (v, v)


def throughput_interval(r: dict[str, Any]) -> tuple[float, float] | None:
    return _interval(r, "throughput_avg", "throughput_ci95") if r.get("throughput_avg") else None


def latency_interval(r: dict[str, Any], percentile: str) -> tuple[float, float] | None:
    return _interval(r, f"latency_ms_{percentile}")


def cost_interval(r: dict[str, Any]) -> tuple[float, float] | None:
    """The cost per 1M inferences at the two ends of the throughput's CI (its value twice without one)."""
    cost = r.get("cost_per_million")
    if cost is None:
        return None
    ci, centre = r.get("throughput_ci95"), r.get("throughput_avg")
    if not (isinstance(ci, (list, tuple)) and len(ci) == 2 and centre and math.isfinite(centre) and ci[1] > 0):
        return (cost, cost)
    low, high = min(ci[0], centre), max(ci[1], centre)
    return (cost * centre / high, cost * centre / low if low > 0 else math.inf)


def _overlap(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    return a is not None and b is not None and a[0] <= b[1] and b[0] <= a[1]


# ---------------------------------------------------------------- the recommendation


@dataclass(frozen=True)
class Recommendation:
    """The cheapest and the fastest configuration meeting a latency limit, the runs within noise
    of each (``ties``: one entry per pick that has any), and the lines that say so — or say why
    there is none."""

    limit_ms: float | None
    percentile: str
    cheapest: dict[str, Any] | None
    fastest: dict[str, Any] | None
    lines: tuple[str, ...]
    ties: tuple[dict[str, Any], ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "limit_ms": self.limit_ms,
            "percentile": self.percentile,
            "cheapest": self.cheapest,
            "fastest": self.fastest,
            "lines": list(self.lines),
            "ties": [dict(t) for t in self.ties],
        }

    def tied_runs(self) -> set[str]:
        """The run ids within noise of a pick (the picks themselves included when they have ties)."""
        return {run for t in self.ties for run in t["runs"]}


def describe(r: dict[str, Any], others: list[dict[str, Any]] | None = None) -> str:
    """A configuration in words: ``inf1.2xlarge bert fp32 batch 4`` (the target stands in for an
    unknown instance type); with the run when another of ``others`` reads the same."""
    parts = [r.get("instance_type") or r.get("target") or "-", r.get("family") or r.get("model") or "-"]
    if r.get("precision"):
        parts.append(r["precision"])
    text = " ".join(parts) + f" batch {r.get('batch_size')}"
    if others and sum(describe(o) == text for o in others) > 1:
        text += f" (run {r.get('run') or r.get('run_id')})"
    return text


def tie_phrase(rows: list[dict[str, Any]], others: list[dict[str, Any]]) -> str:
    """``batch 4 and 8`` when the runs differ only in batch size, else their descriptions joined."""
    head = {describe(dict(r, batch_size=None)) for r in rows}
    batches = [r.get("batch_size") for r in rows]
    if len(head) == 1 and len(set(batches)) == len(batches):
        return "batch " + _and([str(b) for b in sorted(batches, key=lambda b: (b is None, b))])
    return _and([describe(r, others) for r in rows])


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _latency(r: dict[str, Any], key: str) -> float:
    v = r.get(key)
    return math.inf if v is None else v


def caveat(r: dict[str, Any]) -> str:
    """What a pick's reader must know: it was disturbed, or not stable."""
    if r.get("quality") == DISTURBED:
        share = r.get("interference")
        took = f"{share:.0%} of the CPU" if isinstance(share, (int, float)) else "much of the CPU"
        return f" — disturbed: other processes took {took} while it ran; measure it again on a quiet machine"
    if r.get("stable") is False:
        if (r.get("repeats") or 1) > 1:
            return f" — not stable: its trials disagree (95% CI {r.get('throughput_pm') or 'wide'}); measure it again"
        return " — not stable: it stopped at its time limit, measure it longer"
    return ""


def _ties(pick: dict[str, Any], pool: list[dict[str, Any]], interval) -> list[dict[str, Any]]:
    mine = interval(pick)
    return [r for r in pool if r is not pick and _overlap(mine, interval(r))]


def recommend(rows: list[dict[str, Any]], limit_ms: float | None = None, percentile: str = "p90") -> Recommendation:
    """The cheapest configuration per 1M inferences among the runs that succeeded and whose
    latency at ``percentile`` is at most ``limit_ms`` (no limit: all of them), and the fastest
    (highest samples/s) of the same runs — each with the runs tied with it (CIs overlapping: of
    the cost, of the throughput). The fastest is chosen among the priced runs when any
    qualifies, so both answers compare like with like; among unpriced runs (an instance type
    with no price, imported workshop logs) there is only a fastest."""
    check_query(limit_ms, percentile)
    key = f"latency_ms_{percentile}"
    rows = [
        r for r in rows if not r.get("served")
    ]  # the served model's rows answer another question (see the served block)
    ok = [r for r in rows if is_ok(r)]
    failed = len(rows) - len(ok)

    def done(lines: list[str], cheapest=None, fastest=None, ties=()) -> Recommendation:
        if failed and ok:
            lines.append(f"{failed} failed run(s) left out (marked FAILED in the table).")
        return Recommendation(limit_ms, percentile, cheapest, fastest, tuple(lines), tuple(ties))

    if not rows:
        return done(["No recommendation: nothing has been measured yet."])
    if not ok:
        return done([f"No recommendation: all {failed} run(s) failed."])
    if limit_ms is None:
        head, eligible = f"With no latency limit ({percentile} shown)", ok
    else:
        head = f"Under {limit_ms:g} ms {percentile}"
        measured = [r for r in ok if r.get(key) is not None]
        if not measured:
            return done([f"No recommendation: no run reports a {percentile} latency; choose another percentile."])
        eligible = [r for r in measured if r[key] <= limit_ms]
        if not eligible:
            best = min(measured, key=lambda r: r[key])
            return done(
                [
                    f"Nothing meets {limit_ms:g} ms {percentile}: the lowest {percentile} is {best[key]:.2f} ms "
                    f"({describe(best, ok)}). Raise the limit, or try a smaller batch size or a faster "
                    "instance type."
                ]
            )
    priced = [r for r in eligible if r.get("cost_per_million") is not None]
    cheapest = (
        min(priced, key=lambda r: (r["cost_per_million"], -(r["throughput_avg"] or 0), _latency(r, key)))
        if priced
        else None
    )
    fastest = max(
        priced or eligible,
        key=lambda r: ((r["throughput_avg"] or 0), -_latency(r, key), -(r.get("cost_per_million") or math.inf)),
    )

    def cost(r):
        return f"${r['cost_per_million']:.4f} per 1M inferences ({r['price_source']}, {r['price_date']})"

    def speed(r):
        lat = r.get(key)
        return f"{r['throughput_avg']:,.1f} samples/s" + ("" if lat is None else f" ({percentile} {lat:.2f} ms)")

    of = " of the priced runs" if priced and len(priced) < len(eligible) else ""
    lines = []
    if cheapest is not None and cheapest is fastest:
        lines.append(
            f"{head} — cheapest and fastest{of}: {describe(cheapest, ok)}, {cost(cheapest)}; {speed(cheapest)}"
            f"{caveat(cheapest)}"
        )
    else:
        if cheapest is not None:
            lines.append(f"{head} — cheapest: {describe(cheapest, ok)}, {cost(cheapest)}{caveat(cheapest)}")
        else:
            lines.append(
                f"{head} — no cheapest: no qualifying run has a price (no instance type, or one not in the price table)"
            )
        lines.append(f"{head} — fastest{of}: {describe(fastest, ok)}, {speed(fastest)}{caveat(fastest)}")
    ties = []
    for pick, name, pool, interval, what in (
        (cheapest, "cheapest", priced, cost_interval, "cost per 1M inferences"),
        (fastest, "fastest", priced or eligible, throughput_interval, "samples/s"),
    ):
        if pick is None or (name == "fastest" and pick is cheapest and ties):
            continue
        tied = _ties(pick, pool, interval)
        if tied:
            group = [pick] + tied
            ties.append(
                {
                    "pick": "cheapest and fastest" if pick is cheapest and pick is fastest else name,
                    "measure": what,
                    "runs": [r.get("run_id") for r in group],
                    "configurations": [describe(r, ok) for r in group],
                }
            )
            verb = "is" if len(group) == 1 else "are"
            lines.append(
                f"Within noise of the {ties[-1]['pick']}: {tie_phrase(group, ok)} {verb} within noise of each "
                f"other (their 95% CIs of {what} overlap) — measure them longer or again to tell them apart."
            )
    if of:
        lines.append(
            f"{len(eligible) - len(priced)} run(s) without a price (e.g. measured on the sandbox host itself) "
            "are left out of both answers: cost and speed are compared like with like."
        )
    if limit_ms is not None and len(eligible) < len(ok):
        lines.append(f"{len(eligible)} of {len(ok)} measured runs meet the limit.")
    if len(ok) == 1:
        lines.append("Only one configuration measured: sweep batch sizes or instance types to compare.")
    return done(lines, cheapest, fastest, ties)


# ---------------------------------------------------------------- the frontier


def frontier(rows: list[dict[str, Any]], percentile: str = "p90") -> list[bool]:
    """Per row: is it on the cost/latency frontier at ``percentile``? A run is off it when another
    run is no worse on cost and latency (not beyond noise worse) and beyond noise better on one of
    them (their 95% CIs apart). Runs without a cost (unpriced) are compared among themselves on
    throughput instead (higher is better) against latency. Failed runs, served rows and runs
    without that percentile are off it. Two sorts per kind of point, not a comparison of every
    pair: 45,000 rows take well under a second."""
    check_query(None, percentile)
    points: list[tuple[str, tuple[float, float], tuple[float, float]] | None] = []
    for r in rows:
        lat = latency_interval(r, percentile)
        if not is_ok(r) or lat is None or r.get("served"):
            points.append(None)
        elif r.get("cost_per_million") is not None:
            points.append(("cost", cost_interval(r), lat))
        elif r.get("throughput_avg"):
            tp = throughput_interval(r)
            points.append(("throughput", (-tp[1], -tp[0]), lat))  # negated: lower is better, like a cost
        else:
            points.append(None)

    on = [p is not None for p in points]
    groups: dict[str, list[tuple[tuple[float, float], tuple[float, float], int]]] = {}
    for i, p in enumerate(points):
        if p is not None and not any(
            math.isnan(v) for v in (*p[1], *p[2])
        ):  # a NaN beats nothing, is beaten by nothing
            groups.setdefault(p[0], []).append((p[1], p[2], i))
    for group in groups.values():
        for i in dominated(group):
            on[i] = False
    return on


def dominated(points: list[tuple[tuple[float, float], tuple[float, float], int]]) -> set[int]:
    """The indices of the points (x interval, y interval, index) another point beats: B is beaten
    by A when A's x is beyond noise lower (A.x_hi < B.x_lo) and A's y not beyond noise higher
    (A.y_lo <= B.y_hi), or the same with x and y swapped. For each of the two cases one sort by
    the beating side's upper end and a running minimum of the other side's lower end answer
    "is there such an A" with one binary search per point. With single values (no CIs) this is
    the plain rule: lower-or-equal on both, strictly lower on one."""
    beaten: set[int] = set()
    for first, second in ((0, 1), (1, 0)):
        by_high = sorted(points, key=lambda p: p[first][1])
        highs = [p[first][1] for p in by_high]
        lowest, running = [], math.inf
        for p in by_high:
            running = min(running, p[second][0])
            lowest.append(running)
        for p in points:
            k = bisect.bisect_left(highs, p[first][0])  # the points whose upper end is below p's lower end
            if k and lowest[k - 1] <= p[second][1]:
                beaten.add(p[2])
    return beaten
