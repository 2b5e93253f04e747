#!/usr/bin/env python3
"""Compile (trace) BERT or ResNet-50 for one target and check it against eager PyTorch.

    python3 compile.py --family bert|resnet [--name NAME] --target inf1|inf2|cuda|cpu --batch-size B
        [--max-length L] [--image-size S] [--size full|tiny] [--offline] [--int8] --out DIR [--instance-type T]
        [--checked-by TEXT]

Writes ``DIR/<stem>.pt`` (TorchScript, loadable with ``targets.load``), its manifest
``DIR/<stem>.json`` (format ``inflab-model/1``: the benchmark rebuilds inputs from it) and
``DIR/index.json`` (the manifests this run wrote). Exit 0 when every artifact passed its
check against the eager fp32 model, 1 when one did not, 2 on bad arguments.

``--checked-by TEXT`` skips the check (and the eager runs it compares with): the sweep checks
each configuration of its settings — family, model, size, target, precision — once, in the job
of its first batch size, and the others say so; TEXT (which job, which settings digest) goes
into the manifest's ``check``.

Runs on the host inside the target's container (transformers 5, or 4.x in the Neuron images,
whose Python/torch are too old for 5), so torch and transformers are imported lazily.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
import warnings

try:
    from . import cmdline, limits, sysinfo, targets
except ImportError:  # run as a script on the host
    import cmdline
    import limits
    import sysinfo
    import targets

FORMAT = "inflab-model/1"
DEFAULT_NAMES = {"bert": "bert-base-cased-finetuned-mrpc", "resnet": "microsoft/resnet-50"}
SEED = 0  # random weights and example inputs are reproducible (the tests rebuild the same model)

# Configs for building a model without the hub (random weights).
_BERT_BASE = dict(
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    max_position_embeddings=512,
    type_vocab_size=2,
)
KNOWN_CONFIGS = {
    "bert-base-cased-finetuned-mrpc": ("bert", dict(_BERT_BASE, vocab_size=28996, num_labels=2)),
    "bert-base-cased": ("bert", dict(_BERT_BASE, vocab_size=28996, num_labels=2)),
    "bert-base-uncased": ("bert", dict(_BERT_BASE, vocab_size=30522, num_labels=2)),
    "bert-base-multilingual-cased": ("bert", dict(_BERT_BASE, vocab_size=119547, num_labels=2)),
    "microsoft/resnet-50": ("resnet", dict(num_labels=1000)),  # ResNetConfig's defaults are ResNet-50
    "microsoft/resnet-18": (
        "resnet",
        dict(depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512], layer_type="basic", num_labels=1000),
    ),
    "microsoft/resnet-101": ("resnet", dict(depths=[3, 4, 23, 3], num_labels=1000)),
}
FAMILY_BASE = {"bert": "bert-base-uncased", "resnet": "microsoft/resnet-50"}
TINY = {  # --size tiny: the same family, small enough for a 2-core sandbox
    "bert": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512),
    "resnet": dict(depths=[1, 1, 1, 1], hidden_sizes=[32, 64, 128, 256], layer_type="basic", embedding_size=32),
}
# Check tolerance = REL_TOL x max(1, max |eager logit|). Measured here (2-core CPU, torch 2.13):
# traced fp32 vs eager differs by exactly 0; dynamic int8 by 0.2-2.3% of that scale (tiny BERT
# 0.0023, BERT-base 0.023, tiny ResNet 0.011, ResNet-50 0.96 with logits up to 87), so 10% leaves
# room for pretrained weights' outliers yet fails a broken graph (errors the size of the logits).
# Neuron auto-casts fp32 matmuls to bf16 (inf1, inf2 with its defaults): 5%. CUDA may use TF32.
REL_TOL = {"cpu": 1e-4, "cuda": 1e-3, "inf1": 5e-2, "inf2": 5e-2, "int8": 1e-1}
# The workshop's paraphrase example (sentence pairs for MRPC).
PAIRS = [
    ("The company HuggingFace is based in New York City", "HuggingFace's headquarters are situated in Manhattan"),
    ("The company HuggingFace is based in New York City", "Apples are especially bad for your health"),
]


def say(msg: str) -> None:
    print(f"[compile] {msg}", flush=True)


# ------------------------------------------------------------------------------ arguments
def _within(bound: limits.Bound):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
        if not bound.allows(value):
            raise argparse.ArgumentTypeError(f"must be within {bound}, not {value}")
        return value

    return parse


def parse_args(argv=None) -> argparse.Namespace:
    p = cmdline.Parser(
        prog="compile.py", description="Trace BERT/ResNet for a target and check it against eager PyTorch."
    )
    p.add_argument("--family", required=True, choices=("bert", "resnet"))
    p.add_argument("--name", help="Hugging Face model id or local directory (default: the family's workshop model)")
    p.add_argument("--target", required=True, choices=targets.TARGETS)
    p.add_argument("--batch-size", required=True, type=_within(limits.BATCH_SIZE))
    p.add_argument(
        "--max-length", type=_within(limits.MAX_LENGTH), default=128, help="BERT sequence length (default 128)"
    )
    p.add_argument("--image-size", type=_within(limits.IMAGE_SIZE), default=224, help="ResNet image side (default 224)")
    p.add_argument("--size", choices=("full", "tiny"), default="full", help="tiny: a small config, random weights")
    p.add_argument("--offline", action="store_true", help="do not use the hub: random weights from a known config")
    p.add_argument("--int8", action="store_true", help="also write a dynamically quantized int8 model (cpu only)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--instance-type", default="", help="recorded in the manifest")
    p.add_argument(
        "--checked-by",
        default="",
        metavar="TEXT",
        help="skip the check against eager: TEXT says where these settings were checked (in the manifest)",
    )
    args = p.parse_args(argv)
    if args.int8 and args.target != "cpu":
        p.error(
            f"argument --int8: dynamic int8 quantization runs on the CPU: use it with --target cpu, not {args.target}"
        )
    args.name = args.name or DEFAULT_NAMES[args.family]
    return args


# ------------------------------------------------------------------------------ the model
def known_config(family: str, name: str) -> tuple[dict, str | None]:
    """(config kwargs, warning) for building ``name`` without the hub."""
    key = name.strip("/").removeprefix("google-bert/")
    fam, kwargs = KNOWN_CONFIGS.get(key, (None, None))
    if fam == family:
        return dict(kwargs), None
    base = FAMILY_BASE[family]
    return dict(KNOWN_CONFIGS[base][1]), (
        f"{name} is not in the offline config table: using {base}'s architecture (the {family} base model) instead"
    )


def no_hub(name: str, timeout: float = 5.0) -> str | None:
    """Why the hub cannot be used ("the hub was unreachable (...)"), or None when it answers. One
    quick probe, because the hub client itself retries a refused connection for ~25 s."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return "the hub was not used (HF_HUB_OFFLINE is set)"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/api/models/{name}", method="HEAD"), timeout=timeout)
    except urllib.error.HTTPError:
        return None  # it answered (404, 401, ...): reachable; from_pretrained reports the rest
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        return f"the hub was unreachable ({endpoint}: {type(reason).__name__}: {reason})"
    return None


