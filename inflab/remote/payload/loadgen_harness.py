#!/usr/bin/env python3
"""The cross-check harness: the same models measured by MLPerf LoadGen (``bench.py --harness loadgen``).

    python3 loadgen_harness.py CONFIG_JSON      (started by bench.py; speaks its child protocol)

MLPerf LoadGen (``mlcommons-loadgen`` on PyPI, imported as ``mlperf_loadgen``) is the
reference harness of MLPerf Inference: it generates the queries, times them and judges the
run VALID or INVALID. Here it drives the same compiled model, loaded the way the benchmark
loads it (``model_process.load_model``), with the same copies, worker threads and intra-op
threads, so its row can be put beside inflab's own:

- A LoadGen *sample* is one batch of the compiled batch size, from the same pool of distinct
  inputs (``inputs.py``); LoadGen draws them in its own random order. Its samples/s are
  multiplied by the batch size, so throughput is per input like inflab's.
- Closed loop: **Offline** (every sample issued at once, the copies' workers take them as fast
  as they can) gives the throughput; **SingleStream** (one query at a time) gives the latency
  percentiles, per model call.
- Open loop (``--mode open --rate R``): **Server**, Poisson arrivals at R queries/s, gives
  both; latency from the scheduled arrival, with a latency target of
  ``max(1 s, 100 x the warm-up latency)`` (inflab's open loop has none).

Each trial runs its scenarios with LoadGen's own rules — ``min_duration_ms`` and
``min_query_count`` from ``--min-duration`` and ``--min-queries``, early stopping on the
latency percentiles — and reports LoadGen's verdict (``result_validity``, with its reasons:
min duration, min queries, early stopping, performance constraints, ``result_invalid_reason``),
its early-stopping estimates of p90 and p99, and the figures above, read from LoadGen's
``mlperf_log_detail.txt`` (its machine-readable ``:::MLLOG`` lines). LoadGen's logs stay in the
``--logs`` directory. The interference (``interference.py``) is measured around each scenario.

Messages on stdout, one JSON object per line: ``loaded``, ``log``, ``trial``, ``finished``,
``error``; everything else the runtime prints goes to stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import sys
import threading
import time
import traceback

try:
    from . import interference, targets
    from .model_process import load_model, set_intra_op_threads
except ImportError:  # run as a script on the host
    import interference
    import targets
    from model_process import load_model, set_intra_op_threads

PERCENTILE_KEYS = {"p50": "50.00", "p90": "90.00", "p95": "95.00", "p99": "99.00", "p99_9": "99.90"}
OFFLINE_HEADROOM = 1.5  # expected QPS over the warm-up's estimate: too low a guess makes Offline INVALID
MLLOG = ":::MLLOG "
ESTIMATE = re.compile(r"Early stopping (\d+(?:\.\d+)?)th percentile estimate: (\d+)")


def read_detail(path: str) -> dict:
    """The ``key: value`` pairs of LoadGen's ``mlperf_log_detail.txt`` (the last of each key)."""
    out = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith(MLLOG):
                try:
                    entry = json.loads(line[len(MLLOG) :])
                except ValueError:
                    continue
                out[entry.get("key")] = entry.get("value")
    return out


def verdict(scenario: str, detail: dict) -> dict:
    """LoadGen's verdict of one scenario run: VALID/INVALID, the reasons, its checks and its
    early-stopping estimates (ms)."""
    checks = {
        "min_duration_met": detail.get("result_min_duration_met"),
        "min_queries_met": detail.get("result_min_queries_met"),
        "early_stopping_met": detail.get("early_stopping_met"),
    }
    if "result_perf_constraints_met" in detail:
        checks["perf_constraints_met"] = detail["result_perf_constraints_met"]
    words = {
        "min_duration_met": "min duration not met",
        "min_queries_met": "min query count not met",
        "early_stopping_met": "early stopping not satisfied",
        "perf_constraints_met": "latency target not met",
    }
    reasons = [f"{scenario}: {words[k]}" for k, v in checks.items() if v is False]
    if detail.get("result_invalid_reason"):
        reasons.append(f"{scenario}: {str(detail['result_invalid_reason']).strip()}")
    text = str(detail.get("early_stopping_result") or "")
    estimates = {f"p{float(p):g}".replace(".", "_"): int(ns) / 1e6 for p, ns in ESTIMATE.findall(text)}
    return {
        "scenario": scenario,
        "validity": detail.get("result_validity", "INVALID"),
        "reasons": reasons,
        **checks,
        "early_stopping": " ".join(text.replace("*", "").split()),
        "early_stopping_ms": estimates,
        "query_count": detail.get("result_query_count"),
    }


def _inference_mode():
    """torch's inference mode in this thread, when torch is loaded (a ``py:`` test model needs none)."""
    torch = sys.modules.get("torch")
    return torch.inference_mode() if torch is not None else contextlib.nullcontext()


