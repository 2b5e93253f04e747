"""The report: cost per million inferences, one row per run, failed sweep jobs, the recommendation
under a latency limit, the cost/latency frontier, prices with their source, and the export formats."""

from __future__ import annotations

import csv
import io
import json
import os

import pytest

from inflab import config, prices, report
from inflab.aws import pricing as pricing_api
from inflab.remote.payload.result import BenchResult, SchemaError, Window


def result(**changes) -> dict:
    """A benchmark result's JSON object, as the harness writes it; ``changes`` by attribute name."""
    fields = dict(
        run_id="1a2b3c4d",
        timestamp="2026-05-01T12:00:00+00:00",
        label="lab1",
        runtime="aws",
        instance_type="inf1.2xlarge",
        model_filename="bert_inf1_b8.pt",
        family="bert",
        name="bert-base-cased-finetuned-mrpc",
        size="full",
        precision="fp32",
        target="inf1",
        weights="pretrained",
        batch_size=8,
        n_models=4,
        workers_per_model=2,
        mode="closed",
        target_rate=None,
        throughput_avg=1000.0,
        throughput_peak=1010.0,
        latency_ms_p0=40.0,
        latency_ms_p50=58.0,
        latency_ms_p90=61.0,
        latency_ms_p95=62.5,
        latency_ms_p99=70.0,
        latency_ms_p99_9=80.0,
        latency_ms_p100=90.0,
        latency_ms_max=90.0,
        latency_ms_mean=58.5,
        total_infs=1250,
        total_samples=10000,
        duration_s=10.0,
        stable=True,
        stop_reason="stable",
        load_avg_ms=900.0,
        warmup_avg_ms=60.0,
        windows=[Window(t=1.0, queries=125, throughput=1000.0)],
        models=[],
        settings={},
        system={},
    )
    fields.update(changes)
    return BenchResult(**fields).to_dict()


# ---------------------------------------------------------------- cost per million


@pytest.mark.parametrize(
    "price, throughput, expected",
    [
        (0.362, 1000, 0.100556),  # 0.362 $/h / (1,000/s x 3,600 s/h) x 1e6
        (0.228, 250, 0.253333),  # 0.228 / 900,000 x 1e6
        (1.18, 10_000, 0.032778),  # 1.18 / 36,000,000 x 1e6
        (0.7582, 1, 210.611111),  # 0.7582 / 3,600 x 1e6
    ],
)
def test_cost_per_million_matches_hand_computed_figures(price, throughput, expected):
    assert report.cost_per_million(price, throughput) == pytest.approx(expected, abs=5e-7)


def test_cost_per_million_is_none_without_a_price_or_a_throughput():
    assert report.cost_per_million(None, 1000) is None
    assert report.cost_per_million(0.362, 0) is None


# ---------------------------------------------------------------- rows


def test_a_priced_row_carries_price_cost_and_source():
    row = report.row(result())
    assert row["price_per_hour"] == 0.362 and row["cost_per_million"] == pytest.approx(0.100556, abs=5e-7)
    assert row["price_source"] == report.PRICE_SOURCE and row["price_date"] == prices.DATE and row["status"] == "ok"
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
    return [
        report.row(result()),
        report.row(result(run_id="5e6f7a8b", timestamp="2026-05-01T13:00:00+00:00", throughput_avg=2000.0)),
        report.row(result(instance_type="sandbox", runtime="sandbox", run_id="99aa00bb")),
    ]


def test_table_shows_price_cost_and_run_per_row(rows):
    lines = report.render(rows, "table").splitlines()
    assert lines[0].endswith("$/HOUR  $/1M INF  RUN")
    first, second, sandbox = lines[1:4]
    assert first.split()[-3:] == ["0.3620", "0.1006", "1a2b3c4d"]
    assert second.split()[-3:] == ["0.3620", "0.0503", "5e6f7a8b"]  # same configuration, another run
    assert sandbox.split()[-3:] == ["-", "-", "99aa00bb"]
    assert f"Prices: {report.PRICE_SOURCE}, {prices.DATE}." in lines and any(
        "sandbox rows ran" in line for line in lines
    )


def test_markdown_has_the_cost_cells(rows):
    lines = report.render(rows, "md").splitlines()
    assert lines[0].endswith("| STABLE | $/HOUR | $/1M INF | RUN |")
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
    data = json.loads(report.render(rows, "json"))["rows"]
    assert [r["cost_per_million"] for r in data[:2]] == pytest.approx([0.100556, 0.050278], abs=5e-7)
    assert data[2]["cost_per_million"] is None and data[0]["price_per_hour"] == 0.362
    assert [(r["run_id"], r["timestamp"]) for r in data[:2]] == [
        ("1a2b3c4d", "2026-05-01T12:00:00+00:00"),
        ("5e6f7a8b", "2026-05-01T13:00:00+00:00"),
    ]


def test_a_long_run_id_is_shortened_in_the_table_only():
    long_id = "lab1-benchmark-2026-05-01-with-a-long-tail-x"  # 45 characters
    one = [report.row(result(run_id=long_id))]
    assert report.render(one, "table").splitlines()[1].split()[-1] == long_id[:33] + "…"
    sweep_id = "sweep-dfcf622d-inf1.2xlarge-b2.1"  # what a sweep's run ids look like: shown whole
    assert report.render([report.row(result(run_id=sweep_id))], "table").splitlines()[1].split()[-1] == sweep_id
    assert json.loads(report.render(one, "json"))["rows"][0]["run_id"] == long_id


