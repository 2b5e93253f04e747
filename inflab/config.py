"""Lab configuration: one TOML file, validated up front.

One file replaces the workshop's ec2.conf / dlc.conf / batch.conf. Every key has a
default (the workshop's values); a user file only names what it changes. Validation
happens before anything is created: the first problem found is raised as
:class:`ConfigError` whose message names the key, and the CLI prints it on one line
and exits with code 2.

This module must stay cheap to import (no boto3): it is on the CLI's start-up path.
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import math
import os
import re
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from . import accelerators, ml_types
from .errors import InputError
from .remote.payload import limits


class ConfigError(InputError, ValueError):
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

# Instance families the lab knows how to benchmark on, and each one's kind (inf1, inf2, gpu, cpu):
# the accelerator facts live in one table (inflab.accelerators).
INSTANCE_FAMILIES = accelerators.FAMILIES
_INSTANCE_TYPE_RE = re.compile(
    r"^(?P<family>[a-z][a-z0-9]*)\.(?P<size>nano|micro|small|medium|large|metal(-\d+xl)?|\d*xlarge)$"
)
# A participant's label (the lab's [lab] participant, the instructor roster's participant.label).
LABEL_RE = r"[\w][\w.@+ -]{0,39}"
LABEL_TEXT = "a label (up to 40 letters, digits, spaces and . @ + _ -, starting with a letter or digit)"
SESSION_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
MAX_TEXT = 255  # characters in any string value
MAX_FILE_BYTES = 1 << 20  # a config file larger than this is not a config file
MAX_REQUEST_BYTES = 6 << 20  # TorchServe's default max_request_size is 6553500 bytes
WIDEST_SSH_PREFIX = 24
MAX_SWEEP_JOBS = 60  # Batch jobs in one sweep (a bigger grid is a typo more often than a plan)  # a wider instance.ssh_cidr needs instance.allow_wide_ssh


# The sections, their keys and defaults (the workshop's values). Lists are tuples here and
# lists in ``LabConfig.data``.
@dataclass(frozen=True)
class AwsSection:
    region: str = "us-west-2"
    profile: str = ""


@dataclass(frozen=True)
class LabSection:
    track: str = "inf1"
    participant: str = ""  # "" = the session name
    beacon: bool = True


@dataclass(frozen=True)
class InstanceSection:
    type: str = "inf1.2xlarge"
    ami: str = ""
    ami_ssm_parameter: str = ""
    ami_name: str = ""
    ssh_user: str = ""  # "" = the login user of the kind's default AMI
    volume_size_gb: int = 256
    volume_type: str = "gp3"
    subnet_id: str = ""
    ssh_cidr: str = ""
    allow_wide_ssh: bool = False


@dataclass(frozen=True)
class ModelSection:
    family: str = "bert"
    name: str = ""  # "" = the family's workshop model (MODEL_NAMES)
    max_length: int = 128
    image_size: int = 224
    size: str = ""  # "" = "tiny" in the sandbox (a 2-core laptop), "full" on AWS
    offline: bool = False
    int8: bool = True  # CPU targets also get a dynamic-int8 copy to compare


@dataclass(frozen=True)
class ContainerSection:
    source: str = "build"  # or "prebuilt": pull the AWS image and add the payload
    target: str = ""  # "" = from the instance type (the sandbox: cpu)


@dataclass(frozen=True)
class BenchSection:
    batch_size: int = 8
    n_models: int = 0  # 0 = one per NeuronCore / GPU; CPU: one per 4 cores
    workers_per_model: int = 2
    min_duration_s: int = 10
    min_queries: int = 500
    max_duration_s: int = 120
    mode: str = "closed"
    rate: float = 0.0  # open loop: queries per second across all models
    repeats: int = 3  # independent trials per configuration: the median and its 95% CI
    harness: str = "inflab"  # or "loadgen": MLPerf LoadGen measures the same model (a cross-check)


@dataclass(frozen=True)
class BatchSection:
    families: tuple[str, ...] = ("bert",)
    sizes: tuple[int, ...] = (2, 4, 8)
    instance_types: tuple[str, ...] = ("inf1.2xlarge",)
    min_duration_s: int = 10
    max_duration_s: int = 60
    max_vcpus: int = 64
    runnable_timeout_min: int = 30  # a job AWS Batch cannot place is cancelled after this long


@dataclass(frozen=True)
class ServeSection:
    workers: int = 0  # 0 = one per NeuronCore / GPU; CPU: the direct benchmark's copies x workers_per_model
    batch_size: int = 0  # 0 = the compiled batch size
    max_batch_delay_ms: int = 10
    latency_limit_ms: float = 100.0
    rates: tuple[float, ...] = ()  # empty: probe what the server sustains, then double from a quarter of it
    max_rates: int = 8
    step_s: int = 10
    input: str = ""  # empty: the sample sentence pair / image in assets/samples


@dataclass(frozen=True)
class SageMakerSection:
    enabled: bool = True  # false: the SageMaker exercise's steps are skipped
    instance_type: str = ml_types.DEFAULT
    instance_count: int = 1
    latency_limit_ms: float = 100.0
    rates: tuple[float, ...] = ()  # empty: doubling from 1% of the direct benchmark's throughput
    max_rates: int = 8
    step_s: int = 10


SECTIONS: dict[str, type] = {
    "aws": AwsSection,
    "lab": LabSection,
    "instance": InstanceSection,
    "model": ModelSection,
    "container": ContainerSection,
    "bench": BenchSection,
    "batch": BatchSection,
    "serve": ServeSection,
    "sagemaker": SageMakerSection,
}

# What the config review screen (and ``to_toml``) writes beside each key.
COMMENTS = {
    "aws.region": "any AWS region",
    "aws.profile": "a named profile; empty = the default chain",
    "lab.track": "inf1 | inf2",
    "lab.participant": "your label on the instructor's roster; empty: the session name",
    "lab.beacon": "publish progress to SSM /inflab/sessions/<session> for the instructor (no secrets)",
    "instance.type": "the EC2 instance type to benchmark on",
    "instance.ami": "empty: from ami_ssm_parameter, else the newest Amazon AMI named ami_name, else the type's default",
    "instance.ami_ssm_parameter": "e.g. /aws/service/neuron/dlami/multi-framework/ubuntu-24.04/latest/image_id",
    "instance.ami_name": "an Amazon AMI name pattern (* and ? wildcards); Inf1 takes only Neuron SDK 2.26.0 or older",
    "instance.ssh_user": "the AMI's login user; empty: the default AMI's (ubuntu, ec2-user on CPU types)",
    "instance.volume_size_gb": f"encrypted, deleted with the instance ({limits.VOLUME_SIZE_GB} GB)",
    "instance.volume_type": "gp3 | gp2 | io1 | io2",
    "instance.subnet_id": "empty: try every default subnet whose zone offers the type",
    "instance.ssh_cidr": "empty: your public IP /32 (loopback in the sandbox)",
    "instance.allow_wide_ssh": f"true: allow an ssh_cidr wider than a /{WIDEST_SSH_PREFIX} (never /0)",
    "model.family": "bert | resnet",
    "model.name": "empty: bert-base-cased-finetuned-mrpc (bert), microsoft/resnet-50 (resnet)",
    "model.max_length": f"BERT sequence length ({limits.MAX_LENGTH})",
    "model.image_size": f"ResNet input size ({limits.IMAGE_SIZE})",
    "model.size": "full | tiny; empty: tiny in the sandbox, full on AWS",
    "model.offline": "true: do not ask the model hub; same architecture, random weights",
    "model.int8": "on CPU targets also compile and benchmark a dynamic-int8 copy",
    "container.source": "build: docker build assets/container/<kind> | prebuilt: pull the AWS image, add the payload",
    "container.target": "inf1 | inf2 | gpu | cpu; empty: from the instance type (the sandbox: cpu)",
    "bench.batch_size": f"samples per model call ({limits.BATCH_SIZE})",
    "bench.n_models": "0: one per NeuronCore (or GPU); on a CPU one per four cores",
    "bench.workers_per_model": f"threads calling each model copy ({limits.WORKERS_PER_MODEL})",
    "bench.min_duration_s": "each trial runs at least this long AND this many queries AND until stable",
    "bench.min_queries": f"at least this many queries ({limits.MIN_QUERIES})",
    "bench.max_duration_s": 'stop anyway (the result says "not stable")',
    "bench.mode": "closed | open (Poisson arrivals at `rate` queries/s; latency counts queueing)",
    "bench.rate": f"open mode: queries/s over all model copies ({limits.RATE})",
    "bench.repeats": f"independent trials, each until stable; the median and its 95% CI ({limits.REPEATS})",
    "bench.harness": "inflab | loadgen (MLPerf LoadGen: Offline, SingleStream, Server at `rate`; a cross-check)",
    "batch.families": "the sweep's model families: bert, resnet (sequence length / image size from [model])",
    "batch.sizes": f"the AWS Batch sweep: one job per family, instance type and batch size ({limits.BATCH_SIZE})",
    "batch.instance_types": "inf1 → torch-neuron, inf2 → torch-neuronx, g4dn/g5 → CUDA, c6i/c7i → CPU fp32 and int8",
    "batch.min_duration_s": "each sweep job's benchmark: each trial at least this long (and bench.min_queries, and stable)",
    "batch.max_duration_s": 'each sweep job\'s benchmark stops anyway (the result says "not stable")',
    "batch.max_vcpus": f"the Batch compute environment's vCPU limit ({limits.MAX_VCPUS})",
    "batch.runnable_timeout_min": f"a job Batch cannot place (RUNNABLE) is cancelled after this long ({limits.RUNNABLE_TIMEOUT_MIN})",
    "serve.workers": "TorchServe workers; 0: one per NeuronCore (or GPU), on a CPU the direct benchmark's copies x workers",
    "serve.batch_size": "TorchServe's server-side batchSize; 0: the compiled batch size",
    "serve.max_batch_delay_ms": f"how long TorchServe waits to fill a batch ({limits.MAX_BATCH_DELAY_MS})",
    "serve.latency_limit_ms": "the load test's rates stop rising once p99 is over this",
    "serve.rates": "requests/s to offer, rising; empty: probe the server, then double from a quarter of what it sustains",
    "serve.max_rates": f"automatic rates: at most this many (1..{limits.MAX_LOAD_RATES})",
    "serve.step_s": f"seconds of load at each rate ({limits.LOAD_STEP_S})",
    "serve.input": "a file to send in the check and the load test; empty: the sample sentence pair or image",
    "sagemaker.enabled": "false: skip the SageMaker exercise (a real-time endpoint of the compiled model)",
    "sagemaker.instance_type": "ml.c6i.xlarge; ml.inf1/ml.inf2/ml.g4dn types where the compiled target fits",
    "sagemaker.instance_count": f"instances behind each variant ({limits.SAGEMAKER_INSTANCES}), each billed",
    "sagemaker.latency_limit_ms": "the load test's rates stop rising once p99 is over this",
    "sagemaker.rates": "requests/s to offer, rising; empty: doubling from 1% of the direct benchmark's samples/s",
    "sagemaker.max_rates": f"automatic rates: at most this many (1..{limits.MAX_LOAD_RATES})",
    "sagemaker.step_s": f"seconds of load at each rate ({limits.LOAD_STEP_S})",
}


def _tree(section: Any) -> dict[str, Any]:
    """A section's values as plain data (tuples as lists): what TOML and the session store hold."""
    return {
        f.name: list(v) if isinstance(v := getattr(section, f.name), tuple) else v for f in dataclasses.fields(section)
    }


