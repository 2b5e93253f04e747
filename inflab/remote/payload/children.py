"""The harness's child processes: the model copies (``model_process.py``) or LoadGen's process
(``loadgen_harness.py``), each speaking the same protocol — control words on its stdin, one
JSON object per line on its stdout — and how ``bench.py`` waits for them, reads them and ends
them. A child that crashes, or reports an error, becomes a :class:`BenchError` with its exit
code and the tail of its stderr.

Standard library only: this module runs on the benchmark host.
"""

import collections
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STDERR_TAIL = 30  # lines of a failed child's stderr to show


class BenchError(Exception):
    pass


class ModelProcess:
    """A child of the harness (a model copy, or LoadGen's process); its protocol messages go to a
    queue shared by all of them."""

    def __init__(self, index, config, env, events, script="model_process.py"):
        self.index, self.env, self.threads = index, env, config.get("threads")
        self.stderr_tail = collections.deque(maxlen=STDERR_TAIL)
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / script), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **env},
            text=True,
            bufsize=1,
        )
        self.pid = self.proc.pid
        self._stderr = threading.Thread(target=self._pump_stderr, daemon=True)
        self._stderr.start()
        threading.Thread(target=self._pump_stdout, args=(events,), daemon=True).start()

    def _pump_stdout(self, events):
        for line in self.proc.stdout:
            try:
                events.put((self.index, json.loads(line)))
            except ValueError:  # not ours (cannot happen from model_process, but never lose it)
                self.stderr_tail.append(line.rstrip("\n"))
        events.put((self.index, None))  # end of stream: the process is gone

    def _pump_stderr(self):
        for line in self.proc.stderr:
            self.stderr_tail.append(line.rstrip("\n"))

    def send(self, word):
        try:
            self.proc.stdin.write(word + "\n")
            self.proc.stdin.flush()
        except (OSError, ValueError):  # already gone: its end of stream reports that
            pass

    def failure(self, what):
        """A BenchError about this process, with its exit code and the tail of its stderr."""
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._stderr.join(timeout=2)
        code, tail = self.proc.returncode, "\n".join(f"  | {line}" for line in self.stderr_tail)
        return BenchError(
            f"model process {self.index} (pid {self.pid}) {what}"
            + (f", exit code {code}" if code is not None else "")
            + (f"; its stderr ends:\n{tail}" if tail else "")
        )

    def kill(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def next_event(events, procs):
    """The next protocol message; a crash or an error report becomes a BenchError; a child's
    log line is printed here."""
    while True:
        try:
            index, msg = events.get(timeout=0.5)  # a timeout keeps signals responsive
        except queue.Empty:
            continue
        if msg is None:
            raise procs[index].failure("exited unexpectedly")
        if msg.get("event") == "error":
            raise procs[index].failure(f"failed: {msg.get('message')}")
        if msg.get("event") == "log":
            print(f"[bench] {msg.get('line', '')}", flush=True)
            continue
        return index, msg


def wait_for(events, procs, event):
    """Every process's next ``event`` message, by process index (windows left over are dropped)."""
    got = {}
    while len(got) < len(procs):
        index, msg = next_event(events, procs)
        if msg.get("event") == event:
            got[index] = msg
    return got


def stop_all(procs, timeout=15.0):
    """Tell every process to quit and wait for each to finish (killed if it does not)."""
    for p in procs:
        p.send("quit")
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"[bench] warning: model process {p.index} did not stop; killing it", flush=True)
            p.kill()


def end_all(procs):
    """No signal may cut this short: block them until every child process is gone."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
    try:
        for p in procs:
            p.kill()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
