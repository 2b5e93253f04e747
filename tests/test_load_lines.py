"""What a load test tells the learner, rate by rate and at the end: the same words for TorchServe on
the instance and for a SageMaker endpoint (one loadgen measures both)."""

from __future__ import annotations

from inflab.lab_steps.served import direct_brief, loadgen_fields, rate_line, verdict

DIRECT = {"run_id": "r1", "latency_ms_p50": 4.0, "latency_ms_p99": 6.0, "throughput_avg": 240.0, "batch_size": 1}


def test_each_rate_says_what_came_back_how_fast_and_the_overhead_over_the_direct_benchmark():
    rate = {
        "offered_rps": 20.0,
        "achieved_rps": 19.54,
        "latency_ms_p50": 6.5,
        "latency_ms_p90": 8.25,
        "latency_ms_p99": None,
        "errors": 0,
        "phase": "probe",
        "generator_cpu_share": 0.0312,
        "interference": 0.05,
    }
    assert rate_line(rate, direct_brief(DIRECT)) == (
        "20/s offered (probe) → 19.5/s, p50 6.50 ms, p90 8.25 ms, p99 -, 0 error(s), "
        "overhead +2.50 ms vs direct p50; the generator took 3.1% of the CPU, other processes 5%"
    )
    bare = {"offered_rps": 5, "achieved_rps": 5, "latency_ms_p50": None, "errors": 2}
    assert rate_line(bare, None) == "5/s offered → 5.0/s, p50 -, p90 -, p99 -, 2 error(s)"


def test_the_end_says_why_it_stopped_and_the_best_rate_under_the_limit():
    result = {"limit_ms": 100, "stop_reason": "p99 went over the limit at 40/s", "highest_rate_meeting_limit": 20.0}
    record = loadgen_fields(result)
    assert record["rates"] == [] and record["step_s"] is None  # kept as they came
    assert verdict(record) == "p99 went over the limit at 40/s. Highest rate meeting p99 ≤ 100 ms: 20 requests/s"
    assert verdict({**record, "highest_rate_meeting_limit": None}).endswith("≤ 100 ms: none")
    assert direct_brief(None) is None
    assert direct_brief({**DIRECT, "samples": [1, 2]}) == DIRECT  # only what the comparison needs
