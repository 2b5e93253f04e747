"""The sandbox's AWS Batch compute: submitted jobs run for real on this machine.

With its docker backend off, the emulator's Batch marks every job SUCCEEDED the moment it is
submitted and runs nothing. The lab needs what AWS does: a job waits RUNNABLE, starts, runs
its command, and ends SUCCEEDED or FAILED with an exit code, its output in CloudWatch Logs.

:func:`install` (called once by the daemon) does that with these emulator internals:

- ``BatchSimpleBackend._mark_job_as_finished(include_start_attempt, job)`` — the hook its
  ``submit_job`` calls for every job. Ours registers the job, sets it RUNNABLE and hands it
  to the :class:`Runner`. Array jobs (the parent, called without a start attempt, and its
  children, which carry an ``index``) keep the emulator's behaviour.
- ``Job`` is a ``ManagedState``: its ``status`` getter would move a job along
  SUBMITTED → … → RUNNING by itself. Each job we take gets an empty transition list, so its
  status is only what the runner sets. ``_start_attempt``/``_mark_stopped`` record attempts
  and ``stoppedAt`` as the emulator's own docker runner does; ``job.stop`` and
  ``job_stopped_reason`` are what ``TerminateJob``/``CancelJob`` set (CancelJob only before
  STARTING, as on AWS).
- ``Job._container_details`` and ``Job.describe_short`` are wrapped so that DescribeJobs shows
  ``container.exitCode``/``container.reason`` (the emulator drops them), no ``startedAt`` for a
  job that never started, and an environment list that does not grow with every describe.
  ``Job.docker_client`` raises AttributeError: the emulator's state dump reads every public
  attribute of every job and would otherwise fail trying to reach a docker daemon.

The runner runs one job at a time, first submitted first: RUNNABLE → STARTING (a fresh
working directory ``<state_dir>/batch/jobs/<job_id>``, mode 0700, removed when the job ends,
like a container's disk; STARTING is held ~0.5 s so that a poller sees it) → RUNNING →
SUCCEEDED (exit 0) or FAILED ("Essential container in task exited", the exit code; a command
that cannot start: "CannotStartContainerError: ..."). A job runs only while its queue exists
and has an ENABLED compute environment; otherwise it waits RUNNABLE, as on AWS (a job whose
queue was deleted fails). The command (definition's, overridden by the submit's; ``Ref::``
parameters substituted) runs as an argv in its own process group (what it leaves running
when it exits is killed, as a container's processes end with it; TerminateJob sends SIGTERM,
SIGKILL 10 s later; so does the job's attemptDurationSeconds), with a small environment:
PATH/HOME/LANG/INFLAB_HOME/PIP_*/PYTHON* from the daemon, the definition's and the submit's
``environment``, and the variables Batch and ECS set (AWS_BATCH_*, AWS_REGION). The
sandbox's secret is never in it. Output lines go to CloudWatch Logs (:func:`log_names`) in
batches, with the times they were read.
"""

from __future__ import annotations

import copy
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

STARTING_HOLD_S = 0.5
KILL_GRACE_S = 10.0
FLUSH_EVERY_S = 0.5
FLUSH_LINES = 100
MAX_LINE = 64 * 1024
DEFAULT_LOG_GROUP = "/aws/batch/job"
EXITED = "Essential container in task exited"
TIMED_OUT = "Job attempt duration exceeded timeout"
QUEUE_DELETED = "The job queue was deleted"
STOPPED = "Terminated"
PASSED_ENV = ("PATH", "HOME", "LANG", "INFLAB_HOME")
PASSED_PREFIXES = ("PIP_", "PYTHON")
_EPOCH = datetime(1970, 1, 1)


def log_names(job: Any) -> tuple[str, str]:
    """(group, stream) of a job's CloudWatch log, as the awslogs driver names them on Batch."""
    props = job.job_definition.container_properties or {}
    config = props.get("logConfiguration") or {}
    options = config.get("options") or {}
    group = DEFAULT_LOG_GROUP
    if config.get("logDriver") == "awslogs" and options.get("awslogs-group"):
        group = options["awslogs-group"]
    prefix = options.get("awslogs-stream-prefix") or job.job_definition.name
    return group, f"{prefix}/default/{job.job_id}"


def _command(job: Any) -> list[str]:
    command = job.container_overrides.get("command") or (job.job_definition.container_properties or {}).get("command")
    if not command:
        return []
    return [str(part) for part in job._add_parameters_to_command(list(command))]


