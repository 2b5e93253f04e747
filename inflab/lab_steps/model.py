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

import json

from .. import faultpoints
from ..remote.payload.result import BenchResult
from .base import Step, StepContext, StepError
from .payload_jobs import MODELS, RESULTS, bench_args, compile_args, digest, instance_id, payload_command
from .records import BenchmarkDone, BenchmarkRun, BuiltImage, CompiledModel, CompiledModels
from .remote_job import WORK_DIR, host_run, job_id, read_file, run_job, upload_payload


def _need_environment(ctx: StepContext) -> None:
    if not ctx.load(BuiltImage):
        raise StepError("No image (or job virtualenv) on the instance yet: run the build-image step first")


class Compile(Step):
    id = "compile"

    def cli(self, ctx):
        return ["# on the instance:", payload_command(ctx, "compile", "compile.py", compile_args(ctx))]

    def check(self, ctx):
        done = ctx.load(CompiledModels)
        if not done or done.settings != digest(compile_args(ctx)) or done.instance_id != instance_id(ctx):
            return False
        index = host_run(ctx, lambda conn: read_file(conn, f"{WORK_DIR}/{MODELS}/index.json"), timeout=60)
        return index is not None

    def apply(self, ctx):
        _need_environment(ctx)
        ctx.forget(CompiledModels)  # compiling again: the models on the host are being replaced
        args = compile_args(ctx)
        ctx.log(
            f"Compiling {ctx.config.model_name} ({ctx.runtime.model_size(ctx.config)}) for "
            f"{ctx.runtime.payload_target(ctx.config)}, batch {ctx.config['bench']['batch_size']}: output below"
        )

        async def ship(conn):
            await upload_payload(conn)
            await conn.run(f"mkdir -p {WORK_DIR}/{MODELS}", check=True)

        code, tail = run_job(
            ctx,
            "compile",
            payload_command(ctx, "compile", "compile.py", args),
            env={"PYTHONUNBUFFERED": "1"},
            before=ship,
        )
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
            ctx.log(
                f"{m['file']}: {m.get('precision')} · weights {m.get('weights')} · max abs diff vs eager "
                f"{check.get('max_abs_diff', float('nan')):.2e} (tolerance {check.get('tolerance', float('nan')):.0e})"
            )
        ctx.save(
            CompiledModels(
                settings=digest(args),
                instance_id=instance_id(ctx),
                artifacts=tuple(CompiledModel.from_manifest(m) for m in manifests),
            )
        )

    def undo(self, ctx):
        ctx.forget(CompiledModels)  # the files live on the instance


class Benchmark(Step):
    id = "benchmark"

    def _artifacts(self, ctx) -> list[CompiledModel]:
        compiled = ctx.load(CompiledModels)
        return list(compiled.artifacts) if compiled else []

    def cli(self, ctx):
        arts = self._artifacts(ctx) or [CompiledModel(file="<model>.pt")]
        return ["# on the instance:"] + [payload_command(ctx, "bench", "bench.py", bench_args(ctx, a)) for a in arts]

    def _settings(self, ctx) -> str:
        compiled = ctx.load(CompiledModels)
        return digest([bench_args(ctx, a) for a in self._artifacts(ctx)] + [compiled.settings if compiled else None])

    def check(self, ctx):
        if not self._artifacts(ctx):
            return False
        mine = (self._settings(ctx), instance_id(ctx))
        done = ctx.load(BenchmarkDone)
        if done and (done.settings, done.instance_id) == mine:
            return True
        # Killed after the last run's results were stored but before the step was recorded done:
        # those results stand; running again would measure (and store) the same thing twice.
        last = ctx.load(BenchmarkRun)
        if (
            last
            and (last.settings, last.instance_id) == mine
            and last.runs
            and all(ctx.store.has_result(ctx.name, "benchmark", run) for run in last.runs)
        ):
            ctx.save(BenchmarkDone(settings=last.settings, instance_id=last.instance_id, results=len(last.runs)))
            ctx.log(f"The results of the last run ({', '.join(last.runs)}) were collected already")
            return True
        return False

    def apply(self, ctx):
        arts = self._artifacts(ctx)
        if not arts:
            raise StepError("Nothing compiled yet: run the compile step first")
        ctx.forget(BenchmarkDone)  # measuring again: the last run no longer says this step is done
        b = ctx.config["bench"]
        ctx.log(
            f"Benchmarking {len(arts)} model(s), {b['repeats']} trial(s) each: at least {b['min_duration_s']} s and "
            f"{b['min_queries']} queries per trial, until throughput is stable ({b['mode']} loop"
            + (", measured by MLPerf LoadGen" if b["harness"] == "loadgen" else "")
            + "). Watch the Monitor tab while it runs."
        )
        # Each model's run is named after the job (stable when the job is reattached), so a result
        # collected twice — a kill between storing and recording — is stored once.
        job = job_id(ctx, "benchmark")
        runs = [f"{job}.{i}" for i in range(1, len(arts) + 1)]
        script = [f"mkdir -p {RESULTS}"] + [
            payload_command(
                ctx,
                "bench",
                "bench.py",
                bench_args(ctx, a) + ["--run-id", run, "--label", ctx.name, "--runtime", ctx.runtime.kind],
            )
            + " || exit $?"
            for a, run in zip(arts, runs)
        ]

        ctx.save(BenchmarkRun(settings=self._settings(ctx), instance_id=instance_id(ctx), runs=tuple(runs)))
        code, tail = run_job(ctx, "benchmark", "\n".join(script), env={"PYTHONUNBUFFERED": "1"}, before=upload_payload)

        async def fetch(conn):
            out = []
            for a in arts:
                raw = await read_file(conn, f"{WORK_DIR}/{RESULTS}/{a.stem}.bench.json")
                if raw:
                    out.append(BenchResult.from_dict(json.loads(raw)))
            return out

        results = [r for r in host_run(ctx, fetch) if r.run_id in runs]  # an older run's file is not this run
        for r in results:
            if ctx.store.add_result(ctx.name, "benchmark", r.to_dict(), key=r.run_id):
                ci = f" (95% CI {r.throughput_ci95[0]:,.1f}–{r.throughput_ci95[1]:,.1f})" if r.throughput_ci95 else ""
                other = "" if r.interference is None else f", other processes took {r.interference:.0%} of the CPU"
                lg = f" · MLPerf LoadGen {r.loadgen.get('validity')}" if r.loadgen else ""
                ctx.log(
                    f"{r.model_filename}: {r.throughput_avg:,.1f} samples/s{ci} · p50 {r.latency_ms_p50:.2f} ms · "
                    f"p99 {r.latency_ms_p99:.2f} ms · {r.n_models}×{r.workers_per_model} · {r.repeats} trial(s) · "
                    f"quality {r.quality}{other}{lg} (run {r.run_id})"
                )
                if r.quality == "disturbed":
                    ctx.log(
                        f"{r.model_filename}: disturbed — other processes took {r.interference:.0%} of the CPU while "
                        "it measured; its numbers read low. Measure again on a quiet machine"
                    )
        faultpoints.hit("benchmark:results-stored")
        if code != 0:
            raise StepError(
                f"The benchmark failed (exit {code}): {' | '.join(tail[-3:])[-400:]}"
                + (f"; {len(results)} result(s) kept" if results else "")
            )
        ctx.save(BenchmarkDone(settings=self._settings(ctx), instance_id=instance_id(ctx), results=len(results)))
        ctx.log(f"See them with: inflab report {ctx.name}")

    def undo(self, ctx):
        ctx.forget(BenchmarkDone)  # results stay in the session: they are the point
