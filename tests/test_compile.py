"""The compile payload (inflab/remote/payload/compile.py): traced models agree with eager PyTorch,
the manifests other code reads, the offline fallback, and the command line.

Run as the host runs it (a subprocess on the script) with ``--size tiny`` and small shapes, so
the file stays well under a minute and a half on two cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inflab.remote.payload import compile as comp, targets

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "inflab" / "remote" / "payload" / "compile.py"
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused at once

# Tolerances these tests hold the artifacts to (the payload states its own, REL_TOL):
FP32_TOL = 1e-4  # traced vs eager fp32 on the same CPU: measured 0 (identical kernels)
INT8_TOL = 0.1  # x max(1, max |eager logit|): dynamic int8 measured 0.2-2% of that scale

# torch.jit.load/trace are deprecated in torch 2.13 but are what the Neuron SDKs produce and load.
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*deprecated:DeprecationWarning")

MANIFEST_KEYS = {
    "format",
    "family",
    "name",
    "size",
    "weights",
    "weights_note",
    "target",
    "precision",
    "batch_size",
    "file",
    "inputs",
    "check",
    "compile_s",
    "system",
    "num_labels",
    "labels",
}


def run_compile(*args: str, home: Path, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    e.update(PYTHONUNBUFFERED="1", HF_HOME=str(home / "hf-home"))  # an empty cache: nothing can come from it
    e.update(env or {})
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=e, cwd=ROOT
    )


def manifests(out: Path) -> list[dict]:
    return [json.loads((out / name).read_text()) for name in json.loads((out / "index.json").read_text())]


def inputs_from_spec(spec: list[dict], seed: int) -> tuple:
    """What a benchmark does with a manifest: ints uniform in [low, high), floats standard normal."""
    import torch

    g = torch.Generator().manual_seed(seed)
    out = []
    for item in spec:
        dtype, shape = getattr(torch, item["dtype"]), tuple(item["shape"])
        out.append(
            torch.randn(shape, generator=g, dtype=dtype)
            if dtype.is_floating_point
            else torch.randint(item["low"], item["high"], shape, generator=g, dtype=dtype)
        )
    return tuple(out)


def eager_logits(manifest: dict, inputs: tuple):
    """The same random-weight model rebuilt here (the payload seeds it), called by input NAME, so
    this also proves the manifest's input order is the traced model's argument order."""
    import torch

    model, _ = comp.random_model(manifest["family"], manifest["name"], manifest["size"], None)
    with torch.no_grad():
        return model(**{i["name"]: t for i, t in zip(manifest["inputs"], inputs)}).logits


def saved_vs_eager(out: Path, manifest: dict, seed: int = 123):
    """(saved model's logits, eager fp32 logits) on fresh inputs built from the manifest."""
    import torch

    inputs = inputs_from_spec(manifest["inputs"], seed)
    with torch.no_grad():
        got = torch.jit.load(str(out / manifest["file"]))(*inputs)
    return got, eager_logits(manifest, inputs)


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory):
    """One tiny BERT compile for cpu with --int8: both artifacts, shared by the tests below."""
    home = tmp_path_factory.mktemp("bert")
    out = home / "models"
    proc = run_compile(
        "--family",
        "bert",
        "--size",
        "tiny",
        "--target",
        "cpu",
        "--batch-size",
        "2",
        "--max-length",
        "16",
        "--int8",
        "--out",
        str(out),
        "--instance-type",
        "test.large",
        home=home,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, proc


@pytest.mark.slow
def test_manifest_format_index_and_loading(bert_run):
    out, proc = bert_run
    assert json.loads((out / "index.json").read_text()) == ["bert_cpu_fp32_16_b2.json", "bert_cpu_int8_16_b2.json"]
    for m, precision in zip(manifests(out), ("fp32", "int8")):
        assert MANIFEST_KEYS | {"max_length"} == set(m), sorted(set(m) ^ (MANIFEST_KEYS | {"max_length"}))
        assert (m["format"], m["family"], m["name"], m["size"]) == (
            "inflab-model/1",
            "bert",
            "bert-base-cased-finetuned-mrpc",
            "tiny",
        )
        assert (m["target"], m["precision"], m["batch_size"], m["max_length"]) == ("cpu", precision, 2, 16)
        assert m["weights"] == "random" and "tiny" in m["weights_note"] and "timing only" in m["weights_note"]
        assert m["file"] == f"bert_cpu_{precision}_16_b2.pt" and (out / m["file"]).is_file()
        assert m["inputs"] == [
            {"name": "input_ids", "shape": [2, 16], "dtype": "int64", "low": 0, "high": 28996},
            {"name": "attention_mask", "shape": [2, 16], "dtype": "int64", "low": 1, "high": 2},
            {"name": "token_type_ids", "shape": [2, 16], "dtype": "int64", "low": 0, "high": 2},
        ]
        assert set(m["check"]) == {"max_abs_diff", "tolerance", "ok", "reference"} and m["check"]["ok"] is True
        assert m["check"]["reference"] == "eager fp32"
        assert m["compile_s"] > 0
        assert m["system"]["instance_type"] == "test.large" and "torch" in m["system"]["packages"]
        loaded = targets.load("cpu", str(out / m["file"]))
        assert tuple(loaded(*inputs_from_spec(m["inputs"], 0)).shape) == (2, 2)
    assert "[compile] done bert_cpu_fp32_16_b2.pt" in proc.stdout
    assert "[compile] check: max abs diff" in proc.stdout
    assert "TracerWarning" not in proc.stderr  # the known noise is filtered


@pytest.mark.slow
def test_bert_traced_agrees_with_eager(bert_run):
    import torch

    out, _ = bert_run
    m = manifests(out)[0]
    assert m["precision"] == "fp32" and m["check"]["max_abs_diff"] <= FP32_TOL
    assert m["check"]["tolerance"] <= FP32_TOL
    got, ref = saved_vs_eager(out, m)
    assert got.shape == ref.shape == (2, 2) and bool(torch.isfinite(got).all())
    assert float(ref.std()) > 0  # a real, non-constant output
    assert float((got - ref).abs().max()) <= FP32_TOL


@pytest.mark.slow
def test_int8_bert_agrees_within_its_tolerance(bert_run):
    import torch

    out, _ = bert_run
    m = manifests(out)[1]
    assert m["precision"] == "int8"
    graph = str(torch.jit.load(str(out / m["file"])).inlined_graph)
    assert "quantized::linear_dynamic" in graph  # it really is the quantized model
    assert 0 < m["check"]["max_abs_diff"] <= m["check"]["tolerance"] <= INT8_TOL * 2
    got, ref = saved_vs_eager(out, m)
    assert got.shape == (2, 2) and bool(torch.isfinite(got).all())
    diff = float((got - ref).abs().max())
    assert 0 < diff <= INT8_TOL * max(1.0, float(ref.abs().max()))


@pytest.mark.slow
def test_resnet_traced_agrees_with_eager(tmp_path):
    import torch

    out = tmp_path / "models"
    proc = run_compile(
        "--family",
        "resnet",
        "--size",
        "tiny",
        "--target",
        "cpu",
        "--batch-size",
        "2",
        "--image-size",
        "64",
        "--out",
        str(out),
        home=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [m] = manifests(out)
    assert (m["file"], m["name"], m["image_size"]) == ("resnet_cpu_fp32_64_b2.pt", "microsoft/resnet-50", 64)
    assert "max_length" not in m
    assert m["inputs"] == [{"name": "pixel_values", "shape": [2, 3, 64, 64], "dtype": "float32"}]
    assert m["check"]["ok"] and m["check"]["max_abs_diff"] <= FP32_TOL
    got, ref = saved_vs_eager(out, m)
    assert got.shape == ref.shape == (2, 1000) and bool(torch.isfinite(got).all())
    assert float((got - ref).abs().max()) <= FP32_TOL * max(1.0, float(ref.abs().max()))


@pytest.mark.slow
def test_unreachable_hub_falls_back_to_random_weights_quickly(tmp_path):
    out = tmp_path / "models"
    proc = run_compile(
        "--family",
        "bert",
        "--target",
        "cpu",
        "--batch-size",
        "1",
        "--max-length",
        "8",
        "--out",
        str(out),
        home=tmp_path,
        env={"HF_ENDPOINT": UNREACHABLE},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [m] = manifests(out)
    assert (m["size"], m["weights"], m["name"]) == ("full", "random", "bert-base-cased-finetuned-mrpc")
    assert "unreachable" in m["weights_note"] and "timing only" in m["weights_note"]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("[compile] weights:"))
    assert "random" in line and "the hub was unreachable" in line and "bert-base-cased-finetuned-mrpc's" in line
    assert "Retrying" not in proc.stderr  # the hub client's ~25 s of retries were never started


@pytest.mark.slow
def test_offline_flag_says_so_and_never_probes_the_hub(tmp_path):
    out = tmp_path / "models"
    proc = run_compile(
        "--family",
        "resnet",
        "--name",
        "microsoft/resnet-18",
        "--target",
        "cpu",
        "--batch-size",
        "1",
        "--image-size",
        "32",
        "--offline",
        "--out",
        str(out),
        home=tmp_path,
        env={"HF_ENDPOINT": UNREACHABLE},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [m] = manifests(out)
    assert m["weights"] == "random" and m["weights_note"].startswith("--offline")
    assert "[compile] weights: random — --offline" in proc.stdout
    assert "unreachable" not in proc.stdout


@pytest.mark.slow
def test_unknown_name_offline_uses_the_family_base_and_warns(capsys):
    model, arch = comp.random_model("bert", "nobody/some-bert", "tiny", None)
    assert "warning: nobody/some-bert is not in the offline config table" in capsys.readouterr().out
    assert model.config.vocab_size == 30522 and model.config.hidden_size == 128 and "bert-base-uncased" in arch


@pytest.mark.slow
def test_a_failed_check_says_why_and_exits_nonzero(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(comp.REL_TOL, "cpu", -1.0)  # nothing can pass a negative tolerance
    for key in ("HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT", "TOKENIZERS_PARALLELISM"):
        monkeypatch.setenv(key, os.environ.get(key, ""))  # main() sets defaults: keep them out of later tests
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
            "--out",
            str(out),
        ]
    )
    assert code == 1
    [m] = manifests(out)
    assert m["check"]["ok"] is False and (out / m["file"]).is_file()
    assert "check FAILED: max abs diff" in capsys.readouterr().out


def test_int8_needs_the_cpu_target(tmp_path):
    proc = run_compile(
        "--family",
        "bert",
        "--target",
        "inf1",
        "--batch-size",
        "1",
        "--int8",
        "--out",
        str(tmp_path / "models"),
        home=tmp_path,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "--int8" in proc.stderr, proc.stderr
    assert proc.stdout == "" and not (tmp_path / "models").exists()


@pytest.mark.parametrize(
    "args, flag",
    [
        (["--target", "tpu", "--batch-size", "1"], "--target"),
        (["--target", "cpu", "--batch-size", "0"], "--batch-size"),
        (["--target", "cpu", "--batch-size", "1", "--image-size", "8"], "--image-size"),
    ],
)
def test_bad_arguments_name_the_flag(tmp_path, args, flag):
    proc = run_compile("--family", "bert", *args, "--out", str(tmp_path / "m"), home=tmp_path)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and flag in proc.stderr, proc.stderr


def test_importing_the_payload_is_cheap():
    code = "import sys, inflab.remote.payload.compile; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
