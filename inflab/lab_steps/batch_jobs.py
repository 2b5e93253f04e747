"""Steps `batch-submit` and `batch-monitor`: run the sweep's jobs and watch them to the end.

Submitting never makes a duplicate: each job's id is recorded as soon as Batch answers, and a
job submitted just before a kill (answered, not yet recorded) is found again by its name and
the sweep's round tag before anything is submitted. The monitor polls ``DescribeJobs``, says
every change of state (and why a job failed), keeps the job table current for the TUI, and
streams the followed job's CloudWatch log into the job pane.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import replace
from typing import Any

from botocore.exceptions import ClientError

from .. import faultpoints, names
from ..aws import error_code, tag_dict
from ..events import BatchJob, BatchJobsChanged
from .base import Cancelled, Step, StepContext, StepError
from .batch_aws import LOG_PREFIX
from .records import BatchEnvironment, JobEnd, JobSeen, SweepRound
from .sweep_grid import GridPoint, grid, results_uri, sweep

ENDED = ("SUCCEEDED", "FAILED")
#: the DescribeJobs field (epoch milliseconds) saying when a job entered a state, where Batch keeps one
STATE_TIMES = {"SUBMITTED": "createdAt", "RUNNING": "startedAt", "SUCCEEDED": "stoppedAt", "FAILED": "stoppedAt"}
TAG_ROUND = "inflab:sweep"
DESCRIBE_CHUNK = 100  # DescribeJobs takes at most 100 ids


def _points(ctx: StepContext) -> dict[str, GridPoint]:
    return {p.job_name: p for p in grid(ctx)}


class BatchSubmit(Step):
    id = "batch-submit"

    def cli(self, ctx):
        return [
            f"aws batch submit-job --job-name {p.job_name} --job-queue {p.queue} --job-definition {p.definition} "
            f"--container-overrides 'environment=[{{name=INFLAB_INSTANCE_TYPE,value={p.instance_type}}},"
            f"{{name=INFLAB_RESULTS_URI,value=s3://…/{ctx.name}/sweep/{p.job_name}}}]'"
            for p in grid(ctx)
        ]

    def check(self, ctx):
        s, setup = sweep(ctx), _setup(ctx)
        return bool(setup) and s is not None and s.setup == setup and set(s.jobs) == set(_points(ctx))

    def apply(self, ctx):
        setup = _setup(ctx)
        if not setup:
            raise StepError("AWS Batch is not set up for this session: run the batch-setup step first")
        s = sweep(ctx)
        if s is None or s.setup != setup or s.ended:
            s = SweepRound(round=secrets.token_hex(4), setup=setup)  # a new sweep
            ctx.save(s)
        batch = ctx.aws.client("batch")
        points = _points(ctx)
        for n, (name, p) in enumerate(points.items(), 1):
            ctx.check_cancel()
            ctx.progress(n / len(points), f"Submitting {n} of {len(points)}: {p.short}")
            if name in s.jobs:
                continue
            found = self._find(ctx, p, s.round)
            if found:
                ctx.log(f"{p.short}: found job {found} submitted before the last stop — not submitting it again")
                job_id = found
            else:
                ctx.intend("batch:job", name, {"round": s.round})
                job_id = batch.submit_job(
                    jobName=name,
                    jobQueue=p.queue,
                    jobDefinition=p.definition,
                    propagateTags=True,
                    containerOverrides={
                        "environment": [
                            {"name": "INFLAB_INSTANCE_TYPE", "value": p.instance_type},
                            {"name": "INFLAB_RESULTS_URI", "value": results_uri(ctx, p)},
                        ]
                    },
                    tags={**tag_dict(ctx.tags()), TAG_ROUND: s.round},
                )["jobId"]
                faultpoints.hit("batch-submit:submitted")  # answered, not yet recorded
                ctx.log(f"Submitted {p.short} → job {job_id} on queue {p.queue}")
            s = replace(s, jobs={**s.jobs, name: job_id})
            ctx.save(s)
        ctx.log(f"{len(points)} job(s) in the sweep (round {s.round}); the monitor step follows them")

    def _find(self, ctx: StepContext, p: GridPoint, round_id: str) -> str | None:
        """A job of this round already in the queue under this name (submitted, not recorded)."""
        batch = ctx.aws.client("batch")
        try:
            summaries = batch.list_jobs(jobQueue=p.queue, filters=[{"name": "JOB_NAME", "values": [p.job_name]}])[
                "jobSummaryList"
            ]
        except ClientError as e:
            if error_code(e) == "ClientException":
                return None
            raise
        ids = [j["jobId"] for j in summaries]
        for chunk in range(0, len(ids), DESCRIBE_CHUNK):
            for job in batch.describe_jobs(jobs=ids[chunk : chunk + DESCRIBE_CHUNK])["jobs"]:
                if (job.get("tags") or {}).get(TAG_ROUND) == round_id:
                    return job["jobId"]
        return None

    def undo(self, ctx):
        ctx.forget(SweepRound)  # batch-cleanup terminates what still runs


def _setup(ctx: StepContext) -> str:
    """The settings digest of the Batch setup the sweep runs on ("" before batch-setup)."""
    batch = ctx.load(BatchEnvironment)
    return batch.settings if batch else ""


def describe(ctx: StepContext, ids: list[str]) -> dict[str, dict]:
    batch = ctx.aws.client("batch")
    out: dict[str, dict] = {}
    for chunk in range(0, len(ids), DESCRIBE_CHUNK):
        for job in batch.describe_jobs(jobs=ids[chunk : chunk + DESCRIBE_CHUNK])["jobs"]:
            out[job["jobId"]] = job
    return out


# What a RUNNABLE job's statusReason means, and what to do (Batch's "job stuck in RUNNABLE" guide).
RUNNABLE_REASONS = {
    "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT": "it asks for more vCPUs, memory or GPUs than any instance type of its "
    "compute environment has: check batch.instance_types",
    "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE": "it needs more vCPUs than the compute environment may run "
    "(batch.max_vcpus): raise it and run batch-setup again",
    "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY": "AWS has no capacity for that instance type just now, or your account's "
    "on-demand vCPU quota for it is too low (Service Quotas): it waits",
    "ACTION_REQUIRED": "its compute environment is INVALID: run batch-setup again (it makes the environment anew)",
    "MISCONFIGURATION:SERVICE_ROLE_PERMISSIONS": "Batch's service-linked role lacks a permission: check "
    "AWSServiceRoleForBatch in IAM",
    "MISCONFIGURATION:EC2_INSTANCE_CONFIGURATION_UNSUPPORTED": "the compute environment's instance type and image do "
    "not go together: check batch.instance_types",
    "UNDETERMINED": "Batch cannot say why: look at the compute environment in the AWS console",
}


def runnable_note(ctx: StepContext, reason: str) -> str:
    """A RUNNABLE job's statusReason, what it means and what happens next."""
    code = reason.split(" - ", 1)[0].strip()
    meaning = RUNNABLE_REASONS.get(code)
    if not meaning:
        return reason
    from .batch_aws import TIME_LIMIT_REASONS

    after = (
        f"; the queue cancels it after {ctx.config.batch.runnable_timeout_min} min in RUNNABLE "
        "(batch.runnable_timeout_min)"
        if code in TIME_LIMIT_REASONS
        else ""
    )
    return f"Batch cannot place it ({code}): {meaning}{after}"


