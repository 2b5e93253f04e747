"""What serving costs: TorchServe's throughput against the direct benchmark's, at batch 1 and 8.

For each batch size B, a sandbox session (this machine stands in for the instance) runs the
track up to `load-test` with a config of its own: the model compiled for batch B (fp32 only),
the direct benchmark at batch B, the model packaged and served by TorchServe with server-side
batching up to B, then the open-loop load test (Poisson arrivals, one sample per request) at
doubling rates from 1% of the direct throughput until p99 passes the limit or a request fails.
From `inflab report NAME --format json` (or, if the report has no served rows yet, the stored
``served`` record) it prints, per batch size:

- the direct benchmark's samples/s and p50;
- the best served throughput: the highest achieved requests/s among the rates with no errors
  and p99 within the limit, and the highest achieved at any rate;
- the ratio served/direct (samples/s: each request is one sample);
- the serving overhead at the lowest rate (served p50 − direct p50);
- the highest offered rate meeting the limit;
- the load generator against wrk (Debian's ``wrk``) on the same server, the same requests in
  flight (64 connections): each sends back to back for --wrk-s seconds, wrk and loadgen.py in
  turns (--rounds of each), and the ratio of their medians (loadgen ÷ wrk; the aim: ≥ 0.95), with
  each one's CPU per request. wrk reads TorchServe's inference key from its key file itself (a
  Lua script), so the key is not copied anywhere. Without wrk on the PATH this part is skipped, and
  the script says so.

A fresh INFLAB_HOME builds the sandbox's job virtualenv with pip the first time (about a minute);
both sessions share one home. Each session is cleaned up (`inflab cleanup NAME --yes
--delete-data`) once its figures are read, so its server does not share the two cores with the
next session's runs. The temporary home is removed unless --keep; a --home is kept. A failed run
prints its last 30 lines, the last lines mentioning an error, and where its full output is; the
script then exits 1. The figures are only as good as the machine is idle: a load average over
0.5 before a run is reported (the server, the generator and the benchmark share its cores).

    .venv/bin/python bench/serve.py [--batches 1,8] [--home DIR] [--keep] [--step-s 10] [--limit-ms 200]
        [--wrk-s 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
INFLAB = shutil.which("inflab", path=str(Path(sys.executable).parent)) or "inflab"
MARKS = tuple("▶✓✗■·↺!")
TAIL = 30
BUSY_LOAD = 0.5  # a 1-minute load average above this before a run: say the machine is not idle

CONFIG = """\
[model]
int8 = false

[bench]
batch_size = {batch}
min_duration_s = 5
min_queries = 200
max_duration_s = 30