class Sut:
    """The system under test: the copies' worker threads take LoadGen's samples from one queue."""

    def __init__(self, lg, copies, workers, threads, target):
        self.lg, self.models, self.target = lg, copies, target
        self.work: queue.SimpleQueue = queue.SimpleQueue()
        self.pool: list = []
        self.completed = 0
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._worker, args=(i % len(copies), threads), daemon=True)
            for i in range(len(copies) * workers)
        ]
        for t in self.threads:
            t.start()
        self.handle = lg.ConstructSUT(self.issue, self.flush)

    def issue(self, samples) -> None:
        for s in samples:
            self.work.put((s.id, s.index))

    def flush(self) -> None:
        pass

    def _worker(self, model_index, threads) -> None:
        set_intra_op_threads(threads)
        lg, sync = self.lg, targets.synchronize
        with _inference_mode():
            while True:
                item = self.work.get()
                if item is None:
                    return
                sample_id, index = item
                try:
                    self.models[model_index](*self.pool[index])
                    sync(self.target)
                except BaseException as e:  # LoadGen waits for every sample: answer it, and report the error
                    self.errors.append(e)
                lg.QuerySamplesComplete([lg.QuerySampleResponse(sample_id, 0, 0)])
                with self.lock:
                    self.completed += 1

    def use(self, models, pool) -> None:
        self.models, self.pool = models, pool

    def close(self) -> None:
        for _ in self.threads:
            self.work.put(None)
        self.lg.DestroySUT(self.handle)


