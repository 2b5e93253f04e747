"""What the host is and which SDK versions it runs — recorded with every compile and benchmark.

Standard library only at import time; framework versions are read from package metadata,
so nothing heavy is imported just to name it.
"""

import json
import os
import platform
import shutil
import subprocess
from importlib import metadata

# Packages whose versions matter for a result (those missing are left out).
PACKAGES = (
    "torch",
    "transformers",
    "torch-neuron",
    "torch-neuronx",
    "neuron-cc",
    "neuronx-cc",
    "neuronperf",
    "mlcommons-loadgen",
    "numpy",
    "tokenizers",
)


def package_versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def neuron_core_count() -> int:
    """NeuronCores on this host (0 when there are none)."""
    if shutil.which("neuron-ls"):
        try:
            out = subprocess.run(["neuron-ls", "--json-output"], capture_output=True, text=True, timeout=30).stdout
            devices = json.loads(out)
            return sum(int(d.get("nc_count", d.get("neuroncore_count", 0)) or 0) for d in devices)
        except (OSError, ValueError, subprocess.SubprocessError, TypeError, AttributeError):
            pass
    return 0


def gpu_count() -> int:
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "--list-gpus"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def system_info(instance_type: str = "") -> dict:
    """Host facts for a result record."""
    info = {
        "instance_type": instance_type or os.environ.get("INFLAB_INSTANCE_TYPE", ""),
        "hostname": platform.node(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_count": len(usable_cores()),
        "neuron_cores": neuron_core_count(),
        "gpus": gpu_count(),
        "packages": package_versions(),
    }
    sdk = os.environ.get("NEURON_SDK_VERSION")  # set in the Neuron containers
    if sdk:
        info["neuron_sdk"] = sdk
    return info
