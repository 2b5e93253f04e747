"""The benchmark's inputs: a pool of distinct samples, drawn in random order.

MLPerf LoadGen feeds a system under test from a *query sample library* — many distinct
inputs, issued in random order — so that no cache, branch predictor or data-dependent
kernel sees the same input again and again. The harness does the same: each model call takes
a batch drawn at random (outside the timed region) from a pool of distinct batches built here
from the model's manifest (``inputs``: name, shape, dtype and the range of ints).

- Text models (``input_ids`` with ``attention_mask``): each row is shaped like a tokenized
  sentence pair of its own length — ``[CLS] a [SEP] b [SEP]`` then padding to the traced
  length, the attention mask 1 over the words and 0 over the padding, segment ids 0 then 1.
- Other int inputs: uniform in their ``[low, high)``.
- Float inputs (images): standard normal, a different image per row.

The pool holds at most ``POOL_BYTES`` of tensors (and at least 2, at most ``POOL_MAX``
batches), so a large image batch does not fill the host's memory. Seeded: the same manifest
and seed give the same pool.
"""

from __future__ import annotations

import random

POOL_MAX = 64  # batches
POOL_MIN = 2
POOL_BYTES = 64 * 1024 * 1024
CLS, SEP = 101, 102  # BERT's [CLS] and [SEP] ids (taken modulo a smaller vocabulary)
_ITEM_BYTES = {
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "float64": 8,
    "int64": 8,
    "int32": 4,
    "int16": 2,
    "int8": 1,
    "uint8": 1,
    "bool": 1,
}


def batch_bytes(described: list[dict]) -> int:
    """Bytes of one batch of the manifest's inputs."""
    total = 0
    for item in described:
        n = 1
        for d in item["shape"]:
            n *= int(d)
        total += n * _ITEM_BYTES.get(item["dtype"], 8)
    return total


def pool_size(described: list[dict], wanted: int = POOL_MAX) -> int:
    """How many distinct batches the pool holds: ``wanted``, as far as ``POOL_BYTES`` allows."""
    per = max(1, batch_bytes(described))
    return max(POOL_MIN, min(wanted, POOL_MAX, POOL_BYTES // per))


def _is_text(described: list[dict]) -> bool:
    names = {item.get("name") for item in described}
    return "input_ids" in names and "attention_mask" in names


def _sentence_pair_rows(batch: int, length: int, vocab: int, rng: random.Random):
    """Per row: (ids, mask, segment ids) of a sentence pair of random length, padded to ``length``."""
    rows = []
    low_word = min(999, max(0, vocab - 1))  # skip BERT's special and unused ids where the vocabulary allows
    for _ in range(batch):
        used = rng.randint(min(length, max(3, length // 4)), length)
        first = max(1, used // 2)
        ids = [rng.randrange(low_word, vocab) if vocab > low_word else 0 for _ in range(used)]
        ids[0], ids[first], ids[used - 1] = CLS % vocab, SEP % vocab, SEP % vocab
        ids += [0] * (length - used)
        mask = [1] * used + [0] * (length - used)
        segments = [0] * (first + 1) + [1] * (used - first - 1) + [0] * (length - used)
        rows.append((ids, mask, segments))
    return rows


def build_pool(described: list[dict], seed: int = 0, size: int | None = None) -> list[tuple]:
    """``size`` (default :func:`pool_size`) distinct batches of tensors for the manifest's
    ``inputs``, each a tuple in the manifest's order."""
    import torch

    size = pool_size(described) if size is None else size
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    text = _is_text(described)
    pool = []
    for _ in range(size):
        rows = None
        if text:
            ids = next(item for item in described if item["name"] == "input_ids")
            batch, length = int(ids["shape"][0]), int(ids["shape"][1])
            rows = _sentence_pair_rows(batch, length, int(ids.get("high", 2)), rng)
        tensors = []
        for item in described:
            dtype, shape = getattr(torch, item["dtype"]), tuple(int(d) for d in item["shape"])
            name = item.get("name")
            if rows is not None and name in ("input_ids", "attention_mask", "token_type_ids"):
                column = {"input_ids": 0, "attention_mask": 1, "token_type_ids": 2}[name]
                tensors.append(torch.tensor([r[column] for r in rows], dtype=dtype).reshape(shape))
            elif dtype.is_floating_point:
                tensors.append(torch.randn(shape, generator=gen, dtype=dtype))
            else:
                low, high = int(item.get("low", 0)), int(item.get("high", 2))
                tensors.append(torch.randint(low, high, shape, generator=gen, dtype=dtype))
        pool.append(tuple(tensors))
    return pool


def describe(described: list[dict], size: int) -> dict:
    """What the result records about the inputs."""
    kind = (
        "sentence pairs of varied length, padded"
        if _is_text(described)
        else (
            "random images" if any(item.get("dtype", "").startswith("float") for item in described) else "random ints"
        )
    )
    return {"pool": size, "order": "random", "kind": kind}
