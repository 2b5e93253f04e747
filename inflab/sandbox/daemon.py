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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="inflab-sandbox")
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--port", type=int, default=0)
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
    tmp = state_dir / "state.json.tmp"
    tmp.write_text(json.dumps({"pid": os.getpid(), "port": port}))
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
