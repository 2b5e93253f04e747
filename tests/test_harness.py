"""The benchmark harness (inflab/remote/payload/bench.py), run the way a host runs it: as a
script in a subprocess, on tiny models from tests/data/harness_models.py (they sleep, so their
speed is known) and on a real TorchScript model. Durations are short (1 s, 0.25 s windows).

The stop rule is proved on synthetic windows fed to the harness's own merge loop; the real runs
are checked against that rule, and their latencies only from below (a call never returns before
its model's sleep; a busy machine wakes it later), so a loaded machine slows them, never fails them.
"""

from __future__ import annotations

import base64
import ctypes
import dataclasses
import json
import os
import queue
import signal
import subprocess
import sys
import time
from array import array
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from inflab.remote.payload import bench as harness, targets
from inflab.remote.payload.bench import percentile
from inflab.remote.payload.result import FORMAT, BenchResult, SchemaError

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "inflab" / "remote" / "payload" / "bench.py"
MODELS = ROOT / "tests" / "data" / "harness_models.py"
# One trial: these tests look at one trial's stop rule and process set-up (repeats: test_trust.py).
FAST = ["--min-duration", "1", "--window", "0.25", "--min-queries", "20", "--max-duration", "10", "--repeats", "1"]

pytestmark = pytest.mark.slow  # the harness runs real models in worker processes


def model(func: str) -> str:
    return f"py:{MODELS}:{func}"


def bench(tmp_path: Path, *args: str, env: dict | None = None, out: bool = True, timeout: float = 60):
    """Run the harness; returns (completed process, result dict or None)."""
    result = tmp_path / "result.json"
    cmd = [sys.executable, str(BENCH), *args] + (["--out", str(result)] if out else [])
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, cwd=tmp_path, env={**os.environ, **(env or {})}
    )
    data = json.loads(result.read_text()) if out and proc.returncode == 0 else None
    return proc, data


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


# ---------------------------------------------------------------- percentiles


def test_percentiles_match_hand_computed_values():
    one_to_ten = list(range(1, 11))
    expected = {0: 1, 50: 5.5, 90: 9.1, 95: 9.55, 99: 9.91, 99.9: 9.991, 100: 10}
    for p, value in expected.items():
        assert percentile(one_to_ten, p) == pytest.approx(value), p

    uneven = [1, 2, 4, 8, 100]  # ranks 0..4; p90 -> rank 3.6 -> 8 + 0.6 * 92
    for p, value in {10: 1.4, 25: 2, 50: 4, 90: 63.2, 99: 96.32, 100: 100}.items():
        assert percentile(uneven, p) == pytest.approx(value), p

    assert percentile([3, 3, 3, 10], 90) == pytest.approx(7.9)  # rank 2.7 -> 3 + 0.7 * 7
    assert percentile([10, 20], 75) == pytest.approx(17.5)
    assert percentile([7], 99.9) == 7
    with pytest.raises(ValueError):
        percentile([], 50)


# ---------------------------------------------------------------- stop rule


@pytest.fixture(scope="module")
def steady_run(tmp_path_factory):
    """One steady run at batch 3, shared by the tests that only read its result."""
    proc, data = bench(
        tmp_path_factory.mktemp("steady"),
        model("steady"),
        *FAST,
        "--batch-size",
        "3",
        "--instance-type",
        "inf1.xlarge",
        "--label",
        "lab1",
        "--runtime",
        "aws",
    )
    ok(proc)
    return proc, data


class _ModelProcess:
    """Stands in for a model process in :func:`harness.measure`: asked only why it stopped."""

    def failure(self, what):
        return AssertionError(f"the harness wanted a window after the last one fed: it did not stop ({what})")


