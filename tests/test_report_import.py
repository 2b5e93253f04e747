"""``inflab report --from DIR``: the original workshop's direct-benchmark logs and neuronperf JSON
files become report rows; a crashed or truncated file is named in one warning and the rest import."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest

from inflab import report, workshop

MODEL = "bert-base-cased-finetuned-mrpc"


def direct_log(
    batch: int, p50: float, p90: float, p95: float, seconds: float, *, requests: int = 10000, wrap: bool = False
) -> str:
    """A direct-benchmark log as the workshop's script prints it (DESIGN §10): latencies in seconds."""
    values = f"[{p50} {p90}\n {p95}]" if wrap else f"[{p50} {p90} {p95}]"
    return "\n".join(
        [
            "Neuron Core Group Sizes: 1,1,1,1",
            "Loading Models To Memory",
            "Starting benchmark",
            "Loaded Requests",
            "  0%|          | 0/10000 [00:00<?, ?it/s]\r 50%|█████     | 5000/10000 [00:18<00:18, 275.07it/s]"
            f"\r100%|██████████| {requests}/{requests} [00:36<00:00, 275.07it/s]",
            f"Latency: {requests} samples: (P50, P90, P95)",
            values,
            f"Total time taken for {requests} * ({batch} sentences) is {seconds:.4f} seconds",
            f"Throughput (num_requests * batch_size /sec) = {requests * batch / seconds:.4f}",
            "",
        ]
    )


CRASHED_LOG = """Neuron Core Group Sizes: 1,1,1,1
Loading Models To Memory
Traceback (most recent call last):
  File "/job/bert/direct_benchmark-inf.py", line 103, in <module>
    test_time = benchmark(num_models, num_threads, num_requests, neuron_model_file)
  File "/job/bert/direct_benchmark-inf.py", line 81, in benchmark
    models = [load_model(model_file) for _ in range(num_models)]
RuntimeError: Could not load the model status=4 message=Allocation Failure
"""


def neuronperf_result(batch: int, throughput: float, p50: float, p99: float, **extra) -> dict:
    """One neuronperf result dict (its field names; latencies per batch in ms)."""
    return {
        "n_models": 4,
        "workers_per_model": 2,
        "pipeline_size": 1,
        "batch_size": batch,
        "throughput_avg": throughput,
        "throughput_peak": throughput * 1.02,
        "latency_ms_p0": p50 * 0.8,
        "latency_ms_p50": p50,
        "latency_ms_p99": p99,
        "latency_ms_p100": p99 * 1.3,
        "load_avg_ms": 1830.2,
        "warmup_avg_ms": 41.7,
        "total_infs": 88000,
        "status": "finished",
        "model_filename": f"{MODEL}_inf1_128_{batch}.pt",
        **extra,
    }


