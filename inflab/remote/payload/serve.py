#!/usr/bin/env python3
"""Start TorchServe on this host's loopback with one model, in the foreground.

    python3 serve.py --store serve/model-store --model MODEL --target T --workers N [--workers-per-copy W]
        --batch-size B --max-batch-delay MS --dir serve/run

Picks free loopback ports for the inference, management and metrics APIs (and gRPC's two),
writes ``<dir>/config.properties`` (every address on 127.0.0.1: the instance is reached over
SSH only) and ``<dir>/endpoints.json`` (the ports, the workers and their threads, for the steps),
then runs ``torchserve --foreground`` until it stops (a SIGTERM to the job's process group stops
both). Meanwhile it keeps ``<dir>/cpu.json`` — the CPU its process tree (TorchServe's frontend and
workers) has used, and when — so the load generator, in another container, can tell the
server's CPU from other processes' (``interference.py``).

Workers: ``--workers``, or by default one per NeuronCore / GPU; on a CPU the direct benchmark's
threads — its model copies (one per four cores) × ``--workers-per-copy`` workers, each with an
equal share of the cores as intra-op threads — so the served model runs as it was measured.
Token authorization stays on where TorchServe has it by default (0.11.1 and later): TorchServe
writes its keys to ``<dir>/key_file.json``; nothing here reads or prints them. The Neuron images
ship 0.11.0, whose token authorization needs a plugin: there the server's only guard is that it
listens on the instance's loopback, reached over SSH — said on screen, and in endpoints.json
(``token_auth``) for the clients. TorchServe keeps its pid file and its
workers' sockets in TMPDIR, so each server gets its own (a fresh short directory in the system's
temporary directory, named in ``<dir>/tmpdir``): two sessions on one host never collide.

The version that runs is the one installed (0.12.0 in the CPU/GPU images and the sandbox, 0.11.0 in
AWS's Neuron images); 0.12 is the project's last release (it is in limited maintenance).
Standard library only; exits 2 on bad arguments, 1 when TorchServe is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

try:
    from . import cmdline, interference, targets
    from .ports import free_ports
except ImportError:  # run as a script on the host
    import cmdline
    import interference
    import targets
    from ports import free_ports

LOOPBACK = "127.0.0.1"
RESPONSE_TIMEOUT_S = 120
TOKEN_EXPIRATION_MIN = 480  # a workshop day
TMP_PREFIX = "inflab-ts-"
LEDGER_S = 0.5  # how often cpu.json is written
LEDGER_REFRESH_S = 5.0  # how often the process tree is looked for again (workers restart rarely)


def say(msg: str) -> None:
    print(f"[serve] {msg}", flush=True)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def fresh_tmp(run: str) -> str:
    """A new private temporary directory for this server, the last one's removed. TorchServe keeps
    its pid file there and its workers' Unix sockets, whose paths must stay under 108 bytes — so
    it is a short one in the system's temporary directory, not under ``run``."""
    marker = os.path.join(run, "tmpdir")
    try:
        with open(marker) as f:
            last = f.read().strip()
        if os.path.basename(last).startswith(TMP_PREFIX) and os.path.dirname(last) == tempfile.gettempdir():
            shutil.rmtree(last, ignore_errors=True)
    except FileNotFoundError:
        pass
    tmp = tempfile.mkdtemp(prefix=TMP_PREFIX)
    with open(marker, "w") as f:
        f.write(tmp + "\n")
    return tmp


TOKEN_AUTH_SINCE = (0, 11, 1)  # token authorization on by default (0.11.0: only with a plugin)


def installed_version() -> tuple[tuple[int, ...], str]:
    """The TorchServe installed beside this Python: (version as numbers, as text); ((), "") if unknown."""
    from importlib import metadata

    try:
        text = metadata.version("torchserve")
    except metadata.PackageNotFoundError:
        return (), ""
    numbers = []
    for part in text.split(".")[:3]:
        digits = len(part) - len(part.lstrip("0123456789"))  # the leading digits: 0b2024 is 0
        numbers.append(int(part[:digits] or 0))
    return tuple(numbers), text


def token_auth_on(version: tuple[int, ...]) -> bool:
    """TorchServe ``version`` authorizes with tokens by default (an unknown version is taken to)."""
    return not version or version >= TOKEN_AUTH_SINCE


def properties(store: str, model: str, ports: dict, workers: int, batch: int, delay_ms: int) -> str:
    models = {
        model: {
            "1.0": {
                "defaultVersion": True,
                "marName": f"{model}.mar",
                "minWorkers": workers,
                "maxWorkers": workers,
                "batchSize": batch,
                "maxBatchDelay": delay_ms,
                "responseTimeout": RESPONSE_TIMEOUT_S,
            }
        }
    }
    lines = {
        "inference_address": f"http://{LOOPBACK}:{ports['inference']}",
        "management_address": f"http://{LOOPBACK}:{ports['management']}",
        "metrics_address": f"http://{LOOPBACK}:{ports['metrics']}",
        "grpc_inference_address": LOOPBACK,
        "grpc_management_address": LOOPBACK,
        "grpc_inference_port": ports["grpc_inference"],
        "grpc_management_port": ports["grpc_management"],
        "model_store": store,
        "load_models": f"{model}.mar",
        "models": json.dumps(models),
        "default_workers_per_model": workers,
        "disable_system_metrics": "true",
        "install_py_dep_per_model": "false",
        # The keys in key_file.json stop working after this long (TorchServe's default: an hour).
        "token_expiration_min": TOKEN_EXPIRATION_MIN,
    }
    return "".join(f"{k}={v}\n" for k, v in lines.items())