def stop_rule(queries: list[int], *flags: str) -> dict:
    """The harness's merge loop and stop rule (``bench.measure``) run on synthetic windows from one
    model process: window k (0.25 s, exactly) completes ``queries[k - 1]`` calls of 2 ms, batch 1,
    so its throughput is 4 x that count."""
    args, _ = harness.parse_args(["py:m.py:f", "--window", "0.25", *flags])
    events: queue.Queue = queue.Queue()
    for k, n in enumerate(queries, 1):
        lat = base64.b64encode(array("q", [2_000_000] * n).tobytes()).decode()
        events.put((0, {"event": "window", "k": k, "t": k * 0.25, "n": n, "lat": lat}))
    events.put((0, None))  # the process is gone: a window more is a failure, not a hang
    return harness.measure(args, [_ModelProcess()], events, 1, 1)


def test_stop_rule_stops_once_three_windows_agree_but_not_before_min_duration(capsys):
    m = stop_rule([100] * 40, "--min-duration", "1", "--min-queries", "20", "--max-duration", "10")
    assert m["stop_reason"] == "stable" and m["stable"] is True
    # three equal windows by 0.75 s, but min-duration is 1 s: it stops at the 4th window, not later
    assert [w.t for w in m["windows"]] == [0.25, 0.5, 0.75, 1.0]
    assert [w.throughput for w in m["windows"]] == [400.0] * 4 and len(m["latencies"]) == 400
    assert m["duration_s"] == 1.0
    lines = capsys.readouterr().out.splitlines()
    assert [line.rsplit("(", 1)[1] for line in lines] == [
        "waiting for: duration, stability)",
        "waiting for: duration, stability)",
        "waiting for: duration)",
        "stopping: stable)",
    ]


def test_stop_rule_needs_the_last_three_windows_within_the_stability_bound():
    # samples/s 400, 200, 400, 400, 444, 400, 400, 440, 420: three windows 11% apart are not stable,
    # 10% apart are (spread: (max - min) / mean of the last three)
    queries = [100, 50, 100, 100, 111, 100, 100, 110, 105] + [100] * 30
    fixed = ("--min-duration", "1", "--min-queries", "20", "--max-duration", "10")
    m = stop_rule(queries, *fixed)
    assert m["stop_reason"] == "stable" and m["windows"][-1].t == 2.0  # the 8th window: 400, 400, 440
    assert stop_rule(queries, *fixed, "--stability", "0.2")["windows"][-1].t == 1.25  # 400, 400, 444
    assert stop_rule(queries, *fixed, "--stability", "0.05")["windows"][-1].t == 2.75  # 420, 400, 400: within 5%


def test_stop_rule_waits_for_min_queries_past_min_duration():
    m = stop_rule([5] * 40, "--min-duration", "0.25", "--min-queries", "60", "--max-duration", "10")
    assert m["stop_reason"] == "stable" and len(m["latencies"]) == 60  # 12 windows of 5 calls
    assert m["windows"][-1].t == 3.0


def test_stop_rule_stops_at_max_duration_when_throughput_never_settles(capsys):
    m = stop_rule([100, 100, 40, 40] * 10, "--min-duration", "1", "--min-queries", "20", "--max-duration", "2.5")
    assert m["stop_reason"] == "max-duration" and m["stable"] is False
    assert [w.t for w in m["windows"]][-1] == 2.5 and len(m["windows"]) == 10  # at max-duration, not later
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].endswith("(waiting for: stability)") and lines[-1].endswith("(stopping: max duration)")


def where_the_rule_stops(windows: list[dict], min_duration: float, min_queries: int, max_duration: float):
    """(windows measured, stop reason) by the stop rule, replayed on a run's recorded windows."""
    done = 0
    for k, w in enumerate(windows, 1):
        done += w["queries"]
        last = [x["throughput"] for x in windows[max(0, k - 3) : k]]
        settled = len(last) == 3 and (max(last) - min(last)) / (sum(last) / len(last)) <= 0.10
        if w["t"] >= min_duration - 1e-9 and done >= min_queries and settled:
            return k, "stable"
        if w["t"] >= max_duration - 1e-9:
            return k, "max-duration"
    return None, "still running"


