"""What each instance type brings, and what each kind of instance boots: one table for the lab.

- :data:`SPECS`: vCPUs, memory, Neuron devices and NeuronCores, GPUs of every instance type the lab
  knows — EC2's DescribeInstanceTypes figures (VCpuInfo, MemoryInfo, NeuronInfo, GpuInfo) as of
  :data:`SPECS_DATE`. Where the lab can ask EC2 itself (the sweep's set-up does) it does, and
  this table is the fallback and what bad input is checked against.
- Kinds: an instance family's accelerator — ``inf1`` (torch-neuron), ``inf2`` (torch-neuronx, also
  Trainium), ``gpu`` (CUDA) or ``cpu``. Each kind has its default machine image (:data:`HOST_IMAGES`:
  where it is looked up and its login user), the ECS-optimized image AWS Batch hosts of that kind
  boot (:data:`BATCH_HOSTS`), and the on-demand vCPU quota the family counts against (:func:`quota_of`).

Standard library only: this module is on the CLI's start-up path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SPECS_DATE = "2026-11"


@dataclass(frozen=True)
class InstanceSpec:
    vcpus: int
    memory_mib: int
    neuron_devices: int = 0  # Inferentia/Trainium chips: /dev/neuron0 … /dev/neuron<n-1>
    neuron_cores: int = 0
    gpus: int = 0

    @property
    def devices(self) -> str:
        """What its accelerators are, in words ("4 Neuron devices (16 NeuronCores)", "4 GPUs", "8 vCPUs")."""
        if self.neuron_devices:
            return (
                f"{self.neuron_devices} Neuron device{'s' if self.neuron_devices > 1 else ''} "
                f"({self.neuron_cores} NeuronCores)"
            )
        if self.gpus:
            return f"{self.gpus} GPU{'s' if self.gpus > 1 else ''}"
        return f"{self.vcpus} vCPUs"


# instance type: (vCPUs, memory MiB, Neuron devices, NeuronCores, GPUs)
_SPECS: dict[str, tuple[int, int, int, int, int]] = {
    # inf1
    "inf1.xlarge": (4, 8192, 1, 4, 0),
    "inf1.2xlarge": (8, 16384, 1, 4, 0),
    "inf1.6xlarge": (24, 49152, 4, 16, 0),
    "inf1.24xlarge": (96, 196608, 16, 64, 0),
    # inf2
    "inf2.xlarge": (4, 16384, 1, 2, 0),
    "inf2.8xlarge": (32, 131072, 1, 2, 0),
    "inf2.24xlarge": (96, 393216, 6, 12, 0),
    "inf2.48xlarge": (192, 786432, 12, 24, 0),
    # trn1
    "trn1.2xlarge": (8, 32768, 1, 2, 0),
    "trn1.32xlarge": (128, 524288, 16, 32, 0),
    # trn1n
    "trn1n.32xlarge": (128, 524288, 16, 32, 0),
    # g4dn
    "g4dn.xlarge": (4, 16384, 0, 0, 1),
    "g4dn.2xlarge": (8, 32768, 0, 0, 1),
    "g4dn.4xlarge": (16, 65536, 0, 0, 1),
    "g4dn.8xlarge": (32, 131072, 0, 0, 1),
    "g4dn.12xlarge": (48, 196608, 0, 0, 4),
    "g4dn.16xlarge": (64, 262144, 0, 0, 1),
    "g4dn.metal": (96, 393216, 0, 0, 8),
    # g5
    "g5.xlarge": (4, 16384, 0, 0, 1),
    "g5.2xlarge": (8, 32768, 0, 0, 1),
    "g5.4xlarge": (16, 65536, 0, 0, 1),
    "g5.8xlarge": (32, 131072, 0, 0, 1),
    "g5.12xlarge": (48, 196608, 0, 0, 4),
    "g5.16xlarge": (64, 262144, 0, 0, 1),
    "g5.24xlarge": (96, 393216, 0, 0, 4),
    "g5.48xlarge": (192, 786432, 0, 0, 8),
    # g6
    "g6.xlarge": (4, 16384, 0, 0, 1),
    "g6.2xlarge": (8, 32768, 0, 0, 1),
    "g6.4xlarge": (16, 65536, 0, 0, 1),
    "g6.8xlarge": (32, 131072, 0, 0, 1),
    "g6.12xlarge": (48, 196608, 0, 0, 4),
    "g6.16xlarge": (64, 262144, 0, 0, 1),
    "g6.24xlarge": (96, 393216, 0, 0, 4),
    "g6.48xlarge": (192, 786432, 0, 0, 8),
    # c5
    "c5.large": (2, 4096, 0, 0, 0),
    "c5.xlarge": (4, 8192, 0, 0, 0),
    "c5.2xlarge": (8, 16384, 0, 0, 0),
    "c5.4xlarge": (16, 32768, 0, 0, 0),
    "c5.9xlarge": (36, 73728, 0, 0, 0),
    "c5.12xlarge": (48, 98304, 0, 0, 0),
    "c5.18xlarge": (72, 147456, 0, 0, 0),
    "c5.24xlarge": (96, 196608, 0, 0, 0),
    "c5.metal": (96, 196608, 0, 0, 0),
    # c6i
    "c6i.large": (2, 4096, 0, 0, 0),
    "c6i.xlarge": (4, 8192, 0, 0, 0),
    "c6i.2xlarge": (8, 16384, 0, 0, 0),
    "c6i.4xlarge": (16, 32768, 0, 0, 0),
    "c6i.8xlarge": (32, 65536, 0, 0, 0),
    "c6i.12xlarge": (48, 98304, 0, 0, 0),
    "c6i.16xlarge": (64, 131072, 0, 0, 0),
    "c6i.24xlarge": (96, 196608, 0, 0, 0),
    "c6i.32xlarge": (128, 262144, 0, 0, 0),
    "c6i.metal": (128, 262144, 0, 0, 0),
    # c7i
    "c7i.large": (2, 4096, 0, 0, 0),
    "c7i.xlarge": (4, 8192, 0, 0, 0),
    "c7i.2xlarge": (8, 16384, 0, 0, 0),
    "c7i.4xlarge": (16, 32768, 0, 0, 0),
    "c7i.8xlarge": (32, 65536, 0, 0, 0),
    "c7i.12xlarge": (48, 98304, 0, 0, 0),
    "c7i.16xlarge": (64, 131072, 0, 0, 0),
    "c7i.24xlarge": (96, 196608, 0, 0, 0),
    "c7i.metal-24xl": (96, 196608, 0, 0, 0),
    "c7i.48xlarge": (192, 393216, 0, 0, 0),
    "c7i.metal-48xl": (192, 393216, 0, 0, 0),
    # m5
    "m5.large": (2, 8192, 0, 0, 0),
    "m5.xlarge": (4, 16384, 0, 0, 0),
    "m5.2xlarge": (8, 32768, 0, 0, 0),
    "m5.4xlarge": (16, 65536, 0, 0, 0),
    "m5.8xlarge": (32, 131072, 0, 0, 0),
    "m5.12xlarge": (48, 196608, 0, 0, 0),
    "m5.16xlarge": (64, 262144, 0, 0, 0),
    "m5.24xlarge": (96, 393216, 0, 0, 0),
    "m5.metal": (96, 393216, 0, 0, 0),
    # m6i
    "m6i.large": (2, 8192, 0, 0, 0),
    "m6i.xlarge": (4, 16384, 0, 0, 0),
    "m6i.2xlarge": (8, 32768, 0, 0, 0),
    "m6i.4xlarge": (16, 65536, 0, 0, 0),
    "m6i.8xlarge": (32, 131072, 0, 0, 0),
    "m6i.12xlarge": (48, 196608, 0, 0, 0),
    "m6i.16xlarge": (64, 262144, 0, 0, 0),
    "m6i.24xlarge": (96, 393216, 0, 0, 0),
    "m6i.32xlarge": (128, 524288, 0, 0, 0),
    "m6i.metal": (128, 524288, 0, 0, 0),
}
SPECS: dict[str, InstanceSpec] = {t: InstanceSpec(*v) for t, v in _SPECS.items()}

# Instance family -> kind.
FAMILIES = {
    "inf1": "inf1",
    "inf2": "inf2",
    "trn1": "inf2",
    "trn1n": "inf2",
    "g4dn": "gpu",
    "g5": "gpu",
    "g6": "gpu",
    "c5": "cpu",
    "c6i": "cpu",
    "c7i": "cpu",
    "m5": "cpu",
    "m6i": "cpu",
}
# Families people ask for that AWS's current images no longer serve, and why (one line each).
RETIRED = {
    "p3": "P3 (V100) is not supported by AWS's current NVIDIA images (the Base OSS DLAMI for EC2, "
    "ECS_AL2023_NVIDIA for AWS Batch); use g4dn, g5 or g6",
    "g3": "G3 is not supported by AWS's current NVIDIA images (the Base OSS DLAMI for EC2, "
    "ECS_AL2023_NVIDIA for AWS Batch); use g4dn, g5 or g6",
}
KINDS = ("inf1", "inf2", "gpu", "cpu")


def family_of(instance_type: str) -> str:
    return instance_type.split(".", 1)[0]


def kind_of(instance_type: str) -> str:
    """inf1, inf2, gpu or cpu (KeyError for a family the lab does not know)."""
    return FAMILIES[family_of(instance_type)]


def spec_of(instance_type: str) -> InstanceSpec | None:
    return SPECS.get(instance_type)


def sizes_of(family: str) -> list[str]:
    return [t for t in SPECS if family_of(t) == family]


# -- the machine image an instance of each kind boots ------------------------------------------

#: The last Neuron SDK release whose DLAMIs support Inf1: DLAMIs from 2.26.1 on ship a Neuron
#: driver without Inf1 support (Neuron DLAMI release notes).
INF1_LAST_SDK = (2, 26, 0)
NEURON_SDK = re.compile(r"Neuron SDK (\d+)\.(\d+)(?:\.(\d+))?")


def neuron_sdk(description: str | None) -> tuple[int, int, int] | None:
    """The Neuron SDK release a DLAMI's description names ("... Neuron SDK 2.26.0 ..."), or None."""
    m = NEURON_SDK.search(description or "")
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)) if m else None


