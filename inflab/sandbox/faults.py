"""The sandbox's faults table: where the emulated cloud answers as AWS does rather than as the emulator does.

The emulator models AWS's happy path. Real AWS sometimes has no capacity for an instance type in
a zone, refuses a reused client token, hides deprecated images, races IAM propagation, leaves a
Batch job it cannot place RUNNABLE, refuses retired machine images. Each such behaviour the lab
relies on is one entry of this table, so the lab (and its tests) can meet it here first:

    POST /inflab-sandbox/faults  {"run_instances": {"us-west-2a": "InsufficientInstanceCapacity"},
                                  "batch": {"queue_disable_lag_s": 3, "delete_ce_failures": 1}}
    GET  /inflab-sandbox/faults

(behind the gate, like every route: only the lab's own clients may change them; a POST replaces the
whole table). ``inflab sandbox start --aws-like`` starts with :data:`AWS_LIKE`: every entry that is
simply how AWS behaves, on together.

Entries
-------
``run_instances``: ``{"<zone>" or "*": code}`` — EC2 RunInstances in that zone (the request's subnet
mapped to its zone through the emulator's state) is answered with EC2's error document:
InsufficientInstanceCapacity, Unsupported, InstanceLimitExceeded, VcpuLimitExceeded.

``assume_role``: ``{"<role ARN>" or "*": "AccessDenied"}`` — STS AssumeRole of that role is refused as
AWS refuses a caller the role's trust policy does not name.

``ec2`` (see :mod:`.ec2`):

- ``client_tokens`` (true/false): RunInstances' ClientToken is idempotent; a token whose instance was
  terminated is refused with ``IdempotentInstanceTerminated``.
- ``deprecated_amis`` (true/false): DescribeImages hides images whose DeprecationTime has passed unless
  they are named by id or ``IncludeDeprecated`` is set.
- ``pending_death``: ``{"<instance type>", "<zone>" or "*": "<StateReason code>"}`` — such an instance is pending,
  then terminated before it runs, with that StateReason (e.g. ``Server.InsufficientInstanceCapacity``).

``batch`` (Batch speaks REST-JSON: ``POST /v1/<action>``; errors are ``{"__type": "ClientException",
"message": ...}`` with status 400; see :mod:`.batch_rules` and :mod:`.batch`):

- ``queue_disable_lag_s`` / ``ce_disable_lag_s``: after an UpdateJobQueue / UpdateComputeEnvironment
  that changes the state, the resource keeps showing its old state with status UPDATING for that
  many seconds, then the new state and VALID. The seconds are read as the table is now: lowering
  the entry (or a table without it) ends a lag already under way sooner.
- ``delete_ce_failures``: the next N DeleteComputeEnvironment calls that would otherwise succeed fail
  with "Cannot delete, found existing JobQueue relationship". GET shows how many are left.
- ``ce_role_propagation_s``: a compute environment created less than that many seconds after its
  roles (the instance profile and its role, the service role when one is named) is INVALID with a
  ``CLIENT_ERROR`` reason, as when IAM has not yet propagated a new role to Batch, and stays so:
  an UpdateComputeEnvironment once the roles are old enough makes it VALID again, and so does a
  compute environment created anew.
- ``unplaceable_jobs`` (true/false): a job whose vCPUs, memory or GPUs no instance type of its queue's
  compute environments can hold (memory: what ECS registers, ~97% of the nominal, less 32 MiB for the
  agent), or more vCPUs than the environment's maxvCpus, stays RUNNABLE with Batch's statusReason
  (``MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - …``); the queue's ``jobStateTimeLimitActions`` cancel
  it after their ``maxTimeSeconds``.
- ``runnable_time_scale``: a factor on those ``maxTimeSeconds`` (AWS's least is 600 s: tests use 0.01).
- ``awslogs_group_required`` (true/false): a job whose definition logs to an ``awslogs-group`` that does
  not exist fails at start with the awslogs driver's error, as on AWS (the emulator creates the group).
- ``retired_image_types`` (true/false): CreateComputeEnvironment refuses the Amazon Linux 2 ECS images
  (``ECS_AL2``, ``ECS_AL2_NVIDIA``: blocked for new compute environments since 2026-06-30) and
  ``ECS_AL2023_NVIDIA`` with p3 or g3 instance types (that image does not support them).

``sagemaker`` (see :mod:`.sagemaker`):

- ``role_propagation_s``: CreateModel with an execution role made less than that many seconds before is
  refused as SageMaker refuses a role it cannot assume yet ("Could not assume role …"), as while IAM
  propagates a new role.

Always on, because AWS always does it: Batch's service-linked role stands in when a managed compute
environment names no service role; queues keep their ``jobStateTimeLimitActions``; deletes follow
AWS's rules (a job queue must be DISABLED and not UPDATING; a compute environment must be DISABLED,
not UPDATING, and in no job queue's compute environment order); the machine images of
:mod:`.images`.
"""