DEFAULTS: dict[str, dict[str, Any]] = {name: _tree(cls()) for name, cls in SECTIONS.items()}

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
    """A validated configuration, one typed record per section (``cfg.bench.batch_size``).

    Made by :func:`from_dict`, :func:`load` and :meth:`from_snapshot`, which validate.
    """

    aws: AwsSection
    lab: LabSection
    instance: InstanceSection
    model: ModelSection
    container: ContainerSection
    bench: BenchSection
    batch: BatchSection
    serve: ServeSection
    sagemaker: SageMakerSection

    @classmethod
    def from_snapshot(cls, data: dict[str, Any], sandbox: bool) -> LabConfig:
        """A configuration stored with a session, validated again: a snapshot edited by hand or
        written by an older version is refused with a :class:`ConfigError` naming the key."""
        if not isinstance(data, dict):
            raise ConfigError(f"the saved configuration is {_type_name(data)}, not a table")
        return from_dict(data, sandbox=sandbox)

    @property
    def data(self) -> dict[str, dict[str, Any]]:
        """The full key tree, defaults filled in: the session's stored snapshot (a fresh copy)."""
        return {name: _tree(getattr(self, name)) for name in SECTIONS}

    def __getitem__(self, section: str) -> Mapping[str, Any]:
        """One section's values, read-only (``cfg["bench"]["batch_size"]``)."""
        if section not in SECTIONS:
            raise KeyError(section)
        return MappingProxyType(_tree(getattr(self, section)))

    @property
    def region(self) -> str:
        return self.aws.region

    @property
    def track(self) -> str:
        return self.lab.track

    @property
    def instance_type(self) -> str:
        return self.instance.type

    # The model and container keys left empty mean "what fits this session"; resolved
    # when used, so changing the instance type on the review screen changes them too.
    @property
    def model_name(self) -> str:
        return self.model.name or MODEL_NAMES[self.model.family]

    def model_size(self, sandbox: bool) -> str:
        return self.model.size or ("tiny" if sandbox else "full")

    @property
    def instance_kind(self) -> str:
        """What the instance type is: inf1, inf2, gpu or cpu (its AMI, login user and devices follow)."""
        return accelerators.kind_of(self.instance_type)

    def container_kind(self, sandbox: bool) -> str:
        """Which container definition (assets/container/<kind>): inf1, inf2, gpu or cpu."""
        if self.container.target:
            return self.container.target
        if sandbox:
            return "cpu"  # the sandbox "instance" is this machine
        return self.instance_kind

    def batch_kind(self, instance_type: str) -> str:
        """The container kind a sweep job on ``instance_type`` runs (inf1, inf2, gpu, cpu)."""
        return accelerators.kind_of(instance_type)

    @property
    def host_image(self) -> accelerators.HostImage:
        """Where the instance's AMI comes from and who logs in: the keys the user set, over the
        default of the instance type's kind (resolved when used, so changing the type changes them)."""
        inst, default = self.instance, accelerators.HOST_IMAGES[self.instance_kind]
        cap = default.max_neuron_sdk
        if inst.ami or inst.ami_ssm_parameter or inst.ami_name:
            return accelerators.HostImage(
                inst.ami_ssm_parameter, inst.ami_name, self.login_user, "the AMI set in [instance]", cap
            )
        return default

    @property
    def login_user(self) -> str:
        return self.instance.ssh_user or accelerators.HOST_IMAGES[self.instance_kind].login_user

    def payload_target(self, sandbox: bool) -> str:
        """What the payload traces for: inf1, inf2, cuda or cpu."""
        return CONTAINER_TARGETS[self.container_kind(sandbox)]

    def to_toml(self) -> str:
        """The whole configuration as TOML, each key with its comment (the review screen's text)."""
        out = []
        for section, values in self.data.items():
            out.append(f"[{section}]")
            for key, value in values.items():
                line = f"{key} = {_toml_value(value)}"
                out.append(f"{line:<26}  # {self._comment(f'{section}.{key}', value)}")
            out.append("")
        return "\n".join(out)

    def _comment(self, key: str, value: Any) -> str:
        """A key's comment; an empty AMI or login says what it resolves to for this instance type."""
        image = self.host_image
        if key == "instance.ami" and not (
            self.instance.ami or self.instance.ami_ssm_parameter or self.instance.ami_name
        ):
            return f"empty: for {self.instance_type}, {image.what}"
        if key == "instance.ssh_user" and not value:
            return f"empty: {self.login_user}, that AMI's login user"
        return COMMENTS[key]


