"""Long work on the host: ship the payload, run a detached job, stream its output live.

A step calls :func:`run_job`; the job runs in its own process group on the host
(:mod:`inflab.remote.jobs`), its output reaches the live job pane through
``ctx.output`` and the byte offset reached is stored after every batch of lines. A
dropped connection reconnects and goes on from the stored offset; a restarted app that
runs the step again finds the job still running and reattaches to it instead of starting
a second one. Cancelling stops the job; quitting the app (``ctx.detach``) leaves it running.
"""

from __future__ import annotations

import asyncio
from collections import deque
from importlib import resources

from .. import faultpoints
from ..remote.paths import PAYLOAD_DIR, WORK_DIR
from ..remote.sftp import read_file, upload
from .base import Cancelled, StepContext, StepError
from .records import HostJobs, HostRecord

__all__ = ["PAYLOAD_DIR", "WORK_DIR", "connect", "host_run", "read_file", "run_job", "upload", "upload_payload"]

MAX_RECONNECTS = 5


def reconnect_delay(attempt: int) -> float:
    """Seconds to wait before reconnecting after the ``attempt``-th drop (0-based)."""
    return min(2**attempt, 10)


def payload_files() -> dict[str, bytes]:
    """The payload's Python files by name (what runs on the host)."""
    root = resources.files("inflab.remote.payload")
    return {p.name: p.read_bytes() for p in root.iterdir() if p.name.endswith(".py") and p.name != "__init__.py"}


async def upload_payload(conn) -> None:
    await upload(conn, payload_files(), PAYLOAD_DIR)


async def connect(ctx: StepContext, timeout: float = 60):
    """An SSH connection to the session's instance, checked against its pinned host key."""
    from ..remote.host import HostUnavailable, open_connection

    try:
        return await open_connection(
            ctx.host(), timeout=timeout, progress=lambda m: ctx.progress(None, m), cancelled=ctx.cancel.is_set
        )
    except HostUnavailable as e:
        ctx.check_cancel()
        raise StepError(str(e)) from None


def host_run(ctx: StepContext, fn, *, timeout: float = 120):
    """Run ``await fn(conn)`` on a fresh connection to the host, from a step's thread."""

    async def go():
        conn = await connect(ctx)
        async with conn:
            return await asyncio.wait_for(fn(conn), timeout)

    try:
        return asyncio.run(go())
    except asyncio.TimeoutError:
        raise StepError(f"The host did not answer within {timeout:.0f} s") from None


def ensure_host_ready(ctx: StepContext) -> None:
    """Stop with what to do when the host cannot run the lab's work (on AWS: docker missing, not
    running, or not allowed to this user); the runtime says what to look at."""
    command = ctx.runtime.host_check()
    if not command:
        return
    result = host_run(ctx, lambda conn: conn.run(command, check=False), timeout=60)
    problem = ctx.runtime.host_problem(result.stdout or "", ctx.config.login_user)
    if problem:
        raise StepError(problem)


def instance_gone(ctx: StepContext, iid: str) -> str:
    """Why instance ``iid`` is no longer there ("terminated", "shutting-down", …), or "" while it is
    (or when AWS cannot say): a job that stops answering on an instance that is gone is not a
    network problem to retry."""
    from ..aws import error_code

    if not iid:
        return ""
    try:
        found = ctx.aws.client("ec2").describe_instances(InstanceIds=[iid])["Reservations"]
    except Exception as e:
        return "terminated" if error_code(e) == "InvalidInstanceID.NotFound" else ""
    states = [i["State"]["Name"] for r in found for i in r["Instances"]]
    state = states[0] if states else "terminated"
    return state if state in ("shutting-down", "terminated", "stopping", "stopped") else ""


def job_id(ctx: StepContext, kind: str) -> str:
    """The job to run or attach to: the one still running on this instance, one not started yet, or a new attempt."""
    instance_id = _instance_id(ctx)
    jobs = ctx.load(HostJobs) or HostJobs()
    current = jobs.current.get(kind)
    rec = ctx.store.job(ctx.name, current) if current else None
    if current and (rec is None or (rec["status"] == "running" and rec["host"] == instance_id)):
        return current
    jobs, job = jobs.started(kind)
    ctx.save(jobs)
    return job


def _instance_id(ctx: StepContext) -> str:
    host = ctx.load(HostRecord)
    return host.instance_id if host else ""


def run_job(
    ctx: StepContext, kind: str, command: str, *, env: dict[str, str] | None = None, before=None
) -> tuple[int, list[str]]:
    """Run ``command`` as a detached job and stream it; returns (exit code, last lines).

    ``before(conn)`` (async, optional) runs on the connection before the job starts —
    e.g. to ship files. The job starts once; later calls reattach while it runs.
    """
    import asyncssh

    from ..remote import jobs

    instance_id = _instance_id(ctx)
    job = job_id(ctx, kind)
    tail: deque[str] = deque(maxlen=40)

    def on_lines(lines: list[bytes], offset: int) -> None:
        text = [b.decode("utf-8", "replace") for b in lines]
        tail.extend(text)
        ctx.output(text)
        ctx.store.job_offset(ctx.name, job, offset)

    async def attach(first: bool) -> int:
        conn = await connect(ctx)
        async with conn:
            if first and before is not None:
                await before(conn)
            jdir = await jobs.start(conn, job, command, env=env)
            rec = ctx.store.job_record(ctx.name, job, instance_id, jdir)
            if first:
                ctx.log(
                    f"Job {job} on the host: {jdir}"
                    + (f" (reattached at byte {rec['offset']:,})" if rec["offset"] else "")
                )
            follower = asyncio.ensure_future(jobs.follow(conn, jdir, rec["offset"], on_lines))
            while not follower.done():
                await asyncio.wait({follower}, timeout=0.25)
                if ctx.cancel.is_set() and not follower.done():
                    follower.cancel()
                    if ctx.detach.is_set():
                        raise Cancelled(f"detached: job {job} keeps running on the host")
                    await jobs.cancel(conn, jdir)
                    ctx.store.job_finished(ctx.name, job, -15)
                    ctx.log(f"Stopped job {job} on the host")
                    raise Cancelled("cancelled")
            return follower.result()

    async def go() -> int:
        for attempt in range(MAX_RECONNECTS + 1):
            try:
                return await attach(first=attempt == 0)
            except (asyncssh.Error, OSError, jobs.NoJobStatus) as e:
                gone = instance_gone(ctx, instance_id)
                if gone:
                    raise StepError(
                        f"The instance {instance_id} was {gone} while job {job} ran — by a cleanup "
                        "(yours or the instructor's)? Its work is lost: run the steps from launch again "
                        "for a new instance"
                    ) from None
                if attempt == MAX_RECONNECTS:
                    raise StepError(
                        f"Lost the connection to the host {attempt + 1} times ({e}); the job may still be "
                        "running there: run this step again to reattach"
                    ) from None
                rec = ctx.store.job(ctx.name, job) or {"offset": 0}
                ctx.log(f"Connection dropped ({e.__class__.__name__}); reattaching at byte {rec['offset']:,}…")
                await asyncio.sleep(reconnect_delay(attempt))
                ctx.check_cancel()
        raise AssertionError("unreachable")

    code = asyncio.run(go())
    faultpoints.hit("job:ended")  # the job is over on the host, the session does not know yet
    ctx.store.job_finished(ctx.name, job, code)
    return code, list(tail)
