"""EC2 as AWS answers it, where the emulator is kinder: entries of the faults table (:mod:`.faults`).

- ``ec2.client_tokens``: RunInstances' ClientToken is idempotent, as on AWS. A token already used
  returns the instances it launched (nothing new starts); a token whose instance was terminated is
  refused with ``IdempotentInstanceTerminated`` (EC2 answers that since January 2025); the same token
  with another instance type or subnet is ``IdempotentParameterMismatch``. (The emulator launches a
  new instance for every call, whatever its token.)
- ``ec2.deprecated_amis``: DescribeImages leaves out images whose DeprecationTime has passed, unless
  the call names them by id or sets ``IncludeDeprecated`` (AWS hides deprecated public AMIs from
  their users; public AMIs are deprecated two years after creation at the latest).
- ``ec2.pending_death``: ``{"<instance type>", "<zone>" or "*": "<state reason code>"}`` — an instance of
  that type, or in that zone, is answered ``pending`` by RunInstances, then dies before it runs: ``terminated``, with
  ``StateReason`` ``{"Code": code, "Message": "code: …"}`` (as when EC2 loses capacity during launch).

:func:`install` (called once by the daemon) wraps the emulator's ``run_instances`` and its
DescribeImages answer; what they do depends on the faults table of the layer given.
"""

from __future__ import annotations

import threading
from typing import Any

PENDING_FOR_S = 1.0
MESSAGES = {
    "Server.InsufficientInstanceCapacity": "Server.InsufficientInstanceCapacity: Insufficient capacity.",
    "Server.InternalError": "Server.InternalError: Internal error on launch",
    "Client.InternalError": "Client.InternalError: Client error on launch",
    "Client.VolumeLimitExceeded": "Client.VolumeLimitExceeded: Volume limit exceeded",
}
TERMINATED_TOKEN = (
    "The client token you have provided is associated with a terminated instance. Please use a different client token."
)
MISMATCH = "Arguments on this idempotent request are inconsistent with arguments used in previous request(s)."

_installed = False


def _by_token(backend: Any, token: str) -> Any | None:
    for reservation in list(backend.reservations.values()):
        if any(getattr(i, "client_token", None) == token for i in reservation.instances):
            return reservation
    return None


def _die(instance: Any, code: str) -> None:
    from moto.ec2.models.instances import StateReason

    instance.terminate()
    instance.state_reason = StateReason(MESSAGES.get(code, f"{code}: {code}"), code)
    instance._reason = f"{code} during launch"


def install(layer: Any) -> None:
    """Hook the emulator's EC2 so that it answers as the faults table of ``layer`` says; idempotent."""
    global _installed
    if _installed:
        return
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.instances import InstanceBackend
    from moto.ec2.responses.amis import AmisResponse

    from .images import deprecated

    run_instances = InstanceBackend.run_instances
    lock = threading.Lock()

    def _run_instances(self, image_id, count, user_data, security_group_names, **kwargs):
        token = kwargs.get("client_token")
        with lock:  # two calls with one token at once: one launch
            if layer.fault_flag("ec2", "client_tokens") and token and token != "ABCDE":
                earlier = _by_token(self, token)
                if earlier is not None:
                    if any(i.state == "terminated" for i in earlier.instances):
                        raise EC2ClientError("IdempotentInstanceTerminated", TERMINATED_TOKEN)
                    first = earlier.instances[0]
                    asked_type = kwargs.get("instance_type") if not kwargs.get("is_instance_type_default") else None
                    if (asked_type and asked_type != first.instance_type) or (
                        kwargs.get("subnet_id") and kwargs["subnet_id"] != first.subnet_id
                    ):
                        raise EC2ClientError("IdempotentParameterMismatch", MISMATCH)
                    return earlier
            reservation = run_instances(self, image_id, count, user_data, security_group_names, **kwargs)
        deaths = layer.fault_table("ec2", "pending_death")
        for instance in reservation.instances:
            code = deaths.get(instance.instance_type) or deaths.get(instance._placement.zone) or deaths.get("*")
            if code:
                instance._state.name, instance._state.code = "pending", 0
                timer = threading.Timer(PENDING_FOR_S, _die, args=(instance, code))
                timer.daemon = True
                timer.start()
        return reservation

    describe_images = AmisResponse.describe_images

    def _describe_images(self):
        result = describe_images(self)
        include = str(self._get_param("IncludeDeprecated", "false")).lower() == "true"
        if layer.fault_flag("ec2", "deprecated_amis") and not include and not self._get_param("ImageIds", []):
            mine = self.current_account
            result.result["Images"] = [i for i in result.result["Images"] if i.owner_id == mine or not deprecated(i)]
        return result

    InstanceBackend.run_instances = _run_instances
    AmisResponse.describe_images = _describe_images
    _installed = True
