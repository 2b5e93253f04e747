"""What AWS has for a session, found by its tag — not what the ledger believes."""

from __future__ import annotations

from typing import Any

from . import TAG_SESSION, Aws, error_code, session_filter, tag_dict

IAM_PATH = "/inflab/"
LIVE_INSTANCE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]


def instances(aws: Aws, session: str, states: list[str] | None = None) -> list[dict[str, Any]]:
    ec2 = aws.client("ec2")
    filters = session_filter(session) + [{"Name": "instance-state-name", "Values": states or LIVE_INSTANCE_STATES}]
    out = []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for res in page["Reservations"]:
            out.extend(res["Instances"])
    return out


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
            try:
                role_tags = iam.list_role_tags(RoleName=role["RoleName"])["Tags"]
            except Exception as e:  # deleted between the list and the look-up
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
            tags = prof.get("Tags")
            if tags is None:
                try:
                    tags = iam.get_instance_profile(InstanceProfileName=prof["InstanceProfileName"])["InstanceProfile"].get("Tags")
                except Exception as e:
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
            if not repo["repositoryName"].startswith("inflab-"):
                continue
            try:
                repo_tags = ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"]).get("tags")
            except Exception as e:
                if error_code(e) == "RepositoryNotFoundException":
                    continue
                raise
            if tag_dict(repo_tags).get(TAG_SESSION) == session:
                found.append(repo)
    return found


def session_resources(aws: Aws, session: str) -> list[dict[str, str]]:
    """Every live resource tagged for ``session``, one flat dict each (for --json)."""
    out: list[dict[str, str]] = []
    for i in instances(aws, session):
        out.append({"type": "ec2:instance", "id": i["InstanceId"], "name": tag_dict(i.get("Tags")).get("Name", ""),
                    "state": i["State"]["Name"], "zone": i.get("Placement", {}).get("AvailabilityZone", "")})
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
    return out
