"""What EC2 says an instance type is, and what an AWS Batch job asks for to have one to itself.

The sweep measures an instance type, so each job takes a whole instance: every Neuron device of
the type mapped in (``/dev/neuron0`` … ``/dev/neuron<n-1>``), all its GPUs and vCPUs, and the
memory ECS can give a container on it. Two jobs never share a host's NeuronCores, and a row's
throughput and price are the instance's.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from .. import accelerators
from ..accelerators import InstanceSpec
from . import Aws, error_code

#: the share of a type's nominal memory a job asks for: ECS registers less than the nominal (AWS
#: Batch's memory-management guide: 8 GiB shows as ~7,985 MiB) and keeps some for its agent
MEMORY_SHARE = 0.9


def spec_from_ec2(info: dict[str, Any]) -> InstanceSpec:
    """An :class:`InstanceSpec` from one DescribeInstanceTypes entry (NeuronInfo, GpuInfo, ...)."""
    neuron = (info.get("NeuronInfo") or {}).get("NeuronDevices") or []
    if not neuron:  # older answers describe Inferentia as an inference accelerator
        neuron = [
            dict(a, CoreInfo={"Count": 4})
            for a in (info.get("InferenceAcceleratorInfo") or {}).get("Accelerators") or []
            if "inferentia" in str(a.get("Name", "")).lower()
        ]
    return InstanceSpec(
        vcpus=int(info["VCpuInfo"]["DefaultVCpus"]),
        memory_mib=int(info["MemoryInfo"]["SizeInMiB"]),
        neuron_devices=sum(int(d.get("Count", 0)) for d in neuron),
        neuron_cores=sum(int(d.get("Count", 0)) * int((d.get("CoreInfo") or {}).get("Count", 0)) for d in neuron),
        gpus=sum(int(g.get("Count", 0)) for g in (info.get("GpuInfo") or {}).get("Gpus") or []),
    )


def specs(aws: Aws, instance_types: list[str]) -> dict[str, InstanceSpec]:
    """EC2's own figures for ``instance_types`` (DescribeInstanceTypes), the shipped table for a type
    EC2 does not describe."""
    found: dict[str, InstanceSpec] = {}
    try:
        answer = aws.client("ec2").describe_instance_types(InstanceTypes=list(dict.fromkeys(instance_types)))
        for info in answer.get("InstanceTypes") or []:
            found[info["InstanceType"]] = spec_from_ec2(info)
    except ClientError as e:
        if error_code(e) not in ("InvalidInstanceType", "UnauthorizedOperation"):
            raise
    for t in instance_types:
        if t not in found and (known := accelerators.spec_of(t)) is not None:
            found[t] = known
    return found


def job_resources(spec: InstanceSpec) -> dict[str, Any]:
    """``containerProperties`` parts that give a job the whole instance: vCPUs, memory, GPUs, and
    every Neuron device mapped in (the driver stays on the host)."""
    req = [
        {"type": "VCPU", "value": str(spec.vcpus)},
        {"type": "MEMORY", "value": str(int(spec.memory_mib * MEMORY_SHARE))},
    ]
    if spec.gpus:
        req.append({"type": "GPU", "value": str(spec.gpus)})
    out: dict[str, Any] = {"resourceRequirements": req}
    if spec.neuron_devices:
        out["linuxParameters"] = {
            "devices": [
                {"hostPath": f"/dev/neuron{i}", "containerPath": f"/dev/neuron{i}", "permissions": ["READ", "WRITE"]}
                for i in range(spec.neuron_devices)
            ]
        }
    return out
