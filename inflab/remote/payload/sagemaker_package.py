#!/usr/bin/env python3
"""Package a compiled model as SageMaker model data (``model.tar.gz``) and upload it to S3.

    python3 sagemaker_package.py --model models/<stem>.pt --out sagemaker/<precision>
        [--upload s3://BUCKET/PREFIX/<precision>/model.tar.gz --region REGION]

SageMaker downloads the model data of a model and unpacks it into ``/opt/ml/model`` before it
starts the container (``docker run IMAGE serve``). The archive holds, at its root:

- the compiled model ``<stem>.pt`` and its manifest as ``model.json`` (what the benchmark and the
  handler read: family, target, batch size, input shapes);
- ``index_to_name.json``, the class names (the same as the TorchServe archive's);
- ``tokenizer/`` when the compile step saved one;
- ``code/``: the lab's TorchServe handler and the payload's accelerator seam it imports
  (``inflab_handler.py``, ``targets.py``, ``sysinfo.py``) — the image's ``serve``
  (``sagemaker_serve.py``) serves the handler it finds here, as AWS's PyTorch containers use the
  model data's ``code/``;
- ``inflab-sagemaker.json``: what ``serve`` needs to know (the model file, the handler, the batch).

The archive is reproducible (sorted entries, fixed times and owners): the same model gives the same
bytes, so its sha256 tells whether S3 already has it. Writes ``<out>/model.tar.gz`` and
``<out>/package.json`` (sizes and sha256); with ``--upload``, puts the archive to S3 with the
host's credentials (:mod:`aws_client`) and adds the object's ETag to ``package.json``. Exit 0 when
done, 1 when packaging or the upload failed, 2 on bad arguments.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
try:
    from . import archive, cmdline
except ImportError:  # run as a script on the host
    import archive
    import cmdline

FORMAT = "inflab-sagemaker/1"
CODE = ("inflab_handler.py", "targets.py", "sysinfo.py")
SPEC = "inflab-sagemaker.json"


def say(msg: str) -> None:
    print(f"[sagemaker] {msg}", flush=True)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def _add_file(tar: tarfile.TarFile, name: str, path: str) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = os.path.getsize(path), 0o644, 0
    with open(path, "rb") as f:
        tar.addfile(info, f)


def _files_under(root: str) -> list[str]:
    out = []
    for base, dirs, names in os.walk(root):
        dirs.sort()
        out += [
            os.path.join(base, n)
            for n in sorted(names)
            if os.path.isfile(os.path.join(base, n)) and not os.path.islink(os.path.join(base, n))
        ]
    return out


def spec_of(manifest: dict, model_file: str) -> dict:
    return {
        "format": FORMAT,
        "serialized_file": model_file,
        "handler": "code/inflab_handler.py",
        "code": [f"code/{c}" for c in CODE],
        "family": manifest.get("family"),
        "target": manifest.get("target"),
        "precision": manifest.get("precision"),
        "batch_size": manifest.get("batch_size"),
        "tokenizer": "tokenizer" if manifest.get("tokenizer") else None,
    }


def build(model: str, out: str) -> dict:
    """Write ``out/model.tar.gz`` for the compiled ``model``; returns what package.json says."""
    manifest_path = model[:-3] + ".json"
    with open(manifest_path) as f:
        manifest = json.load(f)
    labels = archive.labels_for(manifest)
    model_file = os.path.basename(model)
    spec = spec_of(manifest, model_file)
    tok = os.path.join(os.path.dirname(model), manifest.get("tokenizer") or "")
    if not (manifest.get("tokenizer") and os.path.isdir(tok)):
        spec["tokenizer"] = None
    os.makedirs(out, exist_ok=True)
    target = os.path.join(out, "model.tar.gz")
    tmp = target + ".tmp"
    raw = open(tmp, "wb")
    try:
        # gzip with no file name and time 0 in its header: the same input gives the same bytes
        with (
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            _add_file(tar, model_file, model)
            _add_bytes(tar, "model.json", json.dumps(manifest, sort_keys=True).encode())
            _add_bytes(tar, "index_to_name.json", json.dumps({str(i): n for i, n in enumerate(labels)}).encode())
            for name in CODE:
                _add_file(tar, f"code/{name}", os.path.join(HERE, name))
            if spec["tokenizer"]:
                for path in _files_under(tok):
                    _add_file(tar, "tokenizer/" + os.path.relpath(path, tok).replace(os.sep, "/"), path)
            _add_bytes(tar, SPEC, json.dumps(spec, sort_keys=True).encode())
    finally:
        raw.close()
    os.replace(tmp, target)
    info = {
        "format": FORMAT,
        "file": "model.tar.gz",
        "bytes": os.path.getsize(target),
        "sha256": archive.sha256(target),
        "model_file": model_file,
        "family": spec["family"],
        "target": spec["target"],
        "precision": spec["precision"],
        "batch_size": spec["batch_size"],
        "labels": len(labels),
        "tokenizer": bool(spec["tokenizer"]),
        "weights": manifest.get("weights"),
    }
    return info


def upload(path: str, url: str, region: str) -> str:
    """Put ``path`` at the s3:// ``url``; returns the object's ETag."""
    try:
        from . import aws_client
    except ImportError:
        import aws_client

    if not url.startswith("s3://") or "/" not in url[5:]:
        raise ValueError(f"{url!r} is not an s3://BUCKET/KEY address")
    bucket, key = url[5:].split("/", 1)
    s3 = aws_client.client("s3", region, timeout=300)
    with open(path, "rb") as f:
        answer = s3.put_object(Bucket=bucket, Key=key, Body=f, ContentType="application/gzip")
    return str(answer.get("ETag", "")).strip('"')


