"""What the benchmark harness costs, and how steady it is, against a bare timing loop.

The same tiny TorchScript MLP (batch 8, ~100 us a call, so any per-call cost of the harness
shows) is run (a) through inflab/remote/payload/bench.py — one model process, one worker,
closed loop, a fixed duration — and (b) as a bare loop in one separate process set up the
same way (pinning, intra-op threads, inference mode, warm-up) that just calls
`model(*inputs)` for the same duration and counts the calls. Runs alternate between the two
(harness, bare, bare, harness, ...) so a drift in the machine's speed hits both alike.

Targets: throughput ratio harness/bare >= 0.97 (medians); spread ratio <= 1.5, where a
side's spread is (max - min) / mean of its runs' throughputs — the harness may wobble at
most half as much again as the bare loop does on the same machine at the same time.
Also printed: the share of the harness worker's time inside the timed model call, and, per
run, the share of the CPUs that other processes used meanwhile (on a shared machine that,
not the harness, is usually what moves a run).

Both sides run one intra-op thread by default. With as many intra-op threads as cores
(``--intra-op-threads 2`` on a 2-core machine) a ~100 us call is an OpenMP fork/join over
every core, and whenever anything else runs — another process, or the harness's own
once-a-window bookkeeping — one team member waits for a core while the other spins: on a
shared 2-core machine both sides then drop 5-15x at random, and the comparison measures
the machine rather than the harness.

    .venv/bin/python bench/harness_overhead.py [--runs 3] [--duration 5] [--intra-op-threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = ROOT / "inflab" / "remote" / "payload"
BENCH = PAYLOAD / "bench.py"
BATCH, WIDTH = 8, 384
THROUGHPUT_TARGET, SPREAD_TARGET = 0.97, 1.5

sys.path.insert(0, str(PAYLOAD))
import result  # noqa: E402  (the payload's modules, as the host imports them)


def make_model(directory: Path) -> Path:
    """A traced 2-layer MLP with the manifest the harness expects beside it."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(WIDTH, WIDTH), torch.nn.ReLU(), torch.nn.Linear(WIDTH, WIDTH)).eval()
    path = directory / "mlp_cpu_fp32_b8.pt"
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(net, torch.randn(BATCH, WIDTH)), str(path))
    manifest = {
        "format": "inflab-model/1",
        "family": "mlp",
        "name": "tiny-mlp",
        "size": "tiny",
        "weights": "random",
        "target": "cpu",
        "precision": "fp32",
        "batch_size": BATCH,
        "file": path.name,
        "inputs": [{"name": "x", "shape": [BATCH, WIDTH], "dtype": "float32"}],
    }
    path.with_suffix(".json").write_text(json.dumps(manifest))
    return path


def bare(path: str, duration: float, threads: int) -> None:
    """(b), in its own process: the harness's model-process set-up, then nothing but calls."""
    import model_process
    import targets

    os.environ.update(targets.pin_env("cpu", 0, 1))  # what the harness gives its only model process
    targets.apply_pinning("cpu")
    manifest = json.loads(Path(path).with_suffix(".json").read_text())
    model, pool = model_process.load_model(
        {"kind": "pt", "path": path, "target": "cpu", "batch_size": BATCH, "inputs": manifest["inputs"]}, seed=0
    )
    model_process.set_intra_op_threads(threads)
    inputs = pool[0]  # the bare loop reuses one input; the harness draws from its pool (inputs.py)
    import torch

    with torch.inference_mode():
        for _ in range(10):  # the harness's default warm-up
            model(*inputs)
        calls, clock = 0, time.perf_counter
        start = clock()
        end = start + duration
        while clock() < end:
            model(*inputs)
            calls += 1
        elapsed = clock() - start
    print(json.dumps({"throughput": calls * BATCH / elapsed}))


class OthersMeter:
    """The share of all CPUs that processes other than our children used during a block."""

    @staticmethod
    def _busy() -> float:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:8]]
        return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait

    @staticmethod
    def _children() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    def __enter__(self) -> OthersMeter:
        self.t0, self.busy0, self.mine0 = time.monotonic(), self._busy(), self._children()
        return self

    def __exit__(self, *exc) -> None:
        others = (self._busy() - self.busy0) - (self._children() - self.mine0)
        self.share = max(0.0, others) / ((time.monotonic() - self.t0) * (os.cpu_count() or 1))


