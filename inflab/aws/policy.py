"""The least-privilege IAM policies the lab needs: ``inflab policy participant`` and ``instructor``.

The participant's policy allows exactly the AWS actions the lab's steps make (:data:`LAB_CALLS`,
which a test compares with a scan of the code), the ones AWS implies for them (:data:`IMPLIED`:
tagging on create, passing the lab's roles, Batch's service-linked role) and the registry actions
``docker push`` makes with the lab's ECR token (:data:`REGISTRY_ACTIONS`). Resources are scoped by
the lab's names wherever AWS's Service Authorization Reference gives the action a resource type:
``inflab-*`` (EC2 key pairs, Batch, ECR, S3), ``/inflab/`` (IAM path, log groups, the progress
beacon's parameters). Where an ARN names an id, not a name (instances, security groups, launch
templates, Batch jobs), changes are allowed only on what carries the ``inflab:session`` tag.
``"*"`` is left only to actions that have no resource type (the Describe and List calls,
``ecr:GetAuthorizationToken``, ``pricing:GetProducts``, ...). No statement allows a whole service.

The instructor's policy allows the room's reads (:data:`INSTRUCTOR_CALLS`) and what cleanup needs:
the participant's statements cut down to their look-up, delete and disable actions
(:func:`cleanup_action`), with the same scoping. :func:`trust` is the trust policy of the role an
instructor assumes in a participant's account (with ``sts:ExternalId``).
"""

from __future__ import annotations

import fnmatch
import json
import re
from typing import Any

from . import TAG_SESSION

VERSION = "2012-10-17"
#: IAM's limit on a managed policy, counted without white space
MANAGED_POLICY_LIMIT = 6144

NAME = "inflab-*"  # every resource name the lab makes starts so: inflab-<session>...
IAM_PATH = "/inflab/"  # the lab's roles and instance profiles live under this path
LOG_GROUPS = "/inflab/*"  # a session's log group is /inflab/<session>
SAGEMAKER_LOGS = f"/aws/sagemaker/Endpoints/{NAME}"  # a SageMaker endpoint's (SageMaker makes it)
BEACONS = "/inflab/sessions"  # the progress beacons: /inflab/sessions/<session>
#: the AWS managed policies the lab attaches to its roles (nothing else may be attached)
MANAGED_POLICIES = ("arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role",)
#: the services the lab's roles are made for (their trust policies): the only ones they may be passed to
ROLE_SERVICES = ("ec2.amazonaws.com", "batch.amazonaws.com", "ecs-tasks.amazonaws.com", "sagemaker.amazonaws.com")
BATCH_SERVICE_LINKED_ROLE = "arn:aws:iam::*:role/aws-service-role/batch.amazonaws.com/AWSServiceRoleForBatch"