def test_steady_model_stops_where_the_stop_rule_says(steady_run):
    proc, data = steady_run
    windows = data["windows"]
    # FAST: min-duration 1 s, min-queries 20, max-duration 10 s. A steady model is stable soon after
    # 1 s on a quiet machine; on a busy one the windows may wander until 10 s. Either way the run
    # ends at the first window where the rule holds, not before and not after.
    assert where_the_rule_stops(windows, 1.0, 20, 10.0) == (len(windows), data["stop_reason"])
    assert data["stable"] is (data["stop_reason"] == "stable")
    assert 1.0 <= windows[-1]["t"] <= 10.0 and data["duration_s"] >= 1.0
    # a live log line per window, and a readable summary at the end
    assert proc.stdout.count("samples/s  p50") == len(data["windows"])
    why = "stable (last 3 windows within 10%)" if data["stable"] else "max duration 10 s reached before stability"
    assert f"stopped     {why}" in proc.stdout and "p99" in proc.stdout


def test_shifting_model_runs_to_max_duration_and_says_unstable(tmp_path):
    proc, data = bench(
        tmp_path,
        model("shifting"),
        "--min-duration",
        "1",
        "--max-duration",
        "2.5",
        "--window",
        "0.25",
        "--min-queries",
        "10",
        "--repeats",
        "1",
    )
    ok(proc)
    assert data["stable"] is False and data["stop_reason"] == "max-duration"
    assert len(data["windows"]) == 10 and data["windows"][-1]["t"] == 2.5  # stopped at max-duration
    assert data["duration_s"] >= 2.45
    assert "waiting for: stability" in proc.stdout


def test_min_queries_keeps_a_slow_model_running_past_min_duration(tmp_path):
    proc, _ = bench(
        tmp_path,
        model("slow"),
        "--workers",
        "1",
        "--min-duration",
        "0.25",
        "--window",
        "0.25",
        "--min-queries",
        "60",
        "--repeats",
        "1",
        out=False,
    )
    ok(proc)
    data = json.loads((tmp_path / "bench.json").read_text())  # a py: model's default: bench.json here
    assert data["total_infs"] >= 60
    assert data["duration_s"] >= 1.1  # 60 calls of 20 ms cannot fit in less
    # in ms (µs would read 20,000): a call sleeps 20 ms; a busy machine wakes it later, never sooner
    assert 20 <= data["latency_ms_p50"] < 1000


# ---------------------------------------------------------------- open loop


def test_open_loop_counts_queueing_delay_closed_loop_does_not(tmp_path):
    common = [model("service10"), "--workers", "1", "--n-models", "1", *FAST]
    proc, closed = bench(tmp_path, *common)
    ok(proc)
    proc, opened = bench(tmp_path, *common, "--mode", "open", "--rate", "130", "--seed", "3")
    ok(proc)
    # closed loop, one worker: calls run back to back, so the latencies fit end to end in the run
    # (the median is at most twice the mean time per call): just the service time, no waiting
    assert 10 <= closed["latency_ms_p50"] <= 2 * 1000 * closed["duration_s"] / closed["total_infs"]
    # 130 arrivals/s at a ~100/s server: the queue grows, and the wait is part of latency
    assert opened["latency_ms_p50"] > 3 * closed["latency_ms_p50"]
    assert opened["latency_ms_p90"] > opened["latency_ms_p50"]
    assert opened["mode"] == "open" and opened["target_rate"] == 130
    assert opened["throughput_avg"] < 115  # cannot serve faster than it is able to


# ---------------------------------------------------------------- processes and pinning


def _records(directory: Path) -> list[dict]:
    return sorted((json.loads(p.read_text()) for p in directory.glob("*.json")), key=lambda r: r["pid"])


