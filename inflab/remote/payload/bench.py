#!/usr/bin/env python3
"""Benchmark harness: throughput and latency of traced models on this host (DESIGN §7).

    python3 bench.py MODEL [MODEL ...] [--target inf1|inf2|cuda|cpu] [--batch-size B] [--n-models N]
        [--workers W] [--repeats R] [--harness inflab|loadgen] [--min-duration S] [--min-queries Q]
        [--max-duration S] [--window S] [--stability F] [--intra-op-threads T] [--warmup N]
        [--mode closed|open] [--rate R] [--seed N] [--instance-type T] [--run-id ID] [--label TEXT]
        [--runtime NAME] [--out FILE | --out-dir DIR] [--no-neuronperf]

MODEL is a TorchScript file ``X.pt`` with its manifest ``X.json`` beside it (written by the
compile step), or ``py:FILE:FUNC`` where ``FUNC(batch_size, target)`` returns
``(callable, inputs)`` — one tuple of inputs, or a list of them (a pool). Several models (the
sweep's fp32 and int8 of one batch size) are measured by one harness: their trials take turns.

One OS process per model copy (``model_process.py``), pinned with ``targets.pin_env``, loads
every MODEL once and runs W worker threads, each with its own intra-op team of
``--intra-op-threads`` (by default, on the cpu target, the copy's cores / W, so the workers
never run more threads than the copy has cores). Each configuration is measured as
``--repeats`` independent trials; each trial warms up again, then every process starts on the
parent's "go". Only ``model(*inputs)`` and a device synchronize are timed
(``perf_counter_ns``), each call on a batch drawn at random from a pool of distinct inputs
(``inputs.py``), drawn outside the timed region. Each process streams, window by window, the
latencies that completed (JSON lines on stdout); the parent merges them and stops the trial
once ``--min-duration`` AND ``--min-queries`` are reached AND the last 3 windows' throughputs
are within ``--stability`` of each other — or at ``--max-duration`` regardless. During each
trial the parent records the share of the host's CPU that processes outside its own process
tree took (``interference.py``).

The result reports the median over the trials of the throughput and of each latency
percentile, with its 95% CI (``trials.py``, ``stats.py``), the interference, and ``quality``
(ok, noisy, disturbed). It is one JSON object of the schema in ``result.py`` per model
(``--out`` for one model; by default ``X.bench.json`` beside it, or in ``--out-dir``),
complete as written: run id (``--run-id``; with several models ``ID.1``, ``ID.2`` … in their
order), time, the model's manifest facts and the caller's ``--instance-type``, ``--label`` and
``--runtime`` are in it. In ``--mode open`` queries arrive as a seeded Poisson process at
``--rate`` queries/s (split evenly over the copies) and latency counts from the *scheduled*
arrival, so queueing delay is part of it.

``--harness loadgen`` measures the same models with MLPerf LoadGen instead
(``loadgen_harness.py``: Offline for throughput, SingleStream for latency, Server at
``--rate`` in open mode) and writes the same schema, plus LoadGen's VALID/INVALID verdicts.

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
import sys
from array import array
from pathlib import Path

try:
    from . import cmdline, interference, limits, sysinfo, targets
    from .children import BenchError, ModelProcess, end_all, next_event, stop_all, wait_for
    from .model_process import build_inputs
    from .result import RUN_ID, SANDBOX_RUNTIME, Trial, Window, new_run_id, utc_now
    from .trials import Measured, build_result
except ImportError:  # run as a script on the host
    import cmdline
    import interference
    import limits
    import sysinfo
    import targets
    from children import BenchError, ModelProcess, end_all, next_event, stop_all, wait_for
    from model_process import build_inputs
    from result import RUN_ID, SANDBOX_RUNTIME, Trial, Window, new_run_id, utc_now
    from trials import Measured, build_result

STABLE_WINDOWS = 3  # stability is judged on this many most recent windows
# Open loop: the count of Poisson arrivals in a window varies by 1/sqrt(count), so a window
# needs ~1,000 of them (about 3%) before "three windows within 10%" can mean stable.
OPEN_WINDOW_ARRIVALS = 1000
# (BenchResult attribute suffix, percentile)
PERCENTILES = (("p0", 0), ("p50", 50), ("p90", 90), ("p95", 95), ("p99", 99), ("p99_9", 99.9), ("p100", 100))


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


def _number(kind, low, inclusive=True, high=None):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None
        if not (value >= low if inclusive else value > low) or not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be {'at least' if inclusive else 'more than'} {low}, not {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, not {text}")
        return value

    return parse


def _run_id(text):
    if not RUN_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a run id (1-64 of A-Z a-z 0-9 . _ : -, starting with a letter or digit)"
        )
    return text


def parse_args(argv):
    p = cmdline.Parser(prog="bench.py", description="Benchmark traced models (see the module docstring).")
    p.add_argument("model", metavar="MODEL", nargs="+", help="X.pt with X.json beside it, or py:FILE:FUNC")
    p.add_argument("--target", choices=targets.TARGETS, help="default: the manifest's, or cpu for py: models")
    p.add_argument("--batch-size", type=_number(int, 1), help="py: models (default 1); a .pt has its manifest's")
    p.add_argument("--n-models", type=_number(int, 0), default=0, help="model processes (0: one per device)")
    p.add_argument("--workers", type=_number(int, 1), default=2, help="worker threads per model")
    p.add_argument(
        "--repeats",
        type=_number(int, limits.REPEATS.low, high=limits.REPEATS.high),
        default=3,
        metavar="R",
        help=f"independent trials per model ({limits.REPEATS})",
    )
    p.add_argument(
        "--harness",
        choices=limits.HARNESSES,
        default="inflab",
        help="inflab (this harness) or loadgen (MLPerf LoadGen on the same model)",
    )
    p.add_argument("--min-duration", type=_number(float, 0), default=10.0, metavar="S", help="per trial")
    p.add_argument("--min-queries", type=_number(int, 0), default=500, metavar="Q", help="per trial")
    p.add_argument(
        "--max-duration", type=_number(float, 0, inclusive=False), default=120.0, metavar="S", help="per trial"
    )
    p.add_argument(
        "--window",
        type=_number(float, 0, inclusive=False),
        default=None,
        metavar="S",
        help="seconds per measuring window (default 1; open loop: long enough for ~%d arrivals)" % OPEN_WINDOW_ARRIVALS,
    )
    p.add_argument("--stability", type=_number(float, 0), default=0.10, metavar="F")
    p.add_argument(
        "--intra-op-threads",
        type=_number(int, 0),
        default=0,
        metavar="T",
        help="torch threads per worker (0: cpu target, the model's cores / workers; else the default)",
    )
    p.add_argument("--warmup", type=_number(int, 0), default=10, metavar="N", help="calls per worker, each trial")
    p.add_argument("--mode", choices=("closed", "open"), default="closed")
    p.add_argument("--rate", type=_number(float, 0, inclusive=False), metavar="R", help="queries/s over all models")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--instance-type", default="", help="recorded in the result (default: $INFLAB_INSTANCE_TYPE)")
    p.add_argument("--run-id", type=_run_id, default=None, metavar="ID", help="default: 8 random hex digits")
    p.add_argument("--label", default="", metavar="TEXT", help="recorded in the result, e.g. the session's name")
    p.add_argument(
        "--runtime",
        default="",
        metavar="NAME",
        help=f"where this runs, recorded in the result ({SANDBOX_RUNTIME!r}: the local sandbox host)",
    )
    p.add_argument("--out", metavar="FILE", help="the result file (one MODEL)")
    p.add_argument(
        "--out-dir", metavar="DIR", help="where the results go, as X.bench.json (default: beside each model)"
    )
    p.add_argument("--no-neuronperf", action="store_true")
    args = p.parse_intermixed_args(argv)  # models may come before and after the flags
    if args.mode == "open" and args.rate is None:
        p.error("argument --rate: required with --mode open")
    if args.mode == "closed" and args.rate is not None:
        p.error("argument --rate: only meaningful with --mode open")
    if args.max_duration < args.min_duration:
        p.error(f"argument --max-duration: {args.max_duration:g} is less than --min-duration {args.min_duration:g}")
    if args.out and len(args.model) > 1:
        p.error(f"argument --out: names one result file, and {len(args.model)} models were given (use --out-dir)")
    if args.out and args.out_dir:
        p.error("argument --out-dir: not with --out")
    return args, p.error


def resolve_model(text, args, error):
    """(spec, manifest): what the model processes load, and a .pt model's manifest (else None)."""
    if text.startswith("py:"):
        file, sep, func = text[3:].rpartition(":")
        if not (sep and file and func):
            error(f"argument MODEL: expected py:FILE:FUNC, got {text!r}")
        if not os.path.isfile(file):
            error(f"argument MODEL: no such file: {file}")
        return {
            "kind": "py",
            "file": os.path.abspath(file),
            "func": func,
            "target": args.target or "cpu",
            "batch_size": args.batch_size or 1,
        }, None
    path = Path(text)
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
        error(
            f"argument --batch-size: {args.batch_size} does not match the model, traced at batch {batch} ({mpath.name})"
        )
    spec = {"kind": "pt", "path": str(path.resolve()), "target": target, "batch_size": batch, "inputs": inputs}
    return spec, manifest


