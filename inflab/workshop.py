"""Import the original workshop's benchmark outputs into the report (``inflab report --from DIR``).

The workshop leaves two kinds of file per batch size (DESIGN §10):

- the direct benchmark's log, ``<model>_<processor>_<length>_<batch>.pt.log``: progress lines,
  then ``Latency: <N> samples: (P50, P90, P95)``, the three values in SECONDS as a numpy array
  that may wrap (``[0.0123 0.0145\\n 0.0151]``), ``Total time taken for <N> * (<B> sentences) is
  <T> seconds`` and ``Throughput (num_requests * batch_size /sec) = <X>``;
- neuronperf's ``.json``: a JSON list of result dicts (``throughput_avg``, ``latency_ms_p50``,
  ``batch_size``, ``n_models``, ``workers_per_model``, …), possibly after log lines.

Either becomes report rows (:func:`inflab.report.new_row`) with runtime ``workshop``. A file
that cannot be read — a crashed run's log, truncated JSON — is named in one warning and the
others still import. Files are opened without blocking and read up to :data:`MAX_BYTES`, so a
fifo or a link to a device in the directory is skipped, not waited on. Standard library only.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import InputError
from .remote.payload.result import FORMAT, SchemaError
from .report import new_row, row
from .untrusted import shown as visible

MAX_BYTES = 5 * 1024 * 1024
MAX_STARTS = 200  # lines of a .json file tried as the start of its JSON document
MAX_REASON = 200  # characters of why a file was left out, in its warning
RUNTIME = "workshop"
SUFFIXES = (".log", ".json")
NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
LOG_NAME = re.compile(r"(?P<model>.+)_(?P<processor>[A-Za-z0-9]+)_(?P<length>\d+)_(?P<batch>\d+)(?:\.pt)?\.log")
JSON_NAME = re.compile(
    r"(?:neuronperf_results_)?(?P<model>.+)_(?P<processor>[A-Za-z0-9]+)_(?P<length>\d+)_(?P<batch>\d+)"
    r"(?:\.pt)?\.json"
)
LATENCY = re.compile(r"Latency:\s*(\d+)\s+samples")
ARRAY = re.compile(r"\[([^\]]*)\]", re.S)
TOTAL = re.compile(rf"Total time taken for (\d+) \* \((\d+)(?: x)? sentences\) is ({NUMBER}) seconds")
THROUGHPUT = re.compile(rf"Throughput \([^)]*\) = ({NUMBER})")
HALF = re.compile(r"Half Precision:\s*True")
# the processor field of the workshop's names -> (target, precision). Its precision is not in its
# files for inf (neuron-cc may cast fp32 inside) or gpu (a log saying "Half Precision: True" is fp16).
PROCESSORS = {
    "inf": ("inf1", None),
    "inf1": ("inf1", None),
    "inf2": ("inf2", None),
    "gpu": ("cuda", None),
    "cuda": ("cuda", None),
    "cpu": ("cpu", "fp32"),
}


class WorkshopError(InputError, ValueError):
    """A directory that cannot be imported (missing, not a directory, nothing importable); one line.
    ``warnings`` names the files that were tried and left out."""

    def __init__(self, message: str, warnings: list[str] | None = None):
        super().__init__(message)
        self.warnings = list(warnings or [])


class BadFile(ValueError):
    """One file that cannot be imported; the message says why."""


class _NotFinite(ArithmeticError):
    """A number in a file that is not a finite float (1e400, 10**400, NaN, Infinity)."""


def _finite(text: str) -> float:
    """A number read from a file, as a float; :class:`_NotFinite` when it is none (or overflows)."""
    try:
        value = float(text)
    except OverflowError:  # an integer too large for a float
        value = math.inf
    if not math.isfinite(value):
        raise _NotFinite(text if len(text) <= 24 else f"{text[:12]}…({len(text)} characters)")
    return value


def _finite_int(text: str) -> int:
    _finite(text)
    return int(text)


def _json(text: str, start: int | None = None) -> Any:
    """One JSON value, its numbers finite (:class:`_NotFinite`), nested at most as deeply as
    Python's recursion allows (:class:`BadFile` beyond: one file must not stop the import)."""
    decoder = json.JSONDecoder(parse_float=_finite, parse_int=_finite_int, parse_constant=_finite)
    try:
        return decoder.decode(text) if start is None else decoder.raw_decode(text, start)[0]
    except RecursionError:
        raise BadFile("its JSON is nested too deeply to read") from None


