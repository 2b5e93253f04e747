"""The AWS runtime: an EC2 instance in your account, docker on it, images in ECR."""

from __future__ import annotations

import ipaddress
import shlex
import urllib.request
from typing import Any

from botocore.exceptions import ClientError

from ..config import LabConfig
from ..remote.host import Host
from ..remote.paths import IMAGE_DIR, PAYLOAD_DIR, WORK_DIR
from .base import BatchContainer, HostRuntime, HostRuntimeError, ImagePlan, PushPlan, StopPlan, upload_script

CHECKIP_URL = "https://checkip.amazonaws.com"
IMAGE_LABEL = "inflab.image"  # docker label holding the definition's hash


def registry_of(uri: str) -> str:
    return uri.split("/", 1)[0]


def login_command(registry: str) -> str:
    """Reads the password from standard input: it never appears in argv or a log."""
    return f"docker login --username AWS --password-stdin {shlex.quote(registry)}"


def push_commands(uri: str) -> list[str]:
    # Log out afterwards so the registry token does not stay in ~/.docker/config.json.
    return [f"docker push {uri}", "rc=$?", f"docker logout {shlex.quote(registry_of(uri))} >/dev/null", "exit $rc"]


def container_name(session: str, job: str) -> str:
    return f"inflab-{session}-{job}"


def docker_devices(kind: str) -> str:
    """docker run flags that hand the accelerators to the container."""
    neuron = "$(ls /dev/neuron* 2>/dev/null | sed 's/^/--device=/')"
    return {"inf1": neuron, "inf2": neuron, "gpu": "--gpus all"}.get(kind, "")


BATCH_OUT = "/tmp/inflab-out"  # the job's output directory inside the container


# One line about docker on the instance (ok / missing / permission / stopped: <its error>), then the OS.
DOCKER_PROBE = (
    'if ! command -v docker >/dev/null 2>&1; then echo "docker:missing"; '
    'elif err=$(docker info 2>&1 >/dev/null); then echo "docker:ok"; '
    'elif echo "$err" | grep -qi "permission denied"; then echo "docker:permission"; '
    'else echo "docker:stopped: $(echo "$err" | tail -n 1 | cut -c1-200)"; fi; '
    '. /etc/os-release 2>/dev/null; echo "os:${ID:-unknown}"'
)


def docker_advice(output: str, user: str) -> str | None:
    """What to run on the instance when :data:`DOCKER_PROBE` says docker is not usable (None: it is)."""
    lines = dict(line.split(":", 1) for line in output.splitlines() if ":" in line)
    state, os_id = lines.get("docker", "").strip(), lines.get("os", "").strip()
    if state == "ok":
        return None
    apt = os_id in ("ubuntu", "debian")
    install = "sudo apt-get update && sudo apt-get install -y docker.io" if apt else "sudo dnf install -y docker"
    enable = "sudo systemctl enable --now docker"
    group = f"sudo usermod -aG docker {user}"
    if state == "missing":
        why, fix = "docker is not installed on the instance", f"{install} && {enable} && {group}"
    elif state == "permission":
        why, fix = f"{user} may not use docker (not in the docker group)", group
    else:
        why, fix = (
            f"docker is installed but not running ({state.removeprefix('stopped').strip(': ') or 'docker info failed'})",
            enable,
        )
    return (
        f"{why}: the container steps need it. On the instance (key o in the lab, or inflab's ssh command), run: "
        f"{fix} — then run this step again (a new login picks up the docker group)"
    )


