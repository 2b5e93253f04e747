"""Where the lab's instance is, as one typed record, and how to reach it over SSH.

The host runtime (:mod:`inflab.runtime`) decides the address and port — an EC2 instance's
public IP on port 22, or the sandbox's SSH server on loopback — and hands steps a
:class:`Host`. Everything here works from that record alone: it knows nothing of steps,
sessions or the sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from ..errors import InflabError
from .ssh import ConnectFailed, HostKeyMismatch, HostKeyPin, Target


class HostUnavailable(InflabError, RuntimeError):
    """The host cannot be reached; the message says why and what to do."""


@dataclass(frozen=True)
class Host:
    """The instance as SSH sees it."""

    instance_id: str
    address: str
    port: int
    user: str
    key_path: str
    #: the pinned host key: its SHA256 fingerprint and (for OpenSSH's known_hosts) the key itself
    fingerprint: str | None = None
    public_key: str | None = None

    @property
    def target(self) -> Target:
        return Target(self.address, self.port, self.user, self.key_path)

    @property
    def pinned(self) -> bool:
        return bool(self.fingerprint)

    @property
    def known_hosts_name(self) -> str:
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"

    def with_pin(self, fingerprint: str | None, public_key: str | None) -> Host:
        return replace(self, fingerprint=fingerprint, public_key=public_key)

    def login(self) -> str:
        """The plain ssh command line a learner would type (no files written)."""
        port = "" if self.port == 22 else f"-p {self.port} "
        return f"ssh {port}-i {self.key_path} {self.user}@{self.address}"


def known_hosts_line(host: Host) -> str | None:
    """A known_hosts line for the pinned key, or None when nothing is pinned."""
    if not host.public_key:
        return None
    return f"{host.known_hosts_name} {host.public_key}\n"


def ssh_command(host: Host, known_hosts_path: str, *remote: str) -> list[str]:
    """The OpenSSH command line that reaches ``host`` with its key, checked against ``known_hosts_path``."""
    return [
        "ssh",
        "-p",
        str(host.port),
        "-i",
        host.key_path,
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"UserKnownHostsFile={known_hosts_path}",
        "-o",
        "StrictHostKeyChecking=yes",
        f"{host.user}@{host.address}",
        *remote,
    ]


async def open_connection(
    host: Host,
    *,
    timeout: float = 60,
    progress: Callable[[str], None] = lambda m: None,
    cancelled: Callable[[], bool] = lambda: False,
):
    """An SSH connection to ``host``, checked against its pinned host key."""
    from .ssh import connect

    if not host.pinned:
        raise HostUnavailable("The host key is not pinned yet: run the connect step first")
    try:
        return await connect(
            host.target,
            HostKeyPin(fingerprint=host.fingerprint),
            timeout=timeout,
            progress=progress,
            cancelled=cancelled,
        )
    except HostKeyMismatch as e:
        raise HostUnavailable(str(e)) from None
    except ConnectFailed as e:
        raise HostUnavailable(f"Could not connect: {e}") from None