#: every AWS call the lab's steps (and the look by tag, the beacon, the price refresh) make: (service, operation)
LAB_CALLS = frozenset(
    {
        ("sts", "GetCallerIdentity"),
        ("ec2", "DescribeImages"),
        ("ec2", "DescribeInstanceTypeOfferings"),
        ("ec2", "DescribeInstanceTypes"),
        ("ec2", "DescribeSubnets"),
        ("ec2", "DescribeInstances"),
        ("ec2", "DescribeKeyPairs"),
        ("ec2", "DescribeSecurityGroups"),
        ("ec2", "DescribeLaunchTemplates"),
        ("ec2", "DescribeVolumes"),
        ("ec2", "ImportKeyPair"),
        ("ec2", "DeleteKeyPair"),
        ("ec2", "CreateSecurityGroup"),
        ("ec2", "DeleteSecurityGroup"),
        ("ec2", "AuthorizeSecurityGroupIngress"),
        ("ec2", "RevokeSecurityGroupIngress"),
        ("ec2", "CreateLaunchTemplate"),
        ("ec2", "DeleteLaunchTemplate"),
        ("ec2", "RunInstances"),
        ("ec2", "TerminateInstances"),
        ("ec2", "GetConsoleOutput"),
        ("iam", "CreateRole"),
        ("iam", "GetRole"),
        ("iam", "DeleteRole"),
        ("iam", "AttachRolePolicy"),
        ("iam", "DetachRolePolicy"),
        ("iam", "PutRolePolicy"),
        ("iam", "DeleteRolePolicy"),
        ("iam", "ListRoles"),
        ("iam", "ListRoleTags"),
        ("iam", "ListAttachedRolePolicies"),
        ("iam", "ListRolePolicies"),
        ("iam", "ListInstanceProfilesForRole"),
        ("iam", "CreateInstanceProfile"),
        ("iam", "GetInstanceProfile"),
        ("iam", "DeleteInstanceProfile"),
        ("iam", "ListInstanceProfiles"),
        ("iam", "AddRoleToInstanceProfile"),
        ("iam", "RemoveRoleFromInstanceProfile"),
        ("ecr", "CreateRepository"),
        ("ecr", "DeleteRepository"),
        ("ecr", "DescribeRepositories"),
        ("ecr", "DescribeImages"),
        ("ecr", "BatchDeleteImage"),
        ("ecr", "ListTagsForResource"),
        ("ecr", "GetAuthorizationToken"),
        ("s3", "CreateBucket"),
        ("s3", "HeadBucket"),
        ("s3", "DeleteBucket"),
        ("s3", "ListBuckets"),
        ("s3", "GetBucketTagging"),
        ("s3", "PutBucketTagging"),
        ("s3", "PutPublicAccessBlock"),
        ("s3", "PutBucketEncryption"),
        ("s3", "ListObjectsV2"),
        ("s3", "ListObjectVersions"),
        ("s3", "GetObject"),
        ("s3", "PutObject"),
        ("s3", "DeleteObjects"),
        ("logs", "CreateLogGroup"),
        ("logs", "DeleteLogGroup"),
        ("logs", "DescribeLogGroups"),
        ("logs", "PutRetentionPolicy"),
        ("logs", "GetLogEvents"),
        ("batch", "CreateComputeEnvironment"),
        ("batch", "UpdateComputeEnvironment"),
        ("batch", "DeleteComputeEnvironment"),
        ("batch", "DescribeComputeEnvironments"),
        ("batch", "CreateJobQueue"),
        ("batch", "UpdateJobQueue"),
        ("batch", "DeleteJobQueue"),
        ("batch", "DescribeJobQueues"),
        ("batch", "RegisterJobDefinition"),
        ("batch", "DeregisterJobDefinition"),
        ("batch", "DescribeJobDefinitions"),
        ("batch", "SubmitJob"),
        ("batch", "DescribeJobs"),
        ("batch", "ListJobs"),
        ("batch", "TerminateJob"),
        ("ssm", "GetParameter"),
        ("ssm", "PutParameter"),
        ("ssm", "AddTagsToResource"),
        ("ssm", "DeleteParameter"),
        ("ssm", "GetParametersByPath"),
        ("pricing", "GetProducts"),
        ("sagemaker", "CreateModel"),
        ("sagemaker", "DescribeModel"),
        ("sagemaker", "DeleteModel"),
        ("sagemaker", "CreateEndpointConfig"),
        ("sagemaker", "DeleteEndpointConfig"),
        ("sagemaker", "ListEndpointConfigs"),
        ("sagemaker", "CreateEndpoint"),
        ("sagemaker", "DescribeEndpoint"),
        ("sagemaker", "DeleteEndpoint"),
        ("sagemaker", "ListTags"),
        ("sagemaker-runtime", "InvokeEndpoint"),
        ("s3", "HeadObject"),
        ("logs", "FilterLogEvents"),
        ("cloudwatch", "GetMetricStatistics"),
    }
)

#: what the instructor's room and preflight read, beyond what cleanup needs
INSTRUCTOR_CALLS = frozenset(
    {
        ("sts", "GetCallerIdentity"),
        ("ssm", "GetParametersByPath"),
        ("ec2", "DescribeInstances"),
        ("batch", "DescribeComputeEnvironments"),
        ("batch", "DescribeJobQueues"),
        ("batch", "ListJobs"),
        ("ec2", "DescribeAvailabilityZones"),
        ("ec2", "DescribeInstanceTypeOfferings"),
        ("ec2", "DescribeInstanceTypes"),
        ("ec2", "DescribeVpcs"),
        ("service-quotas", "GetServiceQuota"),
        ("service-quotas", "GetAWSDefaultServiceQuota"),
    }
)

