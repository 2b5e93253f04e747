"""inflab's harness beside MLPerf LoadGen on the same model, in the sandbox: are they within 5%?

Two sandbox sessions in one INFLAB_HOME run the model exercise up to `benchmark` with the same
config (tiny BERT, fp32 only, one batch size), one with ``bench.harness = "inflab"`` and one with
``"loadgen"`` (Offline for throughput, SingleStream for latency). The script prints both rows —
samples/s with its 95% CI, p50 and p99, quality, the share of the CPU other processes took, and
LoadGen's verdict — and the ratios loadgen ÷ inflab of throughput and of p50 (the aim: within
5%). The sessions are cleaned up afterwards; a temporary home is removed. The figures are only as
good as the machine is quiet: the load average before each run is printed.

    .venv/bin/python bench/crosscheck.py [--batch 8] [--min-duration 10] [--repeats 3] [--home DIR]
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
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INFLAB = shutil.which("inflab", path=str(Path(sys.executable).parent)) or "inflab"
CONFIG = """\
[model]
int8 = false

[bench]
batch_size = {batch}
harness = "{harness}"
repeats = {repeats}
min_duration_s = {min_duration}
min_queries = 500
max_duration_s = {max_duration}
"""


def inflab(env: dict, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([INFLAB, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def measure(env: dict, scratch: Path, harness: str, args) -> dict:
    name = f"xc-{harness}-{uuid.uuid4().hex[:6]}"
    cfg = scratch / f"{harness}.toml"
    cfg.write_text(
        CONFIG.format(
            batch=args.batch,
            harness=harness,
            repeats=args.repeats,
            min_duration=args.min_duration,
            max_duration=args.min_duration * 6,
        )
    )
    load = os.getloadavg()
    print(
        f"== {harness}: inflab run --sandbox --name {name} --until benchmark (load average before: "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f})",
        flush=True,
    )
    t0 = time.monotonic()
    try:
        r = inflab(env, "run", "--sandbox", "--name", name, "--config", str(cfg), "--until", "benchmark")
        if r.returncode != 0:
            sys.exit(f"the {harness} run failed (exit {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-2000:]}")
        rows = json.loads(inflab(env, "report", name, "--format", "json").stdout)["rows"]
    finally:
        inflab(env, "cleanup", name, "--yes", "--delete-data", timeout=300)
    (row,) = [x for x in rows if not x.get("served")]
    ci = row.get("throughput_ci95") or [row["throughput_avg"]] * 2
    print(
        f"  {time.monotonic() - t0:.0f} s; {row['harness']}: {row['throughput_avg']:,.1f} samples/s "
        f"(95% CI {ci[0]:,.1f}–{ci[1]:,.1f}, {row['repeats']} trials), p50 {row['latency_ms_p50']:.3f} ms, "
        f"p99 {row['latency_ms_p99']:.3f} ms, quality {row['quality']}, other processes "
        f"{row['interference']:.0%} of the CPU" + (f", LoadGen {row['validity']}" if row.get("validity") else ""),
        flush=True,
    )
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--min-duration", type=int, default=10, help="seconds per trial (and per LoadGen scenario)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--home", help="INFLAB_HOME (default: a new temporary one; reuse one to skip the image build)")
    args = ap.parse_args()
    home = Path(args.home or tempfile.mkdtemp(prefix="inflab-bench-xc-"))
    env = dict(os.environ, INFLAB_HOME=str(home), PYTHONUNBUFFERED="1")
    scratch = Path(tempfile.mkdtemp(prefix="inflab-bench-xc-cfg-"))
    try:
        own = measure(env, scratch, "inflab", args)
        lg = measure(env, scratch, "loadgen", args)
    finally:
        subprocess.run([INFLAB, "sandbox", "stop"], env=env, capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)
        if not args.home:
            shutil.rmtree(home, ignore_errors=True)
    tp, p50 = lg["throughput_avg"] / own["throughput_avg"], lg["latency_ms_p50"] / own["latency_ms_p50"]
    print(
        f"\nbatch {args.batch}: loadgen ÷ inflab samples/s {tp:.3f}, p50 {p50:.3f} "
        f"(within 5%: {'yes' if abs(tp - 1) <= 0.05 else 'NO'} / {'yes' if abs(p50 - 1) <= 0.05 else 'NO'}); "
        f"LoadGen {lg.get('validity')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
