"""SSH to the lab's instance with asyncssh: retry until sshd answers, keepalives, pinned host keys.

Host key policy, in order:
1. a key pinned in the session earlier must match, or the connection is refused;
2. otherwise, if the instance's console output lists host key fingerprints, the key must be
   one of them (pinned from the console);
3. otherwise the key is trusted on first use and pinned in the session.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Callable

import asyncssh

from ..errors import InflabError

FP_BLOCK = re.compile(r"-----BEGIN SSH HOST KEY FINGERPRINTS-----(.*?)-----END SSH HOST KEY FINGERPRINTS-----", re.S)


class HostKeyMismatch(InflabError):
    """The server's host key is not the one pinned for this instance."""


class ConnectFailed(InflabError):
    """The SSH connection could not be made (the message says why; callers retry while a host boots)."""


def console_fingerprints(console_text: str) -> list[str]:
    """SHA256 fingerprints from the block EC2 instances print at first boot."""
    fps: list[str] = []
    for block in FP_BLOCK.findall(console_text or ""):
        fps += re.findall(r"SHA256:[A-Za-z0-9+/=]+", block)
    return fps


@dataclass
class Target:
    host: str
    port: int
    user: str
    key_path: str


@dataclass
class HostKeyPin:
    """What the session knows of the host's key, and how it came to know it."""

    fingerprint: str | None = None  # pinned earlier (session)
    console: tuple[str, ...] = ()  # from the console output
    seen: str | None = None  # filled in by the check
    seen_key: str | None = None  # the key itself, OpenSSH format (for a known_hosts file)
    source: str = ""


class _Client(asyncssh.SSHClient):
    def __init__(self, pin: HostKeyPin):
        self.pin = pin

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        fp = key.get_fingerprint("sha256")
        self.pin.seen = fp
        self.pin.seen_key = key.export_public_key("openssh").decode().strip()
        if self.pin.fingerprint:
            self.pin.source = "pinned"
            return fp == self.pin.fingerprint
        if self.pin.console:
            self.pin.source = "console"
            return fp in self.pin.console
        self.pin.source = "first-use"
        return True


async def connect(
    target: Target,
    pin: HostKeyPin,
    *,
    timeout: float = 300,
    attempt_timeout: float = 15,
    progress: Callable[[str], None] = lambda m: None,
    cancelled: Callable[[], bool] = lambda: False,
) -> asyncssh.SSHClientConnection:
    """Connect, retrying with backoff while the host is not answering yet."""
    start = time.monotonic()
    delay, attempt, last = 1.0, 0, ""
    key = asyncssh.read_private_key(target.key_path)
    while True:
        attempt += 1
        try:
            conn, _ = await asyncio.wait_for(
                asyncssh.create_connection(
                    lambda: _Client(pin),
                    target.host,
                    target.port,
                    username=target.user,
                    client_keys=[key],
                    known_hosts=([], [], []),  # no file: _Client decides (pinned / console / first use)
                    agent_path=None,
                    keepalive_interval=15,
                    keepalive_count_max=4,
                    config=None,
                ),
                attempt_timeout,
            )
            return conn
        except asyncssh.HostKeyNotVerifiable:
            expected = pin.fingerprint or ", ".join(pin.console)
            raise HostKeyMismatch(
                f"The host key of {target.host} changed: it is {pin.seen}, but {expected} was expected "
                f"({pin.source}). Refusing to connect: someone may be in the middle. If the instance was "
                "replaced on purpose, undo and re-run the connect step."
            ) from None
        except asyncssh.PermissionDenied:
            last = "the instance refused the session's key"
        except (OSError, asyncio.TimeoutError, asyncssh.Error) as e:
            last = str(e) or e.__class__.__name__
        elapsed = time.monotonic() - start
        if cancelled():
            raise ConnectFailed("cancelled")
        if elapsed + delay > timeout:
            raise ConnectFailed(f"{target.host}:{target.port} did not accept SSH within {timeout:.0f} s ({last})")
        progress(f"Waiting for SSH on {target.host}:{target.port} (try {attempt}: {last})")
        await asyncio.sleep(delay)
        delay = min(delay * 1.6, 10)


async def run(conn: asyncssh.SSHClientConnection, command: str, timeout: float = 60) -> asyncssh.SSHCompletedProcess:
    return await asyncio.wait_for(conn.run(command, check=False), timeout)