def random_model(family: str, name: str, size: str, attn: str | None):
    """(model, note) with random weights; ``note`` says what architecture it is."""
    import torch
    from transformers import AutoModelForSequenceClassification, BertConfig, ResNetConfig, ResNetForImageClassification

    kwargs, warning = known_config(family, name)
    if warning:
        say(f"warning: {warning}")
    if size == "tiny":
        kwargs.update(TINY[family])
    config = BertConfig(**kwargs) if family == "bert" else ResNetConfig(**kwargs)
    torch.manual_seed(SEED)
    model = (
        AutoModelForSequenceClassification.from_config(config, **({"attn_implementation": attn} if attn else {}))
        if family == "bert"
        else ResNetForImageClassification(config)
    )
    arch = f"{FAMILY_BASE[family] if warning else name}'s"
    if size == "tiny":
        shape = (
            f"hidden {kwargs['hidden_size']}, {kwargs['num_hidden_layers']} layers, {kwargs['num_attention_heads']} heads"
            if family == "bert"
            else f"depths {kwargs['depths']}, widths {kwargs['hidden_sizes']}, basic blocks"
        )
        arch = f"a tiny config in the shape of {arch} ({shape})"
    else:
        arch = f"the architecture is {arch}"
    return model.float().eval(), arch


def load_model(family: str, name: str, size: str, offline: bool, target: str):
    """(model, weights, note, tokenizer or None). Pretrained from the hub (or its local cache)
    when possible; otherwise the same architecture with random weights, and the note says why."""
    attn = "eager" if family == "bert" and target in targets.NEURON else None  # plain matmul/softmax for neuron-cc
    timing_only = "numbers are for timing only"
    if size == "tiny":
        model, arch = random_model(family, name, size, attn)
        return model, "random", f"--size tiny: {arch} with random weights; {timing_only}", None
    if offline:
        model, arch = random_model(family, name, size, attn)
        return model, "random", f"--offline: {arch} with random weights; {timing_only}", None

    local = os.path.isdir(name)
    hubless = None if local else no_hub(name)
    if hubless:
        os.environ["HF_HUB_OFFLINE"] = "1"  # the local cache may still have it (read when the hub client is imported)
    try:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer, ResNetForImageClassification

        cls = AutoModelForSequenceClassification if family == "bert" else ResNetForImageClassification
        kw = {"attn_implementation": attn} if attn else {}
        model, info = cls.from_pretrained(name, local_files_only=bool(hubless), output_loading_info=True, **kw)
        where = (
            f"loaded from {name}"
            if local
            else "downloaded from the Hugging Face hub (or its cache)"
            if not hubless
            else f"loaded from the local Hugging Face cache ({hubless})"
        )
        missing = sorted((info or {}).get("missing_keys", []))
        if missing:  # e.g. a base checkpoint without a classification head
            where += f"; {len(missing)} tensors were not in the checkpoint and are random ({', '.join(missing[:3])}…)"
        tokenizer = None
        if family == "bert":
            try:
                tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=bool(hubless))
            except Exception as e:  # noqa: BLE001 - any failure: synthetic token ids instead
                say(f"no tokenizer for {name} ({type(e).__name__}): example inputs are synthetic token ids")
        return model.float().eval(), "pretrained", where, tokenizer
    except Exception as e:  # noqa: BLE001 - not found, gated, no cache, bad files: fall back, and say why
        why = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        reason = (
            f"{hubless} and {name} is not in the local cache"
            if hubless
            else f"loading {name} failed ({type(e).__name__}: {why})"
        )
        model, arch = random_model(family, name, size, attn)
        return model, "random", f"{reason}; {arch} with random weights; {timing_only}", None