[serve]
step_s = {step_s}
max_rates = {max_rates}
latency_limit_ms = {limit_ms:g}
"""


class RunFailed(RuntimeError):
    def __init__(self, what: str, tail: list[str], log: Path | None = None, errors: list[str] | None = None):
        super().__init__(what)
        self.tail, self.log, self.errors = tail, log, errors or []


ERROR_WORDS = ("Error", "Exception", "Traceback", "failed", "FAILED")


def inflab(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([INFLAB, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def run_session(env: dict, name: str, config: Path, log: Path, timeout: float) -> float:
    """`inflab run --sandbox … --until load-test`, step lines echoed as they come and everything
    written to ``log``; its wall time."""
    cmd = [INFLAB, "run", "--sandbox", "--name", name, "--config", str(config), "--until", "load-test"]
    tail: deque[str] = deque(maxlen=TAIL)
    errors: deque[str] = deque(maxlen=10)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    assert proc.stdout is not None
    out = log.open("w")
    for line in proc.stdout:
        line = line.rstrip("\n")
        out.write(line + "\n")
        tail.append(line)
        if any(w in line for w in ERROR_WORDS):
            errors.append(line)
        if line.startswith(MARKS):
            print(f"  [{time.monotonic() - t0:6.1f} s] {line}", flush=True)
        if time.monotonic() - t0 > timeout:
            proc.terminate()  # SIGTERM: the engine cancels and stops what it started
            break
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    out.close()
    took = time.monotonic() - t0
    if took > timeout:
        raise RunFailed(f"`{' '.join(cmd[1:])}` ran past {timeout:.0f} s", list(tail), log, list(errors))
    if code != 0:
        raise RunFailed(f"`{' '.join(cmd[1:])}` exited {code} after {took:.0f} s", list(tail), log, list(errors))
    return took


def _meets(rate: dict, limit_ms: float | None) -> bool:
    if rate.get("meets_limit") is not None:
        return bool(rate["meets_limit"])
    p99 = rate.get("latency_ms_p99")
    return not rate.get("errors") and p99 is not None and limit_ms is not None and p99 <= limit_ms


def figures(env: dict, home: Path, name: str) -> dict:
    """Direct and served figures of session ``name``: from the report's JSON, or (if it has no
    served rows with per-rate fields) from the stored ``served`` record."""
    p = inflab(env, "report", name, "--format", "json")
    if p.returncode != 0:
        raise RunFailed(
            f"`inflab report {name} --format json` exited {p.returncode}", (p.stdout + p.stderr).splitlines()[-TAIL:]
        )
    rows = [r for r in json.loads(p.stdout)["rows"] if r.get("label") in (name, None)]
    served = [r for r in rows if r.get("served") and r.get("offered_rps") is not None]
    if served:
        source = "report"
        run_id = served[-1]["run_id"]  # the newest load test
        served = [r for r in served if r["run_id"] == run_id]
        first = served[0]
        limit_ms, best_rate = first.get("limit_ms"), first.get("highest_rate_meeting_limit")
        direct_id = first.get("direct_run_id")
        rates = [
            {
                "offered_rps": r["offered_rps"],
                "achieved_rps": r.get("throughput_avg"),
                "latency_ms_p50": r.get("latency_ms_p50"),
                "latency_ms_p90": r.get("latency_ms_p90"),
                "latency_ms_p99": r.get("latency_ms_p99"),
                "latency_ms_max": r.get("latency_ms_max"),
                "ok": r.get("total_infs"),
                "errors": r.get("errors"),
                "meets_limit": r.get("meets_limit"),
            }
            for r in served
        ]
        stop_reason = first.get("stop_reason")
        workers = first.get("n_models")
    else:
        from inflab.session import Store

        source = "store"
        recs = Store(home).results(name, "served")
        if not recs:
            raise RunFailed(f"session {name} has no load-test results (neither in the report nor in the store)", [])
        rec = recs[-1]["data"]
        limit_ms, best_rate = rec.get("limit_ms"), rec.get("highest_rate_meeting_limit")
        direct_id = (rec.get("direct") or {}).get("run_id")
        rates = list(rec.get("rates") or [])
        stop_reason = rec.get("stop_reason")
        workers = rec.get("workers")
    directs = [r for r in rows if not r.get("served") and r.get("throughput_avg")]
    direct = next((r for r in directs if direct_id and r.get("run_id") == direct_id), directs[-1] if directs else None)
    if direct is None:
        raise RunFailed(f"session {name} has no direct benchmark row in its report", [])
    rates.sort(key=lambda r: r["offered_rps"])
    return {
        "source": source,
        "direct": direct,
        "rates": rates,
        "limit_ms": limit_ms,
        "best_rate": best_rate,
        "stop_reason": stop_reason,
        "workers": workers,
    }


def summarise(batch: int, f: dict) -> dict:
    d, rates, limit_ms = f["direct"], f["rates"], f["limit_ms"]
    direct_tp, direct_p50 = d["throughput_avg"], d.get("latency_ms_p50")
    ok = [r for r in rates if _meets(r, limit_ms) and r.get("achieved_rps") is not None]
    best_ok = max((r["achieved_rps"] for r in ok), default=None)
    best_any = max((r["achieved_rps"] for r in rates if r.get("achieved_rps") is not None), default=None)
    low = rates[0] if rates else {}
    overhead = None if low.get("latency_ms_p50") is None or direct_p50 is None else low["latency_ms_p50"] - direct_p50
    s = {
        "batch": batch,
        "direct_tp": direct_tp,
        "direct_p50": direct_p50,
        "best_ok": best_ok,
        "best_any": best_any,
        "ratio": None if best_ok is None else best_ok / direct_tp,
        "ratio_any": None if best_any is None else best_any / direct_tp,
        "overhead": overhead,
        "low_rate": low.get("offered_rps"),
        "best_rate": f["best_rate"],
        "limit_ms": limit_ms,
    }
    print(f"batch {batch} (figures from the {f['source']}; {f['workers'] or '?'} TorchServe worker(s)):")
    print(f"  direct benchmark:  {direct_tp:,.1f} samples/s, p50 {_ms(direct_p50)}")
    print("  load test:         offered → achieved (answered): p50 / p90 / p99 / max")
    for r in rates:
        print(
            f"    {r['offered_rps']:>6g}/s → {_num(r.get('achieved_rps')):>6}/s ({_num(r.get('ok'), '{}')}): "
            f"{_ms(r.get('latency_ms_p50'))} / {_ms(r.get('latency_ms_p90'))} / {_ms(r.get('latency_ms_p99'))} / "
            f"{_ms(r.get('latency_ms_max'))}"
            + (f", {r['errors']} error(s)" if r.get("errors") else "")
            + ("" if _meets(r, limit_ms) else "  (over the limit)")
        )
    print(f"  stopped:           {f['stop_reason'] or '-'}")
    print(
        f"  best served:       {_num(best_ok)} requests/s within p99 ≤ {_num(limit_ms, '{:g}')} ms and no errors "
        f"(highest at any rate: {_num(best_any)}/s)"
    )
    print(f"  served/direct:     {_num(s['ratio'], '{:.2f}')} (at any rate: {_num(s['ratio_any'], '{:.2f}')})")
    print(f"  overhead at {_num(s['low_rate'], '{:g}')}/s:  {_num(overhead, '{:+.2f}')} ms (served p50 − direct p50)")
    print(f"  highest rate meeting the limit: {_num(f['best_rate'], '{:g}')} requests/s offered", flush=True)
    return s


def _num(v, fmt: str = "{:,.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def _ms(v) -> str:
    return "-" if v is None else f"{v:.2f} ms"


WRK_LUA = """\
-- POST the request body with TorchServe's inference key, both read from their files here
local function slurp(path) local f = assert(io.open(path, "rb")); local s = f:read("*a"); f:close(); return s end
wrk.method = "POST"
wrk.body = slurp({body!r})
wrk.headers["Content-Type"] = {ctype!r}
local keys = {keys!r}
if keys ~= "" then
  local key = slurp(keys):match('"inference"%s*:%s*{{[^}}]-"key"%s*:%s*"([^"]+)"')
  wrk.headers["Authorization"] = "Bearer " .. key