def _environment(job: Any, backend: Any, ce_name: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in PASSED_ENV or k.startswith(PASSED_PREFIXES)}
    for entry in (job.job_definition.container_properties or {}).get("environment") or []:
        env[str(entry["name"])] = str(entry.get("value", ""))
    for entry in job.container_overrides.get("environment") or []:
        env[str(entry["name"])] = str(entry.get("value", ""))
    env.update({
        "AWS_BATCH_JOB_ID": job.job_id,
        "AWS_BATCH_JQ_NAME": job.job_queue.name,
        "AWS_BATCH_JOB_ATTEMPT": "1",
        "AWS_BATCH_CE_NAME": ce_name,
        "AWS_REGION": backend.region_name,
        "AWS_DEFAULT_REGION": backend.region_name,
    })
    return env


def _placement(job: Any, backend: Any) -> str | None:
    """The compute environment a job can run in now: its queue's first ENABLED one that exists."""
    for env in job.job_queue.environments:
        if backend.get_compute_environment_by_arn(env.arn) is env and env.state == "ENABLED":
            return env.name
    return None


class _Log:
    """A job's CloudWatch stream, written in batches."""

    def __init__(self, backend: Any, group: str, stream: str):
        self.backend, self.group, self.stream = backend, group, stream
        self.pending: list[dict[str, Any]] = []
        self.last_flush = time.monotonic()
        self.last_ts = 0
        self._ensure()

    def _ensure(self) -> None:
        logs = self.backend.logs_backend
        logs.ensure_log_group(self.group)
        logs.ensure_log_stream(self.group, self.stream)

    def add(self, line: str) -> None:
        self.last_ts = max(self.last_ts, int(time.time() * 1000))  # in order, as PutLogEvents requires
        self.pending.append({"timestamp": self.last_ts, "message": line})
        if len(self.pending) >= FLUSH_LINES:
            self.flush()

    def tick(self) -> None:
        if self.pending and time.monotonic() - self.last_flush >= FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        events, self.pending = self.pending, []
        self.last_flush = time.monotonic()
        if not events:
            return
        for _ in range(2):
            try:
                self.backend.logs_backend.put_log_events(self.group, self.stream, events)
                return
            except Exception:  # the group or stream was deleted meanwhile: make it again, once
                try:
                    self._ensure()
                except Exception:
                    return


def _read_lines(stream, out: queue.SimpleQueue) -> None:
    try:
        for raw in iter(lambda: stream.readline(MAX_LINE), b""):
            out.put(raw.rstrip(b"\r\n").decode("utf-8", "replace"))
    except (OSError, ValueError):
        pass
    finally:
        out.put(None)


@dataclass
class _Item:
    job: Any
    backend: Any


