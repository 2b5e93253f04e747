"""Step `load-test`: what a user of the served model gets, at rising request rates.

The generator (``payload/loadgen.py``) runs on the instance beside the server — a detached job
like the benchmark, reattached after a restart — so the SSH tunnel is not in the measured
path. Open loop: Poisson arrivals, latency from each request's scheduled time. Rates rise
(``serve.rates``, or doubling from a quarter of what a short probe found the server sustains)
until p99 passes ``serve.latency_limit_ms`` or a request fails; that rate is measured again, and
the answer narrowed by bisection. Each rate says the generator's own CPU and the share other
processes took. The run is stored once, under its job's id, with the direct benchmark it is
compared with, for the report's served rows.
"""

from __future__ import annotations

import json

from .. import faultpoints
from .base import Step, StepContext, StepError
from .payload_jobs import RESULTS, digest, instance_id, instance_label, payload_command
from .records import LoadTestDone, LoadTestRun, ModelArchive, ServerJob
from .remote_job import WORK_DIR, host_run, job_id, read_file, run_job
from .served import (
    MODEL,
    RUN,
    SAMPLES,
    direct_brief,
    loadgen_fields,
    rate_line,
    request_input,
    serve_batch,
    served_artifact,
    ship_input,
    verdict,
)

FORMAT = "inflab-served/1"


def direct_result(ctx: StepContext) -> dict | None:
    """The newest direct benchmark of the served model file (same model, same batch), if any."""
    art = served_artifact(ctx)
    found = [
        r["data"]
        for r in ctx.store.results(ctx.name, "benchmark")
        if r["data"].get("model_filename") == art.file and r["data"].get("batch_size") == art.batch_size
    ]
    return found[-1] if found else None


def rates(ctx: StepContext) -> list[float] | str:
    """The configured rates, or "auto": the generator probes the server and rises from there."""
    s = ctx.config["serve"]
    return [float(r) for r in s["rates"]] if s["rates"] else "auto"


def load_args(ctx: StepContext, run: str, port: int | str, token_auth: bool = True) -> list[str]:
    s = ctx.config["serve"]
    name, ctype, _ = request_input(ctx)
    plan = rates(ctx)
    return [
        "--url",
        f"http://127.0.0.1:{port}/predictions/{MODEL}",
        *(["--key-file", f"{RUN}/key_file.json"] if token_auth else []),
        "--input",
        f"{SAMPLES}/{name}",
        "--content-type",
        ctype,
        "--rates",
        plan if plan == "auto" else ",".join(f"{r:g}" for r in plan),
        "--max-rates",
        str(s["max_rates"]),
        "--step-s",
        str(s["step_s"]),
        "--limit-ms",
        f"{s['latency_limit_ms']:g}",
        "--server-cpu",
        f"{RUN}/cpu.json",
        "--out",
        f"{RESULTS}/{run}.load.json",
        "--run-id",
        run,
    ]