@pytest.fixture
def workshop_dir(tmp_path) -> Path:
    """What the workshop's S3 bucket holds after a sweep over batch sizes 2, 4, 8, one of its runs
    crashed, one neuronperf file cut short, and things that are not files to read."""
    d = tmp_path / "results"
    d.mkdir()
    (d / f"{MODEL}_inf1_128_2.pt.log").write_text(direct_log(2, 0.00823411, 0.00911802, 0.00950617, 24.1123))
    (d / f"{MODEL}_inf1_128_4.pt.log").write_text(direct_log(4, 0.01447046, 0.01585865, 0.01640427, 36.3604, wrap=True))
    (d / f"{MODEL}_inf1_128_8.pt.log").write_text(direct_log(8, 2.8123e-02, 3.0114e-02, 3.1209e-02, 71.0055))
    (d / f"{MODEL}_inf1_128_16.pt.log").write_text(CRASHED_LOG)
    before = (
        "INFO:neuronperf.benchmarking - Benchmarking 'bert-base-cased-finetuned-mrpc_inf_128_4.pt'\n"
        "[1/1] compiling and loading 4 model copies\n"
        "INFO:neuronperf.benchmarking - Finished benchmarking\n"
    )
    (d / f"neuronperf_results_{MODEL}_inf1_128_4.json").write_text(
        before + json.dumps([neuronperf_result(4, 1180.5, 13.2, 16.9, latency_ms_p90=14.8)], indent=2) + "\n"
    )
    whole = json.dumps([neuronperf_result(8, 1391.0, 22.7, 27.4)], indent=2)
    (d / f"neuronperf_results_{MODEL}_inf1_128_8.json").write_text(whole[: len(whole) // 2])  # cut short
    (d / "README.txt").write_text("not a result: ignored\n")
    return d


def rows_of(stdout: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(stdout)))


def warnings_of(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("inflab: warning: ")]


# ---------------------------------------------------------------- through the command


def test_import_a_workshop_directory_as_csv(workshop_dir, cli):
    r = cli("report", "--from", str(workshop_dir), "--format", "csv")
    assert r.returncode == 0, r.stderr
    rows = rows_of(r.stdout)
    logs = [row for row in rows if row["run_id"].endswith(".log")]
    assert [(row["batch_size"], row["target"], row["instance_type"], row["input_size"]) for row in logs] == [
        ("2", "inf1", "", "128"),
        ("4", "inf1", "", "128"),
        ("8", "inf1", "", "128"),
    ]
    b4 = next(row for row in logs if row["batch_size"] == "4")
    assert float(b4["latency_ms_p50"]) == pytest.approx(14.47046) and float(b4["latency_ms_p95"]) == pytest.approx(
        16.40427
    )
    assert float(b4["throughput_avg"]) == pytest.approx(1100.0979, abs=1e-4) and b4["latency_ms_p99"] == ""
    assert (b4["total_infs"], b4["duration_s"], b4["model"], b4["runtime"]) == ("10000", "36.3604", MODEL, "workshop")
    assert float(next(row for row in logs if row["batch_size"] == "8")["latency_ms_p90"]) == pytest.approx(30.114)
    (np,) = [row for row in rows if row["run_id"].endswith(".json")]
    assert (np["batch_size"], np["n_models"], np["workers_per_model"]) == ("4", "4", "2")
    assert (float(np["throughput_avg"]), float(np["latency_ms_p90"]), float(np["latency_ms_p99"])) == (
        1180.5,
        14.8,
        16.9,
    )
    assert all(row["status"] == "ok" and row["cost_per_million"] == "" for row in rows)

    warned = warnings_of(r.stderr)
    assert len(warned) == 2 and len(r.stderr.splitlines()) == 2, r.stderr
    assert (
        f"{MODEL}_inf1_128_16.pt.log: not imported: no Throughput line (the run crashed: it has a Python traceback)"
        in warned[0]
    )
    assert (
        f"neuronperf_results_{MODEL}_inf1_128_8.json: not imported: no complete JSON list in it (truncated?)"
        in warned[1]
    )


def test_import_renders_the_table_with_a_recommendation(workshop_dir, cli):
    r = cli("report", "--from", str(workshop_dir), "--limit-ms", "15")
    assert r.returncode == 0, r.stderr
    assert "workshop rows were imported from the original workshop's files" in r.stdout
    assert "no cheapest: no qualifying run has a price" in r.stdout
    # neuronperf's batch 4: 1,180.5/s at p90 14.8 ms, under 15 ms (the log's batch 4 is 15.86 ms)
    assert "fastest: inf1 bert batch 4 (run 128_4.json), 1,180.5 samples/s (p90 14.80 ms)" in r.stdout


def test_import_writes_the_workshop_csv_in_seconds(workshop_dir, cli, tmp_path):
    out = tmp_path / "performance-report.csv"
    r = cli("report", "--from", str(workshop_dir), "--format", "json", "--workshop-csv", str(out))
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["rows"]) == 4
    table = list(csv.DictReader(out.open()))
    assert list(table[0]) == report.WORKSHOP_COLUMNS
    b2 = next(row for row in table if row["batch_size"] == "2" and row["samples"] == "10000")
    assert (b2["model_name"], b2["processor"], b2["max_length"]) == (MODEL, "inf1", "128")
    assert (float(b2["latency_p50"]), float(b2["latency_p90"]), float(b2["latency_p95"])) == (
        0.00823411,
        0.00911802,
        0.00950617,
    )
    assert (b2["total_time"], float(b2["throughput"])) == ("24.1123", pytest.approx(829.4522, abs=1e-4))


def test_things_that_are_not_regular_files_are_skipped_without_blocking(workshop_dir, cli):
    os.mkfifo(workshop_dir / f"{MODEL}_inf1_128_32.pt.log")  # opening it for reading would wait for a writer
    os.symlink("/dev/zero", workshop_dir / "endless.json")  # reading it would never end
    (workshop_dir / "a-directory.log").mkdir()
    r = cli("report", "--from", str(workshop_dir), "--format", "csv", timeout=60)
    assert r.returncode == 0, r.stderr
    assert len(rows_of(r.stdout)) == 4
    skipped = [w for w in warnings_of(r.stderr) if "not a regular file, skipped" in w]
    assert len(skipped) == 3 and len(warnings_of(r.stderr)) == 5


