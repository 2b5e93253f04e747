"""How much of the host's CPU other processes took while we measured.

A benchmark on a shared host reads low when something else runs beside it, and nothing in
its own numbers says so. This module tells: between two samples, the share of the host's CPU
capacity that went to processes *outside* a given process tree (the harness and its model
processes; the load generator and the server it measures), and the share the hypervisor
stole (``steal``, where the kernel reports it).

Where the numbers come from (``man 5 proc``):

- ``/proc/stat``, first line: the host's CPU time in clock ticks, summed over its CPUs —
  user, nice, system, idle, iowait, irq, softirq, steal, (guest, guest_nice: already counted
  in user and nice). Busy = user + nice + system + irq + softirq; capacity = all but guest.
- ``/proc/<pid>/stat``: a process's ``utime`` and ``stime`` (fields 14 and 15), its threads
  included, in the same ticks; field 4 is its parent, which finds a tree's descendants.

interference = (busy − the tree's CPU) / capacity, between two samples, clamped to 0..1.
On a dedicated instance it reads about 0; a process spinning on one of two cores beside a
busy harness reads 0.3 to 0.5. In a container ``/proc/stat`` is still the host's, so other
containers count as interference, as they should. A process of the tree that ends between
two samples keeps the CPU it had at the first.

Standard library only: this module runs on the benchmark host. ``proc`` is a parameter so
the tests can feed recorded snapshots.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class HostCpu:
    """The host's CPU time since boot, in clock ticks summed over its CPUs."""

    busy: int
    steal: int
    total: int


@dataclass(frozen=True)
class Sample:
    """The host's CPU time and each process of the tree's, at one moment."""

    host: HostCpu
    tree: dict[int, int] = field(default_factory=dict)  # pid -> utime + stime ticks
    extra: int = 0  # ticks of processes accounted elsewhere (a server in another container)


@dataclass(frozen=True)
class Share:
    """Between two samples, shares of the host's CPU capacity (0..1)."""

    interference: float  # taken by processes outside the tree (and outside ``extra``)
    steal: float  # stolen by the hypervisor
    own: float  # taken by the tree itself
    seconds_of_cpu: float  # capacity between the samples, in CPU-seconds (how much was judged)


def parse_proc_stat(text: str) -> HostCpu:
    """The aggregate ``cpu`` line of ``/proc/stat``."""
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            ticks = [int(x) for x in parts[1:]] + [0] * 10
            user, nice, system, idle, iowait, irq, softirq, steal = ticks[:8]
            busy = user + nice + system + irq + softirq
            return HostCpu(busy=busy, steal=steal, total=busy + idle + iowait + steal)
    raise ValueError("no aggregate cpu line in /proc/stat")


def parse_pid_stat(text: str) -> tuple[int, int]:
    """(parent pid, utime + stime) from a ``/proc/<pid>/stat`` line. The command name (field 2)
    is in parentheses and may itself hold spaces and parentheses: fields are counted after its
    last ``)``."""
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15
    return int(rest[1]), int(rest[11]) + int(rest[12])


class Sampler:
    """Samples the host and the process tree under ``root`` (its pid and every descendant)."""

    def __init__(self, root: int | None = None, proc: str = "/proc"):
        self.root = os.getpid() if root is None else root
        self.proc = proc
        self.pids: list[int] = []
        self.refresh()

    def _read(self, *parts: str) -> str:
        with open(os.path.join(self.proc, *parts)) as f:
            return f.read()

    def refresh(self) -> list[int]:
        """Find the tree again (processes started since); returns its pids, the root first."""
        parents: dict[int, int] = {}
        for name in os.listdir(self.proc):
            if name.isdigit():
                try:
                    parents[int(name)] = parse_pid_stat(self._read(name, "stat"))[0]
                except (OSError, ValueError, IndexError):
                    continue  # gone meanwhile, or not readable
        children: dict[int, list[int]] = {}
        for pid, ppid in parents.items():
            children.setdefault(ppid, []).append(pid)
        tree, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            if pid in tree:
                continue
            tree.append(pid)
            todo.extend(sorted(children.get(pid, ())))
        self.pids = tree
        return tree

    def sample(self, extra: int = 0) -> Sample:
        tree = {}
        for pid in self.pids:
            try:
                tree[pid] = parse_pid_stat(self._read(str(pid), "stat"))[1]
            except (OSError, ValueError, IndexError):
                continue  # ended: share() keeps what it had
        return Sample(parse_proc_stat(self._read("stat")), tree, extra)


def share(before: Sample, after: Sample, ticks_per_second: int | None = None) -> Share:
    """The shares of the host's CPU between two samples (all 0 when no time passed)."""
    total = after.host.total - before.host.total
    if total <= 0:
        return Share(0.0, 0.0, 0.0, 0.0)
    own = sum(after.tree.get(pid, ticks) - ticks for pid, ticks in before.tree.items())
    own += sum(ticks for pid, ticks in after.tree.items() if pid not in before.tree)  # started in between
    own = max(0, own)
    extra = max(0, after.extra - before.extra)
    others = after.host.busy - before.host.busy - own - extra
    hz = ticks_per_second or clock_ticks()
    return Share(
        interference=min(1.0, max(0.0, others / total)),
        steal=min(1.0, max(0.0, (after.host.steal - before.host.steal) / total)),
        own=min(1.0, own / total),
        seconds_of_cpu=total / hz,
    )


def clock_ticks() -> int:
    """Clock ticks per second (USER_HZ), the unit of /proc's CPU times."""
    try:
        return os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError, AttributeError):
        return 100


def combine(shares: list[Share]) -> Share:
    """Several intervals as one: each weighted by its capacity."""
    cap = sum(s.seconds_of_cpu for s in shares)
    if cap <= 0:
        return Share(0.0, 0.0, 0.0, 0.0)
    return Share(
        interference=sum(s.interference * s.seconds_of_cpu for s in shares) / cap,
        steal=sum(s.steal * s.seconds_of_cpu for s in shares) / cap,
        own=sum(s.own * s.seconds_of_cpu for s in shares) / cap,
        seconds_of_cpu=cap,
    )