class AwsRuntime(HostRuntime):
    kind = "aws"
    boot_note = "Give it about 3 minutes to boot fully before connecting."

    def __init__(self, *, checkip_url: str = CHECKIP_URL):
        self.checkip_url = checkip_url

    def aws_endpoint(self) -> str | None:
        return None

    def where(self, account: str) -> str:
        return f"AWS account {account}"

    def caller_cidr(self) -> str:
        try:
            with urllib.request.urlopen(self.checkip_url, timeout=10) as r:
                ip = ipaddress.ip_address(r.read().decode().strip())
        except (OSError, ValueError):
            raise HostRuntimeError(
                f"Could not find your public IP address ({self.checkip_url} did not answer). "
                "Set instance.ssh_cidr in the config (like 203.0.113.7/32)"
            ) from None
        return f"{ip}/32"

    def host(self, record: dict[str, Any], key_path: str, pin: dict[str, Any] | None, *, start: bool = True) -> Host:
        pin = pin or {}
        return Host(
            record["instance_id"],
            record["public_ip"],
            22,
            record["user"],
            key_path,
            pin.get("fingerprint"),
            pin.get("public_key"),
        )

    def instance_label(self, config: LabConfig) -> str:
        return config.instance_type

    def container_kind(self, config: LabConfig) -> str:
        return config.container_kind(False)

    def model_size(self, config: LabConfig) -> str:
        return config.model_size(False)

    def image_plan(self, *, uri: str, digest: str, kind: str, source: str, base_image: str) -> ImagePlan:
        cd = f'cd "$HOME/{IMAGE_DIR}"'
        label = f"--label {IMAGE_LABEL}={digest}"
        if source == "prebuilt":
            base = shlex.quote(base_image)
            lines = [
                "set -e",
                cd,
                f"docker pull {base}",
                f"docker build --progress=plain -f Dockerfile.prebuilt --build-arg BASE_IMAGE={base} "
                f"--build-arg KIND={kind} {label} -t {uri} .",
            ]
            how = "pulling the prebuilt AWS image and adding the payload"
        else:
            lines = ["set -e", cd, f"docker build --progress=plain {label} -t {uri} ."]
            how = f"building assets/container/{kind}/Dockerfile"
        probe = f"docker image inspect --format '{{{{index .Config.Labels \"{IMAGE_LABEL}\"}}}}' {uri} 2>/dev/null"
        return ImagePlan(
            "\n".join(lines),
            probe,
            (f"scp -r assets/container/{kind} <instance>:{IMAGE_DIR}", *lines[1:]),
            f"Image {uri}: {how} on the instance (a few minutes; output below)",
            needs_registry=True,
        )

    def push_plan(self, uri: str) -> PushPlan:
        return PushPlan(
            "\n".join(push_commands(uri)), login_command(registry_of(uri)), f"Pushed {uri}; ECR scans it on push"
        )

    def payload_prefix(self, *, session: str, job: str, image_uri: str, kind: str, host_network: bool = False) -> str:
        devices = docker_devices(kind)
        # --network host: a server binds the instance's own loopback, and a client there reaches it
        net = "--network host " if host_network else ""
        return (
            f'cd "$HOME/{WORK_DIR}" && docker run --rm --init --name {container_name(session, job)} --label inflab.session={session} '
            f'{net}{devices + " " if devices else ""}-e PYTHONUNBUFFERED=1 -v "$HOME/{WORK_DIR}:/work" '
            f'-v "$HOME/{PAYLOAD_DIR}:/opt/inflab/payload:ro" -w /work {image_uri} python3 -u "/opt/inflab/payload/'
        )

    def stop_job_command(self, session: str, job: str) -> str:
        return f"docker stop {container_name(session, job)} >/dev/null 2>&1; true"

    def stop_plan(self, session: str) -> StopPlan:
        cmd = f"docker ps -q --filter label=inflab.session={session} | xargs -r docker stop; true"
        return StopPlan(
            cmd, "containers", f"ssh <instance> 'docker stop $(docker ps -q --filter label=inflab.session={session})'"
        )

    def host_check(self) -> str | None:
        return DOCKER_PROBE

    def host_problem(self, output: str, user: str) -> str | None:
        return docker_advice(output, user)

    def batch_container(self, *, kind: str, image_uri: str, digest: str, job_args: list[str]) -> BatchContainer:
        run = (
            "python3 -u /opt/inflab/payload/batch_job.py --out "
            + BATCH_OUT
            + " "
            + " ".join(shlex.quote(a) for a in job_args)
        )
        copy = f'aws s3 cp --recursive --only-show-errors {BATCH_OUT} "$INFLAB_RESULTS_URI"'
        return BatchContainer(image_uri, ("sh", "-c", upload_script(run, copy)))

    def batch_image_missing(self, ecr, repository: str, tag: str, digest: str) -> str | None:
        from ..aws import error_code

        try:
            found = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])["imageDetails"]
        except ClientError as e:
            if error_code(e) not in ("ImageNotFoundException", "RepositoryNotFoundException"):
                raise
            found = []
        if found:
            return None
        return (
            f"the image {repository}:{tag} is not in ECR; build and push it (steps build-image and push-image, "
            f"on an instance of that family)"
        )