def failure_reason(job: dict) -> str:
    reason = job.get("statusReason") or "no reason given"
    attempts = job.get("attempts") or []
    container = (attempts[-1].get("container") if attempts else None) or job.get("container") or {}
    code = container.get("exitCode")
    extra = container.get("reason")
    return (
        reason
        + (f" ({extra})" if extra and extra != reason else "")
        + (f", exit code {code}" if code is not None else "")
    )


def _epoch(ms: Any) -> float | None:
    return ms / 1000 if isinstance(ms, (int, float)) and ms > 0 else None


def entered(job: dict, seen_at: float | None) -> float:
    """When the job entered its state: Batch's own timestamp where it keeps one (created, started,
    stopped); for the states it does not time (PENDING, RUNNABLE, STARTING), when the change was
    seen (``seen_at``), or else when the job was created."""
    return (
        _epoch(job.get(STATE_TIMES.get(job.get("status", ""), "")))
        or seen_at
        or _epoch(job.get("createdAt"))
        or time.time()
    )


def recorded_table(ctx: StepContext) -> tuple[list[BatchJob], int, int]:
    """The sweep's jobs as the record last has them (no AWS call): (rows, done, total). A job the
    monitor has not seen yet is SUBMITTED, with no time in state."""
    s = sweep(ctx)
    if s is None:
        return [], 0, 0
    points = _points(ctx)
    rows = []
    for name, job_id in s.jobs.items():
        state, since, attempts = s.seen.get(job_id) or JobSeen("SUBMITTED", 0.0, 0)
        final = s.states.get(name)
        p = points.get(name)
        rows.append(
            BatchJob(
                name=name,
                job_id=job_id,
                state=(final.state if final else "") or state,
                since=since,
                instance_type=p.instance_type if p else "",
                batch_size=p.batch_size if p else 0,
                family=p.family if p else "",
                target=p.target if p else "",
                attempt=attempts,
                reason=final.reason if final else "",
            )
        )
    return rows, sum(r.state in ENDED for r in rows), len(rows)


