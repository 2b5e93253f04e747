"""Tiny models for the harness tests, loaded as ``py:tests/data/harness_models.py:FUNC``.

Each ``FUNC(batch_size, target)`` returns ``(callable, inputs)``. They sleep instead of
computing, so their speed is known and they leave the two CPU cores to the harness.
Standard library only: a model process running them never imports torch.
"""

import json
import os
import time


def _sleeper(seconds):
    def call(*inputs):
        time.sleep(seconds)
        return inputs

    return call


def steady(batch_size, target):
    """About 2 ms a call, every call."""
    return _sleeper(0.002), (batch_size,)


def slow(batch_size, target):
    """About 20 ms a call."""
    return _sleeper(0.020), (batch_size,)


def service10(batch_size, target):
    """About 10 ms a call: at most ~100 queries/s from one worker."""
    return _sleeper(0.010), (batch_size,)


def shifting(batch_size, target):
    """Fast (1 ms) and slow (6 ms) in turns of 0.5 s, so throughput never settles."""

    def call(*inputs):
        phase = int(time.monotonic() / 0.5) % 2
        time.sleep(0.001 if phase == 0 else 0.006)

    return call, ()


def _record(**extra):
    directory = os.environ.get("HARNESS_RECORD_DIR")
    if directory:
        with open(os.path.join(directory, f"{os.getpid()}.json"), "w") as f:
            json.dump({"pid": os.getpid(), **extra}, f)


def recorder(batch_size, target):
    """Writes this process's pid, pinning env and CPU affinity to $HARNESS_RECORD_DIR/<pid>.json."""
    _record(
        **{
            "NEURON_RT_VISIBLE_CORES": os.environ.get("NEURON_RT_VISIBLE_CORES"),
            "INFLAB_CPU_CORES": os.environ.get("INFLAB_CPU_CORES"),
            "affinity": sorted(os.sched_getaffinity(0)),
            "batch_size": batch_size,
            "target": target,
        }
    )
    return _sleeper(0.002), ()


def broken(batch_size, target):
    """Fails while loading, the way a model with a missing file would."""
    raise RuntimeError("weights file is corrupt (test)")


def crashes_later(batch_size, target):
    """Model copy 0 loads and warms up fine, then dies (hard) about 0.1 s into the measurement;
    the others keep going. Records its pid like :func:`recorder`."""
    _record()
    calls = [0]
    doomed = os.environ.get("INFLAB_CPU_CORES", "0").split(",")[0] == "0"

    def call(*inputs):
        calls[0] += 1
        time.sleep(0.01)
        if doomed and calls[0] > 30:
            print("segfault in the runtime (test)", flush=True)  # goes to stderr, not the protocol
            os._exit(139)

    return call, ()
