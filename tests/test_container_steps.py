"""The container and model steps on AWS, tested up to the seam: the exact commands they send
to the instance, and that the registry password travels on stdin only.

There is no docker engine and no Inferentia here, so the job runner is replaced by one that
records what would run on the host; everything before it (ECR calls on the sandbox's
emulated ECR, the command lines, the session record) is the real code.
"""

from __future__ import annotations

import base64
import shlex
import subprocess
from types import SimpleNamespace

import pytest
from conftest import sandbox_aws

from inflab import config
from inflab.lab_steps import container, image, model, payload_jobs
from inflab.lab_steps.base import StepContext, StepError
from inflab.lab_steps.records import BuiltImage, CompiledModel, HostRecord, PushedImage, Repository
from inflab.runtime.select import for_session

ACCOUNT_URI = "123456789012.dkr.ecr.us-west-2.amazonaws.com"


class FakeConn:
    """Stands in for the SSH connection in a step's ``before`` hook: records every command."""

    def __init__(self):
        self.calls: list[tuple[str, str | None]] = []
        self.files: dict[str, bytes] = {}  # written over SFTP

    async def run(self, command, input=None, check=False, **kw):
        self.calls.append((command, input))
        return SimpleNamespace(exit_status=0, stdout="Login Succeeded\n", stderr="")

    def start_sftp_client(self):
        conn = self

        class File:
            def __init__(self, path):
                self.path = path

            async def __aenter__(self):
                return self

            async def __aexit__(self, *exc):
                return False

            async def write(self, data):
                conn.files[self.path] = data

        class Sftp:
            async def __aenter__(self):
                return self

            async def __aexit__(self, *exc):
                return False

            def open(self, path, mode, attrs=None):
                return File(path)

        return Sftp()


@pytest.fixture
def ctx_for(store, name):
    def make(user_config: dict, *, sandbox: bool = False, aws=None) -> StepContext:
        cfg = config.from_dict(user_config, sandbox=sandbox)
        store.create_session(name, cfg.data, sandbox=sandbox, track=cfg.track)
        ctx = StepContext(
            name=name,
            config=cfg,
            runtime=for_session(sandbox, store.home),
            store=store,
            aws_factory=(lambda: aws) if aws else None,
            step_id="test",
            log=lambda m: None,
        )
        ctx.save(Repository(name=f"inflab-{name}", uri=f"{ACCOUNT_URI}/inflab-{name}", arn="arn"))
        ctx.save(
            HostRecord(instance_id="i-0123456789abcdef0", public_ip="203.0.113.7", user="ubuntu", zone="us-west-2a")
        )
        return ctx

    return make


@pytest.fixture
def jobs_sent(monkeypatch):
    """Replace the detached-job runner: record (kind, command, env) and run ``before`` on a FakeConn."""
    import asyncio

    sent: list[dict] = []

    def fake_run_job(ctx, kind, command, *, env=None, before=None):
        conn = FakeConn()
        if before is not None:
            asyncio.run(before(conn))
        sent.append({"kind": kind, "command": command, "env": env, "conn": conn})
        return 0, ["done"]

    def fake_host_check(ctx):  # the host's docker check (a command over SSH on AWS): recorded, in order
        sent.append({"kind": "host-check", "command": ctx.runtime.host_check(), "env": None, "conn": None})

    monkeypatch.setattr(container, "run_job", fake_run_job)
    monkeypatch.setattr(model, "run_job", fake_run_job)
    monkeypatch.setattr(container, "ensure_host_ready", fake_host_check)
    return sent


def test_build_on_the_instance_tags_the_ecr_uri_and_labels_the_definition(ctx_for, name):
    ctx = ctx_for({})
    cmds = image.build_commands(ctx)
    digest = image.image_hash(ctx)
    assert cmds == [
        "set -e",
        'cd "$HOME/.inflab/image"',
        f"docker build --progress=plain --label inflab.image={digest} -t {ACCOUNT_URI}/inflab-{name}:inf1-{digest} .",
    ]
    # the tag names the hash, which covers the payload: changed code is a new tag, never an old image
    assert image.image_tag(ctx) == f"inf1-{digest}"