def test_a_file_over_the_size_cap_is_skipped(tmp_path):
    big = tmp_path / f"{MODEL}_inf1_128_2.pt.log"
    big.write_text(direct_log(2, 0.008, 0.009, 0.0095, 24.0) + "x" * workshop.MAX_BYTES)
    (tmp_path / f"{MODEL}_inf1_128_4.pt.log").write_text(direct_log(4, 0.014, 0.015, 0.016, 36.0))
    rows, warned = workshop.import_dir(tmp_path)
    assert [r["batch_size"] for r in rows] == [4]
    assert warned == [f"{big}: not imported: larger than 5 MiB, skipped"]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing", "no such file or directory"),
        (
            lambda d: (d / "f.log").write_text(direct_log(2, 0.008, 0.009, 0.0095, 24.0)) and d / "f.log",
            "not a directory",
        ),
        (lambda d: d, "no workshop .log or .json files in it"),
    ],
)
def test_a_directory_that_cannot_be_imported_is_one_line_exit_2(tmp_path, cli, make, message):
    target = make(tmp_path)
    r = cli("report", "--from", str(target))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == f"inflab: error: --from {target}: {message}\n"


def test_a_directory_of_only_bad_files_names_each_then_fails(tmp_path, cli):
    (tmp_path / f"{MODEL}_inf1_128_2.pt.log").write_text(CRASHED_LOG)
    (tmp_path / "results.json").write_text('{"error": "neuronperf failed"}')
    r = cli("report", "--from", str(tmp_path))
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert len(lines) == 3 and len(warnings_of(r.stderr)) == 2
    assert "results.json: not imported: not a list of neuronperf result objects (an object)" in lines[1]
    assert lines[2] == f"inflab: error: --from {tmp_path}: none of its 2 .log/.json file(s) could be imported"


def test_from_and_a_name_together_are_refused(workshop_dir, cli):
    r = cli("report", "lab1", "--from", str(workshop_dir))
    assert (r.returncode, r.stderr) == (2, "inflab: error: give a session NAME or --from DIR (one of the two)\n")


# ---------------------------------------------------------------- the parsers


def test_a_log_in_the_first_published_wording_parses_too(tmp_path):
    text = (
        direct_log(4, 0.0144, 0.0158, 0.0164, 36.3604)
        .replace("(4 sentences)", "(4 x sentences)")
        .replace("(num_requests * batch_size /sec)", "(sentences * batch_size /sec)")
    )
    row = workshop.parse_log(text, tmp_path / f"{MODEL}_inf_128_4.pt.log")
    assert (row["batch_size"], row["target"], row["duration_s"]) == (4, "inf1", 36.3604)
    assert row["latency_ms_p90"] == pytest.approx(15.8)


def test_a_gpu_log_at_half_precision_is_fp16_on_cuda(tmp_path):
    text = "Max Length: 128, Batch Size: 4, Model Name: x, Half Precision: True\n" + direct_log(
        4, 0.01, 0.02, 0.03, 10.0
    )
    row = workshop.parse_log(text, tmp_path / f"{MODEL}_gpu_128_4.pt.log")
    assert (row["target"], row["precision"]) == ("cuda", "fp16")


@pytest.mark.parametrize(
    "text, reason",
    [
        (direct_log(4, 0.01, 0.02, 0.03, 10.0).replace(" 0.03]", "]"), "not followed by three values"),
        (direct_log(4, 0.01, 0.02, 0.03, 10.0).split("Throughput")[0], "no Throughput line"),
        ("Throughput (num_requests * batch_size /sec) = 10.0\n", "no Latency line"),
    ],
)
def test_a_log_without_what_a_finished_run_prints_is_refused(tmp_path, text, reason):
    with pytest.raises(workshop.BadFile, match=reason):
        workshop.parse_log(text, tmp_path / f"{MODEL}_inf1_128_4.pt.log")


def test_log_lines_after_the_json_and_bracketed_log_lines_before_it_are_ignored(tmp_path):
    text = "[1] starting\n" + json.dumps([neuronperf_result(2, 800.0, 9.0, 12.0)]) + "\n[done]\n"
    (row,) = workshop.parse_neuronperf(text, tmp_path / f"neuronperf_results_{MODEL}_inf1_128_2.json")
    assert (row["batch_size"], row["throughput_avg"], row["latency_ms_p50"], row["latency_ms_p90"]) == (
        2,
        800.0,
        9.0,
        None,
    )


@pytest.mark.parametrize(
    "doc, reason",
    [
        ([], "an empty list"),
        ([1, 2], "a list holding a number"),
        ("text", "a string"),
        ([{"batch_size": 4}], "entry 0: throughput_avg is missing"),
        ([{"batch_size": 4.5, "throughput_avg": 1.0, "latency_ms_p50": 1.0}], "batch_size is 4.5"),
    ],
)
def test_a_json_that_is_not_a_list_of_results_is_refused(tmp_path, doc, reason):
    with pytest.raises(workshop.BadFile, match=reason):
        workshop.parse_neuronperf(json.dumps(doc), tmp_path / "r.json")


