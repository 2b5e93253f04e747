"""The SageMaker instance types (``ml.*``) the SageMaker exercise deploys to, and which compiled
model each can serve.

A SageMaker real-time endpoint runs on ``ml.<EC2 type>`` instances: ``ml.c6i.xlarge`` is a
c6i.xlarge that SageMaker manages. The lab serves the model it compiled, so an endpoint type must
fit the compiled target: a CPU target (fp32 and int8) on a CPU type, an Inf1 graph (torch-neuron)
on ml.inf1, an Inf2 graph (torch-neuronx) on ml.inf2, a CUDA model on a GPU type. The EC2 facts
(vCPUs, NeuronCores, GPUs) are :mod:`inflab.accelerators`'; these are the families SageMaker
offers for real-time inference and the lab accepts (``SageMaker's ProductionVariantInstanceType``
lists them; ml.c6i and ml.c7i since 2022-2023, ml.inf2 since 2023).

Standard library only: the config checks ``[sagemaker] instance_type`` against it at start-up.
"""

from __future__ import annotations

from . import accelerators

PREFIX = "ml."
DEFAULT = "ml.c6i.xlarge"
#: the EC2 families behind the ml.* types the exercise accepts
FAMILIES = ("c5", "c6i", "c7i", "m5", "inf1", "inf2", "g4dn", "g5")
#: what each kind of instance runs, in the payload's target names (the compile step's)
TARGETS = {"cpu": "cpu", "inf1": "inf1", "inf2": "inf2", "gpu": "cuda"}


def ec2_type(ml_type: str) -> str:
    """``ml.c6i.xlarge`` → ``c6i.xlarge``."""
    return ml_type.removeprefix(PREFIX)


#: EC2 sizes SageMaker does not offer for real-time inference (SageMaker's ProductionVariantInstanceType),
#: besides the bare-metal ones
NOT_OFFERED = frozenset({"c5.12xlarge", "c5.24xlarge", "m5.8xlarge", "m5.16xlarge"})


def sizes(family: str) -> list[str]:
    """The ml.* sizes of an EC2 family that SageMaker offers for real-time endpoints."""
    return [PREFIX + t for t in accelerators.sizes_of(family) if ".metal" not in t and t not in NOT_OFFERED]


def target_of(ml_type: str) -> str:
    """The compiled target this type runs: cpu, inf1, inf2 or cuda."""
    return TARGETS[accelerators.kind_of(ec2_type(ml_type))]


def problem(ml_type: str) -> str | None:
    """Why ``ml_type`` is not one the exercise deploys to (None: it is one)."""
    if not ml_type.startswith(PREFIX):
        return f"{ml_type!r} is not a SageMaker instance type (they start with ml., like {DEFAULT})"
    family = ec2_type(ml_type).split(".", 1)[0]
    if family not in FAMILIES:
        return (
            f"{ml_type!r}: the SageMaker exercise deploys to the {', '.join('ml.' + f for f in FAMILIES)} families, "
            f"not ml.{family}"
        )
    if ml_type not in sizes(family):
        return f"{ml_type!r} is not a size of ml.{family} ({', '.join(sizes(family))})"
    return None


def misfit(ml_type: str, compiled_target: str) -> str | None:
    """Why a model compiled for ``compiled_target`` cannot be served on ``ml_type`` (None: it can)."""
    runs = target_of(ml_type)
    if runs == compiled_target:
        return None
    what = {"cpu": "a CPU", "inf1": "an Inf1 (torch-neuron)", "inf2": "an Inf2 (torch-neuronx)", "cuda": "a CUDA"}
    fits = {"cpu": "ml.c6i, ml.c7i, ml.c5 or ml.m5", "inf1": "ml.inf1", "inf2": "ml.inf2", "cuda": "ml.g4dn or ml.g5"}
    return (
        f"{ml_type} runs {what[runs]} model, and the session compiled {what.get(compiled_target, compiled_target)} one: "
        f"choose an {fits.get(compiled_target, 'instance type of that kind')} type, or compile for {runs} "
        f"(container.target = {'gpu' if runs == 'cuda' else runs})"
    )
