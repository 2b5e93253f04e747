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
    old = ctx.get("host_key") or {}
    ctx.put("host_key", {"instance_id": host.get("instance_id"), "fingerprint": pin.seen,
                         "public_key": pin.seen_key or old.get("public_key"),
                         "source": pin.source if pin.source != "pinned" else old.get("source", "pinned")})


def known_hosts_file(ctx: StepContext) -> str | None:
    """Write the pinned host key where OpenSSH can check it (for "open in my terminal")."""
    key = (ctx.get("host_key") or {}).get("public_key")
    if not key:
        return None
    t = target(ctx)
    name = t.host if t.port == 22 else f"[{t.host}]:{t.port}"
    path = ctx.session_dir / "known_hosts"
    path.write_text(f"{name} {key}\n")
    return str(path)


def ssh_command(ctx: StepContext, *remote: str) -> list[str]:
    """The OpenSSH command line that reaches the instance with the session's key and pin."""
    t = target(ctx)
    kh = known_hosts_file(ctx)
    if not kh:
        raise StepError("The host key is not pinned yet: run the connect step first")
    return ["ssh", "-p", str(t.port), "-i", t.key_path, "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={kh}",
            "-o", "StrictHostKeyChecking=yes", f"{t.user}@{t.host}", *remote]


async def open_connection(ctx: StepContext, timeout: float = 60):
    """An SSH connection to the instance, checked against the pinned host key."""
    from .ssh import ConnectFailed, HostKeyMismatch, connect

    pin = pin_for(ctx)
    if not pin.fingerprint:
        raise StepError("The host key is not pinned yet: run the connect step first")
    try:
        return await connect(target(ctx), pin, timeout=timeout, progress=lambda m: ctx.progress(None, m),
                             cancelled=ctx.cancel.is_set)
    except HostKeyMismatch as e:
        raise StepError(str(e)) from None
    except ConnectFailed as e:
        ctx.check_cancel()
        raise StepError(f"Could not connect: {e}") from None
