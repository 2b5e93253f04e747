#!/usr/bin/env python3
"""Open-loop load on a TorchServe model, from the host it runs on: the highest rate that meets a
latency limit, found by a probe, a rising ladder and a bisection.

    python3 loadgen.py --url http://127.0.0.1:PORT/predictions/MODEL [--key-file serve/run/key_file.json]
        --input FILE --content-type TYPE --rates auto|5,10,20 [--max-rates N] [--probe-s S] --step-s S
        --limit-ms L [--connections C] [--server-cpu serve/run/cpu.json] --out FILE --run-id ID

Each step offers one rate for ``--step-s`` seconds: requests scheduled as a Poisson process
(exponential gaps) and sent at their scheduled times whatever is still outstanding (open
loop), on at most ``--connections`` keep-alive connections in flight (64, like ``wrk -c64``);
a request due while every connection is busy waits, and the wait counts: each latency runs
from the request's *scheduled* time to its answer (no coordinated omission). Per step:
requests sent, answered OK, errors by kind, achieved throughput, p50/p90/p99/max, the
generator's own share of the host's CPU (and its CPU per request), and the share other
processes took (``interference.py``: not the generator, not the server — whose processes'
CPU ``serve.py`` writes to ``--server-cpu``, readable across containers).

With ``--url sagemaker://ENDPOINT?region=REGION&variant=VARIANT`` each request is a SageMaker
``InvokeEndpoint`` call instead (:mod:`sagemaker_invoke`; ``--key-file`` and ``--server-cpu`` are
not used): the same schedule and figures, the requests in flight on a pool of threads.

The rates: ``--rates auto`` first probes what the server sustains — every connection sending
again as soon as it is answered, for ``--probe-s`` seconds — and rises from a quarter of that,
doubling, at most ``--max-rates`` steps; or the given rates, rising. A rate over the limit (p99
over ``--limit-ms``, or a failed request) is measured again before the ladder stops (one noisy
step is not an answer); then the answer is narrowed between the last rate that met the limit
and the first that did not, ``BISECT_STEPS`` halvings. When no rate meets the limit, the result
says the lowest p99 reached and at what rate — the limit that would have been met there.

The client is one thread on ``selectors`` (epoll) with the request's bytes built once and a
minimal HTTP/1.1 response reader (status line, ``Content-Length`` or chunked body): about a
tenth of the CPU per request of ``http.client`` with a thread per connection, so the generator
does not take the CPU it measures. Standard library only.

The inference key is read from TorchServe's key file and sent in the Authorization header;
it is never printed or written. The result (``inflab-load/1``) is written after every step,
``complete`` once the run has ended. Exit 0 when the run completed (even if no rate met the
limit: that is a finding), 1 when the server could not be reached at all, 2 on bad arguments.
"""

from __future__ import annotations

import abc
import argparse
import errno
import json
import math
import os
import queue
import random
import resource
import selectors
import socket
import sys
import time
import urllib.parse
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

try:
    from . import cmdline, interference, sagemaker_invoke
except ImportError:  # run as a script on the host
    import cmdline
    import interference
    import sagemaker_invoke

FORMAT = "inflab-load/1"
SEED = 0
WARMUP_REQUESTS = 20  # unmeasured: the first rate should not pay for cold caches and lazy imports
CONNECTIONS = 64  # requests in flight at most; later ones wait (and the wait counts)
START_SHARE = 0.25  # --rates auto: the first rate, as a share of what the probe sustained
BISECT_STEPS = 3  # halvings between the last rate that met the limit and the first that did not
PROBE_S = 3.0
RECV = 65536


def say(msg: str) -> None:
    print(f"[load] {msg}", flush=True)


def _rates(text: str) -> list[float] | str:
    if text.strip() == "auto":
        return "auto"
    try:
        rates = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be auto or numbers separated by commas, not {text!r}") from None
    if not rates or any(not r > 0 or not math.isfinite(r) for r in rates):
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


