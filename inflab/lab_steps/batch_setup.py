"""Step `batch-setup`: what the sweep runs on — bucket, roles, compute environments, queues, definitions.

- An S3 bucket for the results (named for the session and account, public access blocked,
  encrypted, tagged); the jobs write under ``s3://BUCKET/SESSION/``.
- IAM: the hosts' role and instance profile (``AmazonEC2ContainerServiceforEC2Role``: the ECS
  agent) and the jobs' role, allowed only to write under the session's prefix of the bucket and to
  the session's log group. Batch itself acts through its service-linked role (AWSServiceRoleForBatch,
  which Batch makes on first use): no service role of the lab's to wait on.
- A security group with no inbound rule (the hosts only pull images and write results).
- One managed EC2 compute environment per instance type, scaling from 0 vCPUs, on the Amazon
  Linux 2023 ECS-optimized AMI for its accelerator (from its public SSM parameter), and a job queue on
  each, which cancels a job Batch cannot place after ``batch.runnable_timeout_min``.
- One job definition per (family, instance type, batch size): the session's image — its tag names
  the payload it bakes in — asking for the whole instance (every Neuron device mapped in, every
  GPU, its vCPUs and memory: one job per host); its command compiles, benchmarks and copies models,
  results and the readable log to S3.

A compute environment made seconds after its roles can go INVALID while IAM propagates them
("CLIENT_ERROR … not authorized"), and would stay so: it is made again after a wait, saying so.
"""

from __future__ import annotations

import hashlib
import json

from botocore.exceptions import ClientError

from .. import accelerators, names
from ..aws import error_code, tag_dict
from . import results_bucket
from .base import Step, StepContext, StepError
from .batch_aws import (
    active_definition,
    definition_names,
    definitions,
    describe_ce,
    describe_queue,
    log_group_exists,
    time_limits,
    wait_state,
)
from .iam_roles import ensure_role
from .image import image_hash, image_tag
from .records import BatchEnvironment, Repository
from .sweep_grid import grid

ECS_HOST_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
LOG_RETENTION_DAYS = 14
HOST_ROLE_TAG = {names.TAG_ROLE: names.BATCH_HOST}  # on the hosts Batch launches: not the lab's own instance
REPAIR_WAITS_S = (10, 20, 40, 60)  # before each new try at a compute environment IAM has not caught up with


def job_policy(ctx: StepContext, bucket_name: str, account: str) -> dict:
    """The jobs may write under the session's prefix and to the session's log group: nothing else."""
    group = names.log_group(ctx.name)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "SweepResults",
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:GetObject"],
                "Resource": f"arn:aws:s3:::{bucket_name}/{ctx.name}/*",
            },
            {
                "Sid": "SweepLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": [
                    f"arn:aws:logs:{ctx.region}:{account}:log-group:{group}",
                    f"arn:aws:logs:{ctx.region}:{account}:log-group:{group}:*",
                ],
            },
        ],
    }