from __future__ import annotations

import copy
import io
import json
import threading
from typing import Any, Callable
from urllib.parse import parse_qs

from ..errors import InputError

MESSAGES = {
    "InsufficientInstanceCapacity": "We currently do not have sufficient {itype} capacity in the Availability Zone you requested ({az}). "
    "Our system will be working on provisioning additional capacity.",
    "Unsupported": "Your requested instance type ({itype}) is not supported in your requested Availability Zone ({az}).",
    "InstanceLimitExceeded": "You have requested more instances than your current instance limit allows for the specified instance type.",
    "VcpuLimitExceeded": "You have requested more vCPU capacity than your current vCPU limit allows for the instance bucket that the specified instance type belongs to.",
}
MAP = "map"  # a section or key whose value is {name or "*": text}
KEYS: dict[str, Any] = {
    "run_instances": MAP,
    "assume_role": MAP,
    "ec2": {"client_tokens": bool, "deprecated_amis": bool, "pending_death": MAP},
    "batch": {
        "queue_disable_lag_s": float,
        "ce_disable_lag_s": float,
        "delete_ce_failures": int,
        "ce_role_propagation_s": float,
        "unplaceable_jobs": bool,
        "runnable_time_scale": float,
        "awslogs_group_required": bool,
        "retired_image_types": bool,
    },
    "sagemaker": {"role_propagation_s": float},
}
BATCH_KEYS = KEYS["batch"]
#: what AWS does that the emulator does not: ``inflab sandbox start --aws-like``
AWS_LIKE: dict[str, dict[str, Any]] = {
    "ec2": {"client_tokens": True, "deprecated_amis": True},
    "batch": {
        "ce_role_propagation_s": 3,
        "unplaceable_jobs": True,
        "awslogs_group_required": True,
        "retired_image_types": True,
    },
    "sagemaker": {"role_propagation_s": 3},
}


class BadFaults(InputError, ValueError):
    pass


def _check_map(where: str, value: Any) -> None:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise BadFaults(f'{where}: an object of names to codes, e.g. {{"*": "InsufficientInstanceCapacity"}}')


def _check_value(where: str, kind: Any, value: Any) -> None:
    if kind == MAP:
        _check_map(where, value)
    elif kind is bool:
        if not isinstance(value, bool):
            raise BadFaults(f"{where}: must be true or false")
    elif (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or value < 0
        or (kind is int and value != int(value))
    ):
        raise BadFaults(f"{where}: must be a {'whole ' if kind is int else ''}number >= 0")


def validated(body: Any) -> dict[str, dict]:
    """The table ``body`` describes, or :class:`BadFaults` naming the first entry that is wrong."""
    if not isinstance(body, dict) or not all(isinstance(v, dict) for v in body.values()):
        raise BadFaults('faults: an object of objects, e.g. {"batch": {"delete_ce_failures": 1}}')
    for section, entries in body.items():
        spec = KEYS.get(section)
        if spec is None:
            raise BadFaults(f"{section}: not a fault section (known: {', '.join(KEYS)})")
        if spec == MAP:
            _check_map(section, entries)
            continue
        for key, value in entries.items():
            if key not in spec:
                raise BadFaults(f"{section}.{key}: not a fault (known: {', '.join(spec)})")
            _check_value(f"{section}.{key}", spec[key], value)
    return copy.deepcopy(body)


_validated = validated  # the name tests and older callers use


def merged(base: dict[str, dict], extra: dict[str, dict]) -> dict[str, dict]:
    """``base`` with ``extra``'s entries over it, section by section."""
    out = copy.deepcopy(base)
    for section, entries in extra.items():
        out[section] = {**out.get(section, {}), **copy.deepcopy(entries)}
    return out


