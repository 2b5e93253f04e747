"""What AWS has for a session, found by its tag — not what the ledger believes."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from .. import names
from ..names import BATCH_HOST, IAM_PATH, TAG_ROLE, TAG_SESSION
from . import Aws, beacon, error_code, session_filter, tag_dict

LIVE_INSTANCE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]


def _tagged_instances(aws: Aws, session: str, states: list[str] | None) -> list[dict[str, Any]]:
    ec2 = aws.client("ec2")
    filters = session_filter(session) + [{"Name": "instance-state-name", "Values": states or LIVE_INSTANCE_STATES}]
    out = []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for res in page["Reservations"]:
            out.extend(res["Instances"])
    return out


def _batch_host(instance: dict[str, Any]) -> bool:
    return tag_dict(instance.get("Tags")).get(TAG_ROLE) == BATCH_HOST


def instances(aws: Aws, session: str, states: list[str] | None = None) -> list[dict[str, Any]]:
    """The session's own instance(s): tagged for it, not a host AWS Batch launched for its sweep."""
    return [i for i in _tagged_instances(aws, session, states) if not _batch_host(i)]


def batch_hosts(aws: Aws, session: str) -> list[dict[str, Any]]:
    """Instances AWS Batch runs for the session's sweep (they go with their compute environment)."""
    return [i for i in _tagged_instances(aws, session, None) if _batch_host(i)]


def key_pairs(aws: Aws, session: str) -> list[dict[str, Any]]:
    return aws.client("ec2").describe_key_pairs(Filters=session_filter(session))["KeyPairs"]


def security_groups(aws: Aws, session: str) -> list[dict[str, Any]]:
    return aws.client("ec2").describe_security_groups(Filters=session_filter(session))["SecurityGroups"]


def launch_templates(aws: Aws, session: str) -> list[dict[str, Any]]:
    return aws.client("ec2").describe_launch_templates(Filters=session_filter(session))["LaunchTemplates"]


def _tagged(items: list[dict[str, Any]], session: str) -> list[dict[str, Any]]:
    return [i for i in items if tag_dict(i.get("Tags")).get(TAG_SESSION) == session]


def roles(aws: Aws, session: str) -> list[dict[str, Any]]:
    iam = aws.client("iam")
    found = []
    for page in iam.get_paginator("list_roles").paginate(PathPrefix=IAM_PATH):
        for role in page["Roles"]:
            if not role["RoleName"].startswith(names.prefix("")):
                continue  # not the lab's: its tags are not the lab's to read
            try:
                role_tags = iam.list_role_tags(RoleName=role["RoleName"])["Tags"]
            except ClientError as e:  # deleted between the list and the look-up
                if error_code(e) == "NoSuchEntity":
                    continue
                raise
            if tag_dict(role_tags).get(TAG_SESSION) == session:
                found.append(role)
    return found


def instance_profiles(aws: Aws, session: str) -> list[dict[str, Any]]:
    iam = aws.client("iam")
    found = []
    for page in iam.get_paginator("list_instance_profiles").paginate(PathPrefix=IAM_PATH):
        for prof in page["InstanceProfiles"]:
            if not prof["InstanceProfileName"].startswith(names.prefix("")):
                continue
            tags = prof.get("Tags")
            if tags is None:
                try:
                    tags = iam.get_instance_profile(InstanceProfileName=prof["InstanceProfileName"])[
                        "InstanceProfile"
                    ].get("Tags")
                except ClientError as e:
                    if error_code(e) == "NoSuchEntity":
                        continue
                    raise
            if tag_dict(tags).get(TAG_SESSION) == session:
                found.append(prof)
    return found


def ecr_repositories(aws: Aws, session: str) -> list[dict[str, Any]]:
    """The session's ECR repositories (named inflab-*, tagged for the session)."""
    ecr = aws.client("ecr")
    found = []
    for page in ecr.get_paginator("describe_repositories").paginate():
        for repo in page["repositories"]:
            if not repo["repositoryName"].startswith(names.prefix("")):
                continue
            try:
                repo_tags = ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"]).get("tags")
            except ClientError as e:
                if error_code(e) == "RepositoryNotFoundException":
                    continue
                raise
            if tag_dict(repo_tags).get(TAG_SESSION) == session:
                found.append(repo)
    return found


