"""The sandbox sweep's wall time for 3 batch sizes, and the share of it spent outside the
benchmark runs themselves (target: overhead <= 15%).

A fresh sandbox session is brought up to `batch-setup` first (untimed: instance, image — the
image store is reused when it has this payload's hash — and the Batch resources). Then
`batch-submit` + `batch-monitor` are timed: from the first submit to the monitor seeing the
last job end. "Inside the benchmark runs" is the sum of the results' measured durations
(each BenchResult's ``duration_s``: every trial's measuring windows); everything else — job
start, Python and torch imports, compiling, loading and warming the models, the turns between
trials, copying to S3, polling — is overhead. Where it goes is read from each job's CloudWatch
log (the time each line arrived) and printed, phase by phase, summed over the jobs.

    .venv/bin/python bench/sweep.py [--home DIR] [--min-duration 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
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


MARKS = {  # phase boundary -> how its log line starts (the first such line)
    "compile_cmd": lambda m: m.startswith("$ python") and "compile.py" in m,
    "compile_loaded": lambda m: m.startswith("[compile] loaded in"),
    "compile_done": lambda m: m.startswith("[compile] finished in"),
    "bench_cmd": lambda m: m.startswith("$ python") and "bench.py" in m,
    "bench_loaded": lambda m: m.startswith("[bench] model process 0 loaded"),
    "done": lambda m: m.startswith("[sweep] done"),
}
PHASES = (  # (key, what it is)
    ("queue", "waiting, starting the job (the runner)"),
    ("job_start", "the job's python and batch_job.py up to compile"),
    ("compile_load", "compile: python, torch + transformers import, building the model"),
    ("compile_trace", "compile: trace, save, check against eager (fp32 and int8)"),
    ("bench_start", "bench: python, model process, torch import, loading both models"),
    ("bench_measured", "bench: inside the measuring windows (the sum of duration_s)"),
    ("bench_between", "bench: warm-ups and the turns between trials, writing the results"),
    ("copy", "copying to S3, the job's end"),
)


def job_phases(home: Path, name: str, measured_by_job: dict[str, float]) -> list[dict[str, float]]:
    """Per job, seconds in each phase, from the Batch job times and its log lines' timestamps."""
    from inflab import sandbox
    from inflab.aws import Aws

    info = sandbox.status(home)
    if info is None:
        return []
    aws = Aws(region="us-west-2", endpoint_url=info.endpoint, headers=info.headers)
    batch, logs = aws.client("batch"), aws.client("logs")
    queue = f"inflab-{name}-inf1-2xlarge"
    ids = [
        j["jobId"]
        for status in ("SUCCEEDED", "FAILED")
        for j in batch.list_jobs(jobQueue=queue, jobStatus=status)["jobSummaryList"]
    ]
    out, previous_stop = [], 0.0
    for job in sorted(batch.describe_jobs(jobs=ids)["jobs"], key=lambda j: j["createdAt"]):
        events = logs.get_log_events(
            logGroupName=f"/inflab/{name}", logStreamName=job["container"]["logStreamName"], startFromHead=True
        )["events"]
        marks = [(e["timestamp"] / 1000, e["message"]) for e in events]
        at = {k: next((t for t, m in marks if test(m)), None) for k, test in MARKS.items()}
        if None in at.values():
            continue
        start, stop = marks[0][0], job["stoppedAt"] / 1000
        measured = measured_by_job.get(re.sub(r"[^A-Za-z0-9]", "", job["jobId"])[:8], 0.0)
        # one job at a time: a job's wait counts from when the one before it ended
        out.append(
            {
                "queue": start - max(job["createdAt"] / 1000, previous_stop),
                "job_start": at["compile_cmd"] - start,
                "compile_load": at["compile_loaded"] - at["compile_cmd"],
                "compile_trace": at["bench_cmd"] - at["compile_loaded"],
                "bench_start": at["bench_loaded"] - at["bench_cmd"],
                "bench_measured": measured,
                "bench_between": at["done"] - at["bench_loaded"] - measured,
                "copy": stop - at["done"],
            }
        )
        previous_stop = stop
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--home", help="INFLAB_HOME to use (default: a new temporary one; reuse one to skip the image build)"
    )
    ap.add_argument(
        "--min-duration", type=int, default=10, help="each trial of a job's benchmark: at least this many seconds"
    )
    ap.add_argument("--repeats", type=int, default=3, help="trials per configuration (bench.repeats, default 3)")
    args = ap.parse_args()
    home = Path(args.home or tempfile.mkdtemp(prefix="inflab-sweep-bench-"))
    env = dict(os.environ, INFLAB_HOME=str(home))
    name = f"sweep-{int(time.time()) % 100000}"
    cfg = home / f"{name}.toml"
    home.mkdir(parents=True, exist_ok=True)
    cfg.write_text(
        f"[bench]\nrepeats = {args.repeats}\n[batch]\nsizes = [2, 4, 8]\nmin_duration_s = {args.min_duration}\n"
        f"max_duration_s = {args.min_duration * 6}\n"
    )

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

    results = [
        r["data"]
        for r in Store(home).results(name, "benchmark")
        if str(r["data"].get("run_id", "")).startswith("sweep-")
    ]
    measured = sum(r["duration_s"] for r in results)
    by_job: dict[str, float] = {}
    for r in results:  # run ids: sweep-<first 8 of the job id>-<type>-b<size>[.n]
        job = r["run_id"].split("-")[1]
        by_job[job] = by_job.get(job, 0.0) + r["duration_s"]
    overhead = 1 - measured / sweep if sweep else float("nan")
    phases = job_phases(home, name, by_job)
    load = os.getloadavg()
    print(
        f"sandbox sweep, 3 batch sizes ({len(sweep_rows)} results: fp32 and int8 per size), "
        f"{args.repeats} trial(s) of >= {args.min_duration} s each; load average now {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(f"  preparation (untimed part, up to batch-setup): {prep:7.1f} s")
    print(f"  sweep wall time (submit + monitor):            {sweep:7.1f} s")
    print(f"  inside the benchmark runs (sum of duration_s): {measured:7.1f} s")
    print(f"  overhead share: {overhead:.1%}  (target <= 15%: {'met' if overhead <= 0.15 else 'MISSED'})")
    for r in sorted(sweep_rows, key=lambda r: (r["batch_size"], r["precision"])):
        ci = r.get("throughput_ci95")
        print(
            f"    batch {r['batch_size']:>2} {r['precision']:<5} {r['throughput_avg']:>9,.1f} samples/s"
            + (f" (95% CI {ci[0]:,.1f}–{ci[1]:,.1f})" if ci else "")
            + f"  p90 {r['latency_ms_p90']:.2f} ms  quality {r.get('quality')}"
        )
    if phases:
        total = {k: sum(p[k] for p in phases) for k, _ in PHASES}
        print(f"  where the sweep's time went (sum over {len(phases)} jobs, from their CloudWatch log times):")
        for key, what in PHASES:
            print(f"    {what:<66} {total[key]:7.1f} s  ({total[key] / sweep:5.1%})")
        outside = sweep - sum(total.values())
        print(
            f"    {'outside the jobs (submit, polling, the monitor seeing the end)':<66} {outside:7.1f} s  "
            f"({outside / sweep:5.1%})"
        )
    inflab("cleanup", name, "--yes", "--delete-data", env=env)
    if not args.home:
        subprocess.run([INFLAB, "sandbox", "stop"], env=env, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
