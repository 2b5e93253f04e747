"""Lab configuration: one TOML file, validated up front.

One file replaces the workshop's ec2.conf / dlc.conf / batch.conf. Every key has a
default (the workshop's values); a user file only names what it changes. Validation
happens before anything is created: the first problem found is raised as
:class:`ConfigError` whose message names the key, and the CLI prints it on one line
and exits with code 2.

This module must stay cheap to import (no boto3): it is on the CLI's start-up path.
"""

from __future__ import annotations

import copy
import ipaddress
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """Bad configuration; the message names the offending key."""


# The AWS commercial regions as of 2026 (the partition's endpoint data lists the same;
# keeping the list here keeps botocore off the start-up path).
REGIONS = frozenset(
    """
    us-east-1 us-east-2 us-west-1 us-west-2 af-south-1 ap-east-1 ap-east-2 ap-south-1
    ap-south-2 ap-southeast-1 ap-southeast-2 ap-southeast-3 ap-southeast-4 ap-southeast-5
    ap-southeast-6 ap-southeast-7 ap-northeast-1 ap-northeast-2 ap-northeast-3
    ca-central-1 ca-west-1 eu-central-1 eu-central-2 eu-west-1 eu-west-2 eu-west-3
    eu-south-1 eu-south-2 eu-north-1 il-central-1 me-south-1 me-central-1 mx-central-1
    sa-east-1
    """.split()
)

# Instance families the lab knows how to benchmark on (accelerators and the
# comparison targets of the workshop and its sibling labs).
INSTANCE_FAMILIES = {
    "inf1": "inf1",
    "inf2": "inf2",
    "trn1": "inf2",
    "trn1n": "inf2",
    "g4dn": "gpu",
    "g5": "gpu",
    "g6": "gpu",
    "p3": "gpu",
    "c5": "cpu",
    "c6i": "cpu",
    "c7i": "cpu",
    "m5": "cpu",
    "m6i": "cpu",
}
_INSTANCE_TYPE_RE = re.compile(r"^(?P<family>[a-z][a-z0-9]*)\.(?P<size>nano|micro|small|medium|large|metal|\d*xlarge)$")
SESSION_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")

# AMI used when the user names none. Inf1 needs a Neuron DLAMI from before SDK 2.26.1
# (later ones dropped Inf1), so it is found by name; Inf2/Trn1 use the current DLAMI,
# published as an SSM public parameter.
DEFAULT_AMI = {
    "inf1": {"ami_ssm_parameter": "", "ami_name": "Deep Learning AMI Neuron (Ubuntu 22.04) 2024*"},
    "inf2": {
        "ami_ssm_parameter": "/aws/service/neuron/dlami/multi-framework/ubuntu-24.04/latest/image_id",
        "ami_name": "",
    },
}
# In the sandbox the "AMI" only has to exist in the emulated account: use the public
# Amazon Linux parameter, which the emulator publishes.
SANDBOX_AMI_SSM = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"

DEFAULTS: dict[str, dict[str, Any]] = {
    "aws": {
        "region": "us-west-2",
        "profile": "",
    },
    "lab": {
        "track": "inf1",
    },
    "instance": {
        "type": "inf1.2xlarge",
        "ami": "",
        "ami_ssm_parameter": "",
        "ami_name": "",
        "ssh_user": "ubuntu",
        "volume_size_gb": 256,
        "volume_type": "gp3",
        "subnet_id": "",
        "ssh_cidr": "",
    },
    "model": {
        "family": "bert",
        "name": "",  # "" = the family's workshop model (MODEL_NAMES)
        "max_length": 128,
        "image_size": 224,
        "size": "",  # "" = "tiny" in the sandbox (a 2-core laptop), "full" on AWS
        "offline": False,
        "int8": True,  # CPU targets also get a dynamic-int8 copy to compare
    },
    "container": {
        "source": "build",  # or "prebuilt": pull the AWS image and add the payload
        "target": "",  # "" = from the instance type (the sandbox: cpu)
    },
    "bench": {
        "batch_size": 8,
        "n_models": 0,  # 0 = one per NeuronCore / GPU; CPU: one per 4 cores
        "workers_per_model": 2,
        "min_duration_s": 10,
        "min_queries": 500,
        "max_duration_s": 120,
        "mode": "closed",
        "rate": 0.0,  # open loop: queries per second across all models
    },
    "batch": {
        "sizes": [2, 4, 8],
        "instance_types": ["inf1.2xlarge"],
        "max_vcpus": 64,
    },
}

