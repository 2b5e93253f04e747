"""The sandbox's SageMaker hosting: a real-time endpoint runs for real on this machine.

The emulator records models, endpoint configurations and endpoints, marks an endpoint InService
the moment it is made, and answers InvokeEndpoint with a fixed text. The lab needs what SageMaker
does, so :func:`install` (called once by the daemon) hooks the emulator:

- **CreateEndpoint**: the endpoint is ``Creating`` while, per production variant, the model's
  data (``ModelDataUrl``, from the emulated S3) is unpacked into a private directory (0700) and
  the model's image is started ``InitialInstanceCount`` times, as SageMaker runs
  ``docker run IMAGE serve``: the image is the session's ECR image, whose stand-in is the image
  store's job virtualenv of the same hash (no docker here), and ``serve`` is its
  ``payload/sagemaker_serve.py``, on a free loopback port (``SAGEMAKER_BIND_TO_PORT``) with the
  model's ``Environment``. Each instance's output goes to CloudWatch Logs, group
  ``/aws/sagemaker/Endpoints/<endpoint>``, stream ``<variant>/<instance id>``, as SageMaker writes
  it. Once every instance answers ``GET /ping`` the endpoint is ``InService``; an instance that
  exits, or does not answer within the variant's ``ContainerStartupHealthCheckTimeoutInSeconds``
  (default :data:`HEALTH_TIMEOUT_S`), makes it ``Failed`` with SageMaker's ``FailureReason``, and
  its instances are stopped. Model data that is not there, or an image the store does not have,
  fails it likewise.
- **InvokeEndpoint** (sagemaker-runtime) is forwarded to an instance of the variant asked for
  (``TargetVariant``, else by the variants' weights, round robin over the instances), and its
  answer returned; a 4xx/5xx from the container is SageMaker's ``ModelError`` (HTTP 424) with the
  container's status and message. Each call adds SageMaker's metrics to CloudWatch (namespace
  ``AWS/SageMaker``, dimensions EndpointName and VariantName): Invocations, ModelLatency and
  OverheadLatency (microseconds),
  Invocation4XXErrors, Invocation5XXErrors. OverheadLatency runs from the moment the emulator takes the
  request (its parsing and IAM check included) to its answer, less the container's time.
- **DeleteEndpoint**: ``Deleting`` until the instances' processes have ended (SIGTERM, SIGKILL
  after :data:`STOP_GRACE_S`), then gone. When the daemon stops, every endpoint's processes stop
  with it; a daemon that was killed leaves their process groups in ``<state>/sagemaker``, and the
  next start or ``inflab sandbox stop`` stops them (:func:`stop_leftovers`).

Nothing answers without the sandbox's secret: the instances keep TorchServe's token authorization
on (``serve --token-auth``); its keys stay in the instance's 0700 directory, and only this
module, behind the daemon's gate, sends them.

Rules SageMaker always applies that the emulator does not (answered as SageMaker answers):
instance types are checked against SageMaker's own list (the emulator's is years old); a model,
endpoint configuration or endpoint whose name exists already is refused; CreateModel refuses an
execution role that does not exist or does not trust ``sagemaker.amazonaws.com``, and — faults
table entry ``sagemaker.role_propagation_s`` — one made less than that many seconds before (a new
role takes a while to reach SageMaker).
"""

from __future__ import annotations

import http.client
import io
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import tarfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..remote.payload.ports import free_ports

