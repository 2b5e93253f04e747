#!/usr/bin/env python3
"""Benchmark harness: throughput and latency of one traced model on this host (DESIGN §7).

    python3 bench.py MODEL [--target inf1|inf2|cuda|cpu] [--batch-size B] [--n-models N]
        [--workers W] [--min-duration S] [--min-queries Q] [--max-duration S] [--window S]
        [--stability F] [--intra-op-threads T] [--warmup N] [--mode closed|open] [--rate R] [--seed N]
        [--instance-type T] [--run-id ID] [--label TEXT] [--runtime NAME] [--out FILE] [--no-neuronperf]

MODEL is a TorchScript file ``X.pt`` with its manifest ``X.json`` beside it (written by the
compile step), or ``py:FILE:FUNC`` where ``FUNC(batch_size, target)`` returns
``(callable, inputs_tuple)``.

One OS process per model copy (``model_process.py``), pinned with ``targets.pin_env``, runs W worker threads, each
with its own intra-op team of ``--intra-op-threads`` (by default, on the cpu target, the
copy's cores / W, so the workers never run more threads than the copy has cores). All
workers warm up, then every process starts on the parent's "go". Only ``model(*inputs)`` and
a device synchronize are timed (``perf_counter_ns``; inputs are built beforehand). Each
process streams, window by window, the latencies that completed (JSON lines on stdout); the
parent merges them and stops once ``--min-duration`` AND ``--min-queries`` are reached AND
the last 3 windows' throughputs are within ``--stability`` of each other — or at
``--max-duration`` regardless (``"stable": false``). The result is one JSON object of the
schema in ``result.py`` (``--out``; default ``X.bench.json`` beside the model), complete as
written: run id, time, the model's manifest facts and the caller's ``--instance-type``,
``--label`` and ``--runtime`` are in it. In ``--mode open`` queries arrive as a
seeded Poisson process at ``--rate`` queries/s (split evenly over the copies) and latency
counts from the *scheduled* arrival, so queueing delay is part of it.

The parent uses the standard library only; torch is imported in model processes that need it.
"""

import argparse
import base64
import collections
import dataclasses
import json
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from array import array
from pathlib import Path

try:
    from . import cmdline, sysinfo, targets
    from .model_process import build_inputs
    from .result import RUN_ID, SANDBOX_RUNTIME, BenchResult, ModelCopy, Window, new_run_id, utc_now
except ImportError:  # run as a script on the host
    import cmdline
    import sysinfo
    import targets
    from model_process import build_inputs
    from result import RUN_ID, SANDBOX_RUNTIME, BenchResult, ModelCopy, Window, new_run_id, utc_now

STABLE_WINDOWS = 3  # stability is judged on this many most recent windows
# Open loop: the count of Poisson arrivals in a window varies by 1/sqrt(count), so a window
# needs ~1,000 of them (about 3%) before "three windows within 10%" can mean stable.
OPEN_WINDOW_ARRIVALS = 1000
# (BenchResult attribute suffix, percentile)
PERCENTILES = (("p0", 0), ("p50", 50), ("p90", 90), ("p95", 95), ("p99", 99), ("p99_9", 99.9), ("p100", 100))
STDERR_TAIL = 30  # lines of a failed model process's stderr to show


# ---------------------------------------------------------------- statistics

