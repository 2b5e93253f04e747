"""The sandbox runtime: AWS emulated on loopback, this machine as the instance.

There is no docker engine here, and the screen says so: the image is stood in for by a
virtualenv on the sandbox instance made from the same requirements file, nothing is
pushed, and payloads run in that virtualenv.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from .. import sandbox
from ..aws import Credentials
from ..config import LabConfig
from ..remote.host import Host
from ..remote.paths import IMAGE_DIR, PAYLOAD_DIR, WORK_DIR
from ..sandbox import image_store
from .base import BatchContainer, HostRuntime, ImagePlan, PushPlan, StopPlan, upload_script

LOOPBACK = "127.0.0.1/32"
IMAGES = image_store.DIR  # under the sandbox's state directory: one job virtualenv (+ payload) per image hash


def digest_of(image_uri: str) -> str:
    """The hash in an image tag ``<kind>-<hash>``."""
    return image_uri.rsplit(":", 1)[-1].rsplit("-", 1)[-1]


class SandboxRuntime(HostRuntime):
    kind = "sandbox"
    console_wait_s = 0.0  # the emulated console prints the host key at once
    batch_poll_s = 1.0  # the jobs run on this machine: state changes come quickly
    has_pricing = False
    sagemaker_poll_s = 1.0  # the endpoint starts on this machine: seconds, not minutes
    metrics_wait_s = 10.0  # the sandbox publishes an endpoint's metrics every second

    def __init__(self, home: Path):
        self.home = Path(home)

    def image_dir(self, digest: str) -> Path:
        """Where the stand-in for the image with this hash lives: this machine's image store
        (it outlives the emulated instance, as an image outlives the host that built it)."""
        return sandbox.state_dir(self.home) / IMAGES / digest

    def aws_endpoint(self) -> str | None:
        return sandbox.ensure_running(self.home).endpoint

    def aws_headers(self) -> dict[str, str]:
        return dict(sandbox.ensure_running(self.home).headers)

    def aws_credentials(self, *, instructor: bool = False) -> Credentials | None:
        """The emulated IAM user's key while the sandbox checks an IAM policy: the participant for the
        lab, the sandbox's administrator for instructor mode (None: the emulator checks nothing)."""
        key = sandbox.ensure_running(self.home).access_key("admin" if instructor else "lab")
        return Credentials(*key) if key else None

    def where(self, account: str) -> str:
        return "the sandbox (emulated AWS on this machine)"

    def caller_cidr(self) -> str:
        return LOOPBACK

    def after_terminate(self, instance_ids: list[str]) -> list[str]:
        # The emulated instance's processes end with it (waited for), then its disk: its home directory here.
        return [line for iid in instance_ids for line in sandbox.forget_instance(self.home, iid)]

    def unrequested_volume(self, volume: dict[str, Any]) -> str | None:
        return "an emulator artefact: the emulated EC2 attaches its own small root volume beside the one the launch asked for"

    def host(self, record: dict[str, Any], key_path: str, pin: dict[str, Any] | None, *, start: bool = True) -> Host:
        pin = pin or {}
        info = sandbox.ensure_running(self.home) if start else sandbox.read_state(self.home)
        port = info.ssh_port if info else 0
        return Host(
            record["instance_id"],
            "127.0.0.1",
            port,
            record["user"],
            key_path,
            pin.get("fingerprint"),
            pin.get("public_key"),
        )

    def instance_label(self, config: LabConfig) -> str:
        return "sandbox"

    def container_kind(self, config: LabConfig) -> str:
        return config.container_kind(True)

    def model_size(self, config: LabConfig) -> str:
        return config.model_size(True)

    def image_plan(self, *, uri: str, digest: str, kind: str, source: str, base_image: str) -> ImagePlan:
        image = shlex.quote(str(self.image_dir(digest)))
        venv = f"{image}/venv"
        pip = (
            f"{venv}/bin/python -m pip install --progress-bar off --disable-pip-version-check "
            f"-r {IMAGE_DIR}/requirements.txt"
        )
        lock = shlex.quote(str(self.image_dir(digest).with_suffix(".lock")))
        lines = [
            "set -e",
            'cd "$HOME"',
            # one build of an image at a time: another session building the same one is waited for
            f"mkdir -p {shlex.quote(str(self.image_dir(digest).parent))}",
            f"exec 9>>{lock}",
            "flock -n 9 || { echo '[build] Another session is building this image: waiting for it'; flock 9; }",
            # like docker's layer cache: an image with this hash is there already (another session made it)
            f'if [ "$(cat {venv}/.inflab-image 2>/dev/null)" = {digest} ]; then '
            f"echo '[build] The sandbox image store has this image already: {venv}'; exit 0; fi",
            "echo '[build] The sandbox has no docker: creating the job virtualenv from the image requirements instead'",
            f"rm -rf {image} && mkdir -p {image}",
            f"python3 -m venv {venv}",
            pip,
            f"cp -r {IMAGE_DIR}/payload {image}/payload",
            f"echo {digest} > {venv}/.inflab-image",  # last: a half-built image is never taken for this one
            f"echo '[build] Virtualenv ready: {venv}'",
        ]
        return ImagePlan(
            "\n".join(lines),
            f"cat {venv}/.inflab-image 2>/dev/null",
            (
                "# sandbox: no docker here; the same requirements go into a virtualenv in the sandbox's image store",
                f"python3 -m venv {venv}",
                pip,
            ),
            "The sandbox has no docker engine: this step creates the job virtualenv in the sandbox's image store "
            f"from assets/container/{kind}/requirements.txt — the same requirements the image installs",
            needs_registry=False,
        )

    def push_plan(self, uri: str) -> PushPlan:
        return PushPlan(
            None,
            None,
            f"The sandbox has no docker, so there is nothing to push: recorded the repository {uri} "
            "for the later steps. On AWS this step logs docker in to ECR (password on stdin) and "
            "pushes the image.",
        )

    def payload_prefix(self, *, session: str, job: str, image_uri: str, kind: str, host_network: bool = False) -> str:
        venv = self.image_dir(digest_of(image_uri)) / "venv"
        return f'cd "$HOME/{WORK_DIR}" && {shlex.quote(str(venv / "bin" / "python"))} -u "$HOME/{PAYLOAD_DIR}/'

    def aws_payload_prefix(self, *, session: str, job: str, image_uri: str, kind: str) -> str:
        # The sandbox's cloud answers only the lab's own clients: the script runs under the lab's Python
        # (botocore), which points the payload's AWS client at the sandbox (inflab.sandbox.aws_payload).
        lab = Path(__file__).resolve().parents[2]  # where this inflab is imported from
        q = shlex.quote
        return (
            f'cd "$HOME/{WORK_DIR}" && PYTHONPATH={q(str(lab))} {q(sys.executable)} -u -m inflab.sandbox.aws_payload '
            f'--home {q(str(self.home))} "$HOME/{PAYLOAD_DIR}/'
        )

    def stop_plan(self, session: str) -> StopPlan:
        cmd = 'for p in ~/.inflab/jobs/*/pid; do [ -f "$p" ] && kill -TERM -- -$(cat "$p") 2>/dev/null; done; true'
        return StopPlan(cmd, "jobs", "# the sandbox stops the session's jobs on its instance")

    def batch_kind(self, config: LabConfig, instance_type: str) -> str:
        return "cpu"  # every sweep job runs on this machine's CPU

    def batch_container(self, *, kind: str, image_uri: str, digest: str, job_args: list[str]) -> BatchContainer:
        image = self.image_dir(digest)
        q = shlex.quote
        run = (
            f"{q(str(image / 'venv' / 'bin' / 'python'))} -u {q(str(image / 'payload' / 'batch_job.py'))} --out out "
            + " ".join(q(a) for a in job_args)
        )
        # The emulated S3 answers only the lab's own clients: the copy is made by one (this
        # machine's inflab), where a real job has the AWS CLI and its job role.
        copy = f'{q(sys.executable)} -m inflab.sandbox.upload --home {q(str(self.home))} out "$INFLAB_RESULTS_URI"'
        return BatchContainer(image_uri, ("sh", "-c", upload_script(run, copy)))

    def batch_image_missing(self, ecr, repository: str, tag: str, digest: str) -> str | None:
        if (self.image_dir(digest) / "venv" / ".inflab-image").is_file():
            return None
        return (
            f"the sandbox has no job virtualenv for image {repository}:{tag} (hash {digest}); "
            "run the build-image step (it makes one in the sandbox's image store)"
        )