# ---------------------------------------------------------------- measuring


def measure(args, procs, events, batch, trial, label=""):
    """Merge the processes' windows of one trial until the stop rule holds; returns the
    measurements."""
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
        rows.append(Window(t=round(elapsed, 6), queries=len(window), throughput=throughput, trial=trial))
        recent = [r.throughput for r in rows[-STABLE_WINDOWS:]]
        waiting = [
            what
            for what, missing in (
                ("duration", elapsed < args.min_duration - 1e-9),
                ("queries", len(latencies) < args.min_queries),
                ("stability", len(recent) < STABLE_WINDOWS or spread(recent) > args.stability),
            )
            if missing
        ]
        done = not waiting or elapsed >= args.max_duration - 1e-9
        note = (
            f"stopping: {'stable' if not waiting else 'max duration'}" if done else f"waiting for: {', '.join(waiting)}"
        )
        p50 = _ms(percentile(sorted(window), 50) / 1e6) if window else "-"
        print(
            f"[bench] {label}{elapsed:.{digits}f} s  {len(latencies):,} queries  {throughput:,.1f} samples/s  "
            f"p50 {p50}  ({note})",
            flush=True,
        )
        if done:
            return {
                "windows": rows,
                "latencies": latencies,
                "per_model": per_model,
                "duration_s": sum(last_t) / n,
                "stable": not waiting,
                "stop_reason": "stable" if not waiting else "max-duration",
            }