end
"""

PROBE = """\
import json, sys, time
sys.path.insert(0, {payload!r})
import loadgen
key = ""
if {keys!r}:
    key = json.load(open({keys!r}))["inference"]["key"]
client = loadgen.Client({url!r}, key, open({body!r}, "rb").read(), {ctype!r}, 30.0, {connections})
assert "ok" in client.warm(loadgen.WARMUP_REQUESTS)
r = loadgen.probe(client, {seconds}, loadgen.Meter(None))
print(json.dumps(r))
"""


def serving_files(home: Path, name: str) -> dict | None:
    """Where session ``name``'s server listens, its key file and the request body (on this machine:
    the sandbox instance's home directory)."""
    from inflab.session import Store

    host = Store(home).get(name, "host") or {}
    run = home / "sandbox" / "instances" / str(host.get("instance_id")) / ".inflab" / "work" / "serve" / "run"
    try:
        endpoints = json.loads((run / "endpoints.json").read_text())
    except (OSError, ValueError):
        return None
    samples = run.parent / "samples"
    body = next(iter(sorted(samples.glob("*"))), None)
    keys = run / "key_file.json"
    return {
        "url": f"http://127.0.0.1:{endpoints['inference']}/predictions/inflab",
        "body": str(body),
        "ctype": "application/json" if body and body.suffix == ".json" else "application/octet-stream",
        "keys": str(keys) if endpoints.get("token_auth", True) and keys.exists() else "",
        "workers": endpoints.get("workers"),
        "threads": endpoints.get("threads_per_worker"),
    }


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_wrk(files: dict, seconds: int, connections: int, scratch: Path) -> dict:
    lua = scratch / "post.lua"
    lua.write_text(WRK_LUA.format(body=files["body"], ctype=files["ctype"], keys=files["keys"]))
    lua.chmod(0o600)
    cpu0 = _children_cpu()
    p = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(lua), files["url"]],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    cpu = _children_cpu() - cpu0
    rate = re.search(r"Requests/sec:\s+([\d.]+)", p.stdout)
    total = re.search(r"(\d+) requests in", p.stdout)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", p.stdout)
    if p.returncode != 0 or not rate:
        raise RunFailed(f"wrk failed (exit {p.returncode})", (p.stdout + p.stderr).splitlines()[-10:])
    n = int(total.group(1)) if total else 0
    return {
        "rps": float(rate.group(1)),
        "errors": int(bad.group(1)) if bad else 0,
        "cpu_us_per_request": cpu / n * 1e6 if n else None,
    }