def round2(x: float) -> float:
    """Two significant figures: rates people can read."""
    if x <= 0:
        return x
    digits = 1 - int(math.floor(math.log10(x)))
    return round(x, digits) if digits > 0 else float(round(x, digits))


# ------------------------------------------------------------------------------ the HTTP client
class Response:
    """An HTTP/1.1 response read from a byte stream: ``feed`` until it says the response is whole."""

    __slots__ = ("buf", "status", "length", "chunked", "close", "body_start")

    def __init__(self):
        self.buf, self.status, self.length, self.chunked, self.close, self.body_start = b"", 0, -1, False, False, -1

    def feed(self, data: bytes) -> bytes | None:
        """Add ``data``; once the response is complete, what follows it (b"" usually), else None."""
        self.buf += data
        if self.body_start < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return None
            head = self.buf[:end].decode("latin-1").split("\r\n")
            parts = head[0].split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/"):
                raise ValueError(f"not an HTTP response: {head[0][:60]!r}")
            self.status = int(parts[1])
            for line in head[1:]:
                name, _, value = line.partition(":")
                name, value = name.strip().lower(), value.strip().lower()
                if name == "content-length":
                    self.length = int(value)
                elif name == "transfer-encoding" and "chunked" in value:
                    self.chunked = True
                elif name == "connection" and value == "close":
                    self.close = True
            self.body_start = end + 4
        if self.chunked:
            return self._chunked()
        if self.length < 0:  # no length: the body runs to the end of the connection
            self.close = True
            return None
        end = self.body_start + self.length
        return self.buf[end:] if len(self.buf) >= end else None

    def _chunked(self) -> bytes | None:
        at = self.body_start
        while True:
            eol = self.buf.find(b"\r\n", at)
            if eol < 0:
                return None
            size = int(self.buf[at:eol].split(b";", 1)[0], 16)
            if size == 0:
                trailer_end = self.buf.find(b"\r\n\r\n", eol)
                if trailer_end >= 0:
                    return self.buf[trailer_end + 4 :]
                return self.buf[eol + 4 :] if self.buf[eol : eol + 4] == b"\r\n\r\n" else None
            at = eol + 2 + size + 2
            if len(self.buf) < at:
                return None


class Connection:
    """One keep-alive connection, non-blocking, watched for reading from its connect to its close
    (an idle one that becomes readable was closed by the server: it is closed here too); a
    request on a reused connection that the server had closed meanwhile is sent again once, on
    a new one."""

    __slots__ = (
        "client",
        "sock",
        "due",
        "out",
        "response",
        "connecting",
        "writing",
        "started",
        "reused",
        "busy",
        "retried",
    )

    def __init__(self, client):
        self.client, self.sock, self.due, self.out, self.response = client, None, 0.0, b"", None
        self.connecting = self.writing = self.reused = self.busy = self.retried = False
        self.started = 0.0

    def start(self, due: float, started: float, retry: bool = False) -> None:
        """Send one request, scheduled for ``due`` (perf_counter seconds)."""
        self.due, self.started, self.busy, self.retried = due, started, True, retry
        self.response, self.out = Response(), self.client.request
        if self.sock is not None:
            self.reused = True
            return self._send()
        self.reused = False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = self.sock.connect_ex(self.client.address)
        if code not in (0, errno.EINPROGRESS):
            return self.finish(_error_name(code), close=True)
        self.connecting = self.writing = True
        self.client.selector.register(self.sock, selectors.EVENT_WRITE, self)
        return None

    def _send(self) -> None:
        try:
            sent = self.sock.send(self.out)
        except BlockingIOError:
            sent = 0
        except OSError as e:
            return self._failed(type(e).__name__)
        self.out = self.out[sent:]
        want_write = bool(self.out)
        if want_write != self.writing:
            self.writing = want_write
            self.client.selector.modify(self.sock, selectors.EVENT_WRITE if want_write else selectors.EVENT_READ, self)
        return None

    def ready(self, mask: int) -> None:
        if not self.busy:  # idle and readable: the server closed it (or sent what nobody asked for)
            return self.close()
        if self.connecting:
            code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                return self.finish(_error_name(code), close=True)
            self.connecting = False
            return self._send()
        if self.writing:
            return self._send()
        try:
            data = self.sock.recv(RECV)
        except BlockingIOError:
            return None
        except OSError as e:
            return self._failed(type(e).__name__)
        if not data:
            return self._failed("RemoteDisconnected")
        try:
            rest = self.response.feed(data)
        except ValueError:
            return self.finish("BadStatusLine", close=True)
        if rest is not None:
            status = self.response.status
            self.finish("ok" if status == 200 else str(status), close=self.response.close or bool(rest))
        return None

    def _failed(self, outcome: str) -> None:
        if self.reused and not self.retried and not self.response.buf:  # closed by the server while idle
            self.close()
            return self.start(self.due, self.started, retry=True)  # once, on a new connection
        return self.finish(outcome, close=True)

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.client.selector.unregister(self.sock)
            except (KeyError, ValueError):
                pass
            self.sock.close()
            self.sock = None
        self.connecting = self.writing = False

    def finish(self, outcome: str, close: bool = False) -> None:
        if close:
            self.close()
        self.busy = False
        self.client.done(self, outcome)


