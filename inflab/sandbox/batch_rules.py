"""Batch's control plane as AWS answers it: a WSGI layer in front of the emulator's Batch (REST-JSON).

The entries of the faults table it serves (see :mod:`.faults` for the table): state lag after an
update and refused deletes (always by AWS's rules, plus ``delete_ce_failures``); retired machine
images refused at CreateComputeEnvironment (``retired_image_types``); a compute environment made
before IAM has propagated its roles goes INVALID (``ce_role_propagation_s``). Always: a job queue's
``jobStateTimeLimitActions`` are checked as Batch checks them and kept (the emulator drops them;
:mod:`.batch` shows them and acts on them).
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any

CE_IN_USE = "Cannot delete, found existing JobQueue relationship"
RETIRED_IMAGE_TYPES = {
    "ECS_AL2": "Amazon Linux 2",
    "ECS_AL2_NVIDIA": "Amazon Linux 2 (GPU)",
}
NVIDIA_UNSUPPORTED = ("p3", "g3")
TIME_LIMIT_REASONS = (
    "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY",
    "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE",
    "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT",
)
TIME_LIMIT_S = (600, 86_400)
SERVICE_LINKED_ROLE = "AWSServiceRoleForBatch"


def _signed_region(environ) -> str:
    from .faults import _signed_scope

    return _signed_scope(environ)[0]


def role_age_s(iam: Any, compute_resources: dict, service_role: str | None) -> tuple[float, str]:
    """(seconds since the newest of a compute environment's roles was made, that role's ARN)."""
    now = datetime.now(timezone.utc)
    found: list[tuple[datetime, str]] = []
    profile_ref = str(compute_resources.get("instanceRole") or "")
    for profile in list(iam.instance_profiles.values()):
        if profile_ref in (profile.arn, profile.name):
            found.append((profile.create_date, profile.arn))
            found += [(role.create_date, role.arn) for role in profile.roles]
    if service_role and SERVICE_LINKED_ROLE not in service_role:
        try:
            role = iam.get_role_by_arn(service_role)
            found.append((role.create_date, role.arn))
        except Exception:
            pass
    if not found:
        return float("inf"), ""
    when, arn = max(found, key=lambda f: f[0] if f[0].tzinfo else f[0].replace(tzinfo=timezone.utc))
    when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    return (now - when).total_seconds(), arn


class BatchRules:
    """Batch's control plane as AWS answers it (see the module's docstring)."""

    def __init__(self, layer: Any):
        self.layer = layer
        self.lock = threading.Lock()
        # ARN -> (state shown, since when: monotonic, the fault whose seconds it lasts: read as the table is now)
        self.lagging: dict[str, tuple[str, float, str]] = {}

    def _backend(self, region: str):
        from moto.batch.models import batch_backends

        return batch_backends[self.layer.account][region]

    def shown(self, arn: str, state: str) -> tuple[str, str]:
        """(state, status) a describe shows for a resource whose emulated state is ``state``. A lag lasts
        as many seconds as its fault says now: lowering the fault (or a table without it) ends it sooner."""
        with self.lock:
            lag = self.lagging.get(arn)
        if lag is not None:
            if time.monotonic() < lag[1] + self.layer.fault_value("batch", lag[2]):
                return lag[0], "UPDATING"
            with self.lock:
                if self.lagging.get(arn) is lag:  # not one an update set meanwhile
                    del self.lagging[arn]
        return state, "VALID"

    def _lag(self, arn: str, shown_state: str, fault: str) -> None:
        with self.lock:
            self.lagging[arn] = (shown_state, time.monotonic(), fault)

    def __call__(self, environ, start_response):
        action = environ.get("PATH_INFO", "").split("/")[2].lower()
        size = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(size)
        environ["wsgi.input"] = io.BytesIO(raw)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        backend = self._backend(_signed_region(environ))
        if action == "deletejobqueue":
            refusal = self._refuse_queue_delete(backend, body.get("jobQueue"))
            if refusal:
                return self._error(start_response, refusal)
        elif action == "deletecomputeenvironment":
            refusal = self._refuse_ce_delete(backend, body.get("computeEnvironment"))
            if refusal is None and self.layer.take_fault("batch", "delete_ce_failures"):
                refusal = CE_IN_USE
            if refusal:
                return self._error(start_response, refusal)
        elif action == "createcomputeenvironment":
            refusal = self._refuse_image(body)
            if refusal:
                return self._error(start_response, refusal)
            status, headers, data = self._call(environ)
            if status.startswith("2"):
                self._check_roles(backend, body.get("computeEnvironmentName"))
            return self._respond(start_response, status, headers, data)
        elif action in ("createjobqueue", "updatejobqueue") and "jobStateTimeLimitActions" in body:
            refusal = _time_limit_refusal(body["jobStateTimeLimitActions"])
            if refusal:
                return self._error(start_response, refusal)
            status, headers, data = self._call(environ)
            if status.startswith("2"):
                found = backend.get_job_queue(body.get("jobQueueName") or body.get("jobQueue"))
                if found is not None:
                    found.inflab_time_limits = [dict(a) for a in body["jobStateTimeLimitActions"]]
            return self._respond(start_response, status, headers, data)
        elif action in ("updatejobqueue", "updatecomputeenvironment"):
            queue = action == "updatejobqueue"
            ident = body.get("jobQueue" if queue else "computeEnvironment")
            found = (
                (backend.get_job_queue(ident) if queue else backend.get_compute_environment(ident))
                if isinstance(ident, str)
                else None
            )
            before = (found.state, self.shown(found.arn, found.state)[0]) if found is not None else None
            status, headers, data = self._call(environ)
            fault = "queue_disable_lag_s" if queue else "ce_disable_lag_s"
            lag = self.layer.fault_value("batch", fault)
            if before is not None and status.startswith("2") and lag > 0 and found.state != before[0]:
                self._lag(found.arn, before[1], fault)  # it goes on showing what it showed
            if found is not None and not queue and status.startswith("2"):
                self._check_roles(backend, found.name)  # an update makes Batch look at the roles again
            return self._respond(start_response, status, headers, data)
        elif action in ("describejobqueues", "describecomputeenvironments"):
            with self.lock:
                any_lag = bool(self.lagging)
            if any_lag:
                status, headers, data = self._call(environ)
                if status.startswith("2"):
                    data = self._rewrite(action, data)
                return self._respond(start_response, status, headers, data)
        return self.layer.app(environ, start_response)

    def _refuse_image(self, body: dict) -> str | None:
        """Batch's refusal of a compute environment on an image it no longer provides (fault
        ``retired_image_types``)."""
        if not self.layer.fault_flag("batch", "retired_image_types"):
            return None
        resources = body.get("computeResources") or {}
        types = [str(t) for t in resources.get("instanceTypes") or []]
        for config in resources.get("ec2Configuration") or [{"imageType": "ECS_AL2023"}]:
            image_type = str((config or {}).get("imageType") or "ECS_AL2023")
            if image_type in RETIRED_IMAGE_TYPES:
                return (
                    f"Error executing request, Exception : imageType {image_type}: AWS Batch no longer creates compute "
                    f"environments on the Batch-provided {RETIRED_IMAGE_TYPES[image_type]} AMIs (blocked since "
                    "June 30, 2026); use ECS_AL2023 or ECS_AL2023_NVIDIA"
                )
            if image_type == "ECS_AL2023_NVIDIA":
                bad = [t for t in types if t.split(".")[0] in NVIDIA_UNSUPPORTED]
                if bad:
                    return (
                        f"Error executing request, Exception : imageType ECS_AL2023_NVIDIA doesn't support p3 and g3 "
                        f"instance types ({', '.join(bad)})"
                    )
        return None

    def _check_roles(self, backend, name: Any) -> None:
        """Mark a compute environment INVALID while its roles are younger than the fault's propagation
        time (``ce_role_propagation_s``); clear the mark once they are not."""
        env = backend.get_compute_environment(name) if isinstance(name, str) else None
        if env is None or env.env_type != "MANAGED":
            return
        wait = self.layer.fault_value("batch", "ce_role_propagation_s")
        age, arn = role_age_s(backend.iam_backend, env.compute_resources or {}, env.service_role)
        if wait > 0 and age < wait:
            env.inflab_invalid = (
                f"CLIENT_ERROR - Not authorized to perform sts:AssumeRole on {arn} (Service: "
                f"AWSSecurityTokenService; Status Code: 403; Error Code: AccessDenied; "
                f"Request ID: {uuid.uuid4()}; Proxy: null)"
            )
        else:
            env.inflab_invalid = None

    def _refuse_queue_delete(self, backend, ident: Any) -> str | None:
        queue = backend.get_job_queue(ident) if isinstance(ident, str) else None
        if queue is None:
            return None
        state, status = self.shown(queue.arn, queue.state)
        if state != "DISABLED" or status != "VALID":
            return f"Cannot delete, job queue {queue.name} is not in DISABLED state (state {state}, status {status})"
        return None

    def _refuse_ce_delete(self, backend, ident: Any) -> str | None:
        env = backend.get_compute_environment(ident) if isinstance(ident, str) else None
        if env is None:
            return None
        state, status = self.shown(env.arn, env.state)
        if state != "DISABLED" or status != "VALID":
            return f"Cannot delete, compute environment {env.name} is not in DISABLED state (state {state}, status {status})"
        for queue in backend.describe_job_queues():
            if any(
                o.get("computeEnvironment") in (env.name, env.arn) for o in queue.get("computeEnvironmentOrder") or []
            ):
                return CE_IN_USE
        return None

    def _rewrite(self, action: str, data: bytes) -> bytes:
        try:
            doc = json.loads(data)
        except ValueError:
            return data
        key, arn_key = (
            ("jobQueues", "jobQueueArn")
            if action == "describejobqueues"
            else ("computeEnvironments", "computeEnvironmentArn")
        )
        for item in doc.get(key) or []:
            state, status = self.shown(item.get(arn_key, ""), item.get("state", ""))
            if status == "UPDATING":
                item["state"], item["status"] = state, status
                item.pop("statusReason", None)
        return json.dumps(doc).encode()

    def _call(self, environ) -> tuple[str, list, bytes]:
        """Call the emulator and keep its whole answer (to look at it before it is sent)."""
        seen: dict[str, Any] = {}
        chunks: list[bytes] = []

        def start(status, headers, exc_info=None):
            seen["status"], seen["headers"] = status, headers
            return chunks.append

        result = self.layer.app(environ, start)
        try:
            chunks.extend(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        return seen["status"], seen["headers"], b"".join(chunks)

    def _respond(self, start_response, status: str, headers: list, data: bytes):
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"] + [("Content-Length", str(len(data)))]
        start_response(status, headers)
        return [data]

    def _error(self, start_response, message: str):
        data = json.dumps({"__type": "ClientException", "message": message}).encode()
        start_response(
            "400 Bad Request",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(data))),
                ("x-amzn-ErrorType", "ClientException"),
            ],
        )
        return [data]


def _time_limit_refusal(actions: Any) -> str | None:
    """What Batch says of ``jobStateTimeLimitActions`` it does not take, or None."""
    if not isinstance(actions, list):
        return "Error executing request, Exception : jobStateTimeLimitActions must be a list"
    for a in actions:
        if not isinstance(a, dict):
            return "Error executing request, Exception : each jobStateTimeLimitAction must be an object"
        if a.get("state") != "RUNNABLE":
            return f"Error executing request, Exception : Invalid state {a.get('state')!r}: only RUNNABLE is supported"
        if a.get("action") != "CANCEL":
            return f"Error executing request, Exception : Invalid action {a.get('action')!r} for this job queue: CANCEL"
        if a.get("reason") not in TIME_LIMIT_REASONS:
            return f"Error executing request, Exception : Invalid job reason {a.get('reason')!r}"
        t = a.get("maxTimeSeconds")
        if isinstance(t, bool) or not isinstance(t, int) or not TIME_LIMIT_S[0] <= t <= TIME_LIMIT_S[1]:
            return (
                f"Error executing request, Exception : maxTimeSeconds {t!r} must be between {TIME_LIMIT_S[0]} and "
                f"{TIME_LIMIT_S[1]}"
            )
    return None
