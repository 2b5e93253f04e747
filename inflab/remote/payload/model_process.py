#!/usr/bin/env python3
"""One model copy of the benchmark harness, in its own process (started by ``bench.py``).

    python3 model_process.py CONFIG_JSON

It pins itself (``targets.apply_pinning``), loads every model it is given (one import of the
runtime for all of them: the sweep measures fp32 and int8 in one process), each with its pool
of distinct inputs (``inputs.py``), starts W worker threads — each sizes its own intra-op team
once — and says "loaded". Then, trial by trial, as the parent says:

- ``warm M``: every worker warms model M up (``warmup`` calls) and waits; then "ready".
- ``go``: the workers call model M, each call on a batch drawn at random from its pool
  (drawn outside the timed region), and the latencies that completed stream to the parent
  window by window ("window" messages) until ``stop``; then "done".
- ``quit`` or the end of stdin: leave.

The protocol: control words on stdin; one JSON object per line on stdout (``loaded``,
``ready``, ``window``, ``done``, ``error``). fd 1 is turned into stderr for everything else,
so nothing the model or its runtime prints can corrupt the protocol.
"""

import base64
import contextlib
import json
import os
import queue
import random
import signal
import sys
import threading
import time
import traceback
from array import array

try:
    from . import inputs as input_pool, targets
except ImportError:  # run as a script on the host
    import inputs as input_pool
    import targets

FINISH_TIMEOUT_S = 5  # a worker stuck in a device call this long after stop is left behind


def build_inputs(described, seed):
    """One batch of tensors from a manifest's input list (the first of the pool's batches)."""
    return input_pool.build_pool(described, seed, size=1)[0]


def load_model(spec, seed):
    """(model, pool) in a model process, after pinning: ``pool`` is a list of input tuples.
    A ``py:`` model's function returns (callable, inputs): one tuple of inputs, or a list of them."""
    target = spec["target"]
    if spec["kind"] == "py":
        import importlib.util

        module_spec = importlib.util.spec_from_file_location("inflab_bench_model", spec["file"])
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        model, given = getattr(module, spec["func"])(spec["batch_size"], target)
        pool = [tuple(x) for x in given] if isinstance(given, list) else [tuple(given)]
    else:
        model = targets.load(target, spec["path"])
        pool = [targets.to_device(target, x) for x in input_pool.build_pool(spec["inputs"], seed, spec.get("pool"))]
    return model, pool


def set_intra_op_threads(threads):
    """Size this thread's intra-op (OpenMP) team, when torch is loaded and a size is given.
    Each thread that runs the model must call it: OpenMP keeps the team size per thread, so
    ``torch.set_num_threads`` in one thread leaves another thread's team at the default — all
    of the process's cores — and W workers would then run W x cores threads."""
    torch = sys.modules.get("torch")
    if torch is not None and threads:
        torch.set_num_threads(threads)


class Trial:
    """One trial of one model: what its workers share."""

    def __init__(self, model, pool, target, warmup, workers, seed, open_loop):
        self.model, self.pool, self.target, self.warmup, self.seed = model, pool, target, warmup, seed
        self.go = threading.Event()
        self.running = [True]  # a list is cheaper to test per call than an Event
        self.arrivals = queue.SimpleQueue() if open_loop else None
        self.warmed = [threading.Event() for _ in range(workers)]
        self.finished = [threading.Event() for _ in range(workers)]
        self.latencies = [array("q") for _ in range(workers)]
        self.warmup_ns = [[] for _ in range(workers)]


class Worker(threading.Thread):
    """Runs the trials it is handed, one after the other. Latencies (ns) go to an array only
    this thread appends to; the reporter takes entries off its front — safe under the GIL, as
    both are single C calls."""

    def __init__(self, index, threads):
        super().__init__(daemon=True)
        self.index, self.threads = index, threads
        self.trials = queue.SimpleQueue()
        self.error = None

    def run(self):
        torch = sys.modules.get("torch")  # grad mode is per thread: each worker turns it off
        try:
            set_intra_op_threads(self.threads)
            with torch.inference_mode() if torch is not None else contextlib.nullcontext():
                while True:
                    trial = self.trials.get()
                    if trial is None:
                        return
                    try:
                        self._run(trial)
                    finally:
                        trial.warmed[self.index].set()
                        trial.finished[self.index].set()
        except BaseException as e:  # reported by the process's main thread
            self.error = e

    def _run(self, trial):
        i = self.index
        model, pool, sync, target = trial.model, trial.pool, targets.synchronize, trial.target
        clock, record = time.perf_counter_ns, trial.latencies[i].append
        draw, n = random.Random(trial.seed * 64 + i).randrange, len(pool)
        for _ in range(trial.warmup):
            x = pool[draw(n)]
            t0 = clock()
            model(*x)
            sync(target)
            trial.warmup_ns[i].append(clock() - t0)
        trial.warmed[i].set()
        trial.go.wait()
        running = trial.running
        if trial.arrivals is None:  # closed loop: the next call starts when the last one ends
            while running[0]:
                x = pool[draw(n)]
                t0 = clock()
                model(*x)
                sync(target)
                record(clock() - t0)
        else:  # open loop: serve scheduled arrivals; latency includes the wait in the queue
            get = trial.arrivals.get
            while True:
                scheduled = get()
                if scheduled is None or not running[0]:  # a backlog left at stop is dropped
                    break
                x = pool[draw(n)]
                model(*x)
                sync(target)
                record(clock() - scheduled)