# ---------------------------------------------------------------- a sweep: helpers


def sweep_row(batch, throughput, p90, *, itype="inf1.2xlarge", p50=None, p99=None, run=None, **changes):
    """A sweep's measured row: one batch size on one instance type."""
    return report.row(
        result(
            run_id=run or f"sweep-{itype}-b{batch}",
            instance_type=itype,
            batch_size=batch,
            model_filename=f"bert_inf1_fp32_128_b{batch}.pt",
            throughput_avg=throughput,
            latency_ms_p50=p50 if p50 is not None else p90 * 0.9,
            latency_ms_p90=p90,
            latency_ms_p95=p90 * 1.05,
            latency_ms_p99=p99 if p99 is not None else p90 * 1.2,
            **changes,
        )
    )


def failed(batch=16, reason="Essential container in task exited; exit code 137", itype="inf1.2xlarge"):
    return report.failed_row(
        {
            "job_name": f"sweep-j-b{batch}",
            "job_id": "0f1e2d3c",
            "family": "bert",
            "target": "inf1",
            "precision": None,
            "instance_type": itype,
            "batch_size": batch,
            "reason": reason,
            "label": "lab1",
        }
    )


@pytest.fixture
def sweep():
    """inf1.2xlarge at batch 2, 4, 8 (throughput and latency rise together) and one CPU type."""
    return [
        sweep_row(2, 400.0, 20.0),
        sweep_row(4, 700.0, 35.0),
        sweep_row(8, 1000.0, 61.0),
        sweep_row(8, 300.0, 30.0, itype="c6i.4xlarge", target="cpu"),
    ]


# ---------------------------------------------------------------- rows of a sweep


def test_a_row_knows_its_input_size_from_the_compiled_model_name():
    assert sweep_row(4, 700.0, 35.0)["input_size"] == 128
    assert report.row(result(model_filename="py:tiny"))["input_size"] is None


def test_a_failed_job_is_a_row_with_its_reason_and_no_measurements():
    row = failed()
    assert row["status"] == "FAILED: Essential container in task exited; exit code 137"
    assert row["throughput_avg"] is None and row["latency_ms_p90"] is None and row["cost_per_million"] is None
    assert (row["batch_size"], row["instance_type"], row["run_id"]) == (16, "inf1.2xlarge", "sweep-j-b16")
    assert set(row) == set(report.ROW_KEYS) == set(sweep_row(2, 1.0, 1.0))
    with pytest.raises(ValueError, match="reason and batch_size"):
        report.failed_row({"batch_size": 4})


def test_session_prices_win_over_the_shipped_table_for_the_types_they_cover():
    session = prices.Prices(
        {"inf1.2xlarge": 0.5}, "AWS Pricing API, on-demand Linux, us-west-2", "2026-11-20", fallback=prices.default()
    )
    fresh = report.row(result(), session)
    assert (fresh["price_per_hour"], fresh["price_source"], fresh["price_date"]) == (
        0.5,
        "AWS Pricing API, on-demand Linux, us-west-2",
        "2026-11-20",
    )
    assert fresh["cost_per_million"] == pytest.approx(0.5 / 3.6, rel=1e-9)  # 1,000 samples/s
    shipped = report.row(result(instance_type="g5.xlarge"), session)
    assert (shipped["price_per_hour"], shipped["price_source"]) == (1.006, prices.SOURCE)


def test_a_sandbox_sweep_row_is_priced_as_the_type_it_stands_in_for(sweep):
    stand_in = report.row(result(runtime="sandbox", instance_type="inf1.2xlarge"))
    exercise = report.row(result(runtime="sandbox", instance_type="sandbox"))
    assert stand_in["price_per_hour"] == 0.362 and exercise["price_per_hour"] is None
    notes = report.render([stand_in], "table")
    assert "priced as the instance type it stands in for" in notes


class FakeStore:
    def __init__(self, results, stored_prices=None):
        self._results, self._prices = results, stored_prices

    def get(self, name, key, default=None):
        return self._prices if key == "prices" and self._prices is not None else default

    def results(self, name, kind=None):
        return [r for r in self._results if kind in (None, r["kind"])]


def test_session_rows_gather_results_and_failed_jobs_with_the_session_prices():
    store = FakeStore(
        [
            {"kind": "benchmark", "data": result(run_id="a1")},
            {
                "kind": "batch-failed",
                "data": {
                    "job_name": "sweep-x.3",
                    "family": "bert",
                    "target": "inf1",
                    "instance_type": "inf1.2xlarge",
                    "batch_size": 64,
                    "reason": "OOM",
                },
            },
            {"kind": "benchmark", "data": result(run_id="a2") | {"format": "inflab-bench/1"}},
            {"kind": "compile", "data": {}},
        ],
        {
            "source": "AWS Pricing API, on-demand Linux, us-west-2",
            "date": "2026-11-20",
            "prices": {"inf1.2xlarge": 0.4},
        },
    )
    rows, warnings = report.session_rows(store, "lab1")
    assert [(r["run_id"], r["status"]) for r in rows] == [("a1", "ok"), ("sweep-x.3", "FAILED: OOM")]
    assert rows[0]["price_per_hour"] == 0.4 and rows[0]["price_date"] == "2026-11-20"
    assert len(warnings) == 1 and "1 stored result(s) left out, written in an older format" in warnings[0]


