"""The sandbox's IAM check: the lab's calls signed as an emulated IAM user that holds only one policy.

``inflab sandbox start --iam-policy FILE`` makes the daemon create, in its own emulated IAM, two
users with an access key each, and then turn on the emulator's IAM enforcement (moto's: from then
on every request is authenticated and authorized against the caller's policies):

- ``participant`` holds only FILE's policy: the lab's own clients sign with its key;
- ``sandbox-admin`` may do everything: the sandbox's own clients (a Batch job's results upload,
  which stands in for the job's role), instructor mode and the tests' look at what exists.

The keys are the emulator's, not AWS credentials; they live only in the daemon's 0600 secret file.

What the emulator checks, and what it does not (README says the same):

- **Actions**: every call, of every service the lab uses, is allowed only if a statement allows
  its IAM action.
- **Resources**: only where moto works out a request's resource — S3 (the bucket's or object's
  ARN) and IAM calls that name a role (the role's ARN; for a role that does not exist yet the
  daemon makes moto use the ARN the request names, ``role/PATH/NAME``, as AWS does, instead of
  ``"*"``). Every other call is checked against ``"*"``, which an ARN-scoped statement never
  matches. So the daemon loads a copy of the policy (:func:`emulator_copy`) in which every
  statement that moto cannot check by resource has ``Resource: "*"``; statements of S3 actions,
  and of IAM actions on a named role scoped to role ARNs, keep their scoping.
- **Conditions** (``iam:PassedToService``, ``ec2:CreateAction``, ``aws:ResourceTag/…``) are not
  checked, nor are the actions AWS implies (``iam:PassRole`` at RunInstances, the tag-on-create
  actions, ``iam:CreateServiceLinkedRole``).
- moto names an S3 request by its operation, where AWS names it by the action it needs (a HEAD
  of a bucket is ``s3:HeadBucket`` there, ``s3:ListBucket`` on AWS): the copy also allows moto's
  name wherever the policy allows the IAM action (:data:`MOTO_S3_NAMES`). Likewise CloudWatch: moto names its
  requests by the signing name, ``monitoring:…``, AWS's actions are ``cloudwatch:…`` (:data:`MOTO_OTHER_NAMES`).

Every refused call is one line in the daemon's log (``<INFLAB_HOME>/sandbox/daemon.log``):
``IAM check refused ACTION on RESOURCE to USER-ARN``.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from ..errors import InputError

LAB_USER = "participant"
ADMIN_USER = "sandbox-admin"
ACCOUNT = "123456789012"  # the emulator's default account, where the lab's resources live
MAX_FILE_BYTES = 256 * 1024

#: IAM action → the S3 operations moto checks by that name too: moto names every S3 request by its
#: operation (``s3:HeadBucket``), AWS by the action the operation needs (``s3:ListBucket``)
MOTO_S3_NAMES = {
    "s3:ListBucket": ("s3:HeadBucket", "s3:ListObjectsV2", "s3:ListObjects"),
    "s3:ListBucketVersions": ("s3:ListObjectVersions",),
    "s3:ListAllMyBuckets": ("s3:ListBuckets",),
    "s3:GetObject": ("s3:HeadObject",),
    "s3:DeleteObject": ("s3:DeleteObjects",),
    "s3:DeleteObjectVersion": ("s3:DeleteObjects",),
    "s3:PutBucketPublicAccessBlock": ("s3:PutPublicAccessBlock",),
    "s3:PutEncryptionConfiguration": ("s3:PutBucketEncryption",),
}


#: IAM action → moto's name for it, outside S3: moto prefixes an action with the request's signing name
MOTO_OTHER_NAMES = {"cloudwatch:GetMetricStatistics": ("monitoring:GetMetricStatistics",)}


class PolicyFileError(InputError, ValueError):
    """A --iam-policy file that is not a usable policy (the message names the problem)."""


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def load_documents(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The policy document(s) in ``path``: one IAM policy document, or a JSON list of them (what
    ``inflab policy participant`` prints when it needs two). Raises :class:`PolicyFileError`."""
    from moto.iam.exceptions import MalformedPolicyDocument
    from moto.iam.policy_validation import IAMPolicyDocumentValidator

    p = Path(path)
    try:
        st = p.stat()
    except OSError as e:
        raise PolicyFileError(f"{path}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise PolicyFileError(f"{path}: not a regular file")
    if st.st_size > MAX_FILE_BYTES:
        raise PolicyFileError(f"{path}: {st.st_size} bytes, more than a policy file can be ({MAX_FILE_BYTES})")
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)  # a file that says it is small may not be (/proc)
        text = raw.decode("utf-8")
    except OSError as e:
        raise PolicyFileError(f"{path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise PolicyFileError(f"{path}: not UTF-8 text") from None
    if len(raw) > MAX_FILE_BYTES:
        raise PolicyFileError(f"{path}: more than a policy file can be ({MAX_FILE_BYTES} bytes)")
    try:
        data = json.loads(text)
    except RecursionError:
        raise PolicyFileError(f"{path}: not a policy (JSON nested too deep)") from None
    except ValueError as e:
        raise PolicyFileError(f"{path}: not JSON ({e})") from None
    docs = data if isinstance(data, list) else [data]
    if not docs or not all(isinstance(d, dict) for d in docs):
        raise PolicyFileError(f"{path}: not an IAM policy document (a JSON object with Version and Statement)")
    for i, doc in enumerate(docs, 1):
        which = f" (document {i})" if len(docs) > 1 else ""
        if "Statement" not in doc:
            raise PolicyFileError(f"{path}{which}: not an IAM policy document (it has no Statement)")
        try:
            IAMPolicyDocumentValidator(json.dumps(doc)).validate()
        except MalformedPolicyDocument as e:
            raise PolicyFileError(f"{path}{which}: not a valid IAM policy: {e.message}") from None
        except Exception:  # a shape the validator does not expect at all
            raise PolicyFileError(f"{path}{which}: not a valid IAM policy document") from None
        for s in _as_list(doc["Statement"]):
            if "Principal" in s or "NotPrincipal" in s:
                raise PolicyFileError(
                    f"{path}{which}: a statement names a Principal: that is a resource or trust "
                    "policy, not one a user holds"
                )
    return docs


def _role_actions() -> frozenset[str]:
    """IAM actions whose request names a role (RoleName): checked against the role's ARN (see
    :func:`_named_role`)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("iam")
    out = set()
    for name in model.operation_names:
        shape = model.operation_model(name).input_shape
        if shape is not None and "RoleName" in shape.members:
            out.add(f"iam:{name}")
    return frozenset(out)


def _resolvable(action: str, resources: list[str], role_actions: frozenset[str]) -> bool:
    """Does moto check ``action`` against the real resource, so that ``resources`` can stay?"""
    if action.lower().startswith("s3:"):
        return True
    if action in role_actions:
        return all(r.startswith("arn:aws:iam::") and ":role/" in r for r in resources)
    return False


def emulator_copy(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` as moto can check it (see the module's docstring): statements that moto cannot check
    by resource get ``Resource: "*"``; moto's own names are allowed beside S3's IAM actions."""
    role_actions = _role_actions()
    statements = []
    for s in _as_list(doc.get("Statement", [])):
        if "Action" not in s or "Resource" not in s:
            statements.append(s)  # NotAction / NotResource: as written
            continue
        actions, resources = _as_list(s["Action"]), _as_list(s["Resource"])
        actions = list(
            dict.fromkeys(
                actions + [m for a in actions for m in MOTO_S3_NAMES.get(a, ()) + MOTO_OTHER_NAMES.get(a, ())]
            )
        )
        kept = [a for a in actions if _resolvable(a, resources, role_actions)]
        widened = [a for a in actions if a not in kept]
        base = {k: v for k, v in s.items() if k not in ("Action", "Resource", "Sid")}
        sid = s.get("Sid", "")
        if kept:
            statements.append({**({"Sid": sid} if sid else {}), **base, "Action": kept, "Resource": resources})
        if widened:
            statements.append(
                {**({"Sid": f"{sid}AnyResource"} if sid else {}), **base, "Action": widened, "Resource": "*"}
            )
    return {**doc, "Statement": statements}


def _named_role(response) -> str:
    """The resource moto checks an IAM call against: the ARN of the role it names — the role's own
    when it exists, else the one the request names (``Path`` + ``RoleName``: what CreateRole makes,
    and what AWS checks a look-up of a missing role against) — and "*" for calls that name none.
    (moto's own answer is "*" for a role that does not exist, which no role-scoped statement allows.)"""
    from moto.iam.exceptions import NotFoundException

    name = response._get_param("RoleName")
    if not name:
        return "*"
    try:
        return response.backend.get_role(name).arn
    except NotFoundException:
        path = response._get_param("Path") or "/"
        return f"arn:aws:iam::{response.current_account}:role{path}{name}"


def _log_refusals() -> None:
    """Print one line (to the daemon's log) for every call the IAM check refuses: which user, which
    action, on which resource — also the refusals a step's ``except`` hides."""
    from moto.iam.access_control import IAMRequestBase

    check = IAMRequestBase.check_action_permitted

    from moto.iam.exceptions import NotFoundException

    def logged(self, resource: str) -> None:
        try:
            check(self, resource)
        except NotFoundException:
            # A role assumed in another emulated account the sandbox never set up (an instructor's room
            # of participants reached by role_arn): that account has no IAM of its own to check against.
            return
        except Exception:
            print(f"IAM check refused {self._action} on {resource} to {self._access_key.arn}", flush=True)
            raise

    IAMRequestBase.check_action_permitted = logged


def enforce(documents: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """In this (the daemon's) process: create the two users, give ``participant`` the emulator's copy
    of ``documents``, and turn on moto's IAM enforcement. Returns each user's access key
    (``{"lab": {...}, "admin": {...}}``, each ``{"access_key_id", "secret_access_key"}``)."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.iam.models import iam_backends
    from moto.iam.responses import IamResponse

    IamResponse._determine_resource = _named_role
    _log_refusals()
    iam = iam_backends[ACCOUNT]["aws"]
    keys = {}
    for who, user, docs in (
        ("lab", LAB_USER, documents),
        (
            "admin",
            ADMIN_USER,
            [
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Sid": "SandboxInternals", "Effect": "Allow", "Action": "*", "Resource": "*"}],
                }
            ],
        ),
    ):
        iam.create_user(region_name="us-east-1", user_name=user, path="/inflab-sandbox/")
        for i, doc in enumerate(docs, 1):
            body = emulator_copy(doc) if who == "lab" else doc
            policy = iam.create_policy(
                description=f"inflab sandbox: {user}",
                path="/inflab-sandbox/",
                policy_document=json.dumps(body),
                policy_name=f"{user}-{i}",
                tags=[],
            )
            iam.attach_user_policy(policy.arn, user)
        key = iam.create_access_key(user)
        keys[who] = {"access_key_id": key.access_key_id, "secret_access_key": key.secret_access_key}
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # every request from now on is checked
    ActionAuthenticatorMixin.request_count = 0
    return keys
