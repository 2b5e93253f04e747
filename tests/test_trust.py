"""Numbers a user can trust: the statistics of repeated trials, the interference read from
/proc, the input pool, repeats and interference in a real harness run, the LoadGen cross-check
harness, ties in the recommendation and the frontier, and the config keys and arguments that
carry all this to the payload.

The /proc tests feed recorded snapshots (a directory laid out like /proc). The harness runs use
the sleeping models of tests/data/harness_models.py, one-second trials; nothing here asserts a
time or a speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_report import result as bench_result

from inflab import config, ranking, report
from inflab.remote.payload import inputs, interference, loadgen_harness, serve, stats, trials
from inflab.remote.payload.result import BenchResult, Trial

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "inflab" / "remote" / "payload" / "bench.py"
MODELS = ROOT / "tests" / "data" / "harness_models.py"
SHORT = ["--min-duration", "1", "--window", "0.25", "--min-queries", "20", "--max-duration", "5"]


# ---------------------------------------------------------------- statistics


def test_the_median_of_odd_and_even_counts():
    assert stats.median([3, 1, 2]) == 2
    assert stats.median([4, 1, 3, 2]) == 2.5
    with pytest.raises(ValueError):
        stats.median([])


def test_the_bootstrap_ci_of_the_median_is_seeded_and_coarse_for_few_trials():
    assert stats.median_ci([1000.0]) is None  # one trial: no interval
    assert stats.median_ci([1000.0, 1100.0]) == (1000.0, 1100.0)
    assert stats.median_ci([1500.0, 639.0, 1480.0]) == (639.0, 1500.0)  # 2 to 5 trials: their range
    many = [100.0 + (i * 37 % 11) for i in range(20)]  # 100..110, twenty trials
    ci = stats.median_ci(many)
    assert ci == stats.median_ci(many)  # the same trials, the same interval
    assert min(many) < ci[0] <= stats.median(many) <= ci[1] < max(many)  # narrower than the range


def test_stable_means_the_half_width_within_five_percent_and_quality_adds_interference():
    assert stats.is_stable(1000.0, (960.0, 1040.0)) and not stats.is_stable(1000.0, (940.0, 1070.0))
    assert stats.is_stable(1000.0, None, stop_rule_stable=True) and not stats.is_stable(1000.0, None, False)
    assert stats.quality(1000.0, (990.0, 1010.0), 0.02) == "ok"
    assert stats.quality(1000.0, (800.0, 1200.0), 0.02) == "noisy"
    assert stats.quality(1000.0, (990.0, 1010.0), 0.3) == "disturbed"  # interference wins over a tight CI


def trial(i, throughput, p90=10.0, interference_share=0.0, duration=1.0, stop="stable"):
    return Trial(
        index=i,
        throughput=throughput,
        latency_ms_p50=p90 * 0.9,
        latency_ms_p90=p90,
        latency_ms_p95=p90 * 1.1,
        latency_ms_p99=p90 * 1.3,
        latency_ms_p99_9=p90 * 1.5,
        queries=100,
        duration_s=duration,
        stop_reason=stop,
        interference=interference_share,
        steal=0.0,
    )


def test_trials_summarize_to_medians_with_intervals_and_weighted_interference():
    got = trials.summarize(
        [trial(1, 1500.0, 9.0, 0.0, 2.0), trial(2, 639.0, 20.0, 0.56, 1.0), trial(3, 1480.0, 9.5, 0.0, 1.0)]
    )
    assert got["repeats"] == 3 and got["throughput_avg"] == 1480.0 and got["throughput_ci95"] == [639.0, 1500.0]
    assert got["latency_ms_p90"] == 9.5 and got["latency_ms_p90_ci95"] == [9.0, 20.0]
    assert got["interference"] == pytest.approx(0.56 / 4)  # weighted by duration: 2 + 1 + 1 s
    assert got["quality"] == "disturbed" and got["stable"] is False
    assert got["total_infs"] == 300 and got["duration_s"] == 4.0


# ---------------------------------------------------------------- interference from /proc


def fake_proc(root: Path, host: tuple[int, ...], procs: dict[int, tuple[int, int, int]]) -> None:
    """A /proc snapshot: the aggregate cpu line (user nice system idle iowait irq softirq steal) and
    per pid (ppid, utime, stime), with a command name holding a space and parentheses."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "stat").write_text("cpu  " + " ".join(map(str, host)) + " 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\nintr 123\n")
    for pid, (ppid, utime, stime) in procs.items():
        (root / str(pid)).mkdir(exist_ok=True)
        fields = ["S", str(ppid)] + ["0"] * 9 + [str(utime), str(stime)] + ["0"] * 30
        (root / str(pid) / "stat").write_text(f"{pid} (my (odd) name) " + " ".join(fields) + "\n")