@pytest.mark.parametrize("target", ["inf1", "cpu"])
def test_one_pinned_process_per_model(tmp_path, target):
    records = tmp_path / "records"
    records.mkdir()
    proc, data = bench(
        tmp_path,
        model("recorder"),
        "--target",
        target,
        "--n-models",
        "2",
        *FAST,
        env={"HARNESS_RECORD_DIR": str(records)},
    )
    ok(proc)
    seen = _records(records)
    assert len({r["pid"] for r in seen}) == 2 and os.getpid() not in {r["pid"] for r in seen}
    by_pid = {r["pid"]: r for r in seen}
    assert data["n_models"] == 2 and [m["index"] for m in data["models"]] == [0, 1]
    for m in data["models"]:
        got = by_pid[m["pid"]]
        assert m["queries"] > 0
        if target == "inf1":
            assert got["NEURON_RT_VISIBLE_CORES"] == str(m["index"])
            assert m["env"] == {"NEURON_RT_VISIBLE_CORES": str(m["index"])}
        else:
            assert m["env"] == {"INFLAB_CPU_CORES": got["INFLAB_CPU_CORES"]}
            assert got["affinity"] == [int(c) for c in got["INFLAB_CPU_CORES"].split(",")]
    if target == "inf1":
        assert sorted(r["NEURON_RT_VISIBLE_CORES"] for r in seen) == ["0", "1"]
    elif len(os.sched_getaffinity(0)) >= 2:  # each copy gets its own slice of the cores
        slices = [set(r["affinity"]) for r in seen]
        assert slices[0] and slices[1] and not slices[0] & slices[1]


def test_cpu_slices_are_disjoint_even_and_use_every_core():
    five = list(range(5))
    assert [targets.cpu_slice(five, i, 2) for i in range(2)] == [[0, 1], [2, 3, 4]]
    assert [targets.cpu_slice(five, i, 5) for i in range(5)] == [[0], [1], [2], [3], [4]]
    assert [targets.cpu_slice([0, 1], i, 3) for i in range(3)] == [[0], [0], [1]]  # more copies than cores
    assert targets.cpu_slice([2, 3], 0, 1) == [2, 3]


TEAM_PROBE = """
import ctypes, json, os, threading

def probe(batch_size, target):
    import torch

    team = ctypes.CDLL(None).omp_get_max_threads  # the calling thread's OpenMP team size
    seen = set()

    def call(*inputs):
        me = threading.get_ident()
        if me not in seen:  # before any torch call in this thread
            seen.add(me)
            with open(os.path.join(os.environ["HARNESS_RECORD_DIR"], f"{os.getpid()}-{me}.json"), "w") as f:
                json.dump({"team": team(), "affinity": sorted(os.sched_getaffinity(0))}, f)
        return torch.ones(4).sum()
    return call, ()
"""