def sdk_text(version: tuple[int, int, int]) -> str:
    return ".".join(str(v) for v in version)


@dataclass(frozen=True)
class HostImage:
    """Where a kind's default AMI is found, and who logs in to it."""

    ssm_parameter: str  # an AWS public parameter holding the current AMI id ("" = look up by name)
    name: str  # an AMI name pattern (Amazon-owned images), when there is no parameter
    login_user: str
    what: str  # in words, for the config review screen
    #: the newest Neuron SDK an image may carry (Inf1: DLAMIs after 2.26.0 dropped it); None = any
    max_neuron_sdk: tuple[int, int, int] | None = None


HOST_IMAGES = {
    # Inf1 needs a Neuron DLAMI from before SDK 2.26.1; its "latest" SSM parameters point past that,
    # so it is found by name and its description's SDK release (deprecated images as the fallback).
    "inf1": HostImage(
        "",
        "Deep Learning AMI Neuron (Ubuntu 22.04) *",
        "ubuntu",
        "the newest Neuron DLAMI (Ubuntu 22.04) whose Neuron SDK still supports Inf1 (2.26.0 or older)",
        INF1_LAST_SDK,
    ),
    "inf2": HostImage(
        "/aws/service/neuron/dlami/multi-framework/ubuntu-24.04/latest/image_id",
        "",
        "ubuntu",
        "the current Neuron DLAMI (multi-framework, Ubuntu 24.04)",
    ),
    "gpu": HostImage(
        "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id",
        "",
        "ubuntu",
        "the current Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04)",
    ),
    # The ECS-optimized Amazon Linux 2023 image: docker installed and running.
    "cpu": HostImage(
        "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id",
        "",
        "ec2-user",
        "the current ECS-optimized Amazon Linux 2023 AMI (docker included)",
    ),
}