def test_prebuilt_pulls_the_neuron_2_20_image_and_adds_the_payload(ctx_for, name):
    ctx = ctx_for({"container": {"source": "prebuilt"}})
    base = image.base_image("inf1")
    assert "pytorch-inference-neuron" in base and "sdk2.20" in base
    cmds = image.build_commands(ctx)
    assert cmds[2] == f"docker pull {base}"
    assert cmds[3].startswith(f"docker build --progress=plain -f Dockerfile.prebuilt --build-arg BASE_IMAGE={base} ")
    assert cmds[3].endswith(f"-t {ACCOUNT_URI}/inflab-{name}:inf1-{image.image_hash(ctx)} .")
    # the prebuilt definition only adds the payload to the base image
    prebuilt = image.container_files("inf1")["Dockerfile.prebuilt"].decode()
    assert "FROM ${BASE_IMAGE}" in prebuilt and "/opt/inflab/payload" in prebuilt


def test_changing_the_definition_means_a_new_image(ctx_for, store, name, monkeypatch):
    ctx = ctx_for({})
    before = image.image_hash(ctx)
    real_files, real_payload = image.container_files, image.payload_files
    for changed in ("Dockerfile", "Dockerfile.prebuilt", "requirements.txt"):
        monkeypatch.setattr(
            image, "container_files", lambda k, f=changed: {**real_files(k), f: real_files(k)[f] + b"\n# edited\n"}
        )
        assert image.image_hash(ctx) != before, f"editing {changed} must give a new image"
    monkeypatch.setattr(image, "container_files", real_files)
    # the payload is baked into the image: a job must never run stale code
    monkeypatch.setattr(
        image, "payload_files", lambda: {**real_payload(), "bench.py": real_payload()["bench.py"] + b"\n# edited\n"}
    )
    assert image.image_hash(ctx) != before, "editing the payload must give a new image"
    monkeypatch.setattr(image, "payload_files", real_payload)
    assert image.image_hash(ctx) == before, "the same definition gives the same image"
    prebuilt = StepContext(
        name=name,
        config=config.from_dict({"container": {"source": "prebuilt"}}),
        runtime=for_session(False, store.home),
        store=store,
    )
    assert image.image_hash(prebuilt) != before


def test_build_image_ships_the_context_and_runs_the_build_as_a_job(ctx_for, jobs_sent, name):
    ctx = ctx_for({})
    container.BuildImage().apply(ctx)
    check, job = jobs_sent[0], jobs_sent[1]
    assert check["kind"] == "host-check" and "docker info" in check["command"]  # docker is checked before a build
    assert job["kind"] == "build-image"
    assert job["command"].splitlines() == image.build_commands(ctx)
    shipped = job["conn"].files  # the build context, written before the build starts
    assert b"torch-neuron" in shipped[".inflab/image/Dockerfile"]
    assert ".inflab/image/requirements.txt" in shipped and ".inflab/image/payload/bench.py" in shipped
    assert ctx.require(BuiltImage).uri == f"{ACCOUNT_URI}/inflab-{name}:{image.image_tag(ctx)}"


def test_push_passes_the_registry_password_on_stdin_only(ctx_for, jobs_sent, sandbox, store, name):

    aws = sandbox_aws(sandbox, who="lab")
    token = aws.client("ecr").get_authorization_token()["authorizationData"][0]
    password = base64.b64decode(token["authorizationToken"]).decode().split(":", 1)[1]
    assert len(password) > 8
    logs: list[str] = []
    ctx = ctx_for({}, aws=aws)
    ctx.log = logs.append
    ctx.save(BuiltImage(uri=f"{ACCOUNT_URI}/inflab-{name}:inf1", hash=image.image_hash(ctx)))

    container.PushImage().apply(ctx)

    job = jobs_sent[0]
    registry = token["proxyEndpoint"].removeprefix("https://")
    ((login, given),) = job["conn"].calls
    assert login == f"docker login --username AWS --password-stdin {registry}"
    assert given == password + "\n"  # on standard input
    assert job["command"].splitlines() == [
        f"docker push {ACCOUNT_URI}/inflab-{name}:inf1",
        "rc=$?",
        f"docker logout {ACCOUNT_URI} >/dev/null",
        "exit $rc",
    ]
    # nowhere else: not in a command line, not in the log, not in the session database
    assert password not in login and password not in job["command"] and password not in str(job["env"])
    assert not any(password in line for line in logs)
    assert password.encode() not in (store.home / "inflab.db").read_bytes()
    assert ctx.require(PushedImage).pushed is True


