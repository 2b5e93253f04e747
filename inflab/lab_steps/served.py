"""What the serving steps share: where TorchServe's model store, run directory and samples live on
the instance, the model's name there, the compiled model it serves, the request the check and
the load tests send, and how a load test's result is recorded and told (TorchServe's and SageMaker's).
"""

from __future__ import annotations

from importlib import resources

from .base import StepContext, StepError
from .records import CompiledModel, CompiledModels
from .remote_job import WORK_DIR, upload, upload_payload

SERVE = "serve"  # under WORK_DIR
STORE = f"{SERVE}/model-store"
RUN = f"{SERVE}/run"
SAMPLES = f"{SERVE}/samples"
MODEL = "inflab"  # the model's name in TorchServe
SAMPLE_FILES = {"bert": ("pair.json", "application/json"), "resnet": ("cat.jpg", "image/jpeg")}


def served_artifact(ctx: StepContext) -> CompiledModel:
    """The compiled model the exercise serves: the target's own (fp32) one."""
    compiled = ctx.load(CompiledModels)
    arts = list(compiled.artifacts) if compiled else []
    own = [a for a in arts if a.target == ctx.runtime.payload_target(ctx.config)] or arts
    if not own:
        raise StepError("Nothing compiled yet: run the compile step first")
    return own[0]


def request_input(ctx: StepContext) -> tuple[str, str, bytes]:
    """(file name, content type, bytes) of what the check and the load test send: ``serve.input``
    or the family's sample from assets/samples."""
    from ..config import ConfigError, read_request_file

    family = ctx.config["model"]["family"]
    name, ctype = SAMPLE_FILES[family]
    path = ctx.config["serve"]["input"]
    if not path:
        return name, ctype, resources.files("inflab.assets").joinpath("samples", name).read_bytes()
    try:
        data = read_request_file(path)
    except ConfigError as e:
        raise StepError(str(e)) from None
    base = path.rsplit("/", 1)[-1]
    return "input-" + base, (ctype if family == "bert" else "application/octet-stream"), data


def ship_input(ctx: StepContext):
    """An async ``before`` hook: the payload and the request input onto the host."""
    name, _, data = request_input(ctx)

    async def before(conn):
        await upload_payload(conn)
        await upload(conn, {name: data}, f"{WORK_DIR}/{SAMPLES}", mode=0o600)  # the user's file: theirs only

    return before


# ------------------------------------------------------------------------------ serve
def serve_batch(ctx: StepContext) -> int:
    """TorchServe's batchSize: ``serve.batch_size``, or the batch the model was compiled for."""
    return ctx.config["serve"]["batch_size"] or int(served_artifact(ctx).batch_size or 1)


def check_answer(doc, k: int) -> str | None:
    """Why a prediction's answer (TorchServe's or an endpoint's) does not have the handler's shape (None: it does)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("label"), str) or not isinstance(doc.get("scores"), dict):
        return f'expected {{"label": ..., "scores": {{...}}}}, got {str(doc)[:200]}'
    scores = doc["scores"]
    if len(scores) != k:
        return f"expected the top {k} class scores, got {len(scores)}"
    if doc["label"] not in scores or max(scores, key=scores.get) != doc["label"]:
        return f"the label {doc['label']!r} is not the top score"
    if not all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in scores.values()) or sum(scores.values()) > 1.0001:
        return "the scores are not probabilities"
    return None


# -- a load test's result: the same loadgen measures TorchServe on the instance and a SageMaker endpoint
def loadgen_fields(result: dict) -> dict:
    """What a load-test record keeps of the load generator's result, as it came."""
    keep = ("limit_ms", "step_s", "stop_reason", "highest_rate_meeting_limit", "generator", "input")
    return {**{k: result.get(k) for k in keep}, "rates": result.get("rates") or []}


def direct_brief(direct: dict | None) -> dict | None:
    """The direct benchmark a load test is set beside (its overhead is measured against it)."""
    if direct is None:
        return None
    return {k: direct.get(k) for k in ("run_id", "latency_ms_p50", "latency_ms_p99", "throughput_avg", "batch_size")}


def rate_line(rate: dict, direct: dict | None) -> str:
    """One offered rate of a load test, for the log: what came back, how fast, and the overhead over
    the direct benchmark's p50 (with the generator's and other processes' share of the CPU, when measured)."""
    p50, d = rate.get("latency_ms_p50"), direct or {}
    phase, cpu, other = rate.get("phase"), rate.get("generator_cpu_share"), rate.get("interference")
    over = (
        f", overhead {p50 - d['latency_ms_p50']:+.2f} ms vs direct p50"
        if p50 is not None and d.get("latency_ms_p50") is not None
        else ""
    )
    return (
        f"{rate['offered_rps']:g}/s offered{f' ({phase})' if phase else ''} → {rate['achieved_rps']:.1f}/s, "
        f"p50 {_ms(p50)}, p90 {_ms(rate.get('latency_ms_p90'))}, p99 {_ms(rate.get('latency_ms_p99'))}, "
        f"{rate['errors']} error(s){over}"
        + ("" if cpu is None else f"; the generator took {cpu:.1%} of the CPU")
        + ("" if other is None else f", other processes {other:.0%}")
    )


def verdict(record: dict) -> str:
    """Why the load test stopped, and the highest rate that met the latency limit."""
    best = record["highest_rate_meeting_limit"]
    return f"{record['stop_reason']}. Highest rate meeting p99 ≤ {record['limit_ms']:g} ms: " + (
        "none" if best is None else f"{best:g} requests/s"
    )


def _ms(v) -> str:
    return "-" if v is None else f"{v:.2f} ms"
