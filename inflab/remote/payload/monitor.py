#!/usr/bin/env python3
"""Monitor agent: one JSON object per line, about once a second, on stdout.

Runs on the instance with the standard library only. When `neuron-monitor` is installed it
relays its reports ({"source": "neuron-monitor", "report": {...}}); otherwise it samples
this host's CPUs and memory from /proc ({"source": "proc", ...}), adding GPU figures when
`nvidia-smi` exists.

    python3 monitor.py [--interval 1] [--count N] [--no-neuron]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


def cpu_times():
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3:4].isdigit():
                name, *vals = line.split()
                vals = [int(v) for v in vals]
                idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
                out[name] = (sum(vals), idle)
    return out


def meminfo():
    info = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            info[key] = int(rest.split()[0]) * 1024
    total = info.get("MemTotal", 0)
    return {"total_bytes": total, "used_bytes": total - info.get("MemAvailable", info.get("MemFree", 0))}


def gpus():
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=index,utilization.gpu,memory.used,memory.total",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    rows = []
    for line in out.strip().splitlines():
        try:
            idx, util, used, total = [x.strip() for x in line.split(",")]
            rows.append(
                {
                    "index": int(idx),
                    "utilization": float(util),
                    "memory_used_mib": float(used),
                    "memory_total_mib": float(total),
                }
            )
        except ValueError:
            continue
    return rows


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def run_proc(interval, count):
    prev = cpu_times()
    n = 0
    while count is None or n < count:
        time.sleep(interval)
        cur = cpu_times()
        cores = []
        for name in sorted(cur, key=lambda k: int(k[3:])):
            total = cur[name][0] - prev.get(name, (0, 0))[0]
            idle = cur[name][1] - prev.get(name, (0, 0))[1]
            cores.append(round(100.0 * (total - idle) / total, 1) if total > 0 else 0.0)
        prev = cur
        sample = {"source": "proc", "ts": time.time(), "cpu_percent": cores, "memory": meminfo()}
        g = gpus()
        if g is not None:
            sample["gpus"] = g
        emit(sample)
        n += 1


def run_neuron_monitor(interval, count):
    cfg = {
        "period": f"{max(1, int(interval))}s",
        "neuron_runtimes": [
            {
                "tag_filter": ".*",
                "metrics": [{"type": "neuroncore_counters"}, {"type": "memory_used"}, {"type": "execution_stats"}],
            }
        ],
        "system_metrics": [{"type": "vcpu_usage"}, {"type": "memory_info"}, {"type": "neuron_hw_counters"}],
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(cfg, f)
    proc = subprocess.Popen(["neuron-monitor", "-c", f.name], stdout=subprocess.PIPE, text=True)
    n = 0
    try:
        for line in proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                report = json.loads(line)
            except ValueError:
                continue
            emit({"source": "neuron-monitor", "ts": time.time(), "report": report})
            n += 1
            if count is not None and n >= count:
                break
    finally:
        proc.terminate()
        os.unlink(f.name)
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--count", type=int, default=None)
    ap.add_argument("--no-neuron", action="store_true")
    args = ap.parse_args()
    try:
        relayed = 0
        if shutil.which("neuron-monitor") and not args.no_neuron:
            relayed = run_neuron_monitor(args.interval, args.count)
        if not relayed:  # no neuron-monitor, or it gave nothing (no device): watch the host instead
            run_proc(args.interval, args.count)
    except (KeyboardInterrupt, BrokenPipeError):
        pass


if __name__ == "__main__":
    main()