def percentile(sorted_values, p):
    """The p-th percentile (0..100) of ascending values, interpolating linearly between the
    closest ranks — the same as ``numpy.percentile``'s default method."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} is outside 0..100")
    rank = (len(sorted_values) - 1) * p / 100
    lo = math.floor(rank)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (rank - lo)


def spread(values):
    """(max - min) / mean: how far apart a few throughputs are (inf when the mean is 0)."""
    mean = sum(values) / len(values)
    return (max(values) - min(values)) / mean if mean > 0 else math.inf


# ---------------------------------------------------------------- command line

def _number(kind, low, inclusive=True):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None
        if not (value >= low if inclusive else value > low) or not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be {'at least' if inclusive else 'more than'} {low}, not {text}")
        return value
    return parse


def _run_id(text):
    if not RUN_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a run id (1-64 of A-Z a-z 0-9 . _ : -, starting with a letter or digit)")
    return text


def parse_args(argv):
    p = cmdline.Parser(prog="bench.py", description="Benchmark a traced model (see the module docstring).")
    p.add_argument("model", metavar="MODEL", help="X.pt with X.json beside it, or py:FILE:FUNC")
    p.add_argument("--target", choices=targets.TARGETS, help="default: the manifest's, or cpu for py: models")
    p.add_argument("--batch-size", type=_number(int, 1), help="py: models (default 1); a .pt has its manifest's")
    p.add_argument("--n-models", type=_number(int, 0), default=0, help="model processes (0: one per device)")
    p.add_argument("--workers", type=_number(int, 1), default=2, help="worker threads per model")
    p.add_argument("--min-duration", type=_number(float, 0), default=10.0, metavar="S")
    p.add_argument("--min-queries", type=_number(int, 0), default=500, metavar="Q")
    p.add_argument("--max-duration", type=_number(float, 0, inclusive=False), default=120.0, metavar="S")
    p.add_argument("--window", type=_number(float, 0, inclusive=False), default=None, metavar="S",
                   help="seconds per measuring window (default 1; open loop: long enough for ~%d arrivals)" % OPEN_WINDOW_ARRIVALS)
    p.add_argument("--stability", type=_number(float, 0), default=0.10, metavar="F")
    p.add_argument("--intra-op-threads", type=_number(int, 0), default=0, metavar="T",
                   help="torch threads per worker (0: cpu target, the model's cores / workers; else the default)")
    p.add_argument("--warmup", type=_number(int, 0), default=10, metavar="N", help="calls per worker")
    p.add_argument("--mode", choices=("closed", "open"), default="closed")
    p.add_argument("--rate", type=_number(float, 0, inclusive=False), metavar="R", help="queries/s over all models")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--instance-type", default="", help="recorded in the result (default: $INFLAB_INSTANCE_TYPE)")
    p.add_argument("--run-id", type=_run_id, default=None, metavar="ID", help="default: 8 random hex digits")
    p.add_argument("--label", default="", metavar="TEXT", help="recorded in the result, e.g. the session's name")
    p.add_argument("--runtime", default="", metavar="NAME",
                   help=f"where this runs, recorded in the result ({SANDBOX_RUNTIME!r}: the local sandbox host)")
    p.add_argument("--out", metavar="FILE")
    p.add_argument("--no-neuronperf", action="store_true")
    args = p.parse_args(argv)
    if args.mode == "open" and args.rate is None:
        p.error("argument --rate: required with --mode open")
    if args.mode == "closed" and args.rate is not None:
        p.error("argument --rate: only meaningful with --mode open")
    if args.max_duration < args.min_duration:
        p.error(f"argument --max-duration: {args.max_duration:g} is less than --min-duration {args.min_duration:g}")
    return args, p.error


def resolve_model(args, error):
    """(spec, manifest): what the model processes load, and a .pt model's manifest (else None)."""
    if args.model.startswith("py:"):
        file, sep, func = args.model[3:].rpartition(":")
        if not (sep and file and func):
            error(f"argument MODEL: expected py:FILE:FUNC, got {args.model!r}")
        if not os.path.isfile(file):
            error(f"argument MODEL: no such file: {file}")
        return {"kind": "py", "file": os.path.abspath(file), "func": func,
                "target": args.target or "cpu", "batch_size": args.batch_size or 1}, None
    path = Path(args.model)
    if not path.is_file():
        error(f"argument MODEL: no such file: {path}")
    mpath = path.with_suffix(".json")
    try:
        manifest = json.loads(mpath.read_text())
        target, batch, inputs = manifest["target"], int(manifest["batch_size"]), manifest["inputs"]
    except OSError:
        error(f"argument MODEL: no manifest {mpath.name} beside {path.name} (the compile step writes it)")
    except (ValueError, KeyError, TypeError) as e:
        error(f"argument MODEL: manifest {mpath} is not usable ({type(e).__name__}: {e})")
    if target not in targets.TARGETS:
        error(f"argument MODEL: manifest {mpath.name} names an unknown target {target!r}")
    if args.target and args.target != target:
        error(f"argument --target: {args.target} does not match the model, traced for {target} ({mpath.name})")
    if args.batch_size and args.batch_size != batch:
        error(f"argument --batch-size: {args.batch_size} does not match the model, "
              f"traced at batch {batch} ({mpath.name})")
    spec = {"kind": "pt", "path": str(path.resolve()), "target": target, "batch_size": batch, "inputs": inputs}
    return spec, manifest


