"""The model exercise end to end in the sandbox: ECR repository, the job virtualenv standing in
for the image, compile, benchmark, report, the live job pane, reattaching; then the serving
exercise on the same session (TorchServe: package, serve, check, load test, stop); terminate.

One session runs up to `benchmark` once for the module (the virtualenv install and the
benchmark take a couple of minutes on two cores); the tests then look at it from each side.
The serving tests continue it up to `load-test`. Terminating and cleaning up come last.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from conftest import run_cli

from inflab.engine import Engine
from inflab.lab_steps import remote_job
from inflab.lab_steps.base import Cancelled
from inflab.remote.payload import serve

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lab(sandbox, inflab_home, tmp_path_factory):
    name = "m" + uuid.uuid4().hex[:8]
    d = tmp_path_factory.mktemp("cfg")
    cfg = d / "short.toml"  # a shorter measurement: these tests look at the flow
    (d / "pair.json").write_text(PAIR)  # the serving check's input (a test swaps in a bad one)
    # trials of one to two seconds (three of them, the default): these tests look at the flow and the record
    cfg.write_text(
        "[bench]\nmin_duration_s = 1\nmin_queries = 50\nmax_duration_s = 2\n"
        '[serve]\nstep_s = 1\nrates = [4, 8, 200]\nlatency_limit_ms = 2000\ninput = "pair.json"\n'
        "[sagemaker]\nenabled = false\n"  # tests/test_sagemaker_sandbox.py runs that exercise
    )
    r = run_cli(
        "run", "--sandbox", "--name", name, "--config", str(cfg), "--until", "benchmark", home=inflab_home, timeout=1200
    )
    return name, r


PAIR = '{"sentence1": "The cat sat on the mat", "sentence2": "A cat was sitting on the mat"}'
# TorchServe's workers on a CPU: as the direct benchmark ran (its copies x bench.workers_per_model, 2 by default)
SERVE_WORKERS = serve.workers_for("cpu", 0, 2)


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
        # independent trials, their interval around the median, and what the rest of the machine took meanwhile
        assert r["repeats"] >= 3 and r["harness"] == "inflab"
        lo, hi = r["throughput_ci95"]
        assert lo <= r["throughput_avg"] <= hi
        assert r["quality"] in ("ok", "noisy", "disturbed") and 0 <= r["interference"] <= 1
    table = report(name, inflab_home, "table")
    assert "SAMPLES/S" in table and "bert-base-cased-finetuned-mrpc" in table and "sandbox rows ran" in table
    assert "QUALITY" in table and "±95%" in table
    csv = report(name, inflab_home, "csv").splitlines()
    assert csv[0].startswith("model,precision,target,instance_type,batch_size,throughput_avg") and len(csv) == 1 + len(
        rows
    )


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
    from test_tui_wizard import wait_idle
    from textual.widgets import TabbedContent

    from inflab.tui.app import InflabApp
    from inflab.tui.panes import JobOutput

    name, _ = lab
    store.delete(name, "compile")  # make the step run again
    app = InflabApp(store, engines=Engine, mode="resume", name=name)
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
    r = run_cli(
        "run",
        "--name",
        name,
        "--from",
        "benchmark",
        "--until",
        "benchmark",
        home=inflab_home,
        timeout=600,
        env={"INFLAB_FAULT_POINT": "job:ended"},
    )
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
    r = run_cli(
        "run",
        "--name",
        name,
        "--from",
        "benchmark",
        "--until",
        "benchmark",
        home=inflab_home,
        timeout=600,
        env={"INFLAB_FAULT_POINT": "benchmark:results-stored"},
    )
    assert r.returncode == 137, r.stdout[-2000:] + r.stderr[-2000:]
    stored = _bench_rows(store, name)
    assert len(stored) == len(set(stored))

    r = run_cli("run", "--name", name, "--until", "benchmark", home=inflab_home, timeout=600)

    assert r.returncode == 0, r.stderr
    assert "collected already" in r.stdout and "│" not in r.stdout, "no second benchmark"
    assert _bench_rows(store, name) == stored
    rows = report(name, inflab_home)
    assert len({row["run_id"] for row in rows}) == len(rows), "the report tells the runs apart"


# ------------------------------------------------------------------------------ serving
@pytest.fixture(scope="module")
def served(lab, inflab_home):
    name, _ = lab
    r = run_cli("run", "--name", name, "--until", "load-test", home=inflab_home, timeout=600)
    return name, r


def instance_dir(store, home: Path, name: str) -> Path:
    return home / "sandbox" / "instances" / store.get(name, "host")["instance_id"]


def torchserve_frontends(inside: Path) -> list[int]:
    """Pids of TorchServe frontends (java ... org.pytorch.serve.ModelServer) started under ``inside``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if b"org.pytorch.serve.ModelServer" in argv and cwd.startswith(str(inside)):
            pids.append(int(entry.name))
    return pids