def test_unusable_stored_prices_fall_back_to_the_shipped_table_with_a_warning():
    rows, warnings = report.session_rows(FakeStore([{"kind": "benchmark", "data": result()}], {"prices": "cheap"}), "s")
    assert rows[0]["price_source"] == prices.SOURCE
    assert warnings == [
        "session s: stored prices are not usable (expected source, date and prices); the shipped table is used"
    ]


# ---------------------------------------------------------------- the recommendation


def test_the_recommendation_follows_the_latency_limit(sweep):
    loose = report.recommend(sweep, limit_ms=100)
    assert (loose.cheapest["batch_size"], loose.fastest["batch_size"]) == (8, 8)  # $0.1006 per 1M, 1,000/s
    tight = report.recommend(sweep, limit_ms=50)
    assert tight.cheapest["run_id"] == "sweep-inf1.2xlarge-b4" and tight.fastest["run_id"] == "sweep-inf1.2xlarge-b4"
    assert tight.lines[0] == (
        "Under 50 ms p90 — cheapest and fastest: inf1.2xlarge bert fp32 batch 4, "
        f"$0.1437 per 1M inferences ({prices.SOURCE}, {prices.DATE}); 700.0 samples/s (p90 35.00 ms)"
    )
    assert "3 of 4 measured runs meet the limit." in tight.lines
    tighter = report.recommend(sweep, limit_ms=25)
    assert tighter.cheapest["batch_size"] == 2 and tighter.cheapest["instance_type"] == "inf1.2xlarge"


def test_cheapest_and_fastest_differ_when_the_fastest_costs_more():
    rows = [sweep_row(8, 1000.0, 40.0), sweep_row(8, 1500.0, 30.0, itype="g5.xlarge", target="cuda")]
    rec = report.recommend(rows, limit_ms=45)
    assert rec.cheapest["instance_type"] == "inf1.2xlarge" and rec.fastest["instance_type"] == "g5.xlarge"
    assert rec.lines[0].startswith("Under 45 ms p90 — cheapest: inf1.2xlarge bert fp32 batch 8, $0.1006 per 1M")
    assert rec.lines[1] == "Under 45 ms p90 — fastest: g5.xlarge bert fp32 batch 8, 1,500.0 samples/s (p90 30.00 ms)"


def test_the_percentile_the_limit_applies_to_matters():
    # batch 8: p50 30 ms but p99 90 ms; batch 4: p50 25 ms, p99 45 ms
    rows = [sweep_row(4, 700.0, 35.0, p50=25.0, p99=45.0), sweep_row(8, 1000.0, 40.0, p50=30.0, p99=90.0)]
    assert report.recommend(rows, 50, "p50").cheapest["batch_size"] == 8
    assert report.recommend(rows, 50, "p99").cheapest["batch_size"] == 4
    assert report.recommend(rows, 50, "p99").lines[0].startswith("Under 50 ms p99 — ")


def test_when_nothing_meets_the_limit_it_says_so_and_names_the_lowest_latency(sweep):
    rec = report.recommend(sweep, limit_ms=10)
    assert rec.cheapest is None and rec.fastest is None
    assert rec.lines[0].startswith(
        "Nothing meets 10 ms p90: the lowest p90 is 20.00 ms (inf1.2xlarge bert fp32 batch 2)."
    )


def test_failed_runs_are_left_out_of_the_recommendation(sweep):
    rows = sweep + [failed(batch=16)]
    rec = report.recommend(rows)
    assert rec.fastest["batch_size"] == 8 and all(r["status"] == "ok" for r in (rec.cheapest, rec.fastest))
    assert rec.lines[-1] == "1 failed run(s) left out (marked FAILED in the table)."
    assert report.recommend([failed()]).lines == ("No recommendation: all 1 run(s) failed.",)


def test_unpriced_runs_get_a_fastest_but_no_cheapest():
    rows = [
        report.row(result(instance_type="sandbox", runtime="sandbox", batch_size=b, throughput_avg=t, run_id=f"s{b}"))
        for b, t in ((2, 100.0), (8, 300.0))
    ]
    rec = report.recommend(rows, limit_ms=100)
    assert rec.cheapest is None and rec.fastest["batch_size"] == 8
    assert "no cheapest: no qualifying run has a price" in rec.lines[0]


def test_empty_and_one_row_recommendations_say_why():
    assert report.recommend([]).lines == ("No recommendation: nothing has been measured yet.",)
    one = report.recommend([sweep_row(4, 700.0, 35.0)])
    assert one.cheapest is one.fastest
    assert one.lines[-1] == "Only one configuration measured: sweep batch sizes or instance types to compare."


@pytest.mark.parametrize(
    "limit, percentile, message",
    [
        (0, "p90", "positive number"),
        (-5, "p90", "positive number"),
        (float("nan"), "p90", "positive number"),
        (float("inf"), "p90", "positive number"),
        (50, "p42", "not one of p50, p90, p95, p99"),
    ],
)
def test_a_bad_limit_or_percentile_is_refused(sweep, limit, percentile, message):
    with pytest.raises(ValueError, match=message):
        report.recommend(sweep, limit, percentile)


# ---------------------------------------------------------------- the frontier and sorting


