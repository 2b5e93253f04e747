"""Steps `compile` and `benchmark`: trace the model for the target, then measure it.

Both run the payload (``inflab/remote/payload``) as detached jobs on the instance with
their output streamed live, started the way the host runtime says: on AWS inside the
session's container with the Neuron devices passed through (``--device=/dev/neuron*``) or
the GPUs (``--gpus all``); without docker in the job virtualenv that `build-image` made.
Compiled models and results stay
on the host under ``~/.inflab/work``; the manifests and benchmark results are copied
into the session, where ``inflab report`` reads them.
"""

from __future__ import annotations

import hashlib
import json
import shlex

from .base import Step, StepContext, StepError
from .container import image_uri, kind
from .. import faultpoints
from ..remote.payload.result import BenchResult
from .remote_job import WORK_DIR, host_run, job_id, read_file, run_job, upload_payload

MODELS = "models"  # under WORK_DIR
RESULTS = "results"


def digest(obj) -> str:
    """A short stable hash of plain data: what a step's settings were when it last ran."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def python_prefix(ctx: StepContext, job: str, host_network: bool = False) -> str:
    """How a payload script is started on the host (the runtime decides: a container, a virtualenv)."""
    return ctx.runtime.payload_prefix(session=ctx.name, job=job, image_uri=image_uri(ctx), kind=kind(ctx),
                                      host_network=host_network)


def payload_command(ctx: StepContext, job: str, script: str, args: list[str], host_network: bool = False) -> str:
    return python_prefix(ctx, job, host_network) + script + '" ' + " ".join(shlex.quote(a) for a in args)


def instance_label(ctx: StepContext) -> str:
    return ctx.runtime.instance_label(ctx.config)


def compile_args(ctx: StepContext) -> list[str]:
    m, target = ctx.config["model"], ctx.runtime.payload_target(ctx.config)
    args = ["--family", m["family"], "--name", ctx.config.model_name, "--target", target,
            "--batch-size", str(ctx.config["bench"]["batch_size"]), "--max-length", str(m["max_length"]),
            "--image-size", str(m["image_size"]), "--size", ctx.runtime.model_size(ctx.config),
            "--out", MODELS, "--instance-type", instance_label(ctx)]
    if m["offline"]:
        args.append("--offline")
    if m["int8"] and target == "cpu":
        args.append("--int8")
    return args


def bench_args(ctx: StepContext, artifact: dict) -> list[str]:
    b = ctx.config["bench"]
    stem = artifact["file"].rsplit(".", 1)[0]
    args = [f"{MODELS}/{artifact['file']}", "--workers", str(b["workers_per_model"]),
            "--min-duration", str(b["min_duration_s"]), "--min-queries", str(b["min_queries"]),
            "--max-duration", str(b["max_duration_s"]), "--mode", b["mode"], "--repeats", str(b["repeats"]),
            "--instance-type", instance_label(ctx), "--out", f"{RESULTS}/{stem}.bench.json"]
    if b["harness"] != "inflab":
        args += ["--harness", b["harness"]]
    if b["n_models"]:
        args += ["--n-models", str(b["n_models"])]
    if b["mode"] == "open":
        args += ["--rate", str(b["rate"])]
    return args


def instance_id(ctx: StepContext) -> str:
    """The instance the session's host record names ("" before there is one)."""
    return (ctx.get("host") or {}).get("instance_id", "")


def _need_environment(ctx: StepContext) -> None:
    if not ctx.get("image"):
        raise StepError("No image (or job virtualenv) on the instance yet: run the build-image step first")


class Compile(Step):
    id = "compile"
    title = "Compile the model"
    needs_host = True

    def cli(self, ctx):
        return ["# on the instance:",
                payload_command(ctx, "compile", "compile.py", compile_args(ctx))]

    def check(self, ctx):
        done = ctx.get("compile") or {}
        if done.get("settings") != digest(compile_args(ctx)) or done.get("instance_id") != instance_id(ctx):
            return False
        index = host_run(ctx, lambda conn: read_file(conn, f"{WORK_DIR}/{MODELS}/index.json"), timeout=60)
        return index is not None

    def apply(self, ctx):
        _need_environment(ctx)
        ctx.store.delete(ctx.name, "compile")  # compiling again: the models on the host are being replaced
        args = compile_args(ctx)
        ctx.log(f"Compiling {ctx.config.model_name} ({ctx.runtime.model_size(ctx.config)}) for "
                f"{ctx.runtime.payload_target(ctx.config)}, batch {ctx.config['bench']['batch_size']}: output below")

        async def ship(conn):
            await upload_payload(conn)
            await conn.run(f"mkdir -p {WORK_DIR}/{MODELS}", check=True)

        code, tail = run_job(ctx, "compile", payload_command(ctx, "compile", "compile.py", args),
                             env={"PYTHONUNBUFFERED": "1"}, before=ship)
        if code != 0:
            raise StepError(f"Compilation failed (exit {code}): {' | '.join(tail[-3:])[-400:]}")

        async def fetch(conn):
            index = json.loads(await read_file(conn, f"{WORK_DIR}/{MODELS}/index.json") or b"[]")
            return [json.loads(await read_file(conn, f"{WORK_DIR}/{MODELS}/{name}") or b"{}") for name in index]

        manifests = [m for m in host_run(ctx, fetch) if m.get("file")]
        if not manifests:
            raise StepError("The compile job finished but wrote no model manifest (models/index.json)")
        for m in manifests:
            ctx.store.add_result(ctx.name, "compile", m)
            check = m.get("check") or {}
            ctx.log(f"{m['file']}: {m.get('precision')} · weights {m.get('weights')} · max abs diff vs eager "
                    f"{check.get('max_abs_diff', float('nan')):.2e} (tolerance {check.get('tolerance', float('nan')):.0e})")
        ctx.put("compile", {"settings": digest(args), "instance_id": instance_id(ctx),
                            "artifacts": [{k: m.get(k) for k in ("file", "family", "name", "size", "precision", "target",
                                                                 "batch_size", "weights")} for m in manifests]})

    def undo(self, ctx):
        ctx.store.delete(ctx.name, "compile")  # the files live on the instance