def _ms(value):
    """A latency in ms for people: 2 decimals, or 3 significant digits below 1 ms."""
    return f"{value:.2f} ms" if value >= 1 else f"{value:#.3g} ms"


def trial_of(index, m, batch, share):
    """A :class:`Trial` from one trial's measurements (``m``, from :func:`measure`)."""
    ordered = sorted(m["latencies"])
    if not ordered:
        raise BenchError(f"no query completed in {m['duration_s']:.1f} s (trial {index})")
    lat = {f"latency_ms_{name}": percentile(ordered, p) / 1e6 for name, p in PERCENTILES if name not in ("p0", "p100")}
    return Trial(
        index=index,
        throughput=len(ordered) * batch / m["duration_s"],
        **lat,
        queries=len(ordered),
        duration_s=m["duration_s"],
        stop_reason=m["stop_reason"],
        interference=share.interference,
        steal=share.steal,
    )


def _trial_label(args, spec, trial, several):
    parts = []
    if several:
        parts.append(Path(spec.get("path") or spec.get("func") or "").stem)
    if args.repeats > 1:
        parts.append(f"trial {trial}/{args.repeats}")
    return (" · ".join(parts) + ": ") if parts else ""


def run_inflab(args, specs, n):
    """Every model's trials, measured by this harness's model processes: trials take turns
    between the models (t1 of each, then t2 of each ...), so a slow drift of the host touches
    them alike."""
    target = specs[0]["target"]
    out = [Measured(per_copy=[0] * n) for _ in specs]
    events, procs = queue.Queue(), []
    try:
        for i in range(n):
            env = targets.pin_env(target, i, n)
            config = {
                "index": i,
                "specs": specs,
                "workers": args.workers,
                "warmup": args.warmup,
                "seed": args.seed,
                "window": args.window,
                "rate": args.rate / n if args.rate else None,
                "threads": targets.intra_op_threads(target, env, args.workers, args.intra_op_threads),
            }
            procs.append(ModelProcess(i, config, env, events))
        for index, msg in sorted(wait_for(events, procs, "loaded").items()):
            p = procs[index]
            pin = " ".join(f"{k}={v}" for k, v in p.env.items()) + (
                f" intra-op threads {p.threads}" if p.threads else ""
            )
            loads = ", ".join(f"{ms:.0f}" for ms in msg["load_ms"])
            print(
                f"[bench] model process {index} loaded {len(specs)} model(s) in {loads} ms "
                f"(pid {msg['pid']} {pin}); input pool {', '.join(map(str, msg['pool']))} batch(es)",
                flush=True,
            )
            for m, measured in enumerate(out):
                measured.copies[index] = {"pid": msg["pid"], "load_ms": msg["load_ms"][m], "warmup_ms": None}
                measured.pool = msg["pool"][m]
        sampler = interference.Sampler()
        for t in range(1, args.repeats + 1):
            for m, spec in enumerate(specs):
                label = _trial_label(args, spec, t, len(specs) > 1)
                for p in procs:
                    p.send(f"warm {m}")
                for index, msg in wait_for(events, procs, "ready").items():
                    if msg["warmup_ms"] is not None:
                        out[m].warmups.append(msg["warmup_ms"])
                        out[m].copies[index]["warmup_ms"] = msg["warmup_ms"]
                sampler.refresh()
                before = sampler.sample()
                for p in procs:  # everyone is warm: start the clocks together
                    p.send("go")
                measured = measure(args, procs, events, spec["batch_size"], t, label)
                after = sampler.sample()
                for p in procs:
                    p.send("stop")
                wait_for(events, procs, "done")
                trial = trial_of(t, measured, spec["batch_size"], interference.share(before, after))
                out[m].trials.append(trial)
                out[m].windows.extend(measured["windows"])
                out[m].latencies.extend(measured["latencies"])
                out[m].per_copy = [a + b for a, b in zip(out[m].per_copy, measured["per_model"])]
                print(
                    f"[bench] {label}{trial.throughput:,.1f} samples/s, p50 {_ms(trial.latency_ms_p50)}, "
                    f"other processes took {trial.interference:.0%} of the CPU",
                    flush=True,
                )
        stop_all(procs)
    finally:
        end_all(procs)
    return out