def buckets(aws: Aws, session: str) -> list[dict[str, Any]]:
    """The session's S3 buckets (named inflab-<session>-…, tagged for the session)."""
    s3 = aws.client("s3")
    found = []
    for b in s3.list_buckets().get("Buckets", []):
        if not b["Name"].startswith(names.results_bucket(session, "")):
            continue
        try:
            tags = s3.get_bucket_tagging(Bucket=b["Name"]).get("TagSet")
        except ClientError as e:
            if error_code(e) in ("NoSuchTagSet", "NoSuchBucket", "404"):
                continue
            raise
        if tag_dict(tags).get(TAG_SESSION) == session:
            found.append(b)
    return found


def _batch_tagged(item: dict[str, Any], session: str) -> bool:
    return (item.get("tags") or {}).get(TAG_SESSION) == session


def batch_resources(aws: Aws, session: str) -> list[dict[str, str]]:
    """The session's compute environments, job queues, active job definitions and unfinished jobs."""
    batch = aws.client("batch")
    out: list[dict[str, str]] = []
    queues = []
    for page in batch.get_paginator("describe_compute_environments").paginate():
        for ce in page["computeEnvironments"]:
            if _batch_tagged(ce, session):
                out.append(
                    {
                        "type": "batch:compute-environment",
                        "id": ce["computeEnvironmentArn"],
                        "name": ce["computeEnvironmentName"],
                        "state": f"{ce.get('state')}/{ce.get('status')}",
                    }
                )
    for page in batch.get_paginator("describe_job_queues").paginate():
        for q in page["jobQueues"]:
            if _batch_tagged(q, session):
                queues.append(q["jobQueueName"])
                out.append(
                    {
                        "type": "batch:job-queue",
                        "id": q["jobQueueArn"],
                        "name": q["jobQueueName"],
                        "state": f"{q.get('state')}/{q.get('status')}",
                    }
                )
    for page in batch.get_paginator("describe_job_definitions").paginate(status="ACTIVE"):
        for d in page["jobDefinitions"]:
            if _batch_tagged(d, session):
                out.append(
                    {"type": "batch:job-definition", "id": d["jobDefinitionArn"], "name": d["jobDefinitionName"]}
                )
    for q in queues:
        for status in ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING"):
            for page in batch.get_paginator("list_jobs").paginate(jobQueue=q, jobStatus=status):
                for j in page["jobSummaryList"]:
                    out.append({"type": "batch:job", "id": j["jobId"], "name": j["jobName"], "state": status})
    return out


def log_group_named(aws: Aws, group: str) -> dict[str, Any] | None:
    """The log group named exactly ``group``: DescribeLogGroups matches a prefix, so /inflab/lab also
    finds /inflab/lab-2 (every page is looked at, and only the exact name counts)."""
    pages = aws.client("logs").get_paginator("describe_log_groups").paginate(logGroupNamePrefix=group)
    return next((g for page in pages for g in page["logGroups"] if g["logGroupName"] == group), None)


def log_groups(aws: Aws, session: str) -> list[dict[str, Any]]:
    found = log_group_named(aws, names.log_group(session))
    return [found] if found else []


def _sagemaker_tagged(sm, arn: str, session: str) -> bool:
    try:
        return tag_dict(sm.list_tags(ResourceArn=arn).get("Tags")).get(TAG_SESSION) == session
    except ClientError as e:  # deleted between the list and the look-up
        if error_code(e) in ("ValidationException", "ResourceNotFound"):
            return False
        raise


