"""The serving exercise's payload scripts, tested in this process and without TorchServe running.

Covered here:
- ``inflab_handler.py``: the TorchServe handler on a tiny compiled BERT (batch 4) and ResNet
  (batch 2) built by ``compile.py``, driven through ``BaseHandler.handle`` with a fake
  TorchServe context: one answer per request, labels and top-k scores, batches larger than the
  compiled one, bad requests answered with their own 400 while the rest of the batch is
  answered, and answers that do not depend on the batch a request happens to share.
- ``archive.py``: ``labels_for`` and packaging a real ``.mar`` with torch-model-archiver (what
  is inside, the sha256 it records, a handler loaded from the unpacked archive), bad arguments.
- ``loadgen.py``: ``percentile``, ``schedule`` and whole runs against a small HTTP server
  started here (token check, slow answers, 503s, a wrong key), including that the key is never
  printed or written.
- ``serve.py``: the ``config.properties`` it writes, ``free_ports``, and a missing archive.
- ``inflab/config.py``: the ``[serve]`` section's validation and ``serve.input`` resolution.

Everything runs on the CPU with small shapes so the file stays well under 40 s on two cores.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import io
import json
import math
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from pathlib import Path

import pytest
from PIL import Image

from inflab import config
from inflab.config import ConfigError
from inflab.remote.payload import archive, loadgen, ports as payload_ports, serve

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "inflab" / "assets" / "samples"
MRPC = ["not paraphrase", "paraphrase"]
SCORE_TOL = 1e-5  # scores are rounded to 6 decimals; the same pair must score the same in any batch

# torch.jit.load is deprecated in recent torch but is what the Neuron SDKs produce and load.
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*deprecated:DeprecationWarning")


def one_line(text: str) -> str:
    """``text`` must be exactly one line (what the lab prints for a refused value)."""
    lines = text.strip("\n").split("\n")
    assert len(lines) == 1, f"expected one line, got {text!r}"
    return lines[0]


# ---------------------------------------------------------------------- compiled models
BERT_BATCH, RESNET_BATCH = 4, 2


# Both models in one process, through compile.py's own main(): importing transformers is most of
# the work, so it is done once (and in a child, so the environment compile.py sets stays there).
COMPILE_BOTH = """
import json, sys
from inflab.remote.payload import compile
for argv in json.loads(sys.argv[1]):
    if compile.main(argv) != 0:
        sys.exit(1)
"""


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, dict]:
    """The tiny BERT and ResNet, compiled for the CPU by the payload's compile step. Returns
    family -> its manifest, with "path" set to the manifest file."""
    out = tmp_path_factory.mktemp("compiled")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(PYTHONUNBUFFERED="1", HF_HOME=str(out / "hf-home"))  # offline, empty cache: nothing downloaded
    common = ["--target", "cpu", "--size", "tiny", "--offline"]
    jobs = {
        "bert": common + ["--family", "bert", "--batch-size", str(BERT_BATCH), "--max-length", "32"],
        "resnet": common + ["--family", "resnet", "--batch-size", str(RESNET_BATCH), "--image-size", "64"],
    }
    argvs = [args + ["--out", str(out / family)] for family, args in jobs.items()]
    done = subprocess.run(
        [sys.executable, "-c", COMPILE_BOTH, json.dumps(argvs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout
    found = {}
    for family in jobs:
        (name,) = json.loads((out / family / "index.json").read_text())
        manifest = json.loads((out / family / name).read_text())
        found[family] = {**manifest, "path": str(out / family / name)}
    return found


# ---------------------------------------------------------------------- the handler
class FakeMetrics:
    def __init__(self):
        self.times = []

    def add_time(self, *args, **kwargs):
        self.times.append(args)


class FakeContext:
    """What the handler uses of TorchServe's ``Context``; records the statuses it sets."""

    def __init__(self, model_dir: Path, serialized: str):
        self.system_properties = {"model_dir": str(model_dir), "gpu_id": None}
        self.manifest = {"model": {"serializedFile": serialized}}
        self.metrics = FakeMetrics()
        self.statuses: list[tuple[int, str, int]] = []

    def get_request_header(self, idx, key):
        return None

    def set_response_status(self, code=200, phrase="", idx=0):
        self.statuses.append((code, phrase, idx))


def model_dir(manifest: dict, where: Path) -> Path:
    """A directory laid out as TorchServe unpacks our archive: the .pt, model.json, index_to_name.json."""
    where.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(manifest["path"]).with_suffix(".pt"), where / manifest["file"])
    spec = {k: v for k, v in manifest.items() if k != "path"}
    (where / "model.json").write_text(json.dumps(spec))
    names = {str(i): n for i, n in enumerate(archive.labels_for(spec))}
    (where / "index_to_name.json").write_text(json.dumps(names))
    return where


class Served:
    """An initialised handler and a way to send it a batch, as a TorchServe worker would."""

    def __init__(self, directory: Path, serialized: str):
        from inflab.remote.payload import inflab_handler

        self.dir, self.serialized = directory, serialized
        self.handler = inflab_handler.InflabHandler()
        self.handler.initialize(FakeContext(directory, serialized))
        self.labels = self.handler.labels

    def ask(self, requests: list) -> tuple[list, FakeContext]:
        ctx = FakeContext(self.dir, self.serialized)
        answers = self.handler.handle(requests, ctx)
        assert len(answers) == len(requests)
        assert ctx.metrics.times, "the handler's time was not recorded"
        return answers, ctx


@pytest.fixture(scope="module")
def bert(compiled, tmp_path_factory) -> Served:
    m = compiled["bert"]
    return Served(model_dir(m, tmp_path_factory.mktemp("bert-model")), m["file"])


