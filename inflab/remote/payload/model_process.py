#!/usr/bin/env python3
"""One model copy of the benchmark harness, in its own process (started by ``bench.py``).

    python3 model_process.py CONFIG_JSON

It pins itself (``targets.apply_pinning``), loads the model, starts W worker threads — each
sizes its own intra-op team, warms up and waits — says "ready" and, on "go" from the parent,
streams the latencies that completed, window by window, until "stop". The protocol: control
words on stdin; one JSON object per line on stdout (``ready``, ``window``, ``done``,
``error``). fd 1 is turned into stderr for everything else, so nothing the model or its
runtime prints can corrupt the protocol.
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
    from . import targets
except ImportError:  # run as a script on the host
    import targets


def build_inputs(described, seed):
    """Tensors from a manifest's input list: ints uniform in [low, high), floats standard normal."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    tensors = []
    for item in described:
        dtype, shape = getattr(torch, item["dtype"]), tuple(item["shape"])
        if dtype.is_floating_point:
            tensors.append(torch.randn(shape, generator=gen, dtype=dtype))
        else:
            low, high = int(item.get("low", 0)), int(item.get("high", 2))
            tensors.append(torch.randint(low, high, shape, generator=gen, dtype=dtype))
    return tuple(tensors)


def load_model(spec, seed):
    """(model, inputs) in a model process, after pinning."""
    target = spec["target"]
    if spec["kind"] == "py":
        import importlib.util

        module_spec = importlib.util.spec_from_file_location("inflab_bench_model", spec["file"])
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        model, inputs = getattr(module, spec["func"])(spec["batch_size"], target)
        inputs = tuple(inputs)
    else:
        model = targets.load(target, spec["path"])
        inputs = targets.to_device(target, build_inputs(spec["inputs"], seed))
    return model, inputs


def set_intra_op_threads(threads):
    """Size this thread's intra-op (OpenMP) team, when torch is loaded and a size is given.
    Each thread that runs the model must call it: OpenMP keeps the team size per thread, so
    ``torch.set_num_threads`` in one thread leaves another thread's team at the default — all
    of the process's cores — and W workers would then run W x cores threads."""
    torch = sys.modules.get("torch")
    if torch is not None and threads:
        torch.set_num_threads(threads)


class Worker(threading.Thread):
    """Warms up, waits for go, then calls the model until ``running[0]`` turns false (a list
    is cheaper to test per call than an Event). Latencies (ns) go to an array only this thread
    appends to; the reporter takes entries off its front — safe under the GIL, as both are
    single C calls."""

    def __init__(self, model, inputs, target, threads, warmup, go, running, arrivals=None):
        super().__init__(daemon=True)
        self.model, self.inputs, self.target, self.threads, self.warmup = model, inputs, target, threads, warmup
        self.go, self.running, self.arrivals = go, running, arrivals
        self.latencies, self.warmup_ns, self.error = array("q"), [], None
        self.warmed = threading.Event()

    def run(self):
        torch = sys.modules.get("torch")  # grad mode is per thread: each worker turns it off
        try:
            set_intra_op_threads(self.threads)
            with torch.inference_mode() if torch is not None else contextlib.nullcontext():
                self._run()
        except BaseException as e:  # reported by the process's main thread
            self.error = e
            self.warmed.set()

    def _run(self):
        model, inputs, target, sync = self.model, self.inputs, self.target, targets.synchronize
        clock, record = time.perf_counter_ns, self.latencies.append
        for _ in range(self.warmup):
            t0 = clock()
            model(*inputs)
            sync(target)
            self.warmup_ns.append(clock() - t0)
        self.warmed.set()
        self.go.wait()
        running = self.running
        if self.arrivals is None:  # closed loop: the next call starts when the last one ends
            while running[0]:
                t0 = clock()
                model(*inputs)
                sync(target)
                record(clock() - t0)
        else:  # open loop: serve scheduled arrivals; latency includes the wait in the queue
            get = self.arrivals.get
            while True:
                scheduled = get()
                if scheduled is None or not running[0]:  # a backlog left at stop is dropped
                    break
                model(*inputs)
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
    """One model copy: load, warm up, report ready; on go, stream windows until stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent cleans up
    # The protocol gets its own copy of stdout and fd 1 becomes stderr, so whatever the model
    # or its runtime prints cannot corrupt the protocol.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(**msg):  # only the main thread sends
        proto.write(json.dumps(msg, separators=(",", ":")) + "\n")
        proto.flush()

    go, stop = threading.Event(), threading.Event()

    def read_control():  # "go", "stop"; end of input means the parent is gone: leave at once
        for line in sys.stdin:
            word = line.strip()
            if word == "go":
                go.set()
            elif word == "stop":
                stop.set()
        os._exit(3)

    threading.Thread(target=read_control, daemon=True).start()
    spec, workers = config["spec"], config["workers"]
    target = spec["target"]
    try:
        targets.apply_pinning(target)
        t0 = time.perf_counter_ns()
        model, inputs = load_model(spec, config["seed"])
        load_ms = (time.perf_counter_ns() - t0) / 1e6
        arrivals, running = (queue.SimpleQueue() if config["rate"] else None), [True]
        pool = [Worker(model, inputs, target, config["threads"], config["warmup"], go, running, arrivals)
                for _ in range(workers)]
        for w in pool:
            w.start()
        for w in pool:
            w.warmed.wait()
            if w.error:
                raise w.error
        warm = [ns for w in pool for ns in w.warmup_ns]
        send(event="ready", pid=os.getpid(), load_ms=load_ms, warmup_ms=sum(warm) / len(warm) / 1e6 if warm else None)
        go.wait()
        start = time.perf_counter_ns()
        if arrivals is not None:
            seed = config["seed"] * 1000 + config["index"]  # each copy its own, reproducible stream
            threading.Thread(target=schedule_arrivals, args=(arrivals, config["rate"], seed, start, stop),
                             daemon=True).start()
        window_ns, k = int(config["window"] * 1e9), 0
        while True:
            k += 1
            if stop.wait(max(0.0, (start + k * window_ns - time.perf_counter_ns()) / 1e9)):
                break
            now, lat = time.perf_counter_ns(), array("q")
            for w in pool:
                if w.error:
                    raise w.error
                n = len(w.latencies)
                lat.extend(w.latencies[:n])
                del w.latencies[:n]
            # int64 ns in base64: a tenth of the cost of a JSON list of numbers, which matters
            # when the model takes microseconds and this thread competes for the GIL
            send(event="window", k=k, t=(now - start) / 1e9, n=len(lat), lat=base64.b64encode(lat.tobytes()).decode())
        running[0] = False
        for _ in pool if arrivals is not None else ():  # wake idle open-loop workers
            arrivals.put(None)
        for w in pool:
            w.join(timeout=5)
        send(event="done")
    except BaseException as e:
        traceback.print_exc()
        send(event="error", message=f"{type(e).__name__}: {e}")
        sys.stderr.flush()
        os._exit(1)
    sys.stderr.flush()
    os._exit(0)  # do not wait for a worker stuck in a device call


if __name__ == "__main__":
    child_main(json.loads(sys.argv[1]))
