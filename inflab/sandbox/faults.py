"""Fault injection for the sandbox cloud: a WSGI layer in front of the emulator.

Real AWS sometimes has no capacity for an instance type in a zone, or an account's quota
is too low; Batch resources change state slowly and refuse deletes while something still
uses them. The sandbox can be told to answer like that, so the lab (and its tests) can
show what happens:

    POST /inflab-sandbox/faults  {"run_instances": {"us-west-2a": "InsufficientInstanceCapacity"},
                                  "batch": {"queue_disable_lag_s": 3, "ce_disable_lag_s": 2,
                                            "delete_ce_failures": 1}}
    GET  /inflab-sandbox/faults

(behind the gate, like every route: only the lab's own clients may change them; a POST
replaces the whole table).

``assume_role``: ``{"<role ARN>" or "*": "AccessDenied"}`` — STS AssumeRole of that role is refused
as AWS refuses a caller the role's trust policy does not name.

``run_instances``: a zone may also be ``"*"`` (every zone). The layer looks at EC2
RunInstances calls only, maps the subnet in the request to its zone through the emulator's
own state, and answers with EC2's error document instead of passing the call on.

``batch`` (Batch speaks REST-JSON: ``POST /v1/<action>``; errors are
``{"__type": "ClientException", "message": ...}`` with status 400):

- ``queue_disable_lag_s`` / ``ce_disable_lag_s``: after an UpdateJobQueue /
  UpdateComputeEnvironment that changes the state, the resource keeps showing its old state
  with status UPDATING for that many seconds, then the new state and VALID. The emulator
  itself changes at once; the lag is a view this layer keeps (ARN → state shown, until when)
  and writes into DescribeJobQueues / DescribeComputeEnvironments answers.
- ``delete_ce_failures``: the next N DeleteComputeEnvironment calls that would otherwise
  succeed fail with "Cannot delete, found existing JobQueue relationship" (the race with a
  queue that is still being deleted). GET shows how many are left.

Whatever the faults, deletes follow AWS's rules (the emulator deletes anything): a job
queue must be DISABLED and not UPDATING; a compute environment must be DISABLED, not
UPDATING, and in no job queue's compute environment order.
"""

from __future__ import annotations

import io
import json
import threading
import time
from typing import Any, Callable
from urllib.parse import parse_qs

MESSAGES = {
    "InsufficientInstanceCapacity": "We currently do not have sufficient {itype} capacity in the Availability Zone you requested ({az}). "
    "Our system will be working on provisioning additional capacity.",
    "Unsupported": "Your requested instance type ({itype}) is not supported in your requested Availability Zone ({az}).",
    "InstanceLimitExceeded": "You have requested more instances than your current instance limit allows for the specified instance type.",
    "VcpuLimitExceeded": "You have requested more vCPU capacity than your current vCPU limit allows for the instance bucket that the specified instance type belongs to.",
}
BATCH_KEYS = {"queue_disable_lag_s": float, "ce_disable_lag_s": float, "delete_ce_failures": int}
CE_IN_USE = "Cannot delete, found existing JobQueue relationship"


class BadFaults(ValueError):
    pass


