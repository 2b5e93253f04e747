"""Step `connect`: SSH is up, the host key is pinned, and we know what the host has."""

from __future__ import annotations

import asyncio
import base64

from ..aws import error_code
from .access import SecurityGroup, key_path
from .base import Step, StepContext, StepError

PROBE = (
    "uname -srmo; nproc; "
    "for t in neuron-ls neuron-top neuron-monitor nvidia-smi htop docker; do command -v $t >/dev/null 2>&1 && echo tool:$t; done"
)


def _console_fps(ctx: StepContext) -> list[str]:
    from ..remote.ssh import console_fingerprints

    iid = ctx.get("host")["instance_id"]
    try:
        out = ctx.aws.client("ec2").get_console_output(InstanceId=iid, Latest=True).get("Output") or ""
    except Exception as e:
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
    title = "Connect over SSH"

    def cli(self, ctx):
        host = ctx.get("host") or {}
        iid = host.get("instance_id", "<instance-id>")
        if ctx.sandbox:
            from .. import sandbox

            info = sandbox.status(ctx.store.home)
            port = info.ssh_port if info else "<port>"
            return [f"aws ec2 get-console-output --instance-id {iid} --latest --output text",
                    f"ssh -p {port} -i {key_path(ctx)} {host.get('user', 'ubuntu')}@127.0.0.1"]
        return [f"aws ec2 get-console-output --instance-id {iid} --latest --output text",
                f"ssh -i {key_path(ctx)} {host.get('user', 'ubuntu')}@{host.get('public_ip', '<public-ip>')}"]

    def check(self, ctx):
        info = ctx.get("connect") or {}
        host = ctx.get("host") or {}
        if not host or info.get("instance_id") != host.get("instance_id"):
            return False
        return self._probe(ctx, timeout=20)[0] is not None

    def _probe(self, ctx: StepContext, timeout: float):
        from ..remote import host as rhost
        from ..remote.ssh import ConnectFailed, HostKeyMismatch, connect, run

        target = rhost.target(ctx)
        pin = rhost.pin_for(ctx)
        if not pin.fingerprint:
            pin.console = tuple(self._wait_for_console(ctx, timeout if not ctx.sandbox else 0))

        async def go():
            conn = await connect(target, pin, timeout=timeout, progress=lambda m: ctx.progress(None, m),
                                 cancelled=ctx.cancel.is_set)
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
            ctx.log("The console shows no host key fingerprints yet: the host key will be trusted on first use and pinned")
        return fps

    def apply(self, ctx):
        if not ctx.sandbox:
            sg = SecurityGroup()
            if not sg.check(ctx):  # your address changed since the group was made (new network)
                ctx.log("Your public IP changed since the security group was made: updating the SSH rule")
                sg.apply(ctx)
        result, pin, error = self._probe(ctx, timeout=300)
        if result is None:
            raise StepError(f"Could not connect: {error}")
        if result.exit_status != 0:
            raise StepError(f"Connected, but the probe failed: {(result.stderr or '').strip()[:300]}")
        from ..remote import host as rhost

        rhost.save_pin(ctx, pin)
        lines = (result.stdout or "").splitlines()
        tools = [line[5:] for line in lines if line.startswith("tool:")]
        info = {"instance_id": ctx.get("host")["instance_id"], "uname": lines[0] if lines else "",
                "cores": int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else None, "tools": tools}
        ctx.put("connect", info)
        target = rhost.target(ctx)
        how = {"console": "matched the instance's console output", "first-use": "trusted on first use",
               "pinned": "matches the pinned key"}.get(pin.source, pin.source)
        ctx.log(f"Connected to {target.user}@{target.host}:{target.port}; host key {pin.seen} ({how}, pinned)")
        ctx.log(f"{info['uname']}, {info['cores']} cores")
        neuron = [t for t in tools if t.startswith("neuron")]
        ctx.log("Neuron tools: " + (", ".join(neuron) if neuron else "none — this host has no Neuron SDK (CPU only)"))

    def undo(self, ctx):
        ctx.store.delete(ctx.name, "connect")
        ctx.store.delete(ctx.name, "host_key")
        ctx.log("Forgot the connection details and the pinned host key")