def _toml_value(value: Any) -> str:
    """One value as TOML, written by tomli_w; lists on one line."""
    import tomli_w

    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return tomli_w.dumps({"v": value}).removeprefix("v = ").rstrip("\n")


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        str: "a string",
        list: "a list",
        float: "a number",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _key_name(key: str) -> str:
    """A user's key as an error message names it: bare when it is a plain word, else quoted and cut short."""
    return key if re.fullmatch(r"\w{1,60}", key, re.ASCII) else _shown(key)


def _check_text(key: str, value: str) -> None:
    if len(value) > MAX_TEXT:
        raise ConfigError(f"{key}: {len(value)} characters is too long (at most {MAX_TEXT})")


def _check_type(key: str, value: Any, default: Any) -> None:
    expected = type(default)
    if expected is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key}: {value} is not a finite number")
        return  # 100 is a fine rate
    ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
    if not ok:
        raise ConfigError(f"{key}: expected {_type_name(default)}, got {_type_name(value)} ({_shown(value)})")
    for text in value if isinstance(value, list) else [value]:
        if isinstance(text, str):
            _check_text(key, text)


def _merge(user: dict[str, Any]) -> dict[str, dict[str, Any]]:
    data = {name: _tree(cls()) for name, cls in SECTIONS.items()}  # fresh lists each time
    for section, values in user.items():
        if section not in DEFAULTS:
            raise ConfigError(f"{_key_name(section)}: unknown section (known: {', '.join(DEFAULTS)})")
        if not isinstance(values, dict):
            raise ConfigError(f"{section}: expected a table, got {_type_name(values)}")
        for key, value in values.items():
            full = f"{section}.{key}"
            if key not in DEFAULTS[section]:
                raise ConfigError(f"{section}.{_key_name(key)}: unknown key (known: {', '.join(DEFAULTS[section])})")
            _check_type(full, value, DEFAULTS[section][key])
            data[section][key] = value
    return data


