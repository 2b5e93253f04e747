"""Steps `package-model`, `serve` and `serve-stop`: the compiled model behind TorchServe.

`package-model` archives the compiled model with our handler (``payload/archive.py``, a
detached job like compile). `serve` starts TorchServe (``payload/serve.py``) on the instance
the way the runtime starts any payload — in the session's container with the accelerators
mapped and the host's network (so it binds the instance's loopback), or in the sandbox's job
virtualenv — streams its log into the job pane and waits until every worker is READY, asking
the management API through an SSH port forward. The server then keeps running (it is not a
job a later run reattaches to: `serve` checks it is up, `serve-stop`, `terminate` and
cleanup stop it). TorchServe's API keys are read over SSH when needed and never stored.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque

from .base import Cancelled, Step, StepContext, StepError
from .payload_jobs import MODELS, digest, instance_id, payload_command
from .records import CompiledModels, ModelArchive, PinnedHostKey, ServerJob
from .remote_job import WORK_DIR, connect, host_run, read_file, run_job, upload_payload
from .served import MODEL, RUN, STORE, serve_batch, served_artifact, ship_input

READY_TIMEOUT_S = 300
LOAD_FAILURES = 2  # workers failed to start or load this often: they cannot (TorchServe would retry for ever)
WORKER_FAILED = ("Load model failed", "Backend worker error")  # TorchServe's log lines when a worker fails


# ------------------------------------------------------------------------------ package-model
def package_args(ctx: StepContext) -> list[str]:
    return ["--model", f"{MODELS}/{served_artifact(ctx).file}", "--name", MODEL, "--out", STORE]


class PackageModel(Step):
    id = "package-model"

    def cli(self, ctx):
        try:
            args = package_args(ctx)
        except StepError:
            args = ["--model", f"{MODELS}/<model>.pt", "--name", MODEL, "--out", STORE]
        return [
            "# on the instance (torch-model-archiver, with inflab's handler):",
            payload_command(ctx, "package", "archive.py", args),
        ]

    def _settings(self, ctx) -> str:
        return digest([package_args(ctx), c.settings if (c := ctx.load(CompiledModels)) else None])

    def check(self, ctx):
        done, compiled = ctx.load(ModelArchive), ctx.load(CompiledModels)
        if not (compiled and compiled.artifacts):
            return False
        if not done or done.settings != self._settings(ctx) or done.instance_id != instance_id(ctx):
            return False
        info = host_run(ctx, lambda conn: read_file(conn, f"{WORK_DIR}/{STORE}/{MODEL}.json"), timeout=60)
        return bool(info) and json.loads(info).get("sha256") == done.sha256

    def apply(self, ctx):
        art = served_artifact(ctx)
        ctx.forget(ModelArchive)
        ctx.log(
            f"Packaging {art.file} as a TorchServe model archive ({MODEL}.mar) with inflab's handler: it loads the "
            f"model for {art.target} and turns {'a sentence pair' if art.family == 'bert' else 'an image'} "
            "into the model's input"
        )
        code, tail = run_job(
            ctx,
            "package-model",
            payload_command(ctx, "package", "archive.py", package_args(ctx)),
            env={"PYTHONUNBUFFERED": "1"},
            before=ship_input(ctx),
        )
        if code != 0:
            raise StepError(f"Packaging failed (exit {code}): {' | '.join(tail[-3:])[-400:]}")
        raw = host_run(ctx, lambda conn: read_file(conn, f"{WORK_DIR}/{STORE}/{MODEL}.json"), timeout=60)
        if not raw:
            raise StepError(f"The package job finished but wrote no {STORE}/{MODEL}.json")
        info = json.loads(raw)
        ctx.save(ModelArchive(settings=self._settings(ctx), instance_id=instance_id(ctx), archive=info))

    def undo(self, ctx):
        ctx.forget(ModelArchive)  # the archive lives on the instance


def serve_args(ctx: StepContext) -> list[str]:
    s = ctx.config["serve"]
    art = served_artifact(ctx)
    return [
        "--store",
        STORE,
        "--model",
        MODEL,
        "--target",
        art.target or ctx.runtime.payload_target(ctx.config),
        "--workers",
        str(s["workers"]),
        "--workers-per-copy",
        str(ctx.config["bench"]["workers_per_model"]),
        "--batch-size",
        str(serve_batch(ctx)),
        "--max-batch-delay",
        str(s["max_batch_delay_ms"]),
        "--dir",
        RUN,
    ]


def serve_command(ctx: StepContext, job: str) -> str:
    return payload_command(ctx, job, "serve.py", serve_args(ctx), host_network=True)


async def stop_server(ctx: StepContext, conn, rec: ServerJob) -> None:
    """Stop the recorded server: its job's process group, then whatever the runtime started for it."""
    from ..remote import jobs

    await jobs.cancel(conn, rec.jdir)
    await conn.run(ctx.runtime.stop_job_command(ctx.name, rec.job), check=False)


