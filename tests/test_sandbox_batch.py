"""The sandbox runs AWS Batch jobs for real, and its Batch control plane answers like AWS's.

A submitted job waits RUNNABLE, goes STARTING and RUNNING as its command does and ends
SUCCEEDED or FAILED (exit code, reason), one job at a time; its output is in CloudWatch Logs
under the stream DescribeJobs names; TerminateJob stops it and its processes. Deletes follow
AWS's rules and the injected faults (state lag, a compute environment still "in use") make the
lab's cleanup wait and retry. Everything is looked at with boto3, as the lab does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 120.0  # generous: the machine is slow; no assertion depends on it being fast
HELLO = ["sh", "-c", "echo hello; echo $AWS_BATCH_JOB_ID; sleep 1; exit 0"]
LOG_GROUP = "/inflab/t"
FINAL = ("SUCCEEDED", "FAILED")


def wait_for(what: str, check, deadline: float = DEADLINE, every: float = 0.1):
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"waited {deadline:.0f} s for {what}")
        time.sleep(every)


def jobs_by_id(batch, ids: list[str]) -> dict[str, dict]:
    return {j["jobId"]: j for j in batch.describe_jobs(jobs=ids)["jobs"]}


def retry_client_errors(call, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while True:
        try:
            call()
            return
        except ClientError:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


def quietly(call) -> None:
    try:
        call()
    except ClientError:
        pass


@pytest.fixture(scope="module", autouse=True)
def roles_propagate_at_once(sandbox):
    """These tests are about running jobs, not IAM's propagation (the lab's own tests meet that):
    a compute environment made right after its roles is VALID here."""
    from inflab import sandbox as sb
    from inflab.sandbox.faults import merged

    before = sb.get_faults(sandbox)
    sb.set_faults(sandbox, merged(before, {"batch": {"ce_role_propagation_s": 0}}))
    yield
    sb.set_faults(sandbox, before)


@pytest.fixture
def batch_env(aws, name):
    """A managed EC2 compute environment, its queue and a job definition, as the lab makes them."""
    ec2, iam, batch = aws("ec2"), aws("iam"), aws("batch")
    try:  # the awslogs driver writes to a group that must exist, as on AWS
        aws("logs").create_log_group(logGroupName=LOG_GROUP)
    except ClientError as e:
        if e.response["Error"]["Code"] != "ResourceAlreadyExistsException":
            raise
    service_role = iam.create_role(
        RoleName=f"inflab-{name}-batch",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "batch.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
        ),
    )["Role"]["Arn"]
    iam.create_role(
        RoleName=f"inflab-{name}-ecs",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
        ),
    )
    profile = iam.create_instance_profile(InstanceProfileName=f"inflab-{name}-ecs")["InstanceProfile"]["Arn"]
    iam.add_role_to_instance_profile(InstanceProfileName=f"inflab-{name}-ecs", RoleName=f"inflab-{name}-ecs")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnets = [s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]]
    group = ec2.create_security_group(GroupName=f"inflab-{name}-batch", Description="batch test", VpcId=vpc)["GroupId"]
    ce = batch.create_compute_environment(
        computeEnvironmentName=f"inflab-{name}",
        type="MANAGED",
        state="ENABLED",
        serviceRole=service_role,
        computeResources={
            "type": "EC2",
            "minvCpus": 0,
            "maxvCpus": 8,
            "instanceTypes": ["optimal"],
            "subnets": subnets,
            "securityGroupIds": [group],
            "instanceRole": profile,
        },
    )
    queue = batch.create_job_queue(
        jobQueueName=f"inflab-{name}",
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce["computeEnvironmentArn"]}],
    )
    definition = batch.register_job_definition(
        jobDefinitionName=f"inflab-{name}",
        type="container",
        containerProperties={
            "image": "inflab-sandbox",
            "command": HELLO,
            "vcpus": 1,
            "memory": 512,
            "environment": [{"name": "FROM_DEFINITION", "value": "d"}, {"name": "BOTH", "value": "d"}],
            "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": LOG_GROUP}},
        },
    )
    env = {
        "ce": ce["computeEnvironmentArn"],
        "ce_name": f"inflab-{name}",
        "queue": queue["jobQueueArn"],
        "definition": definition["jobDefinitionArn"],
        "submitted": [],
    }

    def submit(job_name: str, command: list[str] | None = None, **overrides) -> str:
        if command is not None:
            overrides["command"] = command
        job_id = batch.submit_job(
            jobName=job_name, jobQueue=env["queue"], jobDefinition=env["definition"], containerOverrides=overrides
        )["jobId"]
        env["submitted"].append(job_id)
        return job_id

    env["submit"] = submit
    yield env

    for job in jobs_by_id(batch, env["submitted"]).values():
        if job["status"] not in FINAL:
            batch.terminate_job(jobId=job["jobId"], reason="test over")
    batch.deregister_job_definition(jobDefinition=env["definition"])
    quietly(lambda: batch.update_job_queue(jobQueue=env["queue"], state="DISABLED"))  # (a test may have deleted it)
    retry_client_errors(lambda: batch.delete_job_queue(jobQueue=env["queue"]))
    quietly(lambda: batch.update_compute_environment(computeEnvironment=env["ce"], state="DISABLED"))
    retry_client_errors(lambda: batch.delete_compute_environment(computeEnvironment=env["ce"]))
    ec2.delete_security_group(GroupId=group)
    iam.remove_role_from_instance_profile(InstanceProfileName=f"inflab-{name}-ecs", RoleName=f"inflab-{name}-ecs")
    iam.delete_instance_profile(InstanceProfileName=f"inflab-{name}-ecs")
    iam.delete_role(RoleName=f"inflab-{name}-ecs")
    iam.delete_role(RoleName=f"inflab-{name}-batch")


def follow(batch, ids: list[str]) -> tuple[dict[str, list[str]], dict[str, dict]]:
    """Poll until every job is done: the states each job was seen in (in order), and the last describe.
    Also checks, at every poll, that at most one of them was starting or running."""
    seen: dict[str, list[str]] = {i: [] for i in ids}

    def done():
        jobs = jobs_by_id(batch, ids)
        for i, j in jobs.items():
            if not seen[i] or seen[i][-1] != j["status"]:
                seen[i].append(j["status"])
        active = [i for i, j in jobs.items() if j["status"] in ("STARTING", "RUNNING")]
        assert len(active) <= 1, f"two jobs at once: {active}"
        return jobs if all(j["status"] in FINAL for j in jobs.values()) else None

    return seen, wait_for("the jobs to finish", done, every=0.05)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie waiting for the system to reap it is gone too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def log_lines(aws, job: dict) -> list[str]:
    stream = job["container"]["logStreamName"]
    events = aws("logs").get_log_events(logGroupName=LOG_GROUP, logStreamName=stream, startFromHead=True)["events"]
    return [e["message"] for e in events]


def test_jobs_run_one_at_a_time_through_every_state_with_logs_and_exit_codes(aws, batch_env):
    batch = aws("batch")
    first = batch_env["submit"]("hello-1")
    second = batch_env["submit"]("hello-2")
    failing = batch_env["submit"]("fails", ["sh", "-c", "echo about to fail; sleep 1; exit 3"])
    seen, jobs = follow(batch, [first, second, failing])

    order = ["RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED"]
    for job_id, states in seen.items():
        assert states == sorted(states, key=order.index), states  # never backwards
        assert "RUNNING" in states, states
    assert seen[second][0] == "RUNNABLE" and seen[failing][0] == "RUNNABLE"  # they wait for the first
    assert any("STARTING" in states for states in seen.values())
    assert jobs[first]["status"] == jobs[second]["status"] == "SUCCEEDED"
    assert jobs[first]["container"]["exitCode"] == 0

    failed = jobs[failing]
    assert failed["status"] == "FAILED"
    assert failed["statusReason"] == "Essential container in task exited"
    assert failed["container"]["exitCode"] == 3
    assert failed["attempts"][0]["container"]["exitCode"] == 3
    # one at a time, in order of submission
    assert jobs[first]["stoppedAt"] <= jobs[second]["startedAt"] and jobs[second]["stoppedAt"] <= failed["startedAt"]
    assert all(j["startedAt"] <= j["stoppedAt"] for j in jobs.values())

    for job_id in (first, second):
        stream = jobs[job_id]["container"]["logStreamName"]
        assert stream == f"{batch_env['ce_name']}/default/{job_id}"  # definition name / default / job id
        assert jobs[job_id]["attempts"][0]["container"]["logStreamName"] == stream
        assert log_lines(aws, jobs[job_id]) == ["hello", job_id]
    assert log_lines(aws, failed) == ["about to fail"]
    listed = batch.list_jobs(jobQueue=batch_env["queue"], jobStatus="FAILED")["jobSummaryList"]
    assert [j["jobId"] for j in listed] == [failing]
    assert listed[0]["container"]["exitCode"] == 3


def test_terminate_stops_a_running_job_and_its_processes_and_a_queued_one_never_runs(aws, batch_env):
    batch = aws("batch")
    script = "sleep 60 & echo $! > child; echo $$ > pid; echo started; wait"
    running = batch_env["submit"]("long", ["sh", "-c", script])
    queued = batch_env["submit"]("queued", ["sh", "-c", "echo should never run"])
    wait_for("the long job to run", lambda: jobs_by_id(batch, [running])[running]["status"] == "RUNNING")
    assert jobs_by_id(batch, [queued])[queued]["status"] == "RUNNABLE"

    batch.terminate_job(jobId=queued, reason="not wanted")
    # the running job wrote its pids into its working directory, a fresh one of its own
    from inflab import sandbox as sb

    workdir = sb.state_dir(Path(os.environ["INFLAB_HOME"])) / "batch" / "jobs" / running
    pids = wait_for(
        "the job's pid files",
        lambda: (
            [int(p) for p in ((workdir / "pid").read_text().split() + (workdir / "child").read_text().split())]
            if (workdir / "child").exists() and (workdir / "pid").exists()
            else None
        ),
    )
    assert (workdir.stat().st_mode & 0o777) == 0o700
    batch.terminate_job(jobId=running, reason="stopped by the test")

    jobs = wait_for(
        "both jobs to stop",
        lambda: (lambda j: j if all(x["status"] in FINAL for x in j.values()) else None)(
            jobs_by_id(batch, [running, queued])
        ),
    )
    assert jobs[running]["status"] == "FAILED" and jobs[running]["statusReason"] == "stopped by the test"
    assert jobs[running]["container"]["exitCode"] == 128 + 15  # SIGTERM
    assert jobs[queued]["status"] == "FAILED" and jobs[queued]["statusReason"] == "not wanted"
    assert "startedAt" not in jobs[queued] and jobs[queued]["attempts"] == []
    assert "should never run" not in "\n".join(log_lines(aws, jobs[running]))

    wait_for("the job's processes to end", lambda: all(gone(p) for p in pids))
    wait_for("the job's disk to go with it, like a container's", lambda: not workdir.exists())


def test_a_job_ends_with_its_main_process_and_takes_what_it_left_running_along(aws, batch_env):
    batch = aws("batch")
    job_id = batch_env["submit"]("leaves-a-child", ["sh", "-c", "sleep 600 & echo $!; exit 0"])
    _, jobs = follow(batch, [job_id])
    assert jobs[job_id]["status"] == "SUCCEEDED"
    child = int(log_lines(aws, jobs[job_id])[0])
    wait_for("the left-over process to end", lambda: gone(child))


def test_the_job_environment_is_batch_s_and_carries_no_secret(aws, batch_env, sandbox):
    batch = aws("batch")
    job_id = batch_env["submit"](
        "env",
        ["sh", "-c", "env; pwd"],
        environment=[{"name": "BOTH", "value": "o"}, {"name": "FROM_SUBMIT", "value": "s"}],
    )
    _, jobs = follow(batch, [job_id])
    job = jobs[job_id]
    assert job["status"] == "SUCCEEDED", job.get("statusReason")
    lines = log_lines(aws, job)
    env = dict(line.split("=", 1) for line in lines if "=" in line)
    assert env["AWS_BATCH_JOB_ID"] == job_id
    assert env["AWS_BATCH_JOB_ATTEMPT"] == "1"
    assert env["AWS_BATCH_JQ_NAME"] == batch_env["ce_name"]  # queue and environment share the name here
    assert env["AWS_BATCH_CE_NAME"] == batch_env["ce_name"]
    assert env["AWS_DEFAULT_REGION"] == "us-west-2"
    assert (env["FROM_DEFINITION"], env["FROM_SUBMIT"], env["BOTH"]) == ("d", "s", "o")
    assert env["INFLAB_HOME"] == os.environ["INFLAB_HOME"]
    assert lines[-1].endswith(f"/batch/jobs/{job_id}")
    assert sandbox.secret not in "\n".join(lines)
    assert not [k for k in env if k.startswith("MOTO")]
    # the describe shows the environment once per variable, however often it is asked
    for _ in range(3):
        described = jobs_by_id(batch, [job_id])[job_id]["container"]["environment"]
    names = [e["name"] for e in described]
    assert len(names) == len(set(names))


def test_a_job_waits_runnable_while_its_compute_environment_is_disabled(aws, batch_env):
    batch = aws("batch")
    batch.update_compute_environment(computeEnvironment=batch_env["ce"], state="DISABLED")
    job_id = batch_env["submit"]("waits")
    for _ in range(10):  # the scheduler places nothing in a DISABLED environment
        assert jobs_by_id(batch, [job_id])[job_id]["status"] == "RUNNABLE"
        time.sleep(0.2)
    batch.update_compute_environment(computeEnvironment=batch_env["ce"], state="ENABLED")
    _, jobs = follow(batch, [job_id])
    assert jobs[job_id]["status"] == "SUCCEEDED"


def test_a_command_that_cannot_start_fails_with_the_reason(aws, batch_env):
    batch = aws("batch")
    job_id = batch_env["submit"]("missing", ["/nonexistent/inflab-command", "x"])
    _, jobs = follow(batch, [job_id])
    assert jobs[job_id]["status"] == "FAILED"
    assert jobs[job_id]["statusReason"].startswith("CannotStartContainerError: /nonexistent/inflab-command")


def test_the_upload_module_puts_a_directory_into_s3(aws, sandbox, inflab_home, tmp_path, name):
    s3 = aws("s3")
    bucket = f"inflab-{name}-results"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    src = tmp_path / "out"
    (src / "logs").mkdir(parents=True)
    (src / "result.json").write_text('{"ok": true}')
    (src / "logs" / "run.log").write_text("line\n")
    (src / "link").symlink_to(src / "result.json")

    def upload(*args: str, home: Path = inflab_home) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "inflab.sandbox.upload", "--home", str(home), *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
            env=dict(os.environ, AWS_DEFAULT_REGION="us-west-2"),
        )

    done = upload(str(src), f"s3://{bucket}/session/job-1")
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 2
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == ["session/job-1/logs/run.log", "session/job-1/result.json"]
    assert s3.get_object(Bucket=bucket, Key="session/job-1/result.json")["Body"].read() == b'{"ok": true}'

    bad = upload(str(src), "not-an-s3-url")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    off = upload(str(src), f"s3://{bucket}/x", home=tmp_path / "no-sandbox")
    assert off.returncode == 1 and "not running" in off.stderr and len(off.stderr.strip().splitlines()) == 1
    # (the bucket stays: the emulator's state dump, /moto-api/data.json, fails once a bucket that
    # held keys is deleted, and other tests read that dump from this shared sandbox)


def test_a_disabled_queue_stays_enabled_and_updating_for_the_injected_lag(aws, batch_env, faults):
    batch = aws("batch")
    faults({"batch": {"queue_disable_lag_s": 30}})  # time to look twice however busy the machine...
    batch.update_job_queue(jobQueue=batch_env["queue"], state="DISABLED")
    queue = batch.describe_job_queues(jobQueues=[batch_env["queue"]])["jobQueues"][0]
    assert (queue["state"], queue["status"]) == ("ENABLED", "UPDATING")
    with pytest.raises(ClientError) as err:  # AWS deletes only a DISABLED queue
        batch.delete_job_queue(jobQueue=batch_env["queue"])
    assert err.value.response["Error"]["Code"] == "ClientException"
    assert "DISABLED" in err.value.response["Error"]["Message"]
    queue = batch.describe_job_queues(jobQueues=[batch_env["queue"]])["jobQueues"][0]
    assert (queue["state"], queue["status"]) == ("ENABLED", "UPDATING")  # a refused delete changes nothing
    faults({"batch": {"queue_disable_lag_s": 0}})  # ...and the lag ends through the fault, not a wait

    def settled():
        q = batch.describe_job_queues(jobQueues=[batch_env["queue"]])["jobQueues"][0]
        return q if q["status"] == "VALID" else None

    queue = wait_for("the queue to settle", settled)
    assert queue["state"] == "DISABLED"


def test_a_compute_environment_is_deleted_only_when_free_and_the_injected_in_use_error_is_retried(
    aws, batch_env, faults, sandbox
):
    batch = aws("batch")
    faults({"batch": {"delete_ce_failures": 1, "ce_disable_lag_s": 30}})  # a lag no busy machine outlasts
    with pytest.raises(ClientError) as err:  # still ENABLED
        batch.delete_compute_environment(computeEnvironment=batch_env["ce"])
    assert "DISABLED" in err.value.response["Error"]["Message"]
    batch.update_compute_environment(computeEnvironment=batch_env["ce"], state="DISABLED")
    ce = batch.describe_compute_environments(computeEnvironments=[batch_env["ce"]])["computeEnvironments"][0]
    assert (ce["state"], ce["status"]) == ("ENABLED", "UPDATING")
    with pytest.raises(ClientError) as err:  # DISABLED, but not shown so yet: still refused
        batch.delete_compute_environment(computeEnvironment=batch_env["ce"])
    assert "not in DISABLED state (state ENABLED, status UPDATING)" in err.value.response["Error"]["Message"]
    # the lag ends through the fault (the table as it is now, the injected failure not used up)
    faults({"batch": {**faults_now(sandbox)["batch"], "ce_disable_lag_s": 0}})
    wait_for(
        "the environment to settle",
        lambda: (
            batch.describe_compute_environments(computeEnvironments=[batch_env["ce"]])["computeEnvironments"][0][
                "status"
            ]
            == "VALID"
        ),
    )
    with pytest.raises(ClientError) as err:  # its queue is still there: a real relationship
        batch.delete_compute_environment(computeEnvironment=batch_env["ce"])
    assert err.value.response["Error"]["Message"] == "Cannot delete, found existing JobQueue relationship"
    assert faults_now(sandbox)["batch"]["delete_ce_failures"] == 1  # not used up by a real refusal

    batch.update_job_queue(jobQueue=batch_env["queue"], state="DISABLED")
    batch.delete_job_queue(jobQueue=batch_env["queue"])
    with pytest.raises(ClientError) as err:  # the injected one
        batch.delete_compute_environment(computeEnvironment=batch_env["ce"])
    assert err.value.response["Error"]["Code"] == "ClientException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "JobQueue relationship" in err.value.response["Error"]["Message"]
    batch.delete_compute_environment(computeEnvironment=batch_env["ce"])  # the retry succeeds
    assert batch.describe_compute_environments(computeEnvironments=[batch_env["ce"]])["computeEnvironments"] == []
    # (the fixture's own cleanup finds them gone: deleting what is gone is a no-op)


def faults_now(sandbox) -> dict:
    import urllib.request

    req = urllib.request.Request(f"{sandbox.endpoint}/inflab-sandbox/faults", headers=sandbox.headers)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_bad_batch_faults_are_refused_with_a_reason(sandbox):
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        f"{sandbox.endpoint}/inflab-sandbox/faults",
        method="POST",
        data=json.dumps({"batch": {"queue_lag": 3}}).encode(),
        headers={"Content-Type": "application/json", **sandbox.headers},
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 400
    assert "batch.queue_lag" in json.loads(err.value.read())["error"]