#: IAM actions whose name is not the operation's (S3's; ``DeleteObjects`` with version ids needs both)
_ACTION_OF = {
    ("s3", "HeadBucket"): ("s3:ListBucket",),
    ("s3", "ListObjectsV2"): ("s3:ListBucket",),
    ("s3", "ListObjects"): ("s3:ListBucket",),
    ("s3", "HeadObject"): ("s3:GetObject",),
    ("s3", "ListObjectVersions"): ("s3:ListBucketVersions",),
    ("s3", "ListBuckets"): ("s3:ListAllMyBuckets",),
    ("s3", "DeleteObjects"): ("s3:DeleteObject", "s3:DeleteObjectVersion"),
    ("s3", "PutPublicAccessBlock"): ("s3:PutBucketPublicAccessBlock",),
    ("s3", "PutBucketEncryption"): ("s3:PutEncryptionConfiguration",),
}
_PREFIX = {
    "service-quotas": "servicequotas",
    "sagemaker-runtime": "sagemaker",
}  # the IAM service prefix where it is not the client's name

#: what AWS also checks when the lab makes a call (tags given on create, a role passed, a role AWS makes)
IMPLIED = {
    ("ec2", "RunInstances"): ("ec2:CreateTags", "iam:PassRole"),
    ("ec2", "CreateSecurityGroup"): ("ec2:CreateTags",),
    ("ec2", "CreateLaunchTemplate"): ("ec2:CreateTags",),
    ("ec2", "ImportKeyPair"): ("ec2:CreateTags",),
    ("iam", "CreateRole"): ("iam:TagRole",),
    ("iam", "CreateInstanceProfile"): ("iam:TagInstanceProfile",),
    ("iam", "AddRoleToInstanceProfile"): ("iam:PassRole",),
    ("ecr", "CreateRepository"): ("ecr:TagResource",),
    ("logs", "CreateLogGroup"): ("logs:TagResource",),
    ("ssm", "PutParameter"): ("ssm:AddTagsToResource",),
    ("batch", "CreateComputeEnvironment"): ("batch:TagResource", "iam:PassRole", "iam:CreateServiceLinkedRole"),
    ("batch", "CreateJobQueue"): ("batch:TagResource",),
    ("batch", "RegisterJobDefinition"): ("batch:TagResource", "iam:PassRole"),
    ("batch", "SubmitJob"): ("batch:TagResource",),
    ("sagemaker", "CreateModel"): ("sagemaker:AddTags", "iam:PassRole"),
    ("sagemaker", "CreateEndpointConfig"): ("sagemaker:AddTags",),
    ("sagemaker", "CreateEndpoint"): ("sagemaker:AddTags",),
}

#: what ``docker push`` (and a pull of the session's image) asks of ECR with the token the lab gets
REGISTRY_ACTIONS = (
    "ecr:BatchCheckLayerAvailability",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
)


def iam_actions(service: str, operation: str) -> tuple[str, ...]:
    """The IAM action(s) a boto3 call of ``operation`` on ``service`` needs (not the implied ones)."""
    if (service, operation) in _ACTION_OF:
        return _ACTION_OF[(service, operation)]
    return (f"{_PREFIX.get(service, service)}:{operation}",)


def needed(calls) -> set[str]:
    """Every IAM action ``calls`` need, implied ones included."""
    return {a for c in calls for a in (*iam_actions(*c), *IMPLIED.get(c, ()))}


def _arn(service: str, rest: str, *, region: str = "*", account: str = "*") -> str:
    return f"arn:aws:{service}:{region}:{account}:{rest}"


_TAGGED = {"Null": {f"aws:ResourceTag/{TAG_SESSION}": "false"}}  # the resource carries an inflab:session tag


def _statement(sid: str, actions: list[str], resources: list[str] | str, condition: dict | None = None) -> dict:
    s: dict[str, Any] = {
        "Sid": sid,
        "Effect": "Allow",
        "Action": sorted(actions),
        "Resource": resources if isinstance(resources, str) else list(resources),
    }
    if condition:
        s["Condition"] = condition
    return s