def _family(model: str) -> str | None:
    low = model.lower()
    return next((f for f in ("bert", "resnet") if f in low), None)


def _target(processor: str | None) -> tuple[str | None, str | None]:
    if not processor:
        return None, None
    return PROCESSORS.get(processor.lower(), (processor, None))


def _mtime(st: os.stat_result) -> str:
    """The file's modification time: when the workshop's run ended, as near as the file tells."""
    return datetime.fromtimestamp(st.st_mtime, timezone.utc).isoformat(timespec="seconds")


def _base(path: Path, name: re.Match | None, batch: int, when: str, run: str) -> dict[str, Any]:
    model = name["model"] if name else path.name.split(".")[0]
    target, precision = _target(name["processor"] if name else None)
    return dict(
        model=model,
        family=_family(model),
        precision=precision,
        target=target,
        instance_type="",
        sandbox=False,
        batch_size=batch,
        input_size=int(name["length"]) if name else None,
        run=run,
        run_id=path.name,
        timestamp=when,
        label=path.name,
        runtime=RUNTIME,
    )


def parse_log(text: str, path: Path, when: str = "") -> dict[str, Any]:
    """The row of one direct-benchmark log; :class:`BadFile` when it lacks what a finished run prints."""
    name = LOG_NAME.fullmatch(path.name)
    thr = THROUGHPUT.search(text)
    lat = LATENCY.search(text)
    if not thr or not lat:
        crashed = "Traceback (most recent call last)" in text
        missing = "Throughput line" if not thr else "Latency line"
        raise BadFile(f"no {missing}" + (" (the run crashed: it has a Python traceback)" if crashed else ""))
    values = ARRAY.search(text, lat.end())
    numbers = re.findall(NUMBER, values.group(1)) if values else []
    if len(numbers) != 3:
        raise BadFile("the Latency line is not followed by three values [P50 P90 P95]")
    p50, p90, p95 = (_finite(v) * 1000 for v in numbers)  # seconds -> ms
    total = TOTAL.search(text)
    batch = int(total.group(2)) if total else int(name["batch"]) if name else None
    if batch is None:
        raise BadFile("no batch size: neither a Total time line nor a <model>_<processor>_<length>_<batch>.pt.log name")
    base = _base(path, name, batch, when, f"{name['length']}_{name['batch']}.log" if name else path.name[-12:])
    if HALF.search(text):
        base["precision"] = "fp16"
    return new_row(
        **base,
        throughput_avg=_finite(thr.group(1)),
        latency_ms_p50=p50,
        latency_ms_p90=p90,
        latency_ms_p95=p95,
        total_infs=int(lat.group(1)),
        duration_s=_finite(total.group(3)) if total else None,
        status="ok",
    )


def _results_list(doc: Any) -> bool:
    return isinstance(doc, list) and bool(doc) and all(isinstance(d, dict) for d in doc)


def _json_document(text: str) -> Any:
    """The JSON document in ``text``: all of it, or else the first value parsed from a line
    starting with ``[`` or ``{`` (log lines may come before it, and after), preferring a list of
    objects, so a log line such as ``[1/3] loading`` does not hide the results after it."""
    try:
        return _json(text)
    except BadFile:
        raise
    except ValueError:
        pass
    parsed: list[Any] = []  # values parsed so far that are not a results list
    # Only lines that start with the bracket: a document's own inner lines are indented (or it is
    # one line), so a long truncated document is not re-parsed from each of its lines.
    starts = [m.start() for m in re.finditer(r"^[\[{]", text, re.M)][:MAX_STARTS]
    for start in starts:
        try:
            doc = _json(text, start)
        except BadFile:
            raise
        except ValueError:
            continue
        if _results_list(doc):
            return doc
        parsed.append(doc)
    if parsed:
        return parsed[0]
    raise BadFile("no complete JSON list in it (truncated?)")


def _number(d: dict, key: str, where: str, required: bool = True) -> float | None:
    v = d.get(key)
    if v is None and not required:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise BadFile(f"{where}: {key} is {'missing' if v is None else json.dumps(v)}, not a number of 0 or more")
    return v


JSON_KINDS = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "true or false",
    type(None): "null",
}


def _kind(doc: Any) -> str:
    if isinstance(doc, list):
        if not doc:
            return "an empty list"
        other = next(x for x in doc if not isinstance(x, dict))
        return f"a list holding {JSON_KINDS.get(type(other), 'something else')}"
    return JSON_KINDS.get(type(doc), type(doc).__name__)


