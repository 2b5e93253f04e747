"""AWS Batch for the sweep's steps: describing and waiting on compute environments and queues, the
job definitions the grid needs, and taking everything down in the order Batch lets go of it.

Batch lets go of things in an order, and each change takes a while to land: jobs end first
(terminated), queues are disabled and must report DISABLED before they can be deleted, compute
environments likewise, and a compute environment still tied to a queue that is going away answers
"in use" for a while. So each delete waits for the state it needs, says what it is waiting for, and
retries what AWS answers "in use"/DependencyViolation (with backoff, cancel working) instead of
telling the user to run cleanup again. The results bucket is kept unless asked.
"""

from __future__ import annotations

import time

from botocore.exceptions import ClientError

from .. import accelerators, names
from ..aws import error_code, error_message, instances, inventory, tag_dict
from .base import StepContext, StepError
from .iam_roles import remove_role
from .image import image_hash, image_tag, repository_uri
from .payload_jobs import job_args
from .records import BatchEnvironment
from .sweep_grid import bucket, grid

LOG_PREFIX = "sweep"  # awslogs-stream-prefix: streams are sweep/default/<task id>
TIME_LIMIT_REASONS = (
    "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT",
    "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE",
    "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY",
)


def definitions(ctx: StepContext) -> dict[str, dict]:
    """Job definition name → its registration (without tags), one per (family, instance type, batch size):
    the whole instance, as EC2 describes the type."""
    out: dict[str, dict] = {}
    points = grid(ctx)
    specs = instances.specs(ctx.aws, [p.instance_type for p in points])
    for p in points:
        if p.definition in out:
            continue
        spec = specs.get(p.instance_type) or accelerators.InstanceSpec(
            vcpus=accelerators.vcpus_of(p.instance_type), memory_mib=2048 * accelerators.vcpus_of(p.instance_type)
        )
        container = ctx.runtime.batch_container(
            kind=p.kind,
            image_uri=f"{repository_uri(ctx)}:{image_tag(ctx, p.kind)}",
            digest=image_hash(ctx, p.kind),
            job_args=job_args(ctx, p),
        )
        out[p.definition] = {
            "instance_type": p.instance_type,
            "devices": spec.devices,
            "containerProperties": {
                "image": container.image,
                "command": list(container.command),
                "environment": [{"name": "INFLAB_BATCH_SIZE", "value": str(p.batch_size)}],
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": names.log_group(ctx.name),
                        "awslogs-region": ctx.region,
                        "awslogs-stream-prefix": LOG_PREFIX,
                    },
                },
                **instances.job_resources(spec),
            },
        }
    return out


def definition_names(ctx: StepContext) -> list[str]:
    return list(dict.fromkeys(p.definition for p in grid(ctx)))


def wait_state(
    ctx: StepContext, what: str, describe, want: set[str], *, timeout: float = 900, delay: float = 2
) -> dict | None:
    """Poll ``describe()`` (one resource's description or None when gone) until its status is in ``want``
    (``"DELETED"`` in ``want``: until it is gone). Says what it waits for; cancel works."""
    start = time.monotonic()
    while True:
        ctx.check_cancel()
        d = describe()
        status = "DELETED" if d is None else f"{d.get('state', '')}/{d.get('status', '')}"
        if d is None and "DELETED" in want or d is not None and (d.get("status") in want or status in want):
            return d
        if d is not None and d.get("status") == "INVALID":
            raise StepError(f"{what} is INVALID: {d.get('statusReason') or 'no reason given'}")
        elapsed = time.monotonic() - start
        if elapsed > timeout:
            raise StepError(f"{what}: still {status} after {timeout:.0f} s")
        ctx.progress(None, f"Waiting for {what} ({status}, want {' or '.join(sorted(want))})… {elapsed:.0f} s")
        ctx.sleep(delay)


def log_group_exists(ctx: StepContext, group: str) -> bool:
    return inventory.log_group_named(ctx.aws, group) is not None


def describe_ce(ctx: StepContext, name: str) -> dict | None:
    found = ctx.aws.client("batch").describe_compute_environments(computeEnvironments=[name])["computeEnvironments"]
    return found[0] if found else None


def describe_queue(ctx: StepContext, name: str) -> dict | None:
    found = ctx.aws.client("batch").describe_job_queues(jobQueues=[name])["jobQueues"]
    return found[0] if found else None