def main(argv=None) -> int:
    p = cmdline.Parser(prog="sagemaker_package.py", description="Package a compiled model as SageMaker model data.")
    p.add_argument("--model", required=True, help="the compiled model (.pt) with its manifest (.json) beside it")
    p.add_argument("--out", required=True, help="the directory to write model.tar.gz and package.json in")
    p.add_argument("--upload", help="s3://BUCKET/KEY to put model.tar.gz at")
    p.add_argument("--region", help="the bucket's region (with --upload)")
    args = p.parse_args(argv)
    if not (args.model.endswith(".pt") and os.path.isfile(args.model) and os.path.isfile(args.model[:-3] + ".json")):
        p.error(f"argument --model: {args.model} (and its manifest .json) is not there: run the compile step")
    if args.upload and not args.region:
        p.error("argument --region: needed with --upload")
    t0 = time.perf_counter()
    try:
        info = build(args.model, args.out)
    except (OSError, ValueError) as e:
        say(f"packaging failed: {type(e).__name__}: {e}")
        return 1
    say(
        f"{args.out}/model.tar.gz: {info['bytes'] / 1e6:.1f} MB, {info['precision']} model {info['model_file']} for "
        f"{info['target']}, {info['labels']} classes, handler code/inflab_handler.py"
        + (", tokenizer" if info["tokenizer"] else "")
        + f", sha256 {info['sha256'][:12]}… "
        f"({time.perf_counter() - t0:.1f} s)"
    )
    if args.upload:
        t1 = time.perf_counter()
        try:
            info["etag"] = upload(os.path.join(args.out, "model.tar.gz"), args.upload, args.region)
        except Exception as e:  # botocore's errors: say which, in one line
            say(f"upload to {args.upload} failed: {type(e).__name__}: {str(e)[:300]}")
            return 1
        info["uploaded"] = args.upload
        say(f"uploaded to {args.upload} ({time.perf_counter() - t1:.1f} s)")
    tmp = os.path.join(args.out, "package.json.tmp")
    with open(tmp, "w") as f:
        json.dump(info, f, indent=2)
    os.replace(tmp, os.path.join(args.out, "package.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
