"""The model exercise end to end in the sandbox: ECR repository, the job virtualenv standing in
for the image, compile, benchmark, report, the live job pane, reattaching, terminate.

One session runs up to `benchmark` once for the module (the virtualenv install and the
benchmark take a couple of minutes on two cores); the tests then look at it from each side.
Terminating and cleaning up come last.
"""

from __future__ import annotations

import json
import threading
import uuid

import pytest

from conftest import run_cli
from inflab.engine import Engine
from inflab.lab_steps import remote_job
from inflab.lab_steps.base import Cancelled

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lab(sandbox, inflab_home, tmp_path_factory):
    name = "m" + uuid.uuid4().hex[:8]
    cfg = tmp_path_factory.mktemp("cfg") / "short.toml"  # a shorter measurement: these tests look at the flow
    cfg.write_text("[bench]\nmin_duration_s = 3\nmin_queries = 100\nmax_duration_s = 20\n")
    r = run_cli("run", "--sandbox", "--name", name, "--config", str(cfg), "--until", "benchmark", home=inflab_home,
                timeout=1200)
    return name, r


def report(name, home, fmt="json"):
    r = run_cli("report", name, "--format", fmt, home=home)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["rows"] if fmt == "json" else r.stdout


def test_run_until_benchmark_exits_0_with_the_job_output_streamed(lab):
    name, r = lab
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    out = r.stdout
    assert "sandbox has no docker" in out.lower()
    # the remote jobs' output reached the terminal as it ran
    assert "│ [compile]" in out and "│ [bench]" in out
    assert "max abs diff vs eager" in out
    assert f"Session {name}: done up to benchmark." in out


def test_report_has_a_bert_result_with_ordered_percentiles(lab, inflab_home):
    name, _ = lab
    rows = report(name, inflab_home)
    bert = [r for r in rows if r["family"] == "bert"]
    assert {r["precision"] for r in bert} == {"fp32", "int8"}  # the CPU target compares int8 too
    for r in bert:
        assert r["throughput_avg"] > 0
        assert r["latency_ms_p50"] <= r["latency_ms_p90"] <= r["latency_ms_p95"] <= r["latency_ms_p99"]
        assert r["batch_size"] == 8 and r["target"] == "cpu" and r["instance_type"] == "sandbox"
        assert r["weights"] == "random" and r["cost_per_million"] is None  # no price for this machine
    table = report(name, inflab_home, "table")
    assert "SAMPLES/S" in table and "bert-base-cased-finetuned-mrpc" in table and "sandbox rows ran" in table
    csv = report(name, inflab_home, "csv").splitlines()
    assert csv[0].startswith("model,precision,target,instance_type,batch_size,throughput_avg") and len(csv) == 1 + len(rows)


def test_the_ecr_repository_scans_on_push_and_carries_the_session_tag(lab, aws):
    name, _ = lab
    ecr = aws("ecr")
    repo = ecr.describe_repositories(repositoryNames=[f"inflab-{name}"])["repositories"][0]
    assert repo["imageScanningConfiguration"]["scanOnPush"] is True
    tags = {t["Key"]: t["Value"] for t in ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]}
    assert tags["inflab:session"] == name


def test_the_job_offsets_reached_the_end_of_each_log(lab, store, inflab_home):
    name, _ = lab
    iid = store.get(name, "host")["instance_id"]
    for kind in ("build-image", "compile", "benchmark"):
        job = store.job(name, f"{kind}-1")
        assert job["status"] == "succeeded", job
        log = inflab_home / "sandbox" / "instances" / iid / ".inflab" / "jobs" / f"{kind}-1" / "out.log"
        assert job["offset"] == log.stat().st_size > 0


