"""The machine images the sandbox publishes, as AWS publishes them.

The emulator ships Amazon Linux and the ECS-optimized AMIs (and their public SSM parameters),
but not the ones the lab boots by default: the Neuron DLAMIs, found by name and by the Neuron
SDK release their description names, and the NVIDIA base DLAMI behind its public parameter. So
that the sandbox's ``preflight`` makes the same choice AWS lets it make, this module adds a small
catalogue of stand-ins, owned like AWS's (alias ``amazon``), with names, descriptions and dates
in AWS's form:

- Neuron DLAMIs (Ubuntu 22.04, and 24.04 from SDK 2.26.1): those up to SDK 2.26.0 say they support
  Inf1; later ones do not (AWS dropped Inf1 from the DLAMIs with 2.26.1);
- every image is deprecated two years after its creation (the longest AWS allows for a public AMI):
  its ``DeprecationTime`` is shown; hiding deprecated images from DescribeImages is the faults
  table's ``ec2.deprecated_amis`` (it is what AWS does, see :mod:`.faults`);
- the public parameters ``/aws/service/neuron/dlami/multi-framework/<os>/latest/image_id`` and
  ``/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id``
  name the newest image of their series.

:func:`install` (called once by the daemon) hooks the emulator's EC2 image store and its SSM
public-parameter loader; image ids are derived from the region and name, so they are the same in
every sandbox.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

AWS_DLAMI_OWNER = "898082745236"  # the account that publishes the Deep Learning AMIs (alias amazon)
DEPRECATE_AFTER = timedelta(days=730)
INF1_LAST = (2, 26, 0)


@dataclass(frozen=True)
class Image:
    name: str
    description: str
    created: datetime
    #: the public parameter whose value is the newest image of this series
    parameter: str
    root_device: str = "/dev/sda1"

    @property
    def deprecation(self) -> datetime:
        return self.created + DEPRECATE_AFTER

    def ami_id(self, region: str) -> str:
        return "ami-" + hashlib.sha256(f"{region}/{self.name}".encode()).hexdigest()[:17]


def _neuron(os_name: str, date: str, sdk: tuple[int, int, int]) -> Image:
    supported = "Inf1, Inf2, Trn1, Trn1n, Trn2" if sdk <= INF1_LAST else "Inf2, Trn1, Trn1n, Trn2"
    version = ".".join(map(str, sdk))
    return Image(
        name=f"Deep Learning AMI Neuron ({os_name}) {date}",
        description=(
            f"Deep Learning AMI Neuron ({os_name}) with Neuron SDK {version}: the Neuron driver, runtime and "
            f"tools, docker, and PyTorch, JAX and TensorFlow virtual environments. Supported EC2 instances: "
            f"{supported}."
        ),
        created=datetime.strptime(date, "%Y%m%d").replace(tzinfo=timezone.utc),
        parameter=f"/aws/service/neuron/dlami/multi-framework/{os_name.lower().replace(' ', '-')}/latest/image_id",
    )


CATALOGUE: tuple[Image, ...] = (
    _neuron("Ubuntu 22.04", "20240722", (2, 19, 1)),
    _neuron("Ubuntu 22.04", "20241027", (2, 20, 1)),
    _neuron("Ubuntu 22.04", "20241221", (2, 21, 0)),
    _neuron("Ubuntu 22.04", "20250410", (2, 22, 0)),
    _neuron("Ubuntu 22.04", "20250627", (2, 24, 0)),
    _neuron("Ubuntu 22.04", "20250919", (2, 26, 0)),
    _neuron("Ubuntu 22.04", "20251105", (2, 26, 1)),
    _neuron("Ubuntu 22.04", "20251223", (2, 27, 0)),
    _neuron("Ubuntu 24.04", "20251105", (2, 26, 1)),
    _neuron("Ubuntu 24.04", "20260601", (2, 29, 0)),
    Image(
        name="Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) 20261120",
        description=(
            "Supported EC2 instances: G4dn, G5, G6, Gr6, G6e, P4d, P4de, P5, P5e, P5en. NVIDIA driver, CUDA, "
            "docker and the NVIDIA container toolkit. Release notes: "
            "https://aws.amazon.com/releasenotes/aws-deep-learning-base-gpu-ami-ubuntu-22-04/"
        ),
        created=datetime(2026, 11, 20, tzinfo=timezone.utc),
        parameter="/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id",
    ),
)
PARAMETER_PREFIXES = ("/aws/service/neuron/", "/aws/service/deeplearning/")


def aws_time(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def deprecated(image: Any, now: datetime | None = None) -> bool:
    """An emulated image's DeprecationTime has passed (an image without one never is)."""
    when = getattr(image, "deprecation_time", None)
    if not when:
        return False
    return datetime.strptime(when, "%Y-%m-%dT%H:%M:%S.000Z").replace(tzinfo=timezone.utc) <= (
        now or datetime.now(timezone.utc)
    )


def newest_per_parameter(region: str) -> dict[str, str]:
    """Public parameter -> the id of the newest image of its series in ``region``."""
    out: dict[str, Image] = {}
    for image in CATALOGUE:
        if image.parameter not in out or image.created > out[image.parameter].created:
            out[image.parameter] = image
    return {p: image.ami_id(region) for p, image in out.items()}


_installed = False


def install() -> None:
    """Hook the emulator so every region has the catalogue's images and parameters; idempotent."""
    global _installed
    if _installed:
        return
    from moto.ec2.models.amis import Ami, AmiBackend
    from moto.ssm.models import Parameter, ParameterDict

    load_amis = AmiBackend._load_amis

    def _load_amis(self) -> None:
        load_amis(self)
        for image in CATALOGUE:
            ami = Ami(
                self,
                ami_id=image.ami_id(self.region_name),
                name=image.name,
                description=image.description,
                owner_id=AWS_DLAMI_OWNER,
                owner_alias="amazon",
                public=True,
                virtualization_type="hvm",
                architecture="x86_64",
                state="available",
                creation_date=image.created,
                hypervisor="xen",
                root_device_type="ebs",
                root_device_name=image.root_device,
                sriov="simple",
                image_type="machine",
            )
            ami.deprecation_time = aws_time(image.deprecation)  # answered as DeprecationTime, as EC2 does
            self.amis[ami.id] = ami

    check_loading = ParameterDict._check_loading_status

    def _check_loading_status(self, key: str) -> None:
        check_loading(self, key)
        if str(key or "").startswith(PARAMETER_PREFIXES) and not getattr(self, "inflab_images_loaded", False):
            self.inflab_images_loaded = True
            for name, value in newest_per_parameter(self.region_name).items():
                versions = dict.setdefault(self, name, [])
                versions.append(
                    Parameter(
                        account_id=self.account_id,
                        name=name,
                        value=value,
                        parameter_type="String",
                        description=None,
                        allowed_pattern=None,
                        keyid=None,
                        last_modified_date=datetime.now(timezone.utc),
                        version=1,
                        data_type="aws:ec2:image",
                    )
                )

    AmiBackend._load_amis = _load_amis
    ParameterDict._check_loading_status = _check_loading_status
    _installed = True