# ---------------------------------------------------------------- parent

class BenchError(Exception):
    pass


class ModelProcess:
    """A model copy's process; its protocol messages go to a queue shared by all of them."""

    def __init__(self, index, config, env, events):
        self.index, self.env, self.threads = index, env, config["threads"]
        self.stderr_tail = collections.deque(maxlen=STDERR_TAIL)
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve().with_name("model_process.py")), json.dumps(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, **env}, text=True, bufsize=1)
        self.pid = self.proc.pid
        self._stderr = threading.Thread(target=self._pump_stderr, daemon=True)
        self._stderr.start()
        threading.Thread(target=self._pump_stdout, args=(events,), daemon=True).start()

    def _pump_stdout(self, events):
        for line in self.proc.stdout:
            try:
                events.put((self.index, json.loads(line)))
            except ValueError:  # not ours (cannot happen from model_process, but never lose it)
                self.stderr_tail.append(line.rstrip("\n"))
        events.put((self.index, None))  # end of stream: the process is gone

    def _pump_stderr(self):
        for line in self.proc.stderr:
            self.stderr_tail.append(line.rstrip("\n"))

    def send(self, word):
        try:
            self.proc.stdin.write(word + "\n")
            self.proc.stdin.flush()
        except (OSError, ValueError):  # already gone: its end of stream reports that
            pass

    def failure(self, what):
        """A BenchError about this process, with its exit code and the tail of its stderr."""
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._stderr.join(timeout=2)
        code, tail = self.proc.returncode, "\n".join(f"  | {line}" for line in self.stderr_tail)
        return BenchError(f"model process {self.index} (pid {self.pid}) {what}"
                          + (f", exit code {code}" if code is not None else "")
                          + (f"; its stderr ends:\n{tail}" if tail else ""))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def next_event(events, procs):
    """The next protocol message; a crash or an error report becomes a BenchError."""
    while True:
        try:
            index, msg = events.get(timeout=0.5)  # a timeout keeps signals responsive
        except queue.Empty:
            continue
        if msg is None:
            raise procs[index].failure("exited unexpectedly")
        if msg.get("event") == "error":
            raise procs[index].failure(f"failed: {msg.get('message')}")
        return index, msg


def measure(args, procs, events, batch):
    """Merge the processes' windows until the stop rule holds; returns the measurements."""
    n = len(procs)
    pending = collections.defaultdict(dict)  # window number -> {process index: message}
    last_t, per_model = [0.0] * n, [0] * n
    rows, latencies = [], array("q")  # all latencies (ns) of the measured windows
    digits = 1 if float(args.window * 10).is_integer() else 2
    while True:
        index, msg = next_event(events, procs)
        if msg.get("event") == "window":
            pending[msg["k"]][index] = msg
        k = len(rows) + 1
        if len(pending.get(k, ())) < n:
            continue  # window k is complete once every process has reported it
        parts, window = pending.pop(k), array("q")
        for i, part in parts.items():
            window.frombytes(base64.b64decode(part["lat"]))
            per_model[i] += part["n"]
        latencies.extend(window)
        dt = sum(parts[i]["t"] - last_t[i] for i in range(n)) / n  # measured, not nominal
        last_t = [parts[i]["t"] for i in range(n)]
        throughput = len(window) * batch / dt if dt > 0 else 0.0
        elapsed = k * args.window  # nominal, so the rule does not hinge on wake-up jitter
        rows.append(Window(t=round(elapsed, 6), queries=len(window), throughput=throughput))
        recent = [r.throughput for r in rows[-STABLE_WINDOWS:]]
        waiting = [what for what, missing in (
            ("duration", elapsed < args.min_duration - 1e-9),
            ("queries", len(latencies) < args.min_queries),
            ("stability", len(recent) < STABLE_WINDOWS or spread(recent) > args.stability)) if missing]
        done = not waiting or elapsed >= args.max_duration - 1e-9
        note = (f"stopping: {'stable' if not waiting else 'max duration'}" if done
                else f"waiting for: {', '.join(waiting)}")
        p50 = _ms(percentile(sorted(window), 50) / 1e6) if window else "-"
        print(f"[bench] {elapsed:.{digits}f} s  {len(latencies):,} queries  {throughput:,.1f} samples/s  "
              f"p50 {p50}  ({note})", flush=True)
        if done:
            return {"windows": rows, "latencies": latencies, "per_model": per_model,
                    "duration_s": sum(last_t) / n, "stable": not waiting,
                    "stop_reason": "stable" if not waiting else "max-duration"}