def test_push_refuses_without_an_image(ctx_for, jobs_sent):
    with pytest.raises(StepError, match="build-image"):
        container.PushImage().apply(ctx_for({}))
    assert jobs_sent == []


def _argv(command: str) -> list[str]:
    return shlex.split(command.split(" && ", 1)[1])


def test_compile_runs_in_the_container_with_the_neuron_devices(ctx_for, name):
    ctx = ctx_for({})
    argv = _argv(payload_jobs.payload_command(ctx, "compile", "compile.py", payload_jobs.compile_args(ctx)))
    assert argv[:4] == ["docker", "run", "--rm", "--init"]
    assert f"inflab.session={name}" in argv
    # the devices are listed on the host when the job runs: every /dev/neuron* becomes --device=
    assert "$(ls /dev/neuron* 2>/dev/null | sed 's/^/--device=/')" in ctx_command(ctx)
    uri = f"{ACCOUNT_URI}/inflab-{name}:{image.image_tag(ctx)}"
    assert uri in argv
    i = argv.index(uri)
    assert argv[i + 1 : i + 4] == ["python3", "-u", "/opt/inflab/payload/compile.py"]
    args = argv[i + 4 :]
    assert args[args.index("--target") + 1] == "inf1"
    assert args[args.index("--name") + 1] == "bert-base-cased-finetuned-mrpc"
    assert args[args.index("--batch-size") + 1] == "8"
    assert args[args.index("--size") + 1] == "full"
    assert "--int8" not in args  # int8 dynamic quantization is a CPU comparison only


def ctx_command(ctx) -> str:
    return payload_jobs.payload_command(ctx, "compile", "compile.py", payload_jobs.compile_args(ctx))


def test_gpu_and_cpu_targets(ctx_for, store, name):
    gpu = ctx_for({"instance": {"type": "g5.xlarge"}})
    cmd = ctx_command(gpu)
    assert "--gpus all" in cmd and "--device" not in cmd
    args = _argv(cmd)
    assert args[args.index("--target") + 1] == "cuda"
    cpu = StepContext(
        name=name,
        config=config.from_dict({"instance": {"type": "c6i.4xlarge"}}),
        runtime=for_session(False, store.home),
        store=store,
    )
    args = _argv(ctx_command(cpu))
    assert args[args.index("--target") + 1] == "cpu" and "--int8" in args


def test_sandbox_runs_the_payload_in_the_job_virtualenv(ctx_for, store):
    ctx = ctx_for({}, sandbox=True)
    cmd = ctx_command(ctx)
    assert "docker" not in cmd
    venv = store.home / "sandbox" / "images" / image.image_hash(ctx) / "venv"
    assert cmd.startswith(f'cd "$HOME/.inflab/work" && {venv}/bin/python -u "$HOME/.inflab/payload/compile.py" ')
    args = _argv(cmd)
    assert args[args.index("--size") + 1] == "tiny" and args[args.index("--target") + 1] == "cpu" and "--int8" in args
    build = image.build_commands(ctx)
    assert f"python3 -m venv {venv}" in build
    assert any(c.endswith("-r .inflab/image/requirements.txt") for c in build)