class LogFollower:
    """One job's CloudWatch log stream, read forward with its token."""

    def __init__(self, ctx: StepContext, job_id: str, stream: str, title: str):
        self.ctx, self.job_id, self.stream, self.title = ctx, job_id, stream, title
        self.token: str | None = None

    def poll(self) -> int:
        if not self.stream:
            return 0  # Batch names the stream when the job starts
        logs = self.ctx.aws.client("logs")
        lines: list[str] = []
        while True:
            kwargs = {
                "logGroupName": names.log_group(self.ctx.name),
                "logStreamName": self.stream,
                "startFromHead": True,
            }
            if self.token:
                kwargs["nextToken"] = self.token
            try:
                page = logs.get_log_events(**kwargs)
            except ClientError as e:
                if error_code(e) == "ResourceNotFoundException":
                    return 0  # the stream starts with the job's first line
                raise
            lines += [e["message"].rstrip("\n") for e in page["events"]]
            done = page.get("nextForwardToken") == self.token or not page["events"]
            self.token = page.get("nextForwardToken")
            if done:
                break
        if lines:
            self.ctx.output(lines)
        return len(lines)


class BatchMonitor(Step):
    id = "batch-monitor"

    def cli(self, ctx):
        s = sweep(ctx)
        ids = " ".join(list(s.jobs.values())[:3] if s else []) or "<job ids>"
        return [
            f"aws batch describe-jobs --jobs {ids} --query 'jobs[].[jobName,status,statusReason]'",
            f"aws logs tail {names.log_group(ctx.name)} --log-stream-name-prefix {LOG_PREFIX}/ --follow",
        ]

    def check(self, ctx):
        s = sweep(ctx)
        return s is not None and bool(s.jobs) and s.ended is not None and BatchSubmit().check(ctx)

    def in_flight(self, ctx):
        s = sweep(ctx)
        if s is not None and s.jobs and s.ended is None and BatchSubmit().check(ctx):
            return f"the sweep's {len(s.jobs)} job(s) were submitted and have not all ended"
        return ""

    def apply(self, ctx):
        try:
            self._watch(ctx)
        except Cancelled:
            if ctx.detach.is_set():
                raise Cancelled(
                    "detached: the sweep's jobs keep running on AWS Batch; opening the session follows them again"
                ) from None
            raise

    def _watch(self, ctx):
        s = sweep(ctx)
        if s is None or not s.jobs:
            raise StepError("No sweep submitted: run the batch-submit step first")
        points = _points(ctx)
        job_names = {job_id: name for name, job_id in s.jobs.items()}
        # kept in the record, so a reopened session goes on from it
        seen: dict[str, JobSeen] = {k: v for k, v in s.seen.items() if k in job_names}
        told: dict[str, str] = {}  # job id -> the statusReason last said
        follower: LogFollower | None = None
        poll = ctx.runtime.batch_poll_s
        start = time.monotonic()
        while True:
            ctx.check_cancel()
            jobs = describe(ctx, list(job_names))
            now = time.time()
            changed = False
            for job_id, job in jobs.items():
                state, attempts = job["status"], len(job.get("attempts") or [])
                before = seen.get(job_id)
                short = points[job_names[job_id]].short if job_names[job_id] in points else job_names[job_id]
                if before is None or before[0] != state:
                    why = f": {failure_reason(job)}" if state == "FAILED" else ""
                    ctx.log(f"{short}: {before.state + ' → ' if before else ''}{state}{why}")
                    seen[job_id], changed = JobSeen(state, entered(job, now if before else None), attempts), True
                elif before.attempts != attempts:
                    seen[job_id], changed = JobSeen(state, before.since, attempts), True
                reason = job.get("statusReason") or ""
                if state not in ENDED and reason and told.get(job_id) != reason:  # why a job waits, every state
                    told[job_id] = reason
                    ctx.log(f"{short}: {state}: {runnable_note(ctx, reason) if state == 'RUNNABLE' else reason}")
            if changed:
                s = replace(s, seen=dict(seen))
                ctx.save(s)
            follower = self._follow(ctx, jobs, job_names, points, follower)
            if follower:
                follower.poll()
            done = sum(1 for j in jobs.values() if j["status"] in ENDED)
            table = [
                self._row(job_id, jobs.get(job_id, {}), seen.get(job_id), points.get(job_names[job_id]))
                for job_id in job_names
            ]
            ctx.emit(
                BatchJobsChanged(ctx.step_id, tuple(table), done, len(job_names), follower.job_id if follower else "")
            )
            faultpoints.hit("batch-monitor:polled")
            running = sum(1 for j in jobs.values() if j["status"] == "RUNNING")
            ctx.progress(
                done / len(job_names),
                f"{done} of {len(job_names)} done · {running} running · "
                f"{len(job_names) - done - running} waiting · {time.monotonic() - start:.0f} s",
            )
            if done == len(job_names) and len(jobs) == len(job_names):
                break
            ctx.sleep(poll)
        failed = [job_names[i] for i, j in jobs.items() if j["status"] == "FAILED"]
        s = replace(
            s,
            ended=now,
            states={
                job_names[i]: JobEnd(state=j["status"], reason=failure_reason(j) if j["status"] == "FAILED" else "")
                for i, j in jobs.items()
            },
        )
        ctx.save(s)
        if len(failed) == len(job_names):
            raise StepError(
                f"Every job of the sweep failed (first: {s.states[failed[0]].reason}); "
                f"their logs are in {names.log_group(ctx.name)}"
            )
        ctx.log(
            f"Sweep finished: {len(job_names) - len(failed)} of {len(job_names)} succeeded"
            + (f"; failed: {', '.join(points[n].short if n in points else n for n in failed)}" if failed else "")
        )

    def _row(self, job_id: str, job: dict, seen: JobSeen | None, p: GridPoint | None) -> BatchJob:
        state, since, attempts = seen or ("SUBMITTED", time.time(), 0)
        return BatchJob(
            name=job.get("jobName", ""),
            job_id=job_id,
            state=state,
            since=since,
            instance_type=p.instance_type if p else "",
            batch_size=p.batch_size if p else 0,
            family=p.family if p else "",
            target=p.target if p else "",
            attempt=attempts,
            reason=failure_reason(job) if state == "FAILED" else (job.get("statusReason") or ""),
        )

    def _follow(self, ctx, jobs: dict, names: dict, points: dict, current: LogFollower | None) -> LogFollower | None:
        """The job whose log streams: the one the user picked, else the running one (else stay)."""
        asked = ctx.asked(BatchJobsChanged.FOLLOW) or ""
        wanted = asked if asked in jobs else ""
        if not wanted:
            running = [i for i, j in jobs.items() if j["status"] in ("RUNNING", "STARTING")]
            wanted = (
                current.job_id
                if current and (current.job_id in running or not running)
                else (running[0] if running else "")
            )
        if not wanted or (current and current.job_id == wanted):
            if current and not current.stream:
                current.stream = self._stream(jobs.get(current.job_id, {}))
            return current
        if current:
            current.poll()  # the rest of the last one's lines first
        p = points.get(names[wanted])
        title = p.short if p else names[wanted]
        ctx.output([f"──── {title} · job {wanted} ────"])
        return LogFollower(ctx, wanted, self._stream(jobs.get(wanted, {})), title)

    @staticmethod
    def _stream(job: dict) -> str:
        attempts = job.get("attempts") or []
        container = (attempts[-1].get("container") if attempts else None) or {}
        return container.get("logStreamName") or (job.get("container") or {}).get("logStreamName") or ""
