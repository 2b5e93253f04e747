"""The one seam between the payload and the accelerator SDKs.

Everything target-specific — how a model is traced, how a traced model is loaded, how a
process is pinned to its device — is here, so the rest of the payload is plain PyTorch.

Targets: ``inf1`` (torch-neuron, neuron-cc), ``inf2`` (torch-neuronx, for Inf2/Trn1),
``cuda`` and ``cpu`` (torch.jit.trace). The two Neuron branches need the Neuron SDK on an
Inferentia host; they cannot run anywhere else and are not exercised by the test suite.
"""

import os

try:
    from . import sysinfo
except ImportError:  # run as a script on the host
    import sysinfo

TARGETS = ("inf1", "inf2", "cuda", "cpu")
NEURON = ("inf1", "inf2")


def check_target(target: str) -> None:
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r} (choose from {', '.join(TARGETS)})")


def trace(target: str, model, example_inputs: tuple):
    """Trace ``model`` for ``target`` with ``example_inputs`` (a tuple of tensors on the CPU)."""
    check_target(target)
    import torch

    if target == "inf1":  # pragma: no cover - needs torch-neuron on an Inf1 host
        import torch_neuron  # noqa: F401  (registers torch.neuron)

        return torch.neuron.trace(model, example_inputs=list(example_inputs))
    if target == "inf2":  # pragma: no cover - needs torch-neuronx on an Inf2/Trn1 host
        import torch_neuronx

        return torch_neuronx.trace(model, example_inputs)
    if target == "cuda":  # pragma: no cover - needs a GPU
        model = model.to("cuda")
        example_inputs = tuple(t.to("cuda") for t in example_inputs)
    with torch.no_grad():
        return torch.jit.trace(model, example_inputs, strict=False)


def load(target: str, path: str):
    """Load a traced model saved with ``torch.jit.save`` for ``target``."""
    check_target(target)
    if target == "inf1":  # pragma: no cover
        import torch_neuron  # noqa: F401  (registers the Neuron ops before loading)
    elif target == "inf2":  # pragma: no cover
        import torch_neuronx  # noqa: F401
    import torch

    model = torch.jit.load(path, map_location="cuda" if target == "cuda" else "cpu")
    model.eval()
    return model


def to_device(target: str, tensors: tuple) -> tuple:
    """Move inputs where the model expects them (Neuron models take CPU tensors)."""
    if target == "cuda":  # pragma: no cover
        return tuple(t.to("cuda") for t in tensors)
    return tuple(tensors)


def synchronize(target: str) -> None:
    """Wait for queued device work, so a timer stops when the result exists."""
    if target == "cuda":  # pragma: no cover
        import torch

        torch.cuda.synchronize()


def device_count(target: str) -> int:
    """How many model copies the host can hold side by side by default."""
    check_target(target)
    if target in NEURON:
        return max(1, sysinfo.neuron_core_count())
    if target == "cuda":
        return max(1, sysinfo.gpu_count())
    return cpu_split(len(sysinfo.usable_cores()))


def cpu_split(cores: int) -> int:
    """Model copies for a CPU host: one per four cores, at least one."""
    return max(1, cores // 4)


def pin_env(target: str, index: int, n_models: int) -> dict:
    """Environment that pins model copy ``index`` of ``n_models`` to its own device or cores."""
    check_target(target)
    if target in NEURON:
        return {"NEURON_RT_VISIBLE_CORES": str(index)}
    if target == "cuda":
        return {"CUDA_VISIBLE_DEVICES": str(index % max(1, sysinfo.gpu_count() or 1))}
    return {"INFLAB_CPU_CORES": ",".join(map(str, cpu_slice(sysinfo.usable_cores(), index, n_models)))}


def cpu_slice(cores: list, index: int, n_models: int) -> list:
    """Copy ``index``'s share of ``cores``: contiguous, disjoint, sizes differing by at most one
    and every core used; with more copies than cores, each gets one core, shared evenly."""
    n = max(1, n_models)
    if n >= len(cores):
        return [cores[index * len(cores) // n]]
    return cores[index * len(cores) // n : (index + 1) * len(cores) // n]


def intra_op_threads(target: str, env: dict, workers: int, requested: int = 0) -> int | None:
    """Intra-op threads for each of a model process's ``workers``: ``requested`` when given;
    on the cpu target its pinned cores shared among its workers (at least one), so workers x
    threads never exceeds its cores; elsewhere None (the runtime's default)."""
    if requested:
        return requested
    if target != "cpu" or not env.get("INFLAB_CPU_CORES"):
        return None
    return max(1, len(env["INFLAB_CPU_CORES"].split(",")) // workers)


def apply_pinning(target: str) -> None:
    """In a model's own process: apply what :func:`pin_env` set (CPU affinity; Neuron/CUDA read env)."""
    spec = os.environ.get("INFLAB_CPU_CORES")
    if target == "cpu" and spec:
        try:
            os.sched_setaffinity(0, {int(c) for c in spec.split(",")})
        except (AttributeError, OSError, ValueError):
            pass


def serve_env(target: str, workers: int) -> dict:
    """Environment for a TorchServe server's workers (they inherit it from the server): on Neuron
    one NeuronCore each (the runtime hands each worker the next free core), on a CPU an equal
    share of the cores in intra-op threads; CUDA workers get their GPU from TorchServe."""
    check_target(target)
    if target in NEURON:
        return {"NEURON_RT_NUM_CORES": "1"}
    if target == "cpu":
        threads = str(max(1, len(sysinfo.usable_cores()) // max(1, workers)))
        return {"INFLAB_SERVE_THREADS": threads, "OMP_NUM_THREADS": threads}
    return {}