DIR = "sagemaker"  # under the sandbox's state directory
HEALTH_TIMEOUT_S = 600.0  # a variant's ContainerStartupHealthCheckTimeoutInSeconds when it names none
STOP_GRACE_S = 10.0  # SIGTERM, then SIGKILL (SageMaker waits 30 s)
INVOKE_TIMEOUT_S = 60.0  # SageMaker's limit on a container's answer
NAMESPACE = "AWS/SageMaker"
PASSED_ENV = ("PATH", "HOME", "LANG", "JAVA_HOME")
PING_FAILED = (
    "The primary container for production variant {variant} did not pass the ping health check. "
    "Please check CloudWatch logs for this endpoint."
)
NO_MODEL_DATA = (
    "Failed to download model data(bucket: {bucket}, key: {key}). Please ensure that there is an object "
    "located at the URL and that the role passed to CreateModel has permissions to download the model."
)
NO_IMAGE = (
    "Failed to pull the image {image} for production variant {variant}: the sandbox's image store has no "
    "image of that hash (run the build-image step)"
)
ASSUME = (
    "Could not assume role {arn}. Please ensure that the role exists and allows principal "
    "'sagemaker.amazonaws.com' to assume the role."
)
SERVE = ("payload", "sagemaker_serve.py")  # the image's serve, in an image store entry
IMAGES = "images"  # the image store (see .image_store)


class _Failed(Exception):
    """The endpoint cannot come up; the message is its FailureReason."""


@dataclass
class _Instance:
    variant: str
    instance_id: str
    directory: Path
    port: int
    proc: subprocess.Popen
    key: str = ""  # TorchServe's inference key (read from its key file once it is written)
    log: Any = None


@dataclass
class _Endpoint:
    account: str
    region: str
    name: str
    directory: Path
    weights: dict[str, float] = field(default_factory=dict)
    instances: list[_Instance] = field(default_factory=list)
    turn: int = 0
    stopping: bool = False


def free_port() -> int:
    """A loopback port for an endpoint's container, drawn as TorchServe's are (below the ephemeral range:
    the container binds it seconds later; there, each container has a network of its own)."""
    return free_ports(1)[0]


def _key(account: str, region: str, name: str) -> tuple[str, str, str]:
    return account, region, name


def digest_of(image_uri: str) -> str:
    """The hash in the lab's image tags, ``<kind>-<hash>`` (the sandbox's image store is keyed by it)."""
    tag = image_uri.rsplit("/", 1)[-1].rpartition(":")[2]
    return tag.rsplit("-", 1)[-1]


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    from . import _group_running

    return _group_running(pgid)


def stop_group(pgid: int, grace: float = STOP_GRACE_S) -> bool:
    """SIGTERM the process group, SIGKILL it after ``grace`` seconds; True once nothing of it runs."""
    _killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _group_alive(pgid):
        time.sleep(0.05)
    if _group_alive(pgid):
        _killpg(pgid, signal.SIGKILL)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and _group_alive(pgid):
            time.sleep(0.05)
    return not _group_alive(pgid)


def stop_leftovers(state_dir: Path) -> list[str]:
    """Stop the endpoint processes a daemon that was killed left behind (their groups are in
    ``<state>/sagemaker/**/pgid``) and remove their directories; a line for each that would not end."""
    root = Path(state_dir) / DIR
    stuck = []
    for pid_file in sorted(root.glob("*/*/pgid")) if root.is_dir() else []:
        try:
            pgid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            continue
        if not stop_group(pgid):
            stuck.append(f"endpoint instance {pid_file.parent.name} (process group {pgid}) would not end")
    if root.is_dir() and not stuck:
        shutil.rmtree(root, ignore_errors=True)
    return stuck


