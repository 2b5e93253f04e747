"""The sweep on AWS Batch, end to end in the sandbox: the whole track in one `inflab run`, the
report it ends on, what is left afterwards, a kill in the middle, a failing job, and a cleanup
that has to wait for Batch.

One session runs the whole track once for the module; the other tests start from the batch
steps of their own sessions, on the image store that run filled (one image hash per payload).
"""

from __future__ import annotations

import csv
import io
import json
import uuid

import pytest
from conftest import run_cli

from inflab import config
from inflab.engine import Engine
from inflab.events import BatchJobsChanged, JobLines, StepLogged

pytestmark = pytest.mark.slow

# The flow, not the figures: one trial per configuration, a sweep of two batch sizes, and the
# SageMaker exercise left to its own tests (tests/test_sagemaker_sandbox.py runs it from the start).
QUICK = """
[bench]
min_duration_s = 1
min_queries = 20
max_duration_s = 2
repeats = 1
[sagemaker]
enabled = false
[batch]
sizes = [2, 8]
min_duration_s = 1
max_duration_s = 2
[serve]
step_s = 1
rates = [5]
"""
SWEEP_STEPS = ("batch-setup", "batch-submit", "batch-monitor", "report")
# The sweep-only tests measure less: two batch sizes, fp32 only.
SMALL = {
    "batch": {"sizes": [2, 4], "min_duration_s": 1, "max_duration_s": 2},
    "model": {"int8": False},
    "bench": {"min_duration_s": 1, "min_queries": 20, "max_duration_s": 2},
}


@pytest.fixture(scope="module")
def quick_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "quick.toml"
    path.write_text(QUICK)
    return str(path)


@pytest.fixture(scope="module")
def t4(sandbox, inflab_home, quick_config):
    name = "t4-" + uuid.uuid4().hex[:6]
    r = run_cli("run", "--sandbox", "--name", name, "--config", quick_config, home=inflab_home, timeout=1800)
    return name, r


def report_csv(name, home, *extra):
    r = run_cli("report", name, "--format", "csv", *extra, home=home)
    assert r.returncode == 0, r.stderr
    return list(csv.DictReader(io.StringIO(r.stdout)))


def test_the_whole_track_runs_and_the_report_has_a_row_per_batch_size(t4, inflab_home):
    name, r = t4
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    out = r.stdout
    for step in SWEEP_STEPS + ("batch-cleanup",):
        assert f"✓ {step}" in out or f"{step:<16} done" in out, step
    assert "2 of 2 done" in out or "succeeded" in out
    rows = [row for row in report_csv(name, inflab_home) if row["run_id"].startswith("sweep-")]
    got = sorted((int(row["batch_size"]), row["precision"]) for row in rows)
    assert got == [(2, "fp32"), (2, "int8"), (8, "fp32"), (8, "int8")]
    for row in rows:
        assert row["instance_type"] == "inf1.2xlarge" and row["target"] == "cpu"
        assert float(row["throughput_avg"]) > 0


def test_afterwards_only_the_results_bucket_is_left_and_cleanup_can_take_it(t4, inflab_home, aws):
    name, r = t4
    assert r.returncode == 0, r.stderr[-2000:]
    found = json.loads(run_cli("resources", name, "--json", home=inflab_home).stdout)
    assert [x["type"] for x in found] == ["s3:bucket", "ssm:parameter"], found  # the results, and the beacon saying so
    assert json.loads(aws("ssm").get_parameter(Name=found[1]["name"])["Parameter"]["Value"])["state"] == "finished"
    bucket = found[0]["name"]
    keys = [o["Key"] for o in aws("s3").list_objects_v2(Bucket=bucket)["Contents"]]
    assert f"{name}/report/report.md" in keys and f"{name}/report/report.csv" in keys
    assert sum(k.endswith(".bench.json") for k in keys) == 4
    assert sum(k.endswith("/job.log") for k in keys) == 2
    assert any(k.endswith(".pt") for k in keys), "the compiled models are kept with the results"

    r = run_cli("cleanup", name, "--yes", "--delete-data", home=inflab_home)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(run_cli("resources", name, "--json", home=inflab_home).stdout) == []


# -- the sweep on its own: sessions that start from the batch steps ---------------------------------
@pytest.fixture
def sweep_session(store, t4):
    """A session with the ECR repository and the (already built) image: ready for batch-setup."""
    name = "s" + uuid.uuid4().hex[:8]
    cfg = config.from_dict(SMALL, sandbox=True)
    store.create_session(name, cfg.data, sandbox=True, track="inf1")
    engine = Engine(store, name)
    for step in engine.steps[: engine.index("batch-setup")]:  # the sweep on its own: no instance
        if step.id not in ("credentials", "ecr-repo"):
            engine.skip(step.id)
    assert engine.run("ecr-repo").ok
    return name