def parse_neuronperf(text: str, path: Path, when: str = "") -> list[dict[str, Any]]:
    """The rows of one neuronperf results file (or of one inflab result JSON)."""
    doc = _json_document(text)
    if isinstance(doc, dict) and doc.get("format") == FORMAT:
        try:
            return [row(doc)]
        except SchemaError as e:
            raise BadFile(str(e)) from None
    if not _results_list(doc):
        raise BadFile(f"not a list of neuronperf result objects ({_kind(doc)})")
    name = JSON_NAME.fullmatch(path.name)
    rows = []
    for i, d in enumerate(doc):
        where = f"entry {i}"
        batch = _number(d, "batch_size", where)
        if not float(batch).is_integer() or batch < 1:
            raise BadFile(f"{where}: batch_size is {batch!r}, not a positive whole number")
        n, w = d.get("n_models"), d.get("workers_per_model")
        run = f"{name['length']}_{name['batch']}.json" if name else path.name[-12:]
        base = _base(path, name, int(batch), when, run + (f"#{i + 1}" if len(doc) > 1 else ""))
        base["run_id"] = path.name + (f"#{i + 1}" if len(doc) > 1 else "")
        rows.append(
            new_row(
                **base,
                throughput_avg=float(_number(d, "throughput_avg", where)),
                **{
                    f"latency_ms_{p}": _number(d, f"latency_ms_{p}", where, required=p == "p50")
                    for p in ("p50", "p90", "p95", "p99")
                },
                n_models=n,
                workers_per_model=w,
                models_x_workers=f"{n}×{w}" if n is not None and w is not None else None,
                total_infs=d.get("total_infs") if isinstance(d.get("total_infs"), int) else None,
                model_filename=d.get("model_filename") if isinstance(d.get("model_filename"), str) else None,
                status="ok",
            )
        )
    return rows


def read_small(path: Path) -> tuple[str, os.stat_result]:
    """The text of a regular file of at most :data:`MAX_BYTES`, opened without blocking (a fifo or
    a device is refused before any read waits); :class:`BadFile` otherwise."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise BadFile(f"cannot read it ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise BadFile("not a regular file, skipped")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        raise BadFile(f"cannot read it ({e.strerror})") from None
    try:
        st = os.fstat(fd)  # what was opened, not what the name pointed at a moment ago
        if not stat.S_ISREG(st.st_mode):
            raise BadFile("not a regular file, skipped")
        if st.st_size > MAX_BYTES:
            raise BadFile(f"larger than {MAX_BYTES // (1024 * 1024)} MiB, skipped")
        chunks, size = [], 0
        while size <= MAX_BYTES:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_BYTES:
            raise BadFile(f"larger than {MAX_BYTES // (1024 * 1024)} MiB, skipped")
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", errors="replace"), st


def import_dir(directory: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Report rows from the workshop's ``.log`` and ``.json`` files directly in ``directory``
    (sorted by name), and one warning line per file left out, naming it and why. Other files are
    ignored. :class:`WorkshopError` when the directory is unusable or nothing in it imports."""
    d = Path(directory)
    try:
        st = os.stat(d)
    except OSError as e:
        raise WorkshopError(f"--from {directory}: {e.strerror.lower() if e.strerror else 'cannot be read'}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise WorkshopError(f"--from {directory}: not a directory")
    try:
        names = sorted(os.listdir(d))
    except OSError as e:
        raise WorkshopError(f"--from {directory}: cannot list it ({e.strerror})") from None
    candidates = [n for n in names if n.endswith(SUFFIXES)]
    rows: list[dict[str, Any]] = []
    warnings: list[str] = []
    for n in candidates:
        path = d / n
        try:
            text, fst = read_small(path)
            when = _mtime(fst)
            found = [parse_log(text, path, when)] if n.endswith(".log") else parse_neuronperf(text, path, when)
        except _NotFinite as e:
            warnings.append(f"{visible(str(path))}: not imported: {visible(str(e))} is not a finite number")
            continue
        except BadFile as e:
            reason = visible(str(e))
            reason = reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 1] + "…"
            warnings.append(f"{visible(str(path))}: not imported: {reason}")
            continue
        # What came from the file (its name above all) is shown on terminals: no escape sequences.
        rows += [{k: visible(v) if isinstance(v, str) else v for k, v in r.items()} for r in found]
    if not rows:
        found = (
            f"none of its {len(candidates)} .log/.json file(s) could be imported"
            if candidates
            else "no workshop .log or .json files in it"
        )
        raise WorkshopError(f"--from {visible(str(directory))}: {found}", warnings)
    return rows, warnings