def _error_name(code: int) -> str:
    """The name Python gives the exception of an errno (ECONNREFUSED: ConnectionRefusedError)."""
    return type(OSError(code, os.strerror(code))).__name__ if code != errno.ECONNREFUSED else "ConnectionRefusedError"


class Loops(abc.ABC):
    """The schedules every client runs, on its ``send(due)`` and ``poll(timeout)``: ``idle`` slots,
    ``in_flight`` requests, and ``records`` of (due, end, outcome)."""

    connections: list
    idle: list
    in_flight: int
    records: list[tuple[float, float, str]]

    @abc.abstractmethod
    def send(self, due: float) -> None:
        """Start a request due at ``due`` on an idle slot."""

    @abc.abstractmethod
    def poll(self, timeout: float) -> None:
        """Take the answers that come within ``timeout`` seconds into ``records``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Let go of every connection (or thread)."""

    def open_loop(self, times: list[float], start: float) -> None:
        """Send a request at each of ``start + times`` (or as soon as a connection is free)."""
        pending: deque[float] = deque()
        i, n = 0, len(times)
        while i < n or pending or self.in_flight:
            now = time.perf_counter()
            while i < n and start + times[i] <= now:
                pending.append(start + times[i])
                i += 1
            while pending and self.idle:
                self.send(pending.popleft())
            if pending or i >= n:
                wait = 0.05  # the next event is an answer
            else:
                wait = start + times[i] - time.perf_counter()
            self.poll(wait)

    def closed_loop(self, seconds: float) -> None:
        """Every connection sends again as soon as it is answered, for ``seconds``."""
        end = time.perf_counter() + seconds
        while True:
            now = time.perf_counter()
            if now < end:
                while self.idle:
                    self.send(now)
            elif not self.in_flight:
                return
            self.poll(min(0.05, max(0.0, end - now)) if now < end else 0.05)

    def warm(self, count: int) -> list[str]:
        outcomes = []
        for _ in range(count):
            self.records = []
            self.send(time.perf_counter())
            while self.in_flight:
                self.poll(0.05)
            outcomes.append(self.records[-1][2])
            if outcomes[0] != "ok":
                break
        self.records = []
        return outcomes