async def server_state(conn, rec: ServerJob) -> tuple[bool, list[dict], str]:
    """(job running, workers from the management API, why not READY) for the recorded server."""
    from ..remote import jobs
    from ..remote.torchserve import Server, ServerNotReady, workers_of

    st = await jobs.status(conn, rec.jdir)
    if not st.running:
        return False, [], f"the server's job has ended (exit {st.exit_code})"
    try:
        async with Server(conn, f"{WORK_DIR}/{RUN}") as server:
            answer = await server.model(MODEL)
    except ServerNotReady as e:
        return True, [], str(e)
    except OSError as e:  # the port is not listening yet
        return True, [], f"the management API does not answer yet ({type(e).__name__})"
    if answer.status != 200:
        return True, [], f"the management API answered {answer.status}: {answer.error_text()}"
    return True, workers_of(answer.json()), ""


def forget_server(ctx: StepContext, *, stopped: bool = False) -> None:
    """The server is gone. ``stopped``: on purpose (serve-stop), so the steps that used it stay done."""
    rec = ctx.load(ServerJob)
    if rec:
        ctx.save(rec.gone(stopped=stopped))


class Serve(Step):
    id = "serve"

    def cli(self, ctx):
        try:
            cmd = serve_command(ctx, "serve")
        except StepError:
            cmd = "python3 serve.py --store serve/model-store --model inflab …"
        return [
            "# on the instance: TorchServe on its loopback, reached through an SSH tunnel",
            cmd,
            "ssh -L 8080:127.0.0.1:<inference port> -L 8081:127.0.0.1:<management port> <instance>",
            'curl -H "Authorization: Bearer $(jq -r .management.key key_file.json)" http://127.0.0.1:8081/models/inflab',
        ]

    def _settings(self, ctx) -> str:
        return digest([serve_args(ctx), p.sha256 if (p := ctx.load(ModelArchive)) else None])

    def check(self, ctx):
        rec = ctx.load(ServerJob) or ServerJob()
        if rec.stopped:
            return True  # stopped on purpose by serve-stop: done, like a terminated instance's steps (--from serve serves again)
        if not rec.jdir or rec.instance_id != instance_id(ctx) or rec.settings != self._settings(ctx):
            return False
        running, workers, _ = host_run(ctx, lambda conn: server_state(conn, rec), timeout=60)
        return running and bool(workers) and all(w.get("status") == "READY" for w in workers)

    def apply(self, ctx):
        if not ctx.load(ModelArchive):
            raise StepError("No model archive yet: run the package-model step first")
        old = ctx.load(ServerJob) or ServerJob()
        n = old.n + 1
        job = f"serve-{n}"
        from ..remote.jobs import job_dir

        rec = ServerJob(
            n=n,
            job=job,
            jdir=job_dir(job),
            instance_id=instance_id(ctx),
            settings=self._settings(ctx),
            started=time.time(),
        )
        s = ctx.config["serve"]
        ctx.log(
            f"Starting TorchServe on the instance (the image's own; its version is the server's first line below): "
            f"workers {s['workers'] or 'one per NeuronCore / GPU (CPU: as the direct benchmark ran, its copies × workers)'}, server-side batching "
            f"batchSize {serve_batch(ctx)}, maxBatchDelay {s['max_batch_delay_ms']} ms. It listens on the "
            "instance's loopback only; inflab reaches it through an SSH tunnel (the security group stays tcp/22 only)"
        )
        asyncio.run(self._start(ctx, old, rec))

    async def _start(self, ctx, old: ServerJob, rec: ServerJob) -> None:
        from ..remote import jobs

        conn = await connect(ctx)
        async with conn:
            if old.jdir:  # never two servers: the last one goes first (it may hold the same ports' files)
                await stop_server(ctx, conn, old)
            await upload_payload(conn)
            ctx.save(rec)  # before it starts: a kill right after still finds (and stops) it
            jdir = await jobs.start(conn, rec.job, serve_command(ctx, rec.job), env={"PYTHONUNBUFFERED": "1"})
            tail: deque[str] = deque(maxlen=60)
            failures = 0

            def on_lines(lines: list[bytes], offset: int) -> None:
                nonlocal failures
                text = [b.decode("utf-8", "replace") for b in lines]
                tail.extend(text)
                failures += sum(any(m in t for m in WORKER_FAILED) for t in text)
                ctx.output(text)

            follower = asyncio.ensure_future(jobs.follow(conn, jdir, 0, on_lines))
            t0 = time.monotonic()
            try:
                while True:
                    await asyncio.sleep(0.5)
                    if ctx.cancel.is_set():
                        if not ctx.detach.is_set():
                            await stop_server(ctx, conn, rec)
                            forget_server(ctx)
                        raise Cancelled("cancelled")
                    if follower.done():
                        code = follower.result()
                        forget_server(ctx)
                        raise StepError(
                            f"TorchServe stopped before the model was ready (exit {code}): "
                            f"{' | '.join(list(tail)[-4:])[-500:]}"
                        )
                    if failures >= LOAD_FAILURES:
                        await stop_server(ctx, conn, rec)
                        forget_server(ctx)
                        said = [t for t in tail if "MODEL_LOG" in t and ("Error" in t or "Exception" in t)]
                        errors = said or [t for t in tail if "Error" in t or "Exception" in t] or list(tail)
                        raise StepError(
                            f"TorchServe's workers failed to start or load the model ({failures} times); "
                            f"stopped the server. The worker said: {errors[-1][-400:]}"
                        )
                    running, workers, why = await server_state(conn, rec)
                    ready = [w for w in workers if w.get("status") == "READY"]
                    waited = time.monotonic() - t0
                    ctx.progress(
                        None,
                        f"TorchServe: {len(ready)}/{len(workers) or '?'} worker(s) READY after {waited:.0f} s"
                        + (f" ({why})" if why else ""),
                    )
                    if workers and len(ready) == len(workers):
                        break
                    if waited > READY_TIMEOUT_S:
                        await stop_server(ctx, conn, rec)
                        forget_server(ctx)
                        raise StepError(
                            f"TorchServe was not ready after {READY_TIMEOUT_S} s ({why or 'workers not READY'}); "
                            "stopped it. Its log is in the job pane"
                        )
            finally:
                follower.cancel()
        ctx.save(rec.ready(len(ready), round(waited, 1)))
        ctx.log(
            f"TorchServe is up: {len(ready)} worker(s) READY after {waited:.1f} s (job {rec.job}; the server keeps "
            "running until serve-stop, terminate or cleanup)"
        )

    def undo(self, ctx):
        rec = ctx.load(ServerJob) or ServerJob()
        if not rec.jdir:
            return
        if rec.instance_id == instance_id(ctx) and (pin := ctx.load(PinnedHostKey)) and pin.fingerprint:
            try:
                host_run(ctx, lambda conn: stop_server(ctx, conn, rec), timeout=60)
                ctx.log(f"Stopped TorchServe (job {rec.job})")
            except StepError as e:
                ctx.log(f"Could not reach the instance to stop TorchServe ({e}); terminating the instance stops it")
        forget_server(ctx)


