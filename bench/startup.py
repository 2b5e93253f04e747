"""Start-up time of `inflab --help` and of the TUI's first paint.

Targets on a 2-core machine: `--help` <= 0.3 s, first paint <= 1.5 s. The TUI is
started in a real pseudo-terminal and timed until its first screen (the session
picker's title) reaches the terminal. Prints the median and worst of N runs, and
the ratio of each median to its target.

    .venv/bin/python bench/startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INFLAB = shutil.which("inflab", path=str(Path(sys.executable).parent)) or "inflab"
MARKER = b"Saved sessions"


def time_help(env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run([INFLAB, "--help"], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def time_first_paint(env: dict, timeout: float = 20.0) -> float:
    t0 = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:  # child: the app in a 120x40 terminal
        os.execve(INFLAB, [INFLAB], env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    seen = b""
    try:
        while time.perf_counter() - t0 < timeout:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                seen += chunk
                if MARKER in seen:
                    return time.perf_counter() - t0
        raise RuntimeError(f"no first paint within {timeout} s; output tail: {seen[-300:]!r}")
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, INFLAB_HOME=home, TERM="xterm-256color", COLUMNS="120", LINES="40")
        time_help(env)  # warm the file cache
        helps = [time_help(env) for _ in range(args.runs)]
        paints = [time_first_paint(env) for _ in range(args.runs)]
    for label, xs, target in (("inflab --help", helps, 0.3), ("TUI first paint", paints, 1.5)):
        med = statistics.median(xs)
        print(
            f"{label:<16} median {med:.3f} s  worst {max(xs):.3f} s  target {target:.1f} s  "
            f"median/target {med / target:.2f}  ({args.runs} runs)"
        )


if __name__ == "__main__":
    main()