def wrap(model, family: str):
    """An nn.Module whose forward returns ONE tensor, the logits: what tracing needs (transformers
    5 returns a ModelOutput under tracing, 4.x a tuple when return_dict is off)."""
    import inspect

    import torch

    class TextLogits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.model = inner

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            kw = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                kw["token_type_ids"] = token_type_ids
            return _logits(self.model(**kw))

    class ImageLogits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.model = inner

        def forward(self, pixel_values):
            return _logits(self.model(pixel_values=pixel_values))

    wrapped = (TextLogits if family == "bert" else ImageLogits)(model).eval()
    wrapped.input_names = (
        ["pixel_values"]
        if family != "bert"
        else (
            ["input_ids", "attention_mask"]
            + (["token_type_ids"] if "token_type_ids" in inspect.signature(model.forward).parameters else [])
        )
    )
    return wrapped


def _logits(out):
    return out[0] if isinstance(out, (tuple, list)) else out.logits


# ------------------------------------------------------------------------------ inputs
def input_spec(family: str, names: list, batch: int, length: int, image_size: int, vocab: int) -> list:
    """The manifest's ``inputs``: how a benchmark rebuilds inputs (ints uniform in [low, high))."""
    if family == "resnet":
        return [{"name": "pixel_values", "shape": [batch, 3, image_size, image_size], "dtype": "float32"}]
    ranges = {"input_ids": (0, vocab), "attention_mask": (1, 2), "token_type_ids": (0, 2)}
    return [
        {"name": n, "shape": [batch, length], "dtype": "int64", "low": ranges[n][0], "high": ranges[n][1]}
        for n in names
    ]