class Runner:
    """Runs the sandbox's Batch jobs, one at a time, oldest first."""

    def __init__(self, state_dir: Path):
        self.jobs_dir = Path(state_dir) / "batch" / "jobs"
        self._pending: list[_Item] = []
        self._cond = threading.Condition()
        self._closed = False
        self._proc: subprocess.Popen | None = None
        self._thread = threading.Thread(target=self._loop, name="sandbox-batch", daemon=True)

    def start(self) -> None:
        for d in (self.jobs_dir.parent, self.jobs_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            d.chmod(0o700)
        self._thread.start()

    def submit(self, job: Any, backend: Any) -> None:
        job._transitions = []  # the status is what this runner sets, nothing else
        job.status = "RUNNABLE"
        with self._cond:
            self._pending.append(_Item(job, backend))
            self._cond.notify()

    def shutdown(self) -> None:
        """Stop taking jobs and kill the running one's process group (the daemon is stopping)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        proc = self._proc
        if proc is not None:
            _killpg(proc.pid, signal.SIGKILL)

    # -- the loop ---------------------------------------------------------------------------

    def _next(self) -> tuple[_Item, str] | None:
        with self._cond:
            while not self._closed:
                for item in list(self._pending):
                    job, backend = item.job, item.backend
                    if job.stop:
                        self._pending.remove(item)
                        _finish(job, None, job.job_stopped_reason or STOPPED)
                    elif backend.get_job_queue_by_arn(job.job_queue.arn) is not job.job_queue:
                        self._pending.remove(item)
                        _finish(job, None, QUEUE_DELETED)
                    else:
                        ce = _placement(job, backend)
                        if ce is not None:
                            self._pending.remove(item)
                            return item, ce
                self._cond.wait(0.5)
        return None

    def _loop(self) -> None:
        while True:
            nxt = self._next()
            if nxt is None:
                return
            item, ce = nxt
            try:
                self._run(item.job, item.backend, ce)
            except Exception as e:  # never let one job stop the runner
                _finish(item.job, None, f"CannotStartContainerError: {type(e).__name__}: {e}")

    def _run(self, job: Any, backend: Any, ce: str) -> None:
        job.status = "STARTING"
        held_until = time.monotonic() + STARTING_HOLD_S
        workdir = self.jobs_dir / re.sub(r"[^A-Za-z0-9_.:-]", "_", job.job_id)
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(mode=0o700)
        try:
            argv, env = _command(job), _environment(job, backend, ce)
            group, stream = log_names(job)
            log = _Log(backend, group, stream)
            job.log_stream_name = stream
            while time.monotonic() < held_until and not job.stop:
                time.sleep(0.05)
            if job.stop:
                _finish(job, None, job.job_stopped_reason or STOPPED)
                return
            if not argv:
                _finish(job, None, "CannotStartContainerError: the job definition has no command")
                return
            try:
                proc = subprocess.Popen(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
            except OSError as e:
                _finish(job, None, f"CannotStartContainerError: {argv[0]}: {e.strerror or e}")
                return
            self._proc = proc
            job.job_started_at = datetime.now()
            job._start_attempt()
            job.status = "RUNNING"
            try:
                code, reason = self._follow(job, proc, log)
            finally:
                _killpg(proc.pid, signal.SIGKILL)  # what the process left behind goes with it
                proc.wait()
                self._proc = None
            _finish(job, code, reason)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _follow(self, job: Any, proc: subprocess.Popen, log: _Log) -> tuple[int, str]:
        """Copy the output to the log until the process ends; stop it when asked or out of time."""
        lines: queue.SimpleQueue = queue.SimpleQueue()
        reader = threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True)
        reader.start()
        try:
            limit = job._get_attempt_duration()
        except (KeyError, TypeError):
            limit = None
        deadline = time.monotonic() + limit if limit else None
        stopping: str | None = None
        kill_at = 0.0
        eof = False
        while True:
            try:
                line = lines.get(timeout=0.1)
                while True:
                    if line is None:
                        eof = True
                        break
                    log.add(line)
                    line = lines.get_nowait()
            except queue.Empty:
                pass
            log.tick()
            if stopping is None:
                if job.stop or self._closed:
                    stopping = job.job_stopped_reason or STOPPED
                elif deadline is not None and time.monotonic() >= deadline:
                    stopping = TIMED_OUT
                if stopping is not None:
                    _killpg(proc.pid, signal.SIGTERM)
                    kill_at = time.monotonic() + KILL_GRACE_S
            elif kill_at and time.monotonic() >= kill_at:
                _killpg(proc.pid, signal.SIGKILL)
                kill_at = 0.0
            if proc.poll() is not None:
                _killpg(proc.pid, signal.SIGKILL)  # a child still holding the pipe must not keep the job alive
                if eof or not reader.is_alive():
                    break
        reader.join(timeout=1)
        while True:
            try:
                line = lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                log.add(line)
        log.flush()
        rc = proc.returncode
        code = 128 - rc if rc < 0 else rc  # killed by signal N: exit code 128+N, as in a container
        return code, stopping or EXITED


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _finish(job: Any, code: int | None, reason: str) -> None:
    """Mark the job stopped: SUCCEEDED only for a command that ran to exit code 0."""
    job.exit_code = code
    job.job_stopped_reason = reason
    attempt = job.latest_attempt
    if attempt is not None:
        attempt["container"]["exitCode"] = code
        attempt["statusReason"] = reason
    job._mark_stopped(success=code == 0 and reason == EXITED)


# -- installing into the emulator --------------------------------------------------------------

_runner: Runner | None = None


def install(state_dir: Path) -> Runner:
    """Hook the emulator's Batch so that submitted jobs run here; idempotent. Returns the runner."""
    global _runner
    if _runner is not None:
        return _runner
    from moto.batch.models import Job
    from moto.batch_simple.models import BatchSimpleBackend

    runner = Runner(state_dir)
    emulator_finish = BatchSimpleBackend._mark_job_as_finished

    def mark_job(self, include_start_attempt: bool, job: Any) -> None:
        if not include_start_attempt or "index" in (job.array_properties or {}):
            return emulator_finish(self, include_start_attempt, job)  # array jobs: as the emulator does
        self.backend._jobs[job.job_id] = job
        runner.submit(job, self.backend)

    container_details = Job._container_details
    describe_short = Job.describe_short

    def details(self) -> dict[str, Any]:
        overrides = self.container_overrides
        self.container_overrides = copy.deepcopy(overrides)  # the emulator appends to its environment list
        try:
            out = container_details(self)
        finally:
            self.container_overrides = overrides
        if self.job_stopped and self.exit_code is not None:
            out["exitCode"] = self.exit_code
        if self.job_stopped and self.job_stopped_reason and self.latest_attempt is not None:
            out["reason"] = self.job_stopped_reason
        return out

    def short(self) -> dict[str, Any]:
        out = describe_short(self)
        if self.job_started_at == _EPOCH:
            out.pop("startedAt", None)  # never started
        return out

    def no_docker(self):
        raise AttributeError("the sandbox runs Batch jobs without docker")

    BatchSimpleBackend._mark_job_as_finished = mark_job
    Job._container_details = details
    Job.describe_short = short
    Job.docker_client = property(no_docker)  # the state dump (/moto-api/data.json) would try to reach docker
    runner.start()
    _runner = runner
    return runner