def settings_digest(ctx: StepContext) -> str:
    data = {
        "grid": [p.job_name for p in grid(ctx)],
        "defs": {k: v["containerProperties"] for k, v in definitions(ctx).items()},
        "max_vcpus": ctx.config.batch.max_vcpus,
        "runnable_timeout_min": ctx.config.batch.runnable_timeout_min,
        "hosts": {
            t: accelerators.BATCH_HOSTS[accelerators.kind_of(t)].ami_parameter for t in ctx.config.batch.instance_types
        },
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


class BatchSetup(Step):
    id = "batch-setup"

    def cli(self, ctx):
        cmds = [
            f"aws s3api create-bucket --bucket {names.results_bucket(ctx.name, '<account>')} --create-bucket-configuration LocationConstraint={ctx.region}",
            f"aws s3api put-public-access-block --bucket {names.results_bucket(ctx.name, '<account>')} --public-access-block-configuration "
            "BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true",
            f"aws s3api put-bucket-encryption --bucket {names.results_bucket(ctx.name, '<account>')} --server-side-encryption-configuration "
            '\'{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"AES256"}}]}\'',
        ]
        for role in names.batch_roles(ctx.name).values():
            cmds.append(
                f"aws iam create-role --role-name {role} --path {names.IAM_PATH} --assume-role-policy-document file://trust.json"
            )
        for itype in ctx.config.batch.instance_types:
            cmds.append(
                f"aws batch create-compute-environment --compute-environment-name {names.compute_environment(ctx.name, itype)} --type MANAGED "
                f"--compute-resources type=EC2,minvCpus=0,maxvCpus={ctx.config.batch.max_vcpus},instanceTypes={itype},..."
            )
            cmds.append(
                f"aws batch create-job-queue --job-queue-name {names.job_queue(ctx.name, itype)} --priority 1 "
                f"--compute-environment-order order=1,computeEnvironment={names.compute_environment(ctx.name, itype)}"
            )
        for name in definition_names(ctx):
            cmds.append(
                f"aws batch register-job-definition --job-definition-name {name} --type container "
                "--container-properties file://container.json"
            )
        return cmds

    def check(self, ctx):
        done = ctx.load(BatchEnvironment)
        if not done or done.settings != settings_digest(ctx):
            return False
        try:
            ctx.aws.client("s3").head_bucket(Bucket=done.bucket)
        except ClientError as e:
            if error_code(e) in ("404", "NoSuchBucket", "403", "NotFound"):
                return False
            raise
        for itype in ctx.config.batch.instance_types:
            ce, q = (
                describe_ce(ctx, names.compute_environment(ctx.name, itype)),
                describe_queue(ctx, names.job_queue(ctx.name, itype)),
            )
            if (
                not ce
                or not q
                or ce.get("status") != "VALID"
                or q.get("status") != "VALID"
                or q.get("state") != "ENABLED"
            ):
                return False
            if q.get("jobStateTimeLimitActions") != time_limits(ctx):
                return False
        return all(active_definition(ctx, name) for name in definitions(ctx))

    def apply(self, ctx):
        defs = definitions(ctx)
        self._images_ready(ctx)
        name = results_bucket.ensure(ctx)
        arns = self._roles(ctx, name)
        group_id, subnets = self._network(ctx)
        self._log_group(ctx)
        amis: dict[str, str] = {}
        for itype in ctx.config.batch.instance_types:
            host = accelerators.BATCH_HOSTS[accelerators.kind_of(itype)]
            if host.ami_parameter not in amis:
                amis[host.ami_parameter] = ctx.aws.client("ssm").get_parameter(Name=host.ami_parameter)["Parameter"][
                    "Value"
                ]
            self._compute_env(ctx, itype, arns, group_id, subnets, host.image_type, amis[host.ami_parameter])
        for itype in ctx.config.batch.instance_types:
            self._queue(ctx, itype)
        registered = {}
        for def_name, spec in defs.items():
            registered[def_name] = self._definition(ctx, def_name, spec["containerProperties"], arns["job"])
            ctx.log(
                f"  {def_name}: the whole {spec['instance_type']} — {spec['devices']}, "
                + ", ".join(
                    f"{r['type'].lower()} {r['value']}" for r in spec["containerProperties"]["resourceRequirements"]
                )
            )
        ctx.save(
            BatchEnvironment(
                settings=settings_digest(ctx),
                bucket=name,
                definitions=registered,
                security_group=group_id,
                roles=arns,
                devices={spec["instance_type"]: spec["devices"] for spec in defs.values()},
            )
        )
        ctx.log(
            f"Ready: {len(ctx.config.batch.instance_types)} compute environment(s) and queue(s), {len(registered)} job "
            f"definition(s), one job per host; results go to s3://{name}/{ctx.name}/"
        )

    # -- the pieces ---------------------------------------------------------------------------
    def _images_ready(self, ctx) -> None:
        if not ctx.load(Repository):
            raise StepError(
                "No ECR repository recorded: run the ecr-repo step first (the jobs run the session's image)"
            )
        ecr = ctx.aws.client("ecr")
        missing = [
            why
            for k in sorted({p.kind for p in grid(ctx)})
            if (
                why := ctx.runtime.batch_image_missing(
                    ecr, names.repository(ctx.name), image_tag(ctx, k), image_hash(ctx, k)
                )
            )
        ]
        if missing:
            raise StepError("; ".join(missing))

    def _role(self, ctx, name: str, service: str, *, managed: str = "", inline: dict | None = None) -> str:
        arn = ensure_role(ctx, name, service, purpose="sweep role")
        iam = ctx.aws.client("iam")
        if managed:
            iam.attach_role_policy(RoleName=name, PolicyArn=managed)
        if inline:
            iam.put_role_policy(RoleName=name, PolicyName="inflab-sweep", PolicyDocument=json.dumps(inline))
        return arn

    def _roles(self, ctx, bucket_name: str) -> dict[str, str]:
        from .sweep_grid import account

        roles = names.batch_roles(ctx.name)
        arns = {
            "host": self._role(ctx, roles["instance"], "ec2.amazonaws.com", managed=ECS_HOST_POLICY),
            "job": self._role(
                ctx, roles["job"], "ecs-tasks.amazonaws.com", inline=job_policy(ctx, bucket_name, account(ctx))
            ),
        }
        iam = ctx.aws.client("iam")
        profile_name = roles["instance"]
        try:
            prof = iam.get_instance_profile(InstanceProfileName=profile_name)["InstanceProfile"]
        except ClientError as e:
            if error_code(e) != "NoSuchEntity":
                raise
            with ctx.creating("iam:instance-profile", profile_name) as made:
                prof = iam.create_instance_profile(
                    InstanceProfileName=profile_name, Path=names.IAM_PATH, Tags=ctx.tags()
                )["InstanceProfile"]
                made(prof["Arn"])
        if not any(r["RoleName"] == profile_name for r in prof.get("Roles", [])):
            iam.add_role_to_instance_profile(InstanceProfileName=profile_name, RoleName=profile_name)
        iam.get_waiter("instance_profile_exists").wait(
            InstanceProfileName=profile_name, WaiterConfig={"Delay": 2, "MaxAttempts": 30}
        )
        arns["profile"] = prof["Arn"]
        ctx.log(
            "Roles: hosts (AmazonEC2ContainerServiceforEC2Role), jobs (write "
            f"s3://{bucket_name}/{ctx.name}/* and log group {names.log_group(ctx.name)} only); Batch acts through its "
            "service-linked role AWSServiceRoleForBatch"
        )
        return arns

    def _network(self, ctx) -> tuple[str, list[str]]:
        ec2 = ctx.aws.client("ec2")
        if ctx.config.instance.subnet_id:
            subnets = ec2.describe_subnets(SubnetIds=[ctx.config.instance.subnet_id])["Subnets"]
        else:
            subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
        if not subnets:
            raise StepError("No default subnets in this region: set instance.subnet_id in the config")
        vpc = subnets[0]["VpcId"]
        name = names.batch_security_group(ctx.name)
        found = ec2.describe_security_groups(
            Filters=[{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc]}]
        )
        if found["SecurityGroups"]:
            group_id = found["SecurityGroups"][0]["GroupId"]
        else:
            with ctx.creating("ec2:security-group", name) as made:
                group_id = ec2.create_security_group(
                    GroupName=name,
                    VpcId=vpc,
                    Description="inflab sweep hosts: no inbound",
                    TagSpecifications=[ctx.tag_spec("security-group")],
                )["GroupId"]
                made(group_id)
            ctx.log(f"Created security group {name} ({group_id}): no inbound rule")
        return group_id, [s["SubnetId"] for s in subnets if s["VpcId"] == vpc]

    def _log_group(self, ctx) -> None:
        logs = ctx.aws.client("logs")
        group = names.log_group(ctx.name)
        if not log_group_exists(ctx, group):  # by exact name: /inflab/lab must not be taken for /inflab/lab-2
            logs.create_log_group(logGroupName=group, tags=tag_dict(ctx.tags()))
            logs.put_retention_policy(logGroupName=group, retentionInDays=LOG_RETENTION_DAYS)
            ctx.log(f"Created log group {group} (kept {LOG_RETENTION_DAYS} days)")

    def _compute_env(
        self, ctx, itype: str, arns: dict, group_id: str, subnets: list[str], image_type: str, ami: str
    ) -> None:
        name = names.compute_environment(ctx.name, itype)
        batch = ctx.aws.client("batch")
        ce = describe_ce(ctx, name)
        if ce is None:
            self._create_ce(ctx, itype, arns, group_id, subnets, image_type, ami)
        elif ce.get("state") != "ENABLED":
            batch.update_compute_environment(computeEnvironment=name, state="ENABLED")
        for wait in (*REPAIR_WAITS_S, None):
            ce = wait_state(ctx, f"compute environment {name}", lambda: describe_ce(ctx, name), {"VALID", "INVALID"})
            if ce.get("status") == "VALID":
                return
            reason = ce.get("statusReason") or "no reason given"
            if wait is None or not reason.startswith("CLIENT_ERROR"):
                raise StepError(
                    f"compute environment {name} is INVALID: {reason}. Fix what it names and run this step "
                    "again (it makes the environment anew)"
                )
            ctx.log(
                f"Compute environment {name} is INVALID: {reason[:300]}. A new IAM role takes a while to reach "
                f"AWS Batch: making the environment again in {wait} s"
            )
            ctx.sleep(wait)
            from .batch_aws import remove_compute_env, remove_queue

            queue = describe_queue(ctx, names.job_queue(ctx.name, itype))
            if queue and any(
                o.get("computeEnvironment") in (ce["computeEnvironmentArn"], name)
                for o in queue.get("computeEnvironmentOrder") or []
            ):
                remove_queue(ctx, names.job_queue(ctx.name, itype))  # it is made again right after
            remove_compute_env(ctx, name)
            self._create_ce(ctx, itype, arns, group_id, subnets, image_type, ami)

    def _create_ce(
        self, ctx, itype: str, arns: dict, group_id: str, subnets: list[str], image_type: str, ami: str
    ) -> None:
        name = names.compute_environment(ctx.name, itype)
        with ctx.creating("batch:compute-environment", name) as made:
            ce = ctx.aws.client("batch").create_compute_environment(
                computeEnvironmentName=name,
                type="MANAGED",
                state="ENABLED",  # no serviceRole: Batch's service-linked role
                computeResources={
                    "type": "EC2",
                    "allocationStrategy": "BEST_FIT_PROGRESSIVE",
                    "minvCpus": 0,
                    "desiredvCpus": 0,
                    "maxvCpus": ctx.config.batch.max_vcpus,
                    "instanceTypes": [itype],
                    "subnets": subnets,
                    "securityGroupIds": [group_id],
                    "instanceRole": arns["profile"],
                    "ec2Configuration": [{"imageType": image_type, "imageIdOverride": ami}],
                    "tags": {"Name": name, **tag_dict(ctx.tags()), **HOST_ROLE_TAG},
                },
                tags=tag_dict(ctx.tags()),
            )
            made(ce["computeEnvironmentArn"])
        ctx.log(
            f"Created compute environment {name}: {itype}, 0–{ctx.config.batch.max_vcpus} vCPUs, AMI {ami} ({image_type})"
        )

    def _queue(self, ctx, itype: str) -> None:
        name, ce = names.job_queue(ctx.name, itype), names.compute_environment(ctx.name, itype)
        limits = time_limits(ctx)
        batch = ctx.aws.client("batch")
        q = describe_queue(ctx, name)
        if q is None:
            with ctx.creating("batch:job-queue", name) as made:
                q = batch.create_job_queue(
                    jobQueueName=name,
                    state="ENABLED",
                    priority=1,
                    computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}],
                    jobStateTimeLimitActions=limits,
                    tags=tag_dict(ctx.tags()),
                )
                made(q["jobQueueArn"])
            ctx.log(
                f"Created job queue {name} → {ce}; a job Batch cannot place is cancelled after "
                f"{ctx.config.batch.runnable_timeout_min} min"
            )
        elif q.get("state") != "ENABLED" or q.get("jobStateTimeLimitActions") != limits:
            batch.update_job_queue(jobQueue=name, state="ENABLED", jobStateTimeLimitActions=limits)
        wait_state(ctx, f"job queue {name}", lambda: describe_queue(ctx, name), {"ENABLED/VALID"})

    def _definition(self, ctx, name: str, container: dict, job_role: str) -> str:
        container = {**container, "jobRoleArn": job_role}
        current = active_definition(ctx, name)
        if current and all(
            current.get("containerProperties", {}).get(k) == v
            for k, v in container.items()
            if k in ("image", "command", "environment", "jobRoleArn")
        ):
            return current["jobDefinitionArn"]
        timeout = ctx.config.batch.max_duration_s * 3 + 1800  # compile + benchmark(s) + copying, with room
        with ctx.creating("batch:job-definition", name) as made:
            arn = ctx.aws.client("batch").register_job_definition(
                jobDefinitionName=name,
                type="container",
                containerProperties=container,
                retryStrategy={"attempts": 1},
                timeout={"attemptDurationSeconds": timeout},
                propagateTags=True,
                tags=tag_dict(ctx.tags()),
            )["jobDefinitionArn"]
            made(arn)
        ctx.log(f"Registered job definition {arn.rsplit('/', 1)[-1]}: image {container['image'].rsplit('/', 1)[-1]}")
        return arn

    def undo(self, ctx):
        from .batch_aws import teardown

        teardown(ctx, delete_data=ctx.delete_data)
