"""The SageMaker exercise in the sandbox: endpoints that run for real, and the exercise end to end.

First the sandbox's hosting on its own, through boto3 as SageMaker's clients call it: a tiny BERT's
model data in the emulated S3 and an image-store entry standing in for the session's image (the
test's own Python, which has torch and TorchServe, as its "virtualenv") — Creating → InService once
the container answers /ping, a prediction through InvokeEndpoint, the handler's refusal as
SageMaker's ModelError, Failed with SageMaker's reason, nothing answering without the sandbox's
secret, no process outliving its endpoint. Then `inflab run --until sagemaker-load-test` on a
session of its own: the report's rows, the resources by tag, runs killed at the endpoint and in the
load test, cleanup to zero.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from conftest import run_cli

from inflab.remote.payload import sagemaker_package

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = ROOT / "inflab" / "remote" / "payload"
PAIR = b'{"sentence1": "The cat sat on the mat", "sentence2": "A cat was sitting on the mat"}'
HASH = "5a9e0000feed0001"  # the stand-in image's hash: its tag is cpu-<hash>
TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


def endpoint_processes(endpoint: str) -> list[int]:
    """Pids of this machine's processes serving ``endpoint`` (its directory is in their command line)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if f"/sagemaker/123456789012-us-west-2/{endpoint}/".encode() in argv:
                found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    """A tiny BERT compiled for the CPU by the payload's compile step (no hub: random weights)."""
    out = tmp_path_factory.mktemp("compiled")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(PYTHONUNBUFFERED="1", HF_HOME=str(out / "hf-home"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "inflab.remote.payload.compile",
            "--family",
            "bert",
            "--target",
            "cpu",
            "--size",
            "tiny",
            "--offline",
            "--batch-size",
            "2",
            "--max-length",
            "32",
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout
    (name,) = json.loads((out / "index.json").read_text())
    return out / json.loads((out / name).read_text())["file"]


@pytest.fixture(scope="module")
def hosted(sandbox, inflab_home, compiled, tmp_path_factory):
    """Model data in the emulated S3 (one good, one whose handler is missing), the stand-in image, the
    execution role: what a model needs. Returns a namespace of their names."""
    bindir = Path(sys.executable).parent
    if not (bindir / "torchserve").exists() or not (bindir / "torch-model-archiver").exists():
        pytest.skip("TorchServe is not installed beside this Python")
    entry = inflab_home / "sandbox" / "images" / HASH
    (entry / "venv" / "bin").mkdir(parents=True, exist_ok=True)
    for exe in ("python", "torchserve", "torch-model-archiver"):
        if not (entry / "venv" / "bin" / exe).exists():
            (entry / "venv" / "bin" / exe).symlink_to(bindir / exe if exe != "python" else sys.executable)
    if not (entry / "payload").exists():
        (entry / "payload").symlink_to(PAYLOAD)
    (entry / "venv" / ".inflab-image").write_text(HASH + "\n")
    out = tmp_path_factory.mktemp("model-data")
    good = sagemaker_package.build(str(compiled), str(out / "good"))
    return {
        "bucket": f"inflab-hosting-{uuid.uuid4().hex[:8]}",
        "good": out / "good" / good["file"],
        "image": f"123456789012.dkr.ecr.us-west-2.amazonaws.com/inflab-hosting:cpu-{HASH}",
    }


def container_log(logs, endpoint: str) -> str:
    """What the endpoint's containers printed (its CloudWatch log group), to explain a failure."""
    group = f"/aws/sagemaker/Endpoints/{endpoint}"
    lines = []
    try:
        streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
    except logs.exceptions.ResourceNotFoundException:
        return "(no container started: the endpoint has no log group)"
    for stream in streams:
        events = logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"])["events"]
        lines += [f"{stream['logStreamName']}: {e['message']}" for e in events]
    return "\n".join(lines)


@pytest.fixture
def endpoint(hosted, aws, name):
    """Makes ``name``'s role, model and endpoint from model data ``data`` (bytes) and waits for an end state;
    returns (describe, names). Whatever it made is deleted afterwards."""
    made = {}

    def make(data: bytes | None, *, count: int = 1, timeout: float = 660) -> dict:
        s3, iam, sm = aws("s3"), aws("iam"), aws("sagemaker")
        if hosted["bucket"] not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
            s3.create_bucket(Bucket=hosted["bucket"], CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
        key = f"{name}/model.tar.gz"
        if data is not None:
            s3.put_object(Bucket=hosted["bucket"], Key=key, Body=data)
        arn = iam.create_role(
            RoleName=f"inflab-{name}-sm", Path="/inflab/", AssumeRolePolicyDocument=json.dumps(TRUST)
        )["Role"]["Arn"]
        made["role"] = f"inflab-{name}-sm"
        for _ in range(30):  # the sandbox answers as while IAM propagates a new role (a few seconds)
            try:
                sm.create_model(
                    ModelName=f"inflab-{name}-fp32",
                    ExecutionRoleArn=arn,
                    PrimaryContainer={"Image": hosted["image"], "ModelDataUrl": f"s3://{hosted['bucket']}/{key}"},
                )
                break
            except ClientError as e:
                assert "Could not assume role" in str(e), e
                time.sleep(1)
        made["model"] = f"inflab-{name}-fp32"
        sm.create_endpoint_config(
            EndpointConfigName=f"inflab-{name}-1",
            ProductionVariants=[
                {
                    "VariantName": "fp32",
                    "ModelName": f"inflab-{name}-fp32",
                    "InitialInstanceCount": count,
                    "InstanceType": "ml.c6i.xlarge",
                    "ContainerStartupHealthCheckTimeoutInSeconds": 600,
                }
            ],
        )  # two TorchServes on a busy 2-core box
        made["config"] = f"inflab-{name}-1"
        sm.create_endpoint(EndpointName=f"inflab-{name}", EndpointConfigName=f"inflab-{name}-1")
        made["endpoint"] = f"inflab-{name}"
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            d = sm.describe_endpoint(EndpointName=f"inflab-{name}")
            seen.append(d["EndpointStatus"])
            if d["EndpointStatus"] not in ("Creating",):
                return {**d, "seen": seen, "log": container_log(aws("logs"), f"inflab-{name}")}
            time.sleep(1)
        raise AssertionError(f"still Creating after {timeout} s")

    yield make
    sm = aws("sagemaker")
    if "endpoint" in made:
        try:
            sm.delete_endpoint(EndpointName=made["endpoint"])
        except ClientError:
            pass
    for delete, arg in (
        (sm.delete_endpoint_config, {"EndpointConfigName": made.get("config")}),
        (sm.delete_model, {"ModelName": made.get("model")}),
        (aws("iam").delete_role, {"RoleName": made.get("role")}),
    ):
        if next(iter(arg.values())):
            try:
                delete(**arg)
            except ClientError:
                pass


def test_an_endpoint_runs_for_real_answers_through_invokeendpoint_and_only_there(endpoint, hosted, aws, sandbox, name):
    d = endpoint(hosted["good"].read_bytes())
    assert d["EndpointStatus"] == "InService", f"{d.get('FailureReason')}\n{d['log'][-4000:]}"
    assert d["seen"][0] == "Creating", "Creating first, as SageMaker shows an endpoint it is starting"
    runtime = aws("sagemaker-runtime")
    answer = runtime.invoke_endpoint(EndpointName=f"inflab-{name}", Body=PAIR, ContentType="application/json")
    doc = json.loads(answer["Body"].read())
    assert doc["label"] in ("paraphrase", "not paraphrase") and answer["InvokedProductionVariant"] == "fp32"
    # the handler's refusal is SageMaker's ModelError, with the container's status and reason
    with pytest.raises(ClientError) as e:
        runtime.invoke_endpoint(EndpointName=f"inflab-{name}", Body=b'{"x": 1}', ContentType="application/json")
    err = e.value.response
    assert err["Error"]["Code"] == "ModelError" and err["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert err["OriginalStatusCode"] == 400 and "sentence1 and sentence2" in err["OriginalMessage"]
    with pytest.raises(ClientError, match=f"Endpoint inflab-{name}x of account 123456789012 not found"):
        runtime.invoke_endpoint(EndpointName=f"inflab-{name}x", Body=PAIR, ContentType="application/json")
    # nothing answers without the sandbox's secret: not the sandbox's route, not the container's port
    req = urllib.request.Request(
        f"{sandbox.endpoint}/endpoints/inflab-{name}/invocations",
        data=PAIR,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=10)
    assert refused.value.code == 403
    (pid,) = [
        p
        for p in endpoint_processes(f"inflab-{name}")
        if b"sagemaker_serve.py" in Path(f"/proc/{p}/cmdline").read_bytes()
    ]
    env = dict(v.split(b"=", 1) for v in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in v)
    port = int(env[b"SAGEMAKER_BIND_TO_PORT"])
    for method, path, body in (("GET", "/ping", None), ("POST", "/invocations", PAIR)):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        got = conn.getresponse()
        assert got.status in (400, 401, 403) and b"label" not in got.read(), (method, path, got.status)
        conn.close()
    # SageMaker's own view: the container's log, and the latency metrics of those calls
    events = aws("logs").filter_log_events(logGroupName=f"/aws/sagemaker/Endpoints/inflab-{name}")["events"]
    assert events and all(ev["logStreamName"].startswith("fp32/i-") for ev in events)
    import datetime

    now = datetime.datetime.now(datetime.timezone.utc)
    points = []
    for _ in range(20):
        points = aws("cloudwatch").get_metric_statistics(
            Namespace="AWS/SageMaker",
            MetricName="ModelLatency",
            StartTime=now - datetime.timedelta(minutes=5),
            EndTime=now + datetime.timedelta(minutes=1),
            Period=60,
            Statistics=["SampleCount", "Average"],
            Dimensions=[{"Name": "EndpointName", "Value": f"inflab-{name}"}, {"Name": "VariantName", "Value": "fp32"}],
        )["Datapoints"]
        if sum(p["SampleCount"] for p in points) >= 2:
            break
        time.sleep(0.5)
    assert sum(p["SampleCount"] for p in points) >= 2 and all(p["Average"] > 0 for p in points)


def test_deleting_an_endpoint_ends_its_processes(endpoint, hosted, aws, name):
    d = endpoint(hosted["good"].read_bytes(), count=2)
    assert d["EndpointStatus"] == "InService", f"{d.get('FailureReason')}\n{d['log'][-4000:]}"
    assert (
        len(
            [
                p
                for p in endpoint_processes(f"inflab-{name}")
                if b"sagemaker_serve.py" in Path(f"/proc/{p}/cmdline").read_bytes()
            ]
        )
        == 2
    ), "one container per instance"
    sm = aws("sagemaker")
    sm.delete_endpoint(EndpointName=f"inflab-{name}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            sm.describe_endpoint(EndpointName=f"inflab-{name}")
        except ClientError:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the endpoint is still there a minute after DeleteEndpoint")
    assert endpoint_processes(f"inflab-{name}") == [], "gone with the endpoint: no process outlives it"


def test_an_endpoint_without_its_model_data_fails_with_sagemakers_reason(endpoint, name):
    d = endpoint(None)
    assert d["EndpointStatus"] == "Failed"
    assert d["FailureReason"].startswith("Failed to download model data(bucket: inflab-hosting-")
    assert endpoint_processes(f"inflab-{name}") == []


def test_a_container_that_stops_fails_the_health_check(endpoint, hosted, name, tmp_path):
    import io
    import tarfile

    broken = io.BytesIO()
    with tarfile.open(fileobj=broken, mode="w:gz") as tar:  # the lab's model data without its handler
        with tarfile.open(hosted["good"]) as good:
            for m in good.getmembers():
                if m.name != "code/inflab_handler.py":
                    tar.addfile(m, good.extractfile(m))
    d = endpoint(broken.getvalue())
    assert d["EndpointStatus"] == "Failed"
    assert d["FailureReason"] == (
        "The primary container for production variant fp32 did not pass the ping health check. "
        "Please check CloudWatch logs for this endpoint."
    )
    assert endpoint_processes(f"inflab-{name}") == []


def test_sagemaker_refuses_what_it_refuses_on_aws(aws, hosted, name):
    sm, iam = aws("sagemaker"), aws("iam")
    ec2_trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
    arn = iam.create_role(RoleName=f"inflab-{name}-ec2", AssumeRolePolicyDocument=json.dumps(ec2_trust))["Role"]["Arn"]
    try:
        time.sleep(4)  # older than the sandbox's IAM propagation: only the trust is wrong
        with pytest.raises(ClientError, match="Could not assume role .* allows principal 'sagemaker.amazonaws.com'"):
            sm.create_model(
                ModelName=f"inflab-{name}-x",
                ExecutionRoleArn=arn,
                PrimaryContainer={"Image": hosted["image"], "ModelDataUrl": "s3://b/k"},
            )
    finally:
        iam.delete_role(RoleName=f"inflab-{name}-ec2")
    with pytest.raises(ClientError, match="instanceType"):
        sm.create_endpoint_config(
            EndpointConfigName=f"inflab-{name}-c",
            ProductionVariants=[
                {"VariantName": "v", "ModelName": "m", "InitialInstanceCount": 1, "InstanceType": "ml.c6i.huge"}
            ],
        )


# ------------------------------------------------------------------------------ the exercise end to end
# The direct benchmark in one short trial: these tests look at the endpoint, not at those figures.
CONFIG = """
[bench]
batch_size = 4
min_duration_s = 1
min_queries = 50
max_duration_s = 2
repeats = 1
[serve]
rates = [5]
step_s = 1
latency_limit_ms = 5000
[sagemaker]
rates = [2, 4]
step_s = 2
latency_limit_ms = 5000
"""


@pytest.fixture(scope="module")
def lab(sandbox, inflab_home, tmp_path_factory):
    name = "s" + uuid.uuid4().hex[:8]
    cfg = tmp_path_factory.mktemp("cfg") / "sm.toml"
    cfg.write_text(CONFIG)
    r = run_cli(
        "run",
        "--sandbox",
        "--name",
        name,
        "--config",
        str(cfg),
        "--until",
        "sagemaker-load-test",
        home=inflab_home,
        timeout=1500,
    )
    return name, cfg, r


def report(name, home) -> dict:
    r = run_cli("report", name, "--format", "json", home=home)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def resources(name, home) -> list[dict]:
    r = run_cli("resources", name, "--json", home=home)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_run_until_the_sagemaker_load_test_exits_0_with_the_endpoint_coming_up_on_screen(lab):
    name, _, r = lab
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert f"Endpoint inflab-{name} is InService after" in r.stdout
    assert "│ fp32/i-" in r.stdout, "the container's CloudWatch log streamed while the endpoint started"
    assert "fp32: not paraphrase" in r.stdout or "fp32: paraphrase" in r.stdout, "the check's answer shown"


def test_the_report_has_sagemaker_rows_priced_per_ml_instance_and_every_row_its_deployment(lab, inflab_home):
    name, _, _ = lab
    data = report(name, inflab_home)
    rows = data["rows"]
    assert {r["deployment"] for r in rows} == {"instance", "torchserve", "sagemaker"}
    sm = [r for r in rows if r["deployment"] == "sagemaker"]
    assert {r["precision"] for r in sm} == {"fp32", "int8"} and {r["offered_rps"] for r in sm} <= {2, 4}
    for r in sm:
        assert r["instance_type"] == "ml.c6i.xlarge" and r["instance_count"] == 1
        assert r["price_per_hour"] > 0 and r["cost_per_million"] > 0 and "SageMaker" in r["price_source"]
        assert r["latency_ms_p50"] <= r["latency_ms_p90"] <= r["latency_ms_p99"]
        assert r["errors"] == 0 and r["model_latency_ms"] > 0
    assert {d["deployment"] for d in data["deployments"]} == {"instance", "torchserve", "sagemaker"}


def test_while_the_endpoint_is_up_the_resources_list_it_its_config_models_and_role(lab, inflab_home):
    name, _, _ = lab
    found = {(r["type"], r["name"]) for r in resources(name, inflab_home)}
    assert {
        ("sagemaker:endpoint", f"inflab-{name}"),
        ("sagemaker:endpoint-config", f"inflab-{name}-1"),
        ("sagemaker:model", f"inflab-{name}-fp32"),
        ("sagemaker:model", f"inflab-{name}-int8"),
        ("iam:role", f"inflab-{name}-sagemaker"),
    } <= found


def _sagemaker_runs(store, name) -> list[str]:
    return [r["data"]["run_id"] for r in store.results(name, "sagemaker")]


def test_killed_in_the_load_test_the_rerun_measures_the_rest_and_stores_each_run_once(lab, store, inflab_home):
    name, cfg, _ = lab
    before = _sagemaker_runs(store, name)
    r = run_cli(
        "run",
        "--name",
        name,
        "--config",
        str(cfg),
        "--from",
        "sagemaker-load-test",
        "--until",
        "sagemaker-load-test",
        home=inflab_home,
        timeout=600,
        env={"INFLAB_FAULT_POINT": "sagemaker-load-test:results-stored"},
    )
    assert r.returncode == 137, r.stdout[-2000:]
    first = _sagemaker_runs(store, name)
    assert len(first) == len(before) + 1, "killed after the first variant's run was stored"
    r = run_cli(
        "run", "--name", name, "--config", str(cfg), "--until", "sagemaker-load-test", home=inflab_home, timeout=600
    )
    assert r.returncode == 0, r.stdout[-2000:]
    assert "measured and stored already" in r.stdout
    runs = _sagemaker_runs(store, name)
    assert runs[: len(first)] == first and len(runs) == len(before) + 2 and len(set(runs)) == len(runs)


def test_killed_while_the_endpoint_is_made_the_rerun_waits_for_that_one(lab, store, inflab_home, aws):
    name, cfg, _ = lab
    r = run_cli(
        "run",
        "--name",
        name,
        "--from",
        "sagemaker-delete",
        "--until",
        "sagemaker-delete",
        home=inflab_home,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-2000:]
    assert endpoint_processes(f"inflab-{name}") == []
    r = run_cli(
        "run",
        "--name",
        name,
        "--config",
        str(cfg),
        "--from",
        "sagemaker-package",
        "--until",
        "sagemaker-load-test",
        home=inflab_home,
        timeout=600,
        env={"INFLAB_FAULT_POINT": "sagemaker-endpoint:created"},
    )
    assert r.returncode == 137, r.stdout[-2000:]
    made = aws("sagemaker").describe_endpoint(EndpointName=f"inflab-{name}")["CreationTime"]
    r = run_cli(
        "run", "--name", name, "--config", str(cfg), "--until", "sagemaker-load-test", home=inflab_home, timeout=900
    )
    assert r.returncode == 0, r.stdout[-3000:]
    assert aws("sagemaker").describe_endpoint(EndpointName=f"inflab-{name}")["CreationTime"] == made, (
        "the same endpoint"
    )
    kinds = [x["type"] for x in resources(name, inflab_home)]
    assert kinds.count("sagemaker:endpoint") == 1 and kinds.count("sagemaker:endpoint-config") == 1
    assert (
        len(
            [
                p
                for p in endpoint_processes(f"inflab-{name}")
                if b"sagemaker_serve.py" in Path(f"/proc/{p}/cmdline").read_bytes()
            ]
        )
        == 2
    ), "one per variant, once"
    assert "▶ sagemaker-check" in r.stdout, "the new endpoint is checked and measured, not taken for the old one"


def test_cleanup_leaves_nothing_and_no_endpoint_process(lab, inflab_home):
    name, _, _ = lab
    r = run_cli("cleanup", name, "--yes", "--delete-data", home=inflab_home, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    assert resources(name, inflab_home) == []
    assert endpoint_processes(f"inflab-{name}") == []
