"""What the benchmark harness costs: its throughput against a bare timing loop.

The same tiny TorchScript MLP (batch 1, a few microseconds a call, so any per-call cost of
the harness shows) is run (a) through inflab/remote/payload/bench.py — one model process,
one worker, closed loop, a fixed duration — and (b) as a bare loop in one separate process
set up the same way (pinning, intra-op threads, inference mode, warm-up) that just calls
`model(*inputs)` for the same duration and counts the calls. Runs alternate between the two
(harness, bare, bare, harness, ...) so a drift in the machine's speed hits both alike.

Targets: harness/bare >= 0.97 (median of each side), spread over the runs
((max - min) / mean) <= 5% for each side. Also printed: the share of the harness worker's
time spent inside the timed model call (mean latency x calls / duration) — its own
bookkeeping per call, which, unlike the two throughputs, other load on the machine barely moves.

    .venv/bin/python bench/harness_overhead.py [--runs 3] [--duration 5]
"""

from __future__ import annotations

import argparse
import json
import os
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


def make_model(directory: Path) -> Path:
    """A traced 2-layer MLP with the manifest the harness expects beside it."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(WIDTH, WIDTH), torch.nn.ReLU(), torch.nn.Linear(WIDTH, WIDTH)).eval()
    path = directory / "mlp_cpu_fp32_b1.pt"
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(net, torch.randn(BATCH, WIDTH)), str(path))
    manifest = {"format": "inflab-model/1", "family": "mlp", "name": "tiny-mlp", "weights": "random",
                "target": "cpu", "precision": "fp32", "batch_size": BATCH, "file": path.name,
                "inputs": [{"name": "x", "shape": [BATCH, WIDTH], "dtype": "float32"}]}
    path.with_suffix(".json").write_text(json.dumps(manifest))
    return path


def bare(path: str, duration: float) -> None:
    """(b), in its own process: the harness's model-process set-up, then nothing but calls."""
    sys.path.insert(0, str(PAYLOAD))
    import bench
    import targets

    env = targets.pin_env("cpu", 0, 1)  # what the harness gives its only model process
    os.environ.update(env)
    targets.apply_pinning("cpu")
    manifest = json.loads(Path(path).with_suffix(".json").read_text())
    model, inputs = bench.load_model({"kind": "pt", "path": path, "target": "cpu", "batch_size": BATCH,
                                      "inputs": manifest["inputs"]}, workers=1, seed=0)
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


def run_bare(path: Path, duration: float) -> float:
    out = subprocess.run([sys.executable, __file__, "--bare", str(path), "--duration", str(duration)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["throughput"]


def run_harness(path: Path, duration: float, out: Path) -> dict:
    subprocess.run([sys.executable, str(BENCH), str(path), "--target", "cpu", "--n-models", "1", "--workers", "1",
                    "--min-duration", str(duration), "--max-duration", str(duration), "--min-queries", "1",
                    "--window", "1", "--no-neuronperf", "--out", str(out)],
                   capture_output=True, text=True, check=True)
    return json.loads(out.read_text())


def spread(xs: list[float]) -> float:
    return (max(xs) - min(xs)) / statistics.mean(xs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    ap.add_argument("--bare", metavar="MODEL", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bare:
        bare(args.bare, args.duration)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = make_model(Path(tmp))
        results, plain = [], []
        for i in range(args.runs):
            if i % 2:
                plain.append(run_bare(path, args.duration))
            results.append(run_harness(path, args.duration, Path(tmp) / "result.json"))
            if not i % 2:
                plain.append(run_bare(path, args.duration))
    harness = [r["throughput_avg"] for r in results]
    inside = [r["latency_ms_mean"] / 1e3 * r["total_infs"] / r["duration_s"] for r in results]
    ratio = statistics.median(harness) / statistics.median(plain)
    fmt = lambda xs: ", ".join(f"{x:,.0f}" for x in xs)  # noqa: E731
    print(f"model             traced MLP {WIDTH}-{WIDTH}-{WIDTH}, batch {BATCH}, cpu, 1 process x 1 worker, "
          f"{args.duration:g} s per run, {args.runs} runs each")
    print(f"harness           median {statistics.median(harness):,.0f} samples/s  ({fmt(harness)})")
    print(f"bare loop         median {statistics.median(plain):,.0f} samples/s  ({fmt(plain)})")
    print(f"harness/bare      {ratio:.3f}  target >= 0.97  {'ok' if ratio >= 0.97 else 'MISSED'}")
    for label, xs in (("harness spread", harness), ("bare spread", plain)):
        s = spread(xs)
        print(f"{label:<17} {s:.1%}  target <= 5%  {'ok' if s <= 0.05 else 'MISSED'}")
    print(f"in model calls    {statistics.median(inside):.1%} of the harness worker's time (median; "
          f"{statistics.mean(r['latency_ms_mean'] for r in results) * 1e3:.2f} us mean call)")


if __name__ == "__main__":
    main()
