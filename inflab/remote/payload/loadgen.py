#!/usr/bin/env python3
"""Open-loop load on a TorchServe model, at rising rates, from the host it runs on.

    python3 loadgen.py --url http://127.0.0.1:PORT/predictions/MODEL --key-file serve/run/key_file.json
        --input FILE --content-type TYPE --rates 5,10,20 --step-s 10 --limit-ms 100 --out FILE --run-id ID

With ``--url sagemaker://ENDPOINT?region=REGION&variant=VARIANT`` each request is a SageMaker
``InvokeEndpoint`` call instead (:mod:`sagemaker_invoke`; ``--key-file`` is not used).

For each rate in turn, requests are scheduled as a Poisson process (exponential gaps) for
``--step-s`` seconds and sent at their scheduled times whatever is still outstanding (open
loop); each latency runs from the request's *scheduled* time to its answer, so time spent
queueing behind a slow server counts (no coordinated omission). Per rate: requests sent,
answered OK, errors by kind, achieved throughput, p50/p90/p99/max. The rates stop rising
once p99 is over ``--limit-ms`` or a request fails. The result (``inflab-load/1``) is
written after every rate, ``complete`` once the run has ended.

The inference key is read from TorchServe's key file here and sent in the Authorization
header; it is never printed or written. Standard library only. Exit 0 when the run
completed (even if a rate failed: that is a finding), 1 when the server could not be
reached at all, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import random
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timezone

try:
    from . import cmdline, sagemaker_invoke
except ImportError:  # run as a script on the host
    import cmdline
    import sagemaker_invoke

FORMAT = "inflab-load/1"
SEED = 0
WARMUP_REQUESTS = 20  # unmeasured: the first rate should not pay for cold caches and lazy imports
MAX_THREADS = 64  # concurrent requests in flight; later ones wait (and the wait counts)


def say(msg: str) -> None:
    print(f"[load] {msg}", flush=True)


def _rates(text: str) -> list[float]:
    try:
        rates = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be numbers separated by commas, not {text!r}") from None
    if not rates or any(not r > 0 for r in rates):
        raise argparse.ArgumentTypeError(f"must be rates above 0, not {text!r}")
    return rates


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by linear interpolation between closest ranks."""
    if not sorted_values:
        return None
    pos = (len(sorted_values) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def schedule(rate: float, seconds: float, rng: random.Random) -> list[float]:
    """Poisson arrival times (seconds from the start) at ``rate`` per second for ``seconds``."""
    times, t = [], 0.0
    while True:
        t += rng.expovariate(rate)
        if t >= seconds:
            return times
        times.append(t)


class Client:
    """One keep-alive HTTP connection; reconnects after an error."""

    def __init__(self, url: str, key: str, body: bytes, content_type: str, timeout: float):
        u = urllib.parse.urlsplit(url)
        self.host, self.port, self.path = u.hostname, u.port or 80, u.path
        self.headers = {"Content-Type": content_type, **({"Authorization": f"Bearer {key}"} if key else {})}
        self.body, self.timeout = body, timeout
        self.conn: http.client.HTTPConnection | None = None

    def send(self) -> str:
        """"ok", or the kind of failure: an HTTP status ("503") or an exception's name."""
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self.conn.request("POST", self.path, body=self.body, headers=self.headers)
            resp = self.conn.getresponse()
            resp.read()
            return "ok" if resp.status == 200 else str(resp.status)
        except (OSError, http.client.HTTPException) as e:
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            return type(e).__name__


def run_rate(make_client, rate: float, seconds: float, rng: random.Random) -> dict:
    times = schedule(rate, seconds, rng)
    jobs: queue.Queue = queue.Queue()
    done: list[tuple[float, float, str]] = []
    lock = threading.Lock()

    def worker():
        client = make_client()
        while True:
            due = jobs.get()
            if due is None:
                return
            outcome = client.send()
            end = time.perf_counter()
            with lock:
                done.append((due, end, outcome))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(MAX_THREADS, max(1, len(times))))]
    for t in threads:
        t.start()
    start = time.perf_counter() + 0.05
    for offset in times:
        due = start + offset
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        jobs.put(due)
    for _ in threads:
        jobs.put(None)
    for t in threads:
        t.join()
    ok = sorted((end - due) * 1000 for due, end, outcome in done if outcome == "ok")
    kinds: dict[str, int] = {}
    for _, _, outcome in done:
        if outcome != "ok":
            kinds[outcome] = kinds.get(outcome, 0) + 1
    span = max((end for _, end, _ in done), default=start) - start
    return {"offered_rps": rate, "sent": len(times), "ok": len(ok), "errors": sum(kinds.values()), "error_kinds": kinds,
            "duration_s": round(span, 3), "achieved_rps": round(len(ok) / span, 3) if span > 0 else 0.0,
            "latency_ms_p50": percentile(ok, 50), "latency_ms_p90": percentile(ok, 90),
            "latency_ms_p99": percentile(ok, 99), "latency_ms_max": ok[-1] if ok else None}


