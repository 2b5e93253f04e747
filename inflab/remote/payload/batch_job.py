"""One job of the AWS Batch sweep: compile the model for one batch size, then benchmark it.

The job definition runs this inside the session's image (``/opt/inflab/payload``) or, in the
sandbox, in the job virtualenv. What varies per job comes from the environment Batch gives
the container, so one definition serves every instance type of a (family, target, batch size):

    INFLAB_BATCH_SIZE      samples per model call (the definition sets it; an override wins)
    INFLAB_INSTANCE_TYPE   the instance type the job's queue runs on (recorded in the results)
    AWS_BATCH_JOB_ID       Batch's id for this job: the results' run ids are made from it

Everything the job makes goes under ``--out``: ``models/`` (the compiled models and their
manifests), ``results/`` (one benchmark result per model, inflab-bench JSON, all measured by
one ``bench.py``; with ``--run-id`` PREFIX their run ids are PREFIX.1, PREFIX.2 …) and ``job.log``
(the readable log: this job's whole output). The job definition's command copies that
directory to S3 afterwards, whatever the exit code, so a failed job's log is kept too.

Standard library only (it starts before anything else is known about the image).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUN_PREFIX = "sweep"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="batch_job.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="directory for models/, results/ and job.log")
    p.add_argument("--label", default="", help="recorded in each result (the session's name)")
    p.add_argument("--runtime", default="", help="recorded in each result (aws, sandbox)")
    p.add_argument(
        "--compile",
        nargs=argparse.REMAINDER,
        default=[],
        help="compile.py's arguments (without --batch-size, --out, --instance-type), then --bench ...",
    )
    args = p.parse_args(argv)
    if "--bench" not in args.compile:
        p.error("--compile ARGS --bench ARGS: both lists are needed")
    i = args.compile.index("--bench")
    args.compile, args.bench = args.compile[:i], args.compile[i + 1 :]
    return args


def run_id_prefix(job_id: str, instance_type: str, batch_size: str) -> str:
    """``sweep-<first 8 of the Batch job id>-<type>-b<size>``: unique per job, readable in the report."""
    short = re.sub(r"[^A-Za-z0-9]", "", job_id)[:8] or "local"
    return f"{RUN_PREFIX}-{short}-{instance_type or 'any'}-b{batch_size}"[:60]


class Tee:
    """This job's output, to stdout (CloudWatch Logs) and to job.log (S3)."""

    def __init__(self, path: Path):
        self.file = open(path, "a", encoding="utf-8", errors="replace")

    def line(self, text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        self.file.write(text + "\n")
        self.file.flush()

    def run(self, argv: list[str], cwd: Path) -> int:
        self.line("$ python " + " ".join(argv[1:]))
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            self.line(line.rstrip("\n"))
        return proc.wait()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    (out / "models").mkdir(parents=True, exist_ok=True)
    (out / "results").mkdir(parents=True, exist_ok=True)
    tee = Tee(out / "job.log")
    batch = os.environ.get("INFLAB_BATCH_SIZE", "")
    itype = os.environ.get("INFLAB_INSTANCE_TYPE", "")
    job_id = os.environ.get("AWS_BATCH_JOB_ID", "")
    tee.line(f"[sweep] job {job_id or '(no Batch job id)'} · instance type {itype or '?'} · batch size {batch or '?'}")
    if not batch:
        tee.line("[sweep] INFLAB_BATCH_SIZE is not set: the job definition sets it")
        return 2

    py = sys.executable
    code = tee.run(
        [
            py,
            "-u",
            str(HERE / "compile.py"),
            *args.compile,
            "--batch-size",
            batch,
            "--out",
            "models",
            "--instance-type",
            itype,
        ],
        cwd=out,
    )
    if code != 0:
        tee.line(f"[sweep] compile failed (exit {code})")
        return code
    index = json.loads((out / "models" / "index.json").read_text())
    models = [json.loads((out / "models" / name).read_text())["file"] for name in index]  # each manifest names its file
    # One harness for every precision: one start-up and one runtime import, and their trials take turns.
    code = tee.run(
        [
            py,
            "-u",
            str(HERE / "bench.py"),
            *[f"models/{m}" for m in models],
            *args.bench,
            "--instance-type",
            itype,
            "--run-id",
            run_id_prefix(job_id, itype, batch),
            "--label",
            args.label,
            "--runtime",
            args.runtime,
            "--out-dir",
            "results",
        ],
        cwd=out,
    )
    if code != 0:
        tee.line(f"[sweep] benchmark of {', '.join(models)} failed (exit {code})")
        return code
    tee.line(f"[sweep] done: {len(models)} model(s) compiled and measured")
    return 0


if __name__ == "__main__":
    sys.exit(main())
