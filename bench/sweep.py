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


def job_phases(home: Path, name: str) -> list[dict[str, float]]:
    """Per job, seconds in each phase, from the Batch job times and its log lines' timestamps."""
    from inflab import sandbox
    from inflab.aws import Aws

    info = sandbox.status(home)
    if info is None:
        return []
    aws = Aws(region="us-west-2", endpoint_url=info.endpoint, headers=info.headers)
    batch, logs = aws.client("batch"), aws.client("logs")
    queue = f"inflab-{name}-inf1-2xlarge"
    ids = [j["jobId"] for status in ("SUCCEEDED", "FAILED")
           for j in batch.list_jobs(jobQueue=queue, jobStatus=status)["jobSummaryList"]]
    out, previous_stop = [], 0.0
    for job in sorted(batch.describe_jobs(jobs=ids)["jobs"], key=lambda j: j["createdAt"]):
        events = logs.get_log_events(logGroupName=f"/inflab/{name}", logStreamName=job["container"]["logStreamName"],
                                     startFromHead=True)["events"]
        marks = [(e["timestamp"] / 1000, e["message"]) for e in events]
        first_bench = next((t for t, m in marks if m.startswith("$ python") and "bench.py" in m), None)
        done = next((t for t, m in marks if m.startswith("[sweep] done")), None)
        if first_bench is None or done is None:
            continue
        start, stop = marks[0][0], job["stoppedAt"] / 1000
        # one job at a time: a job's wait counts from when the one before it ended
        out.append({"queue": start - max(job["createdAt"] / 1000, previous_stop), "compile": first_bench - start,
                    "bench": done - first_bench, "copy": stop - done})
        previous_stop = stop
    return out


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
    phases = job_phases(home, name)
    print(f"sandbox sweep, 3 batch sizes ({len(sweep_rows)} results: fp32 and int8 per size), "
          f"benchmark >= {args.min_duration} s each")
    print(f"  preparation (untimed part, up to batch-setup): {prep:7.1f} s")
    print(f"  sweep wall time (submit + monitor):            {sweep:7.1f} s")
    print(f"  inside the benchmark runs (sum of duration_s): {measured:7.1f} s")
    print(f"  overhead share: {overhead:.1%}  (target <= 20%: {'met' if overhead <= 0.20 else 'MISSED'})")
    for r in sorted(sweep_rows, key=lambda r: (r["batch_size"], r["precision"])):
        print(f"    batch {r['batch_size']:>2} {r['precision']:<5} {r['throughput_avg']:>9,.1f} samples/s  "
              f"p90 {r['latency_ms_p90']:.2f} ms")
    if phases:
        total = {k: sum(p[k] for p in phases) for k in phases[0]}
        print(f"  where the jobs' time went (sum over {len(phases)} jobs, from their CloudWatch log times):")
        for key, what in (("queue", "waiting, starting (runner)"), ("compile", "compile (torch import, trace, int8, check)"),
                          ("bench", "benchmark processes (start-up, load, warm-up, measuring)"), ("copy", "copy to S3")):
            print(f"    {what:<58} {total[key]:7.1f} s")
        print(f"  outside the jobs (submit, polling, the monitor seeing the end): "
              f"{sweep - sum(sum(p.values()) for p in phases):.1f} s")
    inflab("cleanup", name, "--yes", "--delete-data", env=env)
    if not args.home:
        subprocess.run([INFLAB, "sandbox", "stop"], env=env, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