def write_json(path: str, obj) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


def main(argv=None) -> int:
    p = cmdline.Parser(prog="loadgen.py", description="Open-loop Poisson load on a TorchServe model at rising rates.")
    p.add_argument("--url", required=True)
    p.add_argument("--key-file", help="TorchServe's key_file.json (leave out for a server without token authorization)")
    p.add_argument("--input", required=True, help="the request body (a file)")
    p.add_argument("--content-type", default="application/octet-stream")
    p.add_argument("--rates", required=True, type=_rates, help="requests per second, rising, comma-separated")
    p.add_argument("--step-s", type=float, default=10.0, help="seconds at each rate")
    p.add_argument("--limit-ms", type=float, required=True, help="stop rising once p99 is over this")
    p.add_argument("--timeout-s", type=float, default=30.0, help="a request not answered in this long is an error")
    p.add_argument("--out", required=True)
    p.add_argument("--run-id", required=True)
    args = p.parse_args(argv)
    if not args.step_s > 0 or not args.limit_ms > 0:
        p.error("argument --step-s/--limit-ms: must be above 0")
    try:
        key = ""
        if args.key_file:
            with open(args.key_file) as f:
                key = json.load(f)["inference"]["key"]
        with open(args.input, "rb") as f:
            body = f.read()
    except (OSError, ValueError, KeyError, TypeError) as e:
        p.error(f"argument --key-file/--input: cannot read it ({type(e).__name__}: {e})")

    sagemaker = args.url.startswith(sagemaker_invoke.SCHEME)  # the SageMaker target: InvokeEndpoint calls
    if sagemaker:
        try:
            sagemaker_invoke.target(args.url)
        except ValueError as e:
            p.error(f"argument --url: {e}")

    def make_client():
        if sagemaker:
            return sagemaker_invoke.Client(args.url, body, args.content_type, args.timeout_s)
        return Client(args.url, key, body, args.content_type, args.timeout_s)

    result = {"format": FORMAT, "run_id": args.run_id, "path": urllib.parse.urlsplit(args.url).path,
              "input": os.path.basename(args.input), "limit_ms": args.limit_ms, "percentile": "p99",
              "step_s": args.step_s, "generator": sagemaker_invoke.GENERATOR if sagemaker else
              "on the instance, beside the server (no SSH tunnel in the path)",
              "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "rates": [],
              "stop_reason": "", "highest_rate_meeting_limit": None, "complete": False}
    warm = make_client()
    outcomes = [warm.send()]
    if outcomes[0] == "ok":
        outcomes += [warm.send() for _ in range(WARMUP_REQUESTS - 1)]
    if "ok" not in outcomes:
        say(f"the server did not answer a warm-up request ({', '.join(sorted(set(outcomes)))}): no load sent")
        return 1
    where = "through SageMaker's InvokeEndpoint" if sagemaker else "beside the server"
    say(f"open-loop Poisson load from this host ({where}): {len(args.rates)} rate(s) of {args.step_s:g} s, "
        f"stopping once p99 is over {args.limit_ms:g} ms or a request fails")
    rng = random.Random(SEED)
    for rate in args.rates:
        r = run_rate(make_client, rate, args.step_s, rng)
        if r["sent"] == 0:  # a rate so low that no arrival fell within the step: nothing to judge, go on
            say(f"{rate:g}/s offered: no request was due within {args.step_s:g} s; going on to the next rate")
            continue
        r["meets_limit"] = r["errors"] == 0 and r["latency_ms_p99"] is not None and r["latency_ms_p99"] <= args.limit_ms
        result["rates"].append(r)
        if r["meets_limit"]:
            result["highest_rate_meeting_limit"] = rate
        fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        say(f"{rate:g}/s offered: {r['achieved_rps']:.1f}/s achieved, p50 {fmt(r['latency_ms_p50'])} ms, "
            f"p90 {fmt(r['latency_ms_p90'])} ms, p99 {fmt(r['latency_ms_p99'])} ms, {r['ok']}/{r['sent']} ok"
            + (f", errors {r['error_kinds']}" if r["errors"] else "") + ("" if r["meets_limit"] else " — over the limit"))
        write_json(args.out, result)
        if r["errors"]:
            result["stop_reason"] = f"{r['errors']} request(s) failed at {rate:g}/s"
            break
        if not r["meets_limit"]:
            result["stop_reason"] = f"p99 {fmt(r['latency_ms_p99'])} ms is over the {args.limit_ms:g} ms limit at {rate:g}/s"
            break
    else:
        result["stop_reason"] = f"every rate up to {args.rates[-1]:g}/s met the limit"
    result["complete"] = True
    write_json(args.out, result)
    best = result["highest_rate_meeting_limit"]
    say(f"done: {result['stop_reason']}; highest rate meeting the limit: {'none' if best is None else f'{best:g}/s'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