def test_the_frontier_flags_the_runs_no_other_run_beats_on_cost_and_latency():
    rows = [
        sweep_row(2, 400.0, 20.0),  # fastest response, dearest: on it
        sweep_row(4, 700.0, 35.0),  # between: on it
        sweep_row(8, 1000.0, 61.0),  # cheapest: on it
        sweep_row(4, 500.0, 40.0, run="slow4"),  # dearer AND slower than batch 4: off
        sweep_row(8, 300.0, 30.0, itype="c6i.4xlarge", target="cpu"),  # $0.63 per 1M at 30 ms: off (batch 2 beats it)
        failed(),
    ]
    assert report.frontier(rows) == [True, True, True, False, False, False]


def test_the_frontier_depends_on_the_percentile():
    rows = [sweep_row(4, 700.0, 35.0, p99=90.0), sweep_row(4, 600.0, 36.0, p99=40.0, run="other")]
    assert report.frontier(rows, "p90") == [True, False]
    assert report.frontier(rows, "p99") == [True, True]


def test_unpriced_runs_are_placed_by_throughput_against_latency():
    def sandbox(b, t, p90):
        return report.row(
            result(
                instance_type="sandbox",
                runtime="sandbox",
                batch_size=b,
                throughput_avg=t,
                latency_ms_p90=p90,
                run_id=f"s{b}",
            )
        )

    rows = [sandbox(2, 100.0, 10.0), sandbox(4, 90.0, 20.0), sandbox(8, 300.0, 30.0)]
    assert report.frontier(rows) == [True, False, True]
    assert report.frontier([sandbox(2, 100.0, 10.0), sandbox(4, 100.0, 10.0)]) == [True, True]  # a tie beats neither


def _pairwise_frontier(rows: list[dict], percentile: str = "p90") -> list[bool]:
    """The frontier by its definition, every pair compared (what the report computed before it sorted)."""
    key = f"latency_ms_{percentile}"
    points = []
    for r in rows:
        lat = r.get(key)
        if not report.is_ok(r) or lat is None or r.get("served"):
            points.append(None)
        elif r.get("cost_per_million") is not None:
            points.append(("cost", r["cost_per_million"], lat))
        elif r.get("throughput_avg"):
            points.append(("throughput", -r["throughput_avg"], lat))
        else:
            points.append(None)

    def dominated(p, q) -> bool:
        return q[0] == p[0] and q[1] <= p[1] and q[2] <= p[2] and (q[1] < p[1] or q[2] < p[2])

    return [p is not None and not any(q is not None and dominated(p, q) for q in points) for p in points]


@pytest.mark.parametrize("seed", range(40))
def test_the_sorted_frontier_dims_the_same_rows_as_comparing_every_pair(seed):
    """Random rows, with many ties (few distinct values), missing, infinite and NaN values, failed,
    served and unpriced runs: the frontier found by sorting is the one found pair by pair."""
    import random

    rnd = random.Random(seed)
    n = rnd.choice([1, 2, 3, 10, 60, 300])
    spread = rnd.choice([3, 10, 1000])
    odd = rnd.choice([0.02, 0.1, 0.4])  # how often a value is infinite or NaN

    def value(none_ok: bool = True):
        roll = rnd.random()
        if none_ok and roll < 0.05:
            return None
        if roll < 0.05 + odd:
            return rnd.choice([float("inf"), float("inf"), float("nan"), -float("inf")])
        return rnd.choice([rnd.randrange(spread), rnd.randrange(spread) / 4, float(rnd.randrange(spread))])

    rows = []
    for _ in range(n):
        r = {
            "status": report.OK if rnd.random() > 0.05 else "FAILED: oom",
            "served": rnd.random() < 0.05,
            "cost_per_million": value() if rnd.random() < 0.6 else None,
            "throughput_avg": value(),
            "latency_ms_p90": value(),
            "latency_ms_p99": value(),
        }
        rows.append(r)
    for percentile in ("p90", "p99"):
        assert report.frontier(rows, percentile) == _pairwise_frontier(rows, percentile)


def test_sort_rows_puts_missing_values_last_in_either_direction(sweep):
    rows = sweep + [failed()]
    up = report.sort_rows(rows, "throughput_avg", descending=False)
    down = report.sort_rows(rows, "throughput_avg", descending=True)
    assert [r["throughput_avg"] for r in up] == [300.0, 400.0, 700.0, 1000.0, None]
    assert [r["throughput_avg"] for r in down] == [1000.0, 700.0, 400.0, 300.0, None]
    assert [r["instance_type"] for r in report.sort_rows(rows, "instance_type", True)][0] == "inf1.2xlarge"


# ---------------------------------------------------------------- the formats with a sweep


def test_the_table_marks_the_frontier_shows_failed_runs_and_ends_with_the_recommendation(sweep):
    text = report.render(sweep + [failed()], "table", limit_ms=50)
    lines = text.splitlines()
    body = lines[1:6]
    assert [line[0] for line in body] == [
        "*",
        "*",
        "*",
        " ",
        " ",
    ]  # batch 8 (cheapest) is on it; c6i and the failure are not
    assert body[4].split()[5] == "FAILED"
    assert "Under 50 ms p90 — cheapest and fastest: inf1.2xlarge bert fp32 batch 4" in text
    assert "FAILED sweep-j-b16 (inf1.2xlarge bert batch 16): Essential container in task exited; exit code 137" in lines
    assert lines.index("") == 6 and lines[7].startswith("Under 50 ms p90")