class Client(Loops):
    """Up to ``connections`` requests in flight on one thread; records (due, end, outcome)."""

    def __init__(self, url: str, key: str, body: bytes, content_type: str, timeout: float, connections: int):
        u = urllib.parse.urlsplit(url)
        self.address = (u.hostname or "127.0.0.1", u.port or 80)
        headers = [
            f"POST {u.path or '/'} HTTP/1.1",
            f"Host: {u.netloc}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
            "Connection: keep-alive",
        ]
        if key:
            headers.append(f"Authorization: Bearer {key}")
        self.request = ("\r\n".join(headers) + "\r\n\r\n").encode("latin-1") + body
        self.timeout = timeout
        self.selector = selectors.DefaultSelector()
        self.connections = [Connection(self) for _ in range(connections)]
        self.idle = list(self.connections)
        self.in_flight = 0
        self.records: list[tuple[float, float, str]] = []
        self.next_timeout_check = 0.0

    def done(self, conn: Connection, outcome: str) -> None:
        self.in_flight -= 1
        self.idle.append(conn)
        self.records.append((conn.due, time.perf_counter(), outcome))

    def send(self, due: float) -> None:
        conn = self.idle.pop()
        self.in_flight += 1
        conn.start(due, time.perf_counter())

    def poll(self, timeout: float) -> None:
        for key, mask in self.selector.select(max(0.0, timeout)):
            key.data.ready(mask)
        now = time.perf_counter()
        if self.in_flight and now >= self.next_timeout_check:  # a few times a second, not per answer
            self.next_timeout_check = now + 0.1
            for conn in self.connections:
                if conn.busy and now - conn.started > self.timeout:
                    conn.finish("TimeoutError", close=True)

    def close(self) -> None:
        for conn in self.connections:
            conn.close()
        self.selector.close()