def _signed_scope(environ) -> tuple[str, str]:
    """(region, service) from the request's SigV4 credential scope."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    if "Credential=" in auth:
        parts = auth.split("Credential=")[1].split(",")[0].split("/")
        if len(parts) > 3:
            return parts[2], parts[3]
    return "us-east-1", ""


class FaultLayer:
    """A WSGI layer in front of the emulator holding the faults table; the emulator hooks of
    :mod:`.ec2` and :mod:`.batch` read it too (:meth:`fault_flag`, :meth:`fault_table`)."""

    def __init__(self, app: Callable, account: str = "123456789012", table: dict | None = None):
        from .batch_rules import BatchRules

        self.app = app
        self.account = account
        self.faults: dict[str, dict[str, Any]] = validated(table or {})
        self.lock = threading.Lock()
        self.batch = BatchRules(self)

    def _json(self, start_response, status: str, body: Any):
        data = json.dumps(body).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    def _zone_of_subnet(self, region: str, subnet_id: str) -> str:
        from moto.ec2.models import ec2_backends

        try:
            return ec2_backends[self.account][region].get_subnet(subnet_id).availability_zone
        except Exception:
            return ""

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/inflab-sandbox/faults":
            if environ["REQUEST_METHOD"] == "POST":
                size = int(environ.get("CONTENT_LENGTH") or 0)
                try:
                    table = validated(json.loads(environ["wsgi.input"].read(size) or b"{}"))
                except ValueError as e:
                    return self._json(
                        start_response,
                        "400 Bad Request",
                        {"error": str(e) if isinstance(e, BadFaults) else "body is not JSON"},
                    )
                with self.lock:
                    self.faults = table
            with self.lock:
                return self._json(start_response, "200 OK", self.faults)
        if environ["REQUEST_METHOD"] == "POST" and path.startswith("/v1/") and _signed_scope(environ)[1] == "batch":
            return self.batch(environ, start_response)
        if environ["REQUEST_METHOD"] == "POST" and (self.faults.get("run_instances") or self.faults.get("assume_role")):
            size = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(size)
            environ["wsgi.input"] = io.BytesIO(raw)
            form = parse_qs(raw.decode("utf-8", "replace"))
            if form.get("Action") == ["RunInstances"]:
                fault = self._fault_for(environ, form)
                if fault:
                    return self._ec2_error(start_response, *fault)
            if form.get("Action") == ["AssumeRole"]:
                role = (form.get("RoleArn") or [""])[0]
                with self.lock:
                    table = self.faults.get("assume_role", {})
                    code = table.get(role) or table.get("*")
                if code:
                    return self._sts_error(start_response, code, role)
        return self.app(environ, start_response)

    def _sts_error(self, start_response, code: str, role: str):
        message = (
            f"User: arn:aws:iam::{self.account}:user/instructor is not authorized to perform: sts:AssumeRole "
            f"on resource: {role}"
        )
        body = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
            "<RequestId>inflab-sandbox-fault</RequestId></ErrorResponse>"
        ).encode()
        start_response("403 Forbidden", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
        return [body]

    def _fault_for(self, environ, form) -> tuple[str, str] | None:
        region = _signed_scope(environ)[0]
        subnet = (form.get("SubnetId") or [""])[0]
        az = self._zone_of_subnet(region, subnet) if subnet else (form.get("Placement.AvailabilityZone") or [""])[0]
        with self.lock:
            table = self.faults.get("run_instances", {})
            code = table.get(az) or table.get("*")
        if not code:
            return None
        itype = (form.get("InstanceType") or ["the requested type"])[0]
        return code, MESSAGES.get(code, code).format(itype=itype, az=az or "any")

    def _ec2_error(self, start_response, code: str, message: str):
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error></Errors><RequestID>inflab-sandbox-fault</RequestID></Response>"
        ).encode()
        start_response("400 Bad Request", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
        return [body]

    # -- what the hooks read ------------------------------------------------------------------
    def take_fault(self, section: str, key: str) -> bool:
        """Use up one of a counted fault (e.g. batch.delete_ce_failures); True if one was left."""
        with self.lock:
            table = self.faults.get(section, {})
            left = int(table.get(key, 0))
            if left <= 0:
                return False
            table[key] = left - 1
            return True

    def fault_value(self, section: str, key: str, default: float = 0) -> float:
        with self.lock:
            return float(self.faults.get(section, {}).get(key, default))

    def fault_flag(self, section: str, key: str) -> bool:
        with self.lock:
            return self.faults.get(section, {}).get(key) is True

    def fault_table(self, section: str, key: str) -> dict[str, str]:
        with self.lock:
            return dict(self.faults.get(section, {}).get(key) or {})
