"""Steps `sagemaker-package`, `sagemaker-endpoint` and `sagemaker-delete`: the compiled model behind a
SageMaker real-time endpoint, as the seed deploys BERT fp32 and int8 to ml.c6i.

`sagemaker-package` packs each compiled model of the session's target (fp32, and int8 on CPU
targets) with the lab's handler, its manifest and tokenizer into ``model.tar.gz`` on the instance
(``payload/sagemaker_package.py``, a detached job) and puts it in the session's bucket under
``SESSION/sagemaker/<precision>/``, with the instance role's credentials. `sagemaker-endpoint` makes
the execution role (read that prefix, pull the session's image, write the endpoint's logs and
metrics), one model per precision (the session's ECR image, whose ``serve`` is SageMaker's container
contract: ``payload/sagemaker_serve.py``), an endpoint configuration with one production variant per
precision on ``[sagemaker] instance_type`` × ``instance_count``, and the endpoint, then waits for
InService with the container's CloudWatch log in the job pane. `sagemaker-delete` takes it all
down; the endpoint step then stays done (``--from sagemaker-endpoint`` makes it again).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time

from botocore.exceptions import ClientError

from .. import faultpoints, ml_types, names
from ..aws import error_code, error_message
from . import results_bucket
from .base import Step, StepContext, StepError
from .image import image_hash, image_tag, image_uri
from .payload_jobs import digest
from .records import CompiledModel, CompiledModels, Endpoint, ModelData, Package
from .remote_job import WORK_DIR, host_run, payload_files, read_file, run_job, upload_payload
from .sagemaker_aws import (
    allow_invoke,
    aws_payload_command,
    config_exists,
    data_prefix,
    describe_endpoint,
    describe_model,
    disabled,
    endpoint_record,
    ensure_role,
    package,
    remove_config,
    remove_endpoint,
    remove_model,
    teardown,
)
from .sweep_grid import bucket

CREATE_TIMEOUT_S = 2400  # SageMaker's own limits: the download, then the container's health check (600 s here)
HEALTH_CHECK_S = 600  # ContainerStartupHealthCheckTimeoutInSeconds: a full BERT loads in well under a minute
ROLE_WAIT_S = 120  # a new execution role takes a while to reach SageMaker ("Could not assume role")
OUT = "sagemaker"  # under WORK_DIR on the instance: sagemaker/<precision>/model.tar.gz


def artifacts(ctx: StepContext) -> list[CompiledModel]:
    """The compiled models the endpoint serves: the session's target's (fp32, and int8 on a CPU)."""
    compiled = ctx.load(CompiledModels)
    arts = list(compiled.artifacts) if compiled else []
    own = [a for a in arts if a.target == ctx.runtime.payload_target(ctx.config)]
    return sorted(own, key=lambda a: (a.precision != "fp32", a.precision or ""))


def package_args(ctx: StepContext, art: CompiledModel, bucket_name: str) -> list[str]:
    key = f"{data_prefix(ctx)}{art.precision}/model.tar.gz"
    return [
        "--model",
        f"models/{art.file}",
        "--out",
        f"{OUT}/{art.precision}",
        "--upload",
        f"s3://{bucket_name}/{key}",
        "--region",
        ctx.region,
    ]


def _fits(ctx: StepContext, targets: list[str]) -> None:
    itype = ctx.config.sagemaker.instance_type
    for target in targets:
        why = ml_types.misfit(itype, target)
        if why:
            raise StepError(f"[sagemaker] instance_type: {why}")


# ------------------------------------------------------------------------------ sagemaker-package
class SageMakerPackage(Step):
    id = "sagemaker-package"

    def not_for(self, ctx):
        return disabled(ctx)

    def cli(self, ctx):
        arts = artifacts(ctx) or [CompiledModel(file="<model>.pt", precision="fp32")]
        b = names.results_bucket(ctx.name, "<account>")
        return [
            "# on the instance: model.tar.gz (model, manifest, tokenizer, handler in code/), then to S3:",
            *(
                aws_payload_command(ctx, "sagemaker-package", "sagemaker_package.py", package_args(ctx, a, b))
                for a in arts
            ),
        ]

    def _settings(self, ctx) -> str:
        code = payload_files()
        made_by = hashlib.sha256(b"".join(code[n] for n in ("sagemaker_package.py", "inflab_handler.py", "targets.py")))
        return digest(
            [
                [(a.file, a.precision) for a in artifacts(ctx)],
                (ctx.load(CompiledModels) or CompiledModels(settings="", instance_id="")).settings,
                made_by.hexdigest(),
            ]
        )

    def check(self, ctx):
        made = endpoint_record(ctx)
        if made is not None and made.deleted:
            return True  # taken down on purpose by sagemaker-delete (--from sagemaker-package makes it again)
        rec = package(ctx)
        if rec is None or rec.settings != self._settings(ctx):
            return False
        s3 = ctx.aws.client("s3")
        for d in rec.data:
            try:
                if s3.head_object(Bucket=rec.bucket, Key=d.key)["ContentLength"] != d.bytes:
                    return False
            except ClientError as e:
                if error_code(e) in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
                    return False
                raise
        return True

    def apply(self, ctx):
        arts = artifacts(ctx)
        if not arts:
            raise StepError("Nothing compiled for this session's target yet: run the compile step first")
        _fits(ctx, [a.target or "" for a in arts])
        ctx.forget(Package)
        name = results_bucket.ensure(ctx)
        ctx.log(
            f"Packing {', '.join(a.precision for a in arts)} as SageMaker model data (model.tar.gz: the compiled "
            "model, its manifest, the class names, the tokenizer if any, and the lab's handler in code/), then putting "
            f"each in s3://{name}/{data_prefix(ctx)}<precision>/ with the instance's own credentials"
        )
        command = " && ".join(
            aws_payload_command(ctx, "sagemaker-package", "sagemaker_package.py", package_args(ctx, a, name))
            for a in arts
        )
        code, tail = run_job(ctx, "sagemaker-package", command, env={"PYTHONUNBUFFERED": "1"}, before=upload_payload)
        if code != 0:
            raise StepError(f"Packaging for SageMaker failed (exit {code}): {' | '.join(tail[-3:])[-400:]}")

        async def fetch(conn):
            import json

            return [
                json.loads(await read_file(conn, f"{WORK_DIR}/{OUT}/{a.precision}/package.json") or b"{}") for a in arts
            ]

        infos = host_run(ctx, fetch, timeout=60)
        data = []
        s3 = ctx.aws.client("s3")
        for a, info in zip(arts, infos):
            key = f"{data_prefix(ctx)}{a.precision}/model.tar.gz"
            if info.get("uploaded") != f"s3://{name}/{key}":
                raise StepError(f"The package job did not upload {a.precision}'s model data to s3://{name}/{key}")
            size = s3.head_object(Bucket=name, Key=key)["ContentLength"]
            if size != info.get("bytes"):
                raise StepError(
                    f"s3://{name}/{key} holds {size:,} bytes, the package {info.get('bytes'):,}: upload again"
                )
            data.append(
                ModelData(
                    precision=a.precision or "",
                    target=a.target or "",
                    family=a.family or "",
                    model_file=info["model_file"],
                    batch_size=int(info.get("batch_size") or 1),
                    key=key,
                    sha256=info["sha256"],
                    bytes=int(info["bytes"]),
                    weights=info.get("weights"),
                    labels=int(info.get("labels") or 0),
                )
            )
        ctx.save(Package(settings=self._settings(ctx), bucket=name, data=tuple(data)))
        for d in data:
            ctx.log(
                f"s3://{name}/{d.key}: {d.bytes / 1e6:.1f} MB, sha256 {d.sha256[:12]}… ({d.precision}, {d.model_file})"
            )

    def undo(self, ctx):
        rec = package(ctx)
        name = rec.bucket if rec else bucket(ctx)
        n = results_bucket.remove_prefix(ctx, name, data_prefix(ctx))
        if n:
            ctx.log(f"Deleted the model data s3://{name}/{data_prefix(ctx)} ({n} object(s))")
        ctx.forget(Package)
        if ctx.delete_data:
            from .batch_aws import remove_bucket

            remove_bucket(ctx, name)
            ctx.store.mark_deleted(ctx.name, "s3:bucket", name)


# ------------------------------------------------------------------------------ sagemaker-endpoint
def model_environment(ctx: StepContext, d: ModelData) -> dict[str, str]:
    """The container's settings, as AWS's PyTorch containers name them: the serving exercise's
    [serve] batching, so the two deployments batch alike."""
    s = ctx.config.serve
    env = {
        "SAGEMAKER_TS_BATCH_SIZE": str(s.batch_size or d.batch_size),
        "SAGEMAKER_TS_MAX_BATCH_DELAY": str(s.max_batch_delay_ms),
        "SAGEMAKER_TS_RESPONSE_TIMEOUT": "60",
        "SAGEMAKER_REGION": ctx.region,
    }
    if s.workers:
        env["SAGEMAKER_MODEL_SERVER_WORKERS"] = str(s.workers)
    return env


def variants(ctx: StepContext, pkg: Package) -> list[dict]:
    sm = ctx.config.sagemaker
    return [
        {
            "VariantName": names.sagemaker_variant(d.precision),
            "ModelName": names.sagemaker_model(ctx.name, d.precision),
            "InitialInstanceCount": sm.instance_count,
            "InstanceType": sm.instance_type,
            "InitialVariantWeight": 1.0,
            "ContainerStartupHealthCheckTimeoutInSeconds": HEALTH_CHECK_S,
        }
        for d in pkg.data
    ]


def _could_not_assume(e: BaseException) -> bool:
    return isinstance(e, ClientError) and "could not assume role" in error_message(e).lower()


class SageMakerEndpoint(Step):
    id = "sagemaker-endpoint"

    def not_for(self, ctx):
        return disabled(ctx)

    def cli(self, ctx):
        sm = ctx.config.sagemaker
        ep, role = names.sagemaker_endpoint(ctx.name), names.sagemaker_role(ctx.name)
        config = names.sagemaker_endpoint_config(ctx.name, rec.n if (rec := endpoint_record(ctx)) else 1)
        b = names.results_bucket(ctx.name, "<account>")
        return [
            f"aws iam create-role --role-name {role} --path /inflab/ --assume-role-policy-document file://trust-sagemaker.json",
            f"aws iam put-role-policy --role-name {role} --policy-name inflab-sagemaker --policy-document file://execution.json",
            *(
                f"aws sagemaker create-model --model-name {names.sagemaker_model(ctx.name, p)} --execution-role-arn <role arn> "
                f"--primary-container Image={image_uri(ctx)},ModelDataUrl=s3://{b}/{data_prefix(ctx)}{p}/model.tar.gz"
                for p in ([a.precision for a in artifacts(ctx)] or ["fp32"])
            ),
            f"aws sagemaker create-endpoint-config --endpoint-config-name {config} --production-variants "
            f"VariantName=fp32,ModelName={names.sagemaker_model(ctx.name, 'fp32')},InstanceType={sm.instance_type},"
            f"InitialInstanceCount={sm.instance_count} ...",
            f"aws sagemaker create-endpoint --endpoint-name {ep} --endpoint-config-name {config}",
            f"aws sagemaker wait endpoint-in-service --endpoint-name {ep}",
            f"aws logs tail {names.sagemaker_log_group(ep)} --follow",
        ]

    def _settings(self, ctx, pkg: Package) -> str:
        return digest([pkg.settings, image_uri(ctx), variants(ctx, pkg), [model_environment(ctx, d) for d in pkg.data]])

    def check(self, ctx):
        rec, pkg = endpoint_record(ctx), package(ctx)
        if rec is not None and rec.deleted:
            return True  # taken down on purpose by sagemaker-delete (--from sagemaker-endpoint makes it again)
        if rec is None or pkg is None or rec.settings != self._settings(ctx, pkg):
            return False
        found = describe_endpoint(ctx, rec.endpoint)
        return (
            bool(found) and found.get("EndpointStatus") == "InService" and found.get("EndpointConfigName") == rec.config
        )

    def apply(self, ctx):
        pkg = package(ctx)
        if pkg is None:
            raise StepError("No model data in S3 yet: run the sagemaker-package step first")
        _fits(ctx, [d.target for d in pkg.data])
        self._image_ready(ctx)
        settings = self._settings(ctx, pkg)
        old = endpoint_record(ctx)
        n = (old.n + 1 if old.settings != settings else old.n) if old else 1
        endpoint, config = names.sagemaker_endpoint(ctx.name), names.sagemaker_endpoint_config(ctx.name, n)
        role = ensure_role(ctx)
        if allow_invoke(ctx):
            ctx.log(
                f"The instance role may now invoke {endpoint} (inline policy inflab-sagemaker-invoke): the load test "
                "runs on the instance"
            )
        models = [self._model(ctx, pkg, d, role) for d in pkg.data]
        self._config(ctx, config, variants(ctx, pkg))
        rec = Endpoint(
            settings=settings,
            n=n,
            endpoint=endpoint,
            config=config,
            models=tuple(models),
            variants=tuple(d.precision for d in pkg.data),
            role_arn=role,
            instance_type=ctx.config.sagemaker.instance_type,
            instance_count=ctx.config.sagemaker.instance_count,
            image=image_uri(ctx),
        )
        found = describe_endpoint(ctx, endpoint)
        if found and (
            found.get("EndpointConfigName") != config or found.get("EndpointStatus") in ("Failed", "Deleting")
        ):
            why = (
                f"it was {found['EndpointStatus']}"
                if found.get("EndpointConfigName") == config
                else f"its configuration {found.get('EndpointConfigName')} is not this one ({config})"
            )
            ctx.log(f"Endpoint {endpoint} exists but {why}: deleting it to make it anew")
            remove_endpoint(ctx, endpoint)
            found = None
        if found is None:
            with ctx.creating("sagemaker:endpoint", endpoint, {"config": config}) as made:
                made(
                    ctx.aws.client("sagemaker").create_endpoint(
                        EndpointName=endpoint, EndpointConfigName=config, Tags=ctx.tags(Name=endpoint)
                    )["EndpointArn"]
                )
            ctx.log(
                f"Created endpoint {endpoint}: {len(models)} variant(s) ({', '.join(rec.variants)}) on "
                f"{rec.instance_count} × {rec.instance_type} each, billed from now until it is deleted"
            )
        else:
            ctx.log(f"Endpoint {endpoint} is already being made ({found.get('EndpointStatus')}): waiting for it")
        made = str((describe_endpoint(ctx, endpoint) or {}).get("CreationTime") or "")
        rec = dataclasses.replace(rec, made=made)
        ctx.save(rec)  # before the wait: a kill now finds the same endpoint next time
        faultpoints.hit("sagemaker-endpoint:created")
        for old_config in [old.config] if old and old.config != config else []:
            remove_config(ctx, old_config)
        ready_s = self._wait(ctx, endpoint)
        ctx.save(dataclasses.replace(rec, ready_s=round(ready_s, 1)))
        ctx.log(
            f"Endpoint {endpoint} is InService after {ready_s:.0f} s. Try it: aws sagemaker-runtime invoke-endpoint "
            f"--endpoint-name {endpoint} --content-type application/json --body fileb://pair.json out.json"
        )

    def _image_ready(self, ctx) -> None:
        why = ctx.runtime.batch_image_missing(
            ctx.aws.client("ecr"), names.repository(ctx.name), image_tag(ctx), image_hash(ctx)
        )
        if why:
            raise StepError(f"SageMaker runs the session's image, and {why}")

    def _model(self, ctx, pkg: Package, d: ModelData, role: str) -> str:
        name = names.sagemaker_model(ctx.name, d.precision)
        container = {"Image": image_uri(ctx), "ModelDataUrl": pkg.url(d), "Environment": model_environment(ctx, d)}
        found = describe_model(ctx, name)
        if found is not None:
            have = found.get("PrimaryContainer") or {}
            if all(have.get(k) == v for k, v in container.items()) and found.get("ExecutionRoleArn") == role:
                return name
            ctx.log(f"Model {name} exists with other settings: making it anew")
            remove_model(ctx, name)
        sm = ctx.aws.client("sagemaker")

        with ctx.creating("sagemaker:model", name) as made:
            made(
                ctx.retrying(
                    lambda: sm.create_model(
                        ModelName=name, ExecutionRoleArn=role, PrimaryContainer=container, Tags=ctx.tags(Name=name)
                    )["ModelArn"],
                    when=_could_not_assume,
                    within_s=ROLE_WAIT_S,
                    say=lambda err, wait, attempt: (
                        "SageMaker cannot assume the new role yet (IAM is still publishing it); "
                        f"trying again in {wait:.0f} s"
                    ),
                )
            )
        ctx.log(
            f"Created model {name}: image {container['Image'].rsplit('/', 1)[-1]}, data {container['ModelDataUrl']}"
        )
        return name

    def _config(self, ctx, name: str, wanted: list[dict]) -> None:
        if config_exists(ctx, name):
            running = describe_endpoint(ctx, names.sagemaker_endpoint(ctx.name)) or {}
            if running.get("EndpointConfigName") == name:
                return  # the endpoint made from it (a run cut short after CreateEndpoint) keeps it
            remove_config(ctx, name)  # left by a run cut short before its endpoint: made again as it should be
        with ctx.creating("sagemaker:endpoint-config", name) as made:
            made(
                ctx.aws.client("sagemaker").create_endpoint_config(
                    EndpointConfigName=name, ProductionVariants=wanted, Tags=ctx.tags(Name=name)
                )["EndpointConfigArn"]
            )
        ctx.log(
            f"Created endpoint configuration {name}: "
            + "; ".join(
                f"variant {v['VariantName']} → {v['ModelName']} on {v['InitialInstanceCount']} × {v['InstanceType']}"
                for v in wanted
            )
        )

    def _wait(self, ctx, endpoint: str) -> float:
        """Until InService (seconds taken), the container's log streamed to the job pane; Failed is a StepError
        with SageMaker's FailureReason."""
        logs = ctx.aws.client("logs")
        group = names.sagemaker_log_group(endpoint)
        start = int(time.time() * 1000) - 60_000
        seen: set[str] = set()
        tail: list[str] = []
        t0 = time.monotonic()
        while True:
            found = describe_endpoint(ctx, endpoint)
            status = (found or {}).get("EndpointStatus", "gone")
            try:
                events = logs.filter_log_events(logGroupName=group, startTime=start)["events"]
            except ClientError as e:
                if error_code(e) != "ResourceNotFoundException":  # the group comes with the first instance
                    raise
                events = []
            new = [ev for ev in events if ev["eventId"] not in seen]
            if new:
                seen.update(ev["eventId"] for ev in new)
                start = max(start, max(ev["timestamp"] for ev in new))
                lines = [f"{ev['logStreamName']}: {ev['message']}" for ev in new]
                tail = (tail + lines)[-20:]
                ctx.output(lines)
            waited = time.monotonic() - t0
            if status == "InService":
                return waited
            if status in ("Failed", "gone", "OutOfService"):
                reason = (found or {}).get("FailureReason") or (
                    "it was deleted meanwhile" if status == "gone" else "no reason given"
                )
                said = [t for t in tail if "Error" in t or "error" in t or "Exception" in t] or tail
                raise StepError(
                    f"Endpoint {endpoint} is {status} after {waited:.0f} s: {reason}"
                    + (f" The container said: {said[-1][-300:]}" if said else "")
                    + " — running this step again deletes it and makes it anew"
                )
            if waited > CREATE_TIMEOUT_S:
                raise StepError(
                    f"Endpoint {endpoint} is still {status} after {CREATE_TIMEOUT_S} s; "
                    f"see aws sagemaker describe-endpoint --endpoint-name {endpoint}"
                )
            ctx.progress(
                None,
                f"Endpoint {endpoint}: {status}… {waited:.0f} s (SageMaker starts the instances, "
                "downloads the model data, starts the container and waits for its /ping)",
            )
            ctx.sleep(ctx.runtime.sagemaker_poll_s)

    def undo(self, ctx):
        teardown(ctx, data=False)
        ctx.forget(Endpoint)