def synthetic_text(batch: int, length: int, vocab: int, names: list, seed: int) -> tuple:
    """Token ids shaped like a tokenized sentence pair: [CLS] a [SEP] b [SEP], then padding,
    with a different length per row (so the trace sees a real attention mask)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(batch, length, dtype=torch.long)
    mask, types = torch.zeros_like(ids), torch.zeros_like(ids)
    for row in range(batch):
        used = int(torch.randint(max(3, length // 3), length + 1, (1,), generator=g))
        ids[row, :used] = torch.randint(min(999, vocab - 1), vocab, (used,), generator=g)
        first = max(1, used // 2)
        ids[row, 0], ids[row, first], ids[row, used - 1] = 101 % vocab, 102 % vocab, 102 % vocab  # [CLS] [SEP] [SEP]
        mask[row, :used] = 1
        types[row, first + 1 : used] = 1
    full = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    return tuple(full[n] for n in names)


def make_inputs(
    family: str, names: list, tokenizer, batch: int, length: int, image_size: int, vocab: int, seed: int
) -> tuple:
    """Model inputs: the example to trace with (seed SEED; the workshop's sentence pairs when there is
    a tokenizer) or another input of the same shape for the check (another seed, other padding)."""
    import torch

    if family == "resnet":
        return (torch.randn(batch, 3, image_size, image_size, generator=torch.Generator().manual_seed(seed)),)
    if tokenizer is None or seed != SEED:
        return synthetic_text(batch, length, vocab, names, seed)
    rows = [PAIRS[i % len(PAIRS)] for i in range(batch)]  # paraphrase / not paraphrase, repeated to the batch
    enc = tokenizer(
        [a for a, _ in rows],
        [b for _, b in rows],
        max_length=length,
        padding="max_length",
        truncation=True,
        return_tensors="pt",
    )
    return tuple((enc[n] if n in enc else torch.zeros_like(enc["input_ids"])).to(torch.long) for n in names)


# ------------------------------------------------------------------------------ checking
def check(loaded, target: str, precision: str, cases: list) -> dict:
    """Compare ``loaded`` with the eager fp32 outputs: ``cases`` is [(inputs, eager logits)]."""
    import torch

    scale = max(1.0, max(float(ref.abs().max()) for _, ref in cases))
    rel = REL_TOL["int8" if precision == "int8" else target]
    result = {"max_abs_diff": None, "tolerance": rel * scale, "ok": False, "reference": "eager fp32"}
    diffs = []
    try:
        with torch.no_grad():
            for inputs, ref in cases:
                out = loaded(*targets.to_device(target, inputs))
                targets.synchronize(target)
                out = _logits(out) if not torch.is_tensor(out) else out
                out = out.detach().float().cpu()
                if tuple(out.shape) != tuple(ref.shape):
                    result["error"] = f"output shape {list(out.shape)}, eager {list(ref.shape)}"
                    return result
                if not bool(torch.isfinite(out).all()):
                    result["error"] = "the output has NaN or infinite values"
                    return result
                diffs.append(float((out - ref).abs().max()))
    except Exception as e:  # noqa: BLE001 - e.g. no Neuron device on this host
        result["error"] = f"running the saved model failed: {type(e).__name__}: {str(e)[:300]}"
        return result
    result["max_abs_diff"] = max(diffs)
    result["ok"] = result["max_abs_diff"] <= result["tolerance"]
    result["per_input"] = diffs
    return result


def _quiet_warnings() -> None:
    """Tracing warns at every data-dependent Python branch in transformers; keep the log readable."""
    import torch

    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category, module=r"(transformers|torch)(\.|$)")
    warnings.filterwarnings(
        "ignore", message=r"(?s).*(torch\.(jit\.trace|ao\.quantization)|quantized tensor creation).*deprecated"
    )


def write_json(path: str, obj) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)  # readers never see half a file


# ------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "30")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # its info/warning logs would drown ours
    os.makedirs(args.out, exist_ok=True)
    index_path, index = os.path.join(args.out, "index.json"), []
    write_json(index_path, index)  # this run's artifacts only: none yet, so a crash never leaves a stale list

    t0 = time.perf_counter()
    say(f"loading {args.name} ({args.family}, size {args.size}) for {args.target}…")
    import torch

    _quiet_warnings()
    model, weights, note, tokenizer = load_model(args.family, args.name, args.size, args.offline, args.target)
    say(f"weights: {weights} — {note}")
    config = model.config
    bert = args.family == "bert"
    if bert and args.max_length > getattr(config, "max_position_embeddings", args.max_length):
        sys.stderr.write(
            f"compile.py: error: argument --max-length: {args.max_length} is more than this model's "
            f"{config.max_position_embeddings} positions\n"
        )
        return 2
    num_labels = int(config.num_labels)
    id2label = getattr(config, "id2label", None) or {}
    labels = [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(num_labels)]
    if tokenizer is not None:  # the serving exercise tokenizes real sentence pairs with it
        tokenizer.save_pretrained(os.path.join(args.out, "tokenizer"))
    vocab = int(getattr(config, "vocab_size", 0) or 0)
    wrapped = wrap(model, args.family)
    say(
        f"loaded in {time.perf_counter() - t0:.1f} s: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, "
        f"{num_labels} labels" + (f", attention {config._attn_implementation}" if bert else "")
    )

    B, L, S = args.batch_size, args.max_length, args.image_size
    example, second = (
        make_inputs(args.family, wrapped.input_names, tokenizer, B, L, S, vocab, seed) for seed in (SEED, SEED + 1)
    )
    cases = []
    if not args.checked_by:
        with torch.no_grad():
            cases = [(x, wrapped(*x).detach().float()) for x in (example, second)]
    spec = input_spec(args.family, wrapped.input_names, B, L, S, vocab)
    shape = f"{L}" if bert else f"{S}"

    builds = [("fp32", args.target, lambda: wrapped)]
    if args.int8:
        say(
            "int8: dynamic quantization of the nn.Linear layers (qint8 weights, activations quantized per batch)"
            + ("" if bert else " — for ResNet that is only the classifier")
        )
        builds.append(
            (
                "int8",
                "cpu",
                lambda: torch.ao.quantization.quantize_dynamic(wrapped, {torch.nn.Linear}, dtype=torch.qint8),
            )
        )

    all_ok = True
    for precision, target, make in builds:
        stem = f"{args.family}_{target}_{precision}_{shape}_b{B}"
        say(f"tracing for {target} ({precision}, batch {B}, {'length' if bert else 'image'} {shape})…")
        t = time.perf_counter()
        try:
            traced = targets.trace(target, make(), example)
        except Exception as e:  # noqa: BLE001 - compiler errors: say which artifact, keep the others' results
            say(f"{stem}: tracing for {target} failed: {type(e).__name__}: {str(e)[:500]}")
            all_ok = False
            continue
        compile_s = time.perf_counter() - t
        path = os.path.join(args.out, f"{stem}.pt")
        torch.jit.save(traced, path)
        say(f"traced in {compile_s:.1f} s; saved {path} ({os.path.getsize(path) / 1e6:.1f} MB)")
        if args.checked_by:  # checked once for these settings, elsewhere: said, and recorded
            result = {
                "max_abs_diff": None,
                "tolerance": None,
                "ok": True,
                "reference": "eager fp32",
                "skipped": True,
                "checked_by": args.checked_by,
            }
            say(f"check: skipped — these settings are checked against eager once, by {args.checked_by}")
            per_input = None
        else:
            result = check(targets.load(target, path), target, precision, cases)
            per_input = result.pop("per_input", None)
        if result.get("skipped"):
            pass
        elif result["ok"]:
            say(
                f"check: max abs diff {result['max_abs_diff']:.1e} (tolerance {result['tolerance']:.1e}) ok"
                f" — example {per_input[0]:.1e}, random {per_input[1]:.1e}"
            )
        elif result.get("error"):
            say(f"check FAILED: {result['error']}")
        else:
            say(
                f"check FAILED: max abs diff {result['max_abs_diff']:.1e} is over the tolerance {result['tolerance']:.1e} "
                f"({REL_TOL['int8' if precision == 'int8' else target]:g} x max(1, max |eager logit|))"
            )
        all_ok &= result["ok"]
        manifest = {
            "format": FORMAT,
            "family": args.family,
            "name": args.name,
            "size": args.size,
            "weights": weights,
            "weights_note": note,
            "target": target,
            "precision": precision,
            "batch_size": B,
            **({"max_length": L} if bert else {"image_size": S}),
            "file": f"{stem}.pt",
            "inputs": spec,
            "num_labels": num_labels,
            "labels": labels,
            **({"tokenizer": "tokenizer"} if tokenizer is not None else {}),
            "check": result,
            "compile_s": round(compile_s, 3),
            "system": sysinfo.system_info(args.instance_type),
        }
        write_json(os.path.join(args.out, f"{stem}.json"), manifest)
        index.append(f"{stem}.json")
        write_json(index_path, index)
        diff = "n/a" if result["max_abs_diff"] is None else f"{result['max_abs_diff']:.1e}"
        checked = (
            "check skipped (checked once for these settings)"
            if result.get("skipped")
            else f"check {'ok' if result['ok'] else 'FAILED'} (max abs diff {diff}, tolerance {result['tolerance']:.1e})"
        )
        say(f"done {stem}.pt: {weights} weights, output [{B}, {num_labels}], compile {compile_s:.1f} s, {checked}")
    say(
        f"finished in {time.perf_counter() - t0:.1f} s: {len(index)} model(s) in {args.out}"
        + ("" if all_ok else " — at least one FAILED")
    )
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
