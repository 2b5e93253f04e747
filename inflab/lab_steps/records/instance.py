"""What the provisioning steps hand on: who you are, where the instance can run, how you get
in, the instance itself and its host as SSH sees it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from .base import Record, convert, omitted


@dataclass(frozen=True, kw_only=True)
class Identity(Record):
    """Who the credentials are (``sts get-caller-identity``); the sweep may know only the account."""

    KEY = "identity"
    WRITER = "credentials"
    account: str
    arn: str = omitted("")


@dataclass(frozen=True, kw_only=True)
class Subnet:
    id: str
    zone: str


@dataclass(frozen=True, kw_only=True)
class MachineImage:
    """The AMI the instance boots."""

    id: str
    name: str = ""
    root_device: str = "/dev/sda1"
    neuron_sdk: str = ""  # the Neuron SDK its description names ("" when none)
    user: str = ""  # the login user
    deprecated: str = ""  # when AWS deprecated it (ISO 8601), "" when it is current


@dataclass(frozen=True, kw_only=True)
class PreflightFindings(Record):
    """Where the instance type is offered, the subnets to launch in (in zone order) and the AMI."""

    KEY = "preflight"
    WRITER = "preflight"
    #: the config values the findings follow from: findings for other values are not these
    fingerprint: tuple[Any, ...]
    zones: tuple[str, ...]
    vpc_id: str
    subnets: tuple[Subnet, ...]
    ami: MachineImage


@dataclass(frozen=True, kw_only=True)
class ImportedKey(Record):
    """The key pair imported into EC2, whose private half is the session's key file."""

    KEY = "keypair"
    WRITER = "keypair"
    fingerprint: str
    public_key: str  # the OpenSSH public key's base64 part


@dataclass(frozen=True, kw_only=True)
class _Text(Record):
    """A record stored as one plain text value, not an object."""

    value: str

    def to_json(self) -> Any:
        return self.value

    @classmethod
    def from_json(cls, value: Any) -> Self:
        return cls(value=convert(value, str, cls.where(), cls))


class SecurityGroupId(_Text):
    """The SSH security group's id."""

    KEY = "security_group_id"
    WRITER = "security-group"


class SshCidr(_Text):
    """Where SSH is let in from (your address, /32), as the rule last had it."""

    KEY = "ssh_cidr"
    WRITER = "security-group"


@dataclass(frozen=True, kw_only=True)
class InstanceProfileRef(Record):
    KEY = "instance_profile"
    WRITER = "instance-profile"
    name: str
    arn: str


@dataclass(frozen=True, kw_only=True)
class LaunchedInstance(Record):
    """The instance launch started (or found), and its zone."""

    KEY = "instance"
    WRITER = "launch"
    id: str
    zone: str


@dataclass(frozen=True, kw_only=True)
class HostRecord(Record):
    """The running instance: its id, public address, zone, login user and Name tag."""

    KEY = "host"
    WRITER = "wait-running"
    instance_id: str
    public_ip: str
    zone: str = ""
    user: str
    name: str = ""


@dataclass(frozen=True, kw_only=True)
class PinnedHostKey(Record):
    """The host key the connect step checked and pinned, for the instance it names."""

    KEY = "host_key"
    WRITER = "connect"
    instance_id: str | None
    fingerprint: str | None  # SHA256:…
    public_key: str | None = None  # the key itself, for OpenSSH's known_hosts
    source: str | None = None  # console | first-use | pinned

    def for_host(self, host: HostRecord) -> PinnedHostKey | None:
        """This pin when it is of ``host``'s instance; None for another (an older instance's key)."""
        return self if self.instance_id == host.instance_id else None


@dataclass(frozen=True, kw_only=True)
class HostProbe(Record):
    """What the connect step found on the host."""

    KEY = "connect"
    WRITER = "connect"
    instance_id: str
    uname: str = ""
    cores: int | None = None
    tools: tuple[str, ...] = ()  # neuron-ls, neuron-top, htop, docker… those on the PATH


@dataclass(frozen=True, kw_only=True)
class MonitorAgent(Record):
    """The host's Neuron devices and the monitor agent found running there."""

    KEY = "monitor"
    WRITER = "monitor"
    instance_id: str
    source: str  # what the agent reads: neuron-monitor, or the CPU's own counters
    devices: tuple[Mapping[str, Any], ...] = ()  # neuron-ls rows
    agent: str = ""


@dataclass(frozen=True, kw_only=True)
class HostJobs(Record):
    """The jobs started on the host, by kind (compile, benchmark…): the current one's id and how
    many attempts have been numbered. Stored flat, as ``{kind: job id, "kind#": attempts}``."""

    KEY = "jobs"
    current: Mapping[str, str] = field(default_factory=dict)
    attempts: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> Any:
        out: dict[str, Any] = {}
        for kind in dict.fromkeys([*self.current, *self.attempts]):
            if kind in self.current:
                out[kind] = self.current[kind]
            if kind in self.attempts:
                out[f"{kind}#"] = self.attempts[kind]
        return out

    @classmethod
    def from_json(cls, value: Any) -> Self:
        data = convert(value, Mapping[str, Any], cls.where(), cls)
        current = {
            k: convert(v, str, f"{cls.where()}, field {k!r}", cls) for k, v in data.items() if not k.endswith("#")
        }
        attempts = {
            k[:-1]: convert(v, int, f"{cls.where()}, field {k!r}", cls) for k, v in data.items() if k.endswith("#")
        }
        return cls(current=current, attempts=attempts)

    def started(self, kind: str) -> tuple[HostJobs, str]:
        """A new attempt of ``kind``: (the record with it, its job id ``kind-N``)."""
        n = self.attempts.get(kind, 0) + 1
        job = f"{kind}-{n}"
        return HostJobs(current={**self.current, kind: job}, attempts={**self.attempts, kind: n}), job