def run_loadgen(args, specs, n):
    """Every model's trials, measured by MLPerf LoadGen in one process (``loadgen_harness.py``)."""
    target = specs[0]["target"]
    events = queue.Queue()
    env = targets.pin_env(target, 0, 1)  # one process: every core the copies would share
    threads = targets.intra_op_threads(target, targets.pin_env(target, 0, n), args.workers, args.intra_op_threads)
    config = {
        "specs": specs,
        "n_models": n,
        "workers": args.workers,
        "threads": threads,
        "warmup": args.warmup,
        "seed": args.seed,
        "repeats": args.repeats,
        "min_duration": args.min_duration,
        "min_queries": args.min_queries,
        "max_duration": args.max_duration,
        "rate": args.rate if args.mode == "open" else None,
        "logs": str(args.loadgen_logs),
    }
    out = [Measured(per_copy=[0] * n) for _ in specs]
    procs = [ModelProcess(0, config, env, events, script="loadgen_harness.py")]
    try:
        msg = wait_for(events, procs, "loaded")[0]
        for m, measured in enumerate(out):
            measured.pool = msg["pool"][m]
            measured.copies = {
                i: {"pid": msg["pid"], "load_ms": msg["load_ms"][m], "warmup_ms": msg["warmup_ms"][m]} for i in range(n)
            }
            if msg["warmup_ms"][m] is not None:
                measured.warmups.append(msg["warmup_ms"][m])
        while True:
            _, msg = next_event(events, procs)
            if msg.get("event") == "finished":
                break
            if msg.get("event") != "trial":
                continue
            m, trial = msg["model"], Trial(**msg["trial"])
            out[m].trials.append(trial)
            out[m].loadgen.append(msg["loadgen"])
            ext = out[m].extremes
            ext["min"] = min(ext.get("min", math.inf), msg["min_ms"])
            ext["max"] = max(ext.get("max", 0.0), msg["max_ms"])
            ext.setdefault("means", []).append(msg["mean_ms"])
            out[m].per_copy = [c + trial.queries // n for c in out[m].per_copy]
        stop_all(procs)
    finally:
        end_all(procs)
    return out


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
        reports = neuronperf.torch.benchmark(
            spec["path"],
            [build_inputs(spec["inputs"], seed)],
            batch_sizes=[spec["batch_size"]],
            n_models=n_models,
            workers_per_model=workers,
            duration=max(1, round(duration)),
        )
        path = result_path.with_name(result_path.name.removesuffix(".json") + ".neuronperf.json")
        neuronperf.write_json(reports, filename=str(path))
        print(f"[bench] neuronperf report: {path}", flush=True)
        return str(path)
    except Exception as e:  # noqa: BLE001 - the cross-check is optional by design
        print(f"[bench] warning: neuronperf cross-check failed: {type(e).__name__}: {e}", flush=True)
        return None


# ---------------------------------------------------------------- the result


def out_path(args, spec):
    stem = Path(spec["path"]).stem if spec["kind"] == "pt" else spec["func"]
    if args.out:
        return Path(args.out)
    if args.out_dir:
        return Path(args.out_dir) / f"{stem}.bench.json"
    if spec["kind"] == "pt":
        return Path(spec["path"]).with_name(stem + ".bench.json")
    return Path("bench.json")


def run(args, error):
    resolved = [resolve_model(text, args, error) for text in args.model]
    kinds = {spec["target"] for spec, _ in resolved}
    if len(kinds) > 1:
        error(
            f"argument MODEL: the models are for different targets ({', '.join(sorted(kinds))}); one run measures one target"
        )
    target = resolved[0][0]["target"]
    n = args.n_models or targets.device_count(target)
    if args.window is None:
        args.window = 1.0
        if args.mode == "open" and args.rate * args.window < OPEN_WINDOW_ARRIVALS:
            args.window = math.ceil(OPEN_WINDOW_ARRIVALS / args.rate)
            print(
                f"[bench] open loop at {args.rate:g}/s: {args.window:g} s windows, so each holds about "
                f"{OPEN_WINDOW_ARRIVALS:,} arrivals",
                flush=True,
            )
    started_at = utc_now()
    base_id = args.run_id or new_run_id()
    run_ids = [base_id] if len(resolved) == 1 else [f"{base_id}.{i}"[:64] for i in range(1, len(resolved) + 1)]
    system = sysinfo.system_info(args.instance_type)
    paths = [out_path(args, spec) for spec, _ in resolved]
    args.loadgen_logs = paths[0].with_name(paths[0].name.removesuffix(".json") + ".loadgen")
    for (spec, _), text in zip(resolved, args.model):
        print(
            f"[bench] {text}: target {target}, batch {spec['batch_size']}, {n} model(s) x {args.workers} worker(s), "
            f"{args.mode} loop"
            + (f" at {args.rate:g} queries/s" if args.rate else "")
            + f", {args.repeats} trial(s)"
            + (", measured by MLPerf LoadGen" if args.harness == "loadgen" else ""),
            flush=True,
        )
    specs = [spec for spec, _ in resolved]
    measured = run_inflab(args, specs, n) if args.harness == "inflab" else run_loadgen(args, specs, n)
    results = []
    for (spec, manifest), text, run_id, path, m in zip(resolved, args.model, run_ids, paths, measured):
        result = build_result(args, text, spec, manifest, n, run_id, started_at, system, m)
        write_json(path, result.to_dict())  # before the cross-check, which may take long or fail
        print_summary(result, args, path)
        results.append((spec, path, result))
    if not args.no_neuronperf:
        for spec, path, result in results:
            checked = run_neuronperf(spec, n, args.workers, result.duration_s / max(1, result.repeats), args.seed, path)
            if checked:
                write_json(path, dataclasses.replace(result, neuronperf=checked).to_dict())
    return [r for _, _, r in results]


def write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)  # a reader never sees half a result


