"""A real instance may lack docker, or run it where the login user may not use it: connect and
build-image stop with the commands that fix it (the AWS runtime's host check), instead of a failed
build minutes later. The check is a shell script run on the instance; here it runs on this machine
with a stand-in docker on its PATH."""

from __future__ import annotations

import subprocess

import pytest

from inflab.runtime.aws import DOCKER_PROBE, AwsRuntime
from inflab.runtime.sandbox import SandboxRuntime

DOCKERS = {
    "ok": "#!/bin/sh\nexit 0\n",
    "permission": "#!/bin/sh\necho 'permission denied while trying to connect to the Docker daemon socket at "
    "unix:///var/run/docker.sock' >&2\nexit 1\n",
    "stopped": "#!/bin/sh\necho 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker "
    "daemon running?' >&2\nexit 1\n",
}


def probe(tmp_path, docker: str | None) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "grep", "tail", "cut"):
        (bin_dir / tool).symlink_to(
            subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        )
    if docker is not None:
        (bin_dir / "docker").write_text(DOCKERS[docker])
        (bin_dir / "docker").chmod(0o755)
    return subprocess.run(["sh", "-c", DOCKER_PROBE], env={"PATH": str(bin_dir)}, capture_output=True, text=True).stdout


@pytest.mark.parametrize(
    "docker, says, fix",
    [
        (
            None,
            "docker is not installed",
            "apt-get install -y docker.io && sudo systemctl enable --now docker && sudo usermod -aG docker ubuntu",
        ),
        ("permission", "ubuntu may not use docker", "sudo usermod -aG docker ubuntu"),
        (
            "stopped",
            "docker is installed but not running (Cannot connect to the Docker daemon",
            "sudo systemctl enable --now docker",
        ),
    ],
)
def test_a_host_without_usable_docker_is_told_what_to_run(docker, says, fix, tmp_path):
    out = probe(tmp_path, docker)
    problem = AwsRuntime().host_problem(out.replace("os:debian", "os:ubuntu"), "ubuntu")
    assert problem and says in problem and fix in problem
    assert "\n" not in problem


def test_amazon_linux_gets_dnf_and_a_ready_host_is_left_alone(tmp_path):
    assert "sudo dnf install -y docker" in AwsRuntime().host_problem("docker:missing\nos:amzn\n", "ec2-user")
    assert AwsRuntime().host_problem(probe(tmp_path, "ok"), "ubuntu") is None


def test_the_sandbox_has_nothing_to_check(tmp_path):
    runtime = SandboxRuntime(tmp_path)
    assert runtime.host_check() is None and runtime.host_problem("", "ubuntu") is None
