"""The sandbox's image store: the job virtualenvs that stand in for container images.

``build-image`` makes one per image hash under ``<state dir>/images/<hash>`` and keeps it, as
docker keeps an image, so the next session and every sweep job find it. Each is about a
gigabyte. :func:`usage` says how much the store holds; :func:`prune` empties it, and only while
nothing can be using an image: the sandbox daemon (which runs the sweep's jobs) is stopped and
no job of an emulated instance (a compile, a benchmark, TorchServe) is still running.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import InflabError

DIR = "images"  # under the sandbox's state directory: one job virtualenv (+ payload) per image hash
PRUNING = ".pruning-"  # an image being deleted (a prune that was killed leaves it for the next)


class PruneRefused(InflabError, RuntimeError):
    """Something may be using an image: nothing was deleted. The message says what and what to do."""


@dataclass(frozen=True)
class Usage:
    images: int  # image directories in the store
    bytes: int  # disk they take (allocated blocks, links not followed)


def store_dir(home: Path) -> Path:
    from . import state_dir

    return state_dir(home) / DIR


def _disk(path: Path) -> int:
    total = 0
    for root, dirs, files in os.walk(path, followlinks=False):
        for entry in dirs + files:
            try:
                total += os.lstat(os.path.join(root, entry)).st_blocks * 512
            except OSError:
                pass  # removed while we looked
    return total


def usage(home: Path) -> Usage:
    """How many images the store holds and the disk they take."""
    store = store_dir(home)
    try:
        images = [p for p in store.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return Usage(0, 0)
    return Usage(len(images), sum(_disk(p) for p in images))


def size_text(n: int) -> str:
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def running_jobs(home: Path) -> list[str]:
    """The jobs of emulated instances whose process group is still alive ("<job> on <instance>")."""
    from . import state_dir

    found = []
    for pid_file in sorted((state_dir(home) / "instances").glob("i-*/.inflab/jobs/*/pid")):
        if (pid_file.parent / "exit_code").exists():
            continue
        try:
            os.killpg(int(pid_file.read_text().strip()), 0)
        except (ValueError, OSError):
            continue  # ended without writing its exit code (killed with the instance)
        found.append(f"{pid_file.parent.name} on {pid_file.parents[3].name}")
    return found


def prune(home: Path) -> Usage:
    """Delete every image in the store; returns what was freed. Refused (nothing deleted) while the
    sandbox runs or a job of an emulated instance does: either may be using an image."""
    from . import status

    info = status(home)
    if info:
        raise PruneRefused(
            f"the sandbox is running (pid {info.pid}) and its jobs may use an image: "
            "stop it first (inflab sandbox stop), then prune"
        )
    jobs = running_jobs(home)
    if jobs:
        raise PruneRefused(
            f"{len(jobs)} job(s) of an emulated instance still run and may use an image "
            f"({', '.join(jobs[:3])}): inflab sandbox stop stops them"
        )
    freed = usage(home)
    store = store_dir(home)
    for image in [p for p in store.iterdir() if p.is_dir() and not p.is_symlink()] if store.is_dir() else []:
        doomed = image if image.name.startswith(PRUNING) else image.with_name(PRUNING + image.name)
        image.rename(doomed)  # first out of the way: a half-deleted image is never taken for one
        shutil.rmtree(doomed, ignore_errors=True)
    return freed
