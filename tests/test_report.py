"""The report: cost per million inferences, one row per run, and the four export formats."""

from __future__ import annotations

import csv
import io
import json

import pytest

from inflab import report
from inflab.remote.payload.result import BenchResult, SchemaError, Window


def result(**changes) -> dict:
    """A benchmark result's JSON object, as the harness writes it; ``changes`` by attribute name."""
    fields = dict(
        run_id="1a2b3c4d", timestamp="2026-05-01T12:00:00+00:00", label="lab1", runtime="aws",
        instance_type="inf1.2xlarge", model_filename="bert_inf1_b8.pt", family="bert",
        name="bert-base-cased-finetuned-mrpc", size="full", precision="fp32", target="inf1", weights="pretrained",
        batch_size=8, n_models=4, workers_per_model=2, mode="closed", target_rate=None,
        throughput_avg=1000.0, throughput_peak=1010.0, latency_ms_p0=40.0, latency_ms_p50=58.0,
        latency_ms_p90=61.0, latency_ms_p95=62.5, latency_ms_p99=70.0, latency_ms_p99_9=80.0,
        latency_ms_p100=90.0, latency_ms_max=90.0, latency_ms_mean=58.5, total_infs=1250, total_samples=10000,
        duration_s=10.0, stable=True, stop_reason="stable", load_avg_ms=900.0, warmup_avg_ms=60.0,
        windows=[Window(t=1.0, queries=125, throughput=1000.0)], models=[], settings={}, system={},
    )
    fields.update(changes)
    return BenchResult(**fields).to_dict()


# ---------------------------------------------------------------- cost per million

@pytest.mark.parametrize("price, throughput, expected", [
    (0.362, 1000, 0.100556),  # 0.362 $/h / (1,000/s x 3,600 s/h) x 1e6
    (0.228, 250, 0.253333),  # 0.228 / 900,000 x 1e6
    (1.18, 10_000, 0.032778),  # 1.18 / 36,000,000 x 1e6
    (0.7582, 1, 210.611111),  # 0.7582 / 3,600 x 1e6
])
def test_cost_per_million_matches_hand_computed_figures(price, throughput, expected):
    assert report.cost_per_million(price, throughput) == pytest.approx(expected, abs=5e-7)


def test_cost_per_million_is_none_without_a_price_or_a_throughput():
    assert report.cost_per_million(None, 1000) is None
    assert report.cost_per_million(0.362, 0) is None


# ---------------------------------------------------------------- rows

def test_a_priced_row_carries_price_cost_and_source():
    row = report.row(result())
    assert row["price_per_hour"] == 0.362 and row["cost_per_million"] == pytest.approx(0.100556, abs=5e-7)
    assert row["price_source"] == report.PRICE_SOURCE
    assert row["models_x_workers"] == "4×2" and row["latency_ms_p99.9"] == 80.0
    assert (row["run_id"], row["timestamp"]) == ("1a2b3c4d", "2026-05-01T12:00:00+00:00")


def test_a_row_without_a_price_has_no_cost():
    row = report.row(result(instance_type="sandbox", runtime="sandbox", size="tiny", weights="random"))
    assert row["price_per_hour"] is None and row["cost_per_million"] is None and row["price_source"] is None
    assert row["sandbox"] is True and row["model"] == "bert-base-cased-finetuned-mrpc (tiny)"


def test_a_result_missing_a_required_field_is_refused_by_name():
    data = result()
    del data["throughput_avg"], data["latency_ms_p99.9"]
    with pytest.raises(SchemaError, match="missing required fields: throughput_avg, latency_ms_p99.9"):
        report.row(data)
    with pytest.raises(SchemaError, match="'format': 'inflab-bench/1'"):
        report.row(result() | {"format": "inflab-bench/1"})
    with pytest.raises(SchemaError, match="'batch_size': expected int, got '8'"):
        report.row(result() | {"batch_size": "8"})


# ---------------------------------------------------------------- rendering

@pytest.fixture
def rows():
    return [report.row(result()),
            report.row(result(run_id="5e6f7a8b", timestamp="2026-05-01T13:00:00+00:00", throughput_avg=2000.0)),
            report.row(result(instance_type="sandbox", runtime="sandbox", run_id="99aa00bb"))]


def test_table_shows_price_cost_and_run_per_row(rows):
    lines = report.render(rows, "table").splitlines()
    assert lines[0].endswith("$/HOUR  $/1M INF  RUN")
    first, second, sandbox = lines[1:4]
    assert first.split()[-3:] == ["0.3620", "0.1006", "1a2b3c4d"]
    assert second.split()[-3:] == ["0.3620", "0.0503", "5e6f7a8b"]  # same configuration, another run
    assert sandbox.split()[-3:] == ["-", "-", "99aa00bb"]
    assert f"Prices: {report.PRICE_SOURCE}." in lines and any("sandbox rows ran" in line for line in lines)


def test_markdown_has_the_cost_cells(rows):
    lines = report.render(rows, "md").splitlines()
    assert lines[0].endswith("| $/HOUR | $/1M INF | RUN |")
    assert lines[2].endswith("| 0.3620 | 0.1006 | 1a2b3c4d |")
    assert lines[3].endswith("| 0.3620 | 0.0503 | 5e6f7a8b |")
    assert lines[4].endswith("| - | - | 99aa00bb |")


def test_csv_has_cost_run_id_and_time(rows):
    table = list(csv.DictReader(io.StringIO(report.render(rows, "csv"))))
    assert [float(r["cost_per_million"]) for r in table[:2]] == pytest.approx([0.100556, 0.050278], abs=5e-7)
    assert table[2]["cost_per_million"] == "" and table[2]["price_per_hour"] == ""
    assert [r["run_id"] for r in table] == ["1a2b3c4d", "5e6f7a8b", "99aa00bb"]
    assert table[1]["timestamp"] == "2026-05-01T13:00:00+00:00"


def test_json_has_cost_run_id_and_time(rows):
    data = json.loads(report.render(rows, "json"))
    assert [r["cost_per_million"] for r in data[:2]] == pytest.approx([0.100556, 0.050278], abs=5e-7)
    assert data[2]["cost_per_million"] is None and data[0]["price_per_hour"] == 0.362
    assert [(r["run_id"], r["timestamp"]) for r in data[:2]] == [
        ("1a2b3c4d", "2026-05-01T12:00:00+00:00"), ("5e6f7a8b", "2026-05-01T13:00:00+00:00")]


def test_a_long_run_id_is_shortened_in_the_table_only():
    long_id = "lab1-benchmark-2026-05-01"
    one = [report.row(result(run_id=long_id))]
    assert report.render(one, "table").splitlines()[1].split()[-1] == "lab1-benchm…"
    assert json.loads(report.render(one, "json"))[0]["run_id"] == long_id