def test_running_again_redoes_nothing(lab, store, inflab_home):
    name, _ = lab
    before = len(store.results(name, "benchmark"))
    r = run_cli("run", "--sandbox", "--name", name, "--until", "benchmark", home=inflab_home, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("Already done") == 15  # every step from credentials to benchmark
    assert "│" not in r.stdout  # no job ran
    assert len(store.results(name, "benchmark")) == before


def test_a_detached_job_keeps_running_and_is_reattached_without_repeats(lab, store):
    name, _ = lab
    engine = Engine(store, name)
    ctx = engine.context(engine.step("compile"))
    seen: list[str] = []
    ctx.output = seen.extend
    command = "for i in $(seq 1 40); do echo line $i; sleep 0.05; done"
    errors: list[BaseException] = []

    def first():
        try:
            remote_job.run_job(ctx, "probe", command)
        except BaseException as e:  # noqa: BLE001 - the test reads it
            errors.append(e)

    t = threading.Thread(target=first)
    t.start()
    while len(seen) < 5 and t.is_alive():
        threading.Event().wait(0.02)
    engine.detach()  # what quitting the app does
    t.join(30)
    assert errors and isinstance(errors[0], Cancelled) and "keeps running" in str(errors[0])
    job = store.job(name, "probe-1")
    assert job["status"] == "running"
    ctx.cancel.clear()
    ctx.detach.clear()
    code, _ = remote_job.run_job(ctx, "probe", command)  # a restarted app runs the step again
    assert code == 0
    assert seen == [f"line {i}" for i in range(1, 41)]
    assert store.job(name, "probe-1")["status"] == "succeeded"
    assert (store.get(name, "jobs") or {}).get("probe") == "probe-1"  # not started twice


async def test_the_wizard_streams_a_compile_into_the_job_tab(lab, store):
    from textual.widgets import TabbedContent

    from inflab.tui.app import InflabApp
    from inflab.tui.panes import JobOutput
    from test_tui_wizard import wait_idle

    name, _ = lab
    store.delete(name, "compile")  # make the step run again
    app = InflabApp(store, mode="resume", name=name)
    async with app.run_test(size=(140, 45)) as pilot:
        wizard = app.screen
        await wait_idle(pilot, wizard, timeout=120)  # the check of the session when it opens
        steps = wizard.query_one("#steps")
        steps.highlighted = steps.get_option_index("compile")
        await pilot.press("r")
        await wait_idle(pilot, wizard, timeout=300)
        assert wizard.query_one("#bottom", TabbedContent).active == "tab-job"
        lines = wizard.query_one(JobOutput).log.history
        assert any("── compile" in line for line in lines)
        assert any("[compile]" in line and "check" in line for line in lines), lines[-20:]
        assert "✓" in str(steps.get_option("compile").prompt)


def _bench_rows(store, name) -> list[str]:
    return [r["data"]["run_id"] for r in store.results(name, "benchmark")]


def test_killed_as_the_benchmark_job_ends_the_next_run_collects_it_once(lab, store, inflab_home):
    """The job's exit code is written, the session has not heard: the next run reattaches and collects once."""
    name, _ = lab
    before = _bench_rows(store, name)
    r = run_cli("run", "--name", name, "--from", "benchmark", "--until", "benchmark", home=inflab_home, timeout=600,
                env={"INFLAB_FAULT_POINT": "job:ended"})
    assert r.returncode == 137, r.stdout[-2000:] + r.stderr[-2000:]
    job = store.get(name, "jobs")["benchmark"]
    assert _bench_rows(store, name) == before

    r = run_cli("run", "--name", name, "--until", "benchmark", home=inflab_home, timeout=600)

    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "failed" not in r.stdout
    assert store.get(name, "jobs")["benchmark"] == job, "the same job, not a second run"
    new = [run for run in _bench_rows(store, name) if run not in before]
    assert sorted(new) == [f"{job}.1", f"{job}.2"], "fp32 and int8, once each"


def test_killed_after_storing_results_the_next_run_keeps_them_once(lab, store, inflab_home):
    name, _ = lab
    r = run_cli("run", "--name", name, "--from", "benchmark", "--until", "benchmark", home=inflab_home, timeout=600,
                env={"INFLAB_FAULT_POINT": "benchmark:results-stored"})
    assert r.returncode == 137, r.stdout[-2000:] + r.stderr[-2000:]
    stored = _bench_rows(store, name)
    assert len(stored) == len(set(stored))

    r = run_cli("run", "--name", name, "--until", "benchmark", home=inflab_home, timeout=600)

    assert r.returncode == 0, r.stderr
    assert "collected already" in r.stdout and "│" not in r.stdout, "no second benchmark"
    assert _bench_rows(store, name) == stored
    rows = report(name, inflab_home)
    assert len({row["run_id"] for row in rows}) == len(rows), "the report tells the runs apart"


def test_terminate_keeps_the_results_and_cleanup_leaves_nothing(lab, store, inflab_home, cli, aws):
    name, _ = lab
    iid = store.get(name, "host")["instance_id"]
    results = len(store.results(name, "benchmark"))
    r = cli("run", "--name", name, "--until", "terminate", timeout=300)  # the model exercise ends with terminate
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    state = aws("ec2").describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state == "terminated"
    assert not (inflab_home / "sandbox" / "instances" / iid).exists(), "the emulated instance's disk is freed"
    assert len(store.results(name, "benchmark")) == results
    assert report(name, inflab_home)
    r = cli("cleanup", name, "--yes", timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(cli("resources", name, "--json").stdout) == []
    assert aws("ecr").describe_repositories()["repositories"] == [] or all(
        not x["repositoryName"].endswith(name) for x in aws("ecr").describe_repositories()["repositories"])


