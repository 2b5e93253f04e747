"""The sandbox cloud's process: the AWS emulator on a loopback port.

Started detached by ``inflab sandbox start`` (or ``--sandbox``); it outlives the app so
that a session can be resumed. At start it makes a secret that every request must carry
(see :mod:`.gate`) and writes it to ``secret.json``, then ``state.json`` (pid, ports) once it
answers; both files are created readable by this user only. With ``--iam-policy FILE`` it first
turns on the emulator's IAM check (see :mod:`.iam`); the emulated users' keys go into
``secret.json`` with the secret.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import threading
from pathlib import Path

from ..private_files import private_dir, write_private
from . import SECRET_FILE, STATE_FILE


def _write_private(path: Path, data: dict) -> None:
    """Replace ``path`` with ``data`` as JSON, in a file that is 0600 from its creation on (made exclusively)."""
    write_private(path, json.dumps(data).encode())


def _forget(path: Path) -> None:
    """Remove one of this daemon's files (not a successor's)."""
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def _start_sshd(state_dir: Path, port: int) -> int:
    """Run the sandbox instance's SSH server on its own event loop thread; return its port."""
    import asyncio

    from . import sshd

    # Print the host key in the emulated console output, as EC2 does at first boot, so the
    # client can pin it from there instead of trusting it on first use.
    try:
        from moto.ec2.responses import general

        block = "\n".join(
            [
                "-----BEGIN SSH HOST KEY FINGERPRINTS-----",
                *sshd.host_key_fingerprints(state_dir),
                "-----END SSH HOST KEY FINGERPRINTS-----",
                "",
            ]
        )
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


def _keep_state_readable() -> None:
    """The emulator's state dump (``/moto-api/data.json``) reads every object it ever made; the
    status of an S3 object whose bucket was deleted looks the bucket up and raises, failing the
    whole dump. Such an object keeps the status it last had."""
    from moto.s3 import models as s3_models

    status = s3_models.FakeKey.status

    def tolerant(key):
        try:
            return status.fget(key)
        except Exception:
            return key._status

    s3_models.FakeKey.status = property(tolerant, status.fset)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="inflab-sandbox")
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ssh-port", type=int, default=0)
    ap.add_argument("--aws-like", action="store_true", help="start with every AWS behaviour of the faults table on")
    ap.add_argument("--iam-policy", help="check the lab's calls against this IAM policy file")
    args = ap.parse_args(argv)

    # Managed policies (AmazonSSMManagedInstanceCore, ...) must exist in the emulated IAM.
    os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
    from moto.moto_api._internal.models import moto_api_backend
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    from . import batch, ec2, images, sagemaker
    from .faults import AWS_LIKE, FaultLayer
    from .gate import SECRET_HEADER, Gate

    # No docker engine here: the emulator's Batch records the jobs, and the sandbox's own
    # runner (see .batch) runs each one on this machine.
    moto_api_backend.set_config({"batch": {"use_docker": False}})
    _keep_state_readable()
    images.install()
    secret = secrets.token_urlsafe(32)
    layer = FaultLayer(DomainDispatcherApplication(create_backend_app), table=AWS_LIKE if args.aws_like else None)
    ec2.install(layer)
    app = Gate(layer, secret)
    server = make_server("127.0.0.1", args.port, app, threaded=True)
    port = server.server_port

    state_dir = private_dir(Path(args.state_dir))
    access = {"header": SECRET_HEADER, "secret": secret}
    if args.iam_policy:
        from . import iam

        try:
            access["credentials"] = iam.enforce(iam.load_documents(args.iam_policy))
        except iam.PolicyFileError as e:
            print(f"--iam-policy: {e}", file=sys.stderr, flush=True)
            return 2
    runner = batch.install(state_dir, layer)
    hosting = sagemaker.install(state_dir, layer)  # SageMaker endpoints run here too
    pid = os.getpid()
    _write_private(state_dir / SECRET_FILE, {"pid": pid, "endpoint": f"http://127.0.0.1:{port}", **access})
    ssh_port = _start_sshd(state_dir, args.ssh_port)
    _write_private(
        state_dir / STATE_FILE,
        {
            "pid": pid,
            "port": port,
            "ssh_port": ssh_port,
            "iam_policy": args.iam_policy or "",
            "aws_like": args.aws_like,
        },
    )

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"inflab sandbox listening on 127.0.0.1:{port} (pid {pid})", flush=True)
    try:
        server.serve_forever()
    finally:
        runner.shutdown()  # a running Batch job's processes go with the daemon
        hosting.shutdown()  # and every SageMaker endpoint's
        _forget(state_dir / STATE_FILE)
        _forget(state_dir / SECRET_FILE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