def workers_for(target: str, workers: int, per_copy: int) -> int:
    """TorchServe's workers: ``workers`` when given; else one per NeuronCore / GPU, and on a CPU
    the direct benchmark's copies x ``per_copy`` workers."""
    if workers:
        return workers
    return targets.device_count(target) * (max(1, per_copy) if target == "cpu" else 1)


def keep_ledger(path: str, stop: threading.Event) -> None:
    """Write the CPU ticks of this process's tree to ``path`` every ``LEDGER_S`` until ``stop``."""
    sampler, refreshed = interference.Sampler(), time.monotonic()
    while not stop.wait(LEDGER_S):
        if time.monotonic() - refreshed > LEDGER_REFRESH_S:
            sampler.refresh()
            refreshed = time.monotonic()
        try:
            ticks = sum(sampler.sample().tree.values())
            with open(path + ".tmp", "w") as f:
                json.dump({"ticks": ticks, "time": time.time(), "hz": interference.clock_ticks()}, f)
            os.replace(path + ".tmp", path)
        except (OSError, ValueError):
            continue  # a moment without /proc or disk: the next write catches up


def main(argv=None) -> int:
    p = cmdline.Parser(prog="serve.py", description="Start TorchServe on loopback with one model.")
    p.add_argument("--store", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--target", required=True, choices=targets.TARGETS)
    p.add_argument(
        "--workers",
        type=_positive,
        default=0,
        help="0: one per NeuronCore / GPU; CPU: the direct benchmark's copies x --workers-per-copy",
    )
    p.add_argument(
        "--workers-per-copy",
        type=_positive,
        default=1,
        help="CPU: the direct benchmark's worker threads per model copy (bench.workers_per_model)",
    )
    p.add_argument("--batch-size", type=_positive, required=True)
    p.add_argument("--max-batch-delay", type=_positive, required=True, help="milliseconds")
    p.add_argument("--dir", required=True)
    args = p.parse_args(argv)
    if args.batch_size < 1:
        p.error("argument --batch-size: must be at least 1")
    store, run = os.path.abspath(args.store), os.path.abspath(args.dir)
    if not os.path.isfile(os.path.join(store, f"{args.model}.mar")):
        p.error(f"argument --model: no {args.model}.mar in {store}: run the package-model step")
    torchserve = os.path.join(os.path.dirname(sys.executable), "torchserve")
    torchserve = torchserve if os.access(torchserve, os.X_OK) else shutil.which("torchserve")
    if not torchserve:
        say(
            "TorchServe is not installed in this environment (pip install torchserve torch-model-archiver; it needs Java 17)"
        )
        return 1
    workers = workers_for(args.target, args.workers, args.workers_per_copy)
    names = ("inference", "management", "metrics", "grpc_inference", "grpc_management")
    ports = dict(zip(names, free_ports(len(names))))
    os.makedirs(run, exist_ok=True)
    for stale in ("key_file.json", "endpoints.json", "cpu.json"):  # an earlier server's (the serve step stops it first)
        try:
            os.remove(os.path.join(run, stale))
        except FileNotFoundError:
            pass
    tmp = fresh_tmp(run)
    with open(os.path.join(run, "config.properties"), "w") as f:
        f.write(properties(store, args.model, ports, workers, args.batch_size, args.max_batch_delay))
    worker_env = targets.serve_env(args.target, workers)
    env = dict(
        os.environ,
        TMPDIR=tmp,
        TEMP=tmp,
        LOG_LOCATION=os.path.join(run, "logs"),
        METRICS_LOCATION=os.path.join(run, "logs"),
        **worker_env,
    )
    threads = int(worker_env["OMP_NUM_THREADS"]) if "OMP_NUM_THREADS" in worker_env else None
    version, version_text = installed_version()
    token_auth = token_auth_on(version)
    endpoints = {
        "host": LOOPBACK,
        **ports,
        "pid": os.getpid(),
        "workers": workers,
        "threads_per_worker": threads,
        "batch_size": args.batch_size,
        "max_batch_delay_ms": args.max_batch_delay,
        "model": args.model,
        "torchserve": version_text,
        "token_auth": token_auth,
    }
    with open(os.path.join(run, "endpoints.json.tmp"), "w") as f:
        json.dump(endpoints, f)
    os.replace(os.path.join(run, "endpoints.json.tmp"), os.path.join(run, "endpoints.json"))
    guard = (
        "token authorization on"
        if token_auth
        else f"no token authorization (TorchServe {version_text} has it only with a plugin): loopback and SSH are the guard"
    )
    say(
        f"TorchServe {version_text or '(version unknown)'} (0.12 is the last release; the project is in limited "
        f"maintenance): model {args.model}, {workers} worker(s) for {args.target}"
        + (f" x {threads} intra-op thread(s)" if threads else "")
        + f", batchSize {args.batch_size}, "
        f"maxBatchDelay {args.max_batch_delay} ms; inference on {LOOPBACK}:{ports['inference']}, management on "
        f"{LOOPBACK}:{ports['management']} (loopback only), {guard}"
    )
    # TorchServe runs as this script's child (its cwd is ``run``: key_file.json and the logs go
    # there), so the private temporary directory goes when the server does.
    child = subprocess.Popen(
        [torchserve, "--foreground", "--ts-config", "config.properties", "--model-store", store, "--ncs"],
        env=env,
        cwd=run,
    )

    def stopped(signum, frame):  # the job's process group got it too: TorchServe is stopping
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stopped)
    signal.signal(signal.SIGINT, stopped)
    stop = threading.Event()
    threading.Thread(target=keep_ledger, args=(os.path.join(run, "cpu.json"), stop), daemon=True).start()
    try:
        return child.wait()
    finally:
        stop.set()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
