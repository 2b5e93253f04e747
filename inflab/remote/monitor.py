"""Turn the monitor agent's JSON lines into what the monitor pane draws.

neuron-monitor's report layout differs between versions, so every key is optional:
missing parts give fewer numbers, never an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Sample:
    source: str  # what the pane names as its source
    cores: list[tuple[str, float]] = field(default_factory=list)  # (label, utilization %)
    memory_used: int | None = None
    memory_total: int | None = None
    notes: list[str] = field(default_factory=list)


def _num(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _neuron(report: dict) -> Sample:
    s = Sample("NeuronCores via neuron-monitor")
    util: dict[str, float] = {}
    for rt in report.get("neuron_runtime_data") or []:
        rep = (rt or {}).get("report") or {}
        in_use = ((rep.get("neuroncore_counters") or {}).get("neuroncores_in_use")) or {}
        for idx, counters in in_use.items():
            u = _num((counters or {}).get("neuroncore_utilization"))
            if u is not None:
                util[str(idx)] = max(util.get(str(idx), 0.0), u)
        lat = ((rep.get("execution_stats") or {}).get("latency_stats") or {}).get("total_latency") or {}
        p50 = _num(lat.get("p50"))
        if p50 is not None:
            s.notes.append(f"runtime {rt.get('pid', '?')}: p50 {p50 * 1000:.1f} ms")
    hw = report.get("neuron_hardware_info") or {}
    count = int(_num(hw.get("neuron_device_count")) or 0) * int(_num(hw.get("neuroncore_per_device_count")) or 0)
    for i in range(count):
        util.setdefault(str(i), 0.0)
    s.cores = [(f"NC{idx}", util[idx]) for idx in sorted(util, key=lambda k: int(k) if k.isdigit() else 0)]
    mem = ((report.get("system_data") or {}).get("memory_info")) or {}
    s.memory_total = int(_num(mem.get("memory_total_bytes")) or 0) or None
    s.memory_used = int(_num(mem.get("memory_used_bytes")) or 0) or None
    vcpu = (((report.get("system_data") or {}).get("vcpu_usage")) or {}).get("average_usage") or {}
    busy = sum(v for k, v in vcpu.items() if k in ("user", "system", "nice") and _num(v) is not None)
    if vcpu:
        s.notes.append(f"vCPU {busy:.0f}% busy")
    if not s.cores:
        s.notes.append("no NeuronCore in use yet")
    return s


def parse(line: str | dict) -> Sample | None:
    """One agent line → a Sample; None for lines that are not samples."""
    try:
        obj = json.loads(line) if isinstance(line, str) else line
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    if obj.get("source") == "neuron-monitor":
        return _neuron(obj.get("report") or {})
    if obj.get("source") == "proc":
        s = Sample("host CPU — no Neuron devices on this host")
        s.cores = [(f"cpu{i}", float(v)) for i, v in enumerate(obj.get("cpu_percent") or []) if _num(v) is not None]
        mem = obj.get("memory") or {}
        s.memory_total, s.memory_used = mem.get("total_bytes"), mem.get("used_bytes")
        for g in obj.get("gpus") or []:
            s.cores.append((f"gpu{g.get('index', '?')}", float(g.get("utilization") or 0)))
        if obj.get("gpus"):
            s.source = "host CPU and GPU (nvidia-smi) — no Neuron devices on this host"
        return s
    return None