@pytest.fixture(scope="module")
def resnet(compiled, tmp_path_factory) -> Served:
    m = compiled["resnet"]
    return Served(model_dir(m, tmp_path_factory.mktemp("resnet-model")), m["file"])


PAIRS = [
    ("The company is based in New York City", "Its headquarters are situated in Manhattan"),
    ("A man is playing a guitar.", "Someone plays an instrument."),
    ("Stocks fell sharply on Monday", "The market dropped at the start of the week"),
    ("The cat sat on the mat", "A dog slept under the table"),
    ("He said the report would be ready soon", "The report, he said, was nearly done"),
    ("Rain is expected tomorrow", "Tomorrow will be sunny and dry"),
    ("One", "Two"),
]


def pair_request(a: str, b: str) -> dict:
    return {"body": bytearray(json.dumps({"sentence1": a, "sentence2": b}).encode())}


def assert_answer(answer: dict, labels: list[str], top: int, sums_to_one: bool) -> None:
    assert set(answer) >= {"label", "scores"} and "error" not in answer, answer
    scores = answer["scores"]
    assert len(scores) == top
    assert set(scores) <= set(labels) and answer["label"] in labels
    values = list(scores.values())
    assert all(0 <= v <= 1 for v in values)
    assert values == sorted(values, reverse=True), "scores are not best first"
    assert answer["label"] == max(scores, key=scores.get)
    if sums_to_one:
        assert sum(values) == pytest.approx(1, abs=1e-5)


def assert_same_answer(got: dict, want: dict) -> None:
    assert got["label"] == want["label"]
    assert got["scores"].keys() == want["scores"].keys()
    for name, value in want["scores"].items():
        assert got["scores"][name] == pytest.approx(value, abs=SCORE_TOL), name


@pytest.fixture(scope="module")
def alone(bert) -> list[dict]:
    """Each of PAIRS answered in a batch of its own (the reference the batched answers must match)."""
    return [bert.ask([pair_request(*p)])[0][0] for p in PAIRS]


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_bert_answers_every_pair_of_a_batch(bert, n):
    answers, ctx = bert.ask([pair_request(*p) for p in PAIRS[:n]])
    assert bert.labels == MRPC  # a 2-class BERT with generic names gets MRPC's
    for answer in answers:
        assert_answer(answer, MRPC, top=2, sums_to_one=True)
        assert "hashed" in answer["note"]  # the tiny model has no tokenizer, and the answer says so
    assert ctx.statuses == []


def test_bert_batch_larger_than_compiled_is_answered_in_full_and_in_order(bert, alone):
    answers, ctx = bert.ask([pair_request(*p) for p in PAIRS])  # 7 requests, compiled for 4
    assert len(PAIRS) > BERT_BATCH
    for got, want in zip(answers, alone):
        assert_same_answer(got, want)
    assert ctx.statuses == []


@pytest.mark.parametrize("size, position", [(2, 0), (2, 1), (3, 1), (4, 0), (4, 3)])
def test_bert_answer_does_not_depend_on_its_batch_or_padding(bert, alone, size, position):
    others = [pair_request(*p) for p in PAIRS[1:size]]  # a batch under 4 is padded with copies of its last row
    batch = others[:position] + [pair_request(*PAIRS[0])] + others[position:]
    answers, _ = bert.ask(batch)
    assert_same_answer(answers[position], alone[0])
    for got, want in zip(answers[:position] + answers[position + 1 :], alone[1:size]):
        assert_same_answer(got, want)


def test_bert_takes_each_body_form_torchserve_gives(bert, alone):
    a, b = PAIRS[0]
    text = json.dumps({"sentence1": a, "sentence2": b})
    forms = [
        {"body": bytearray(text.encode())},
        {"data": text.encode()},
        {"body": text},
        {"data": {"sentence1": a, "sentence2": b}},
        {"data": None, "body": text.encode()},
    ]
    answers, ctx = bert.ask(forms)
    for answer in answers:
        assert_same_answer(answer, alone[0])
    assert ctx.statuses == []


def test_bert_truncates_long_sentences_to_the_compiled_length(bert):
    long = " ".join(f"word{i}" for i in range(300))
    batch = [pair_request(long, "short"), pair_request("short", long), pair_request(long, long), pair_request("a", "b")]
    answers, ctx = bert.ask(batch)
    for answer in answers:
        assert_answer(answer, MRPC, top=2, sums_to_one=True)
    assert ctx.statuses == []
    # a Neuron graph takes exactly its compiled shape: every row is max_length tokens, ending in [SEP] or padding
    rows, errors = bert.handler.preprocess(batch)
    assert errors == {}
    names = bert.handler.input_names
    assert all(t.shape == (32,) for row in rows for t in row)
    longest = dict(zip(names, rows[2]))
    assert int(longest["input_ids"][-1]) == 102 and int(longest["attention_mask"].sum()) == 32  # ends in [SEP], full


BAD_PAIRS = {
    "not JSON": b"hello",
    "no sentence2": b'{"sentence1": "a b"}',
    "blank sentence2": b'{"sentence1": "a b", "sentence2": "   "}',
    "a number": b'{"sentence1": 3, "sentence2": "c d"}',
    "a JSON list": b'["a b", "c d"]',
    "not UTF-8": b"\xff\xfe\x00",
    "empty": b"",
    "a dict without sentences": {"text": "a b"},
}


@pytest.mark.parametrize("bad", BAD_PAIRS.values(), ids=BAD_PAIRS.keys())
def test_bert_bad_request_gets_its_own_400_and_the_rest_are_answered(bert, alone, bad):
    batch = [pair_request(*PAIRS[0]), {"body": bad}, pair_request(*PAIRS[1])]
    answers, ctx = bert.ask(batch)
    assert set(answers[1]) == {"error"}
    reason = answers[1]["error"]
    assert "sentence1" in reason and "sentence2" in reason  # says what was expected
    assert ctx.statuses == [(400, reason, 1)]
    assert_same_answer(answers[0], alone[0])
    assert_same_answer(answers[2], alone[1])