def test_parsing_proc_lines():
    assert interference.parse_pid_stat("77 (a b) c) R 5 1 1 0 -1 0 0 0 0 0 120 30 0 0") == (5, 150)
    cpu = interference.parse_proc_stat("cpu  100 5 50 800 10 3 2 30 0 0\n")
    assert (cpu.busy, cpu.steal, cpu.total) == (160, 30, 1000)


def test_the_share_others_took_is_the_host_busy_time_less_the_tree(tmp_path):
    # pid 10 is the harness, 11 its model process, 12 a grandchild; 20 someone else's process
    tree = {10: (1, 100, 0), 11: (10, 500, 100), 12: (11, 10, 0), 20: (1, 999, 0)}
    fake_proc(tmp_path / "a", (1000, 0, 500, 8000, 100, 0, 0, 0), tree)
    sampler = interference.Sampler(10, proc=str(tmp_path / "a"))
    assert sorted(sampler.pids) == [10, 11, 12]  # descendants found by their parents; 20 is not ours
    before = sampler.sample()
    # 200 ticks of capacity pass on the host: 150 busy, of which the tree used 60 (11: +50, 12: +10)
    tree.update({11: (10, 540, 110), 12: (11, 20, 0), 20: (1, 1089, 0)})
    fake_proc(tmp_path / "a", (1120, 0, 530, 8050, 100, 0, 0, 0), tree)
    got = interference.share(before, sampler.sample(), ticks_per_second=100)
    assert got.interference == pytest.approx(90 / 200) and got.own == pytest.approx(60 / 200)
    assert got.steal == 0 and got.seconds_of_cpu == pytest.approx(2.0)


def test_a_process_that_ended_keeps_its_cpu_and_steal_is_its_own_share(tmp_path):
    fake_proc(tmp_path / "p", (100, 0, 0, 900, 0, 0, 0, 0), {10: (1, 0, 0), 11: (10, 50, 0)})
    sampler = interference.Sampler(10, proc=str(tmp_path / "p"))
    before = sampler.sample()
    (tmp_path / "p" / "11" / "stat").unlink()  # the model process is gone before the next sample
    fake_proc(tmp_path / "p", (180, 0, 0, 960, 0, 0, 0, 60), {10: (1, 40, 0)})
    got = interference.share(before, sampler.sample(), ticks_per_second=100)
    # 200 ticks: 80 busy, the tree's harness used 40, the lost process counts 0 (not -50); 60 stolen
    assert got.interference == pytest.approx(40 / 200) and got.steal == pytest.approx(60 / 200)


def test_extra_ticks_accounted_elsewhere_are_not_interference(tmp_path):
    fake_proc(tmp_path / "q", (0, 0, 0, 0, 0, 0, 0, 0), {10: (1, 0, 0)})
    sampler = interference.Sampler(10, proc=str(tmp_path / "q"))
    before = sampler.sample(extra=1000)
    fake_proc(tmp_path / "q", (150, 0, 0, 50, 0, 0, 0, 0), {10: (1, 10, 0)})
    got = interference.share(before, sampler.sample(extra=1120), ticks_per_second=100)  # a server used 120
    assert got.interference == pytest.approx(20 / 200)


def test_the_real_proc_reads_a_share_between_0_and_1():
    sampler = interference.Sampler()
    first = sampler.sample()
    sum(i * i for i in range(200_000))
    got = interference.share(first, sampler.sample())
    assert 0 <= got.interference <= 1 and 0 <= got.own <= 1 and os.getpid() in sampler.pids


# ---------------------------------------------------------------- the input pool

TEXT = [
    {"name": n, "shape": [4, 32], "dtype": "int64", "low": lo, "high": hi}
    for n, lo, hi in (("input_ids", 0, 30522), ("attention_mask", 1, 2), ("token_type_ids", 0, 2))
]