# Per-key rules. A key whose default is "" may be left empty ("what fits this session").
_BOUNDS = {
    "instance.volume_size_gb": limits.VOLUME_SIZE_GB,
    "model.max_length": limits.MAX_LENGTH,
    "model.image_size": limits.IMAGE_SIZE,
    "bench.batch_size": limits.BATCH_SIZE,
    "bench.n_models": limits.N_MODELS,
    "bench.workers_per_model": limits.WORKERS_PER_MODEL,
    "bench.min_duration_s": limits.MIN_DURATION_S,
    "bench.min_queries": limits.MIN_QUERIES,
    "bench.max_duration_s": limits.MAX_DURATION_S,
    "bench.rate": limits.RATE,
    "bench.repeats": limits.REPEATS,
    "batch.max_vcpus": limits.MAX_VCPUS,
    "batch.runnable_timeout_min": limits.RUNNABLE_TIMEOUT_MIN,
    "batch.min_duration_s": limits.MIN_DURATION_S,
    "batch.max_duration_s": limits.MAX_DURATION_S,
    "serve.workers": limits.SERVE_WORKERS,
    "serve.batch_size": limits.SERVE_BATCH_SIZE,
    "serve.max_batch_delay_ms": limits.MAX_BATCH_DELAY_MS,
    "serve.latency_limit_ms": limits.LATENCY_LIMIT_MS,
    "serve.step_s": limits.LOAD_STEP_S,
    "serve.max_rates": limits.Bound(1, limits.MAX_LOAD_RATES),
    "sagemaker.instance_count": limits.SAGEMAKER_INSTANCES,
    "sagemaker.latency_limit_ms": limits.LATENCY_LIMIT_MS,
    "sagemaker.step_s": limits.LOAD_STEP_S,
    "sagemaker.max_rates": limits.Bound(1, limits.MAX_LOAD_RATES),
}
_CHOICES = {
    "lab.track": TRACKS,
    "instance.volume_type": VOLUME_TYPES,
    "model.family": MODEL_FAMILIES,
    "model.size": MODEL_SIZES,
    "container.source": CONTAINER_SOURCES,
    "container.target": tuple(CONTAINER_TARGETS),
    "bench.mode": BENCH_MODES,
    "bench.harness": limits.HARNESSES,
}
_FORMATS = {  # key: (pattern, what a value must be)
    "aws.profile": (r"[\w.+@-]+", "a profile name (letters, digits and . + @ _ -)"),
    "instance.ami": (r"ami-[0-9a-f]{8,17}", "an AMI id (like ami-0123456789abcdef0)"),
    "instance.ami_ssm_parameter": (
        r"(/[A-Za-z0-9_.-]+)+",
        "a parameter path (like /aws/service/...: letters, digits, _ . - and /)",
    ),
    # AWS allows these in AMI names; * and ? match like a shell pattern.
    "instance.ami_name": (
        r"[A-Za-z0-9()\[\] ./'@_*?-]{3,128}",
        "an AMI name (3-128 letters, digits, spaces and ( ) [ ] . / - ' @ _, with * and ? as wildcards)",
    ),
    "instance.ssh_user": (r"[a-z_][a-z0-9_-]{0,31}", "a valid user name"),
    "lab.participant": (LABEL_RE, LABEL_TEXT),
    "serve.input": (r"[^\x00-\x1f\x7f]+", "a file path (no newlines or control characters)"),
    "instance.subnet_id": (r"subnet-[0-9a-f]{8,17}", "a subnet id (like subnet-0123abcd)"),
    # "name" or "org/name": no empty, "." or ".." parts and no leading or trailing dot or slash.
    "model.name": (
        r"[A-Za-z0-9][\w-]*(\.[\w-]+)*(/[\w-]+(\.[\w-]+)*)?",
        "a model id (like bert-base-cased-finetuned-mrpc or org/model)",
    ),
}