def test_imported_rows_have_the_report_row_shape(workshop_dir):
    rows, _ = workshop.import_dir(workshop_dir)
    assert all(set(r) == set(report.ROW_KEYS) for r in rows)
    # unpriced: throughput against p90. neuronperf's batch 4 (1,180.5/s at 14.8 ms) beats the logs' 4 and 8
    assert [(r["run"], on) for r, on in zip(rows, report.frontier(rows))] == [
        ("128_2.log", True),
        ("128_4.log", False),
        ("128_8.log", False),
        ("128_4.json", True),
    ]


# ---------------------------------------------------------------- hostile files: one warning each, the rest import


def test_a_deeply_nested_json_file_is_one_warning_and_the_rest_import(workshop_dir, cli):
    (workshop_dir / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (workshop_dir / "deep-after-a-log-line.json").write_text("loading\n" + '{"a": ' * 50_000 + "1" + "}" * 50_000)

    r = cli("report", "--from", str(workshop_dir), "--format", "csv")

    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert len(rows_of(r.stdout)) == 4  # what imported before still does
    deep = [w for w in warnings_of(r.stderr) if "/deep" in w]
    assert len(deep) == 2 and all("not imported: its JSON is nested too deeply to read" in w for w in deep), deep


@pytest.mark.parametrize(
    "where, text, number",
    [
        (
            "log",
            direct_log(4, 0.01, 0.02, 0.03, 10.0).replace("= 4000.0000", "= 1" + "0" * 400),
            "100000000000…(401 characters)",
        ),
        ("log", direct_log(4, 0.01, 0.02, 0.03, 10.0).replace("[0.01 ", "[1e400 "), "1e400"),
        (
            "json",
            "["
            + json.dumps(neuronperf_result(4, 1.0, 1.0, 2.0)).replace(
                '"throughput_avg": 1.0', '"throughput_avg": ' + "1" + "0" * 400
            )
            + "]",
            "100000000000…(401 characters)",
        ),
        ("json", json.dumps([neuronperf_result(4, float("inf"), 1.0, 2.0)]), "Infinity"),
        ("json", json.dumps([neuronperf_result(4, 1.0, float("nan"), 2.0)]), "NaN"),
        (
            "json",
            json.dumps([neuronperf_result(4, 1.0, 1.0, 2.0)]).replace(
                '"latency_ms_p50": 1.0', '"latency_ms_p50": 1e999'
            ),
            "1e999",
        ),
    ],
    ids=["log-10**400", "log-1e400", "json-10**400", "json-Infinity", "json-NaN", "json-1e999"],
)
def test_a_number_that_is_not_finite_is_one_warning_and_never_ranked(where, text, number, workshop_dir, cli):
    name = f"{MODEL}_inf1_128_64.pt.log" if where == "log" else f"neuronperf_results_{MODEL}_inf1_128_64.json"
    (workshop_dir / name).write_text(text)

    r = cli("report", "--from", str(workshop_dir), "--format", "json")

    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    doc = json.loads(r.stdout)  # strict JSON: no Infinity in it
    assert all(row["batch_size"] != 64 for row in doc["rows"])
    assert doc["recommendation"]["fastest"]["throughput_avg"] == 1180.5
    (warned,) = [w for w in warnings_of(r.stderr) if name in w]
    assert warned.endswith(f"{name}: not imported: {number} is not a finite number"), warned


def test_escape_sequences_in_file_names_are_shown_not_sent_to_the_terminal(workshop_dir, cli):
    osc52 = "\x1b]52;c;aGk=\x07"  # write "hi" to the clipboard
    (workshop_dir / f"{MODEL}_inf1_128_16.pt.log").rename(workshop_dir / f"crash{osc52}\x1b[2J.log")
    good = workshop_dir / f"{MODEL}\x1b[31m_inf1_128_2.pt.log"
    (workshop_dir / f"{MODEL}_inf1_128_2.pt.log").rename(good)

    for fmt in ("table", "csv", "md"):
        r = cli("report", "--from", str(workshop_dir), "--format", fmt)
        assert r.returncode == 0, r.stderr
        for stream in (r.stdout, r.stderr):
            assert not any(c in stream for c in "\x1b\x07"), repr(stream)
        assert "crash\\x1b]52;c;aGk=\\x07\\x1b[2J.log: not imported" in r.stderr
        assert "\\x1b[31m" in r.stdout  # the imported row's model and run, shown as written


def test_an_undecodable_file_name_is_shown_escaped(workshop_dir, cli):
    os.rename(workshop_dir / f"{MODEL}_inf1_128_16.pt.log", os.fsencode(workshop_dir) + b"/bad\xff.log")
    os.rename(workshop_dir / f"{MODEL}_inf1_128_2.pt.log", os.fsencode(workshop_dir) + b"/bert\xff_inf1_128_2.pt.log")
    r = cli("report", "--from", str(workshop_dir))
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "bad\\udcff.log: not imported" in r.stderr
    assert "bert\\udcff " in r.stdout  # the row's model, from its file name: no raw byte on the terminal