def schedule_arrivals(arrivals, rate, seed, start_ns, stop):
    """Poisson arrivals: exponential gaps added to a running schedule, so a late wake-up
    queues an arrival at once with its original time instead of shifting the later ones."""
    rng, due = random.Random(seed), start_ns
    while not stop.is_set():
        due += int(rng.expovariate(rate) * 1e9)
        delay = (due - time.perf_counter_ns()) / 1e9
        if delay > 0 and stop.wait(delay):
            break
        arrivals.put(due)


def child_main(config):
    """One model copy: load, then warm up / measure / stop, trial by trial, as told."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent cleans up
    # The protocol gets its own copy of stdout and fd 1 becomes stderr, so whatever the model
    # or its runtime prints cannot corrupt the protocol.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(**msg):  # only the main thread sends
        proto.write(json.dumps(msg, separators=(",", ":")) + "\n")
        proto.flush()

    control = queue.SimpleQueue()

    def read_control():  # end of input means the parent is gone: leave at once
        for line in sys.stdin:
            control.put(line.strip())
        os._exit(3)

    threading.Thread(target=read_control, daemon=True).start()
    specs, n_workers = config["specs"], config["workers"]
    target = specs[0]["target"]
    try:
        targets.apply_pinning(target)
        loaded, load_ms = [], []
        for spec in specs:
            t0 = time.perf_counter_ns()
            loaded.append(load_model(spec, config["seed"]))
            load_ms.append((time.perf_counter_ns() - t0) / 1e6)
        pool = [Worker(i, config["threads"]) for i in range(n_workers)]
        for w in pool:
            w.start()
        send(event="loaded", pid=os.getpid(), load_ms=load_ms, pool=[len(p) for _, p in loaded])
        trial, count = None, 0
        while True:
            word = control.get()
            if word.startswith("warm "):
                count += 1
                model, inputs = loaded[int(word.split()[1])]
                trial = Trial(
                    model,
                    inputs,
                    target,
                    config["warmup"],
                    n_workers,
                    seed=(config["seed"] * 1000 + config["index"]) * 1000 + count,
                    open_loop=bool(config["rate"]),
                )
                for w in pool:
                    w.trials.put(trial)
                for w, warmed in zip(pool, trial.warmed):
                    while not warmed.wait(0.5):
                        _check(pool)
                _check(pool)
                warm = [ns for each in trial.warmup_ns for ns in each]
                send(event="ready", warmup_ms=sum(warm) / len(warm) / 1e6 if warm else None)
            elif word == "go" and trial is not None:
                _measure(trial, pool, config, control, send, count)
                trial = None
                send(event="done")
            elif word == "quit":
                break
        for w in pool:
            w.trials.put(None)
    except BaseException as e:
        traceback.print_exc()
        send(event="error", message=f"{type(e).__name__}: {e}")
        sys.stderr.flush()
        os._exit(1)
    sys.stderr.flush()
    os._exit(0)  # do not wait for a worker stuck in a device call


def _check(pool):
    for w in pool:
        if w.error:
            raise w.error


def _measure(trial, pool, config, control, send, count):
    """Start the trial's workers and stream its windows until "stop"; then end the trial."""
    stop = threading.Event()
    trial.go.set()
    start = time.perf_counter_ns()
    if trial.arrivals is not None:
        seed = (config["seed"] * 1000 + config["index"]) * 1000 + count  # each copy and trial its own stream
        threading.Thread(
            target=schedule_arrivals, args=(trial.arrivals, config["rate"], seed, start, stop), daemon=True
        ).start()
    window_ns, k, stopped = int(config["window"] * 1e9), 0, False
    while True:
        k += 1
        while True:  # until the window's end, or "stop"
            remaining = (start + k * window_ns - time.perf_counter_ns()) / 1e9
            if remaining <= 0:
                break
            try:
                stopped = control.get(timeout=remaining) == "stop"
            except queue.Empty:
                break
            if stopped:
                break
        if stopped:
            break
        now, lat = time.perf_counter_ns(), array("q")
        _check(pool)
        for arr in trial.latencies:
            n = len(arr)
            lat.extend(arr[:n])
            del arr[:n]
        # int64 ns in base64: a tenth of the cost of a JSON list of numbers, which matters
        # when the model takes microseconds and this thread competes for the GIL
        send(event="window", k=k, t=(now - start) / 1e9, n=len(lat), lat=base64.b64encode(lat.tobytes()).decode())
    stop.set()
    trial.running[0] = False
    for _ in pool if trial.arrivals is not None else ():  # wake idle open-loop workers
        trial.arrivals.put(None)
    deadline = time.monotonic() + FINISH_TIMEOUT_S
    for finished in trial.finished:
        finished.wait(max(0.0, deadline - time.monotonic()))
    _check(pool)


if __name__ == "__main__":
    child_main(json.loads(sys.argv[1]))