def run_steps(store, name, *steps, listener=None, **kw):
    engine = Engine(store, name, listener=listener)
    for step in steps:
        result = engine.run_one(step)
        if not result.ok:
            return result
    return result


def sweep_jobs(aws, name):
    batch = aws("batch")
    queue = f"inflab-{name}-inf1-2xlarge"
    return batch.list_jobs(jobQueue=queue, filters=[{"name": "JOB_NAME", "values": [f"inflab-{name}-*"]}])[
        "jobSummaryList"
    ]


def test_killed_while_submitting_or_monitoring_and_run_again_no_job_is_duplicated(
    sweep_session, inflab_home, aws, store
):
    name = sweep_session
    assert run_steps(store, name, "batch-setup").ok
    # Killed right after Batch accepted the first job, before the lab recorded it.
    r = run_cli(
        "run",
        "--name",
        name,
        "--until",
        "batch-submit",
        home=inflab_home,
        env={"INFLAB_FAULT_POINT": "batch-submit:submitted"},
    )
    assert r.returncode == 137
    assert len(sweep_jobs(aws, name)) == 1
    # Killed while watching.
    r = run_cli(
        "run",
        "--name",
        name,
        "--until",
        "batch-monitor",
        home=inflab_home,
        env={"INFLAB_FAULT_POINT": "batch-monitor:polled"},
        timeout=300,
    )
    assert r.returncode == 137, r.stdout[-2000:] + r.stderr[-2000:]
    assert "found job" in r.stdout and "not submitting it again" in r.stdout
    r = run_cli("run", "--name", name, "--until", "report", home=inflab_home, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    jobs = sweep_jobs(aws, name)
    assert len(jobs) == 2, [j["jobName"] for j in jobs]  # the grid: batch sizes 2 and 4
    assert {j["status"] for j in jobs} == {"SUCCEEDED"}


def test_a_failing_job_shows_its_reason_and_is_marked_in_the_report(sweep_session, inflab_home, aws, store):
    name = sweep_session
    assert run_steps(store, name, "batch-setup").ok
    # Force an impossible batch size through the job's environment: a new revision of one definition.
    batch = aws("batch")
    d = batch.describe_job_definitions(jobDefinitionName=f"inflab-{name}-bert-inf1-2xlarge-b4", status="ACTIVE")[
        "jobDefinitions"
    ][0]
    props = dict(d["containerProperties"])
    props["environment"] = [{"name": "INFLAB_BATCH_SIZE", "value": "0"}]
    batch.register_job_definition(
        jobDefinitionName=d["jobDefinitionName"], type="container", containerProperties=props, tags=d.get("tags") or {}
    )
    events: list = []
    result = run_steps(store, name, "batch-submit", "batch-monitor", "report", listener=events.append)
    assert result.ok, result.error
    logged = [e.message for e in events if isinstance(e, StepLogged)]
    failed = [m for m in logged if "bert inf1.2xlarge b4" in m and "FAILED" in m]
    assert failed and "exit code 2" in failed[0], logged
    tables = [e for e in events if isinstance(e, BatchJobsChanged)]
    last = tables[-1]
    assert last.done == last.total == 2
    assert {j.batch_size: j.state for j in last.jobs} == {2: "SUCCEEDED", 4: "FAILED"}
    assert "exit code 2" in next(j.reason for j in last.jobs if j.batch_size == 4)
    assert any(isinstance(e, JobLines) and any("[sweep]" in line for line in e.lines) for e in events), (
        "a job's CloudWatch log streamed into the job pane"
    )
    rows = report_csv(name, inflab_home)
    sweep_rows = [r for r in rows if r["run_id"].startswith("sweep-") or r.get("status", "").startswith("FAILED")]
    assert sorted({int(r["batch_size"]) for r in sweep_rows if not r.get("status", "ok").startswith("FAILED")}) == [2]
    assert any(r.get("status", "").startswith("FAILED") and r["batch_size"] == "4" for r in rows), rows


def test_cleanup_waits_for_batch_and_retries_what_is_still_in_use(sweep_session, inflab_home, aws, store, faults):
    name = sweep_session
    assert run_steps(store, name, "batch-setup").ok
    faults({"batch": {"queue_disable_lag_s": 3, "delete_ce_failures": 1}})
    events: list = []
    engine = Engine(store, name, listener=events.append)
    assert engine.undo("batch-setup").ok
    logged = " | ".join(e.message for e in events if isinstance(e, StepLogged))
    progress = " | ".join(getattr(e, "message", "") for e in events)
    assert "to be DISABLED" in progress, "it says what it waits for"
    assert "still in use" in logged and "retrying" in logged
    assert "Deleted compute environment" in logged and "Deleted job queue" in logged
    kinds = {x["type"] for x in json.loads(run_cli("resources", name, "--json", home=inflab_home).stdout)}
    assert not {k for k in kinds if k.startswith("batch:")}, kinds