def _check_key(key: str, value: Any, default: Any) -> None:
    if value == "" == default:
        return
    if key in _BOUNDS and not _BOUNDS[key].allows(value):
        raise ConfigError(f"{key}: {_shown(value)} is outside {_BOUNDS[key]}")
    if key in _CHOICES and value not in _CHOICES[key]:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(_CHOICES[key])}")
    if key in _FORMATS and not re.fullmatch(_FORMATS[key][0], value):
        raise ConfigError(f"{key}: {value!r} is not {_FORMATS[key][1]}")


def _check_instance_type(key: str, value: str) -> None:
    m = _INSTANCE_TYPE_RE.fullmatch(value)
    if not m:
        raise ConfigError(f"{key}: {value!r} is not an EC2 instance type (like inf1.2xlarge)")
    family = m.group("family")
    if family in accelerators.RETIRED:
        raise ConfigError(f"{key}: {value}: {accelerators.RETIRED[family]}")
    if family not in INSTANCE_FAMILIES:
        raise ConfigError(
            f"{key}: instance family {family!r} is not one the lab supports "
            f"(supported: {', '.join(sorted(INSTANCE_FAMILIES))})"
        )
    if value not in accelerators.SPECS:
        raise ConfigError(
            f"{key}: {value!r} is not an instance type of the {family} family "
            f"({', '.join(accelerators.sizes_of(family))})"
        )


