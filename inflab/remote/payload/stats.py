"""Statistics of repeated trials: the median and its 95% confidence interval.

A configuration is measured as independent trials (``bench.py --repeats``); what a trial
yields — its throughput, its latency percentiles — is one value per trial, and the result
reports their median with a 95% confidence interval.

The interval is Efron's *percentile bootstrap* of the median: draw the trials with replacement
``BOOTSTRAP_RESAMPLES`` times, take each draw's median, and read the 2.5th and 97.5th
percentiles of those medians. The random draws come from a fixed seed, so the same trials
always give the same interval. With few trials it is coarse, and honest about it: for 2 to 5
trials it is the range of the trials ([min, max]; for 3 trials that range covers the median
with only 75% certainty), so "within noise" errs towards calling runs tied. One trial has no
interval (None).

Standard library only: this module runs on the benchmark host.
"""

from __future__ import annotations

import math
import random

BOOTSTRAP_RESAMPLES = 2000
SEED = 20240521  # fixed: the same values give the same interval
CONFIDENCE = 0.95
STABLE_HALF_WIDTH = 0.05  # "stable": the CI's half-width is within 5% of the median
DISTURBED_SHARE = 0.10  # more of the host's CPU than this taken by others: the measurement is disturbed
OK, NOISY, DISTURBED = "ok", "noisy", "disturbed"


def median(values) -> float:
    """The median (the mean of the two middle values of an even count)."""
    ordered = sorted(values)
    n = len(ordered)
    if not n:
        raise ValueError("median of no values")
    mid = n // 2
    return float(ordered[mid]) if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _quantile(ordered: list[float], q: float) -> float:
    """The q-th quantile (0..1) of ascending values, linear between closest ranks."""
    rank = (len(ordered) - 1) * q
    lo = math.floor(rank)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def median_ci(
    values, confidence: float = CONFIDENCE, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = SEED
) -> tuple[float, float] | None:
    """The percentile-bootstrap ``confidence`` interval of the median of ``values`` as (low,
    high), or None for fewer than two values. Deterministic: the draws are seeded."""
    values = [float(v) for v in values]
    n = len(values)
    if n < 2:
        return None
    rng = random.Random(seed)
    pick = rng.choices
    medians = sorted(median(pick(values, k=n)) for _ in range(resamples))
    tail = (1 - confidence) / 2
    lo, hi = _quantile(medians, tail), _quantile(medians, 1 - tail)
    return (min(lo, hi), max(lo, hi))


def half_width_share(ci: tuple[float, float] | None, centre: float) -> float | None:
    """The CI's half-width as a share of ``centre`` (None without an interval; inf for a 0 centre)."""
    if ci is None:
        return None
    if centre == 0:
        return math.inf
    return (ci[1] - ci[0]) / 2 / abs(centre)


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Do two closed intervals share a point?"""
    return a[0] <= b[1] and b[0] <= a[1]


def is_stable(centre: float, ci: tuple[float, float] | None, stop_rule_stable: bool = True) -> bool:
    """Stable: the CI's half-width is within ``STABLE_HALF_WIDTH`` of the median. One trial has
    no CI: then its own stop rule (its last windows within 10% of each other) decides."""
    if ci is None:
        return stop_rule_stable
    share = half_width_share(ci, centre)
    return share is not None and share <= STABLE_HALF_WIDTH


def quality(
    centre: float, ci: tuple[float, float] | None, interference: float | None, stop_rule_stable: bool = True
) -> str:
    """``disturbed`` when other processes took more than ``DISTURBED_SHARE`` of the host's CPU
    while it measured; else ``noisy`` when it is not stable (:func:`is_stable`); else ``ok``."""
    if interference is not None and interference > DISTURBED_SHARE:
        return DISTURBED
    return OK if is_stable(centre, ci, stop_rule_stable) else NOISY
