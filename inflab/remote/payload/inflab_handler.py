"""The TorchServe handler of the serving exercise: a compiled model behind HTTP.

Packaged into the model archive by ``archive.py`` with the model's manifest (``model.json``,
written by ``compile.py``), the class names (``index_to_name.json``) and the payload's
accelerator seam (``targets.py``, ``sysinfo.py``), so each worker loads the model for its
target the way the benchmark does (torch-neuron / torch-neuronx / CUDA / CPU).

Inputs, one per request:
- BERT (MRPC): a JSON object ``{"sentence1": "...", "sentence2": "..."}``. With the tokenizer
  the compile step saved, the pair is tokenized as BERT expects; a model without one (random
  weights, the sandbox's tiny model) gets the words hashed into its vocabulary, and the
  answer says so.
- ResNet: an image (JPEG, PNG, …), resized and centre-cropped to the compiled size and
  normalised with ImageNet's mean and deviation.

TorchServe hands the handler up to ``batchSize`` requests at once. The traced model takes
exactly the batch it was compiled for (Neuron graphs have a fixed shape), so a smaller batch
is padded and the padding's outputs dropped. A request that is not a valid input gets its own
HTTP 400 with the reason; the others in its batch are answered normally. (TorchServe takes
the one class defined here as the handler, so bad input is a plain ValueError.)
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import zlib

import torch
from ts.torch_handler.base_handler import BaseHandler

try:
    import targets
except ImportError:  # imported as part of the inflab package (the tests)
    from . import targets

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TOP_K = 5
CLS, SEP, PAD = 101, 102, 0
WORD = re.compile(r"\w+|[^\w\s]")


def hashed_ids(text: str, vocab: int) -> list[int]:
    """Token ids for ``text`` without a tokenizer: each word or punctuation mark hashed into the
    vocabulary above the special tokens (stable across runs and hosts)."""
    low = min(999, vocab - 1)
    return [low + zlib.crc32(w.lower().encode()) % max(1, vocab - low) for w in WORD.findall(text)]


def sentence_pair(body) -> tuple[str, str]:
    if isinstance(body, (bytes, bytearray, str)):
        try:
            body = json.loads(body if isinstance(body, str) else body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:  # RecursionError: absurdly nested JSON
            raise ValueError(
                f"expected a JSON object with sentence1 and sentence2, got something else "
                f"({type(e).__name__}: {str(e)[:100]})"
            ) from None
    if not isinstance(body, dict) or not all(
        isinstance(body.get(k), str) and body.get(k).strip() for k in ("sentence1", "sentence2")
    ):
        raise ValueError("expected a JSON object with two non-empty strings, sentence1 and sentence2")
    return body["sentence1"], body["sentence2"]


class InflabHandler(BaseHandler):
    """Loads the compiled model for its target; pre/post-processes sentence pairs or images."""

    def initialize(self, context):
        props = context.system_properties
        model_dir = props.get("model_dir")
        with open(os.path.join(model_dir, "model.json")) as f:
            self.spec = json.load(f)
        with open(os.path.join(model_dir, "index_to_name.json")) as f:
            names = json.load(f)
        self.labels = [names[str(i)] for i in range(len(names))]
        self.target = self.spec["target"]
        self.family = self.spec["family"]
        self.batch = int(self.spec["batch_size"])
        if self.target == "cuda" and props.get("gpu_id") is not None:  # pragma: no cover - needs a GPU
            torch.cuda.set_device(int(props["gpu_id"]))
        threads = os.environ.get("INFLAB_SERVE_THREADS")
        if self.target == "cpu" and threads:
            torch.set_num_threads(int(threads))
        serialized = context.manifest["model"]["serializedFile"]
        self.model = targets.load(self.target, os.path.join(model_dir, serialized))
        self.tokenizer = None
        if self.family == "bert":
            tok_dir = os.path.join(model_dir, "tokenizer")
            if os.path.isdir(tok_dir):
                from transformers import AutoTokenizer

                self.tokenizer = AutoTokenizer.from_pretrained(tok_dir)
            shapes = {i["name"]: i for i in self.spec["inputs"]}
            self.input_names = [i["name"] for i in self.spec["inputs"]]
            self.length = int(shapes["input_ids"]["shape"][1])
            self.vocab = int(shapes["input_ids"].get("high") or 30522)
        else:
            self.size = int(self.spec["inputs"][0]["shape"][-1])
        self.initialized = True
        log.info(
            "inflab handler: %s for %s, batch %d, %d labels%s",
            serialized,
            self.target,
            self.batch,
            len(self.labels),
            "" if self.family != "bert" or self.tokenizer else ", no tokenizer (hashed words)",
        )

    # -- requests -> tensors -------------------------------------------------------------
    def _text_row(self, body) -> list[torch.Tensor]:
        a, b = sentence_pair(body)
        if self.tokenizer is not None:
            enc = self.tokenizer(
                a, b, max_length=self.length, padding="max_length", truncation=True, return_tensors="pt"
            )
            full = {n: enc[n][0] if n in enc else torch.zeros(self.length, dtype=torch.long) for n in self.input_names}
        else:
            ia, ib = hashed_ids(a, self.vocab), hashed_ids(b, self.vocab)
            room = self.length - 3
            while len(ia) + len(ib) > room:  # drop from the longer side, as tokenizers truncate pairs
                (ia if len(ia) >= len(ib) else ib).pop()
            ids = [CLS] + ia + [SEP] + ib + [SEP]
            types = [0] * (len(ia) + 2) + [1] * (len(ib) + 1)
            n = len(ids)
            full = {
                "input_ids": torch.tensor(ids + [PAD] * (self.length - n)),
                "attention_mask": torch.tensor([1] * n + [0] * (self.length - n)),
                "token_type_ids": torch.tensor(types + [0] * (self.length - n)),
            }
        return [full[n].to(torch.long) for n in self.input_names]

    def _image_row(self, body) -> list[torch.Tensor]:
        from PIL import Image, UnidentifiedImageError

        if not isinstance(body, (bytes, bytearray)):
            raise ValueError("expected an image file (JPEG, PNG, ...) as the request body")
        try:
            img = Image.open(io.BytesIO(body)).convert("RGB")
        except (
            UnidentifiedImageError,
            OSError,
            SyntaxError,
            Image.DecompressionBombError,
        ) as e:  # PIL's ways of refusing
            raise ValueError(
                f"the body is not an image this server can read ({type(e).__name__}: {str(e)[:150]})"
            ) from None
        w, h = img.size
        scale = self.size * 256 / 224 / min(w, h)  # resize the short side, then centre-crop (torchvision's recipe)
        img = img.resize((max(self.size, round(w * scale)), max(self.size, round(h * scale))), Image.BILINEAR)
        w, h = img.size
        left, top = (w - self.size) // 2, (h - self.size) // 2
        img = img.crop((left, top, left + self.size, top + self.size))
        x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).reshape(self.size, self.size, 3)
        x = x.permute(2, 0, 1).float().div(255)
        x = (x - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
        return [x]

    def preprocess(self, data):
        rows, errors = [], {}
        for i, request in enumerate(data):
            body = request.get("data") if request.get("data") is not None else request.get("body")
            try:
                rows.append(self._text_row(body) if self.family == "bert" else self._image_row(body))
            except ValueError as e:  # a request the model cannot take: the message says why
                errors[i] = str(e)
                rows.append(None)
        return rows, errors

    # -- the model ---------------------------------------------------------------------------
    def inference(self, data, *args, **kwargs):
        rows, errors = data
        good = [r for r in rows if r is not None]
        outs = []
        with torch.no_grad():
            for start in range(0, len(good), self.batch):  # more than the compiled batch: several calls
                chunk = good[start : start + self.batch]
                n = len(chunk)
                padded = chunk + [chunk[-1]] * (self.batch - n)  # the traced graph takes exactly its batch
                inputs = tuple(torch.stack([r[j] for r in padded]) for j in range(len(padded[0])))
                out = self.model(*targets.to_device(self.target, inputs))
                targets.synchronize(self.target)
                out = out if torch.is_tensor(out) else out[0]
                outs.append(out.detach().float().cpu()[:n])
        logits = iter(torch.cat(outs) if outs else [])
        return [None if r is None else next(logits) for r in rows], errors

    def postprocess(self, data):
        logits, errors = data
        answers = []
        for i, row in enumerate(logits):
            if i in errors:
                self.context.set_response_status(400, errors[i], idx=i)
                answers.append({"error": errors[i]})
                continue
            probs = torch.softmax(row, dim=-1)
            top = torch.topk(probs, min(TOP_K, len(self.labels)))
            scores = {self.labels[int(k)]: round(float(p), 6) for p, k in zip(top.values, top.indices)}
            answer = {"label": next(iter(scores)), "scores": scores}
            if self.family == "bert" and self.tokenizer is None:
                answer["note"] = "no tokenizer with this model: words were hashed into its vocabulary"
            answers.append(answer)
        return answers