MODEL_FAMILIES = ("bert", "resnet")
MODEL_NAMES = {"bert": "bert-base-cased-finetuned-mrpc", "resnet": "microsoft/resnet-50"}
MODEL_SIZES = ("full", "tiny")
CONTAINER_SOURCES = ("build", "prebuilt")
# What the payload traces for, per container target (the Dockerfile directories).
CONTAINER_TARGETS = {"inf1": "inf1", "inf2": "inf2", "gpu": "cuda", "cpu": "cpu"}
BENCH_MODES = ("closed", "open")
VOLUME_TYPES = ("gp3", "gp2", "io1", "io2")
TRACKS = ("inf1", "inf2")


@dataclass(frozen=True)
class LabConfig:
    """A validated configuration. ``data`` is the full key tree, defaults filled in."""

    data: dict[str, dict[str, Any]]

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.data[section]

    @property
    def region(self) -> str:
        return self.data["aws"]["region"]

    @property
    def track(self) -> str:
        return self.data["lab"]["track"]

    @property
    def instance_type(self) -> str:
        return self.data["instance"]["type"]

    # The model and container keys left empty mean "what fits this session"; resolved
    # when used, so changing the instance type on the review screen changes them too.
    @property
    def model_name(self) -> str:
        return self.data["model"]["name"] or MODEL_NAMES[self.data["model"]["family"]]

    def model_size(self, sandbox: bool) -> str:
        return self.data["model"]["size"] or ("tiny" if sandbox else "full")

    def container_kind(self, sandbox: bool) -> str:
        """Which container definition (assets/container/<kind>): inf1, inf2, gpu or cpu."""
        if self.data["container"]["target"]:
            return self.data["container"]["target"]
        if sandbox:
            return "cpu"  # the sandbox "instance" is this machine
        return INSTANCE_FAMILIES[_INSTANCE_TYPE_RE.fullmatch(self.instance_type).group("family")]

    def payload_target(self, sandbox: bool) -> str:
        """What the payload traces for: inf1, inf2, cuda or cpu."""
        return CONTAINER_TARGETS[self.container_kind(sandbox)]

    def to_toml(self) -> str:
        return dumps_toml(self.data)


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", str: "a string", list: "a list", float: "a number", dict: "a table"}.get(
        type(value), type(value).__name__
    )