def test_bert_batch_of_only_bad_requests_gets_a_400_each(bert):
    answers, ctx = bert.ask([{"body": b"x"}, {"body": b"{}"}, {"body": b"null"}])
    assert all(set(a) == {"error"} for a in answers)
    assert [(code, idx) for code, _, idx in ctx.statuses] == [(400, 0), (400, 1), (400, 2)]


def test_bert_deeply_nested_json_gets_its_own_400(bert, alone):
    answers, ctx = bert.ask([{"body": b"[" * 100_000}, pair_request(*PAIRS[0])])
    assert set(answers[0]) == {"error"} and ctx.statuses[0][:1] == (400,)
    assert_same_answer(answers[1], alone[0])


def test_bert_uses_the_tokenizer_saved_beside_the_model(compiled, tmp_path):
    """With the tokenizer the compile step saves for a real checkpoint, pairs are tokenized by it
    (the answer carries no "words were hashed" note)."""
    from transformers import BertTokenizer

    m = compiled["bert"]
    directory = model_dir(m, tmp_path / "model")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "a", "dog", "."]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizer(vocab_file=str(tmp_path / "vocab.txt")).save_pretrained(str(directory / "tokenizer"))
    served = Served(directory, m["file"])
    assert served.handler.tokenizer is not None
    long = " ".join(["the cat sat on the mat"] * 20)  # longer than the compiled 32 tokens: truncated
    answers, ctx = served.ask(
        [pair_request("the cat sat on the mat", "a dog sat on the mat ."), pair_request(long, long), {"body": b"nope"}]
    )
    for answer in answers[:2]:
        assert_answer(answer, MRPC, top=2, sums_to_one=True)
        assert "note" not in answer
    assert ctx.statuses == [(400, answers[2]["error"], 2)]