def _validated(body: Any) -> dict[str, dict]:
    if not isinstance(body, dict) or not all(isinstance(v, dict) for v in body.values()):
        raise BadFaults("faults: an object of objects, e.g. {\"batch\": {\"delete_ce_failures\": 1}}")
    batch = body.get("batch", {})
    for key, value in batch.items():
        kind = BATCH_KEYS.get(key)
        if kind is None:
            raise BadFaults(f"batch.{key}: not a fault (known: {', '.join(BATCH_KEYS)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (kind is int and value != int(value)):
            raise BadFaults(f"batch.{key}: must be a {'whole ' if kind is int else ''}number >= 0")
    return {k: dict(v) for k, v in body.items()}


def _signed_scope(environ) -> tuple[str, str]:
    """(region, service) from the request's SigV4 credential scope."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    if "Credential=" in auth:
        parts = auth.split("Credential=")[1].split(",")[0].split("/")
        if len(parts) > 3:
            return parts[2], parts[3]
    return "us-east-1", ""


class FaultLayer:
    def __init__(self, app: Callable, account: str = "123456789012"):
        self.app = app
        self.account = account
        self.faults: dict[str, dict[str, Any]] = {}
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
                    table = _validated(json.loads(environ["wsgi.input"].read(size) or b"{}"))
                except ValueError as e:
                    return self._json(start_response, "400 Bad Request",
                                      {"error": str(e) if isinstance(e, BadFaults) else "body is not JSON"})
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
        message = (f"User: arn:aws:iam::{self.account}:user/instructor is not authorized to perform: sts:AssumeRole "
                   f"on resource: {role}")
        body = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
                "<RequestId>inflab-sandbox-fault</RequestId></ErrorResponse>").encode()
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
            f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code>"
            f"<Message>{message}</Message></Error></Errors><RequestID>inflab-sandbox-fault</RequestID></Response>"
        ).encode()
        start_response("400 Bad Request", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
        return [body]

    def take_fault(self, section: str, key: str) -> bool:
        """Use up one of a counted fault (e.g. batch.delete_ce_failures); True if one was left."""
        with self.lock:
            table = self.faults.get(section, {})
            left = int(table.get(key, 0))
            if left <= 0:
                return False
            table[key] = left - 1
            return True

    def fault_value(self, section: str, key: str) -> float:
        with self.lock:
            return float(self.faults.get(section, {}).get(key, 0))


class BatchRules:
    """Batch's control plane as AWS answers it: slow state changes and refused deletes."""

    def __init__(self, layer: FaultLayer):
        self.layer = layer
        self.lock = threading.Lock()
        self.lagging: dict[str, tuple[str, float]] = {}  # ARN -> (state shown, until when: monotonic)

    def _backend(self, region: str):
        from moto.batch.models import batch_backends

        return batch_backends[self.layer.account][region]

    def shown(self, arn: str, state: str) -> tuple[str, str]:
        """(state, status) a describe shows for a resource whose emulated state is ``state``."""
        with self.lock:
            lag = self.lagging.get(arn)
            if lag and time.monotonic() < lag[1]:
                return lag[0], "UPDATING"
            self.lagging.pop(arn, None)
        return state, "VALID"

    def _lag(self, arn: str, shown_state: str, seconds: float) -> None:
        with self.lock:
            self.lagging[arn] = (shown_state, time.monotonic() + seconds)

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
        backend = self._backend(_signed_scope(environ)[0])
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
        elif action in ("updatejobqueue", "updatecomputeenvironment"):
            queue = action == "updatejobqueue"
            ident = body.get("jobQueue" if queue else "computeEnvironment")
            found = (backend.get_job_queue(ident) if queue else backend.get_compute_environment(ident)) if isinstance(ident, str) else None
            before = (found.state, self.shown(found.arn, found.state)[0]) if found is not None else None
            status, headers, data = self._call(environ)
            lag = self.layer.fault_value("batch", "queue_disable_lag_s" if queue else "ce_disable_lag_s")
            if before is not None and status.startswith("2") and lag > 0 and found.state != before[0]:
                self._lag(found.arn, before[1], lag)  # it goes on showing what it showed
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
            if any(o.get("computeEnvironment") in (env.name, env.arn) for o in queue.get("computeEnvironmentOrder") or []):
                return CE_IN_USE
        return None

    def _rewrite(self, action: str, data: bytes) -> bytes:
        try:
            doc = json.loads(data)
        except ValueError:
            return data
        key, arn_key = (("jobQueues", "jobQueueArn") if action == "describejobqueues"
                        else ("computeEnvironments", "computeEnvironmentArn"))
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
        start_response("400 Bad Request", [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                                           ("x-amzn-ErrorType", "ClientException")])
        return [data]