def test_two_price_sources_are_told_apart_on_every_price():
    session = prices.Prices(
        {"inf1.2xlarge": 0.4}, "AWS Pricing API, on-demand Linux, us-west-2", "2026-11-20", fallback=prices.default()
    )
    rows = [report.row(result(), session), report.row(result(instance_type="g5.xlarge", run_id="g5"), session)]
    lines = report.render(rows, "table").splitlines()
    assert "0.4000 [1]" in lines[1] and "1.0060 [2]" in lines[2]
    assert "Prices [1]: AWS Pricing API, on-demand Linux, us-west-2, 2026-11-20." in lines
    assert f"Prices [2]: {prices.SOURCE}, {prices.DATE}." in lines


def test_markdown_has_the_recommendation_and_the_failed_run(sweep):
    md = report.render(sweep + [failed()], "md", limit_ms=50, percentile="p90").splitlines()
    assert md[0].startswith("|  | MODEL |") and md[1].startswith("|---|")
    assert md[6].startswith("|  | bert | - | inf1 | inf1.2xlarge | 16 | FAILED |")
    rec = md.index("**Recommendation**")
    assert md[rec + 2].startswith("- Under 50 ms p90 — cheapest and fastest: inf1.2xlarge bert fp32 batch 4")
    assert any(x.startswith("- FAILED sweep-j-b16") for x in md[md.index("**Notes**") :])


def test_csv_rows_carry_status_frontier_and_price_source(sweep):
    table = list(csv.DictReader(io.StringIO(report.render(sweep + [failed()], "csv", percentile="p90"))))
    assert [r["batch_size"] for r in table] == ["2", "4", "8", "8", "16"]
    assert [r["status"] for r in table] == ["ok"] * 4 + ["FAILED: Essential container in task exited; exit code 137"]
    assert [r["frontier"] for r in table] == ["True", "True", "True", "False", "False"]
    assert table[4]["throughput_avg"] == "" and table[4]["cost_per_million"] == ""
    assert {r["price_source"] for r in table} == {prices.SOURCE} and table[0]["price_date"] == prices.DATE
    assert table[0]["input_size"] == "128"


def test_json_has_rows_recommendation_and_prices(sweep):
    data = json.loads(report.render(sweep + [failed()], "json", limit_ms=50, percentile="p90"))
    assert set(data) == {"rows", "recommendation", "prices", "serving", "deployments"}
    assert [r["frontier"] for r in data["rows"]] == [True, True, True, False, False]
    assert data["rows"][4]["status"].startswith("FAILED: ") and data["rows"][4]["throughput_avg"] is None
    rec = data["recommendation"]
    assert (rec["limit_ms"], rec["percentile"], rec["cheapest"]["batch_size"], rec["fastest"]["batch_size"]) == (
        50,
        "p90",
        4,
        4,
    )
    assert rec["lines"][0].startswith("Under 50 ms p90")
    assert data["prices"] == [
        {
            "source": prices.SOURCE,
            "date": prices.DATE,
            "region": "us-east-1",
            "instance_types": ["inf1.2xlarge", "c6i.4xlarge"],
        }
    ]


def test_an_empty_report_reads_as_a_sentence_in_every_format():
    assert (
        report.render([], "table") == "No results to report yet.\n\nNo recommendation: nothing has been measured yet."
    )
    assert report.render([], "md").splitlines()[0] == "No results to report yet."
    assert (
        report.render([], "csv").splitlines()[0].startswith("model,precision,target")
        and len(report.render([], "csv").splitlines()) == 1
    )
    data = json.loads(report.render([], "json"))
    assert data["rows"] == [] and data["recommendation"]["cheapest"] is None and data["prices"] == []


def test_a_one_row_report_has_its_row_and_says_there_is_nothing_to_compare():
    lines = report.render([sweep_row(4, 700.0, 35.0)], "table").splitlines()
    assert lines[1].startswith("*  bert-base-cased-finetuned-mrpc")
    assert "Only one configuration measured: sweep batch sizes or instance types to compare." in lines


def test_the_workshop_csv_has_its_original_columns_in_seconds(sweep):
    table = list(csv.reader(io.StringIO(report.workshop_csv(sweep + [failed()]))))
    assert table[0] == [
        "model_name",
        "processor",
        "max_length",
        "batch_size",
        "samples",
        "latency_p50",
        "latency_p90",
        "latency_p95",
        "total_time",
        "throughput",
    ]
    assert len(table) == 1 + 4, "the failed run has no place in the workshop's columns"
    assert table[2] == [
        "bert-base-cased-finetuned-mrpc",
        "inf1",
        "128",
        "4",
        "1250",
        "0.0315",
        "0.035",
        "0.03675",
        "10.0",
        "700.0",
    ]


# ---------------------------------------------------------------- prices from the AWS Pricing API


