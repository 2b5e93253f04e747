"""Where the lab's instance is reached: its public IP, or the sandbox's SSH port on loopback."""

from __future__ import annotations

from ..lab_steps.access import key_path
from ..lab_steps.base import StepContext, StepError
from .ssh import HostKeyPin, Target


def target(ctx: StepContext) -> Target:
    host = ctx.get("host")
    if not host:
        raise StepError("No running instance recorded: run the wait-running step first")
    if ctx.sandbox:
        from .. import sandbox

        info = sandbox.ensure_running(ctx.store.home)
        return Target("127.0.0.1", info.ssh_port, host["user"], str(key_path(ctx)))
    return Target(host["public_ip"], 22, host["user"], str(key_path(ctx)))


def pin_for(ctx: StepContext) -> HostKeyPin:
    """The session's pinned host key, if it belongs to the current instance."""
    host = ctx.get("host") or {}
    saved = ctx.get("host_key") or {}
    if saved.get("instance_id") == host.get("instance_id") and saved.get("fingerprint"):
        return HostKeyPin(fingerprint=saved["fingerprint"])
    return HostKeyPin()


def save_pin(ctx: StepContext, pin: HostKeyPin) -> None:
    host = ctx.get("host") or {}
    ctx.put("host_key", {"instance_id": host.get("instance_id"), "fingerprint": pin.seen,
                         "source": pin.source if pin.source != "pinned" else (ctx.get("host_key") or {}).get("source", "pinned")})
