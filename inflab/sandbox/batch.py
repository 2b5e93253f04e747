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

Like AWS Batch, a running job has a host: an EC2 instance of its compute environment's type,
tagged with the environment's ``computeResources.tags``, launched when the job starts and
terminated when it ends.

Entries of the faults table (:mod:`.faults`) read here, when the layer's table turns them on:
``unplaceable_jobs`` (a job no instance type of its queue can hold waits RUNNABLE with Batch's
statusReason, and the queue's ``jobStateTimeLimitActions`` cancel it; a job whose compute
environments are all INVALID waits likewise), ``runnable_time_scale`` and
``awslogs_group_required``. Always: a managed compute environment that names no service role
gets Batch's service-linked role (the emulator would refuse it); an INVALID compute environment
(:mod:`.batch_rules`) is described as such; a queue's ``jobStateTimeLimitActions`` are shown.
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
TOO_BIG = (
    "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - The job resource requirement (vCPU/memory/GPU) is higher than "
    "that can be met by the CE(s) attached to the job queue."
)
OVER_MAX = (
    "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE - CE(s) associated with the job queue cannot meet the "
    "CPU requirement of the job."
)
ALL_INVALID = "ACTION_REQUIRED - CE(s) associated with the job queue are invalid."
CANCELLED_BY_LIMIT = "Canceled by JobStateTimeLimit action due to reason: {reason}"
NO_LOG_GROUP = (
    "CannotStartContainerError: Error response from daemon: failed to initialize logging driver: failed to "
    "create Cloudwatch log stream: ResourceNotFoundException: The specified log group does not exist."
)
REGISTERED_SHARE = 0.9747  # ECS registers less memory than the type's nominal (Batch's memory-management doc)
AGENT_MIB = 32  # reserved for the ECS agent on Batch's AMIs
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
    env.update(
        {
            "AWS_BATCH_JOB_ID": job.job_id,
            "AWS_BATCH_JQ_NAME": job.job_queue.name,
            "AWS_BATCH_JOB_ATTEMPT": "1",
            "AWS_BATCH_CE_NAME": ce_name,
            "AWS_REGION": backend.region_name,
            "AWS_DEFAULT_REGION": backend.region_name,
        }
    )
    return env


def _placement(job: Any, backend: Any) -> str | None:
    """The compute environment a job can run in now: its queue's first ENABLED, VALID one that exists."""
    for env in job.job_queue.environments:
        if (
            backend.get_compute_environment_by_arn(env.arn) is env
            and env.state == "ENABLED"
            and not getattr(env, "inflab_invalid", None)
        ):
            return env.name
    return None


def requirements(job: Any) -> dict[str, float]:
    """What a job asks for: VCPU, MEMORY (MiB) and GPU, the submit's overrides over its definition's."""
    props = job.job_definition.container_properties or {}
    asked: dict[str, float] = {
        "VCPU": float(props.get("vcpus") or 0),
        "MEMORY": float(props.get("memory") or 0),
        "GPU": 0.0,
    }
    for source in (
        props.get("resourceRequirements") or [],
        (job.container_overrides or {}).get("resourceRequirements") or [],
    ):
        for r in source:
            try:
                asked[str(r["type"]).upper()] = float(r["value"])
            except (KeyError, TypeError, ValueError):
                pass
    return asked


OPTIMAL = ("c4", "m4", "r4")  # what "optimal" picks from (Batch's guide)


def _candidates(name: str) -> list[str]:
    """Instance types a compute environment's ``instanceTypes`` entry stands for: a type, a family, or "optimal"."""
    from moto.ec2.models.instance_types import INSTANCE_TYPES

    families = OPTIMAL if name == "optimal" else (name,) if "." not in name else ()
    if not families:
        return [name] if name in INSTANCE_TYPES else []
    return [t for t in INSTANCE_TYPES if t.split(".")[0] in families]


def _holds(instance_type: str, asked: dict[str, float]) -> bool:
    return any(_holds_one(t, asked) for t in _candidates(instance_type))