def _check_type(key: str, value: Any, default: Any) -> None:
    expected = type(default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return  # 100 is a fine rate
    ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
    if not ok:
        raise ConfigError(f"{key}: expected {_type_name(default)}, got {_type_name(value)} ({value!r})")


def _merge(user: dict[str, Any]) -> dict[str, dict[str, Any]]:
    data = copy.deepcopy(DEFAULTS)
    for section, values in user.items():
        if section not in DEFAULTS:
            raise ConfigError(f"{section}: unknown section (known: {', '.join(DEFAULTS)})")
        if not isinstance(values, dict):
            raise ConfigError(f"{section}: expected a table, got {_type_name(values)}")
        for key, value in values.items():
            full = f"{section}.{key}"
            if key not in DEFAULTS[section]:
                raise ConfigError(f"{full}: unknown key (known: {', '.join(DEFAULTS[section])})")
            _check_type(full, value, DEFAULTS[section][key])
            data[section][key] = value
    return data


def _check_instance_type(key: str, value: str) -> None:
    m = _INSTANCE_TYPE_RE.fullmatch(value)
    if not m:
        raise ConfigError(f"{key}: {value!r} is not an EC2 instance type (like inf1.2xlarge)")
    if m.group("family") not in INSTANCE_FAMILIES:
        raise ConfigError(
            f"{key}: instance family {m.group('family')!r} is not one the lab supports "
            f"(supported: {', '.join(sorted(INSTANCE_FAMILIES))})"
        )


def _validate(data: dict[str, dict[str, Any]], sandbox: bool) -> None:
    aws, inst, model, batch, lab = data["aws"], data["instance"], data["model"], data["batch"], data["lab"]
    container, bench = data["container"], data["bench"]
    if aws["region"] not in REGIONS:
        raise ConfigError(f"aws.region: {aws['region']!r} is not an AWS region (like us-west-2)")
    if lab["track"] not in TRACKS:
        raise ConfigError(f"lab.track: {lab['track']!r} is not a track (choose from {', '.join(TRACKS)})")
    _check_instance_type("instance.type", inst["type"])
    if inst["ami"] and not re.fullmatch(r"ami-[0-9a-f]{8,17}", inst["ami"]):
        raise ConfigError(f"instance.ami: {inst['ami']!r} is not an AMI id (like ami-0123456789abcdef0)")
    if inst["ami_ssm_parameter"] and not inst["ami_ssm_parameter"].startswith("/"):
        raise ConfigError("instance.ami_ssm_parameter: must be a parameter path starting with '/'")
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", inst["ssh_user"]):
        raise ConfigError(f"instance.ssh_user: {inst['ssh_user']!r} is not a valid user name")
    if not 8 <= inst["volume_size_gb"] <= 16384:
        raise ConfigError(f"instance.volume_size_gb: {inst['volume_size_gb']} is outside 8..16384")
    if inst["volume_type"] not in VOLUME_TYPES:
        raise ConfigError(f"instance.volume_type: {inst['volume_type']!r} is not one of {', '.join(VOLUME_TYPES)}")
    if inst["subnet_id"] and not re.fullmatch(r"subnet-[0-9a-f]{8,17}", inst["subnet_id"]):
        raise ConfigError(f"instance.subnet_id: {inst['subnet_id']!r} is not a subnet id (like subnet-0123abcd)")
    if inst["ssh_cidr"]:
        try:
            net = ipaddress.ip_network(inst["ssh_cidr"], strict=True)
        except ValueError:
            raise ConfigError(f"instance.ssh_cidr: {inst['ssh_cidr']!r} is not a CIDR block (like 203.0.113.7/32)") from None
        if net.prefixlen == 0:
            raise ConfigError("instance.ssh_cidr: refusing to open SSH to the whole internet (/0)")
    if model["family"] not in MODEL_FAMILIES:
        raise ConfigError(f"model.family: {model['family']!r} is not one of {', '.join(MODEL_FAMILIES)}")
    if model["name"] and not re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", model["name"]):
        raise ConfigError(f"model.name: {model['name']!r} is not a model id (like bert-base-cased-finetuned-mrpc or org/model)")
    for family, default in MODEL_NAMES.items():
        if model["name"] == default and family != model["family"]:
            raise ConfigError(f"model.name: {default} is a {family} model; name a {model['family']} model or leave it empty")
    if model["size"] and model["size"] not in MODEL_SIZES:
        raise ConfigError(f"model.size: {model['size']!r} is not one of {', '.join(MODEL_SIZES)}")
    if container["source"] not in CONTAINER_SOURCES:
        raise ConfigError(f"container.source: {container['source']!r} is not one of {', '.join(CONTAINER_SOURCES)}")
    if container["target"] and container["target"] not in CONTAINER_TARGETS:
        raise ConfigError(f"container.target: {container['target']!r} is not one of {', '.join(CONTAINER_TARGETS)}")
    for key, lo, hi in (("batch_size", 1, 1024), ("n_models", 0, 256), ("workers_per_model", 1, 64), ("min_duration_s", 1, 3600),
                        ("min_queries", 1, 10_000_000), ("max_duration_s", 1, 86_400)):
        if not lo <= bench[key] <= hi:
            raise ConfigError(f"bench.{key}: {bench[key]} is outside {lo}..{hi}")
    if bench["max_duration_s"] < bench["min_duration_s"]:
        raise ConfigError(f"bench.max_duration_s: {bench['max_duration_s']} is less than bench.min_duration_s ({bench['min_duration_s']})")
    if bench["mode"] not in BENCH_MODES:
        raise ConfigError(f"bench.mode: {bench['mode']!r} is not one of {', '.join(BENCH_MODES)}")
    if bench["mode"] == "open" and not bench["rate"] > 0:
        raise ConfigError("bench.rate: open-loop mode needs a target rate above 0 (queries per second)")
    if bench["rate"] < 0:
        raise ConfigError(f"bench.rate: {bench['rate']} is negative")
    if not 8 <= model["max_length"] <= 4096:
        raise ConfigError(f"model.max_length: {model['max_length']} is outside 8..4096")
    if not 32 <= model["image_size"] <= 1024:
        raise ConfigError(f"model.image_size: {model['image_size']} is outside 32..1024")
    sizes = batch["sizes"]
    if not sizes:
        raise ConfigError("batch.sizes: must list at least one batch size")
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= 1024:
            raise ConfigError(f"batch.sizes: {s!r} is not a batch size (an integer 1..1024)")
    if len(set(sizes)) != len(sizes):
        raise ConfigError("batch.sizes: lists a batch size twice")
    if not batch["instance_types"]:
        raise ConfigError("batch.instance_types: must list at least one instance type")
    for t in batch["instance_types"]:
        if not isinstance(t, str):
            raise ConfigError(f"batch.instance_types: {t!r} is not a string")
        _check_instance_type("batch.instance_types", t)
    if not 1 <= batch["max_vcpus"] <= 10000:
        raise ConfigError(f"batch.max_vcpus: {batch['max_vcpus']} is outside 1..10000")
    if not sandbox and aws["profile"] and not re.fullmatch(r"[\w.+@-]+", aws["profile"]):
        raise ConfigError(f"aws.profile: {aws['profile']!r} is not a profile name")


def _fill_ami(data: dict[str, dict[str, Any]], sandbox: bool) -> None:
    inst = data["instance"]
    if inst["ami"] or inst["ami_ssm_parameter"] or inst["ami_name"]:
        return
    if sandbox:
        inst["ami_ssm_parameter"] = SANDBOX_AMI_SSM
        return
    family = _INSTANCE_TYPE_RE.fullmatch(inst["type"]).group("family")  # validated already
    kind = INSTANCE_FAMILIES[family]
    inst.update(DEFAULT_AMI["inf1" if kind == "inf1" else "inf2"])


def from_dict(user: dict[str, Any], *, sandbox: bool = False) -> LabConfig:
    data = _merge(user)
    _validate(data, sandbox)
    _fill_ami(data, sandbox)
    return LabConfig(data)


def load(path: str | Path | None, *, sandbox: bool = False) -> LabConfig:
    """Load and validate a config file; ``None`` gives the defaults."""
    if path is None:
        return from_dict({}, sandbox=sandbox)
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"--config: no such file: {p}") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise ConfigError(f"--config: cannot read {p}: {e.__class__.__name__}") from None
    try:
        user = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"--config: {p} is not valid TOML: {e}") from None
    return from_dict(user, sandbox=sandbox)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dumps_toml(data: dict[str, dict[str, Any]]) -> str:
    """Write the (flat, two-level) config tree as TOML."""
    out = []
    for section, values in data.items():
        out.append(f"[{section}]")
        out.extend(f"{k} = {_toml_value(v)}" for k, v in values.items())
        out.append("")
    return "\n".join(out)


def validate_session_name(name: str, flag: str = "--name") -> str:
    if not SESSION_NAME_RE.fullmatch(name or ""):
        raise ConfigError(
            f"{flag}: {name!r} is not a session name (lowercase letters, digits and '-', up to 31 characters)"
        )
    return name