class InvokeClient(Loops):
    """Up to ``connections`` SageMaker ``InvokeEndpoint`` calls in flight, each on a thread of a pool
    (botocore's calls block); answers come back through a queue that ``poll`` drains."""

    def __init__(self, url: str, body: bytes, content_type: str, timeout: float, connections: int):
        self.target = sagemaker_invoke.target(url)
        self.body, self.content_type, self.timeout = body, content_type, timeout
        self.connections = list(range(connections))
        self.idle = list(self.connections)
        self.in_flight = 0
        self.records = []
        self.answers: queue.SimpleQueue = queue.SimpleQueue()
        self.pool = ThreadPoolExecutor(max_workers=connections, thread_name_prefix="invoke")

    def _call(self, slot: int, due: float) -> None:
        try:
            outcome = sagemaker_invoke.invoke(*self.target, self.body, self.content_type, self.timeout)
        except Exception as e:  # a failed call is an outcome of the run, whatever raised
            outcome = type(e).__name__
        self.answers.put((slot, due, time.perf_counter(), outcome))

    def send(self, due: float) -> None:
        slot = self.idle.pop()
        self.in_flight += 1
        self.pool.submit(self._call, slot, due)

    def poll(self, timeout: float) -> None:
        try:
            answer = self.answers.get(timeout=max(0.0, timeout)) if timeout > 0 else self.answers.get_nowait()
        except queue.Empty:
            return
        while True:
            slot, due, end, outcome = answer
            self.in_flight -= 1
            self.idle.append(slot)
            self.records.append((due, end, outcome))
            try:
                answer = self.answers.get_nowait()
            except queue.Empty:
                return

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------------------ measuring a step
class Meter:
    """The generator's CPU and the others' share of the host's, across one step."""

    def __init__(self, server_cpu: str | None):
        self.server_cpu = server_cpu
        self.sampler = interference.Sampler()

    def _ledger(self) -> tuple[int, float] | None:
        if not self.server_cpu:
            return None
        try:
            with open(self.server_cpu) as f:
                data = json.load(f)
            return int(data["ticks"]), float(data["time"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def __enter__(self):
        self.cpu0, self.t0 = _cpu_seconds(), time.perf_counter()
        self.ledger0, self.before = self._ledger(), self.sampler.sample()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.t0
        ledger1 = self._ledger()
        server = 0
        if self.ledger0 and ledger1 and ledger1[1] > self.ledger0[1]:  # the server's ticks, scaled to this step
            server = int((ledger1[0] - self.ledger0[0]) * min(1.0, wall / (ledger1[1] - self.ledger0[1])) + 0.5)
        after = self.sampler.sample(extra=server)
        self.share = interference.share(self.before, after)
        self.cpu = _cpu_seconds() - self.cpu0
        self.wall = wall
        self.server_known = server > 0 or bool(self.ledger0 and ledger1)

    def figures(self, requests: int) -> dict:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        host_cores = os.cpu_count() or cores
        return {
            "generator_cpu_share": round(self.cpu / (self.wall * host_cores), 4) if self.wall > 0 else None,
            "generator_cpu_us_per_request": round(self.cpu / requests * 1e6, 1) if requests else None,
            "interference": round(self.share.interference, 4) if self.server_known else None,
            "steal": round(self.share.steal, 4),
        }


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def summarise(records: list[tuple[float, float, str]], start: float) -> dict:
    ok = sorted((end - due) * 1000 for due, end, outcome in records if outcome == "ok")
    kinds: dict[str, int] = {}
    for _, _, outcome in records:
        if outcome != "ok":
            kinds[outcome] = kinds.get(outcome, 0) + 1
    span = max((end for _, end, _ in records), default=start) - start
    return {
        "sent": len(records),
        "ok": len(ok),
        "errors": sum(kinds.values()),
        "error_kinds": kinds,
        "duration_s": round(span, 3),
        "achieved_rps": round(len(ok) / span, 3) if span > 0 else 0.0,
        "latency_ms_p50": percentile(ok, 50),
        "latency_ms_p90": percentile(ok, 90),
        "latency_ms_p99": percentile(ok, 99),
        "latency_ms_max": ok[-1] if ok else None,
    }


def run_rate(client: Loops, rate: float, seconds: float, rng: random.Random, meter: Meter) -> dict:
    times = schedule(rate, seconds, rng)
    client.records = []
    with meter:
        start = time.perf_counter() + 0.05
        client.open_loop(times, start)
    r = {"offered_rps": rate, **summarise(client.records, start)}
    r.update(meter.figures(r["sent"]))
    return r


def probe(client: Loops, seconds: float, meter: Meter) -> dict:
    client.records = []
    with meter:
        start = time.perf_counter()
        client.closed_loop(seconds)
    r = summarise(client.records, start)
    r.update(meter.figures(r["sent"]), connections=len(client.connections), seconds=seconds)
    return r


# ------------------------------------------------------------------------------ the ladder
def meets(r: dict, limit_ms: float) -> bool:
    return r["errors"] == 0 and r["latency_ms_p99"] is not None and r["latency_ms_p99"] <= limit_ms


def plan_rates(rates, probed: float | None, max_rates: int) -> list[float]:
    if rates != "auto":
        return list(rates)
    start = max(0.1, round2(probed * START_SHARE)) if probed else 1.0
    return [round2(start * 2**i) for i in range(max_rates)]


def write_json(path: str, obj) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def main(argv=None) -> int:
    p = cmdline.Parser(
        prog="loadgen.py",
        description="Open-loop Poisson load on a TorchServe model: the highest rate meeting a latency limit.",
    )
    p.add_argument("--url", required=True)
    p.add_argument("--key-file", help="TorchServe's key_file.json (leave out for a server without token authorization)")
    p.add_argument("--input", required=True, help="the request body (a file)")
    p.add_argument("--content-type", default="application/octet-stream")
    p.add_argument(
        "--rates", required=True, type=_rates, help="auto (probe, then rising) or requests/s, rising, comma-separated"
    )
    p.add_argument("--max-rates", type=int, default=8, help="--rates auto: at most this many rising steps")
    p.add_argument("--probe-s", type=float, default=PROBE_S, help="--rates auto: seconds of the probe")
    p.add_argument("--step-s", type=float, default=10.0, help="seconds at each rate")
    p.add_argument("--limit-ms", type=float, required=True, help="p99 limit: the rates stop rising once it is passed")
    p.add_argument("--connections", type=int, default=CONNECTIONS, help="requests in flight at most")
    p.add_argument("--timeout-s", type=float, default=30.0, help="a request not answered in this long is an error")
    p.add_argument(
        "--server-cpu", help="the server's CPU ledger (serve.py writes it): others' share excludes the server"
    )
    p.add_argument("--out", required=True)
    p.add_argument("--run-id", required=True)
    args = p.parse_args(argv)
    if not args.step_s > 0 or not args.limit_ms > 0 or not args.probe_s > 0:
        p.error("argument --step-s/--limit-ms/--probe-s: must be above 0")
    if not 1 <= args.connections <= 4096 or not 1 <= args.max_rates <= 64:
        p.error("argument --connections/--max-rates: out of range (1..4096, 1..64)")
    try:
        key = ""
        if args.key_file:
            with open(args.key_file) as f:
                key = json.load(f)["inference"]["key"]
        with open(args.input, "rb") as f:
            body = f.read()
    except (OSError, ValueError, KeyError, TypeError) as e:
        p.error(f"argument --key-file/--input: cannot read it ({type(e).__name__}: {e})")

    if args.url.startswith(sagemaker_invoke.SCHEME):  # the SageMaker target: InvokeEndpoint calls
        try:
            sagemaker_invoke.target(args.url)
        except ValueError as e:
            p.error(f"argument --url: {e}")
        client: Loops = InvokeClient(args.url, body, args.content_type, args.timeout_s, args.connections)
        where = "through SageMaker's InvokeEndpoint"
    else:
        client = Client(args.url, key, body, args.content_type, args.timeout_s, args.connections)
        where = "beside the server"
    try:
        return _run(args, client, where)
    finally:
        client.close()


def _run(args, client: Loops, where: str) -> int:
    limit = args.limit_ms
    result = {
        "format": FORMAT,
        "run_id": args.run_id,
        "path": urllib.parse.urlsplit(args.url).path,
        "input": os.path.basename(args.input),
        "limit_ms": limit,
        "percentile": "p99",
        "step_s": args.step_s,
        "connections": args.connections,
        "generator": sagemaker_invoke.GENERATOR
        if isinstance(client, InvokeClient)
        else "on the instance, beside the server (no SSH tunnel in the path)",
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "probe": None,
        "rates": [],
        "stop_reason": "",
        "highest_rate_meeting_limit": None,
        "lowest_p99_ms": None,
        "lowest_p99_at": None,
        "complete": False,
    }
    outcomes = client.warm(WARMUP_REQUESTS)
    if "ok" not in outcomes:
        say(f"the server did not answer a warm-up request ({', '.join(sorted(set(outcomes)))}): no load sent")
        return 1
    meter = Meter(args.server_cpu)
    probed = None
    if args.rates == "auto":
        pr = probe(client, args.probe_s, meter)
        result["probe"] = pr
        probed = pr["achieved_rps"]
        say(
            f"probe: {pr['connections']} connections sending back to back for {args.probe_s:g} s: {probed:.1f} requests/s "
            f"answered (p50 {_fmt(pr['latency_ms_p50'])} ms, p99 {_fmt(pr['latency_ms_p99'])} ms); "
            f"the ladder starts at {START_SHARE:.0%} of it"
        )
    plan = plan_rates(args.rates, probed, args.max_rates)
    say(
        f"open-loop Poisson load from this host ({where}), {args.step_s:g} s per rate from {plan[0]:g}/s, "
        f"at most {args.connections} requests in flight; a rate over p99 {limit:g} ms or with a failed request is "
        f"measured again, then the answer is narrowed ({BISECT_STEPS} halvings)"
    )
    rng = random.Random(SEED)
    ok_rate, fail_rate, dead = None, None, False

    def step(rate: float, phase: str) -> dict | None:
        nonlocal dead
        r = run_rate(client, rate, args.step_s, rng, meter)
        if r["sent"] == 0:  # a rate so low that no arrival fell within the step: nothing to judge
            say(f"{rate:g}/s offered: no request was due within {args.step_s:g} s; going on")
            return None
        r["phase"], r["meets_limit"] = phase, meets(r, limit)
        result["rates"].append(r)
        if (
            r["ok"]
            and r["latency_ms_p99"] is not None
            and (result["lowest_p99_ms"] is None or r["latency_ms_p99"] < result["lowest_p99_ms"])
        ):
            result["lowest_p99_ms"], result["lowest_p99_at"] = r["latency_ms_p99"], rate
        cpu = r.get("generator_cpu_share")
        other = r.get("interference")
        say(
            f"{rate:g}/s offered ({phase}): {r['achieved_rps']:.1f}/s achieved, p50 {_fmt(r['latency_ms_p50'])} ms, "
            f"p90 {_fmt(r['latency_ms_p90'])} ms, p99 {_fmt(r['latency_ms_p99'])} ms, {r['ok']}/{r['sent']} ok"
            + (f", errors {r['error_kinds']}" if r["errors"] else "")
            + ("" if cpu is None else f"; generator {cpu:.1%} of the CPU")
            + ("" if other is None else f", other processes {other:.0%}")
            + ("" if r["meets_limit"] else " — over the limit")
        )
        write_json(args.out, result)
        dead = r["ok"] == 0 and r["errors"] > 0 and all(k != "503" for k in r["error_kinds"])
        return r

    for rate in plan:
        r = step(rate, "rise")
        if r is None:
            continue
        if not r["meets_limit"] and not dead:
            r = step(rate, "repeat")  # one noisy step is not an answer
        if dead:
            break
        if r["meets_limit"]:
            ok_rate = rate
            continue
        fail_rate = rate
        break
    if fail_rate is not None and not dead:
        lo, hi = ok_rate or 0.0, fail_rate
        for _ in range(BISECT_STEPS):
            mid = round2((lo + hi) / 2)
            if not lo < mid < hi:
                break
            r = step(mid, "bisect")
            if r is None or dead:
                break
            if r["meets_limit"]:
                lo = ok_rate = mid if ok_rate is None or mid > ok_rate else ok_rate
            else:
                hi = mid
    result["highest_rate_meeting_limit"] = ok_rate
    last = result["rates"][-1] if result["rates"] else None
    if dead:
        result["stop_reason"] = f"the server stopped answering ({last['error_kinds']}) at {last['offered_rps']:g}/s"
    elif fail_rate is None:
        result["stop_reason"] = f"every rate up to {plan[-1]:g}/s met the limit"
    else:
        first = next(r for r in result["rates"] if r["offered_rps"] == fail_rate)
        why = (
            f"{first['errors']} request(s) failed"
            if first["errors"]
            else f"p99 {_fmt(first['latency_ms_p99'])} ms is over the {limit:g} ms limit"
        )
        result["stop_reason"] = f"{why} at {fail_rate:g}/s (measured twice)"
    if ok_rate is None and result["lowest_p99_ms"] is not None:
        lowest = result["lowest_p99_ms"]
        result["stop_reason"] += (
            f"; no rate met p99 ≤ {limit:g} ms: the lowest p99 was {lowest:.1f} ms, at "
            f"{result['lowest_p99_at']:g}/s — a limit of {math.ceil(lowest):g} ms would have been met there"
        )
    result["complete"] = True
    write_json(args.out, result)
    say(
        f"done: {result['stop_reason']}; highest rate meeting the limit: "
        f"{'none' if ok_rate is None else f'{ok_rate:g}/s'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
