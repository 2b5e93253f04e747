"""Step `serve-check`: is the served model answering, and answering the right thing?

Through the SSH tunnel: the management API's description of the model (its workers must all be
READY; shown as a table, what the seed prints with curl), then one real prediction through
the inference API with the sample input (or ``serve.input``), whose answer must have the
expected shape — a label and the top-k class scores. An input the handler refuses is a clear
error naming TorchServe's answer, never a wait.
"""

from __future__ import annotations

import asyncio
import hashlib

from .base import Step, StepContext, StepError
from .records import ModelArchive, ServeCheckResult, ServerJob
from .remote_job import WORK_DIR, connect
from .served import MODEL, RUN, check_answer, request_input

TOP_K = 5
PREDICT_TIMEOUT_S = 90


def expected_scores(ctx: StepContext) -> int:
    archive = ctx.load(ModelArchive)
    return min(TOP_K, int((archive.labels if archive else None) or TOP_K))


class ServeCheck(Step):
    id = "serve-check"

    def cli(self, ctx):
        name, ctype, _ = request_input(ctx)
        key = "$(jq -r .{} ~/.inflab/work/serve/run/key_file.json)"
        return [
            "# through the SSH tunnel of the serve step (local 8080 → inference, 8081 → management):",
            f'curl -H "Authorization: Bearer {key.format("management.key")}" http://127.0.0.1:8081/models/{MODEL}',
            f'curl -H "Authorization: Bearer {key.format("inference.key")}" -H "Content-Type: {ctype}" '
            f"--data-binary @{name} http://127.0.0.1:8080/predictions/{MODEL}",
        ]

    def _input_digest(self, ctx) -> str:
        return hashlib.sha256(request_input(ctx)[2]).hexdigest()[:16]

    def check(self, ctx):
        done, rec = ctx.load(ServeCheckResult), ctx.load(ServerJob)
        return bool(done) and done.job == (rec.job if rec else None) and done.input == self._input_digest(ctx)

    def apply(self, ctx):
        rec = ctx.load(ServerJob)
        if not rec or not rec.running:
            raise StepError("No server running: run the serve step first")
        ctx.forget(ServeCheckResult)  # asking again: an earlier answer no longer says it is done
        name, ctype, data = request_input(ctx)
        result = asyncio.run(self._ask(ctx, name, ctype, data))
        ctx.save(ServeCheckResult.from_json({"job": rec.job, "input": self._input_digest(ctx), **result}))

    async def _ask(self, ctx, name: str, ctype: str, data: bytes) -> dict:
        from ..remote.torchserve import Server, ServerNotReady, worker_table, workers_of

        conn = await connect(ctx)
        async with conn:
            try:
                async with Server(conn, f"{WORK_DIR}/{RUN}") as server:
                    described = await server.model(MODEL)
                    if described.status != 200:
                        raise StepError(
                            f"The management API answered HTTP {described.status}: {described.error_text()}"
                        )
                    desc = described.json()
                    table = worker_table(desc)
                    ctx.log(f"Management API, GET /models/{MODEL} (through the SSH tunnel, {described.ms:.0f} ms):")
                    for line in table:
                        ctx.log("  " + line)
                    workers = workers_of(desc)
                    if not workers or any(w.get("status") != "READY" for w in workers):
                        raise StepError(
                            f"Not every worker is READY ({', '.join(str(w.get('status')) for w in workers) or 'none'}):"
                            " run the serve step again"
                        )
                    ctx.log(f"Inference API, POST /predictions/{MODEL} with {name} ({len(data):,} bytes, {ctype})…")
                    try:
                        answer = await asyncio.wait_for(
                            server.predict(MODEL, data, ctype, timeout=PREDICT_TIMEOUT_S), PREDICT_TIMEOUT_S + 5
                        )
                    except (asyncio.TimeoutError, TimeoutError):
                        raise StepError(f"The prediction got no answer within {PREDICT_TIMEOUT_S} s") from None
            except ServerNotReady as e:
                raise StepError(f"{e}: run the serve step again") from None
        if answer.status != 200:
            raise StepError(
                f"The prediction failed: TorchServe answered HTTP {answer.status} for {name}: {answer.error_text()}"
            )
        try:
            doc = answer.json()
        except ValueError:
            raise StepError(f"The prediction's answer is not JSON: {answer.body[:200]!r}") from None
        k = expected_scores(ctx)
        wrong = check_answer(doc, k)
        if wrong:
            raise StepError(f"The prediction's answer has the wrong shape: {wrong}")
        top = ", ".join(f"{label} {p:.1%}" for label, p in doc["scores"].items())
        ctx.log(
            f"Prediction: {doc['label']} — top {k}: {top} ({answer.ms:.0f} ms through the tunnel)"
            + (f". Note: {doc['note']}" if doc.get("note") else "")
        )
        m = desc[0]
        return {
            "table": table,
            "workers": [
                {k: w.get(k) for k in ("id", "status", "pid", "startTime", "memoryUsage", "gpu")} for w in workers
            ],
            "model": {
                k: m.get(k)
                for k in (
                    "modelName",
                    "modelVersion",
                    "modelUrl",
                    "batchSize",
                    "maxBatchDelay",
                    "minWorkers",
                    "maxWorkers",
                )
            },
            "input_name": name,
            "prediction": doc,
            "ms": round(answer.ms, 1),
        }

    def undo(self, ctx):
        ctx.forget(ServeCheckResult)