class LoadTest(Step):
    id = "load-test"

    def cli(self, ctx):
        try:
            args = load_args(ctx, "load-test-N", "<inference port>")
        except StepError:
            return ["# on the instance, beside the server: python3 loadgen.py --url … --rates … --limit-ms …"]
        return [
            "# on the instance, beside the server (the tunnel stays out of the measurement):",
            payload_command(ctx, "load", "loadgen.py", args, host_network=True),
        ]

    def _settings(self, ctx) -> str:
        s = ctx.config["serve"]
        return digest(
            [
                rates(ctx),
                s["step_s"],
                s["latency_limit_ms"],
                request_input(ctx)[:2],
                s.job if (s := ctx.load(ServerJob)) else None,
            ]
        )

    def check(self, ctx):
        mine = (self._settings(ctx), instance_id(ctx))
        done = ctx.load(LoadTestDone)
        if done and (done.settings, done.instance_id) == mine:
            return True
        last = ctx.load(LoadTestRun)  # killed after storing the run, before the step was recorded done
        if (
            last
            and (last.settings, last.instance_id) == mine
            and last.run
            and ctx.store.has_result(ctx.name, "served", last.run)
        ):
            ctx.save(LoadTestDone(settings=last.settings, instance_id=last.instance_id, run=last.run))
            ctx.log(f"The results of the last load test ({last.run}) were collected already")
            return True
        return False

    def apply(self, ctx):
        rec = ctx.load(ServerJob)
        if not rec or not rec.running:
            raise StepError("No server running: run the serve step first")
        ctx.forget(LoadTestDone)
        endpoints = host_run(ctx, lambda conn: read_file(conn, f"{WORK_DIR}/{RUN}/endpoints.json"), timeout=60)
        if not endpoints:
            raise StepError(
                "The server has not written its endpoints (serve/run/endpoints.json): run the serve step again"
            )
        endpoints = json.loads(endpoints)
        port, token_auth = endpoints["inference"], endpoints.get("token_auth", True)
        run = job_id(ctx, "load-test")  # stable while the job runs: a restarted run reattaches and stores it once
        s = ctx.config["serve"]
        plan = rates(ctx)
        direct = direct_result(ctx)
        said = (
            "rates from a quarter of what a short probe finds the server sustains, doubling"
            if plan == "auto"
            else f"{', '.join(f'{r:g}' for r in plan)} requests/s"
        )
        ctx.log(
            f"Open-loop load (Poisson arrivals, latency from each request's scheduled time) at {said}, {s['step_s']} s "
            f"each, until p99 passes {s['latency_limit_ms']:g} ms or a request fails; that rate is measured again and "
            "the answer narrowed by bisection. The generator runs on the instance, beside the server, so the SSH "
            "tunnel is not in the measured path"
        )
        if direct is None:
            ctx.log("No direct benchmark of this model yet (the benchmark step): the report shows no serving overhead")
        ctx.save(LoadTestRun(settings=self._settings(ctx), instance_id=instance_id(ctx), run=run))
        command = f"mkdir -p {RESULTS} && " + payload_command(
            ctx, "load", "loadgen.py", load_args(ctx, run, port, token_auth), host_network=True
        )
        code, tail = run_job(ctx, "load-test", command, env={"PYTHONUNBUFFERED": "1"}, before=ship_input(ctx))
        raw = host_run(ctx, lambda conn: read_file(conn, f"{WORK_DIR}/{RESULTS}/{run}.load.json"), timeout=60)
        result = json.loads(raw) if raw else {}
        if code != 0 or not result.get("complete") or result.get("run_id") != run:
            raise StepError(f"The load test failed (exit {code}): {' | '.join(tail[-3:])[-400:]}")
        record = self._record(ctx, result, direct, endpoints)
        if ctx.store.add_result(ctx.name, "served", record, key=run):
            self._summarise(ctx, record)
        faultpoints.hit("load-test:results-stored")
        ctx.save(LoadTestDone(settings=self._settings(ctx), instance_id=instance_id(ctx), run=run))
        ctx.log(f"See them beside the direct benchmark with: inflab report {ctx.name}")

    def _record(self, ctx, result: dict, direct: dict | None, endpoints: dict | None = None) -> dict:
        art, pkg, srv = served_artifact(ctx), ctx.load(ModelArchive), ctx.load(ServerJob) or ServerJob()
        s = ctx.config["serve"]
        return {
            "format": FORMAT,
            "run_id": result["run_id"],
            "timestamp": result.get("started"),
            "label": ctx.name,
            "runtime": ctx.runtime.kind,
            "sandbox": ctx.runtime.kind == "sandbox",
            "instance_type": instance_label(ctx),
            "name": art.name or ctx.config.model_name,
            "size": art.size,
            "family": art.family,
            "precision": art.precision,
            "target": art.target,
            "weights": art.weights,
            "model_filename": art.file,
            "batch_size": art.batch_size,
            "server_batch_size": serve_batch(ctx),
            "max_batch_delay_ms": s["max_batch_delay_ms"],
            "workers": srv.workers,
            "archive": pkg.mar if pkg else None,
            **loadgen_fields(result),
            "threads_per_worker": (endpoints or {}).get("threads_per_worker"),
            "probe": result.get("probe"),
            "connections": result.get("connections"),
            "lowest_p99_ms": result.get("lowest_p99_ms"),
            "lowest_p99_at": result.get("lowest_p99_at"),
            "direct": direct_brief(direct),
        }

    def _summarise(self, ctx, record: dict) -> None:
        for r in record["rates"]:
            ctx.log(rate_line(r, record["direct"]))
        threads = record.get("threads_per_worker")
        ctx.log(
            verdict(record)
            + f" ({record.get('workers')} TorchServe worker(s)"
            + (f" × {threads} thread(s)" if threads else "")
            + ")"
        )

    def undo(self, ctx):
        ctx.forget(LoadTestDone)  # results stay in the session
