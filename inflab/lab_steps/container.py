"""Steps `ecr-repo`, `build-image`, `push-image`: the Neuron container and its registry.

On AWS the image is built on the instance (docker over SSH, as a detached job with live
output) from ``assets/container/<kind>/Dockerfile`` — or, when ``container.source =
"prebuilt"``, the AWS image is pulled and only our payload is added — and pushed to the
session's ECR repository. The registry password goes to ``docker login --password-stdin``
on the host's standard input: never on a command line, never in a log.

The sandbox has no docker: `build-image` creates the job virtualenv on the sandbox
instance from the same requirements file, and `push-image` records the repository only.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shlex
from importlib import resources

from ..aws import error_code, tag_dict
from .base import Step, StepContext, StepError
from .remote_job import VENV_DIR, payload_files, run_job, upload

IMAGE_DIR = ".inflab/image"  # the build context on the host
IMAGE_LABEL = "inflab.image"  # docker label holding the definition's hash


def repo_name(ctx: StepContext) -> str:
    return ctx.prefix  # inflab-<session>: the instance role may push to inflab-<session>* only


def kind(ctx: StepContext) -> str:
    return ctx.config.container_kind(ctx.sandbox)


def container_files(k: str) -> dict[str, bytes]:
    """The build context's definition files for container kind ``k``."""
    root = resources.files("inflab.assets").joinpath("container")
    return {
        "Dockerfile": root.joinpath(k, "Dockerfile").read_bytes(),
        "Dockerfile.prebuilt": root.joinpath("Dockerfile.prebuilt").read_bytes(),
        "requirements.txt": root.joinpath(k, "requirements.txt").read_bytes(),
    }


def base_image(k: str) -> str:
    """The image a kind's Dockerfile starts from (its ``ARG BASE_IMAGE=`` default)."""
    text = container_files(k)["Dockerfile"].decode()
    m = re.search(r"^ARG\s+BASE_IMAGE=(\S+)", text, re.M)
    return m.group(1) if m else ""


def source(ctx: StepContext) -> str:
    """build or prebuilt; the CPU image is always built (there is no AWS CPU inference image to start from)."""
    return "build" if kind(ctx) == "cpu" else ctx.config["container"]["source"]


def image_hash(ctx: StepContext) -> str:
    """Changes when what the image is built from changes (definition, requirements, source)."""
    h = hashlib.sha256(source(ctx).encode())
    for name, data in sorted(container_files(kind(ctx)).items()):
        h.update(name.encode() + b"\0" + data)
    return h.hexdigest()[:16]


def image_uri(ctx: StepContext) -> str:
    repo = ctx.get("ecr") or {}
    base = repo.get("uri") or f"<account>.dkr.ecr.{ctx.region}.amazonaws.com/{repo_name(ctx)}"
    return f"{base}:{kind(ctx)}"


def registry_of(uri: str) -> str:
    return uri.split("/", 1)[0]


# -- the commands sent to the host (plain functions: the tests read them) -------------------
def build_commands(ctx: StepContext) -> list[str]:
    uri, digest = image_uri(ctx), image_hash(ctx)
    if ctx.sandbox:
        return [
            "set -e",
            'cd "$HOME"',
            "echo '[build] The sandbox has no docker: creating the job virtualenv from the image requirements instead'",
            f"python3 -m venv {VENV_DIR}",
            f"{VENV_DIR}/bin/python -m pip install --progress-bar off --disable-pip-version-check -r {IMAGE_DIR}/requirements.txt",
            f"echo {digest} > {VENV_DIR}/.inflab-image",
            f"echo '[build] Virtualenv ready: {VENV_DIR}'",
        ]
    cd = f'cd "$HOME/{IMAGE_DIR}"'
    label = f"--label {IMAGE_LABEL}={digest}"
    if source(ctx) == "prebuilt":
        base = shlex.quote(base_image(kind(ctx)))
        return ["set -e", cd, f"docker pull {base}",
                f"docker build --progress=plain -f Dockerfile.prebuilt --build-arg BASE_IMAGE={base} {label} -t {uri} ."]
    return ["set -e", cd, f"docker build --progress=plain {label} -t {uri} ."]


def login_command(registry: str) -> str:
    """Reads the password from standard input: it never appears in argv or a log."""
    return f"docker login --username AWS --password-stdin {shlex.quote(registry)}"