# ------------------------------------------------------------------------------ sagemaker-delete
class SageMakerDelete(Step):
    id = "sagemaker-delete"

    def not_for(self, ctx):
        return disabled(ctx)

    def cli(self, ctx):
        ep = names.sagemaker_endpoint(ctx.name)
        rec = endpoint_record(ctx)
        b = names.results_bucket(ctx.name, "<account>")
        return [
            f"aws sagemaker delete-endpoint --endpoint-name {ep}",
            f"aws sagemaker wait endpoint-deleted --endpoint-name {ep}",
            f"aws sagemaker delete-endpoint-config --endpoint-config-name {rec.config if rec else ep + '-N'}",
            *(
                f"aws sagemaker delete-model --model-name {m}"
                for m in (rec.models if rec else [names.sagemaker_model(ctx.name, "fp32")])
            ),
            f"aws iam delete-role-policy --role-name {names.sagemaker_role(ctx.name)} --policy-name inflab-sagemaker",
            f"aws iam delete-role --role-name {names.sagemaker_role(ctx.name)}",
            f"aws s3 rm --recursive s3://{b}/{data_prefix(ctx)}",
        ]

    def check(self, ctx):
        from .sagemaker_aws import leftovers

        return not leftovers(ctx)

    def apply(self, ctx):
        teardown(ctx, data=True)
        rec = endpoint_record(ctx)
        if rec is not None:
            ctx.save(dataclasses.replace(rec, deleted=True))
        ctx.log(
            f"The SageMaker exercise's resources are gone; its results stay in the session (inflab report {ctx.name}). "
            f"To deploy again: inflab run --name {ctx.name} --from sagemaker-package"
        )

    def undo(self, ctx):
        pass  # nothing to put back: the package and endpoint steps make it again