def _check_ssh_cidr(cidr: str, allow_wide: bool) -> None:
    try:
        net = ipaddress.ip_network(cidr, strict=True)
    except ValueError:
        net = None
    if net is not None and net.version == 6:
        raise ConfigError("instance.ssh_cidr: IPv6 ingress is not supported; give an IPv4 CIDR (like 203.0.113.7/32)")
    if net is None or "/" not in cidr:
        raise ConfigError(f"instance.ssh_cidr: {cidr!r} is not a CIDR block (like 203.0.113.7/32)")
    if str(net) != cidr:
        raise ConfigError(f"instance.ssh_cidr: write {cidr!r} as {str(net)!r}")
    if net.prefixlen == 0:
        raise ConfigError("instance.ssh_cidr: refusing to open SSH to the whole internet (/0)")
    if net.prefixlen < WIDEST_SSH_PREFIX and not allow_wide:
        raise ConfigError(
            f"instance.ssh_cidr: {cidr} opens SSH to {net.num_addresses:,} addresses; give a /{WIDEST_SSH_PREFIX} "
            "or narrower, or set instance.allow_wide_ssh = true"
        )


def _validate(data: dict[str, dict[str, Any]]) -> None:
    for section, values in data.items():
        for key, value in values.items():
            _check_key(f"{section}.{key}", value, DEFAULTS[section][key])
    aws, inst, model, bench, batch = data["aws"], data["instance"], data["model"], data["bench"], data["batch"]
    if aws["region"] not in REGIONS:
        raise ConfigError(f"aws.region: {aws['region']!r} is not an AWS region (like us-west-2)")
    _check_instance_type("instance.type", inst["type"])
    if inst["ssh_cidr"]:
        _check_ssh_cidr(inst["ssh_cidr"], inst["allow_wide_ssh"])
    for family, default in MODEL_NAMES.items():
        if model["name"] == default and family != model["family"]:
            raise ConfigError(
                f"model.name: {default} is a {family} model; name a {model['family']} model or leave it empty"
            )
    if bench["max_duration_s"] < bench["min_duration_s"]:
        raise ConfigError(
            f"bench.max_duration_s: {bench['max_duration_s']} is less than bench.min_duration_s ({bench['min_duration_s']})"
        )
    if bench["mode"] == "open" and not bench["rate"] > 0:
        raise ConfigError("bench.rate: open-loop mode needs a target rate above 0 (queries per second)")
    if not batch["sizes"]:
        raise ConfigError("batch.sizes: must list at least one batch size")
    for s in batch["sizes"]:
        if isinstance(s, bool) or not isinstance(s, int) or not limits.BATCH_SIZE.allows(s):
            raise ConfigError(f"batch.sizes: {_shown(s)} is not a batch size (an integer {limits.BATCH_SIZE})")
    if len(set(batch["sizes"])) != len(batch["sizes"]):
        raise ConfigError("batch.sizes: lists a batch size twice")
    if not batch["instance_types"]:
        raise ConfigError("batch.instance_types: must list at least one instance type")
    for t in batch["instance_types"]:
        if not isinstance(t, str):
            raise ConfigError(f"batch.instance_types: {_shown(t)} is not a string")
        _check_instance_type("batch.instance_types", t)
    if len(set(batch["instance_types"])) != len(batch["instance_types"]):
        raise ConfigError("batch.instance_types: lists an instance type twice")
    if not batch["families"]:
        raise ConfigError("batch.families: must list at least one model family")
    for f in batch["families"]:
        if f not in MODEL_FAMILIES:
            raise ConfigError(f"batch.families: {_shown(f)} is not a model family ({', '.join(MODEL_FAMILIES)})")
    if len(set(batch["families"])) != len(batch["families"]):
        raise ConfigError("batch.families: lists a family twice")
    jobs = len(batch["families"]) * len(batch["instance_types"]) * len(batch["sizes"])
    if jobs > MAX_SWEEP_JOBS:
        raise ConfigError(
            f"batch.sizes: the sweep would be {jobs} jobs (families × instance types × sizes); at most {MAX_SWEEP_JOBS}"
        )
    _check_rates(data["serve"]["rates"])
    _check_rates(data["sagemaker"]["rates"], "sagemaker.rates")
    wrong = ml_types.problem(data["sagemaker"]["instance_type"])
    if wrong:
        raise ConfigError(f"sagemaker.instance_type: {wrong}")
    if batch["max_duration_s"] < batch["min_duration_s"]:
        raise ConfigError(
            f"batch.max_duration_s: {batch['max_duration_s']} is less than batch.min_duration_s ({batch['min_duration_s']})"
        )