def push_commands(uri: str) -> list[str]:
    # Log out afterwards so the registry token does not stay in ~/.docker/config.json.
    return [f"docker push {uri}", "rc=$?", f"docker logout {shlex.quote(registry_of(uri))} >/dev/null", "exit $rc"]


def ecr_password(ecr) -> tuple[str, str]:
    """(registry host, password) from ECR's authorization token."""
    data = ecr.get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    if user != "AWS" or not password:
        raise StepError("ECR returned an authorization token in an unexpected form")
    return data["proxyEndpoint"].removeprefix("https://").rstrip("/"), password


class EcrRepo(Step):
    id = "ecr-repo"
    title = "Create the ECR repository"

    def cli(self, ctx):
        return [f"aws ecr create-repository --repository-name {repo_name(ctx)} --image-scanning-configuration scanOnPush=true "
                f"--encryption-configuration encryptionType=AES256 --tags Key=inflab:session,Value={ctx.name}"]

    def _find(self, ctx) -> dict | None:
        ecr = ctx.aws.client("ecr")
        try:
            repo = ecr.describe_repositories(repositoryNames=[repo_name(ctx)])["repositories"][0]
        except Exception as e:
            if error_code(e) == "RepositoryNotFoundException":
                return None
            raise
        tags = tag_dict(ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"]).get("tags"))
        if tags.get("inflab:session") != ctx.name:
            raise StepError(f"An ECR repository named {repo_name(ctx)} exists but does not belong to this session")
        return repo

    def _remember(self, ctx, repo: dict) -> None:
        ctx.put("ecr", {"name": repo["repositoryName"], "uri": repo["repositoryUri"], "arn": repo["repositoryArn"]})

    def check(self, ctx):
        repo = self._find(ctx)
        if repo:
            self._remember(ctx, repo)
        return repo is not None

    def apply(self, ctx):
        ecr = ctx.aws.client("ecr")
        name = repo_name(ctx)
        rid = ctx.intend("ecr:repository", name)
        repo = ecr.create_repository(
            repositoryName=name,
            imageScanningConfiguration={"scanOnPush": True},
            imageTagMutability="MUTABLE",
            encryptionConfiguration={"encryptionType": "AES256"},
            tags=ctx.tags(Name=name),
        )["repository"]
        ctx.store.mark_created(rid, repo["repositoryArn"])
        self._remember(ctx, repo)
        ctx.log(f"Created ECR repository {repo['repositoryUri']} (scan on push, encrypted)")

    def undo(self, ctx):
        ecr = ctx.aws.client("ecr")
        try:
            if self._find(ctx):
                ecr.delete_repository(repositoryName=repo_name(ctx), force=True)
                ctx.log(f"Deleted ECR repository {repo_name(ctx)} and its images")
        except StepError:
            pass  # not ours: leave it alone
        ctx.store.mark_deleted(ctx.name, "ecr:repository")
        ctx.store.delete(ctx.name, "ecr")


class BuildImage(Step):
    id = "build-image"
    title = "Build the Neuron container"

    def cli(self, ctx):
        if ctx.sandbox:
            return ["# sandbox: no docker here; the same requirements go into a virtualenv on the sandbox instance",
                    *build_commands(ctx)[3:5]]
        return [f"scp -r assets/container/{kind(ctx)} <instance>:{IMAGE_DIR}", *build_commands(ctx)[1:]]

    def _state_ok(self, ctx) -> bool:
        img = ctx.get("image") or {}
        return img.get("hash") == image_hash(ctx) and img.get("instance_id") == (ctx.get("host") or {}).get("instance_id")

    def check(self, ctx):
        if not self._state_ok(ctx):
            return False
        probe = (f"cat {VENV_DIR}/.inflab-image 2>/dev/null" if ctx.sandbox else
                 f"docker image inspect --format '{{{{index .Config.Labels \"{IMAGE_LABEL}\"}}}}' {image_uri(ctx)} 2>/dev/null")
        from .remote_job import host_run

        r = host_run(ctx, lambda conn: conn.run(probe, check=False), timeout=60)
        return (r.stdout or "").strip() == image_hash(ctx)

    def apply(self, ctx):
        if not ctx.get("ecr") and not ctx.sandbox:
            raise StepError("No ECR repository recorded: run the ecr-repo step first")
        k = kind(ctx)
        files = container_files(k)
        if ctx.sandbox:
            ctx.log("The sandbox has no docker engine: this step creates the job virtualenv on the sandbox instance "
                    f"from assets/container/{k}/requirements.txt — the same requirements the image installs")
        else:
            how = "pulling the prebuilt AWS image and adding the payload" if source(ctx) == "prebuilt" \
                else f"building assets/container/{k}/Dockerfile"
            if source(ctx) != ctx.config["container"]["source"]:
                ctx.log("container.source = prebuilt applies to the Neuron and GPU images; the CPU image is built")
            ctx.log(f"Image {image_uri(ctx)}: {how} on the instance (a few minutes; output below)")

        async def ship(conn):
            await upload(conn, files, IMAGE_DIR)
            await upload(conn, payload_files(), f"{IMAGE_DIR}/payload")

        code, tail = run_job(ctx, "build-image", "\n".join(build_commands(ctx)), before=ship)
        if code != 0:
            raise StepError(f"The image build failed (exit {code}): {' | '.join(tail[-3:])[-400:]}")
        ctx.put("image", {"uri": image_uri(ctx), "hash": image_hash(ctx), "kind": k, "sandbox": ctx.sandbox,
                          "instance_id": (ctx.get("host") or {}).get("instance_id")})
        ctx.log("Job virtualenv ready" if ctx.sandbox else f"Built {image_uri(ctx)}")

    def undo(self, ctx):
        ctx.store.delete(ctx.name, "image")  # it lives on the instance, which terminate removes


class PushImage(Step):
    id = "push-image"
    title = "Push the image to ECR"

    def cli(self, ctx):
        uri = image_uri(ctx)
        return [f"aws ecr get-login-password --region {ctx.region} | docker login --username AWS --password-stdin {registry_of(uri)}",
                f"docker push {uri}"]

    def check(self, ctx):
        pushed = ctx.get("pushed") or {}
        if pushed.get("hash") != image_hash(ctx):
            return False
        if ctx.sandbox:
            return True
        try:
            images = ctx.aws.client("ecr").describe_images(repositoryName=repo_name(ctx), imageIds=[{"imageTag": kind(ctx)}])
        except Exception as e:
            if error_code(e) in ("ImageNotFoundException", "RepositoryNotFoundException"):
                return False
            raise
        return bool(images["imageDetails"])

    def apply(self, ctx):
        image = ctx.get("image")
        if not image:
            raise StepError("No image recorded: run the build-image step first")
        if ctx.sandbox:
            ctx.put("pushed", {"uri": image["uri"], "hash": image["hash"], "pushed": False})
            ctx.log(f"The sandbox has no docker, so there is nothing to push: recorded the repository {image['uri']} "
                    "for the later steps. On AWS this step logs docker in to ECR (password on stdin) and pushes the image.")
            return
        registry, password = ecr_password(ctx.aws.client("ecr"))

        async def login(conn):
            r = await conn.run(login_command(registry), input=password + "\n", check=False)
            if r.exit_status != 0:
                raise StepError(f"docker login to {registry} failed: {(r.stderr or r.stdout or '').strip()[:300]}")
            ctx.log(f"docker logged in to {registry} (password passed on stdin)")

        code, tail = run_job(ctx, "push-image", "\n".join(push_commands(image["uri"])), before=login)
        if code != 0:
            raise StepError(f"docker push failed (exit {code}): {' | '.join(tail[-3:])[-400:]}")
        ctx.put("pushed", {"uri": image["uri"], "hash": image["hash"], "pushed": True})
        ctx.log(f"Pushed {image['uri']}; ECR scans it on push")

    def undo(self, ctx):
        pushed = ctx.get("pushed") or {}
        if pushed.get("pushed"):
            try:
                ctx.aws.client("ecr").batch_delete_image(repositoryName=repo_name(ctx), imageIds=[{"imageTag": kind(ctx)}])
                ctx.log(f"Deleted image {pushed['uri']} from ECR")
            except Exception as e:
                if error_code(e) != "RepositoryNotFoundException":
                    raise
        ctx.store.delete(ctx.name, "pushed")