@dataclass(frozen=True)
class BatchHost:
    """The ECS-optimized image an AWS Batch host of a kind boots: the compute environment's
    ``ec2Configuration`` image type and the public SSM parameter with the current AMI id."""

    image_type: str
    ami_parameter: str


# Amazon Linux 2023 for every kind: AWS ended the ECS AL2 AMIs on 2026-06-30 and Batch refuses new
# compute environments on them. Batch has no Neuron image type: the Neuron variant of AL2023 is
# named by imageIdOverride beside ECS_AL2023 (it installs an Inf1-capable Neuron driver on inf1).
BATCH_HOSTS = {
    "inf1": BatchHost("ECS_AL2023", "/aws/service/ecs/optimized-ami/amazon-linux-2023/neuron/recommended/image_id"),
    "inf2": BatchHost("ECS_AL2023", "/aws/service/ecs/optimized-ami/amazon-linux-2023/neuron/recommended/image_id"),
    "gpu": BatchHost("ECS_AL2023_NVIDIA", "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"),
    "cpu": BatchHost("ECS_AL2023", "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"),
}

# -- quotas ---------------------------------------------------------------------------------------

STANDARD_QUOTA = ("L-1216C47A", "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances")
# Family letters -> the EC2 on-demand vCPU quota the family counts against (the rest: STANDARD_QUOTA).
QUOTAS: dict[str, tuple[str, str]] = {
    "inf": ("L-1945791B", "Running On-Demand Inf instances"),
    "trn": ("L-2C3B7624", "Running On-Demand Trn instances"),
    "g": ("L-DB2E81BA", "Running On-Demand G and VT instances"),
    "gr": ("L-DB2E81BA", "Running On-Demand G and VT instances"),
    "vt": ("L-DB2E81BA", "Running On-Demand G and VT instances"),
    "p": ("L-417A185B", "Running On-Demand P instances"),
}


def quota_of(instance_type: str) -> tuple[str, str]:
    """(quota code, quota name) of the on-demand vCPU quota ``instance_type`` counts against."""
    letters = re.match(r"[a-z]*", family_of(instance_type)).group(0)  # type: ignore[union-attr]  # always matches
    return QUOTAS.get(letters, STANDARD_QUOTA)


def vcpus_of(instance_type: str) -> int:
    """vCPUs of a type: the table's, else from its size (large 2, xlarge 4, Nxlarge 4N)."""
    known = SPECS.get(instance_type)
    if known:
        return known.vcpus
    size = instance_type.split(".", 1)[-1]
    if size.endswith("xlarge"):
        return 4 * int(size[:-6] or 1)
    return {"large": 2, "medium": 1}.get(size, 1)