@pytest.mark.parametrize(
    "extra, expected",
    [
        ([], lambda cores: max(1, cores // 2)),  # by default its cores are shared by its 2 workers
        (["--intra-op-threads", "3"], lambda cores: 3),
    ],
)
def test_every_worker_thread_runs_the_intra_op_team_it_was_given(tmp_path, extra, expected):
    pytest.importorskip("torch")
    try:
        ctypes.CDLL(None).omp_get_max_threads
    except AttributeError:
        pytest.skip("torch is not built with OpenMP here")
    (tmp_path / "team.py").write_text(TEAM_PROBE)
    records = tmp_path / "records"
    records.mkdir()
    proc, data = bench(
        tmp_path,
        f"py:{tmp_path / 'team.py'}:probe",
        "--workers",
        "2",
        "--n-models",
        "1",
        *FAST,
        *extra,
        env={"HARNESS_RECORD_DIR": str(records)},
    )
    ok(proc)
    seen = [json.loads(p.read_text()) for p in records.glob("*.json")]
    assert len(seen) == 2  # one record per worker thread
    cores = len(seen[0]["affinity"])
    assert [r["team"] for r in seen] == [expected(cores)] * 2
    assert data["models"][0]["threads"] == expected(cores)


# ---------------------------------------------------------------- the result record


def json_keys(record) -> set[str]:
    return {f.metadata.get("key", f.name) for f in dataclasses.fields(record)}


def test_result_json_is_the_schema_with_every_field(steady_run):
    proc, data = steady_run
    result = BenchResult.from_dict(data)
    assert set(data) == json_keys(BenchResult)  # every field written, nothing beside the schema
    assert result.to_dict() == data  # and read back unchanged
    assert all(set(w) == json_keys(result.windows[0]) for w in data["windows"])
    assert all(set(m) == json_keys(result.models[0]) for m in data["models"])
    assert data["format"] == FORMAT == "inflab-bench/2"
    # what the caller passed, and what the harness made up: nobody patches the result afterwards
    assert (result.instance_type, result.label, result.runtime) == ("inf1.xlarge", "lab1", "aws")
    assert result.system["instance_type"] == "inf1.xlarge" and "packages" in result.system
    assert len(result.run_id) == 8 and int(result.run_id, 16) >= 0 and f"(run {result.run_id})" in proc.stdout
    started = datetime.fromisoformat(result.timestamp)
    assert started.utcoffset() == timedelta(0) and abs(datetime.now(timezone.utc) - started) < timedelta(hours=1)


def test_result_values_are_consistent(steady_run):
    _, data = steady_run
    r = BenchResult.from_dict(data)
    assert r.pipeline_size == 1 and r.workers_per_model == 2 and r.batch_size == 3 and r.n_models == 1
    assert r.neuronperf is None and r.target_rate is None and r.mode == "closed" and not r.sandbox
    lat = [
        r.latency_ms_p0,
        r.latency_ms_p50,
        r.latency_ms_p90,
        r.latency_ms_p95,
        r.latency_ms_p99,
        r.latency_ms_p99_9,
        r.latency_ms_max,
    ]
    assert (
        lat == sorted(lat) and r.latency_ms_max == r.latency_ms_p100 and data["latency_ms_p99.9"] == r.latency_ms_p99_9
    )
    # per call, in ms (per sample would read 0.67, µs 2,000): the model sleeps 2 ms; never sooner
    assert 2 <= r.latency_ms_p50 < 1000
    assert r.total_samples == 3 * r.total_infs
    assert r.throughput_avg == pytest.approx(r.total_samples / r.duration_s, rel=1e-6)
    assert r.throughput_peak == max(w.throughput for w in r.windows) >= r.throughput_avg * 0.999
    assert sum(w.queries for w in r.windows) == r.total_infs == sum(m.queries for m in r.models)
    cores = len(os.sched_getaffinity(0))
    assert [m.threads for m in r.models] == [max(1, cores // 2)]  # its cores shared by its 2 workers


def test_a_result_missing_a_required_field_is_a_clear_error(steady_run):
    _, data = steady_run
    broken = {k: v for k, v in data.items() if k not in ("run_id", "latency_ms_p99.9")}
    with pytest.raises(SchemaError, match=r"^benchmark result is missing required fields: run_id, latency_ms_p99\.9$"):
        BenchResult.from_dict(broken)
    windows = [{"t": 0.25, "queries": 3}]
    with pytest.raises(SchemaError, match=r"field 'windows'\[0\] is missing required field: throughput$"):
        BenchResult.from_dict(data | {"windows": windows})
    with pytest.raises(SchemaError, match=r"field 'stable': expected bool, got 'yes'$"):
        BenchResult.from_dict(data | {"stable": "yes"})
    # keys it does not know (a newer writer's, a caller's) are no error
    assert BenchResult.from_dict(data | {"session": "lab1"}).to_dict() == data


# ---------------------------------------------------------------- a real TorchScript model


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.trace/save say they are deprecated
def test_torchscript_model_with_manifest(tmp_path):
    torch = pytest.importorskip("torch")
    net = torch.nn.Linear(16, 4).eval()
    path = tmp_path / "linear_cpu_fp32_b4.pt"
    torch.jit.save(torch.jit.trace(net, torch.randn(4, 16)), str(path))
    manifest = {
        "format": "inflab-model/1",
        "family": "linear",
        "name": "tiny-linear",
        "size": "tiny",
        "weights": "random",
        "target": "cpu",
        "precision": "fp32",
        "batch_size": 4,
        "file": path.name,
        "inputs": [{"name": "x", "shape": [4, 16], "dtype": "float32"}],
    }
    path.with_suffix(".json").write_text(json.dumps(manifest))
    proc, _ = bench(
        tmp_path,
        str(path),
        "--target",
        "cpu",
        "--workers",
        "1",
        "--run-id",
        "lab1.bench-2",
        "--runtime",
        "sandbox",
        *FAST,
        out=False,
    )
    ok(proc)
    data = json.loads((tmp_path / "linear_cpu_fp32_b4.bench.json").read_text())  # default: beside the model
    r = BenchResult.from_dict(data)
    assert r.batch_size == 4 and r.total_samples == 4 * r.total_infs
    assert r.throughput_avg > 0 and r.model_filename == path.name
    from_manifest = (r.family, r.name, r.size, r.precision, r.weights, r.target)
    assert from_manifest == ("linear", "tiny-linear", "tiny", "fp32", "random", "cpu")
    assert r.run_id == "lab1.bench-2" and r.sandbox

    # the manifest fixes target and batch size: a flag that disagrees is refused
    proc, _ = bench(tmp_path, str(path), "--batch-size", "8", out=False)
    assert proc.returncode == 2 and "--batch-size" in proc.stderr and "batch 4" in proc.stderr
    path.with_suffix(".json").unlink()
    proc, _ = bench(tmp_path, str(path), out=False)
    assert proc.returncode == 2 and "no manifest linear_cpu_fp32_b4.json" in proc.stderr


# ---------------------------------------------------------------- bad input and failures


@pytest.mark.parametrize(
    "args, flag",
    [
        (["STEADY", "--workers", "0"], "--workers"),
        (["STEADY", "--workers", "two"], "--workers"),
        (["STEADY", "--target", "tpu"], "--target"),
        (["STEADY", "--window", "-1"], "--window"),
        (["STEADY", "--mode", "open"], "--rate"),
        (["STEADY", "--min-duration", "5", "--max-duration", "2"], "--max-duration"),
        (["STEADY", "--stability"], "--stability"),
        (["STEADY", "--run-id", "two words"], "--run-id"),
        (["STEADY", "--run-id", ""], "--run-id"),
        (["STEADY", "--intra-op-threads", "-1"], "--intra-op-threads"),
        (["STEADY", "--frobnicate"], "--frobnicate"),
        (["missing.pt"], "MODEL"),
        (["py:missing.py:f"], "MODEL"),
    ],
)
def test_bad_flags_exit_2_with_one_line(tmp_path, args, flag):
    proc, _ = bench(tmp_path, *[model("steady") if a == "STEADY" else a for a in args], out=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "bench.json").exists()


def test_model_that_fails_to_load_is_a_clear_error(tmp_path):
    proc, _ = bench(tmp_path, model("broken"), *FAST, out=False)
    assert proc.returncode == 1
    assert "model process 0" in proc.stderr and "weights file is corrupt" in proc.stderr
    assert not (tmp_path / "bench.json").exists()


def test_crash_during_measurement_shows_stderr_tail_and_ends_the_others(tmp_path):
    records = tmp_path / "records"
    records.mkdir()
    proc, _ = bench(
        tmp_path, model("crashes_later"), *FAST, "--n-models", "2", out=False, env={"HARNESS_RECORD_DIR": str(records)}
    )
    assert proc.returncode == 1
    assert "exit code 139" in proc.stderr and "segfault in the runtime (test)" in proc.stderr
    pids = [r["pid"] for r in _records(records)]
    assert len(pids) == 2
    for pid in pids:  # the copy that did not crash was ended too, not left running
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_sigterm_ends_every_model_process(tmp_path):
    records = tmp_path / "records"
    records.mkdir()
    cmd = [
        sys.executable,
        str(BENCH),
        model("recorder"),
        "--n-models",
        "2",
        "--min-duration",
        "60",
        "--window",
        "0.25",
        "--out",
        str(tmp_path / "r.json"),
    ]
    parent = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HARNESS_RECORD_DIR": str(records)},
    )
    try:
        for line in parent.stdout:  # wait until it is measuring
            if "samples/s" in line:
                break
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=10) == 128 + signal.SIGTERM
    finally:
        parent.kill()
    pids = [r["pid"] for r in _records(records)]
    assert len(pids) == 2
    time.sleep(0.2)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # gone (reaped by the harness, so not even a zombie)
    assert not (tmp_path / "r.json").exists()