def run_bare(path: Path, duration: float, threads: int) -> float:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--bare",
            str(path),
            "--duration",
            str(duration),
            "--intra-op-threads",
            str(threads),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["throughput"]


def run_harness(path: Path, duration: float, threads: int, out: Path) -> result.BenchResult:
    subprocess.run(
        [
            sys.executable,
            str(BENCH),
            str(path),
            "--target",
            "cpu",
            "--n-models",
            "1",
            "--workers",
            "1",
            "--intra-op-threads",
            str(threads),
            "--min-duration",
            str(duration),
            "--max-duration",
            str(duration),
            "--min-queries",
            "1",
            "--window",
            "1",
            "--no-neuronperf",
            "--repeats",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.BenchResult.from_dict(json.loads(out.read_text()))


def spread(xs: list[float]) -> float:
    return (max(xs) - min(xs)) / statistics.mean(xs)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> None:
    ap = argparse.ArgumentParser(description="The harness against a bare timing loop (see the module docstring).")
    ap.add_argument("--runs", type=int, default=3, help="runs of each side (at least 2)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    ap.add_argument("--intra-op-threads", type=int, default=1, metavar="T", help="torch threads of the one worker")
    ap.add_argument("--bare", metavar="MODEL", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bare:
        bare(args.bare, args.duration, args.intra_op_threads)
        return
    if args.runs < 2:
        ap.error("argument --runs: at least 2 (a spread needs two runs)")
    load = open("/proc/loadavg").read().split()[:3]
    runs: list[tuple[str, float, float, result.BenchResult | None]] = []  # (side, samples/s, others, result)
    with tempfile.TemporaryDirectory() as tmp:
        path = make_model(Path(tmp))
        for i in range(args.runs):
            for side in ("harness", "bare") if i % 2 == 0 else ("bare", "harness"):
                r = None
                with OthersMeter() as meter:
                    if side == "harness":
                        r = run_harness(path, args.duration, args.intra_op_threads, Path(tmp) / "result.json")
                    else:
                        throughput = run_bare(path, args.duration, args.intra_op_threads)
                runs.append((side, r.throughput_avg if r else throughput, meter.share, r))
    harness = [t for side, t, _, _ in runs if side == "harness"]
    plain = [t for side, t, _, _ in runs if side == "bare"]
    results = [r for _, _, _, r in runs if r is not None]
    inside = [r.latency_ms_mean / 1e3 * r.total_infs / r.duration_s for r in results]
    ratio = statistics.median(harness) / statistics.median(plain)
    s_harness, s_bare = spread(harness), spread(plain)
    s_ratio = s_harness / s_bare if s_bare > 0 else float("inf")
    fmt = lambda xs: ", ".join(f"{x:,.0f}" for x in xs)  # noqa: E731
    print(
        f"model             traced MLP {WIDTH}-{WIDTH}-{WIDTH}, batch {BATCH}, cpu, 1 process x 1 worker x "
        f"{args.intra_op_threads} intra-op thread(s), {args.duration:g} s per run, {args.runs} runs each"
    )
    print(
        f"machine           {os.cpu_count()} CPUs, load average at start {' '.join(load)}; CPU share used by "
        f"other processes per run, in run order: " + ", ".join(f"{side[0]} {others:.0%}" for side, _, others, _ in runs)
    )
    print(
        f"harness           median {statistics.median(harness):,.0f} samples/s  ({fmt(harness)})  spread {s_harness:.1%}"
    )
    print(f"bare loop         median {statistics.median(plain):,.0f} samples/s  ({fmt(plain)})  spread {s_bare:.1%}")
    print(
        f"throughput ratio  {ratio:.3f}  (harness / bare)  target >= {THROUGHPUT_TARGET}  "
        f"{verdict(ratio >= THROUGHPUT_TARGET)}"
    )
    print(
        f"spread ratio      {s_ratio:.2f}  (harness spread / bare spread)  target <= {SPREAD_TARGET}  "
        f"{verdict(s_ratio <= SPREAD_TARGET)}"
    )
    print(
        f"in model calls    {statistics.median(inside):.1%} of the harness worker's time (median; "
        f"{statistics.mean(r.latency_ms_mean for r in results) * 1e3:.1f} us mean call)"
    )


if __name__ == "__main__":
    main()