def _holds_one(instance_type: str, asked: dict[str, float]) -> bool:
    from moto.ec2.models.instance_types import INSTANCE_TYPES

    info = INSTANCE_TYPES[instance_type]
    memory = int(info["MemoryInfo"]["SizeInMiB"] * REGISTERED_SHARE) - AGENT_MIB
    gpus = sum(g.get("Count", 0) for g in (info.get("GpuInfo") or {}).get("Gpus", []))
    return asked["VCPU"] <= info["VCpuInfo"]["DefaultVCpus"] and asked["MEMORY"] <= memory and asked["GPU"] <= gpus


def unplaceable(job: Any, backend: Any) -> str | None:
    """Batch's reason a job cannot be placed on any compute environment of its queue, or None."""
    envs = [e for e in job.job_queue.environments if backend.get_compute_environment_by_arn(e.arn) is e]
    valid = [e for e in envs if not getattr(e, "inflab_invalid", None)]
    if envs and not valid:
        return ALL_INVALID
    asked = requirements(job)
    resources = [e.compute_resources or {} for e in valid]
    if not any(_holds(t, asked) for r in resources for t in r.get("instanceTypes") or []):
        return TOO_BIG
    if not any(asked["VCPU"] <= float(r.get("maxvCpus") or 0) for r in resources):
        return OVER_MAX
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
    runnable_since: float = 0.0  # monotonic


def _time_limit(job: Any, reason: str, layer: Any) -> float | None:
    """Seconds the job's queue lets a job wait RUNNABLE for ``reason`` (its jobStateTimeLimitActions)."""
    code = reason.split(" - ", 1)[0]
    scale = layer.fault_value("batch", "runnable_time_scale", 1.0) if layer is not None else 1.0
    for action in getattr(job.job_queue, "inflab_time_limits", None) or []:
        if action.get("reason") == code and action.get("action") == "CANCEL":
            return float(action["maxTimeSeconds"]) * scale
    return None


class Runner:
    """Runs the sandbox's Batch jobs, one at a time, oldest first."""

    def __init__(self, state_dir: Path, layer: Any = None):
        self.layer = layer  # the faults table (None: the emulator's defaults)
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
            self._pending.append(_Item(job, backend, time.monotonic()))
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
                    elif (why := self._blocked(job, backend)) is not None:
                        job.job_stopped_reason = why  # shown as the RUNNABLE job's statusReason
                        limit = _time_limit(job, why, self.layer)
                        if limit is not None and time.monotonic() - item.runnable_since >= limit:
                            self._pending.remove(item)
                            _finish(job, None, CANCELLED_BY_LIMIT.format(reason=why.split(" - ", 1)[0]))
                    else:
                        job.job_stopped_reason = None
                        ce = _placement(job, backend)
                        if ce is not None:
                            self._pending.remove(item)
                            return item, ce
                self._cond.wait(0.5)
        return None

    def _flag(self, key: str) -> bool:
        return self.layer is not None and self.layer.fault_flag("batch", key)

    def _blocked(self, job: Any, backend: Any) -> str | None:
        """Why Batch would leave this job RUNNABLE for now (fault ``unplaceable_jobs``), or None."""
        return unplaceable(job, backend) if self._flag("unplaceable_jobs") else None

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
            if (
                self._flag("awslogs_group_required")
                and _needs_group(job, group)
                and group not in backend.logs_backend.groups
            ):
                _finish(job, None, NO_LOG_GROUP)
                return
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
                proc = subprocess.Popen(
                    argv,
                    cwd=workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as e:
                _finish(job, None, f"CannotStartContainerError: {argv[0]}: {e.strerror or e}")
                return
            self._proc = proc
            job.job_started_at = datetime.now()
            job._start_attempt()
            job.status = "RUNNING"
            host = _launch_host(backend, ce)
            try:
                code, reason = self._follow(job, proc, log)
            finally:
                _killpg(proc.pid, signal.SIGKILL)  # what the process left behind goes with it
                proc.wait()
                self._proc = None
                if host is not None:
                    host.terminate()  # the compute environment scales down
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


def _needs_group(job: Any, group: str) -> bool:
    """The job's awslogs driver needs ``group`` to exist (AWS Batch creates only its default group)."""
    options = ((job.job_definition.container_properties or {}).get("logConfiguration") or {}).get("options") or {}
    return group != DEFAULT_LOG_GROUP and str(options.get("awslogs-create-group", "")).lower() != "true"


def _launch_host(backend: Any, ce_name: str) -> Any | None:
    """An EC2 instance for a running job, as Batch launches one: the compute environment's first
    instance type, subnet, security groups, image and tags."""
    env = backend.get_compute_environment(ce_name)
    resources = (env.compute_resources or {}) if env is not None else {}
    types, subnets = resources.get("instanceTypes") or [], resources.get("subnets") or []
    if env is None or env.env_type != "MANAGED" or not types or not subnets:
        return None
    image = next(
        (c.get("imageIdOverride") for c in resources.get("ec2Configuration") or [] if c.get("imageIdOverride")),
        "ami-03cf127a",
    )
    try:
        reservation = backend.ec2_backend.run_instances(
            image_id=image,
            count=1,
            user_data=None,
            security_group_names=[],
            instance_type=types[0],
            region_name=backend.region_name,
            subnet_id=subnets[0],
            key_name=None,
            security_group_ids=list(resources.get("securityGroupIds") or []),
            is_instance_type_default=False,
            tags={"instance": dict(resources.get("tags") or {})},
        )
    except Exception:  # a host that cannot be emulated does not stop the job
        return None
    return reservation.instances[0]


SERVICE_LINKED_ROLE = "AWSServiceRoleForBatch"


def _service_linked_role(iam: Any) -> str:
    """The ARN of Batch's service-linked role, made as AWS makes it when it is first needed."""
    import json

    try:
        return iam.get_role(SERVICE_LINKED_ROLE).arn
    except Exception:
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": ["batch.amazonaws.com"]}, "Action": ["sts:AssumeRole"]}
            ],
        }
        return iam.create_role(
            SERVICE_LINKED_ROLE,
            json.dumps(trust),
            "/aws-service-role/batch.amazonaws.com/",
            permissions_boundary=None,
            description="Allows Batch to create and manage AWS resources on your behalf.",
            tags=[],
            max_session_duration="3600",
            linked_service="batch.amazonaws.com",
        ).arn


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


