"""The sandbox cloud's process: the AWS emulator on a loopback port.

Started detached by ``inflab sandbox start`` (or ``--sandbox``); it outlives the app so
that a session can be resumed, and writes ``state.json`` (pid, port) once it answers.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path


def _start_sshd(state_dir: Path, port: int) -> int:
    """Run the sandbox instance's SSH server on its own event loop thread; return its port."""
    import asyncio

    from . import sshd

    # Print the host key in the emulated console output, as EC2 does at first boot, so the
    # client can pin it from there instead of trusting it on first use.
    try:
        from moto.ec2.responses import general

        block = "\n".join(["-----BEGIN SSH HOST KEY FINGERPRINTS-----", *sshd.host_key_fingerprints(state_dir),
                           "-----END SSH HOST KEY FINGERPRINTS-----", ""])
        general.SAMPLE_CONSOLE_OUTPUT = general.SAMPLE_CONSOLE_OUTPUT + block
    except (ImportError, AttributeError):
        pass

    ready: dict = {}
    started = threading.Event()

    def serve() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            acceptor = loop.run_until_complete(sshd.start_server(state_dir, port))
            ready["port"] = acceptor.sockets[0].getsockname()[1]
        except Exception as e:  # reported by the main thread
            ready["error"] = e
            started.set()
            return
        started.set()
        loop.run_forever()

    threading.Thread(target=serve, name="sandbox-sshd", daemon=True).start()
    started.wait(30)
    if "error" in ready:
        raise ready["error"]
    return ready["port"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="inflab-sandbox")
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ssh-port", type=int, default=0)
    args = ap.parse_args(argv)

    # Managed policies (AmazonSSMManagedInstanceCore, ...) must exist in the emulated IAM.
    os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
    from moto.moto_api._internal.models import moto_api_backend
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    from .faults import FaultLayer

    # No docker engine here: Batch jobs are recorded, and the lab runs them itself.
    moto_api_backend.set_config({"batch": {"use_docker": False}})
    app = FaultLayer(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", args.port, app, threaded=True)
    port = server.server_port

    state_dir = Path(args.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    ssh_port = _start_sshd(state_dir, args.ssh_port)
    tmp = state_dir / "state.json.tmp"
    tmp.write_text(json.dumps({"pid": os.getpid(), "port": port, "ssh_port": ssh_port}))
    os.replace(tmp, state_dir / "state.json")

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"inflab sandbox listening on 127.0.0.1:{port} (pid {os.getpid()})", flush=True)
    try:
        server.serve_forever()
    finally:
        try:
            state = json.loads((state_dir / "state.json").read_text())
            if state.get("pid") == os.getpid():
                (state_dir / "state.json").unlink()
        except (OSError, ValueError):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