def _ms(value):
    """A latency in ms for people: 2 decimals, or 3 significant digits below 1 ms."""
    return f"{value:.2f} ms" if value >= 1 else f"{value:#.3g} ms"


def stop_all(procs, timeout=15.0):
    """Tell every process to stop and wait for each to finish (killed if it does not)."""
    for p in procs:
        p.send("stop")
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"[bench] warning: model process {p.index} did not stop; killing it", flush=True)
            p.kill()


def run_neuronperf(spec, n_models, workers, duration, seed, result_path):
    """neuronperf's own measurement of the same model, as a cross-check. Returns the path of its
    JSON report, or None; a failure here is a warning, never a failed benchmark."""
    if spec["kind"] != "pt" or spec["target"] not in targets.NEURON:
        return None
    try:
        import neuronperf
        import neuronperf.torch
    except ImportError:
        return None
    try:
        print("[bench] cross-checking with neuronperf ...", flush=True)
        reports = neuronperf.torch.benchmark(spec["path"], [build_inputs(spec["inputs"], seed)],
                                             batch_sizes=[spec["batch_size"]], n_models=n_models,
                                             workers_per_model=workers, duration=max(1, round(duration)))
        path = result_path.with_name(result_path.name.removesuffix(".json") + ".neuronperf.json")
        neuronperf.write_json(reports, filename=str(path))
        print(f"[bench] neuronperf report: {path}", flush=True)
        return str(path)
    except Exception as e:  # noqa: BLE001 - the cross-check is optional by design
        print(f"[bench] warning: neuronperf cross-check failed: {type(e).__name__}: {e}", flush=True)
        return None