def run_probe(files: dict, seconds: int, connections: int) -> dict:
    code = PROBE.format(
        payload=str(ROOT / "inflab" / "remote" / "payload"),
        keys=files["keys"],
        url=files["url"],
        body=files["body"],
        ctype=files["ctype"],
        connections=connections,
        seconds=seconds,
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=seconds + 120)
    if p.returncode != 0:
        raise RunFailed(f"loadgen.py's probe failed (exit {p.returncode})", (p.stdout + p.stderr).splitlines()[-10:])
    r = json.loads(p.stdout.strip().splitlines()[-1])
    return {
        "rps": r["achieved_rps"],
        "errors": r["errors"],
        "cpu_us_per_request": r["generator_cpu_us_per_request"],
        "cpu_share": r["generator_cpu_share"],
    }


def against_wrk(home: Path, name: str, seconds: int, rounds: int, connections: int = 64) -> dict | None:
    """loadgen.py's maximum rate (its closed-loop probe) against wrk's on the session's server, in turns."""
    if not shutil.which("wrk"):
        print("  loadgen ÷ wrk: skipped — wrk is not installed (Debian: apt-get install wrk)", flush=True)
        return None
    files = serving_files(home, name)
    if files is None:
        print("  loadgen ÷ wrk: skipped — the server's endpoints.json is not there (was it stopped?)", flush=True)
        return None
    scratch = Path(tempfile.mkdtemp(prefix="inflab-bench-wrk-"))
    wrk, gen = [], []
    try:
        for i in range(rounds):
            load = os.getloadavg()[0]
            wrk.append(run_wrk(files, seconds, connections, scratch))
            gen.append(run_probe(files, seconds, connections))
            print(
                f"  round {i + 1}: wrk {wrk[-1]['rps']:,.1f} req/s ({_num(wrk[-1]['cpu_us_per_request'])} µs CPU per "
                f"request); loadgen.py {gen[-1]['rps']:,.1f} req/s ({_num(gen[-1]['cpu_us_per_request'])} µs CPU per "
                f"request, {gen[-1]['cpu_share']:.1%} of the CPU); load average before: {load:.2f}",
                flush=True,
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    w, g = statistics.median(x["rps"] for x in wrk), statistics.median(x["rps"] for x in gen)
    out = {
        "wrk_rps": w,
        "loadgen_rps": g,
        "ratio": g / w if w else None,
        "connections": connections,
        "wrk_us": statistics.median(x["cpu_us_per_request"] or 0 for x in wrk),
        "loadgen_us": statistics.median(x["cpu_us_per_request"] or 0 for x in gen),
        "errors": sum(x["errors"] for x in wrk + gen),
        "workers": files["workers"],
        "threads": files["threads"],
    }
    print(
        f"  loadgen ÷ wrk ({connections} connections, {seconds} s each, median of {rounds}): "
        f"{g:,.1f} ÷ {w:,.1f} = {_num(out['ratio'], '{:.3f}')} (aim ≥ 0.95); CPU per request "
        f"{out['loadgen_us']:.1f} µs vs wrk's {out['wrk_us']:.1f} µs"
        + (f"; {out['errors']} non-200 answer(s)" if out["errors"] else ""),
        flush=True,
    )
    return out


def cleanup(env: dict, name: str) -> bool:
    try:
        p = inflab(env, "cleanup", name, "--yes", "--delete-data", timeout=300)
    except subprocess.TimeoutExpired:
        print(f"  cleanup of {name} FAILED: still running after 300 s", flush=True)
        return False
    if p.returncode != 0:
        print(f"  cleanup of {name} FAILED (exit {p.returncode}):", flush=True)
        for line in (p.stdout + p.stderr).splitlines()[-10:]:
            print(f"    {line}")
        return False
    print(f"  cleanup of {name}: ok", flush=True)
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="1,8", help="batch sizes, comma-separated (default 1,8)")
    ap.add_argument("--home", help="INFLAB_HOME to use (default: a new temporary one, removed after unless --keep)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary home (and its sandbox daemon stopped)")
    ap.add_argument(
        "--step-s",
        type=int,
        default=10,
        help="seconds per offered rate (serve.step_s, default 10: a short step makes the first rate noisy)",
    )
    ap.add_argument("--limit-ms", type=float, default=200.0, help="p99 limit of the load test (default 200)")
    ap.add_argument("--max-rates", type=int, default=8, help="at most this many doubling rates (default 8)")
    ap.add_argument("--timeout-s", type=float, default=1800, help="give one session's run at most this long")
    ap.add_argument(
        "--wrk-s", type=int, default=10, help="seconds of each wrk / loadgen.py maximum-rate run (default 10)"
    )
    ap.add_argument("--rounds", type=int, default=2, help="wrk and loadgen.py runs, in turns, of each (default 2)")
    args = ap.parse_args()
    try:
        batches = [int(b) for b in args.batches.split(",") if b.strip()]
    except ValueError:
        ap.error(f"--batches: {args.batches!r} is not a comma-separated list of integers")
    if not batches or min(batches) < 1:
        ap.error("--batches: give at least one batch size >= 1")

    home = Path(args.home).resolve() if args.home else Path(tempfile.mkdtemp(prefix="inflab-bench-serve-"))
    scratch = Path(tempfile.mkdtemp(prefix="inflab-bench-serve-cfg-"))
    env = dict(os.environ, INFLAB_HOME=str(home), PYTHONUNBUFFERED="1")
    env.pop("NO_COLOR", None)
    sandbox_was_running = inflab(env, "sandbox", "status").returncode == 0
    fresh = not any((home / "sandbox").glob("*/*/venv/.inflab-image"))
    print(
        f"INFLAB_HOME {home}"
        + (" (new: the first session builds the sandbox's job virtualenv with pip, about a minute)" if fresh else ""),
        flush=True,
    )

    from inflab.session import Store

    tag = uuid.uuid4().hex[:6]
    logs = Path(tempfile.mkdtemp(prefix="inflab-bench-serve-logs-"))
    keep_logs = False
    results: list[dict] = []
    failed = False
    cleanups_ok = True
    try:
        for batch in batches:
            name = f"bench-serve-b{batch}-{tag}"
            cfg = scratch / f"b{batch}.toml"
            cfg.write_text(
                CONFIG.format(batch=batch, step_s=args.step_s, max_rates=args.max_rates, limit_ms=args.limit_ms)
            )
            print(f"\n== batch {batch}: inflab run --sandbox --name {name} --until load-test", flush=True)
            busy = os.getloadavg()[0]
            if busy > BUSY_LOAD:
                print(
                    f"  warning: load average {busy:.2f} before the run: other work on this {os.cpu_count()}-core "
                    "machine shares the CPU with the server, the generator and the benchmark, and skews the figures",
                    flush=True,
                )
            try:
                took = run_session(env, name, cfg, logs / f"{name}.log", args.timeout_s)
                print(f"  run took {took:.0f} s (load average after it: {os.getloadavg()[0]:.2f})", flush=True)
                results.append(summarise(batch, figures(env, home, name)))
                results[-1]["wrk"] = against_wrk(home, name, args.wrk_s, args.rounds)
            except RunFailed as e:
                failed = True
                print(f"\nFAILED: {e}", flush=True)
                if e.tail:
                    print(f"last {len(e.tail)} lines:")
                    for line in e.tail:
                        print(f"  | {line}")
                if e.errors:
                    print("the last lines that mention an error:")
                    for line in e.errors:
                        print(f"  ! {line}")
                if e.log:
                    keep_logs = True
            finally:
                if Store(home).has_session(name):
                    cleanups_ok &= cleanup(env, name)
            if failed:
                break
    finally:
        if not sandbox_was_running:
            inflab(env, "sandbox", "stop")
        shutil.rmtree(scratch, ignore_errors=True)
        if not args.home and not args.keep:
            shutil.rmtree(home, ignore_errors=True)
        elif not args.home:
            print(f"kept {home}")
        if keep_logs:
            print(f"the runs' full output: {logs}")
        else:
            shutil.rmtree(logs, ignore_errors=True)

    if results:
        print(
            "\nBATCH  DIRECT SAMPLES/S  DIRECT P50  SERVED/S (LIMIT)  SERVED/S (ANY)  RATIO  RATIO (ANY)  "
            "OVERHEAD P50  BEST RATE"
        )
        for s in results:
            print(
                f"{s['batch']:>5}  {_num(s['direct_tp']):>16}  {_ms(s['direct_p50']):>10}  {_num(s['best_ok']):>16}  "
                f"{_num(s['best_any']):>14}  {_num(s['ratio'], '{:.2f}'):>5}  {_num(s['ratio_any'], '{:.2f}'):>11}  "
                f"{_num(s['overhead'], '{:+.2f} ms'):>12}  {_num(s['best_rate'], '{:g}/s'):>9}"
            )
        print(
            f"(limit: p99 ≤ {args.limit_ms:g} ms and no errors; {args.step_s} s per rate; overhead at the lowest rate)"
        )
        print()
        for s in results:
            print(
                f"served/direct throughput at batch {s['batch']}: {_num(s['ratio'], '{:.2f}')}"
                + (
                    ""
                    if s["ratio"] is not None
                    else f" (no rate met the limit; at any rate: {_num(s['ratio_any'], '{:.2f}')})"
                )
            )
            w = s.get("wrk")
            if w:
                print(
                    f"loadgen ÷ wrk at batch {s['batch']}: {w['loadgen_rps']:,.1f} ÷ {w['wrk_rps']:,.1f} = "
                    f"{_num(w['ratio'], '{:.3f}')} ({w['workers']} TorchServe worker(s)"
                    + (f" × {w['threads']} thread(s)" if w["threads"] else "")
                    + ")"
                )
    if not cleanups_ok:
        print("a cleanup failed (see above)", file=sys.stderr)
    sys.exit(1 if failed or not cleanups_ok else 0)


if __name__ == "__main__":
    main()