def test_served_until_load_test_exits_0_with_the_check_and_the_load_on_screen(served):
    name, r = served
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    out = r.stdout
    assert f"TorchServe is up: {SERVE_WORKERS} worker(s) READY" in out
    assert "WORKER  STATUS" in out and "READY" in out, "the management API's answer as a table"
    assert "Prediction: " in out and "paraphrase" in out
    assert "runs on the instance, beside the server" in out
    assert "│ [load] 4/s offered" in out, "the generator's output streamed live"
    assert f"Session {name}: done up to load-test." in out


def test_the_report_has_served_rows_with_rates_percentiles_errors_and_overhead(served, inflab_home):
    name, _ = served
    doc = json.loads(run_cli("report", name, "--format", "json", home=inflab_home).stdout)
    served_rows = [r for r in doc["rows"] if r["served"]]
    direct = {r["run_id"]: r for r in doc["rows"] if not r["served"]}
    assert served_rows, "served rows in the report"
    assert [r["offered_rps"] for r in served_rows][:2] == [4, 8], "rising rates, as configured"
    for r in served_rows:
        assert r["runtime"] == "torchserve" and r["batch_size"] == 8 and r["n_models"] == SERVE_WORKERS
        assert r["threads"] == max(1, len(os.sched_getaffinity(0)) // SERVE_WORKERS)  # the direct benchmark's threads
        assert 0 < r["generator_cpu_share"] < 1 and r["phase"] in ("rise", "repeat", "bisect")
        assert r["throughput_avg"] > 0 and r["errors"] == 0
        assert r["latency_ms_p50"] <= r["latency_ms_p90"] <= r["latency_ms_p99"]
        base = direct[r["direct_run_id"]]
        assert base["precision"] == "fp32" and base["batch_size"] == 8
        assert r["overhead_ms_p50"] == pytest.approx(r["latency_ms_p50"] - base["latency_ms_p50"])
    (summary,) = doc["serving"]
    last = served_rows[-1]
    assert last["offered_rps"] < 200 or not last["meets_limit"] or summary["stop_reason"].startswith("every rate"), (
        "the rates stop rising at the limit"
    )
    met = [r["offered_rps"] for r in served_rows if r["meets_limit"]]
    assert summary["highest_rate_meeting_limit"] == (max(met) if met else None)
    assert doc["recommendation"]["fastest"]["served"] is False, "the recommendation stays on the direct runs"
    table = run_cli("report", name, home=inflab_home).stdout
    assert "Served by TorchServe:" in table and "OVERHEAD MS" in table and "highest rate meeting p99" in table


def test_the_security_group_opens_only_ssh(served, aws):
    name, _ = served
    groups = aws("ec2").describe_security_groups(Filters=[{"Name": "tag:inflab:session", "Values": [name]}])[
        "SecurityGroups"
    ]
    assert groups
    for g in groups:
        assert [(p["IpProtocol"], p["FromPort"], p["ToPort"]) for p in g["IpPermissions"]] == [("tcp", 22, 22)]


def test_the_torchserve_keys_are_in_no_file_or_log_of_ours(served, store, inflab_home):
    name, r = served
    run_dir = instance_dir(store, inflab_home, name) / ".inflab" / "work" / "serve" / "run"
    keys = json.loads((run_dir / "key_file.json").read_text())
    secrets = [keys["inference"]["key"], keys["management"]["key"], keys["API"]["key"]]
    assert all(len(k) >= 8 for k in secrets)
    for text in (r.stdout, r.stderr):
        assert not any(k in text for k in secrets)
    looked = 0
    for root, dirs, files in os.walk(inflab_home):
        dirs[:] = [d for d in dirs if d != "images"]  # the image store: virtualenvs, made before any server
        for f in files:
            path = Path(root) / f
            if path == run_dir / "key_file.json" or not path.is_file():
                continue
            data = path.read_bytes()
            looked += 1
            assert not any(k.encode() in data for k in secrets), f"a TorchServe key in {path}"
    assert looked > 20  # the store, the session's files, the job logs, TorchServe's own logs


def test_a_bad_input_is_a_clear_error_in_the_check_step(served, inflab_home, tmp_path):
    name, _ = served
    from inflab.session import Store

    good = Store(inflab_home).get_session(name).config["serve"]["input"]
    Path(good).write_text("hello, this is not a sentence pair")
    try:
        r = run_cli(
            "run", "--name", name, "--from", "serve-check", "--until", "serve-check", home=inflab_home, timeout=180
        )
    finally:
        Path(good).write_text(PAIR)
    assert r.returncode == 1, r.stdout[-2000:]
    assert "TorchServe answered HTTP 400" in r.stdout and "sentence1 and sentence2" in r.stdout
    assert "got no answer within" not in r.stdout  # TorchServe's answer, not a wait for one
    r = run_cli("run", "--name", name, "--until", "serve-check", home=inflab_home, timeout=180)
    assert r.returncode == 0 and "Prediction: " in r.stdout, r.stdout[-2000:]


async def test_the_tui_shows_the_management_answer_and_a_prediction(served, store):
    from test_tui_wizard import wait_idle

    from inflab.tui.app import InflabApp
    from inflab.tui.widgets import LogPane

    name, _ = served
    store.delete(name, "serve_check")  # make the step run again, on screen
    app = InflabApp(store, engines=Engine, mode="resume", name=name)
    async with app.run_test(size=(160, 48)) as pilot:
        wizard = app.screen
        await wait_idle(pilot, wizard, timeout=120)
        steps = wizard.query_one("#steps")
        steps.highlighted = steps.get_option_index("serve-check")
        await pilot.press("r")
        await wait_idle(pilot, wizard, timeout=180)
        assert "✓" in str(steps.get_option("serve-check").prompt)
        text = "\n".join(wizard.query_one("#log", LogPane).history)
        assert "WORKER  STATUS" in text and "READY" in text
        assert "Prediction: " in text and "paraphrase" in text


def test_killed_during_the_load_test_the_rerun_has_one_server_and_stores_the_results_once(served, store, inflab_home):
    name, _ = served
    home = instance_dir(store, inflab_home, name)
    assert len(torchserve_frontends(home)) == 1
    before = [r["data"]["run_id"] for r in store.results(name, "served")]
    env = dict(os.environ, INFLAB_HOME=str(inflab_home), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "inflab.cli", "run", "--name", name, "--from", "load-test", "--until", "load-test"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            if "[load] 4/s offered" in line or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGKILL)  # mid-run, between two rates
    finally:
        proc.wait(30)
    job = store.get(name, "jobs")["load-test"]
    assert job not in before and store.job(name, job)["status"] == "running"

    r = run_cli("run", "--name", name, "--until", "load-test", home=inflab_home, timeout=300)

    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "Already done" in r.stdout.split("load-test")[0], "serve was found running, not started again"
    assert "reattached at byte" in r.stdout
    assert len(torchserve_frontends(home)) == 1, "no second server"
    runs = [r["data"]["run_id"] for r in store.results(name, "served")]
    assert runs == before + [job], "the interrupted load test's results, once"


def test_serve_stop_stops_the_server(served, store, inflab_home):
    name, _ = served
    home = instance_dir(store, inflab_home, name)
    r = run_cli("run", "--name", name, "--until", "serve-stop", home=inflab_home, timeout=180)
    assert r.returncode == 0, r.stdout[-2000:]
    assert "Stopped TorchServe" in r.stdout
    deadline = time.monotonic() + 15
    while torchserve_frontends(home) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert torchserve_frontends(home) == []


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
        not x["repositoryName"].endswith(name) for x in aws("ecr").describe_repositories()["repositories"]
    )