def _participant_statements() -> list[dict]:
    roles = [f"arn:aws:iam::*:role{IAM_PATH}{NAME}"]
    profiles = [f"arn:aws:iam::*:instance-profile{IAM_PATH}{NAME}"]
    made_by_ec2 = [
        _arn("ec2", "instance/*"),
        _arn("ec2", "volume/*"),
        _arn("ec2", "security-group/*"),
        _arn("ec2", "launch-template/*"),
        _arn("ec2", f"key-pair/{NAME}"),
    ]
    return [
        _statement(
            "NoResourceTypes",
            [
                "sts:GetCallerIdentity",
                "ec2:DescribeImages",
                "ec2:DescribeInstanceTypeOfferings",
                "ec2:DescribeInstanceTypes",
                "ec2:DescribeSubnets",
                "ec2:DescribeInstances",
                "ec2:DescribeKeyPairs",
                "ec2:DescribeSecurityGroups",
                "ec2:DescribeLaunchTemplates",
                "ec2:DescribeVolumes",
                "iam:ListRoles",
                "iam:ListInstanceProfiles",
                "ecr:GetAuthorizationToken",
                "s3:ListAllMyBuckets",
                "logs:DescribeLogGroups",
                "batch:DescribeComputeEnvironments",
                "batch:DescribeJobQueues",
                "batch:DescribeJobDefinitions",
                "batch:DescribeJobs",
                "batch:ListJobs",
                "pricing:GetProducts",
                "sagemaker:ListEndpointConfigs",
                "cloudwatch:GetMetricStatistics",
            ],
            "*",
        ),
        _statement(
            "Ec2Create",
            ["ec2:RunInstances", "ec2:CreateLaunchTemplate", "ec2:CreateSecurityGroup"],
            made_by_ec2
            + [
                _arn("ec2", "network-interface/*"),
                _arn("ec2", "subnet/*"),
                _arn("ec2", "vpc/*"),
                _arn("ec2", "image/*", account=""),
            ],
        ),
        _statement(
            "Ec2TagOnCreate",
            ["ec2:CreateTags"],
            made_by_ec2,
            {
                "StringEquals": {
                    "ec2:CreateAction": ["RunInstances", "CreateSecurityGroup", "CreateLaunchTemplate", "ImportKeyPair"]
                }
            },
        ),
        _statement("Ec2KeyPairs", ["ec2:ImportKeyPair", "ec2:DeleteKeyPair"], [_arn("ec2", f"key-pair/{NAME}")]),
        _statement(
            "TaggedForALab",
            [
                "ec2:TerminateInstances",
                "ec2:GetConsoleOutput",
                "ec2:AuthorizeSecurityGroupIngress",
                "ec2:RevokeSecurityGroupIngress",
                "ec2:DeleteSecurityGroup",
                "ec2:DeleteLaunchTemplate",
                "batch:TerminateJob",
            ],
            [
                _arn("ec2", "instance/*"),
                _arn("ec2", "security-group/*"),
                _arn("ec2", "launch-template/*"),
                _arn("batch", "job/*"),
            ],
            _TAGGED,
        ),
        _statement(
            "IamLabRoles",
            [
                "iam:CreateRole",
                "iam:TagRole",
                "iam:GetRole",
                "iam:DeleteRole",
                "iam:PutRolePolicy",
                "iam:DeleteRolePolicy",
                "iam:DetachRolePolicy",
                "iam:ListRoleTags",
                "iam:ListAttachedRolePolicies",
                "iam:ListRolePolicies",
                "iam:ListInstanceProfilesForRole",
            ],
            roles,
        ),
        # A look-up of a role or profile that does not exist yet names no path.
        _statement(
            "IamLookUp",
            ["iam:GetRole", "iam:GetInstanceProfile"],
            [f"arn:aws:iam::*:role/{NAME}", f"arn:aws:iam::*:instance-profile/{NAME}"],
        ),
        _statement(
            "IamAttachLabPolicies",
            ["iam:AttachRolePolicy"],
            roles,
            {"ArnEquals": {"iam:PolicyARN": list(MANAGED_POLICIES)}},
        ),
        _statement(
            "IamPassLabRoles",
            ["iam:PassRole"],
            roles,
            {"StringEqualsIfExists": {"iam:PassedToService": list(ROLE_SERVICES)}},
        ),
        _statement(
            "IamLabProfiles",
            [
                "iam:CreateInstanceProfile",
                "iam:TagInstanceProfile",
                "iam:GetInstanceProfile",
                "iam:DeleteInstanceProfile",
                "iam:AddRoleToInstanceProfile",
                "iam:RemoveRoleFromInstanceProfile",
            ],
            profiles,
        ),
        _statement(
            "BatchLinkedRole",
            ["iam:CreateServiceLinkedRole"],
            [BATCH_SERVICE_LINKED_ROLE],
            {"StringEquals": {"iam:AWSServiceName": "batch.amazonaws.com"}},
        ),
        _statement(
            "BatchLab",
            [
                "batch:CreateComputeEnvironment",
                "batch:UpdateComputeEnvironment",
                "batch:DeleteComputeEnvironment",
                "batch:CreateJobQueue",
                "batch:UpdateJobQueue",
                "batch:DeleteJobQueue",
                "batch:RegisterJobDefinition",
                "batch:DeregisterJobDefinition",
                "batch:SubmitJob",
                "batch:TagResource",
            ],
            [
                _arn("batch", f"compute-environment/{NAME}"),
                _arn("batch", f"job-queue/{NAME}"),
                _arn("batch", f"job-definition/{NAME}"),
                _arn("batch", "job/*"),
            ],
        ),
        _statement("EcrList", ["ecr:DescribeRepositories"], [_arn("ecr", "repository/*")]),
        _statement(
            "EcrLabRepository",
            [
                "ecr:CreateRepository",
                "ecr:TagResource",
                "ecr:DeleteRepository",
                "ecr:DescribeImages",
                "ecr:BatchDeleteImage",
                "ecr:ListTagsForResource",
                *REGISTRY_ACTIONS,
            ],
            [_arn("ecr", f"repository/{NAME}")],
        ),
        _statement(
            "S3LabBuckets",
            [
                "s3:CreateBucket",
                "s3:DeleteBucket",
                "s3:ListBucket",
                "s3:ListBucketVersions",
                "s3:GetBucketTagging",
                "s3:PutBucketTagging",
                "s3:PutBucketPublicAccessBlock",
                "s3:PutEncryptionConfiguration",
                "s3:GetObject",
                "s3:PutObject",
                "s3:DeleteObject",
                "s3:DeleteObjectVersion",
            ],
            [f"arn:aws:s3:::{NAME}", f"arn:aws:s3:::{NAME}/*"],
        ),
        _statement(
            "LogsLabGroups",
            [
                "logs:CreateLogGroup",
                "logs:TagResource",
                "logs:PutRetentionPolicy",
                "logs:DeleteLogGroup",
                "logs:GetLogEvents",
                "logs:FilterLogEvents",
            ],
            [_arn("logs", f"log-group:{LOG_GROUPS}"), _arn("logs", f"log-group:{SAGEMAKER_LOGS}")],
        ),
        # endpoint/, endpoint-config/ and model/ named inflab-*
        _statement(
            "SageMakerLab",
            [
                "sagemaker:CreateModel",
                "sagemaker:DescribeModel",
                "sagemaker:DeleteModel",
                "sagemaker:CreateEndpointConfig",
                "sagemaker:DeleteEndpointConfig",
                "sagemaker:CreateEndpoint",
                "sagemaker:DescribeEndpoint",
                "sagemaker:DeleteEndpoint",
                "sagemaker:InvokeEndpoint",
                "sagemaker:AddTags",
                "sagemaker:ListTags",
            ],
            [_arn("sagemaker", f"*/{NAME}")],
        ),
        _statement(
            "SsmProgressBeacon",
            [
                "ssm:PutParameter",
                "ssm:AddTagsToResource",
                "ssm:GetParameter",
                "ssm:DeleteParameter",
                "ssm:GetParametersByPath",
            ],
            [_arn("ssm", f"parameter{BEACONS}"), _arn("ssm", f"parameter{BEACONS}/*")],
        ),
        # AWS's public parameters (AMI ids) have no account in their ARN; "*" matches the empty one too.
        _statement("SsmPublicParameters", ["ssm:GetParameter"], [_arn("ssm", "parameter/aws/service/*")]),
    ]