def run(args, error):
    spec, manifest = resolve_model(args, error)
    target, batch = spec["target"], spec["batch_size"]
    n = args.n_models or targets.device_count(target)
    if args.window is None:
        args.window = 1.0
        if args.mode == "open" and args.rate * args.window < OPEN_WINDOW_ARRIVALS:
            args.window = math.ceil(OPEN_WINDOW_ARRIVALS / args.rate)
            print(f"[bench] open loop at {args.rate:g}/s: {args.window:g} s windows, so each holds about "
                  f"{OPEN_WINDOW_ARRIVALS:,} arrivals", flush=True)
    started_at, run_id = utc_now(), args.run_id or new_run_id()
    system = sysinfo.system_info(args.instance_type)
    if args.out:
        out_path = Path(args.out)
    elif spec["kind"] == "pt":
        out_path = Path(spec["path"]).with_name(Path(spec["path"]).stem + ".bench.json")
    else:
        out_path = Path("bench.json")
    print(f"[bench] {args.model}: target {target}, batch {batch}, {n} model(s) x {args.workers} worker(s), "
          f"{args.mode} loop" + (f" at {args.rate:g} queries/s" if args.rate else ""), flush=True)
    events, procs, ready = queue.Queue(), [], {}
    try:
        for i in range(n):
            env = targets.pin_env(target, i, n)
            config = {"index": i, "spec": spec, "workers": args.workers, "warmup": args.warmup, "seed": args.seed,
                      "window": args.window, "rate": args.rate / n if args.rate else None,
                      "threads": targets.intra_op_threads(target, env, args.workers, args.intra_op_threads)}
            procs.append(ModelProcess(i, config, env, events))
        while len(ready) < n:
            index, msg = next_event(events, procs)
            if msg.get("event") == "ready":
                ready[index] = msg
                warm = f"{msg['warmup_ms']:.2f} ms/call" if msg["warmup_ms"] is not None else "none"
                pin = " ".join(f"{k}={v}" for k, v in procs[index].env.items())
                pin += f" intra-op threads {procs[index].threads}" if procs[index].threads else ""
                print(f"[bench] model {index} ready: load {msg['load_ms']:.0f} ms, warm-up {warm} "
                      f"(pid {msg['pid']} {pin})", flush=True)
        for p in procs:  # everyone is warm: start the clocks together
            p.send("go")
        m = measure(args, procs, events, batch)
        stop_all(procs)
    finally:
        # No signal may cut this short: block them until every model process is gone.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
        try:
            for p in procs:
                p.kill()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    if not m["latencies"]:
        raise BenchError(f"no query completed in {m['duration_s']:.1f} s")

    total, man = len(m["latencies"]), manifest or {}
    ordered = sorted(m["latencies"])
    lat = {f"latency_ms_{name}": percentile(ordered, p) / 1e6 for name, p in PERCENTILES}
    warms = [r["warmup_ms"] for r in ready.values() if r["warmup_ms"] is not None]
    result = BenchResult(
        run_id=run_id, timestamp=started_at, label=args.label, runtime=args.runtime,
        instance_type=system["instance_type"],
        model_filename=os.path.basename(spec["path"]) if spec["kind"] == "pt" else args.model,
        family=man.get("family"), name=man.get("name") or spec.get("func"), size=man.get("size"),
        precision=man.get("precision"), target=target, weights=man.get("weights"),
        batch_size=batch, n_models=n, workers_per_model=args.workers, mode=args.mode, target_rate=args.rate,
        throughput_avg=total * batch / m["duration_s"],
        throughput_peak=max(w.throughput for w in m["windows"]),
        **lat, latency_ms_max=lat["latency_ms_p100"], latency_ms_mean=sum(ordered) / total / 1e6,
        total_infs=total, total_samples=total * batch, duration_s=m["duration_s"],
        stable=m["stable"], stop_reason=m["stop_reason"],
        load_avg_ms=sum(r["load_ms"] for r in ready.values()) / n,
        warmup_avg_ms=sum(warms) / len(warms) if warms else None,
        windows=m["windows"],
        models=[ModelCopy(index=p.index, pid=ready[p.index]["pid"], env=p.env, threads=p.threads,
                          queries=m["per_model"][p.index],
                          load_ms=ready[p.index]["load_ms"], warmup_ms=ready[p.index]["warmup_ms"]) for p in procs],
        settings={k: getattr(args, k) for k in ("min_duration", "min_queries", "max_duration", "window",
                                                "stability", "warmup", "seed", "intra_op_threads")},
        system=system,
    )
    write_json(out_path, result.to_dict())  # before the cross-check, which may take long or fail
    print_summary(result, args, out_path)
    if not args.no_neuronperf:
        checked = run_neuronperf(spec, n, args.workers, m["duration_s"], args.seed, out_path)
        if checked:
            result = dataclasses.replace(result, neuronperf=checked)
            write_json(out_path, result.to_dict())
    return result


def write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)  # a reader never sees half a result


def print_summary(r, args, out_path):
    why = (f"stable (last {STABLE_WINDOWS} windows within {args.stability:.0%})" if r.stable
           else f"max duration {args.max_duration:g} s reached before stability")
    lines = [
        f"model       {r.name or r.model_filename} ({r.model_filename})",
        f"setup       {r.target}, batch {r.batch_size}, {r.n_models} model(s) x {r.workers_per_model} "
        f"worker(s), {r.mode} loop" + (f" at {r.target_rate:g} queries/s" if r.target_rate else ""),
        f"throughput  {r.throughput_avg:,.1f} samples/s (peak window {r.throughput_peak:,.1f}); "
        f"{r.total_infs:,} queries in {r.duration_s:.1f} s",
        f"latency     p50 {_ms(r.latency_ms_p50)}  p90 {_ms(r.latency_ms_p90)}  "
        f"p99 {_ms(r.latency_ms_p99)}  max {_ms(r.latency_ms_max)}",
        f"stopped     {why}",
        f"result      {out_path} (run {r.run_id})",
    ]
    print("\n".join(f"[bench] {line}" for line in lines), flush=True)


def _terminate(signum, frame):
    print(f"bench.py: stopped by signal {signum}; ending the model processes", file=sys.stderr, flush=True)
    raise SystemExit(128 + signum)  # unwinds through run()'s finally, which ends the model processes


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args, error = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    try:
        run(args, error)
    except BenchError as e:
        print(f"bench.py: error: {e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("bench.py: interrupted", file=sys.stderr, flush=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