def active_definition(ctx: StepContext, name: str) -> dict | None:
    defs = ctx.aws.client("batch").describe_job_definitions(jobDefinitionName=name, status="ACTIVE")["jobDefinitions"]
    return max(defs, key=lambda d: d["revision"]) if defs else None


def time_limits(ctx: StepContext) -> list[dict]:
    """The queues' jobStateTimeLimitActions: a job Batch leaves RUNNABLE for one of these reasons (it
    fits no instance type, asks more than maxvCpus, no capacity) is cancelled after the set time,
    rather than waiting — and billing nothing — forever."""
    seconds = ctx.config.batch.runnable_timeout_min * 60
    return [
        {"reason": r, "state": "RUNNABLE", "maxTimeSeconds": seconds, "action": "CANCEL"} for r in TIME_LIMIT_REASONS
    ]


ACTIVE_JOB_STATES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
IN_USE_WORDS = ("in use", "relationship", "dependent", "dependency")
RETRY_FOR_S = 900


def _in_use(e: BaseException) -> bool:
    """AWS says another resource still depends on this one (it will let go)."""
    if error_code(e) in ("DependencyViolation", "ResourceInUse", "ResourceInUseException"):
        return True
    return error_code(e) in ("ClientException", "InvalidParameterValue") and any(
        w in error_message(e).lower() for w in IN_USE_WORDS
    )


def retry_in_use(ctx: StepContext, what: str, call) -> None:
    """``call()`` until AWS stops answering "in use" (at most RETRY_FOR_S)."""
    ctx.retrying(
        call,
        when=_in_use,
        within_s=RETRY_FOR_S,
        say=lambda err, wait, attempt: (
            f"{what}: AWS says it is still in use ({error_message(err) if err else '?'}); "
            f"retrying in {wait:.0f} s (attempt {attempt})"
        ),
    )


def _names(ctx: StepContext, kind: str, from_config: list[str]) -> list[str]:
    """What to remove: the current config's names and whatever the ledger says this session made."""
    ledger = [r.name for r in ctx.store.ledger(ctx.name, live_only=True) if r.kind == kind]
    return list(dict.fromkeys(from_config + ledger))


def stop_jobs(ctx: StepContext, queues: list[str]) -> None:
    batch = ctx.aws.client("batch")
    active: list[str] = []
    for q in queues:
        for status in ACTIVE_JOB_STATES:
            try:
                pages = batch.get_paginator("list_jobs").paginate(jobQueue=q, jobStatus=status)
                active += [j["jobId"] for page in pages for j in page["jobSummaryList"]]
            except ClientError as e:
                if error_code(e) != "ClientException":  # the queue is gone already
                    raise
    for job_id in active:
        batch.terminate_job(jobId=job_id, reason="inflab cleanup")
    if active:
        ctx.log(f"Terminated {len(active)} unfinished job(s); waiting for them to stop")

        def still_running():
            jobs = batch.describe_jobs(jobs=active[:100])["jobs"]
            live = [j for j in jobs if j["status"] not in ("SUCCEEDED", "FAILED")]
            return {"status": f"{len(live)} running"} if live else None

        wait_state(ctx, f"{len(active)} job(s) to stop", still_running, {"DELETED"}, timeout=600)


def _disable_and_delete(ctx: StepContext, what: str, describe, disable, delete, disabled: set[str]) -> None:
    """The Batch order for a queue or a compute environment: DISABLED first, wait until AWS says
    so, delete (retrying while something still uses it), wait until it is gone."""
    found = describe()
    if found is None:
        return
    if found.get("state") != "DISABLED":
        disable()
    wait_state(ctx, f"{what} to be DISABLED", describe, disabled | {"DELETED"})
    retry_in_use(ctx, what, delete)
    wait_state(ctx, f"{what} to be deleted", describe, {"DELETED"})
    ctx.log(f"Deleted {what}")


def remove_queue(ctx: StepContext, name: str) -> None:
    batch = ctx.aws.client("batch")
    _disable_and_delete(
        ctx,
        f"job queue {name}",
        lambda: describe_queue(ctx, name),
        lambda: batch.update_job_queue(jobQueue=name, state="DISABLED"),
        lambda: batch.delete_job_queue(jobQueue=name),
        {"DISABLED/VALID"},
    )