# ------------------------------------------------------------------------------ serve-stop
class ServeStop(Step):
    id = "serve-stop"

    def cli(self, ctx):
        rec = ctx.load(ServerJob) or ServerJob()
        return [
            "# on the instance: stop TorchServe and its container",
            f"kill -TERM -- -$(cat ~/{(rec.jdir or '~/.inflab/jobs/serve-N').removeprefix('~/')}/pid)",
            ctx.runtime.stop_job_command(ctx.name, rec.job or "serve-N"),
        ]

    def check(self, ctx):
        rec = ctx.load(ServerJob) or ServerJob()
        if not rec.jdir or rec.instance_id != instance_id(ctx):
            return True
        from ..remote import jobs

        return not host_run(ctx, lambda conn: jobs.status(conn, rec.jdir), timeout=60).running

    def apply(self, ctx):
        rec = ctx.load(ServerJob) or ServerJob()
        if rec.jdir and rec.instance_id == instance_id(ctx):
            host_run(ctx, lambda conn: stop_server(ctx, conn, rec), timeout=60)
            ctx.log(
                f"Stopped TorchServe (job {rec.job}) and everything it started. To serve again: "
                f"inflab run --name {ctx.name} --from serve"
            )
        else:
            ctx.log("No server running for this session")
        forget_server(ctx, stopped=True)

    def undo(self, ctx):
        pass  # nothing to put back: the serve step starts a server again