def test_benchmark_flags_follow_the_config(ctx_for):
    ctx = ctx_for({"bench": {"n_models": 4, "workers_per_model": 2, "mode": "open", "rate": 800, "min_duration_s": 30}})
    args = payload_jobs.bench_args(ctx, CompiledModel(file="bert_inf1_fp32_128_b8.pt"))
    assert args[0] == "models/bert_inf1_fp32_128_b8.pt"
    pairs = dict(zip(args[1::2], args[2::2]))
    assert pairs["--n-models"] == "4" and pairs["--workers"] == "2" and pairs["--mode"] == "open"
    assert pairs["--rate"] == "800" and pairs["--min-duration"] == "30"
    assert pairs["--out"] == "results/bert_inf1_fp32_128_b8.bench.json"
    assert pairs["--instance-type"] == "inf1.2xlarge"


def _dockerfile_run(text: str) -> str:
    """The shell of the one RUN instruction of a Dockerfile (its continuation lines joined)."""
    start = text.index("\nRUN ") + len("\nRUN ")
    lines = []
    for line in text[start:].splitlines():
        lines.append(line.rstrip("\\").rstrip())
        if not line.endswith("\\"):
            break
    return " ".join(lines)


@pytest.mark.parametrize("kind, wants_tensorflow", [("inf1", True), ("gpu", False)])
def test_the_prebuilt_inf1_image_adds_neuron_ccs_tensorflow_front_end(kind, wants_tensorflow, ctx_for, tmp_path):
    """AWS's 2.20.2 Inf1 image ships neuron-cc without its [tensorflow] extra, which torch.neuron.trace
    needs: the prebuilt path adds it at the shipped version, torch-neuron pinned with it."""
    ctx = ctx_for({"container": {"source": "prebuilt"}})
    assert f"--build-arg KIND={image.kind(ctx)}" in image.build_commands(ctx)[3]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pip = bin_dir / "pip"  # the image's pip, as far as this RUN line can tell
    pip.write_text(
        '#!/bin/sh\nif [ "$1" = show ]; then\n  case "$2" in\n'
        '    torch-neuron) echo "Version: 1.13.1.2.11.13.0";;\n    neuron-cc) echo "Version: 1.24.0.0";;\n'
        '  esac\n  exit 0\nfi\necho "$@" >> "$PIP_LOG"\n'
    )
    pip.chmod(0o755)
    script = _dockerfile_run(image.container_files(kind)["Dockerfile.prebuilt"].decode())
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "KIND": kind,
        "NEURON_PIP_REPO": "https://pip.repos.neuron.amazonaws.com",
        "PIP_LOG": str(tmp_path / "pip.log"),
    }
    r = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    installed = (tmp_path / "pip.log").read_text()
    assert ("neuron-cc[tensorflow]==1.24.0.0" in installed) == wants_tensorflow
    assert ("torch-neuron==1.13.1.2.11.13.0" in installed) == wants_tensorflow
    assert "-r /opt/inflab/requirements.txt" in installed and "awscli" in installed


def test_a_second_build_of_the_same_sandbox_image_waits_for_the_first_and_takes_its_image(tmp_path):
    """Two sessions of one home building the same image (a room of sessions, two test processes):
    the second waits for the first's lock, then finds the image made and leaves it alone."""
    import fcntl
    import os
    import signal
    import time

    from inflab.runtime.sandbox import SandboxRuntime

    runtime = SandboxRuntime(tmp_path)
    digest = "0123456789abcdef"
    plan = runtime.image_plan(uri="repo:cpu-x", digest=digest, kind="cpu", source="build", base_image="")
    image = runtime.image_dir(digest)
    image.mkdir(parents=True)
    (image / "half-built").write_text("the first build is still writing\n")
    with open(image.with_suffix(".lock"), "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # the first build
        second = subprocess.Popen(
            ["bash", "-c", plan.script],
            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            line = second.stdout.readline()
            assert line.strip() == "[build] Another session is building this image: waiting for it"
            time.sleep(0.5)
            assert second.poll() is None and (image / "half-built").exists()  # it waits, and touches nothing
        except BaseException:
            os.killpg(second.pid, signal.SIGKILL)  # never leave a build running (it would install the requirements)
            raise
        (image / "venv").mkdir()
        (image / "venv" / ".inflab-image").write_text(digest + "\n")  # the first build ends
    out, _ = second.communicate(timeout=30)
    assert second.returncode == 0, out
    assert "has this image already" in out and (image / "half-built").exists()