def test_the_text_pool_holds_distinct_sentence_pairs_of_varied_length():
    torch = pytest.importorskip("torch")
    pool = inputs.build_pool(TEXT, seed=3, size=8)
    assert len(pool) == 8 and len({tuple(b[0].flatten().tolist()) for b in pool}) == 8  # distinct batches
    lengths = set()
    for ids, mask, types in pool:
        assert ids.shape == mask.shape == types.shape == (4, 32) and ids.dtype == torch.int64
        for row in range(4):
            used = int(mask[row].sum())
            lengths.add(used)
            assert mask[row, :used].all() and not mask[row, used:].any()  # words, then padding
            assert ids[row, 0] == inputs.CLS and ids[row, used - 1] == inputs.SEP and not ids[row, used:].any()
            first_sep = int((ids[row, :used] == inputs.SEP).nonzero()[0])
            assert not types[row, : first_sep + 1].any() and types[row, first_sep + 1 : used].all()
    assert len(lengths) > 4  # varied lengths
    again = inputs.build_pool(TEXT, seed=3, size=8)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(pool, again))  # seeded


def test_an_image_pool_is_bounded_by_memory_and_its_images_differ():
    torch = pytest.importorskip("torch")
    big = [{"name": "pixel_values", "shape": [64, 3, 224, 224], "dtype": "float32"}]  # 38.5 MB a batch
    assert inputs.pool_size(big) == inputs.POOL_MIN
    small = [{"name": "pixel_values", "shape": [2, 3, 8, 8], "dtype": "float32"}]
    pool = inputs.build_pool(small, seed=1)
    assert len(pool) == inputs.POOL_MAX
    assert not torch.equal(pool[0][0][0], pool[0][0][1]) and not torch.equal(pool[0][0], pool[1][0])
    assert inputs.describe(small, 64) == {"pool": 64, "order": "random", "kind": "random images"}


# ---------------------------------------------------------------- the harness: repeats, interference


def bench(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=timeout, cwd=tmp_path
    )


def test_three_trials_of_two_models_take_turns_and_report_medians_with_intervals(tmp_path):
    proc = bench(
        tmp_path,
        f"py:{MODELS}:steady",
        f"py:{MODELS}:service10",
        *SHORT,
        "--repeats",
        "3",
        "--workers",
        "1",
        "--run-id",
        "lab1.b",
        "--out-dir",
        str(tmp_path / "results"),
    )
    assert proc.returncode == 0, proc.stderr
    order = [line.split(":")[0] for line in proc.stdout.splitlines() if "samples/s, p50" in line]
    assert order == [f"[bench] {m} · trial {t}/3" for t in (1, 2, 3) for m in ("steady", "service10")]
    first, second = (
        BenchResult.from_dict(json.loads((tmp_path / "results" / f"{m}.bench.json").read_text()))
        for m in ("steady", "service10")
    )
    assert (first.run_id, second.run_id) == ("lab1.b.1", "lab1.b.2")
    assert first.latency_ms_p50 < second.latency_ms_p50  # 2 ms and 10 ms models: each result is its own
    r = second
    assert r.repeats == 3 and len(r.trials) == 3
    assert [t.index for t in r.trials] == [1, 2, 3] and {w.trial for w in r.windows} == {1, 2, 3}
    lo, hi = r.throughput_ci95
    assert lo <= r.throughput_avg <= hi and r.throughput_avg == stats.median([t.throughput for t in r.trials])
    assert r.latency_ms_p50 == stats.median([t.latency_ms_p50 for t in r.trials])
    assert 0 <= r.interference <= 1 and r.quality in ("ok", "noisy", "disturbed")
    assert r.total_infs == sum(t.queries for t in r.trials) == sum(m.queries for m in r.models)
    assert "median of 3 trial(s)" in proc.stdout and "quality" in proc.stdout