class Benchmark(Step):
    id = "benchmark"
    title = "Benchmark it"
    needs_host = True

    def _artifacts(self, ctx) -> list[dict]:
        return (ctx.get("compile") or {}).get("artifacts") or []

    def cli(self, ctx):
        arts = self._artifacts(ctx) or [{"file": "<model>.pt"}]
        return ["# on the instance:"] + [payload_command(ctx, "bench", "bench.py", bench_args(ctx, a)) for a in arts]

    def _settings(self, ctx) -> str:
        return digest([bench_args(ctx, a) for a in self._artifacts(ctx)] + [(ctx.get("compile") or {}).get("settings")])

    def check(self, ctx):
        if not self._artifacts(ctx):
            return False
        mine = {"settings": self._settings(ctx), "instance_id": instance_id(ctx)}
        done = ctx.get("benchmark") or {}
        if {k: done.get(k) for k in mine} == mine:
            return True
        # Killed after the last run's results were stored but before the step was recorded done:
        # those results stand; running again would measure (and store) the same thing twice.
        last = ctx.get("benchmark_run") or {}
        if {k: last.get(k) for k in mine} == mine and last.get("runs") and all(
                ctx.store.has_result(ctx.name, "benchmark", run) for run in last["runs"]):
            ctx.put("benchmark", {**mine, "results": len(last["runs"])})
            ctx.log(f"The results of the last run ({', '.join(last['runs'])}) were collected already")
            return True
        return False

    def apply(self, ctx):
        arts = self._artifacts(ctx)
        if not arts:
            raise StepError("Nothing compiled yet: run the compile step first")
        ctx.store.delete(ctx.name, "benchmark")  # measuring again: the last run no longer says this step is done
        b = ctx.config["bench"]
        ctx.log(f"Benchmarking {len(arts)} model(s), {b['repeats']} trial(s) each: at least {b['min_duration_s']} s and "
                f"{b['min_queries']} queries per trial, until throughput is stable ({b['mode']} loop"
                + (", measured by MLPerf LoadGen" if b["harness"] == "loadgen" else "")
                + "). Watch the Monitor tab while it runs.")
        # Each model's run is named after the job (stable when the job is reattached), so a result
        # collected twice — a kill between storing and recording — is stored once.
        job = job_id(ctx, "benchmark")
        runs = [f"{job}.{i}" for i in range(1, len(arts) + 1)]
        script = [f"mkdir -p {RESULTS}"] + [
            payload_command(ctx, "bench", "bench.py", bench_args(ctx, a) + ["--run-id", run, "--label", ctx.name,
                                                                          "--runtime", ctx.runtime.kind]) + " || exit $?"
            for a, run in zip(arts, runs)]

        ctx.put("benchmark_run", {"settings": self._settings(ctx), "instance_id": instance_id(ctx), "runs": runs})
        code, tail = run_job(ctx, "benchmark", "\n".join(script), env={"PYTHONUNBUFFERED": "1"}, before=upload_payload)

        async def fetch(conn):
            out = []
            for a in arts:
                raw = await read_file(conn, f"{WORK_DIR}/{RESULTS}/{a['file'].rsplit('.', 1)[0]}.bench.json")
                if raw:
                    out.append(BenchResult.from_dict(json.loads(raw)))
            return out

        results = [r for r in host_run(ctx, fetch) if r.run_id in runs]  # an older run's file is not this run
        for r in results:
            if ctx.store.add_result(ctx.name, "benchmark", r.to_dict(), key=r.run_id):
                ci = f" (95% CI {r.throughput_ci95[0]:,.1f}–{r.throughput_ci95[1]:,.1f})" if r.throughput_ci95 else ""
                other = "" if r.interference is None else f", other processes took {r.interference:.0%} of the CPU"
                lg = f" · MLPerf LoadGen {r.loadgen.get('validity')}" if r.loadgen else ""
                ctx.log(f"{r.model_filename}: {r.throughput_avg:,.1f} samples/s{ci} · p50 {r.latency_ms_p50:.2f} ms · "
                        f"p99 {r.latency_ms_p99:.2f} ms · {r.n_models}×{r.workers_per_model} · {r.repeats} trial(s) · "
                        f"quality {r.quality}{other}{lg} (run {r.run_id})")
                if r.quality == "disturbed":
                    ctx.log(f"{r.model_filename}: disturbed — other processes took {r.interference:.0%} of the CPU while "
                            "it measured; its numbers read low. Measure again on a quiet machine")
        faultpoints.hit("benchmark:results-stored")
        if code != 0:
            raise StepError(f"The benchmark failed (exit {code}): {' | '.join(tail[-3:])[-400:]}"
                            + (f"; {len(results)} result(s) kept" if results else ""))
        ctx.put("benchmark", {"settings": self._settings(ctx), "instance_id": instance_id(ctx), "results": len(results)})
        ctx.log(f"See them with: inflab report {ctx.name}")

    def undo(self, ctx):
        ctx.store.delete(ctx.name, "benchmark")  # results stay in the session: they are the point
