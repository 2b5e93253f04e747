#!/usr/bin/env python3
"""Package a compiled model as a TorchServe model archive (``torch-model-archiver``).

    python3 archive.py --model models/<stem>.pt --name MODEL --out serve/model-store

Puts into ``<out>/<MODEL>.mar``: the TorchScript file, our handler (``inflab_handler.py``),
the model's manifest (as ``model.json``), the class names (``index_to_name.json``), the
payload's accelerator seam (``targets.py``, ``sysinfo.py``) and, when the compile step saved
one, the tokenizer. Writes ``<out>/<MODEL>.json`` describing the archive (what the serve
step checks and shows). Exit 0 when the archive is there, 1 when packaging failed, 2 on bad
arguments. Standard library only; torch-model-archiver must be installed beside Python.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
try:
    from . import cmdline
except ImportError:  # run as a script on the host
    import cmdline

FORMAT = "inflab-archive/1"
VERSION = "1.0"
SEAM = ("targets.py", "sysinfo.py")
# The workshop's MRPC convention: logit 1 is "paraphrase". A checkpoint that names its classes keeps its names.
MRPC_LABELS = ["not paraphrase", "paraphrase"]


def say(msg: str) -> None:
    print(f"[package] {msg}", flush=True)


def labels_for(manifest: dict) -> list[str]:
    """Class names by index: the checkpoint's own, MRPC's for a two-class BERT with generic names."""
    labels = [str(x) for x in manifest.get("labels") or []]
    n = int(manifest.get("num_labels") or len(labels) or 0)
    generic = all(lab.upper().startswith("LABEL_") for lab in labels)
    if manifest.get("family") == "bert" and n == 2 and generic:
        return list(MRPC_LABELS)
    if labels and len(labels) == n:
        return labels
    return [f"class {i}" for i in range(n)]


def archiver() -> str:
    """The torch-model-archiver beside this Python (a virtualenv), else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "torch-model-archiver")
    found = beside if os.access(beside, os.X_OK) else shutil.which("torch-model-archiver")
    if not found:
        raise FileNotFoundError(
            "torch-model-archiver is not installed in this environment (pip install torch-model-archiver)"
        )
    return found


def run_archiver(cmd: list[str], private_dir: str) -> subprocess.CompletedProcess:
    """Run torch-model-archiver ``cmd`` (output captured as text) staging under ``private_dir``.

    It stages the files in $TMPDIR/<model name>, a name every archiver on the host shares and empties
    first: in /tmp, two at once mix their files (two containers of one endpoint starting together),
    and another user could plant one (or a link) there. Its TMPDIR is a new 0700 directory in ours."""
    staging = tempfile.mkdtemp(prefix="staging-", dir=private_dir)
    return subprocess.run(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "TMPDIR": staging}
    )


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main(argv=None) -> int:
    p = cmdline.Parser(prog="archive.py", description="Package a compiled model as a TorchServe model archive.")
    p.add_argument("--model", required=True, help="the compiled model (.pt) with its manifest (.json) beside it")
    p.add_argument("--name", required=True, help="the model's name in TorchServe")
    p.add_argument("--out", required=True, help="the model store directory")
    args = p.parse_args(argv)
    manifest_path = args.model[:-3] + ".json" if args.model.endswith(".pt") else ""
    if not (os.path.isfile(args.model) and os.path.isfile(manifest_path)):
        p.error(f"argument --model: {args.model} (and its manifest .json) is not there: run the compile step")
    with open(manifest_path) as f:
        manifest = json.load(f)
    labels = labels_for(manifest)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="inflab-mar-") as tmp:
        extra = []
        for name, data in (("model.json", manifest), ("index_to_name.json", {str(i): n for i, n in enumerate(labels)})):
            path = os.path.join(tmp, name)
            with open(path, "w") as f:
                json.dump(data, f)
            extra.append(path)
        extra += [os.path.join(HERE, s) for s in SEAM]
        tok = os.path.join(os.path.dirname(args.model), manifest.get("tokenizer") or "")
        if manifest.get("tokenizer") and os.path.isdir(tok):
            shutil.copytree(tok, os.path.join(tmp, "tokenizer"))
            extra.append(os.path.join(tmp, "tokenizer"))
        cmd = [
            archiver(),
            "--model-name",
            args.name,
            "--version",
            VERSION,
            "--serialized-file",
            args.model,
            "--handler",
            os.path.join(HERE, "inflab_handler.py"),
            "--extra-files",
            ",".join(extra),
            "--export-path",
            args.out,
            "--force",
        ]
        say("$ " + " ".join(os.path.basename(c) if c == cmd[0] else c for c in cmd))
        done = run_archiver(cmd, tmp)
        for line in done.stdout.splitlines():
            say(line)
        if done.returncode != 0:
            say(f"torch-model-archiver failed (exit {done.returncode})")
            return 1
    mar = os.path.join(args.out, f"{args.name}.mar")
    info = {
        "format": FORMAT,
        "name": args.name,
        "version": VERSION,
        "mar": os.path.basename(mar),
        "bytes": os.path.getsize(mar),
        "sha256": sha256(mar),
        "model_file": os.path.basename(args.model),
        "family": manifest.get("family"),
        "target": manifest.get("target"),
        "precision": manifest.get("precision"),
        "batch_size": manifest.get("batch_size"),
        "labels": len(labels),
        "label_names": labels[:5],
        "tokenizer": bool(manifest.get("tokenizer") and os.path.isdir(tok)),
        "weights": manifest.get("weights"),
    }
    tmp_info = os.path.join(args.out, f"{args.name}.json.tmp")
    with open(tmp_info, "w") as f:
        json.dump(info, f, indent=2)
    os.replace(tmp_info, os.path.join(args.out, f"{args.name}.json"))
    say(
        f"{info['mar']}: {info['bytes'] / 1e6:.1f} MB, {len(labels)} classes ({', '.join(labels[:3])}"
        f"{', …' if len(labels) > 3 else ''}), handler inflab_handler.py, packaged in {time.perf_counter() - t0:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