@pytest.fixture
def cpu_hogs():
    """Two processes spinning on the CPU beside the test; ended by their own pids."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    yield hogs
    for h in hogs:
        h.kill()
        h.wait()


def test_a_run_beside_cpu_hogs_is_marked_disturbed(tmp_path, cpu_hogs):
    # the model sleeps: the hogs (and anything else on this machine) have the CPU to themselves
    proc = bench(tmp_path, f"py:{MODELS}:steady", *SHORT, "--repeats", "2", "--out", str(tmp_path / "r.json"))
    assert proc.returncode == 0, proc.stderr
    r = BenchResult.from_dict(json.loads((tmp_path / "r.json").read_text()))
    assert r.interference > 0.2 and all(t.interference > 0.2 for t in r.trials)
    assert r.quality == "disturbed" and "quality     disturbed (other processes took" in proc.stdout


def test_bad_repeats_and_harness_flags_are_one_line(tmp_path):
    for args, flag in (
        (["--repeats", "0"], "--repeats"),
        (["--repeats", "21"], "--repeats"),
        (["--harness", "mlperf"], "--harness"),
        (["--out", "x.json", f"py:{MODELS}:slow"], "--out"),
    ):
        proc = bench(tmp_path, f"py:{MODELS}:steady", *args)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and flag in proc.stderr


# ---------------------------------------------------------------- the LoadGen harness


def test_loadgen_verdicts_are_read_from_its_detail_log(tmp_path):
    log = tmp_path / "mlperf_log_detail.txt"
    entries = {
        "result_validity": "INVALID",
        "result_min_duration_met": False,
        "result_min_queries_met": True,
        "early_stopping_met": True,
        "result_query_count": 448,
        "result_invalid_reason": "Increase expected QPS so the loadgen pre-generates a larger (coalesced) query. ",
        "early_stopping_result": " * Processed at least 64 queries (448).  * Early stopping 90.0th percentile "
        "estimate: 2187339  * Early stopping 99.0th percentile estimate: 3207063",
    }
    log.write_text("".join(f":::MLLOG {json.dumps({'key': k, 'value': v})}\n" for k, v in entries.items()) + "noise\n")
    v = loadgen_harness.verdict("Offline", loadgen_harness.read_detail(str(log)))
    assert v["validity"] == "INVALID" and v["min_duration_met"] is False
    assert v["reasons"] == [
        "Offline: min duration not met",
        "Offline: Increase expected QPS so the loadgen pre-generates a larger (coalesced) query.",
    ]
    assert v["early_stopping_ms"] == {"p90": pytest.approx(2.187339), "p99": pytest.approx(3.207063)}


def test_loadgen_measures_the_model_and_writes_the_same_schema_with_its_verdict(tmp_path):
    pytest.importorskip("mlperf_loadgen", reason="mlcommons-loadgen is in the test extras and the payload's images")
    proc = bench(
        tmp_path,
        f"py:{MODELS}:steady",
        "--harness",
        "loadgen",
        "--repeats",
        "2",
        "--min-duration",
        "1",
        "--min-queries",
        "50",
        "--max-duration",
        "5",
        "--batch-size",
        "2",
        "--out",
        str(tmp_path / "lg.json"),
    )
    assert proc.returncode == 0, proc.stderr
    r = BenchResult.from_dict(json.loads((tmp_path / "lg.json").read_text()))
    assert r.harness == "loadgen" and r.repeats == 2 and r.loadgen["validity"] in ("VALID", "INVALID")
    assert r.loadgen["version"].startswith(("5.", "6.")) and r.stop_reason == r.loadgen["validity"]
    for t in r.trials:
        assert [s["scenario"] for s in t.loadgen["scenarios"]] == ["Offline", "SingleStream"]
        assert t.throughput > 0 and 0 < t.latency_ms_p50 <= t.latency_ms_p99 and t.queries > 0
    assert 2 <= r.latency_ms_p50 < 1000  # in ms (µs would read 2,000): the model sleeps 2 ms a call, never less
    assert (tmp_path / "lg.loadgen" / "model1-trial1-Offline" / "mlperf_log_summary.txt").is_file()
    assert "MLPerf LoadGen: " in proc.stdout


# ---------------------------------------------------------------- ties and the frontier


def row(run, batch, throughput, ci, p90=30.0, p90_ci=None, itype="inf1.2xlarge", **changes):
    return report.row(
        bench_result(
            run_id=run,
            batch_size=batch,
            instance_type=itype,
            throughput_avg=throughput,
            throughput_ci95=ci,
            latency_ms_p90=p90,
            latency_ms_p90_ci95=p90_ci,
            model_filename=f"bert_inf1_fp32_128_b{batch}.pt",
            repeats=3,
            **changes,
        )
    )


def test_two_rows_whose_cis_overlap_are_named_as_ties():
    rows = [
        row("b2", 2, 740.0, [300.0, 760.0]),
        row("b4", 4, 264.0, [250.0, 700.0]),
        row("b8", 8, 358.0, [340.0, 380.0]),
    ]
    rec = report.recommend(rows)
    assert rec.fastest["run_id"] == "b2" and rec.cheapest["run_id"] == "b2"
    (tie,) = rec.ties
    assert tie["runs"] == ["b2", "b4", "b8"] and tie["pick"] == "cheapest and fastest"
    assert any("batch 2, 4 and 8 are within noise of each other" in line for line in rec.lines)
    doc = json.loads(report.render(rows, "json"))
    assert doc["recommendation"]["ties"][0]["runs"] == ["b2", "b4", "b8"]


def test_rows_apart_beyond_noise_have_no_ties_and_the_table_marks_ties():
    apart = [row("b4", 4, 700.0, [690.0, 710.0]), row("b8", 8, 1000.0, [980.0, 1020.0])]
    assert report.recommend(apart).ties == ()
    tied = [row("b4", 4, 990.0, [900.0, 1005.0]), row("b8", 8, 1000.0, [980.0, 1020.0])]
    rec = report.recommend(tied)
    assert rec.tied_runs() == {"b4", "b8"}
    assert any("batch 4 and 8 are within noise of each other" in line for line in rec.lines)
    table = report.render(tied, "table").splitlines()
    assert [line[:2].strip() for line in table[1:3]] == ["*≈", "*≈"]  # both on the frontier, both tied
    assert any(line.startswith("≈ within noise") for line in table)


def test_the_frontier_keeps_a_run_beaten_only_within_noise():
    # b8 is cheaper per 1M and has a lower p90 than b4, but b4's CIs overlap b8's on both
    fuzzy = [
        row("b4", 4, 950.0, [900.0, 1010.0], p90=31.0, p90_ci=[29.0, 33.0]),
        row("b8", 8, 1000.0, [980.0, 1020.0], p90=30.0, p90_ci=[28.0, 32.0]),
    ]
    assert report.frontier(fuzzy) == [True, True]
    sharp = [
        row("b4", 4, 950.0, [940.0, 960.0], p90=31.0, p90_ci=[29.0, 33.0]),
        row("b8", 8, 1000.0, [980.0, 1020.0], p90=30.0, p90_ci=[28.0, 32.0]),
    ]
    assert report.frontier(sharp) == [False, True]  # b8 is beyond noise cheaper, not worse in latency
    plain = [row("b4", 4, 950.0, None, p90=31.0), row("b8", 8, 1000.0, None, p90=30.0)]
    assert report.frontier(plain) == [False, True]  # no CIs: the plain comparison


def test_a_disturbed_pick_says_so_and_the_notes_name_it():
    rows = [
        row("b4", 4, 700.0, [690.0, 710.0], interference=0.4, quality="disturbed"),
        row("b8", 8, 400.0, [390.0, 410.0], quality="ok", interference=0.01),
    ]
    rec = report.recommend(rows)
    assert rec.fastest["run_id"] == "b4"
    assert "disturbed: other processes took 40% of the CPU while it ran" in rec.lines[0]
    table = report.render(rows, "table")
    assert "disturbed b4 (inf1.2xlarge bert fp32 batch 4): other processes took 40% of the CPU" in table
    assert "QUALITY" in table.splitlines()[0] and "±1.4%" in table


def test_old_results_without_the_trust_fields_still_load_and_rank_as_before():
    old = bench_result(run_id="old1")
    for key in ("harness", "repeats", "throughput_ci95", "interference", "quality", "trials", "inputs", "loadgen"):
        old.pop(key)
    r = report.row(old)
    assert r["repeats"] == 1 and r["harness"] == "inflab" and r["throughput_ci95"] is None and r["quality"] is None
    assert report.recommend([r]).ties == ()
    assert ranking.cost_interval(r) == (r["cost_per_million"], r["cost_per_million"])


# ---------------------------------------------------------------- config and arguments


@pytest.mark.parametrize(
    "values, message",
    [
        ({"repeats": 0}, "bench.repeats: 0 is outside 1..20"),
        ({"repeats": 21}, "bench.repeats: 21 is outside 1..20"),
        ({"harness": "mlperf"}, "bench.harness: 'mlperf' is not one of inflab, loadgen"),
    ],
)
def test_bad_trust_keys_are_refused_by_name(values, message):
    with pytest.raises(config.ConfigError, match=message):
        config.from_dict({"bench": values})


def test_the_payload_gets_repeats_harness_and_the_benchmarks_threads(store, name):
    from inflab.lab_steps import load_test, payload_jobs, serving
    from inflab.lab_steps.base import StepContext
    from inflab.lab_steps.records import CompiledModel, CompiledModels, Repository
    from inflab.runtime.select import for_session

    cfg = config.from_dict({"bench": {"repeats": 5, "harness": "loadgen", "workers_per_model": 2}})
    store.create_session(name, cfg.data, sandbox=False, track=cfg.track)
    ctx = StepContext(
        name=name, config=cfg, runtime=for_session(False, store.home), store=store, step_id="t", log=lambda m: None
    )
    ctx.save(Repository(name="r", uri="1.dkr.ecr.us-west-2.amazonaws.com/r", arn="a"))
    art = CompiledModel(file="bert_inf1_fp32_128_b8.pt", target="inf1", batch_size=8, family="bert")
    args = payload_jobs.bench_args(ctx, art)
    assert args[args.index("--repeats") + 1] == "5" and args[args.index("--harness") + 1] == "loadgen"
    ctx.save(CompiledModels(settings="s", instance_id="i-1", artifacts=(art,)))
    sargs = serving.serve_args(ctx)
    assert sargs[sargs.index("--workers-per-copy") + 1] == "2"
    largs = load_test.load_args(ctx, "load-test-1", 8080)
    assert (
        largs[largs.index("--rates") + 1] == "auto" and largs[largs.index("--server-cpu") + 1] == "serve/run/cpu.json"
    )


def test_torchserve_workers_follow_the_direct_benchmark_on_a_cpu():
    from inflab.remote.payload import targets

    assert serve.workers_for("cpu", 0, 2) == targets.device_count("cpu") * 2
    assert serve.workers_for("cpu", 3, 2) == 3  # serve.workers given: it wins
    env = targets.serve_env("cpu", serve.workers_for("cpu", 0, 2))
    assert int(env["OMP_NUM_THREADS"]) == max(1, len(targets.sysinfo.usable_cores()) // serve.workers_for("cpu", 0, 2))


def test_the_server_cpu_ledger_is_written_with_ticks_and_time(tmp_path):
    import threading

    stop = threading.Event()
    t = threading.Thread(target=serve.keep_ledger, args=(str(tmp_path / "cpu.json"), stop))
    t.start()
    try:
        for _ in range(100):
            if (tmp_path / "cpu.json").exists():
                break
            stop.wait(0.05)
    finally:
        stop.set()
        t.join()
    data = json.loads((tmp_path / "cpu.json").read_text())
    assert data["ticks"] >= 0 and data["time"] > 0 and data["hz"] > 0


def test_a_sweep_checks_its_compiled_model_against_eager_once_per_settings(tmp_path, monkeypatch, capsys, store, name):
    from inflab.lab_steps.base import StepContext
    from inflab.lab_steps.payload_jobs import job_args
    from inflab.lab_steps.sweep_grid import GridPoint
    from inflab.remote.payload import compile as comp
    from inflab.runtime.select import for_session

    cfg = config.from_dict({"batch": {"sizes": [2, 4, 8]}})
    store.create_session(name, cfg.data, sandbox=False, track=cfg.track)
    ctx = StepContext(
        name=name, config=cfg, runtime=for_session(False, store.home), store=store, step_id="t", log=lambda m: None
    )
    points = [GridPoint(ctx.name, "bert", "inf1.2xlarge", size, "inf1") for size in (2, 4, 8)]
    args = [job_args(ctx, p) for p in points]
    assert "--checked-by" not in args[0]  # the first batch size's job checks
    said = [a[a.index("--checked-by") + 1] for a in args[1:]]
    assert said[0] == said[1] and said[0].startswith(f"job {points[0].job_name} (settings digest ")

    monkeypatch.setitem(comp.REL_TOL, "cpu", -1.0)  # a check that ran would fail: this one must not run
    for key, value in (
        ("HF_HUB_ETAG_TIMEOUT", "10"),
        ("HF_HUB_DOWNLOAD_TIMEOUT", "30"),
        ("TOKENIZERS_PARALLELISM", "false"),
        ("HF_HUB_OFFLINE", "1"),
        ("TRANSFORMERS_VERBOSITY", "error"),
    ):
        monkeypatch.setenv(key, os.environ.get(key, value))  # main() sets these: put back afterwards
    out = tmp_path / "models"
    code = comp.main(
        [
            "--family",
            "bert",
            "--size",
            "tiny",
            "--target",
            "cpu",
            "--batch-size",
            "1",
            "--max-length",
            "8",
            "--offline",
            "--out",
            str(out),
            "--checked-by",
            said[0],
        ]
    )
    assert code == 0
    (manifest,) = [json.loads((out / n).read_text()) for n in json.loads((out / "index.json").read_text())]
    assert manifest["check"]["skipped"] is True and manifest["check"]["checked_by"] == said[0]
    printed = capsys.readouterr().out
    assert "check: skipped — these settings are checked against eager once" in printed and "max abs diff" not in printed
