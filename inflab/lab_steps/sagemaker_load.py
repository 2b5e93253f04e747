"""Steps `sagemaker-check` and `sagemaker-load-test`: is the endpoint answering right, and what does a
client of it get at rising request rates?

`sagemaker-check` calls ``InvokeEndpoint`` once per variant (fp32, int8) with the sample input (or
``serve.input``) and checks the answer's shape, as `serve-check` does; an input the handler
refuses is SageMaker's ModelError, shown with the container's status and the handler's reason.

`sagemaker-load-test` puts the serving exercise's load (``payload/loadgen.py``: open loop, Poisson
arrivals, latency from each request's scheduled time, rates rising until p99 passes
``[sagemaker] latency_limit_ms`` or a call fails) on each variant through ``InvokeEndpoint`` — from
the instance, in the endpoint's region, as a detached job a restarted app reattaches to, so the
learner's own network is not what is measured. Afterwards SageMaker's own view from CloudWatch
(ModelLatency, OverheadLatency) is recorded beside it when CloudWatch has it. Each variant's run is
stored once, with the price of the ml.* instances behind it, for the report's SageMaker rows.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from datetime import datetime, timedelta, timezone

from botocore.exceptions import ClientError

from .. import faultpoints, names
from ..aws import error_code, error_message
from ..remote.payload.loadgen import WARMUP_REQUESTS as WARMUP_CALLS  # unmeasured, before the first rate
from .base import Step, StepContext, StepError
from .payload_jobs import RESULTS, digest, instance_id
from .records import EndpointChecked, EndpointLoadDone, EndpointLoadRun, HostJobs, ModelData, RefreshedSageMakerPrices
from .remote_job import WORK_DIR, host_run, job_id, read_file, run_job
from .sagemaker_aws import aws_payload_command, disabled, endpoint_record, package
from .served import SAMPLES, check_answer, direct_brief, loadgen_fields, rate_line, request_input, ship_input, verdict

FORMAT = "inflab-sagemaker-load/1"
TOP_K = 5
INVOKE_TIMEOUT_S = 70  # SageMaker lets a container take 60 s


def _input_digest(ctx: StepContext) -> str:
    return hashlib.sha256(request_input(ctx)[2]).hexdigest()[:16]


def _need_endpoint(ctx: StepContext):
    rec, pkg = endpoint_record(ctx), package(ctx)
    if rec is None or pkg is None or rec.deleted:
        raise StepError("No SageMaker endpoint: run the sagemaker-endpoint step first")
    return rec, pkg


# ------------------------------------------------------------------------------ sagemaker-check
class SageMakerCheck(Step):
    id = "sagemaker-check"

    def not_for(self, ctx):
        return disabled(ctx)

    def cli(self, ctx):
        name, ctype, _ = request_input(ctx)
        ep, rec = names.sagemaker_endpoint(ctx.name), endpoint_record(ctx)
        return [
            f"aws sagemaker-runtime invoke-endpoint --endpoint-name {ep} --target-variant {v} --content-type {ctype} "
            f"--body fileb://{name} answer-{v}.json"
            for v in (rec.variants if rec else ("fp32",))
        ]

    def check(self, ctx):
        done, rec = ctx.load(EndpointChecked), endpoint_record(ctx)
        return (
            done is not None
            and rec is not None
            and done.made == rec.made
            and done.config == rec.config
            and done.input == _input_digest(ctx)
        )

    def apply(self, ctx):
        rec, pkg = _need_endpoint(ctx)
        ctx.forget(EndpointChecked)
        name, ctype, data = request_input(ctx)
        runtime = ctx.aws.client("sagemaker-runtime")
        answers = {}
        for d in pkg.data:
            variant = names.sagemaker_variant(d.precision)
            ctx.log(f"InvokeEndpoint {rec.endpoint}, variant {variant}, with {name} ({len(data):,} bytes, {ctype})…")
            t0 = time.perf_counter()
            try:
                answer = runtime.invoke_endpoint(
                    EndpointName=rec.endpoint,
                    TargetVariant=variant,
                    Body=data,
                    ContentType=ctype,
                    Accept="application/json",
                )
                body = answer["Body"].read()
            except ClientError as e:
                raise StepError(self._refused(e, name)) from None
            ms = (time.perf_counter() - t0) * 1000
            try:
                doc = json.loads(body)
            except ValueError:
                raise StepError(f"Variant {variant}'s answer is not JSON: {body[:200]!r}") from None
            k = min(TOP_K, d.labels or TOP_K)
            wrong = check_answer(doc, k)
            if wrong:
                raise StepError(f"Variant {variant}'s answer has the wrong shape: {wrong}")
            top = ", ".join(f"{label} {p:.1%}" for label, p in doc["scores"].items())
            ctx.log(
                f"{variant}: {doc['label']} — top {k}: {top} ({ms:.0f} ms from here, through SageMaker; served by "
                f"{answer.get('InvokedProductionVariant') or variant})"
                + (f". Note: {doc['note']}" if doc.get("note") else "")
            )
            answers[variant] = {"prediction": doc, "ms": round(ms, 1)}
        ctx.save(
            EndpointChecked(
                config=rec.config, made=rec.made, input=_input_digest(ctx), input_name=name, answers=answers
            )
        )

    @staticmethod
    def _refused(e: ClientError, name: str) -> str:
        r = e.response
        if error_code(e) == "ModelError":
            status, said = r.get("OriginalStatusCode"), r.get("OriginalMessage") or error_message(e)
            try:
                said = json.loads(said).get("error") or said
            except (ValueError, AttributeError):
                pass
            return f"The endpoint's container answered HTTP {status} for {name}: {str(said)[:400]}"
        return f"SageMaker refused the call ({error_code(e)}): {error_message(e)}"

    def undo(self, ctx):
        ctx.forget(EndpointChecked)


# ------------------------------------------------------------------------------ sagemaker-load-test
def _round(x: float) -> float:
    """Two significant figures: rates people can read."""
    if x <= 0:
        return x
    digits = 1 - int(math.floor(math.log10(x)))
    return round(x, max(digits, 0)) if digits > 0 else float(round(x, digits))


def direct_result(ctx: StepContext, d: ModelData) -> dict | None:
    """The newest direct benchmark of this model file at its batch (what the SageMaker overhead is against)."""
    found = [
        r["data"]
        for r in ctx.store.results(ctx.name, "benchmark")
        if r["data"].get("model_filename") == d.model_file and r["data"].get("batch_size") == d.batch_size
    ]
    return found[-1] if found else None


def rates(ctx: StepContext, d: ModelData) -> list[float]:
    s = ctx.config.sagemaker
    if s.rates:
        return [float(r) for r in s.rates]
    start = max(1.0, _round((direct_result(ctx, d) or {}).get("throughput_avg", 100.0) / 100))
    return [_round(start * 2**i) for i in range(s.max_rates)]


def load_args(ctx: StepContext, d: ModelData, run: str) -> list[str]:
    s = ctx.config.sagemaker
    name, ctype, _ = request_input(ctx)
    url = f"sagemaker://{names.sagemaker_endpoint(ctx.name)}?region={ctx.region}&variant={names.sagemaker_variant(d.precision)}"
    return [
        "--url",
        url,
        "--input",
        f"{SAMPLES}/{name}",
        "--content-type",
        ctype,
        "--rates",
        ",".join(f"{r:g}" for r in rates(ctx, d)),
        "--step-s",
        str(s.step_s),
        "--limit-ms",
        f"{s.latency_limit_ms:g}",
        "--timeout-s",
        str(INVOKE_TIMEOUT_S),
        "--out",
        f"{RESULTS}/{run}.load.json",
        "--run-id",
        run,
    ]


class SageMakerLoadTest(Step):
    id = "sagemaker-load-test"

    def not_for(self, ctx):
        return disabled(ctx)

    def cli(self, ctx):
        pkg = package(ctx)
        data = (
            pkg.data
            if pkg
            else (
                ModelData(
                    precision="fp32",
                    target="cpu",
                    family="bert",
                    model_file="<model>.pt",
                    batch_size=1,
                    key="",
                    sha256="",
                    bytes=0,
                ),
            )
        )
        return [
            "# on the instance, in the endpoint's region (your own network stays out of the measurement):",
            *(
                aws_payload_command(
                    ctx, "sagemaker-load", "loadgen.py", load_args(ctx, d, f"sagemaker-load-{d.precision}-N")
                )
                for d in data
            ),
            f"aws cloudwatch get-metric-statistics --namespace AWS/SageMaker --metric-name ModelLatency --dimensions "
            f"Name=EndpointName,Value={names.sagemaker_endpoint(ctx.name)} Name=VariantName,Value=fp32 --statistics Average ...",
        ]

    def _settings(self, ctx) -> str:
        rec, pkg = endpoint_record(ctx), package(ctx)
        s = ctx.config.sagemaker
        return digest(
            [
                [rates(ctx, d) for d in (pkg.data if pkg else ())],
                s.step_s,
                s.latency_limit_ms,
                request_input(ctx)[:2],
                [rec.config, rec.made] if rec else None,
            ]
        )

    def _planned(self, ctx) -> list[str]:
        """The runs the last attempt planned, one per variant, when it was of these settings on this instance."""
        last = ctx.load(EndpointLoadRun)
        if last is None or (last.settings, last.instance_id) != (self._settings(ctx), instance_id(ctx)):
            return []
        pkg = package(ctx)
        return list(last.runs) if pkg and len(last.runs) == len(pkg.data) else []

    def check(self, ctx):
        settings, host = self._settings(ctx), instance_id(ctx)
        done = ctx.load(EndpointLoadDone)
        if done is not None and (done.settings, done.instance_id) == (settings, host):
            return True
        runs = self._planned(ctx)  # killed after storing every variant's run, before the step was recorded done
        if runs and all(ctx.store.has_result(ctx.name, "sagemaker", r) for r in runs):
            ctx.save(EndpointLoadDone(settings=settings, instance_id=host, runs=tuple(runs)))
            ctx.log(f"The results of the last load test ({', '.join(runs)}) were collected already")
            return True
        return False

    def apply(self, ctx):
        rec, pkg = _need_endpoint(ctx)
        ctx.forget(EndpointLoadDone)
        s = ctx.config.sagemaker
        ctx.log(
            f"Open-loop load on {rec.endpoint} through InvokeEndpoint (Poisson arrivals, latency from each request's "
            f"scheduled time), one variant at a time, {s.step_s} s at each rate, until p99 passes "
            f"{s.latency_limit_ms:g} ms or a call fails. The generator runs on the instance, in {ctx.region}: your own "
            "network is not in the measured path"
        )
        # One run per variant, planned before any starts: a run stored before a kill is not measured again, one
        # still running on the instance is reattached (its job id is stable while it runs), the others start anew.
        planned = self._planned(ctx) or [""] * len(pkg.data)
        stored = [bool(p) and ctx.store.has_result(ctx.name, "sagemaker", p) for p in planned]
        if all(stored):  # every variant measured already, and asked again (--from): a new run of each
            planned, stored = [""] * len(pkg.data), [False] * len(pkg.data)
        runs = [
            p if done else job_id(ctx, f"sagemaker-load-{d.precision}") for p, done, d in zip(planned, stored, pkg.data)
        ]
        ctx.save(EndpointLoadRun(settings=self._settings(ctx), instance_id=instance_id(ctx), runs=tuple(runs)))
        for d, run, done in zip(pkg.data, runs, stored):
            if done:
                ctx.log(f"Variant {names.sagemaker_variant(d.precision)}: run {run} was measured and stored already")
                continue
            self._one(ctx, rec, d, f"sagemaker-load-{d.precision}", run)
        ctx.save(EndpointLoadDone(settings=self._settings(ctx), instance_id=instance_id(ctx), runs=tuple(runs)))
        self._prices(ctx, rec.instance_type)
        ctx.log(f"See them beside the instance and TorchServe with: inflab report {ctx.name}")

    def _prices(self, ctx, ml_type: str) -> None:
        """Today's SageMaker price of the endpoint's type from the AWS Pricing API (its own product, AmazonSageMaker),
        where there is one; the table shipped with inflab otherwise."""
        if not ctx.runtime.has_pricing:
            return
        import dataclasses
        import threading

        from ..aws.pricing import refresh_sagemaker
        from ..prices import PRICING_REGION, PriceError

        aws = dataclasses.replace(ctx.aws, region=PRICING_REGION, _local=threading.local())
        try:
            prices = refresh_sagemaker(aws.client("pricing"), [ml_type], ctx.region)
        except PriceError as e:
            ctx.log(f"SageMaker prices not refreshed ({e}); using the table shipped with inflab")
            return
        ctx.save(RefreshedSageMakerPrices(source=prices.source, date=prices.date, prices=dict(prices.table)))
        ctx.log(
            f"SageMaker price of {ml_type} refreshed from the AWS Pricing API: ${prices.table[ml_type]}/hour per instance"
        )

    def _one(self, ctx, rec, d: ModelData, kind: str, run: str) -> None:
        variant = names.sagemaker_variant(d.precision)
        ctx.log(f"Variant {variant} ({d.model_file}) at {', '.join(f'{r:g}' for r in rates(ctx, d))} requests/s")
        direct = direct_result(ctx, d)
        if direct is None:
            ctx.log(
                f"No direct benchmark of {d.model_file} yet (the benchmark step): the report shows no overhead for it"
            )
        command = f"mkdir -p {RESULTS} && " + aws_payload_command(
            ctx, "sagemaker-load", "loadgen.py", load_args(ctx, d, run)
        )
        started = datetime.now(timezone.utc)
        code, tail = run_job(ctx, kind, command, env={"PYTHONUNBUFFERED": "1"}, before=ship_input(ctx))
        ended = datetime.now(timezone.utc)
        raw = host_run(ctx, lambda conn: read_file(conn, f"{WORK_DIR}/{RESULTS}/{run}.load.json"), timeout=60)
        result = json.loads(raw) if raw else {}
        if code != 0 or not result.get("complete") or result.get("run_id") != run:
            raise StepError(f"The load test of variant {variant} failed (exit {code}): {' | '.join(tail[-3:])[-400:]}")
        made = sum(int(r.get("sent") or 0) for r in result.get("rates") or []) + WARMUP_CALLS
        cloudwatch = self._cloudwatch(ctx, rec.endpoint, variant, started, ended, made)
        record = self._record(ctx, rec, d, result, direct, cloudwatch)
        if ctx.store.add_result(ctx.name, "sagemaker", record, key=run):
            self._summarise(ctx, record)
        faultpoints.hit("sagemaker-load-test:results-stored")

    def _cloudwatch(
        self, ctx, endpoint: str, variant: str, started: datetime, ended: datetime, made: int
    ) -> dict | None:
        """SageMaker's own latencies over the run, from CloudWatch (average of each minute's, weighted by
        its calls), once CloudWatch counts the ``made`` calls of the run, at most ``metrics_wait_s`` later.
        SageMaker's metrics are per minute: calls of another run in the same minutes are in them too, and
        the record says how many CloudWatch counted."""
        cw = ctx.aws.client("cloudwatch")
        dims = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
        t0 = time.monotonic()
        while True:
            out = {}
            for metric in ("ModelLatency", "OverheadLatency"):
                points = cw.get_metric_statistics(
                    Namespace="AWS/SageMaker",
                    MetricName=metric,
                    Dimensions=dims,
                    StartTime=started - timedelta(minutes=1),
                    EndTime=ended + timedelta(minutes=2),
                    Period=60,
                    Statistics=["Average", "Maximum", "SampleCount"],
                )["Datapoints"]
                calls = sum(p.get("SampleCount", 0) for p in points)
                if calls:
                    out[metric] = {
                        "avg_ms": sum(p["Average"] * p["SampleCount"] for p in points) / calls / 1000,
                        "max_ms": max(p["Maximum"] for p in points) / 1000,
                        "calls": int(calls),
                    }
            counted = min((m["calls"] for m in out.values()), default=0)
            if (len(out) == 2 and counted >= made) or time.monotonic() - t0 > ctx.runtime.metrics_wait_s:
                break
            ctx.progress(
                None,
                f"Waiting for CloudWatch to show {variant}'s ModelLatency and OverheadLatency… "
                f"{time.monotonic() - t0:.0f} s",
            )
            ctx.sleep(min(10.0, ctx.runtime.metrics_wait_s))
        if not out:
            ctx.log(f"CloudWatch has no ModelLatency/OverheadLatency for {variant} yet: recorded without them")
            return None
        return {
            "model_latency_ms": out.get("ModelLatency"),
            "overhead_latency_ms": out.get("OverheadLatency"),
            "run_calls": made,
        }

    def _record(self, ctx, rec, d: ModelData, result: dict, direct: dict | None, cloudwatch: dict | None) -> dict:
        return {
            "format": FORMAT,
            "run_id": result["run_id"],
            "timestamp": result.get("started"),
            "label": ctx.name,
            "runtime": ctx.runtime.kind,
            "sandbox": ctx.runtime.kind == "sandbox",
            "deployment": "sagemaker",
            "instance_type": rec.instance_type,
            "instance_count": rec.instance_count,
            "endpoint": rec.endpoint,
            "endpoint_config": rec.config,
            "variant": names.sagemaker_variant(d.precision),
            "name": ctx.config.model_name,
            "size": ctx.runtime.model_size(ctx.config),
            "family": d.family,
            "precision": d.precision,
            "target": d.target,
            "weights": d.weights,
            "model_filename": d.model_file,
            "batch_size": d.batch_size,
            **loadgen_fields(result),
            "cloudwatch": cloudwatch,
            "direct": direct_brief(direct),
        }

    def _summarise(self, ctx, record: dict) -> None:
        for r in record["rates"]:
            ctx.log(f"{record['variant']} {rate_line(r, record['direct'])}")
        cw = record.get("cloudwatch") or {}
        if cw.get("model_latency_ms") and cw.get("overhead_latency_ms"):
            calls, mine = cw["model_latency_ms"]["calls"], cw.get("run_calls") or 0
            others = (
                f"; {calls - mine:,} of them another run's in the same minutes (SageMaker's metrics are per minute)"
                if calls > mine
                else ""
            )
            ctx.log(
                f"{record['variant']} as SageMaker saw it (CloudWatch): ModelLatency {cw['model_latency_ms']['avg_ms']:.2f} ms, "
                f"OverheadLatency {cw['overhead_latency_ms']['avg_ms']:.2f} ms on average over {calls:,} calls{others}"
            )
        ctx.log(f"{record['variant']}: {verdict(record)}")

    def in_flight(self, ctx):
        """A variant's load job still running on the instance (by the record): opening the session reattaches it."""
        jobs = ctx.load(HostJobs) or HostJobs()
        host = instance_id(ctx)
        for kind, job in jobs.current.items():
            if kind.startswith("sagemaker-load-"):
                rec = ctx.store.job(ctx.name, job)
                if rec and rec["status"] == "running" and host and rec["host"] == host:
                    return f"its load on the endpoint ({job}) is still running on the instance"
        return ""

    def undo(self, ctx):
        ctx.forget(EndpointLoadDone)  # the results stay in the session
