"""Step `connect`: SSH is up, the host key is pinned, and we know what the host has."""

from __future__ import annotations

import asyncio
import base64

from botocore.exceptions import ClientError

from ..aws import error_code
from . import ssh_rule
from .base import Step, StepContext, StepError
from .records import HostProbe, HostRecord, PinnedHostKey

PROBE = (
    "uname -srmo; nproc; "
    "for t in neuron-ls neuron-top neuron-monitor nvidia-smi htop docker; do command -v $t >/dev/null 2>&1 && echo tool:$t; done"
)


def _console_fps(ctx: StepContext) -> list[str]:
    from ..remote.ssh import console_fingerprints

    iid = ctx.require(HostRecord).instance_id
    try:
        out = ctx.aws.client("ec2").get_console_output(InstanceId=iid, Latest=True).get("Output") or ""
    except ClientError as e:
        if error_code(e) in ("UnsupportedOperation", "InvalidInstanceID.NotFound", "InvalidParameterValue"):
            return []
        raise
    try:
        text = base64.b64decode(out).decode("utf-8", "replace")
    except ValueError:
        text = out
    return console_fingerprints(text)


class Connect(Step):
    id = "connect"

    def cli(self, ctx):
        host = ctx.load(HostRecord)
        iid = host.instance_id if host else "<instance-id>"
        try:
            login = ctx.host(start=False).login()
        except StepError:
            login = f"ssh -i {ctx.key_path} {ctx.config.login_user}@<public-ip>"
        return [f"aws ec2 get-console-output --instance-id {iid} --latest --output text", login]

    def check(self, ctx):
        info, host = ctx.load(HostProbe), ctx.load(HostRecord)
        if not host or not info or info.instance_id != host.instance_id:
            return False
        return self._probe(ctx, timeout=20)[0] is not None

    def _probe(self, ctx: StepContext, timeout: float):
        from ..remote.ssh import ConnectFailed, HostKeyMismatch, HostKeyPin, connect, run

        host = ctx.host()
        target = host.target
        pin = HostKeyPin(fingerprint=host.fingerprint)
        if not pin.fingerprint:
            pin.console = tuple(self._wait_for_console(ctx, min(timeout, ctx.runtime.console_wait_s)))

        async def go():
            conn = await connect(
                target, pin, timeout=timeout, progress=lambda m: ctx.progress(None, m), cancelled=ctx.cancel.is_set
            )
            async with conn:
                return await run(conn, PROBE, timeout=60)

        try:
            result = asyncio.run(go())
        except HostKeyMismatch as e:
            raise StepError(str(e)) from None
        except ConnectFailed as e:
            if str(e) == "cancelled":
                ctx.check_cancel()
            return None, pin, str(e)
        return result, pin, ""

    def _wait_for_console(self, ctx: StepContext, timeout: float) -> list[str]:
        """The host key fingerprints from the console; a new instance prints them a minute or two after boot."""
        import time

        deadline = time.monotonic() + min(timeout, 180)
        while True:
            fps = _console_fps(ctx)
            if fps or time.monotonic() >= deadline:
                break
            ctx.progress(None, "Waiting for the instance to print its host key fingerprints to the console…")
            ctx.sleep(10)
        if not fps:
            ctx.log(
                "The console shows no host key fingerprints yet: the host key will be trusted on first use and pinned"
            )
        return fps

    def apply(self, ctx):
        if not ssh_rule.current(ctx):  # your address changed since the group was made (new network)
            group = ssh_rule.find_group(ctx)
            if group is None:
                raise StepError("The session's SSH security group is gone: run the security-group step again")
            ctx.log("Your public IP changed since the security group was made: updating the SSH rule")
            ssh_rule.fit(ctx, group)
        result, pin, error = self._probe(ctx, timeout=300)
        if result is None:
            raise StepError(f"Could not connect: {error}")
        if result.exit_status != 0:
            raise StepError(f"Connected, but the probe failed: {(result.stderr or '').strip()[:300]}")
        save_pin(ctx, pin)
        lines = (result.stdout or "").splitlines()
        tools = [line[5:] for line in lines if line.startswith("tool:")]
        info = HostProbe(
            instance_id=ctx.require(HostRecord).instance_id,
            uname=lines[0] if lines else "",
            cores=int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else None,
            tools=tuple(tools),
        )
        ctx.save(info)
        target = ctx.host().target
        how = {
            "console": "matched the instance's console output",
            "first-use": "trusted on first use",
            "pinned": "matches the pinned key",
        }.get(pin.source, pin.source)
        ctx.log(f"Connected to {target.user}@{target.host}:{target.port}; host key {pin.seen} ({how}, pinned)")
        ctx.log(f"{info.uname}, {info.cores} cores")
        neuron = [t for t in tools if t.startswith("neuron")]
        ctx.log("Neuron tools: " + (", ".join(neuron) if neuron else "none — this host has no Neuron SDK (CPU only)"))
        from .remote_job import ensure_host_ready

        ensure_host_ready(ctx)

    def undo(self, ctx):
        ctx.forget(HostProbe)
        forget_pin(ctx)
        ctx.log("Forgot the connection details and the pinned host key")


def save_pin(ctx: StepContext, pin) -> None:
    """Pin the host key seen for the current instance (the known_hosts file follows the pin)."""
    host = ctx.load(HostRecord)
    old = ctx.load(PinnedHostKey)
    ctx.save(
        PinnedHostKey(
            instance_id=host.instance_id if host else None,
            fingerprint=pin.seen,
            public_key=pin.seen_key or (old.public_key if old else None),
            source=pin.source if pin.source != "pinned" else (old.source if old else "pinned"),
        )
    )
    (ctx.session_dir / "known_hosts").unlink(missing_ok=True)  # rewritten from the pin when next needed


def known_hosts_file(ctx: StepContext) -> str:
    """The pinned host key where OpenSSH can check it (0600, beside the session's key)."""
    from ..private_files import write_private
    from ..remote.host import known_hosts_line

    line = known_hosts_line(ctx.host())
    if not line:
        raise StepError("The host key is not pinned yet: run the connect step first")
    path = ctx.session_dir / "known_hosts"
    write_private(path, line.encode())
    return str(path)


def ssh_command(ctx: StepContext, *remote: str) -> list[str]:
    """The OpenSSH command line that reaches the instance with the session's key and pinned host key."""
    from ..remote.host import ssh_command as command

    return command(ctx.host(), known_hosts_file(ctx), *remote)


def forget_pin(ctx: StepContext) -> None:
    ctx.forget(PinnedHostKey)
    (ctx.session_dir / "known_hosts").unlink(missing_ok=True)
