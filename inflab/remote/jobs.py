"""Detached jobs on the remote host, and streaming their output by byte offset.

A job runs in its own session and process group on the host (``setsid``), detached from
the SSH connection that started it. Its stdout and stderr go to ``out.log`` in the job
directory; its exit code is written to ``exit_code`` when it ends. The client reads the
log from a byte offset: it hands on complete lines only and reports the offset just past
them, which the caller stores. A dropped connection or a restarted app starts reading
again at the stored offset, so no line is lost or repeated.

Layout of a job directory::

    <base>/<job-id>/cmd.sh     the command
                    out.log    its output (stdout and stderr)
                    pid        the process group leader
                    exit_code  written when it ends

The ``exit_code`` file decides a job's state: once it is there the job is done, whatever
the process table says (an ended process can linger as a zombie until it is reaped).
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import shlex
from dataclasses import dataclass
from typing import Awaitable, Callable

import asyncssh

from ..errors import InflabError

DEFAULT_BASE = "~/.inflab/jobs"
LOST = -1  # the exit code reported for a job whose process is gone without writing exit_code
EXIT_CODE_GRACE_S = 5.0  # how long follow() waits for exit_code once the job's process is gone


class NoJobStatus(InflabError, RuntimeError):
    """The host answered a status query with nothing usable — a host going away (terminated) does."""


@dataclass
class JobStatus:
    running: bool
    exit_code: int | None
    size: int


def _q(path: str) -> str:
    # Keep a leading ~/ expandable by the remote shell; quote the rest.
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def job_dir(job_id: str, base: str = DEFAULT_BASE) -> str:
    if not job_id or "/" in job_id or job_id.startswith("."):
        raise ValueError(f"bad job id {job_id!r}")
    return f"{base.rstrip('/')}/{job_id}"


async def _sh(conn: asyncssh.SSHClientConnection, script: str) -> asyncssh.SSHCompletedProcess:
    return await conn.run(script, check=False, encoding="utf-8")


async def start(
    conn: asyncssh.SSHClientConnection,
    job_id: str,
    command: str,
    *,
    base: str = DEFAULT_BASE,
    env: dict[str, str] | None = None,
) -> str:
    """Start ``command`` detached; a job that was started already is left alone. Returns its dir."""
    d = _q(job_dir(job_id, base))
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in (env or {}).items())
    script_b64 = base64.b64encode((exports + command + "\n").encode()).decode()
    r = await _sh(
        conn,
        (
            f"set -e; mkdir -p {d}; cd {d}; "
            "if [ -e pid ]; then echo existing; exit 0; fi; "
            f"echo {script_b64} | base64 -d > cmd.sh; : > out.log; "
            "setsid bash -c 'bash cmd.sh > out.log 2>&1; echo $? > exit_code.tmp; mv exit_code.tmp exit_code' "
            "< /dev/null > /dev/null 2>&1 & echo $! > pid; echo started"
        ),
    )
    if r.exit_status != 0:
        raise RuntimeError(f"could not start job {job_id}: {(r.stderr or '').strip()}")
    return job_dir(job_id, base)


async def status(conn: asyncssh.SSHClientConnection, jdir: str) -> JobStatus:
    d = _q(jdir)
    r = await _sh(
        conn,
        (
            f"cd {d} || exit 3; size=$(stat -c %s out.log 2>/dev/null || echo 0); p=$(cat pid); "
            # exit_code first; then liveness (a zombie is not alive); then exit_code again, for a
            # job that wrote it and ended between the first two tests.
            'if [ -f exit_code ]; then echo "done $(cat exit_code) $size"; '
            "elif kill -0 $p 2>/dev/null && ! grep -qs '^State:[[:space:]]*Z' /proc/$p/status; then echo \"running - $size\"; "
            'elif [ -f exit_code ]; then echo "done $(cat exit_code) $size"; '
            'else echo "lost - $size"; fi'
        ),
    )
    if r.exit_status == 3:
        raise FileNotFoundError(f"no job directory {jdir} on the host")
    try:
        state, code, size = (r.stdout or "").split()
        int(size)
    except ValueError:
        raise NoJobStatus(
            f"unexpected job status from the host: {(r.stdout or r.stderr or '').strip()[:200]!r}"
        ) from None
    return JobStatus(
        running=state == "running",
        exit_code=int(code) if state == "done" else (None if state == "running" else LOST),
        size=int(size),
    )


async def cancel(conn: asyncssh.SSHClientConnection, jdir: str) -> None:
    """Stop the job's whole process group (TERM, then KILL after 5 s)."""
    d = _q(jdir)
    await _sh(
        conn,
        (
            f"cd {d} || exit 0; p=$(cat pid); kill -TERM -- -$p 2>/dev/null || exit 0; "
            "for i in $(seq 50); do kill -0 -- -$p 2>/dev/null || exit 0; sleep 0.1; done; kill -KILL -- -$p 2>/dev/null; true"
        ),
    )


LinesCallback = Callable[[list[bytes], int], Awaitable[None] | None]


async def follow(conn: asyncssh.SSHClientConnection, jdir: str, offset: int, on_lines: LinesCallback) -> int:
    """Stream the job's log from ``offset`` until the job ends; returns its exit code.

    ``on_lines(lines, new_offset)`` gets complete lines (without their newline) and the
    offset just past them. A last line without a newline is delivered once the job ends.
    """
    d = _q(jdir)
    # tail ends when the job's wrapper process is gone; exit_code decides how it ended.
    cmd = (
        f"cd {d} || exit 3; p=$(cat pid); "
        f"if [ -f exit_code ]; then tail -c +{offset + 1} out.log; "
        f"else tail -c +{offset + 1} --pid=$p -s 0.2 -f out.log; fi"
    )
    proc = await conn.create_process(cmd, encoding=None)
    pending = b""
    pos = offset
    while True:
        chunk = await proc.stdout.read(65536)
        if not chunk:
            break
        pending += chunk
        cut = pending.rfind(b"\n")
        if cut < 0:
            continue
        complete, pending = pending[: cut + 1], pending[cut + 1 :]
        pos += len(complete)
        res = on_lines(complete[:-1].split(b"\n"), pos)
        if inspect.isawaitable(res):
            await res
    await proc.wait()
    if proc.exit_status == 3:
        raise FileNotFoundError(f"no job directory {jdir} on the host")
    st = await _final_status(conn, jdir)
    if pending:
        pos += len(pending)
        res = on_lines([pending], pos)
        if inspect.isawaitable(res):
            await res
    return st.exit_code if st.exit_code is not None else LOST


async def _final_status(conn: asyncssh.SSHClientConnection, jdir: str) -> JobStatus:
    """The status once the log's tail has ended: a process that is gone may not have
    written ``exit_code`` yet, so give it a few seconds before calling the job lost."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + EXIT_CODE_GRACE_S
    while True:
        st = await status(conn, jdir)
        if st.running or st.exit_code != LOST or loop.time() >= deadline:
            return st
        await asyncio.sleep(0.2)
