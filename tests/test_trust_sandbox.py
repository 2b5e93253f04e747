"""The cross-check harness end to end in the sandbox: a session whose ``bench.harness`` is
``loadgen`` measures the compiled model with MLPerf LoadGen (installed in the job virtualenv from
the image's requirements) and stores a row marked as LoadGen's, with its verdict. Short: one
model (no int8), two one-second trials."""

from __future__ import annotations

import json
import uuid

import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def loadgen_lab(sandbox, inflab_home, tmp_path_factory):
    name = "lg" + uuid.uuid4().hex[:8]
    cfg = tmp_path_factory.mktemp("cfg") / "loadgen.toml"
    cfg.write_text(
        '[model]\nint8 = false\n[bench]\nharness = "loadgen"\nrepeats = 2\nmin_duration_s = 1\n'
        "min_queries = 50\nmax_duration_s = 10\n"
    )
    r = run_cli(
        "run", "--sandbox", "--name", name, "--config", str(cfg), "--until", "benchmark", home=inflab_home, timeout=1200
    )
    yield name, r
    run_cli("cleanup", name, "--yes", "--delete-data", home=inflab_home, timeout=300)


def test_a_loadgen_run_stores_a_row_marked_as_loadgens_with_its_validity(loadgen_lab, inflab_home, store):
    name, r = loadgen_lab
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "measured by MLPerf LoadGen" in r.stdout
    assert "│ [bench] loadgen: model 1 trial 1/2 Offline: " in r.stdout, "LoadGen's own verdict, streamed"
    doc = json.loads(run_cli("report", name, "--format", "json", home=inflab_home).stdout)
    (row,) = doc["rows"]
    assert row["harness"] == "loadgen" and row["validity"] in ("VALID", "INVALID") and row["repeats"] == 2
    assert row["throughput_avg"] > 0 and row["latency_ms_p50"] <= row["latency_ms_p99"]
    (stored,) = [rec["data"] for rec in store.results(name, "benchmark")]
    assert stored["loadgen"]["version"].startswith("6.0.17")
    assert [s["scenario"] for s in stored["trials"][0]["loadgen"]["scenarios"]] == ["Offline", "SingleStream"]
    table = run_cli("report", name, home=inflab_home).stdout
    assert f"loadgen {row['validity']}" in table and "HARNESS loadgen: measured by MLPerf LoadGen" in table
