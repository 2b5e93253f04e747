"""What the lab calls the things it makes, and how it tags them: one place for every naming rule.

The steps make these names, the resource inventory and cleanup look for them, the least-privilege
policy scopes by them, and the tests check them. Every name starts ``inflab-<session>`` (IAM under
the path ``/inflab/``, log groups ``/inflab/<session>``), and no name of session ``lab`` is a
prefix match for session ``lab-2``'s where AWS would compare by prefix: the exact name is compared.

Standard library only.
"""

from __future__ import annotations

TAG_SESSION = "inflab:session"
TAG_LAB = "inflab:lab"
TAG_ROLE = "inflab:role"  # on what the lab does not drive itself
BATCH_HOST = "batch-host"  # the TAG_ROLE of the hosts AWS Batch launches for a sweep
TAG_ROUND = "inflab:sweep"  # a sweep's jobs: the round they belong to
IAM_PATH = "/inflab/"


def prefix(session: str) -> str:
    return f"inflab-{session}"


def key_pair(session: str) -> str:
    return prefix(session)


def ssh_security_group(session: str) -> str:
    return f"{prefix(session)}-ssh"


def instance_role(session: str) -> str:
    """The instance's role, and its instance profile of the same name."""
    return f"{prefix(session)}-instance"


def launch_template(session: str) -> str:
    return prefix(session)


def repository(session: str) -> str:
    """The session's ECR repository: the instance role may push to exactly this one."""
    return prefix(session)


def log_group(session: str) -> str:
    return f"/inflab/{session}"


def results_bucket(session: str, account: str) -> str:
    """The session's S3 bucket: named exactly (3-63 characters), so no other session's name can match it."""
    return f"inflab-{session}-{account}"


def dashed(instance_type: str) -> str:
    return instance_type.replace(".", "-")


def compute_environment(session: str, instance_type: str) -> str:
    return f"{prefix(session)}-{dashed(instance_type)}"


def job_queue(session: str, instance_type: str) -> str:
    return f"{prefix(session)}-{dashed(instance_type)}"


def batch_roles(session: str) -> dict[str, str]:
    """The sweep's IAM roles: its hosts' role (and profile), the jobs' role. (Batch acts through its
    own service-linked role.)"""
    return {"instance": f"{prefix(session)}-batch-host", "job": f"{prefix(session)}-batch-job"}


def legacy_batch_roles(session: str) -> list[str]:
    """Roles earlier versions of the lab made for the sweep (a service role of its own): cleanup takes them too."""
    return [f"{prefix(session)}-batch-service"]


def batch_security_group(session: str) -> str:
    return f"{prefix(session)}-batch"


def job(session: str, family: str, instance_type: str, batch_size: int) -> str:
    """A sweep job's name, and its job definition's: one per (family, instance type, batch size)."""
    return f"{prefix(session)}-{family}-{dashed(instance_type)}-b{batch_size}"


# -- the SageMaker exercise ----------------------------------------------------------------------
SAGEMAKER_PREFIX = (
    "sagemaker"  # the S3 prefix under the session's: s3://BUCKET/SESSION/sagemaker/<precision>/model.tar.gz
)
SAGEMAKER_PRECISIONS = ("fp32", "int8")  # what the compile step makes: a model (and variant) each


def sagemaker_model(session: str, precision: str) -> str:
    """A SageMaker model: one per precision the endpoint serves (each is a production variant)."""
    return f"{prefix(session)}-{precision}"


def sagemaker_endpoint_config(session: str, n: int) -> str:
    """The n-th endpoint configuration of the session (a changed configuration is a new one, as
    SageMaker's configurations cannot be changed)."""
    return f"{prefix(session)}-{n}"


def sagemaker_endpoint(session: str) -> str:
    return prefix(session)


def sagemaker_role(session: str) -> str:
    """The execution role SageMaker takes to pull the image, read the model data and write the logs."""
    return f"{prefix(session)}-sagemaker"


def sagemaker_log_group(endpoint: str) -> str:
    """Where SageMaker writes an endpoint's container logs (one stream per variant and instance)."""
    return f"/aws/sagemaker/Endpoints/{endpoint}"


def sagemaker_variant(precision: str) -> str:
    """A production variant's name: the precision its model serves."""
    return precision