def price_item(itype: str, usd: str, region: str = "us-west-2") -> str:
    """One entry of get_products' PriceList, as the API sends it: a JSON string (trimmed, same shape)."""
    sku, offer, rate = "X7D3QK9AAAAAAAAA", "JRTCKXETXF", "6YS6EN2CT7"
    return json.dumps(
        {
            "product": {
                "productFamily": "Compute Instance",
                "sku": sku,
                "attributes": {
                    "instanceType": itype,
                    "regionCode": region,
                    "location": "US West (Oregon)",
                    "operatingSystem": "Linux",
                    "tenancy": "Shared",
                    "preInstalledSw": "NA",
                    "capacitystatus": "Used",
                    "licenseModel": "No License required",
                    "operation": "RunInstances",
                    "usagetype": f"USW2-BoxUsage:{itype}",
                    "servicecode": "AmazonEC2",
                },
            },
            "serviceCode": "AmazonEC2",
            "terms": {
                "OnDemand": {
                    f"{sku}.{offer}": {
                        "priceDimensions": {
                            f"{sku}.{offer}.{rate}": {
                                "unit": "Hrs",
                                "endRange": "Inf",
                                "beginRange": "0",
                                "appliesTo": [],
                                "rateCode": f"{sku}.{offer}.{rate}",
                                "description": f"${usd} per On Demand Linux {itype} Instance Hour",
                                "pricePerUnit": {"USD": usd},
                            }
                        },
                        "sku": sku,
                        "effectiveDate": "2026-11-01T00:00:00Z",
                        "offerTermCode": offer,
                        "termAttributes": {},
                    }
                },
                "Reserved": {
                    f"{sku}.4NA7Y494T4": {
                        "priceDimensions": {
                            f"{sku}.4NA7Y494T4.6YS6EN2CT7": {
                                "unit": "Hrs",
                                "pricePerUnit": {"USD": "0.1500000000"},
                                "description": "reserved, 1 yr",
                            }
                        },
                        "sku": sku,
                        "offerTermCode": "4NA7Y494T4",
                        "termAttributes": {"LeaseContractLength": "1yr"},
                    }
                },
            },
            "version": "20261101000000",
            "publicationDate": "2026-11-01T00:00:00Z",
        }
    )


def expected_request(itype: str, region: str = "us-west-2") -> dict:
    # on-demand only (Capacity Block rows share every other attribute) and no licensed software
    filters = {
        "instanceType": itype,
        "regionCode": region,
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
        "marketoption": "OnDemand",
        "licenseModel": "No License required",
    }
    return {
        "ServiceCode": "AmazonEC2",
        "FormatVersion": "aws_v1",
        "MaxResults": 100,
        "Filters": [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in filters.items()],
    }