def participant() -> dict[str, Any]:
    """The policy a participant's identity needs to run the lab on AWS."""
    return {"Version": VERSION, "Statement": _participant_statements()}


#: verbs of what cleanup does: look, delete, disable (Update*), detach
_CLEANUP_VERBS = ("Describe", "Get", "List", "Delete", "Deregister", "Terminate", "Remove", "Detach")
_CLEANUP_ALSO = frozenset({"batch:UpdateComputeEnvironment", "batch:UpdateJobQueue"})  # disabled before they go
_NOT_FOR_CLEANUP = frozenset(
    {
        "ecr:GetAuthorizationToken",
        "ecr:GetDownloadUrlForLayer",
        "ecr:BatchGetImage",
        "pricing:GetProducts",
        "ec2:GetConsoleOutput",
        "logs:GetLogEvents",
        "s3:GetObject",
        "ssm:PutParameter",
    }
)


def cleanup_action(action: str) -> bool:
    """Does cleanup (every step's undo, then the look by tag) need ``action``?"""
    verb = action.split(":", 1)[1]
    return action not in _NOT_FOR_CLEANUP and (verb.startswith(_CLEANUP_VERBS) or action in _CLEANUP_ALSO)


def instructor() -> dict[str, Any]:
    """The policy of the identity (or the role in a participant's account) an instructor reads the room
    and cleans up with."""
    statements = []
    for s in _participant_statements():
        actions = [a for a in s["Action"] if cleanup_action(a)]
        if actions and s["Sid"] != "SsmPublicParameters":  # cleanup resolves no AMI
            statements.append({**s, "Action": actions})
    # preflight reads the EC2 vCPU quotas (the participant's own steps never do)
    statements.append(_statement("Ec2Quotas", ["servicequotas:GetServiceQuota"], [_arn("servicequotas", "ec2/*")]))
    doc = {"Version": VERSION, "Statement": statements}
    reads = sorted(a for c in INSTRUCTOR_CALLS for a in iam_actions(*c) if not allowed(doc, a))
    statements.insert(0, _statement("RoomAndPreflight", reads, "*"))
    return doc