class Hosting:
    """The endpoints this daemon runs (see the module's docstring)."""

    def __init__(self, state_dir: Path, layer: Any = None):
        self.state_dir = Path(state_dir)
        self.root = self.state_dir / DIR
        self.layer = layer
        self.lock = threading.Lock()
        self.endpoints: dict[tuple[str, str, str], _Endpoint] = {}
        self.metrics: dict[tuple[str, str, str, str], dict[str, list[float]]] = {}
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="sandbox-sagemaker-metrics", daemon=True)

    def start(self) -> None:
        stop_leftovers(self.state_dir)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.root.chmod(0o700)
        self._flusher.start()

    # -- bringing an endpoint up ---------------------------------------------------------------
    def create(self, backend: Any, endpoint: Any) -> None:
        """Called by CreateEndpoint: the endpoint is Creating until its instances answer /ping."""
        endpoint.endpoint_status, endpoint.failure_reason = "Creating", None
        ep = _Endpoint(
            backend.account_id,
            backend.region_name,
            endpoint.endpoint_name,
            self.root / f"{backend.account_id}-{backend.region_name}" / endpoint.endpoint_name,
        )
        with self.lock:
            self.endpoints[_key(ep.account, ep.region, ep.name)] = ep
        threading.Thread(
            target=self._bring_up, args=(backend, endpoint, ep), name=f"sandbox-endpoint-{ep.name}", daemon=True
        ).start()

    def _bring_up(self, backend: Any, endpoint: Any, ep: _Endpoint) -> None:
        try:
            config = backend.endpoint_configs.get(endpoint.endpoint_config_name)
            if config is None:
                raise _Failed(f"The endpoint configuration {endpoint.endpoint_config_name} was deleted")
            shutil.rmtree(ep.directory, ignore_errors=True)
            ep.directory.mkdir(mode=0o700, parents=True)
            deadlines = {}
            for variant in config.production_variants:
                name = variant["VariantName"]
                ep.weights[name] = float(variant.get("InitialVariantWeight", 1.0) or 0.0)
                model = backend._models.get(variant["ModelName"])
                if model is None:
                    raise _Failed(f'Could not find model "{variant["ModelName"]}" for production variant {name}')
                container = model.primary_container or (model.containers or [{}])[0]
                python, serve = self._image(container.get("Image", ""), name)
                model_dir = self._model_data(backend, container.get("ModelDataUrl", ""), ep.directory / name / "model")
                for _ in range(int(variant.get("InitialInstanceCount") or 1)):
                    if ep.stopping:
                        return
                    ep.instances.append(
                        self._start_instance(
                            backend, ep, name, python, serve, model_dir, container.get("Environment") or {}
                        )
                    )
                deadlines[name] = time.monotonic() + float(
                    variant.get("ContainerStartupHealthCheckTimeoutInSeconds") or HEALTH_TIMEOUT_S
                )
            self._wait_healthy(ep, deadlines)
            if not ep.stopping:
                endpoint.endpoint_status = "InService"
                endpoint.last_modified_time = datetime.now(timezone.utc)
        except _Failed as e:
            if not ep.stopping:
                endpoint.endpoint_status, endpoint.failure_reason = "Failed", str(e)
                endpoint.last_modified_time = datetime.now(timezone.utc)
                self._stop_instances(ep)
        except Exception as e:  # a bug of the sandbox's must not leave the endpoint Creating for ever
            if not ep.stopping:
                endpoint.endpoint_status = "Failed"
                endpoint.failure_reason = f"The sandbox could not start the endpoint: {type(e).__name__}: {e}"
                self._stop_instances(ep)

    def _image(self, image: str, variant: str) -> tuple[Path, Path]:
        entry = self.state_dir / IMAGES / digest_of(image)
        python, serve = entry / "venv" / "bin" / "python", entry.joinpath(*SERVE)
        if not (entry / "venv" / ".inflab-image").is_file() or not python.exists() or not serve.is_file():
            raise _Failed(NO_IMAGE.format(image=image, variant=variant))
        return python, serve

    def _model_data(self, backend: Any, url: str, into: Path) -> Path:
        from moto.s3.models import s3_backends

        if not url.startswith("s3://") or "/" not in url[5:]:
            raise _Failed(f"Could not download model data: {url!r} is not an s3:// URL")
        bucket, key = url[5:].split("/", 1)
        try:
            obj = s3_backends[backend.account_id]["aws"].get_object(bucket, key)
        except Exception:
            obj = None
        if obj is None:
            raise _Failed(NO_MODEL_DATA.format(bucket=bucket, key=key))
        into.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            with tarfile.open(fileobj=io.BytesIO(obj.value), mode="r:*") as tar:
                tar.extractall(into, filter="data")  # no absolute paths, links out or devices
        except (tarfile.TarError, OSError, EOFError) as e:
            raise _Failed(f"Could not extract the model data {url}: {type(e).__name__}: {e}") from None
        return into

    def _start_instance(
        self, backend: Any, ep: _Endpoint, variant: str, python: Path, serve: Path, model_dir: Path, environment: dict
    ) -> _Instance:
        from .batch import _Log

        instance_id = "i-" + secrets.token_hex(8) + "0"
        directory = ep.directory / variant / instance_id
        run = directory / "run"
        run.mkdir(mode=0o700, parents=True)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k in PASSED_ENV}
        env.update({str(k): str(v) for k, v in environment.items()})
        env.update(
            {
                "SAGEMAKER_BIND_TO_PORT": str(port),
                "PATH": f"{python.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                "PYTHONUNBUFFERED": "1",
            }
        )
        argv = [
            str(python),
            "-u",
            str(serve),
            "serve",
            "--model-dir",
            str(model_dir),
            "--host",
            "127.0.0.1",
            "--run-dir",
            str(run),
            "--token-auth",
        ]
        try:
            proc = subprocess.Popen(
                argv,
                cwd=run,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as e:
            raise _Failed(f"Could not start the container of production variant {variant}: {e.strerror or e}") from None
        (directory / "pgid").write_text(str(proc.pid))
        logs = _LogsBackend(backend.account_id, backend.region_name)
        inst = _Instance(
            variant,
            instance_id,
            directory,
            port,
            proc,
            log=_Log(logs, f"/aws/sagemaker/Endpoints/{ep.name}", f"{variant}/{instance_id}"),
        )
        threading.Thread(
            target=_copy_output, args=(inst,), name=f"sandbox-endpoint-log-{instance_id}", daemon=True
        ).start()
        return inst

    def _wait_healthy(self, ep: _Endpoint, deadlines: dict[str, float]) -> None:
        waiting = list(ep.instances)
        while waiting and not ep.stopping:
            for inst in list(waiting):
                if inst.proc.poll() is not None:
                    raise _Failed(PING_FAILED.format(variant=inst.variant))
                if time.monotonic() > deadlines[inst.variant]:
                    raise _Failed(PING_FAILED.format(variant=inst.variant))
                if self._ping(inst):
                    waiting.remove(inst)
            if waiting:
                time.sleep(0.5)

    def _ping(self, inst: _Instance) -> bool:
        if not inst.key:
            try:
                inst.key = json.loads((inst.directory / "run" / "key_file.json").read_text())["inference"]["key"]
            except (OSError, ValueError, KeyError, TypeError):
                return False
        try:
            conn = http.client.HTTPConnection("127.0.0.1", inst.port, timeout=2)
            conn.request("GET", "/ping", headers={"Authorization": f"Bearer {inst.key}"})
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except (OSError, http.client.HTTPException):
            return False

    # -- taking it down ------------------------------------------------------------------------
    def delete(self, backend: Any, name: str) -> bool:
        """Called by DeleteEndpoint: Deleting while the instances stop, then gone. False: not ours."""
        with self.lock:
            ep = self.endpoints.get(_key(backend.account_id, backend.region_name, name))
        if ep is None:
            return False
        ep.stopping = True
        endpoint = backend.endpoints.get(name)
        if endpoint is not None:
            endpoint.endpoint_status = "Deleting"

        def take_down() -> None:
            self._stop_instances(ep)
            with self.lock:
                self.endpoints.pop(_key(ep.account, ep.region, ep.name), None)
            if backend.endpoints.get(name) is endpoint:
                backend.endpoints.pop(name, None)

        threading.Thread(target=take_down, name=f"sandbox-endpoint-delete-{name}", daemon=True).start()
        return True

    def _stop_instances(self, ep: _Endpoint) -> None:
        for inst in list(ep.instances):
            stop_group(inst.proc.pid)
            try:
                inst.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        ep.instances.clear()
        shutil.rmtree(ep.directory, ignore_errors=True)

    def shutdown(self) -> None:
        """The daemon is stopping: every endpoint's processes stop with it."""
        self._closed.set()
        with self.lock:
            eps = list(self.endpoints.values())
        for ep in eps:
            ep.stopping = True
            self._stop_instances(ep)
        self._flush()

    # -- serving ---------------------------------------------------------------------------------
    def invoke(
        self, account: str, region: str, name: str, body: bytes, headers: Any, received: float | None = None
    ) -> tuple[int, dict, bytes]:
        """InvokeEndpoint: (status, headers, body) as SageMaker's runtime answers (the emulator takes
        the status from the headers' ``status``). ``received``: when the emulator took the request
        (``time.perf_counter``), where SageMaker's OverheadLatency starts."""
        t0 = received if received is not None else time.perf_counter()
        with self.lock:
            ep = self.endpoints.get(_key(account, region, name))
        from moto.sagemaker.models import sagemaker_backends

        endpoint = sagemaker_backends[account][region].endpoints.get(name)
        if ep is None or endpoint is None:
            return _error(400, "ValidationError", f"Endpoint {name} of account {account} not found.")
        if endpoint.endpoint_status != "InService":
            return _error(
                400,
                "ValidationError",
                f"Endpoint {name} of account {account} is not InService (it is {endpoint.endpoint_status}).",
            )
        variant = headers.get("X-Amzn-SageMaker-Target-Variant") or ""
        if variant and variant not in ep.weights:
            return _error(400, "ValidationError", f"Variant {variant} not found for endpoint {name}.")
        if not variant:
            names = [v for v, w in ep.weights.items() if w > 0] or list(ep.weights)
            variant = random.choices(names, weights=[ep.weights[v] or 1.0 for v in names])[0]
        with self.lock:
            ready = [i for i in ep.instances if i.variant == variant]
            if not ready:
                return _error(400, "ValidationError", f"Endpoint {name} has no running instance of variant {variant}.")
            ep.turn += 1
            inst = ready[ep.turn % len(ready)]
        sent = {
            "Content-Type": headers.get("Content-Type") or "application/octet-stream",
            "Accept": headers.get("Accept") or "*/*",
            "Authorization": f"Bearer {inst.key}",
        }
        if headers.get("X-Amzn-SageMaker-Custom-Attributes"):
            sent["X-Amzn-SageMaker-Custom-Attributes"] = headers["X-Amzn-SageMaker-Custom-Attributes"]
        t1 = time.perf_counter()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", inst.port, timeout=INVOKE_TIMEOUT_S)
            conn.request("POST", "/invocations", body=body, headers=sent)
            resp = conn.getresponse()
            answer, status, ctype = resp.read(), resp.status, resp.getheader("Content-Type") or "application/json"
            conn.close()
        except TimeoutError:
            status, answer, ctype = (
                0,
                (
                    f"Your invocation timed out while waiting for a response from container "
                    f"{variant}. Review the latency metrics for each container in Amazon CloudWatch, "
                    "resolve the issue, and try again."
                ).encode(),
                "text/plain",
            )
        except (OSError, http.client.HTTPException) as e:
            status, answer, ctype = 0, f"the container did not answer ({type(e).__name__})".encode(), "text/plain"
        model_us = (time.perf_counter() - t1) * 1e6
        self._record(ep, variant, model_us, (time.perf_counter() - t0) * 1e6 - model_us, status)
        if status == 200:
            return 200, {"status": "200", "Content-Type": ctype, "x-Amzn-Invoked-Production-Variant": variant}, answer
        return _model_error(ep, inst, status, answer.decode("utf-8", "replace"))

    def _record(self, ep: _Endpoint, variant: str, model_us: float, overhead_us: float, status: int) -> None:
        key = (ep.account, ep.region, ep.name, variant)
        with self.lock:
            m = self.metrics.setdefault(key, {})
            m.setdefault("ModelLatency", []).append(model_us)
            m.setdefault("OverheadLatency", []).append(max(0.0, overhead_us))
            m.setdefault("Invocations", []).append(1.0)
            m.setdefault("Invocation4XXErrors", []).append(1.0 if 400 <= status < 500 else 0.0)
            m.setdefault("Invocation5XXErrors", []).append(1.0 if status >= 500 or status == 0 else 0.0)

    def _flush_loop(self) -> None:
        while not self._closed.wait(1.0):
            self._flush()

    def _flush(self) -> None:
        """The last second's metrics, one statistic set per metric (as SageMaker publishes them)."""
        from moto.cloudwatch.models import cloudwatch_backends

        with self.lock:
            taken, self.metrics = self.metrics, {}
        for (account, region, name, variant), metrics in taken.items():  # stamped now, as the emulator stamps them
            dims = [{"Name": "EndpointName", "Value": name}, {"Name": "VariantName", "Value": variant}]
            data = []
            for metric, values in metrics.items():
                unit = "Microseconds" if metric.endswith("Latency") else "None"
                data.append(
                    {
                        "MetricName": metric,
                        "Dimensions": dims,
                        "Unit": unit,
                        "StatisticValues": {
                            "SampleCount": len(values),
                            "Sum": sum(values),
                            "Minimum": min(values),
                            "Maximum": max(values),
                        },
                    }
                )
            try:
                cloudwatch_backends[account][region].put_metric_data(NAMESPACE, data)
            except Exception:  # metrics are best effort, as they are on AWS
                pass


class _LogsBackend:
    """What the Batch log writer (.batch._Log) expects of its backend: the region's CloudWatch Logs."""

    def __init__(self, account: str, region: str):
        from moto.logs.models import logs_backends

        self.logs_backend = logs_backends[account][region]


def _copy_output(inst: _Instance) -> None:
    """An instance's output, line by line, to its CloudWatch log stream."""
    stream = inst.proc.stdout
    try:
        while True:
            line = stream.readline(64 * 1024)
            if not line:
                break
            inst.log.add(line.rstrip(b"\r\n").decode("utf-8", "replace"))
            inst.log.tick()
    except (OSError, ValueError):
        pass
    finally:
        inst.log.flush()


def _error(status: int, code: str, message: str) -> tuple[int, dict, bytes]:
    return (
        status,
        {"status": str(status), "Content-Type": "application/json", "x-amzn-ErrorType": code},
        json.dumps({"message": message}).encode(),
    )


def _model_error(ep: _Endpoint, inst: _Instance, status: int, text: str) -> tuple[int, dict, bytes]:
    """SageMaker's ModelError (HTTP 424): the container answered with an error (or not at all)."""
    kind = "client" if 400 <= status < 500 else "server"
    group = f"/aws/sagemaker/Endpoints/{ep.name}"
    arn = f"arn:aws:logs:{ep.region}:{ep.account}:log-group:{group}"
    message = (
        f'Received {kind} error ({status}) from {inst.variant} with message "{text[:1000]}". See '
        f"https://{ep.region}.console.aws.amazon.com/cloudwatch/home?region={ep.region}#logEventViewer:group={group} "
        f"in account {ep.account} for more information."
    )
    body = {
        "ErrorCode": f"{kind.upper()}_ERROR_FROM_MODEL",
        "LogStreamArn": arn,
        "Message": message,
        "OriginalMessage": text[:1000],
        "OriginalStatusCode": status,
    }
    return (
        424,
        {"status": "424", "Content-Type": "application/json", "x-amzn-ErrorType": "ModelError"},
        json.dumps(body).encode(),
    )


# -- installing into the emulator --------------------------------------------------------------

_hosting: Hosting | None = None


def _sagemaker_instance_types() -> frozenset[str]:
    """SageMaker's own list of real-time instance types (botocore's model of the API)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    return frozenset(model.shape_for("ProductionVariantInstanceType").enum)


def _check_role(layer: Any, account: str, arn: str) -> None:
    """SageMaker's check of a model's execution role (see the module's docstring)."""
    from moto.iam.models import iam_backends
    from moto.sagemaker.exceptions import ValidationError

    try:
        role = iam_backends[account]["aws"].get_role_by_arn(arn)
    except Exception:
        raise ValidationError(message=ASSUME.format(arn=arn)) from None
    trust = role.assume_role_policy_document
    if "sagemaker.amazonaws.com" not in (trust if isinstance(trust, str) else json.dumps(trust)):
        raise ValidationError(message=ASSUME.format(arn=arn))
    lag = layer.fault_value("sagemaker", "role_propagation_s", 0.0) if layer is not None else 0.0
    made = role.create_date if role.create_date.tzinfo else role.create_date.replace(tzinfo=timezone.utc)
    if lag and (datetime.now(timezone.utc) - made).total_seconds() < lag:
        raise ValidationError(message=ASSUME.format(arn=arn))


def install(state_dir: Path, layer: Any = None) -> Hosting:
    """Hook the emulator's SageMaker so that endpoints run here; idempotent. Returns the hosting."""
    global _hosting
    if _hosting is not None:
        return _hosting
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.models import FakeEndpointConfig, SageMakerModelBackend
    from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

    hosting = Hosting(state_dir, layer)
    types = _sagemaker_instance_types()

    def validate_instance_type(self, instance_type: str) -> None:
        if instance_type not in types:
            raise ValidationError(
                message=f"1 validation error detected: Value '{instance_type}' at "
                "'productionVariants.1.member.instanceType' failed to satisfy constraint: "
                "Member must satisfy enum value set"
            )

    create_model = SageMakerModelBackend.create_model
    create_config = SageMakerModelBackend.create_endpoint_config
    create_endpoint = SageMakerModelBackend.create_endpoint
    delete_endpoint = SageMakerModelBackend.delete_endpoint

    def model(self, model_name, execution_role_arn, primary_container, vpc_config, containers, tags):
        if model_name in self._models:
            arn = f"arn:aws:sagemaker:{self.region_name}:{self.account_id}:model/{model_name}"
            raise ValidationError(message=f'Cannot create already existing model "{arn}".')
        _check_role(layer, self.account_id, execution_role_arn)
        return create_model(self, model_name, execution_role_arn, primary_container, vpc_config, containers, tags)

    def config(self, endpoint_config_name, *args, **kwargs):
        if endpoint_config_name in self.endpoint_configs:
            arn = f"arn:aws:sagemaker:{self.region_name}:{self.account_id}:endpoint-config/{endpoint_config_name}"
            raise ValidationError(message=f'Cannot create already existing endpoint configuration "{arn}".')
        return create_config(self, endpoint_config_name, *args, **kwargs)

    def endpoint(self, endpoint_name, endpoint_config_name, tags):
        if endpoint_name in self.endpoints:
            arn = f"arn:aws:sagemaker:{self.region_name}:{self.account_id}:endpoint/{endpoint_name}"
            raise ValidationError(message=f'Cannot create already existing endpoint "{arn}".')
        made = create_endpoint(self, endpoint_name, endpoint_config_name, tags)
        hosting.create(self, made)
        return made

    def delete(self, endpoint_name):
        if endpoint_name in self.endpoints and hosting.delete(self, endpoint_name):
            return None
        return delete_endpoint(self, endpoint_name)

    setup_class = SageMakerRuntimeResponse.setup_class

    def timed_setup(self, *args, **kwargs):
        self.inflab_received = time.perf_counter()  # the emulator has the request: parsing and the IAM check follow
        return setup_class(self, *args, **kwargs)

    def invoke_endpoint(self):
        name = self._get_param("EndpointName") or self.path.split("/endpoints/", 1)[-1].split("/", 1)[0]
        body = self.raw_body if isinstance(self.raw_body, bytes) else str(self.raw_body or "").encode()
        return hosting.invoke(
            self.current_account, self.region, name, body, self.headers, getattr(self, "inflab_received", None)
        )

    FakeEndpointConfig.validate_instance_type = validate_instance_type
    SageMakerModelBackend.create_model = model
    SageMakerModelBackend.create_endpoint_config = config
    SageMakerModelBackend.create_endpoint = endpoint
    SageMakerModelBackend.delete_endpoint = delete
    SageMakerRuntimeResponse.use_raw_body = True  # a request body is the model's input: bytes, never decoded
    SageMakerRuntimeResponse.invoke_endpoint = invoke_endpoint
    SageMakerRuntimeResponse.setup_class = timed_setup
    hosting.start()
    _hosting = hosting
    return hosting