@pytest.fixture
def pricing():
    import boto3
    from botocore.stub import Stubber

    client = boto3.client(
        "pricing", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def test_refresh_reads_the_on_demand_hourly_price_of_each_type(pricing):
    client, stub = pricing
    stub.add_response(
        "get_products",
        {"FormatVersion": "aws_v1", "PriceList": [price_item("inf1.2xlarge", "0.3620000000")]},
        expected_request("inf1.2xlarge"),
    )
    stub.add_response(
        "get_products",
        {"FormatVersion": "aws_v1", "PriceList": [], "NextToken": "page2"},
        expected_request("c6i.4xlarge"),
    )
    stub.add_response(
        "get_products",
        {"FormatVersion": "aws_v1", "PriceList": [price_item("c6i.4xlarge", "0.6800000000")]},
        expected_request("c6i.4xlarge") | {"NextToken": "page2"},
    )
    stub.add_response("get_products", {"FormatVersion": "aws_v1", "PriceList": []}, expected_request("trn1.2xlarge"))
    got = pricing_api.refresh(
        client,
        ["inf1.2xlarge", "sandbox", "c6i.4xlarge", "inf1.2xlarge", "trn1.2xlarge"],
        "us-west-2",
        today="2026-11-21",
    )
    assert dict(got.table) == {"inf1.2xlarge": 0.362, "c6i.4xlarge": 0.68}  # on-demand, not the reserved 0.15
    assert (got.source, got.date) == ("AWS Pricing API, on-demand Linux, us-west-2", "2026-11-21")
    assert got.to_store() == {
        "source": got.source,
        "date": "2026-11-21",
        "prices": {"inf1.2xlarge": 0.362, "c6i.4xlarge": 0.68},
    }
    # a type the API did not price falls back to the shipped table, naming its own source
    assert got.quote("g5.xlarge") == prices.Quote(1.006, prices.SOURCE, prices.DATE)


def test_refresh_errors_are_one_line(pricing):
    client, stub = pricing
    stub.add_client_error(
        "get_products", "AccessDeniedException", "User is not authorized to perform:\npricing:GetProducts"
    )
    with pytest.raises(prices.PriceError) as e:
        pricing_api.refresh(client, ["inf1.2xlarge"], "us-west-2")
    assert str(e.value) == (
        "AWS Pricing API (us-east-1): AccessDeniedException: User is not authorized to perform: pricing:GetProducts"
    )


def test_refresh_with_nothing_priced_is_an_error(pricing):
    client, stub = pricing
    stub.add_response(
        "get_products",
        {"FormatVersion": "aws_v1", "PriceList": [price_item("inf1.xlarge", "0.228")]},
        expected_request("inf1.2xlarge", "eu-west-3"),
    )
    with pytest.raises(prices.PriceError, match="no on-demand Linux price for inf1.2xlarge in eu-west-3"):
        pricing_api.refresh(client, ["inf1.2xlarge"], "eu-west-3")  # an entry for another type is not taken
    with pytest.raises(prices.PriceError, match="no instance type to price"):
        pricing_api.refresh(client, ["sandbox"], "us-west-2")


def test_the_shipped_table_has_the_types_the_lab_sweeps():
    for itype in (
        "inf1.xlarge",
        "inf1.2xlarge",
        "inf1.6xlarge",
        "inf2.xlarge",
        "g4dn.xlarge",
        "g5.xlarge",
        "c6i.4xlarge",
        "c7i.4xlarge",
    ):
        assert prices.default().quote(itype).per_hour == report.PRICES[itype] > 0
    assert prices.default().quote("sandbox") is None and len(prices.DATE) == 10


# ---------------------------------------------------------------- the command


@pytest.fixture
def session(store, name):
    store.create_session(name, config.from_dict({}, sandbox=True).data, sandbox=True, track="inf1")
    for batch, throughput, p90 in ((2, 400.0, 20.0), (4, 700.0, 35.0), (8, 1000.0, 61.0)):
        store.add_result(
            name,
            "benchmark",
            result(
                run_id=f"sweep-j.{batch}",
                batch_size=batch,
                throughput_avg=throughput,
                latency_ms_p90=p90,
                runtime="sandbox",
                model_filename=f"bert_inf1_fp32_128_b{batch}.pt",
            ),
        )
    store.add_result(
        name,
        "batch-failed",
        {
            "job_name": "sweep-j.16",
            "job_id": "f00d",
            "family": "bert",
            "target": "inf1",
            "precision": None,
            "instance_type": "inf1.2xlarge",
            "batch_size": 16,
            "reason": "Essential container in task exited (exit code 1)",
            "label": name,
        },
    )
    return name


def test_report_command_recommends_under_the_limit_and_marks_the_failed_job(session, cli):
    r = cli("report", session, "--format", "json", "--limit-ms", "50")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    data = json.loads(r.stdout)
    assert [row["status"] for row in data["rows"]] == [
        "ok",
        "ok",
        "ok",
        "FAILED: Essential container in task exited (exit code 1)",
    ]
    assert data["recommendation"]["cheapest"]["batch_size"] == 4
    loose = json.loads(cli("report", session, "--format", "json", "--limit-ms", "100").stdout)
    assert loose["recommendation"]["cheapest"]["batch_size"] == 8
    p90 = json.loads(cli("report", session, "--format", "json", "--limit-ms", "57").stdout)
    p50 = json.loads(cli("report", session, "--format", "json", "--limit-ms", "57", "--percentile", "p50").stdout)
    assert p90["recommendation"]["cheapest"]["batch_size"] == 4
    assert p50["recommendation"]["cheapest"] is None  # every run's p50 is 58 ms
    assert p50["recommendation"]["lines"][0].startswith("Nothing meets 57 ms p50: the lowest p50 is 58.00 ms")
    table = cli("report", session).stdout
    assert "FAILED" in table and "With no latency limit (p90 shown)" in table


def test_report_command_uses_the_session_prices(session, cli, store):
    store.put(
        session,
        "prices",
        {
            "source": "AWS Pricing API, on-demand Linux, us-west-2",
            "date": "2026-11-20",
            "prices": {"inf1.2xlarge": 0.5},
        },
    )
    table = list(csv.DictReader(io.StringIO(cli("report", session, "--format", "csv").stdout)))
    assert {(r["price_per_hour"], r["price_source"], r["price_date"]) for r in table} == {
        ("0.5", "AWS Pricing API, on-demand Linux, us-west-2", "2026-11-20")
    }


def test_report_command_writes_the_workshop_csv(session, cli, tmp_path):
    out = tmp_path / "workshop.csv"
    out.write_text("old contents\n")
    r = cli("report", session, "--format", "csv", "--workshop-csv", str(out))
    assert r.returncode == 0, r.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == ",".join(report.WORKSHOP_COLUMNS) and len(lines) == 4
    assert [p.name for p in tmp_path.iterdir()] == ["workshop.csv"], "no temporary file left beside it"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--limit-ms", "0"], "--limit-ms: 0 is not a positive number of milliseconds"),
        (["--limit-ms", "-5"], "--limit-ms: -5 is not a positive number of milliseconds"),
        (["--limit-ms", "nan"], "--limit-ms: nan is not a positive number of milliseconds"),
        (["--limit-ms", "inf"], "--limit-ms: inf is not a positive number of milliseconds"),
        (["--percentile", "p42"], "'p42' is not one of 'p50', 'p90', 'p95', 'p99'"),
        (["--from", "/nonexistent"], "give a session NAME or --from DIR (one of the two)"),
    ],
)
def test_report_command_refuses_bad_input_in_one_line(session, cli, args, message):
    r = cli("report", session, *args)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and message in r.stderr, r.stderr


def test_report_command_needs_a_name_or_a_directory(cli):
    r = cli("report")
    assert (r.returncode, r.stderr) == (2, "inflab: error: give a session NAME or --from DIR (one of the two)\n")


def test_report_command_refuses_a_workshop_csv_that_is_not_a_regular_file(session, cli, tmp_path):
    fifo = tmp_path / "fifo.csv"  # (never a device here: were the check broken, the test would replace it)
    os.mkfifo(fifo)
    for target in (tmp_path, fifo, tmp_path / "missing" / "w.csv"):
        r = cli("report", session, "--workshop-csv", str(target))
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--workshop-csv" in r.stderr, r.stderr
        assert r.stdout == ""


def test_report_command_leaves_out_old_results_with_one_warning(store, name, cli):
    store.create_session(name, config.from_dict({}, sandbox=True).data, sandbox=True, track="inf1")
    store.add_result(name, "benchmark", result(run_id="new1"))
    store.add_result(name, "benchmark", result(run_id="old1") | {"format": "inflab-bench/1"})
    r = cli("report", name, "--format", "csv")
    assert r.returncode == 0 and [row["run_id"] for row in csv.DictReader(io.StringIO(r.stdout))] == ["new1"]
    assert r.stderr.startswith("inflab: warning: 1 stored result(s) left out, written in an older format (")
    assert r.stderr.count("\n") == 1