def sagemaker_resources(aws: Aws, session: str) -> list[dict[str, str]]:
    """The session's SageMaker endpoint, endpoint configurations and models (by their names, tagged for
    the session), and the endpoint's log group (SageMaker makes it, untagged: found by its exact name)."""
    sm = aws.client("sagemaker")
    start = names.prefix(session)
    out: list[dict[str, str]] = []
    try:
        e = sm.describe_endpoint(EndpointName=names.sagemaker_endpoint(session))
    except ClientError as err:
        if error_code(err) != "ValidationException":
            raise
        e = None
    if e and _sagemaker_tagged(sm, e["EndpointArn"], session):
        out.append(
            {
                "type": "sagemaker:endpoint",
                "id": e["EndpointArn"],
                "name": e["EndpointName"],
                "state": e.get("EndpointStatus", ""),
            }
        )
    for page in sm.get_paginator("list_endpoint_configs").paginate(NameContains=start):
        for c in page["EndpointConfigs"]:
            if c["EndpointConfigName"].removeprefix(start + "-").isdigit() and _sagemaker_tagged(
                sm, c["EndpointConfigArn"], session
            ):
                out.append(
                    {"type": "sagemaker:endpoint-config", "id": c["EndpointConfigArn"], "name": c["EndpointConfigName"]}
                )
    for precision in names.SAGEMAKER_PRECISIONS:
        try:
            m = sm.describe_model(ModelName=names.sagemaker_model(session, precision))
        except ClientError as err:
            if error_code(err) != "ValidationException":
                raise
            continue
        if _sagemaker_tagged(sm, m["ModelArn"], session):
            out.append({"type": "sagemaker:model", "id": m["ModelArn"], "name": m["ModelName"]})
    group = log_group_named(aws, names.sagemaker_log_group(names.sagemaker_endpoint(session)))
    if group:
        out.append(
            {"type": "logs:log-group", "id": group.get("arn", group["logGroupName"]), "name": group["logGroupName"]}
        )
    return out


def session_resources(aws: Aws, session: str) -> list[dict[str, str]]:
    """Every live resource tagged for ``session``, one flat dict each (for --json)."""
    out: list[dict[str, str]] = []
    for i in instances(aws, session):
        out.append(
            {
                "type": "ec2:instance",
                "id": i["InstanceId"],
                "name": tag_dict(i.get("Tags")).get("Name", ""),
                "state": i["State"]["Name"],
                "zone": i.get("Placement", {}).get("AvailabilityZone", ""),
            }
        )
    for i in batch_hosts(aws, session):
        out.append(
            {
                "type": "batch:host",
                "id": i["InstanceId"],
                "name": tag_dict(i.get("Tags")).get("Name", ""),
                "state": i["State"]["Name"],
                "zone": i.get("Placement", {}).get("AvailabilityZone", ""),
            }
        )
    for k in key_pairs(aws, session):
        out.append({"type": "ec2:key-pair", "id": k.get("KeyPairId", ""), "name": k["KeyName"]})
    for g in security_groups(aws, session):
        out.append({"type": "ec2:security-group", "id": g["GroupId"], "name": g["GroupName"]})
    for t in launch_templates(aws, session):
        out.append({"type": "ec2:launch-template", "id": t["LaunchTemplateId"], "name": t["LaunchTemplateName"]})
    for p in instance_profiles(aws, session):
        out.append({"type": "iam:instance-profile", "id": p["InstanceProfileId"], "name": p["InstanceProfileName"]})
    for r in roles(aws, session):
        out.append({"type": "iam:role", "id": r["RoleId"], "name": r["RoleName"]})
    for r in ecr_repositories(aws, session):
        out.append({"type": "ecr:repository", "id": r["repositoryArn"], "name": r["repositoryName"]})
    out += batch_resources(aws, session)
    out += sagemaker_resources(aws, session)
    for g in log_groups(aws, session):
        out.append({"type": "logs:log-group", "id": g.get("arn", g["logGroupName"]), "name": g["logGroupName"]})
    for b in buckets(aws, session):
        out.append({"type": "s3:bucket", "id": b["Name"], "name": b["Name"]})
    if beacon.read(aws, session) is not None:
        out.append({"type": "ssm:parameter", "id": beacon.path(session), "name": beacon.path(session)})
    return out
