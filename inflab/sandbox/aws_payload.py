"""Run a payload script that calls AWS, on the sandbox instance, against the sandbox's cloud.

On an instance such a script (the SageMaker package upload, the load on a SageMaker endpoint) signs
its calls with the instance role and reaches AWS's endpoints. The sandbox's cloud answers only the
lab's own clients, so the sandbox runtime starts those scripts through this module instead, with
the lab's Python (which has botocore; the job virtualenv does not)::

    python -m inflab.sandbox.aws_payload --home HOME SCRIPT [ARG ...]

It reads the daemon's endpoint and secret from ``<HOME>/sandbox`` (0600 files of this user), points
the payload's AWS client at them (:func:`aws_client.configure`, in this process: nothing is
written, nothing is on a command line), signing as the sandbox's administrator while the sandbox
checks an IAM policy (the stand-in for the instance role, as for a Batch job's upload), then runs
SCRIPT as ``__main__`` with ARGs. Exit 1 (one line) when the sandbox is not running, 2 on bad
arguments; otherwise the script's own exit code.
"""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

from . import read_state

PLACEHOLDER = ("inflab-sandbox", "inflab-sandbox")  # not credentials: what the emulator accepts unchecked


class _Args(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        print(f"inflab.sandbox.aws_payload: {message}", file=sys.stderr)
        raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    ap = _Args(prog="inflab.sandbox.aws_payload")
    ap.add_argument("--home", required=True, help="the INFLAB_HOME whose sandbox to call")
    ap.add_argument("script")
    ap.add_argument("args", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    script = Path(a.script)
    if not script.is_file():
        ap.error(f"{script}: no such payload script")
    info = read_state(Path(a.home))
    if info is None:
        print("inflab.sandbox.aws_payload: the sandbox is not running (inflab sandbox start)", file=sys.stderr)
        return 1
    sys.path.insert(0, str(script.parent))  # the payload's modules import each other by name
    import aws_client  # the payload's (its directory is first on the path now)

    # without an IAM policy to check, the emulator takes the placeholders the lab's own clients sign with
    key = info.access_key("admin") or PLACEHOLDER
    aws_client.configure(endpoint_url=info.endpoint, headers=dict(info.headers), credentials=key)
    sys.argv = [str(script), *a.args]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
