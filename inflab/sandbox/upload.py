"""Copy a directory into the sandbox's S3: how a sandbox Batch job delivers its results.

On AWS the sweep job's container writes its results to ``s3://BUCKET/SESSION/...`` itself;
in the sandbox the job's command ends with this module, run as one of the lab's own clients
(it reads the daemon's endpoint and secret from ``<INFLAB_HOME>/sandbox``)::

    python -m inflab.sandbox.upload --home HOME SRC_DIR s3://BUCKET/PREFIX

Every regular file under SRC_DIR becomes the key PREFIX/relative/path (symbolic links are
not followed); one line per file is printed. Exit 1 (one line) when the sandbox is not
running or S3 refuses, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import read_state

DEFAULT_REGION = "us-west-2"


class _Args(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        print(f"inflab.sandbox.upload: {message}", file=sys.stderr)
        raise SystemExit(2)


def _target(url: str) -> tuple[str, str]:
    if not url.startswith("s3://"):
        raise ValueError(f"{url!r} is not an s3://BUCKET/PREFIX address")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"{url!r} names no bucket")
    return bucket, prefix.strip("/")


def _files(src: Path) -> list[Path]:
    out = []
    for root, dirs, names in os.walk(src):
        dirs.sort()
        for name in sorted(names):
            p = Path(root) / name
            if p.is_file() and not p.is_symlink():
                out.append(p)
    return out


def _client(endpoint: str, headers: dict[str, str], region: str, key: tuple[str, str] | None = None):
    """An S3 client on the sandbox endpoint carrying its secret, like the lab's own (inflab.aws.Aws).
    ``key``: the sandbox administrator's emulated key while the emulator checks IAM policies (the
    stand-in for the job's role); without one the placeholders the emulator then accepts."""
    import boto3
    from botocore.config import Config

    key_id, secret = key or ("inflab-sandbox", "inflab-sandbox")  # placeholders, not credentials
    session = boto3.session.Session(aws_access_key_id=key_id, aws_secret_access_key=secret, region_name=region)
    client = session.client(
        "s3",
        endpoint_url=endpoint,
        config=Config(s3={"addressing_style": "path"}, retries={"mode": "adaptive", "max_attempts": 5}),
    )

    def add(request, **_) -> None:
        request.headers.update(headers)

    client.meta.events.register("before-send.s3", add)
    return client


def main(argv: list[str] | None = None) -> int:
    ap = _Args(prog="python -m inflab.sandbox.upload", description="Upload a directory to the sandbox's S3.")
    ap.add_argument("--home", required=True, help="INFLAB_HOME of the running sandbox")
    ap.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION)
    ap.add_argument("src", help="directory to upload")
    ap.add_argument("dest", help="s3://BUCKET/PREFIX")
    args = ap.parse_args(argv)
    src = Path(args.src)
    if not src.is_dir():
        ap.error(f"{args.src}: not a directory")
    try:
        bucket, prefix = _target(args.dest)
    except ValueError as e:
        ap.error(str(e))
    info = read_state(Path(args.home))
    if info is None:
        print(
            f"inflab.sandbox.upload: the sandbox is not running (no state in {Path(args.home) / 'sandbox'})",
            file=sys.stderr,
        )
        return 1
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = _client(info.endpoint, info.headers, args.region, info.access_key("admin"))
    for path in _files(src):
        key = "/".join(p for p in (prefix, path.relative_to(src).as_posix()) if p)
        try:
            s3.upload_file(str(path), bucket, key)
        except (BotoCoreError, ClientError, OSError) as e:
            print(f"inflab.sandbox.upload: {path} -> s3://{bucket}/{key}: {str(e).splitlines()[0]}", file=sys.stderr)
            return 1
        print(f"{path.relative_to(src).as_posix()} -> s3://{bucket}/{key}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