def install(state_dir: Path, layer: Any = None) -> Runner:
    """Hook the emulator's Batch so that submitted jobs run here, as the faults table of ``layer``
    says; idempotent. Returns the runner."""
    global _runner
    if _runner is not None:
        return _runner
    from moto.batch.models import BatchBackend, Job, JobQueue
    from moto.batch_simple.models import BatchSimpleBackend

    runner = Runner(state_dir, layer)
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

    create_ce = BatchBackend.create_compute_environment

    def create_compute_environment(
        self, compute_environment_name, _type, state, compute_resources, service_role, tags=None
    ):
        if not service_role and _type == "MANAGED":  # Batch's service-linked role, made on first use
            service_role = _service_linked_role(self.iam_backend)
        return create_ce(self, compute_environment_name, _type, state, compute_resources, service_role, tags)

    describe_ces = BatchBackend.describe_compute_environments

    def describe_compute_environments(self, environments=None):
        out = describe_ces(self, environments)
        for item in out:
            env = self.get_compute_environment_by_arn(item["computeEnvironmentArn"])
            reason = getattr(env, "inflab_invalid", None)
            if reason:
                item["status"], item["statusReason"] = "INVALID", reason
        return out

    describe_queue = JobQueue.describe

    def queue_describe(self) -> dict[str, Any]:
        out = describe_queue(self)
        if getattr(self, "inflab_time_limits", None):
            out["jobStateTimeLimitActions"] = [dict(a) for a in self.inflab_time_limits]
        return out

    BatchBackend.create_compute_environment = create_compute_environment
    BatchBackend.describe_compute_environments = describe_compute_environments
    JobQueue.describe = queue_describe
    BatchSimpleBackend._mark_job_as_finished = mark_job
    Job._container_details = details
    Job.describe_short = short
    Job.docker_client = property(no_docker)  # the state dump (/moto-api/data.json) would try to reach docker
    runner.start()
    _runner = runner
    return runner