ACCOUNT_ID = re.compile(r"\d{12}")
EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}")


def trust(instructor_account: str, external_id: str) -> dict[str, Any]:
    """The trust policy of the role an instructor in ``instructor_account`` assumes in a participant's
    account; only a caller that presents ``external_id`` may (the roster's ``external_id``)."""
    if not ACCOUNT_ID.fullmatch(instructor_account):
        raise ValueError(f"{instructor_account!r} is not an AWS account id (12 digits)")
    if not EXTERNAL_ID.fullmatch(external_id):
        raise ValueError(f"{external_id!r} is not an external id (2-1224 of letters, digits and +=,.@:/-_)")
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "InstructorReadsAndCleansUp",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{instructor_account}:root"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
            }
        ],
    }


def size(doc: dict[str, Any]) -> int:
    """The document's size as IAM counts it against its limits: without white space."""
    return len(re.sub(r"\s+", "", json.dumps(doc, separators=(",", ":"))))


def split(doc: dict[str, Any], limit: int = MANAGED_POLICY_LIMIT) -> list[dict[str, Any]]:
    """``doc`` as one document if IAM takes it as one managed policy, else as several (its statements
    in order, as few documents as fit)."""
    if size(doc) <= limit:
        return [doc]
    docs: list[dict[str, Any]] = []
    for s in doc["Statement"]:
        if docs and size({**docs[-1], "Statement": docs[-1]["Statement"] + [s]}) <= limit:
            docs[-1]["Statement"].append(s)
        else:
            docs.append({"Version": doc["Version"], "Statement": [s]})
    return docs


def _matches(pattern: str, value: str, *, case: bool) -> bool:
    pattern, value = (pattern, value) if case else (pattern.lower(), value.lower())
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def allowed(doc: dict[str, Any], action: str, resource: str | None = None) -> bool:
    """Does some Allow statement of ``doc`` grant ``action`` (on ``resource``; None: any resource)?
    Actions match case-insensitively with ``*`` and ``?`` wildcards, resources case-sensitively;
    conditions and Deny statements are not looked at."""
    statements = doc["Statement"] if isinstance(doc["Statement"], list) else [doc["Statement"]]
    for s in statements:
        if s.get("Effect") != "Allow":
            continue
        acts = s.get("Action", [])
        if not any(_matches(a, action, case=False) for a in (acts if isinstance(acts, list) else [acts])):
            continue
        res = s.get("Resource", [])
        if resource is None or any(_matches(r, resource, case=True) for r in (res if isinstance(res, list) else [res])):
            return True
    return False