def print_summary(r, args, out_path):
    if r.harness == "loadgen":
        why = f"MLPerf LoadGen: {r.loadgen['validity']}" + (
            f" ({'; '.join(r.loadgen['reasons'])})" if r.loadgen["reasons"] else ""
        )
    elif r.repeats > 1:
        why = (
            "stable (the median's 95% CI within 5%)" if r.stable else "not stable: the trials disagree by more than 5%"
        )
    else:
        why = (
            f"stable (last {STABLE_WINDOWS} windows within {args.stability:.0%})"
            if r.stable
            else f"max duration {args.max_duration:g} s reached before stability"
        )
    ci = r.throughput_ci95
    lines = [
        f"model       {r.name or r.model_filename} ({r.model_filename})",
        f"setup       {r.target}, batch {r.batch_size}, {r.n_models} model(s) x {r.workers_per_model} "
        f"worker(s), {r.mode} loop"
        + (f" at {r.target_rate:g} queries/s" if r.target_rate else "")
        + f"; harness {r.harness}",
        f"throughput  {r.throughput_avg:,.1f} samples/s"
        + (f" (95% CI {ci[0]:,.1f} – {ci[1]:,.1f})" if ci else "")
        + f", median of {r.repeats} trial(s); {r.total_infs:,} queries in {r.duration_s:.1f} s",
        f"latency     p50 {_ms(r.latency_ms_p50)}  p90 {_ms(r.latency_ms_p90)}  "
        f"p99 {_ms(r.latency_ms_p99)}  max {_ms(r.latency_ms_max)}",
        f"stopped     {why}",
        f"quality     {r.quality}"
        + (
            ""
            if r.interference is None
            else f" (other processes took {r.interference:.0%} of the host's CPU while it measured)"
        ),
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