def _check_rates(rates: list, key: str = "serve.rates") -> None:
    if len(rates) > limits.MAX_LOAD_RATES:
        raise ConfigError(f"{key}: {len(rates)} rates; at most {limits.MAX_LOAD_RATES}")
    for r in rates:
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not limits.LOAD_RATE.allows(r):
            raise ConfigError(f"{key}: {_shown(r)} is not a rate (requests per second, {limits.LOAD_RATE})")
    if any(b <= a for a, b in zip(rates, rates[1:])):
        raise ConfigError(f"{key}: the rates must rise (each above the one before)")


def from_dict(user: dict[str, Any], *, sandbox: bool = False) -> LabConfig:
    """Validate ``user`` (parsed TOML: the keys it changes) over the defaults."""
    data = _merge(user)
    _validate(data)
    return LabConfig(
        **{
            name: cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data[name].items()})
            for name, cls in SECTIONS.items()
        }
    )


def parse_toml(text: str) -> dict[str, Any]:
    """Parse TOML text; a problem is a one-line :class:`ConfigError` worded to follow "... is "."""
    try:
        return tomllib.loads(text)
    except ValueError as e:  # TOMLDecodeError, or an integer too long to convert
        raise ConfigError(f"not valid TOML: {e}") from None
    except RecursionError:
        raise ConfigError("nested too deeply to read (arrays or tables inside each other)") from None


_FILE_KINDS = {
    stat.S_ISDIR: "a directory",
    stat.S_ISFIFO: "a FIFO",
    stat.S_ISSOCK: "a socket",
    stat.S_ISCHR: "a character device",
    stat.S_ISBLK: "a block device",
}


def _not_regular(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    return next((what for test, what in _FILE_KINDS.items() if test(mode)), "not a file")


def _real_user() -> int:
    """Who the lab runs for: the user who ran sudo, when it did, else this process's real user."""
    sudo = os.environ.get("SUDO_UID", "")
    return int(sudo) if os.geteuid() == 0 and sudo.isdigit() else os.getuid()


def _readable_by(uid: int, st: os.stat_result) -> bool:
    """Could ``uid`` read the file of ``st`` by its mode bits (root's power to read anything aside)?"""
    import pwd

    if st.st_mode & stat.S_IROTH:
        return True
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IRUSR)
    try:
        user = pwd.getpwuid(uid)
        groups = os.getgrouplist(user.pw_name, user.pw_gid)
    except KeyError:
        groups = []
    return st.st_gid in groups and bool(st.st_mode & stat.S_IRGRP)