# ResNet ------------------------------------------------------------------------------
def image_bytes(image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_resnet_sample_image_gets_top5_of_its_labels(resnet):
    assert len(resnet.labels) == 1000
    cat = (SAMPLES / "cat.jpg").read_bytes()
    answers, ctx = resnet.ask([{"body": bytearray(cat)}])
    assert_answer(answers[0], resnet.labels, top=5, sums_to_one=False)
    assert "note" not in answers[0]
    assert ctx.statuses == []


def test_resnet_answers_any_readable_image_and_chunks_a_large_batch(resnet):
    cat = (SAMPLES / "cat.jpg").read_bytes()
    (alone,), _ = resnet.ask([{"body": cat}])
    shapes = [
        Image.new("L", (1, 1), 128),
        Image.new("RGBA", (300, 20), (10, 200, 30, 90)),
        Image.effect_noise((40, 500), 60),
        Image.new("P", (64, 64)),
    ]
    batch = [{"data": image_bytes(im)} for im in shapes] + [{"body": cat}]  # 5 requests, compiled for 2
    answers, ctx = resnet.ask(batch)
    for answer in answers:
        assert_answer(answer, resnet.labels, top=5, sums_to_one=False)
    assert_same_answer(answers[-1], alone)  # the last chunk was padded
    assert ctx.statuses == []


@pytest.mark.parametrize(
    "bad",
    [
        b"hello",
        "a text body",
        {"image": "cat"},
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
        (SAMPLES / "cat.jpg").read_bytes()[:400],
    ],
    ids=["bytes", "str", "dict", "png-header-only", "truncated-jpeg"],
)
def test_resnet_non_image_gets_its_own_400(resnet, bad):
    cat = (SAMPLES / "cat.jpg").read_bytes()
    (alone,), _ = resnet.ask([{"body": cat}])
    answers, ctx = resnet.ask([{"body": cat}, {"body": bad}])
    assert set(answers[1]) == {"error"} and "image" in answers[1]["error"]
    assert ctx.statuses == [(400, answers[1]["error"], 1)]
    assert_same_answer(answers[0], alone)


def _bomb_header() -> bytes:
    """A PNG that claims 20000 x 10000 pixels (PIL refuses anything over 2 x 89 M pixels)."""
    ihdr = struct.pack(">IIBBBBB", 20000, 10000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b"")


def _broken_chunk() -> bytes:
    """A real PNG cut after half its pixel data, followed by a chunk with an invalid name."""
    real = image_bytes(Image.effect_noise((64, 64), 50).convert("RGB"))
    at = real.index(b"IDAT") - 4
    (length,) = struct.unpack(">I", real[at : at + 4])
    pixels = real[at + 8 : at + 8 + length]
    return real[:at] + png_chunk(b"IDAT", pixels[: length // 2]) + b"\x00\x00\x00\x10!!!!" + b"x" * 30


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(_bomb_header, id="decompression-bomb"),  # Image.open: a 45-byte PNG claiming 20000 x 10000 pixels
        pytest.param(_broken_chunk, id="broken-png-chunk"),  # convert("RGB"): pixel data followed by an invalid chunk
    ],
)
def test_resnet_unreadable_png_gets_its_own_400(resnet, make):
    cat = (SAMPLES / "cat.jpg").read_bytes()
    answers, ctx = resnet.ask([{"body": cat}, {"body": make()}])
    assert set(answers[1]) == {"error"}
    assert ctx.statuses == [(400, answers[1]["error"], 1)]
    assert_answer(answers[0], resnet.labels, top=5, sums_to_one=False)


# ---------------------------------------------------------------------- archive.py
@pytest.mark.parametrize(
    "manifest, want",
    [
        ({"family": "bert", "num_labels": 2, "labels": ["LABEL_0", "LABEL_1"]}, MRPC),
        ({"family": "bert", "num_labels": 2, "labels": ["label_0", "LABEL_1"]}, MRPC),
        (
            {"family": "bert", "num_labels": 2, "labels": ["equivalent", "not_equivalent"]},
            ["equivalent", "not_equivalent"],
        ),
        (
            {"family": "bert", "num_labels": 3, "labels": ["LABEL_0", "LABEL_1", "LABEL_2"]},
            ["LABEL_0", "LABEL_1", "LABEL_2"],
        ),
        ({"family": "resnet", "num_labels": 2, "labels": ["LABEL_0", "LABEL_1"]}, ["LABEL_0", "LABEL_1"]),
        (
            {"family": "resnet", "num_labels": 3, "labels": ["tench", "goldfish", "shark"]},
            ["tench", "goldfish", "shark"],
        ),
        ({"family": "resnet", "num_labels": 3}, ["class 0", "class 1", "class 2"]),
        ({"family": "resnet", "num_labels": 3, "labels": ["tench"]}, ["class 0", "class 1", "class 2"]),
        ({"family": "resnet", "labels": ["tench", "goldfish"]}, ["tench", "goldfish"]),
    ],
)
def test_labels_for(manifest, want):
    assert archive.labels_for(manifest) == want


@pytest.fixture(scope="module")
def packaged(compiled, tmp_path_factory) -> tuple[Path, str]:
    """main() run on the tiny BERT: (the model store, what it printed)."""
    out = tmp_path_factory.mktemp("store")
    model = str(Path(compiled["bert"]["path"]).with_suffix(".pt"))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = archive.main(["--model", model, "--name", "inflab", "--out", str(out)])
    assert code == 0, buf.getvalue()
    return out, buf.getvalue()


def test_archive_packs_model_handler_manifest_labels_and_seam(packaged, compiled):
    out, printed = packaged
    mar = out / "inflab.mar"
    with zipfile.ZipFile(mar) as z:
        names = set(z.namelist())
        assert {
            "inflab_handler.py",
            "model.json",
            "index_to_name.json",
            "targets.py",
            "sysinfo.py",
            "MAR-INF/MANIFEST.json",
            compiled["bert"]["file"],
        } <= names
        spec = json.loads(z.read("model.json"))
        assert (
            spec["family"] == "bert"
            and spec["batch_size"] == BERT_BATCH
            and spec["inputs"] == compiled["bert"]["inputs"]
        )
        assert json.loads(z.read("index_to_name.json")) == {"0": MRPC[0], "1": MRPC[1]}
        ts = json.loads(z.read("MAR-INF/MANIFEST.json"))["model"]
        assert ts["modelName"] == "inflab" and ts["handler"] == "inflab_handler.py"
        assert ts["serializedFile"] == compiled["bert"]["file"]
    info = json.loads((out / "inflab.json").read_text())
    assert info["format"] == "inflab-archive/1" and info["mar"] == "inflab.mar"
    assert info["sha256"] == hashlib.sha256(mar.read_bytes()).hexdigest()
    assert info["bytes"] == mar.stat().st_size
    assert info["labels"] == 2 and info["label_names"] == MRPC and info["tokenizer"] is False
    assert not list(out.glob("*.tmp"))
    assert "inflab.mar" in printed and "2 classes" in printed


def test_archive_unpacked_as_torchserve_does_answers_requests(packaged, tmp_path):
    out, _ = packaged
    with zipfile.ZipFile(out / "inflab.mar") as z:
        z.extractall(tmp_path)
    serialized = json.loads((tmp_path / "MAR-INF" / "MANIFEST.json").read_text())["model"]["serializedFile"]
    served = Served(tmp_path, serialized)
    answers, ctx = served.ask([pair_request(*PAIRS[0]), {"body": b"{}"}])
    assert_answer(answers[0], MRPC, top=2, sums_to_one=True)
    assert ctx.statuses == [(400, answers[1]["error"], 1)]


@pytest.mark.parametrize("what", ["missing", "no-manifest", "not-pt"])
def test_archive_refuses_a_model_that_is_not_there(compiled, tmp_path, capsys, what):
    pt = Path(compiled["bert"]["path"]).with_suffix(".pt")
    if what == "no-manifest":
        shutil.copy(pt, tmp_path / "lonely.pt")
    model = {
        "missing": str(tmp_path / "nothing.pt"),
        "no-manifest": str(tmp_path / "lonely.pt"),
        "not-pt": compiled["bert"]["path"],
    }[what]
    with pytest.raises(SystemExit) as e:
        archive.main(["--model", model, "--name", "inflab", "--out", str(tmp_path / "store")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert one_line(err).startswith("archive.py: error: argument --model:") and model in err
    assert not (tmp_path / "store" / "inflab.mar").exists()


# ---------------------------------------------------------------------- loadgen.py
def test_percentile_interpolates_between_closest_ranks():
    values = [10.0, 20.0, 30.0, 40.0]
    assert loadgen.percentile(values, 0) == 10
    assert loadgen.percentile(values, 50) == 25
    assert loadgen.percentile(values, 100) == 40
    assert loadgen.percentile(list(range(1, 11)), 90) == pytest.approx(9.1)
    assert loadgen.percentile(list(range(1, 101)), 99) == pytest.approx(99.01)
    assert loadgen.percentile([7.0], 99) == 7
    assert loadgen.percentile([], 50) is None


def test_schedule_is_poisson_at_the_rate_and_within_the_step():
    rate, seconds = 50.0, 200.0
    times = loadgen.schedule(rate, seconds, random.Random(1))
    assert times == loadgen.schedule(rate, seconds, random.Random(1))  # a seed gives the same run
    assert times == sorted(times) and 0 < times[0] and times[-1] < seconds
    gaps = [b - a for a, b in zip([0.0] + times, times)]
    assert sum(gaps) / len(gaps) == pytest.approx(1 / rate, rel=0.03)
    assert len(times) == pytest.approx(rate * seconds, rel=0.03)
    # exponential gaps: about 1/e of them longer than the mean (a fixed-rate ticker would give 0 or 1)
    assert sum(g > 1 / rate for g in gaps) / len(gaps) == pytest.approx(0.368, abs=0.03)
    assert loadgen.schedule(1.0, 0.001, random.Random(1)) == []


KEY, MANAGEMENT_KEY = "K-inference-4f9a1c", "M-management-77d0"


class FakeTorchServe(http.server.ThreadingHTTPServer):
    """Answers POSTs like TorchServe's inference API: 400 for a wrong token, else ``behave(n)``'s
    (status, delay in seconds) for the n-th request (1-based, warm-up included)."""

    daemon_threads = True

    def __init__(self, behave):
        super().__init__(("127.0.0.1", 0), _Answer)
        self.behave, self.lock, self.seen = behave, threading.Lock(), []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/predictions/inflab"


class _Answer(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        srv = self.server
        auth = self.headers.get("Authorization")
        with srv.lock:
            srv.seen.append({"path": self.path, "auth": auth, "type": self.headers.get("Content-Type"), "body": body})
            n = len(srv.seen)
        status, delay = (400, 0) if auth != f"Bearer {KEY}" else srv.behave(n)
        time.sleep(delay)
        reply = json.dumps({"label": "paraphrase"} if status == 200 else {"code": status}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_server():
    started = []

    def start(behave) -> FakeTorchServe:
        srv = FakeTorchServe(behave)
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.shutdown()
        srv.server_close()


STEP_S = 0.5
RATES = [20.0, 40.0, 80.0]


def first_rate_requests() -> int:
    """How many requests loadgen sends at RATES[0] (its schedule is seeded, so this is exact)."""
    return len(loadgen.schedule(RATES[0], STEP_S, random.Random(loadgen.SEED)))


def run_loadgen(tmp_path, url: str, limit_ms: float, rates=RATES, key: str = KEY) -> tuple[int, dict | None]:
    keys = tmp_path / "key_file.json"
    keys.write_text(json.dumps({"management": {"key": MANAGEMENT_KEY}, "inference": {"key": key}}))
    (tmp_path / "pair.json").write_bytes((SAMPLES / "pair.json").read_bytes())
    out = tmp_path / "load.json"
    code = loadgen.main(
        [
            "--url",
            url,
            "--key-file",
            str(keys),
            "--input",
            str(tmp_path / "pair.json"),
            "--content-type",
            "application/json",
            "--rates",
            ",".join(f"{r:g}" for r in rates),
            "--step-s",
            str(STEP_S),
            "--limit-ms",
            str(limit_ms),
            "--timeout-s",
            "10",
            "--out",
            str(out),
            "--run-id",
            "run-1",
        ]
    )
    return code, json.loads(out.read_text()) if out.exists() else None


def assert_rate_entries(result: dict, rates: list[float]) -> None:
    assert [r["offered_rps"] for r in result["rates"]] == rates
    for r in result["rates"]:
        assert r["sent"] > 0 and r["ok"] + r["errors"] == r["sent"]
        assert sum(r["error_kinds"].values()) == r["errors"]
        if r["ok"]:
            assert r["achieved_rps"] > 0
            assert r["latency_ms_p50"] <= r["latency_ms_p90"] <= r["latency_ms_p99"] <= r["latency_ms_max"]


def assert_key_kept_secret(capsys, tmp_path) -> str:
    printed = capsys.readouterr()
    for text in (printed.out, printed.err, *(p.read_text() for p in tmp_path.glob("load.json*"))):
        assert KEY not in text and MANAGEMENT_KEY not in text
    return printed.out


def test_loadgen_runs_every_rate_when_all_meet_the_limit(fake_server, tmp_path, capsys):
    srv = fake_server(lambda n: (200, 0.002))
    code, result = run_loadgen(tmp_path, srv.url, limit_ms=1000, rates=RATES[:2])
    assert code == 0
    assert result["format"] == "inflab-load/1" and result["complete"] is True and result["run_id"] == "run-1"
    assert_rate_entries(result, RATES[:2])
    assert all(r["meets_limit"] and r["errors"] == 0 and r["ok"] == r["sent"] for r in result["rates"])
    assert result["highest_rate_meeting_limit"] == RATES[1]
    assert "every rate" in result["stop_reason"]
    # what the server saw: warm-up plus every scheduled request, each with the token, the body and its type
    assert len(srv.seen) == loadgen.WARMUP_REQUESTS + sum(r["sent"] for r in result["rates"])
    body = (SAMPLES / "pair.json").read_bytes()
    assert all(
        s == {"path": "/predictions/inflab", "auth": f"Bearer {KEY}", "type": "application/json", "body": body}
        for s in srv.seen
    )
    out = assert_key_kept_secret(capsys, tmp_path)
    assert "highest rate meeting the limit: 40/s" in out


def phases(result: dict) -> list[tuple[str, float]]:
    return [(r["phase"], r["offered_rps"]) for r in result["rates"]]


def step_requests(*rates: float) -> list[int]:
    """How many requests loadgen sends at each of its first steps (its schedule is seeded: exact)."""
    rng = random.Random(loadgen.SEED)
    return [len(loadgen.schedule(r, STEP_S, rng)) for r in rates]


def test_loadgen_measures_a_rate_over_the_limit_again_then_narrows_the_answer(fake_server, tmp_path, capsys):
    fast = loadgen.WARMUP_REQUESTS + first_rate_requests()
    srv = fake_server(lambda n: (200, 0.002 if n <= fast else 0.25))
    code, result = run_loadgen(tmp_path, srv.url, limit_ms=120)
    assert code == 0 and result["complete"] is True
    # 40/s is over the limit twice, then halvings between 20 (met) and 40: 30, 25, 22 (two figures)
    assert phases(result) == [
        ("rise", 20),
        ("rise", 40),
        ("repeat", 40),
        ("bisect", 30),
        ("bisect", 25),
        ("bisect", 22),
    ]
    assert_rate_entries(result, [20, 40, 40, 30, 25, 22])
    assert [r["meets_limit"] for r in result["rates"]] == [True] + [False] * 5
    assert all(r["errors"] == 0 and r["latency_ms_p99"] > 120 for r in result["rates"][1:])
    assert result["highest_rate_meeting_limit"] == 20
    assert (
        result["stop_reason"]
        == f"p99 {result['rates'][1]['latency_ms_p99']:.2f} ms is over the 120 ms limit at 40/s (measured twice)"
    )
    assert_key_kept_secret(capsys, tmp_path)


def test_loadgen_goes_on_rising_when_the_second_measurement_meets_the_limit(fake_server, tmp_path):
    first, second = step_requests(20, 40)
    noisy = range(loadgen.WARMUP_REQUESTS + first + 1, loadgen.WARMUP_REQUESTS + first + second + 1)
    srv = fake_server(lambda n: (200, 0.25 if n in noisy else 0.002))  # one slow step, as a busy neighbour makes
    code, result = run_loadgen(tmp_path, srv.url, limit_ms=120)
    assert code == 0
    assert phases(result) == [("rise", 20), ("rise", 40), ("repeat", 40), ("rise", 80)]
    assert [r["meets_limit"] for r in result["rates"]] == [True, False, True, True]
    assert result["highest_rate_meeting_limit"] == 80 and "every rate" in result["stop_reason"]


def test_loadgen_with_no_rate_meeting_the_limit_says_the_lowest_p99_and_the_limit_it_would_meet(fake_server, tmp_path):
    srv = fake_server(lambda n: (200, 0.002 if n <= loadgen.WARMUP_REQUESTS else 0.25))
    code, result = run_loadgen(tmp_path, srv.url, limit_ms=120)
    assert code == 0 and result["complete"] is True
    assert phases(result) == [("rise", 20), ("repeat", 20), ("bisect", 10), ("bisect", 5), ("bisect", 2.5)]
    assert result["highest_rate_meeting_limit"] is None
    lowest = min(r["latency_ms_p99"] for r in result["rates"])
    assert result["lowest_p99_ms"] == lowest
    assert f"the lowest p99 was {lowest:.1f} ms" in result["stop_reason"]
    assert f"a limit of {math.ceil(lowest)} ms would have been met there" in result["stop_reason"]


def test_loadgen_treats_failed_requests_like_a_rate_over_the_limit(fake_server, tmp_path, capsys):
    fast = loadgen.WARMUP_REQUESTS + first_rate_requests()
    srv = fake_server(lambda n: (200, 0.002) if n <= fast or n % 3 else (503, 0))
    code, result = run_loadgen(tmp_path, srv.url, limit_ms=1000)
    assert code == 0 and result["complete"] is True
    assert phases(result)[:3] == [("rise", 20), ("rise", 40), ("repeat", 40)]
    first, second = result["rates"][:2]
    assert first["meets_limit"] and first["errors"] == 0
    assert second["meets_limit"] is False and second["errors"] > 0 and set(second["error_kinds"]) == {"503"}
    assert second["ok"] > 0  # the rest were answered and measured
    assert all(r["phase"] == "bisect" and 20 < r["offered_rps"] < 40 for r in result["rates"][3:])
    assert result["highest_rate_meeting_limit"] == 20
    assert "failed at 40/s" in result["stop_reason"]
    assert "503" in assert_key_kept_secret(capsys, tmp_path)


def test_loadgen_auto_rates_start_from_a_probe_and_say_their_own_cpu(fake_server, tmp_path):
    srv = fake_server(lambda n: (200, 0.002))
    keys = tmp_path / "key_file.json"
    keys.write_text(json.dumps({"inference": {"key": KEY}}))
    (tmp_path / "pair.json").write_bytes((SAMPLES / "pair.json").read_bytes())
    code = loadgen.main(
        [
            "--url",
            srv.url,
            "--key-file",
            str(keys),
            "--input",
            str(tmp_path / "pair.json"),
            "--rates",
            "auto",
            "--max-rates",
            "2",
            "--probe-s",
            "0.5",
            "--connections",
            "8",
            "--step-s",
            str(STEP_S),
            "--limit-ms",
            "1000",
            "--out",
            str(tmp_path / "l.json"),
            "--run-id",
            "r",
        ]
    )
    assert code == 0
    result = json.loads((tmp_path / "l.json").read_text())
    probe = result["probe"]
    assert probe["connections"] == 8 and probe["achieved_rps"] > 0 and probe["ok"] == probe["sent"] > 0
    start = loadgen.round2(probe["achieved_rps"] * loadgen.START_SHARE)
    assert [r["offered_rps"] for r in result["rates"]] == [start, loadgen.round2(2 * start)]
    for r in result["rates"] + [probe]:
        assert 0 < r["generator_cpu_share"] <= 1 and r["generator_cpu_us_per_request"] > 0
        assert r["interference"] is None  # no server CPU ledger given: others cannot be told from the server


def test_loadgen_with_a_wrong_key_fails_the_warm_up(fake_server, tmp_path, capsys):
    srv = fake_server(lambda n: (200, 0))
    code, result = run_loadgen(tmp_path, srv.url, limit_ms=1000, key="not-the-key")
    assert code == 1 and result is None
    assert len(srv.seen) == 1 and all(s["auth"] == "Bearer not-the-key" for s in srv.seen), (
        "no load after a refused warm-up"
    )
    out = assert_key_kept_secret(capsys, tmp_path)
    assert "warm-up" in out and "400" in out and "not-the-key" not in out


def test_loadgen_with_no_server_fails_the_warm_up(fake_server, tmp_path, capsys):
    srv = fake_server(lambda n: (200, 0))
    url = srv.url
    srv.shutdown()
    srv.server_close()  # nothing listens on that port now
    code, result = run_loadgen(tmp_path, url, limit_ms=1000)
    assert code == 1 and result is None
    assert "ConnectionRefusedError" in assert_key_kept_secret(capsys, tmp_path)


def test_loadgen_goes_on_past_a_rate_that_sent_nothing(fake_server, tmp_path, capsys):
    if loadgen.schedule(0.05, STEP_S, random.Random(loadgen.SEED)):  # not an AssertionError: a real failure
        raise RuntimeError("the seeded schedule at 0.05/s now sends a request: pick a lower rate")
    srv = fake_server(lambda n: (200, 0.002))
    code, result = run_loadgen(tmp_path, srv.url, limit_ms=1000, rates=[0.05, 20.0])
    assert code == 0
    assert [r["offered_rps"] for r in result["rates"]] == [20.0], "nothing to judge at 0.05/s: not a row"
    assert "over the" not in result["stop_reason"], result["stop_reason"]
    assert "no request was due" in capsys.readouterr().out


def test_loadgen_refuses_bad_arguments_in_one_line(tmp_path, capsys):
    (tmp_path / "pair.json").write_text("{}")
    base = [
        "--url",
        "http://127.0.0.1:9/predictions/x",
        "--input",
        str(tmp_path / "pair.json"),
        "--limit-ms",
        "100",
        "--out",
        str(tmp_path / "o.json"),
        "--run-id",
        "r",
    ]
    (tmp_path / "keys.json").write_text('{"management": {"key": "M"}}')  # no inference key
    for extra in (
        ["--key-file", str(tmp_path / "keys.json"), "--rates", "1,2"],
        ["--key-file", str(tmp_path / "nothing.json"), "--rates", "1,2"],
        ["--key-file", str(tmp_path / "keys.json"), "--rates", "0,2"],
    ):
        with pytest.raises(SystemExit) as e:
            loadgen.main(base + extra)
        assert e.value.code == 2
        assert one_line(capsys.readouterr().err).startswith("loadgen.py: error: argument --")


# ---------------------------------------------------------------------- serve.py
def parse_properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


def test_properties_keep_every_address_on_loopback_and_set_the_model():
    names = ("inference", "management", "metrics", "grpc_inference", "grpc_management")
    ports = dict(zip(names, range(8101, 8106)))
    props = parse_properties(serve.properties("/srv/store", "inflab", ports, workers=3, batch=8, delay_ms=25))
    assert props["inference_address"] == "http://127.0.0.1:8101"
    assert props["management_address"] == "http://127.0.0.1:8102"
    assert props["metrics_address"] == "http://127.0.0.1:8103"
    assert props["grpc_inference_address"] == props["grpc_management_address"] == "127.0.0.1"
    assert (props["grpc_inference_port"], props["grpc_management_port"]) == ("8104", "8105")
    assert not any("0.0.0.0" in v for v in props.values())
    assert all("127.0.0.1" in v for k, v in props.items() if k.endswith("address"))
    assert int(props["token_expiration_min"]) >= 60  # longer than TorchServe's default hour
    assert props["model_store"] == "/srv/store" and props["load_models"] == "inflab.mar"
    assert props["default_workers_per_model"] == "3"
    (version,) = json.loads(props["models"])["inflab"].values()
    assert version["marName"] == "inflab.mar"
    assert version["minWorkers"] == version["maxWorkers"] == 3
    assert version["batchSize"] == 8 and version["maxBatchDelay"] == 25


def test_free_ports_are_distinct_free_and_below_the_ephemeral_range():
    import socket

    ports = payload_ports.free_ports(5)
    # below the range the kernel gives outgoing connections: none of those can take one before TorchServe binds it
    assert len(set(ports)) == 5 and all(
        payload_ports.LISTEN_PORTS_FROM <= p < payload_ports.ephemeral_low() for p in ports
    )
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # still free: they were closed again


@pytest.mark.parametrize("problem", ["missing-mar", "batch-size-0"])
def test_serve_refuses_a_missing_archive_or_batch_size_0_in_one_line(tmp_path, capsys, problem):
    store = tmp_path / "store"
    store.mkdir()
    if problem == "batch-size-0":
        (store / "inflab.mar").write_bytes(b"PK")
    args = [
        "--store",
        str(store),
        "--model",
        "inflab",
        "--target",
        "cpu",
        "--workers",
        "1",
        "--batch-size",
        "0" if problem == "batch-size-0" else "4",
        "--max-batch-delay",
        "10",
        "--dir",
        str(tmp_path / "run"),
    ]
    with pytest.raises(SystemExit) as e:
        serve.main(args)
    assert e.value.code == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("serve.py: error: argument --")
    assert ("inflab.mar" in line) if problem == "missing-mar" else ("--batch-size" in line)
    assert not (tmp_path / "run").exists()  # nothing written before the arguments were checked


# ---------------------------------------------------------------------- config [serve]
@pytest.mark.parametrize(
    "serve_section, message",
    [
        ({"rates": [10, 5]}, "serve.rates: the rates must rise"),
        ({"rates": [5, 5]}, "serve.rates: the rates must rise"),
        ({"rates": [0, 5]}, "serve.rates: 0 is not a rate"),
        ({"rates": [float(r) for r in range(1, 18)]}, "serve.rates: 17 rates; at most 16"),
        ({"rates": [1, "2"]}, "serve.rates: "),
        ({"workers": -1}, "serve.workers: -1 is outside 0..64"),
        ({"latency_limit_ms": 0}, "serve.latency_limit_ms: 0 is outside"),
        ({"step_s": 0}, "serve.step_s: 0 is outside"),
        ({"max_rates": 17}, "serve.max_rates: 17 is outside 1..16"),
        ({"rate": [1, 2]}, "serve.rate: unknown key"),
    ],
    ids=["falling", "equal", "zero", "seventeen", "a-string", "workers", "limit", "step", "max-rates", "unknown-key"],
)
def test_serve_section_refusals_name_the_key(serve_section, message):
    with pytest.raises(ConfigError) as e:
        config.from_dict({"serve": serve_section})
    assert one_line(str(e.value)).startswith(message)


def test_serve_section_accepts_rising_rates():
    cfg = config.from_dict(
        {"serve": {"rates": [float(r) for r in range(1, 17)], "workers": 0, "latency_limit_ms": 0.5}}
    )
    assert cfg.serve.rates == tuple(float(r) for r in range(1, 17)) and cfg.serve.latency_limit_ms == 0.5
    assert config.from_dict({}).serve.rates == () and config.from_dict({}).serve.input == ""


def write_config(d: Path, input_value: str) -> Path:
    path = d / "lab.toml"
    path.write_text(f'[serve]\ninput = "{input_value}"\n')
    return path


def test_serve_input_is_resolved_beside_the_config_file(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "x.bin").write_bytes(b'{"sentence1": "a", "sentence2": "b"}')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative to the config file, not to where the lab runs
    cfg = config.load(write_config(tmp_path / "conf", "x.bin"))
    assert cfg.serve.input == str((tmp_path / "conf" / "x.bin").resolve()) and os.path.isabs(cfg.serve.input)
    cfg = config.load(Path("..") / "conf" / "lab.toml")  # a relative config path too
    assert cfg.serve.input == str((tmp_path / "conf" / "x.bin").resolve())


@pytest.fixture
def no_blocking():
    """Fail (rather than hang) a test whose call blocks for more than 5 s."""

    class Blocked(Exception):
        pass

    def fire(*_):
        raise Blocked("the call blocked for 5 s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(5)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize(
    "kind, says",
    [
        ("missing", "no such file"),
        ("directory", "is a directory"),
        ("fifo", "is a FIFO"),
        ("too-big", "larger than 6 MiB"),
    ],
)
def test_serve_input_that_is_not_a_request_file_is_refused_in_one_line(tmp_path, no_blocking, kind, says):
    target = tmp_path / "x.bin"
    if kind == "directory":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)  # opening it for reading would wait for a writer
    elif kind == "too-big":
        with open(target, "wb") as f:
            f.truncate((6 << 20) + 1)  # sparse: nothing is written
    with pytest.raises(ConfigError) as e:
        config.load(write_config(tmp_path, "x.bin"))
    line = one_line(str(e.value))
    assert line.startswith("serve.input: ") and says in line and str(target) in line


@pytest.mark.parametrize(
    "text, numbers, tokens",
    [
        ("0.11.0", (0, 11, 0), False),
        ("0.11.1", (0, 11, 1), True),
        ("0.12.0", (0, 12, 0), True),
        ("0.12.0b20241001", (0, 12, 0), True),
    ],
)
def test_serve_knows_which_torchserve_authorizes_with_tokens(text, numbers, tokens, monkeypatch):
    """AWS's Neuron images ship TorchServe 0.11.0, whose token authorization needs a plugin: no key file."""
    from importlib import metadata

    monkeypatch.setattr(metadata, "version", lambda name: text if name == "torchserve" else metadata.version(name))
    version, shown = serve.installed_version()
    assert (version, shown) == (numbers, text)
    assert serve.token_auth_on(version) is tokens


def test_the_torchserve_that_runs_here_is_named_and_keeps_its_tokens():
    version, shown = serve.installed_version()
    assert shown == "0.12.0" and serve.token_auth_on(version)


def test_loadgen_sends_no_key_to_a_server_without_token_authorization(fake_server, tmp_path):
    srv = fake_server(lambda n: (200, 0.002))
    (tmp_path / "pair.json").write_bytes((SAMPLES / "pair.json").read_bytes())
    loadgen.main(
        [
            "--url",
            srv.url,
            "--input",
            str(tmp_path / "pair.json"),
            "--content-type",
            "application/json",
            "--rates",
            "20",
            "--step-s",
            str(STEP_S),
            "--limit-ms",
            "1000",
            "--out",
            str(tmp_path / "l.json"),
            "--run-id",
            "run-1",
        ]
    )  # (this server wants a key: what matters is what was sent)
    assert srv.seen and all(s["auth"] is None for s in srv.seen)


def test_the_archiver_stages_in_a_directory_of_its_own(compiled, tmp_path, monkeypatch):
    """torch-model-archiver empties and fills $TMPDIR/<model name>: a name every archive on the host
    shares. Another archive's files there (or a planted one) must be neither removed nor packed."""
    shared = tmp_path / "tmp"
    (shared / "inflab").mkdir(parents=True)
    (shared / "inflab" / "planted.py").write_text("print('not ours')\n")
    monkeypatch.setenv("TMPDIR", str(shared))
    out = tmp_path / "store"
    model = str(Path(compiled["bert"]["path"]).with_suffix(".pt"))
    with contextlib.redirect_stdout(io.StringIO()):
        assert archive.main(["--model", model, "--name", "inflab", "--out", str(out)]) == 0
    assert (shared / "inflab" / "planted.py").is_file()
    with zipfile.ZipFile(out / "inflab.mar") as z:
        assert "planted.py" not in z.namelist()
        assert json.loads(z.read("model.json"))["batch_size"] == BERT_BATCH
