"""The sandbox runtime: AWS emulated on loopback, this machine as the instance.

There is no docker engine here, and the screen says so: the image is stood in for by a
virtualenv on the sandbox instance made from the same requirements file, nothing is
pushed, and payloads run in that virtualenv.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import sandbox
from ..config import LabConfig
from ..remote.host import Host
from ..remote.paths import IMAGE_DIR, PAYLOAD_DIR, VENV_DIR, WORK_DIR
from .base import HostRuntime, ImagePlan, PushPlan, StopPlan

LOOPBACK = "127.0.0.1/32"


class SandboxRuntime(HostRuntime):
    kind = "sandbox"
    console_wait_s = 0.0  # the emulated console prints the host key at once

    def __init__(self, home: Path):
        self.home = Path(home)

    def aws_endpoint(self) -> str | None:
        return sandbox.ensure_running(self.home).endpoint

    def aws_headers(self) -> dict[str, str]:
        return dict(sandbox.ensure_running(self.home).headers)

    def where(self, account: str) -> str:
        return "the sandbox (emulated AWS on this machine)"

    def caller_cidr(self) -> str:
        return LOOPBACK

    def after_terminate(self, instance_ids: list[str]) -> None:
        for iid in instance_ids:  # the emulated instance's disk: its home directory on this machine
            sandbox.forget_instance(self.home, iid)

    def unrequested_volume(self, volume: dict[str, Any]) -> str | None:
        return "an emulator artefact: the emulated EC2 attaches its own small root volume beside the one the launch asked for"

    def host(self, record: dict[str, Any], key_path: str, pin: dict[str, Any] | None, *, start: bool = True) -> Host:
        pin = pin or {}
        info = sandbox.ensure_running(self.home) if start else sandbox.read_state(self.home)
        port = info.ssh_port if info else 0
        return Host(record["instance_id"], "127.0.0.1", port, record["user"], key_path,
                    pin.get("fingerprint"), pin.get("public_key"))

    def instance_label(self, config: LabConfig) -> str:
        return "sandbox"

    def container_kind(self, config: LabConfig) -> str:
        return config.container_kind(True)

    def model_size(self, config: LabConfig) -> str:
        return config.model_size(True)

    def image_plan(self, *, uri: str, digest: str, kind: str, source: str, base_image: str) -> ImagePlan:
        pip = (f"{VENV_DIR}/bin/python -m pip install --progress-bar off --disable-pip-version-check "
               f"-r {IMAGE_DIR}/requirements.txt")
        lines = [
            "set -e",
            'cd "$HOME"',
            "echo '[build] The sandbox has no docker: creating the job virtualenv from the image requirements instead'",
            f"python3 -m venv {VENV_DIR}",
            pip,
            f"echo {digest} > {VENV_DIR}/.inflab-image",
            f"echo '[build] Virtualenv ready: {VENV_DIR}'",
        ]
        return ImagePlan(
            "\n".join(lines), f"cat {VENV_DIR}/.inflab-image 2>/dev/null",
            ("# sandbox: no docker here; the same requirements go into a virtualenv on the sandbox instance",
             f"python3 -m venv {VENV_DIR}", pip),
            "The sandbox has no docker engine: this step creates the job virtualenv on the sandbox instance "
            f"from assets/container/{kind}/requirements.txt — the same requirements the image installs",
            needs_registry=False)

    def push_plan(self, uri: str) -> PushPlan:
        return PushPlan(None, None, f"The sandbox has no docker, so there is nothing to push: recorded the repository {uri} "
                                    "for the later steps. On AWS this step logs docker in to ECR (password on stdin) and "
                                    "pushes the image.")

    def payload_prefix(self, *, session: str, job: str, image_uri: str, kind: str) -> str:
        return f'cd "$HOME/{WORK_DIR}" && "$HOME/{VENV_DIR}/bin/python" -u "$HOME/{PAYLOAD_DIR}/'

    def stop_plan(self, session: str) -> StopPlan:
        cmd = "for p in ~/.inflab/jobs/*/pid; do [ -f \"$p\" ] && kill -TERM -- -$(cat \"$p\") 2>/dev/null; done; true"
        return StopPlan(cmd, "jobs", "# the sandbox stops the session's jobs on its instance")