def _read_regular(p: str, flag: str, limit: int, what: str, *, sent: bool = False) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; anything else is a one-line
    :class:`ConfigError` naming ``flag``. Nothing blocks: the file's type is checked before it is
    opened (opening a FIFO waits for a writer), and it is opened non-blocking in case it was
    replaced in between. A file the lab ``sent`` elsewhere is named without '..', is not reached
    through a final link (not followed), and must be one the user could read without root."""
    if sent and ".." in Path(p).parts:
        raise ConfigError(f"{flag}: {p} has a '..' in it; name the file by a path without '..'")
    try:
        mode = (os.lstat(p) if sent else os.stat(p)).st_mode
        kind = "a symbolic link" if stat.S_ISLNK(mode) else _not_regular(mode)
        if kind is None:
            nofollow = os.O_NOFOLLOW if sent else 0
            with os.fdopen(os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | nofollow), "rb") as f:
                st = os.fstat(f.fileno())
                kind = _not_regular(st.st_mode)
                if sent and kind is None and os.geteuid() == 0 and not _readable_by(_real_user(), st):
                    kind = "unreadable"
                raw = b"" if kind else f.read(limit + 1)
    except OSError as e:
        if e.errno == errno.ENOENT:
            raise ConfigError(f"{flag}: no such file: {p}") from None
        if not (sent and e.errno == errno.ELOOP):
            raise ConfigError(f"{flag}: cannot read {p}: {e.strerror or e.__class__.__name__}") from None
        kind = "a symbolic link"  # replaced by a link since it was looked at
    if kind == "a symbolic link":
        raise ConfigError(f"{flag}: {p} is a symbolic link; name the file itself")
    if kind == "unreadable":
        raise ConfigError(
            f"{flag}: {p} is not readable by you (uid {_real_user()}) without root's rights; name a file of your own"
        )
    if kind is not None:
        raise ConfigError(f"{flag}: {p} is {kind}, not a regular file")
    if len(raw) > limit:
        raise ConfigError(f"{flag}: {p} is larger than {limit / (1 << 20):g} MiB; {what}")
    return raw


def read_config_file(path: str | Path, flag: str = "--config", what: str = "a lab config") -> str:
    """The text of a config file: a regular UTF-8 file of at most MAX_FILE_BYTES (see :func:`_read_regular`)."""
    p = str(path)
    raw = _read_regular(p, flag, MAX_FILE_BYTES, f"{what} is a few lines")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{flag}: {p} is not UTF-8 text (byte {raw[e.start]:#04x} at offset {e.start})") from None


def read_request_file(path: str | Path, flag: str = "serve.input") -> bytes:
    """A request body for the served model: a regular file TorchServe would accept (at most 6 MiB)."""
    return _read_regular(str(path), flag, MAX_REQUEST_BYTES, "TorchServe takes requests of up to 6 MiB", sent=True)


def load(path: str | Path | None, *, sandbox: bool = False) -> LabConfig:
    """Load and validate a config file; ``None`` gives the defaults."""
    if path is None:
        return from_dict({}, sandbox=sandbox)
    text = read_config_file(path)
    try:
        user = parse_toml(text)
    except ConfigError as e:
        raise ConfigError(f"--config: {path} is {e}") from None
    serve = user.get("serve")
    if isinstance(serve, dict) and isinstance(serve.get("input"), str) and serve["input"]:
        # relative to the config file, kept absolute in the session (links and '..' as written: the
        # file is checked as it is named); checked now, before anything is made
        serve["input"] = os.path.join(os.path.abspath(os.path.dirname(path)), serve["input"])
        cfg = from_dict(user, sandbox=sandbox)
        read_request_file(cfg.serve.input)
        return cfg
    return from_dict(user, sandbox=sandbox)


def validate_session_name(name: str, flag: str = "--name") -> str:
    if not SESSION_NAME_RE.fullmatch(name or ""):
        raise ConfigError(
            f"{flag}: {name!r} is not a session name (lowercase letters, digits and '-', up to 31 characters)"
        )
    return name
