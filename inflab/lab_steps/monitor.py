"""Step `monitor`: list the Neuron devices and make sure the monitor agent runs on the host."""

from __future__ import annotations

import asyncio
import json

from .base import Step, StepContext, StepError
from .records import HostRecord, MonitorAgent
from .remote_job import PAYLOAD_DIR, connect, upload_payload


def parse_neuron_ls(text: str) -> list[dict]:
    """Rows from `neuron-ls --json-output` (field names vary a little by version)."""
    try:
        data = json.loads(text)
    except ValueError:
        return []
    rows = []
    for d in data if isinstance(data, list) else []:
        if not isinstance(d, dict):
            continue
        procs = d.get("neuron_processes") or []
        rows.append(
            {
                "device": d.get("neuron_device", d.get("device", "?")),
                "cores": d.get("nc_count", d.get("neuroncore_count", "?")),
                "memory": d.get("memory_size", d.get("memory", "?")),
                "bdf": d.get("bdf", ""),
                "processes": ", ".join(str(p.get("pid", p)) if isinstance(p, dict) else str(p) for p in procs),
            }
        )
    return rows


def device_table(rows: list[dict]) -> list[str]:
    out = [f"{'DEVICE':<7} {'CORES':<6} {'MEMORY':<12} {'PCI BDF':<14} PROCESSES"]
    for r in rows:
        mem = r["memory"]
        mem = f"{mem / 2**30:.0f} GiB" if isinstance(mem, (int, float)) else str(mem)
        out.append(f"{r['device']!s:<7} {r['cores']!s:<6} {mem:<12} {r['bdf']:<14} {r['processes'] or '-'}")
    return out


class Monitor(Step):
    id = "monitor"

    def cli(self, ctx):
        try:
            ssh = ctx.host(start=False).login()
        except StepError:
            ssh = f"ssh -i {ctx.key_path} {ctx.config.login_user}@<public-ip>"
        return [f"{ssh} neuron-ls", f"{ssh} -t neuron-top", f"{ssh} -t htop"]

    def check(self, ctx):
        info, host = ctx.load(MonitorAgent), ctx.load(HostRecord)
        return bool(info and host and info.instance_id == host.instance_id and info.source)

    def apply(self, ctx: StepContext):
        from ..remote import monitor as parse_monitor

        async def go():
            conn = await connect(ctx)
            async with conn:
                await upload_payload(conn)
                ls = await asyncio.wait_for(
                    conn.run("command -v neuron-ls >/dev/null && neuron-ls --json-output", check=False), 60
                )
                sample = await asyncio.wait_for(
                    conn.run(f"python3 {PAYLOAD_DIR}/monitor.py --count 1 --interval 0.5", check=False), 60
                )
                return ls, sample

        try:
            ls, sample = asyncio.run(go())
        except asyncio.TimeoutError:
            raise StepError("The host did not answer within 60 s (neuron-ls or the monitor agent hung)") from None
        devices = parse_neuron_ls(ls.stdout or "") if ls.exit_status == 0 else []
        if devices:
            ctx.log(f"{len(devices)} Neuron device(s):")
            for line in device_table(devices):
                ctx.log("  " + line)
        else:
            ctx.log(
                "neuron-ls: no Neuron devices on this host"
                + (" (the Neuron tools are not installed)" if ls.exit_status else "")
            )
        parsed = (
            parse_monitor.parse((sample.stdout or "").strip().splitlines()[-1])
            if (sample.stdout or "").strip()
            else None
        )
        if sample.exit_status != 0 or parsed is None:
            raise StepError(
                f"The monitor agent did not run on the host: {(sample.stderr or '').strip()[:300] or 'no output'}"
            )
        ctx.save(
            MonitorAgent(
                instance_id=ctx.require(HostRecord).instance_id,
                source=parsed.source,
                devices=tuple(devices),
                agent=f"{PAYLOAD_DIR}/monitor.py",
            )
        )
        ctx.log(f"Monitor agent running: {parsed.source}, {len(parsed.cores)} gauges")
        ctx.log("Open the Monitor and Terminal tabs below to watch the host live (neuron-top or htop in the terminal).")

    def undo(self, ctx):
        ctx.forget(MonitorAgent)