def warm(models, pool, workers, threads, count, target) -> float | None:
    """``count`` calls per worker on every copy, in parallel like the measurement; their mean ms."""
    times: list[float] = []

    def run(model):
        set_intra_op_threads(threads)
        with _inference_mode():
            for i in range(count):
                t0 = time.perf_counter_ns()
                model(*pool[i % len(pool)])
                targets.synchronize(target)
                times.append((time.perf_counter_ns() - t0) / 1e6)

    ts = [threading.Thread(target=run, args=(m,)) for m in models for _ in range(workers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(times) / len(times) if times else None


def run_scenario(lg, sut, pool_size, scenario, config, estimate_ms, seed, outdir) -> tuple[dict, dict, float, object]:
    """One LoadGen test: (detail, verdict, seconds, interference share)."""
    ts = lg.TestSettings()
    ts.scenario = getattr(lg.TestScenario, scenario)
    ts.mode = lg.TestMode.PerformanceOnly
    ts.min_duration_ms = int(config["min_duration"] * 1000)
    ts.max_duration_ms = int(config["max_duration"] * 1000)
    ts.min_query_count = int(config["min_queries"])
    ts.qsl_rng_seed = ts.sample_index_rng_seed = ts.schedule_rng_seed = seed
    parallel = len(sut.threads)
    per_second = parallel * 1000 / max(estimate_ms, 1e-3)
    if scenario == "Offline":
        ts.offline_expected_qps = per_second * OFFLINE_HEADROOM
    elif scenario == "SingleStream":
        ts.single_stream_expected_latency_ns = int(estimate_ms * 1e6)
    else:
        ts.server_target_qps = config["rate"]
        ts.server_target_latency_ns = int(max(1.0, estimate_ms * 100 / 1000) * 1e9)
    os.makedirs(outdir, exist_ok=True)
    log = lg.LogSettings()
    log.log_output.outdir = outdir
    log.log_output.copy_summary_to_stdout = False
    log.enable_trace = False
    qsl = lg.ConstructQSL(pool_size, pool_size, lambda samples: None, lambda samples: None)
    sampler = interference.Sampler()
    before, t0, done = sampler.sample(), time.perf_counter(), sut.completed
    try:
        lg.StartTestWithLogSettings(sut.handle, qsl, ts, log)
    finally:
        lg.DestroyQSL(qsl)
    seconds, after = time.perf_counter() - t0, sampler.sample()
    if sut.errors:
        raise sut.errors[0]
    detail = read_detail(os.path.join(outdir, "mlperf_log_detail.txt"))
    judged = verdict(scenario, detail)
    judged["samples"] = sut.completed - done  # model calls (an Offline query holds them all)
    return detail, judged, seconds, interference.share(before, after)


def trial_record(index, batch, runs, throughput_key) -> tuple[dict, dict, dict]:
    """(Trial fields, extremes, LoadGen verdicts) from one trial's scenario runs
    [(scenario, detail, verdict, seconds, share)]: throughput from ``throughput_key``'s
    scenario, latencies from the last (SingleStream or Server)."""
    by = {r[0]: r for r in runs}
    _, tdetail, _, _, _ = by[throughput_key]
    _, ldetail, _, _, _ = runs[-1]
    per_second = tdetail.get("result_samples_per_second", tdetail.get("result_completed_samples_per_sec", 0.0))
    share = interference.combine([r[4] for r in runs])
    seconds = sum(r[3] for r in runs)
    lat = {
        f"latency_ms_{k}": ldetail.get(f"result_{v}_percentile_latency_ns", 0) / 1e6 for k, v in PERCENTILE_KEYS.items()
    }
    valid = all(r[2]["validity"] == "VALID" for r in runs)
    fields = {
        "index": index,
        "throughput": float(per_second) * batch,
        **lat,
        "queries": sum(int(r[2].get("samples") or 0) for r in runs),
        "duration_s": seconds,
        "stop_reason": "VALID" if valid else "INVALID",
        "interference": share.interference,
        "steal": share.steal,
        "loadgen": {
            "validity": "VALID" if valid else "INVALID",
            "reasons": [x for r in runs for x in r[2]["reasons"]],
            "scenarios": [r[2] for r in runs],
        },
    }
    fields["latency_ms_p99.9"] = fields.pop("latency_ms_p99_9")
    extremes = {
        "min_ms": ldetail.get("result_min_latency_ns", 0) / 1e6,
        "max_ms": ldetail.get("result_max_latency_ns", 0) / 1e6,
        "mean_ms": ldetail.get("result_mean_latency_ns", 0) / 1e6,
    }
    return fields, extremes, {"version": ldetail.get("loadgen_version")}


def child_main(config) -> None:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(**msg):
        proto.write(json.dumps(msg, separators=(",", ":")) + "\n")
        proto.flush()

    def say(line):
        send(event="log", line=f"loadgen: {line}")

    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(3)), daemon=True).start()  # parent gone: leave
    try:
        try:
            import mlperf_loadgen as lg
        except ImportError as e:
            raise RuntimeError(
                "MLPerf LoadGen is not installed here (pip install mlcommons-loadgen; the images "
                f"and the sandbox's job environment have it): {e}"
            ) from None
        specs, n = config["specs"], config["n_models"]
        target = specs[0]["target"]
        targets.apply_pinning(target)
        loaded, load_ms = [], []
        for spec in specs:
            t0 = time.perf_counter_ns()
            copies = [load_model(spec, config["seed"]) for _ in range(n)]
            load_ms.append((time.perf_counter_ns() - t0) / 1e6 / n)
            loaded.append(([m for m, _ in copies], copies[0][1]))
        warm_ms = [
            warm(models, pool, config["workers"], config["threads"], config["warmup"], target)
            for models, pool in loaded
        ]
        send(
            event="loaded", pid=os.getpid(), load_ms=load_ms, pool=[len(pool) for _, pool in loaded], warmup_ms=warm_ms
        )
        sut = Sut(lg, loaded[0][0], config["workers"], config["threads"], target)
        scenarios = ["Server"] if config.get("rate") else ["Offline", "SingleStream"]
        try:
            for t in range(1, config["repeats"] + 1):
                for m, (models, pool) in enumerate(loaded):
                    sut.use(models, pool)
                    estimate = (
                        warm(models, pool, config["workers"], config["threads"], config["warmup"], target)
                        or warm_ms[m]
                        or 1.0
                    )
                    runs = []
                    for scenario in scenarios:
                        outdir = os.path.join(config["logs"], f"model{m + 1}-trial{t}-{scenario}")
                        detail, v, seconds, share = run_scenario(
                            lg, sut, len(pool), scenario, config, estimate, config["seed"] * 100 + t, outdir
                        )
                        runs.append((scenario, detail, v, seconds, share))
                        say(
                            f"model {m + 1} trial {t}/{config['repeats']} {scenario}: {v['validity']}"
                            + (f" ({'; '.join(v['reasons'])})" if v["reasons"] else "")
                            + f", {seconds:.1f} s, other processes took {share.interference:.0%} of the CPU"
                        )
                    fields, extremes, verdicts = trial_record(t, specs[m]["batch_size"], runs, scenarios[0])
                    send(event="trial", model=m, trial=_trial_kwargs(fields), loadgen=verdicts, **extremes)
        finally:
            sut.close()
        send(event="finished")
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which fails the run with it
        traceback.print_exc()
        send(event="error", message=f"{type(e).__name__}: {e}")
        sys.stderr.flush()
        os._exit(1)
    sys.stderr.flush()
    os._exit(0)


def _trial_kwargs(fields: dict) -> dict:
    """The Trial's keyword arguments (its attribute names, not its JSON keys)."""
    out = dict(fields)
    out["latency_ms_p99_9"] = out.pop("latency_ms_p99.9")
    return out


if __name__ == "__main__":
    child_main(json.loads(sys.argv[1]))
