"""How long `inflab report --from DIR` takes on a large neuronperf file, and the frontier on its own.

One neuronperf JSON file of 45,000 results (about 4.3 MiB, under the 5 MiB import cap) in
which every row is on the cost/latency frontier (each faster run has a higher latency): the
worst case for a frontier found by comparing every pair (45,000² comparisons took 146 s).
Printed: the file's size; the time of `report.frontier` on the imported rows (sorting once:
O(n log n)); the time of the whole command through the CLI, as a user runs it (start-up,
reading, parsing, the frontier, rendering the table); and, for scale, the pairwise frontier
on the first ``--pairwise`` rows.

    .venv/bin/python bench/report_import.py [--rows 45000] [--pairwise 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inflab import report, workshop  # noqa: E402

MODEL = "bert-base-cased-finetuned-mrpc"


def results(n: int) -> list[dict]:
    """n neuronperf results, all on the frontier: throughput and latency rise together."""
    return [
        {
            "batch_size": 4,
            "n_models": 4,
            "throughput_avg": 1000.0 + i,
            "latency_ms_p50": round(5 + i * 0.001, 3),
            "latency_ms_p90": round(6 + i * 0.001, 3),
        }
        for i in range(n)
    ]


def pairwise(rows: list[dict], percentile: str = "p90") -> list[bool]:
    """The frontier by comparing every pair (what the report did before it sorted)."""
    key = f"latency_ms_{percentile}"
    points = [(-r["throughput_avg"], r[key]) for r in rows]
    return [not any(q[0] <= p[0] and q[1] <= p[1] and q != p for q in points) for p in points]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=45_000)
    ap.add_argument("--pairwise", type=int, default=3_000, help="rows for the pairwise comparison (0: skip)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="inflab-bench-import-") as tmp:
        d = Path(tmp) / "results"
        d.mkdir()
        path = d / f"neuronperf_results_{MODEL}_inf1_128_4.json"
        path.write_text(json.dumps(results(args.rows), separators=(",", ":")))
        print(f"{args.rows:,} results in one file: {path.stat().st_size / (1 << 20):.2f} MiB")

        t = time.perf_counter()
        rows, warnings = workshop.import_dir(d)
        print(
            f"import (read and parse):      {time.perf_counter() - t:8.3f} s  ({len(rows):,} rows, {len(warnings)} warnings)"
        )

        t = time.perf_counter()
        on = report.frontier(rows)
        print(f"frontier, sorted once:        {time.perf_counter() - t:8.3f} s  ({sum(on):,} rows on it)")

        if args.pairwise:
            some = rows[: args.pairwise]
            t = time.perf_counter()
            pairwise(some)
            took = time.perf_counter() - t
            print(
                f"frontier, pairwise on {len(some):,}:  {took:8.3f} s  (~{took * (len(rows) / len(some)) ** 2:,.0f} s "
                f"at {len(rows):,} rows, growing as n²)"
            )

        env = dict(os.environ, INFLAB_HOME=str(Path(tmp) / "home"), PYTHONPATH=str(ROOT))
        t = time.perf_counter()
        r = subprocess.run(
            [sys.executable, "-m", "inflab.cli", "report", "--from", str(d)],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
        )
        took = time.perf_counter() - t
        if r.returncode != 0:
            print(r.stderr, file=sys.stderr)
            return 1
        print(f"inflab report --from (table): {took:8.3f} s  ({len(r.stdout.splitlines()):,} lines out)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
