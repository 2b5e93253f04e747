#!/usr/bin/env python3
"""The image's ``serve``: SageMaker's container contract, with TorchServe and the lab's handler.

SageMaker starts a real-time endpoint's container as ``docker run IMAGE serve`` with the model
data unpacked in ``/opt/ml/model`` (``sagemaker_package.py`` made it), and expects it to answer
``GET /ping`` (200 once it can serve) and ``POST /invocations`` on port 8080 (or the port in
``SAGEMAKER_BIND_TO_PORT``) — within 60 seconds a request. As AWS's own PyTorch containers do,
this puts the model data into a TorchServe model (``torch-model-archiver``, the handler from the
model data's ``code/``), and runs TorchServe in the foreground with its inference API on that port;
TorchServe answers ``/ping`` and ``/invocations`` itself (one model loaded: ``/invocations`` goes to
it). The management and metrics APIs stay on loopback. A SIGTERM (SageMaker's stop, 30 s before
SIGKILL) stops TorchServe.

    serve [--model-dir /opt/ml/model] [--host 0.0.0.0] [--run-dir DIR] [--token-auth]

Token authorization is off, as in AWS's containers: the port is reached only through SageMaker's
InvokeEndpoint, which IAM authorizes. ``--token-auth`` keeps TorchServe's own on (its keys in
``<run-dir>/key_file.json``) for hosts where the port is not so guarded (the sandbox).

Settings, from the model's environment (CreateModel's ``Environment``), named as AWS's PyTorch
inference toolkit names them: ``SAGEMAKER_MODEL_SERVER_WORKERS`` (workers; default one per
NeuronCore or GPU, on a CPU one per four cores), ``SAGEMAKER_TS_BATCH_SIZE`` (default the
compiled batch), ``SAGEMAKER_TS_MAX_BATCH_DELAY`` (ms, default 10), ``SAGEMAKER_TS_RESPONSE_TIMEOUT``
(s, default 60). Standard library only; exits 2 on bad arguments or model data, 1 when TorchServe
is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

try:
    from . import archive, cmdline, ports, serve, targets
except ImportError:  # run as a script on the host
    import archive
    import cmdline
    import ports
    import serve
    import targets

SPEC = "inflab-sagemaker.json"
MODEL = "model"  # the model's name in TorchServe (the only one: /invocations goes to it)
DEFAULT_PORT = 8080
TOKEN_EXPIRATION_MIN = 7 * 24 * 60  # the sandbox keeps an endpoint up for days at most


def say(msg: str) -> None:
    print(f"[serve] {msg}", flush=True)


def _int_env(name: str, default: int, low: int = 0) -> int:
    text = os.environ.get(name, "")
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a whole number") from None
    if value < low:
        raise ValueError(f"{name}={value} is below {low}")
    return value


def properties(
    host: str,
    port: int,
    loopback: dict,
    store: str,
    workers: int,
    batch: int,
    delay_ms: int,
    timeout_s: int,
    token_auth: bool,
) -> str:
    models = {
        MODEL: {
            "1.0": {
                "defaultVersion": True,
                "marName": MODEL,
                "minWorkers": workers,
                "maxWorkers": workers,
                "batchSize": batch,
                "maxBatchDelay": delay_ms,
                "responseTimeout": timeout_s,
            }
        }
    }
    lines = {
        "inference_address": f"http://{host}:{port}",
        "management_address": f"http://{serve.LOOPBACK}:{loopback['management']}",
        "metrics_address": f"http://{serve.LOOPBACK}:{loopback['metrics']}",
        "grpc_inference_address": serve.LOOPBACK,
        "grpc_management_address": serve.LOOPBACK,
        "grpc_inference_port": loopback["grpc_inference"],
        "grpc_management_port": loopback["grpc_management"],
        "model_store": store,
        "load_models": MODEL,
        "models": json.dumps(models),
        "default_workers_per_model": workers,
        "disable_system_metrics": "true",
        "install_py_dep_per_model": "false",
        "disable_token_authorization": "false" if token_auth else "true",
        **({"token_expiration_min": TOKEN_EXPIRATION_MIN} if token_auth else {}),
    }
    return "".join(f"{k}={v}\n" for k, v in lines.items())


def read_spec(model_dir: str) -> dict:
    """What the model data says it is (``inflab-sagemaker.json``), its files checked."""
    path = os.path.join(model_dir, SPEC)
    try:
        with open(path) as f:
            spec = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not the lab's model data ({type(e).__name__}: {e})") from None
    needed = [
        spec.get("serialized_file"),
        spec.get("handler"),
        "model.json",
        "index_to_name.json",
        *spec.get("code", []),
    ]
    missing = [n for n in needed if not n or not os.path.isfile(os.path.join(model_dir, n))]
    if missing:
        raise ValueError(f"the model data in {model_dir} lacks {', '.join(str(m) for m in missing)}")
    return spec


def archive_model(model_dir: str, spec: dict, store: str, private_dir: str) -> None:
    """The model data as a TorchServe model in ``store`` (unzipped: a big model is not compressed again),
    staged in ``private_dir`` (the container's own)."""
    extra = [
        os.path.join(model_dir, n) for n in ("model.json", "index_to_name.json", *spec["code"]) if n != spec["handler"]
    ]
    if spec.get("tokenizer") and os.path.isdir(os.path.join(model_dir, spec["tokenizer"])):
        extra.append(os.path.join(model_dir, spec["tokenizer"]))
    cmd = [
        archive.archiver(),
        "--model-name",
        MODEL,
        "--version",
        "1.0",
        "--serialized-file",
        os.path.join(model_dir, spec["serialized_file"]),
        "--handler",
        os.path.join(model_dir, spec["handler"]),
        "--extra-files",
        ",".join(extra),
        "--export-path",
        store,
        "--archive-format",
        "no-archive",
        "--force",
    ]
    done = archive.run_archiver(cmd, private_dir)
    for line in done.stdout.splitlines():
        say(line)
    if done.returncode != 0:
        raise RuntimeError(f"torch-model-archiver failed (exit {done.returncode})")


def main(argv=None) -> int:
    p = cmdline.Parser(prog="serve", description="SageMaker's container contract: TorchServe with the lab's handler.")
    p.add_argument("mode", nargs="?", default="serve", choices=["serve", "train"])
    p.add_argument("--model-dir", default="/opt/ml/model")
    p.add_argument("--host", default="0.0.0.0", help="where the inference API listens (SageMaker: every address)")
    p.add_argument("--run-dir", help="TorchServe's working directory (its logs, and its keys with --token-auth)")
    p.add_argument("--token-auth", action="store_true", help="keep TorchServe's token authorization on")
    args = p.parse_args(argv)
    if args.mode == "train":
        p.error("argument mode: this image serves a compiled model; it does not train")
    try:
        spec = read_spec(args.model_dir)
        port = _int_env("SAGEMAKER_BIND_TO_PORT", DEFAULT_PORT, 1)
        workers = _int_env("SAGEMAKER_MODEL_SERVER_WORKERS", 0) or targets.device_count(spec["target"])
        batch = _int_env("SAGEMAKER_TS_BATCH_SIZE", 0) or int(spec.get("batch_size") or 1)
        delay = _int_env("SAGEMAKER_TS_MAX_BATCH_DELAY", 10)
        timeout = _int_env("SAGEMAKER_TS_RESPONSE_TIMEOUT", 60, 1)
    except (ValueError, KeyError) as e:
        p.error(str(e))
    torchserve = os.path.join(os.path.dirname(sys.executable), "torchserve")
    torchserve = torchserve if os.access(torchserve, os.X_OK) else shutil.which("torchserve")
    if not torchserve:
        say("TorchServe is not installed in this image (pip install torchserve torch-model-archiver; it needs Java 17)")
        return 1
    run = os.path.abspath(args.run_dir) if args.run_dir else tempfile.mkdtemp(prefix="inflab-sm-run-")
    os.makedirs(run, exist_ok=True)
    tmp = serve.fresh_tmp(run)  # TorchServe's pid file and worker sockets: a short private directory
    store = os.path.join(tmp, "store")
    os.makedirs(store)
    names = ("management", "metrics", "grpc_inference", "grpc_management")
    loopback = dict(zip(names, ports.free_ports(len(names))))
    try:
        archive_model(args.model_dir, spec, store, tmp)
    except (OSError, RuntimeError) as e:
        say(f"could not make the TorchServe model: {e}")
        shutil.rmtree(tmp, ignore_errors=True)
        return 1
    with open(os.path.join(run, "config.properties"), "w") as f:
        f.write(properties(args.host, port, loopback, store, workers, batch, delay, timeout, args.token_auth))
    env = dict(
        os.environ,
        TMPDIR=tmp,
        TEMP=tmp,
        LOG_LOCATION=os.path.join(run, "logs"),
        METRICS_LOCATION=os.path.join(run, "logs"),
        **targets.serve_env(spec["target"], workers),
    )
    version, version_text = serve.installed_version()
    say(
        f"TorchServe {version_text or '(version unknown)'}: {spec.get('precision')} model {spec['serialized_file']} for "
        f"{spec['target']}, {workers} worker(s), batchSize {batch}, maxBatchDelay {delay} ms; SageMaker's contract "
        f"(GET /ping, POST /invocations) on {args.host}:{port}, "
        + ("token authorization on" if args.token_auth else "token authorization off (SageMaker authorizes the calls)")
    )
    child = subprocess.Popen(
        [torchserve, "--foreground", "--ts-config", "config.properties", "--model-store", store, "--ncs"],
        env=env,
        cwd=run,
    )

    def stopped(signum, frame):  # SageMaker stops the container: TorchServe goes with it
        try:
            child.send_signal(signal.SIGTERM)
        except OSError:
            pass
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stopped)
    signal.signal(signal.SIGINT, stopped)
    try:
        return child.wait()
    finally:
        try:
            child.wait(timeout=25)
        except subprocess.TimeoutExpired:
            child.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
