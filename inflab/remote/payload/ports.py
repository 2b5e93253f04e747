"""Loopback ports for servers that bind them later (TorchServe's, and the sandbox's endpoint containers).

Standard library only: it runs on the host with the rest of the payload.
"""

from __future__ import annotations

import random
import socket

LOOPBACK = "127.0.0.1"
LISTEN_PORTS_FROM = 20000  # free_ports draws from here up to the ephemeral range


def ephemeral_low(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> int:
    """Where the kernel's ephemeral port range starts (the ports it gives outgoing connections)."""
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports free right now (held open together, so never the same one twice).

    The server binds them seconds later (TorchServe once its JVM is up). A port from the ephemeral range
    could be taken meanwhile by any outgoing connection on the machine (a busy host makes thousands), so
    they are drawn at random below that range, each one bound to be sure it is free; where there is no
    room below it, the kernel picks (port 0)."""
    top = ephemeral_low()
    socks: list[socket.socket] = []
    try:
        for _ in range(64 * n):
            if len(socks) == n:
                break
            s = socket.socket()
            try:
                s.bind((LOOPBACK, random.randrange(LISTEN_PORTS_FROM, top) if top > LISTEN_PORTS_FROM + 1000 else 0))
            except OSError:  # in use: draw again
                s.close()
                continue
            socks.append(s)
        while len(socks) < n:  # nothing free below the range after many draws: the kernel's choice
            s = socket.socket()
            s.bind((LOOPBACK, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
