"""Fault injection for the sandbox cloud: a WSGI layer in front of the emulator.

Real AWS sometimes has no capacity for an instance type in a zone, or an account's quota
is too low. The sandbox can be told to answer like that, so the lab (and its tests) can
show what happens:

    POST /inflab-sandbox/faults  {"run_instances": {"us-west-2a": "InsufficientInstanceCapacity"}}
    GET  /inflab-sandbox/faults

(behind the gate, like every route: only the lab's own clients may change them).

A zone may also be ``"*"`` (every zone). The layer looks at EC2 RunInstances calls only,
maps the subnet in the request to its zone through the emulator's own state, and answers
with EC2's error document instead of passing the call on.
"""

from __future__ import annotations

import io
import json
import threading
from typing import Any, Callable
from urllib.parse import parse_qs

MESSAGES = {
    "InsufficientInstanceCapacity": "We currently do not have sufficient {itype} capacity in the Availability Zone you requested ({az}). "
    "Our system will be working on provisioning additional capacity.",
    "Unsupported": "Your requested instance type ({itype}) is not supported in your requested Availability Zone ({az}).",
    "InstanceLimitExceeded": "You have requested more instances than your current instance limit allows for the specified instance type.",
    "VcpuLimitExceeded": "You have requested more vCPU capacity than your current vCPU limit allows for the instance bucket that the specified instance type belongs to.",
}


class FaultLayer:
    def __init__(self, app: Callable, account: str = "123456789012"):
        self.app = app
        self.account = account
        self.faults: dict[str, dict[str, str]] = {}
        self.lock = threading.Lock()

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
                    body = json.loads(environ["wsgi.input"].read(size) or b"{}")
                except ValueError:
                    return self._json(start_response, "400 Bad Request", {"error": "body is not JSON"})
                with self.lock:
                    self.faults = {k: dict(v) for k, v in body.items()}
            with self.lock:
                return self._json(start_response, "200 OK", self.faults)
        if environ["REQUEST_METHOD"] == "POST" and self.faults.get("run_instances"):
            size = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(size)
            environ["wsgi.input"] = io.BytesIO(raw)
            form = parse_qs(raw.decode("utf-8", "replace"))
            if form.get("Action") == ["RunInstances"]:
                fault = self._fault_for(environ, form)
                if fault:
                    return self._ec2_error(start_response, *fault)
        return self.app(environ, start_response)

    def _fault_for(self, environ, form) -> tuple[str, str] | None:
        auth = environ.get("HTTP_AUTHORIZATION", "")
        region = "us-east-1"
        if "Credential=" in auth:
            parts = auth.split("Credential=")[1].split("/")
            if len(parts) > 2:
                region = parts[2]
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
