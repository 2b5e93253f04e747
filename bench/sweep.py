"""The sandbox sweep's wall time for 3 batch sizes, and the share of it spent outside the
benchmark runs themselves (target: overhead <= 20%).

A fresh sandbox session is brought up to `batch-setup` first (untimed: instance, image — the
image store is reused when it has this payload's hash — and the Batch resources). Then
`batch-submit` + `batch-monitor` are timed: from the first submit to the monitor seeing the
last job end. "Inside the benchmark runs" is the sum of the results' measured durations
(each BenchResult's ``duration_s``); everything else — job start, Python and torch imports,
compiling, loading and warming the models, copying to S3, polling — is overhead.

    .venv/bin/python bench/sweep.py [--home DIR] [--min-duration 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INFLAB = shutil.which("inflab", path=str(Path(sys.executable).parent)) or "inflab"


def inflab(*args: str, env: dict, timeout: float = 3600) -> subprocess.CompletedProcess:
    r = subprocess.run([INFLAB, *args], env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        sys.exit(f"inflab {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", help="INFLAB_HOME to use (default: a new temporary one; reuse one to skip the image build)")
    ap.add_argument("--min-duration", type=int, default=10, help="each job's benchmark: at least this many seconds")
    args = ap.parse_args()
    home = Path(args.home or tempfile.mkdtemp(prefix="inflab-sweep-bench-"))
    env = dict(os.environ, INFLAB_HOME=str(home))
    name = f"sweep-{int(time.time()) % 100000}"
    cfg = home / f"{name}.toml"
    home.mkdir(parents=True, exist_ok=True)
    cfg.write_text(f"[batch]\nsizes = [2, 4, 8]\nmin_duration_s = {args.min_duration}\nmax_duration_s = {args.min_duration * 6}\n")

    t0 = time.perf_counter()
    inflab("run", "--sandbox", "--name", name, "--config", str(cfg), "--until", "batch-setup", env=env)
    prep = time.perf_counter() - t0
    t0 = time.perf_counter()
    inflab("run", "--name", name, "--until", "batch-monitor", env=env)
    sweep = time.perf_counter() - t0
    inflab("run", "--name", name, "--until", "report", env=env)
    rows = json.loads(inflab("report", name, "--format", "json", env=env).stdout)
    rows = rows["rows"] if isinstance(rows, dict) else rows
    sweep_rows = [r for r in rows if str(r.get("run_id", "")).startswith("sweep-")]

    from inflab.session import Store

    durations = [r["data"]["duration_s"] for r in Store(home).results(name, "benchmark")
                 if str(r["data"].get("run_id", "")).startswith("sweep-")]
    measured = sum(durations)
    overhead = 1 - measured / sweep if sweep else float("nan")
    print(f"sandbox sweep, 3 batch sizes ({len(sweep_rows)} results: fp32 and int8 per size), "
          f"benchmark >= {args.min_duration} s each")
    print(f"  preparation (untimed part, up to batch-setup): {prep:7.1f} s")
    print(f"  sweep wall time (submit + monitor):            {sweep:7.1f} s")
    print(f"  inside the benchmark runs (sum of duration_s): {measured:7.1f} s")
    print(f"  overhead share: {overhead:.1%}  (target <= 20%: {'met' if overhead <= 0.20 else 'MISSED'})")
    for r in sorted(sweep_rows, key=lambda r: (r["batch_size"], r["precision"])):
        print(f"    batch {r['batch_size']:>2} {r['precision']:<5} {r['throughput_avg']:>9,.1f} samples/s  "
              f"p90 {r['latency_ms_p90']:.2f} ms")
    inflab("cleanup", name, "--yes", "--delete-data", env=env)
    if not args.home:
        subprocess.run([INFLAB, "sandbox", "stop"], env=env, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