def remove_compute_env(ctx: StepContext, name: str) -> None:
    batch = ctx.aws.client("batch")
    _disable_and_delete(
        ctx,
        f"compute environment {name}",
        lambda: describe_ce(ctx, name),
        lambda: batch.update_compute_environment(computeEnvironment=name, state="DISABLED"),
        lambda: batch.delete_compute_environment(computeEnvironment=name),
        {"DISABLED/VALID", "DISABLED/INVALID"},
    )


def remove_definitions(ctx: StepContext, names: list[str]) -> None:
    batch = ctx.aws.client("batch")
    for name in names:
        count = 0
        while (d := active_definition(ctx, name)) is not None:
            batch.deregister_job_definition(jobDefinition=d["jobDefinitionArn"])
            count += 1
        if count:
            ctx.log(f"Deregistered job definition {name} ({count} revision(s))")


def remove_security_group(ctx: StepContext) -> None:
    ec2 = ctx.aws.client("ec2")
    name = names.batch_security_group(ctx.name)
    for g in ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [name]}])["SecurityGroups"]:
        if tag_dict(g.get("Tags")).get(names.TAG_SESSION) != ctx.name:
            continue
        # The hosts' network interfaces linger for a while after the compute environment goes.
        retry_in_use(ctx, f"security group {name}", lambda gid=g["GroupId"]: ec2.delete_security_group(GroupId=gid))
        ctx.log(f"Deleted security group {name} ({g['GroupId']})")


def bucket_exists(ctx: StepContext, name: str) -> bool:
    try:
        ctx.aws.client("s3").head_bucket(Bucket=name)
        return True
    except ClientError as e:
        if error_code(e) in ("404", "NoSuchBucket", "NotFound"):
            return False
        raise


def remove_bucket(ctx: StepContext, name: str) -> None:
    s3 = ctx.aws.client("s3")
    if not bucket_exists(ctx, name):
        return
    count = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
        objs = [
            {"Key": o["Key"], "VersionId": o["VersionId"]}
            for o in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        if objs:
            s3.delete_objects(Bucket=name, Delete={"Objects": objs, "Quiet": True})
            count += len(objs)
    s3.delete_bucket(Bucket=name)
    ctx.log(f"Deleted S3 bucket {name} and its {count} object(s)")


def teardown(ctx: StepContext, *, delete_data: bool) -> None:
    """Everything batch-setup and batch-submit made, in the order AWS lets go of it."""
    types = list(ctx.config.batch.instance_types)
    queues = _names(ctx, "batch:job-queue", [names.job_queue(ctx.name, t) for t in types])
    envs = _names(ctx, "batch:compute-environment", [names.compute_environment(ctx.name, t) for t in types])
    from .batch_aws import definition_names, log_group_exists

    defs = _names(ctx, "batch:job-definition", definition_names(ctx))
    stop_jobs(ctx, queues)
    for q in queues:
        remove_queue(ctx, q)
    for ce in envs:
        remove_compute_env(ctx, ce)
    remove_definitions(ctx, defs)
    roles = [*names.batch_roles(ctx.name).values(), *names.legacy_batch_roles(ctx.name)]
    for role in roles:
        remove_role(ctx, role)
    remove_security_group(ctx)
    if log_group_exists(ctx, names.log_group(ctx.name)):  # by exact name: never another session's /inflab/<name>-2
        ctx.aws.client("logs").delete_log_group(logGroupName=names.log_group(ctx.name))
        ctx.log(f"Deleted log group {names.log_group(ctx.name)} (the jobs' logs are in the bucket too: job.log)")
    for kind in ("batch:job", "batch:job-queue", "batch:compute-environment", "batch:job-definition"):
        ctx.store.mark_deleted(ctx.name, kind)
    for name in roles:
        ctx.store.mark_deleted(ctx.name, "iam:role", name)
        ctx.store.mark_deleted(ctx.name, "iam:instance-profile", name)
    ctx.store.mark_deleted(ctx.name, "ec2:security-group", names.batch_security_group(ctx.name))
    name = bucket(ctx)
    if delete_data:
        remove_bucket(ctx, name)
        ctx.store.mark_deleted(ctx.name, "s3:bucket", name)
    elif bucket_exists(ctx, name):
        ctx.log(f"Kept the results bucket s3://{name} (delete it with: inflab cleanup {ctx.name} --delete-data)")
    ctx.forget(BatchEnvironment)