# ---------------------------------------------------------------- served rows (TorchServe load tests)
def served_record(
    direct_p50=5.0,
    rates=((10, 9.8, 12.0, 30.0, 0, True), (20, 19.5, 14.0, 90.0, 0, True), (40, 31.0, 40.0, 400.0, 2, False)),
):
    return {
        "format": "inflab-served/1",
        "run_id": "load-test-1",
        "timestamp": "2026-05-01T14:00:00+00:00",
        "label": "lab1",
        "runtime": "aws",
        "sandbox": False,
        "instance_type": "inf1.2xlarge",
        "name": "bert-base-cased-finetuned-mrpc",
        "size": "full",
        "family": "bert",
        "precision": "fp32",
        "target": "inf1",
        "weights": "pretrained",
        "model_filename": "bert_inf1_fp32_128_b8.pt",
        "batch_size": 8,
        "workers": 4,
        "limit_ms": 100.0,
        "stop_reason": "2 request(s) failed at 40/s",
        "highest_rate_meeting_limit": 20,
        "rates": [
            {
                "offered_rps": o,
                "achieved_rps": a,
                "latency_ms_p50": p50,
                "latency_ms_p90": p50 * 1.5,
                "latency_ms_p99": p99,
                "latency_ms_max": p99 * 1.1,
                "sent": 100,
                "ok": 100 - e,
                "errors": e,
                "duration_s": 3.0,
                "meets_limit": m,
            }
            for o, a, p50, p99, e, m in rates
        ],
        "direct": None
        if direct_p50 is None
        else {
            "run_id": "sweep-inf1.2xlarge-b8",
            "latency_ms_p50": direct_p50,
            "throughput_avg": 1000.0,
            "batch_size": 8,
        },
    }


def test_a_load_test_is_one_served_row_per_rate_with_its_overhead():
    rows = report.served_rows(served_record())
    assert [r["offered_rps"] for r in rows] == [10, 20, 40]
    assert [r["throughput_avg"] for r in rows] == [9.8, 19.5, 31.0]
    assert [r["overhead_ms_p50"] for r in rows] == [7.0, 9.0, 35.0]  # served p50 - direct p50
    assert all(
        r["served"] and r["runtime"] == "torchserve" and r["direct_run_id"] == "sweep-inf1.2xlarge-b8" for r in rows
    )
    assert [r["errors"] for r in rows] == [0, 0, 2] and rows[0][
        "cost_per_million"
    ] > 0  # priced like any inf1.2xlarge row
    assert set(rows[0]) == set(report.ROW_KEYS)
    assert report.served_rows(served_record(direct_p50=None))[0]["overhead_ms_p50"] is None
    with pytest.raises(ValueError):
        report.served_rows({"run_id": "x"})


def test_served_rows_stay_out_of_the_recommendation_and_get_their_own_block(sweep):
    rows = sweep + report.served_rows(served_record())
    rec = report.recommend(rows, 100, "p90")
    assert rec.fastest is not None and not rec.fastest["served"] and rec.fastest["batch_size"] == 8
    assert report.frontier(rows)[len(sweep) :] == [False, False, False]
    table = report.render(rows, "table")
    main, served = table.split("Served by TorchServe:")
    assert "load-test-1" not in main and "load-test-1@20/s" in served
    assert "+9.00" in served and "highest rate meeting p99 ≤ 100 ms: 20 requests/s (19.5 achieved)" in served
    doc = json.loads(report.render(rows, "json"))
    assert doc["serving"] == [
        {
            "run_id": "load-test-1",
            "deployment": "torchserve",
            "instance_type": "inf1.2xlarge",
            "label": "lab1",
            "model": "bert-base-cased-finetuned-mrpc",
            "batch_size": 8,
            "workers": 4,
            "limit_ms": 100.0,
            "percentile": "p99",
            "highest_rate_meeting_limit": 20,
            "achieved_at_that_rate": 19.5,
            "direct_run_id": "sweep-inf1.2xlarge-b8",
            "direct_latency_ms_p50": 5.0,
            "overhead_ms_p50_at_lowest_rate": 7.0,
            "rates": 3,
            "threads_per_worker": None,
            "stop_reason": "2 request(s) failed at 40/s",
        }
    ]
    md = report.render(rows, "md")
    assert "**Served by TorchServe**" in md and "| OFFERED/S |" in md


@pytest.mark.parametrize(
    "system, devices",
    [
        ({"neuron_cores": 16, "gpus": 0, "cpu_count": 24}, "16 NeuronCores"),  # a sweep job on a whole inf1.6xlarge
        ({"neuron_cores": 0, "gpus": 4, "cpu_count": 48}, "4 GPUs"),
        ({"neuron_cores": 0, "gpus": 0, "cpu_count": 8}, "8 vCPUs"),
        ({}, None),
    ],
)
def test_a_row_says_what_its_run_had(system, devices):
    """Priced as the whole instance, a row must say how much of it the run used."""
    r = report.row(result(system=system))
    assert r["devices"] == devices
    assert "devices" in report.render([r], "csv").splitlines()[0].split(",")
