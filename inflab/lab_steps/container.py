"""Steps `ecr-repo`, `build-image`, `push-image`: the Neuron container and its registry.

How the image is made and pushed is the host runtime's business (:mod:`inflab.runtime`):
on AWS it is built on the instance with docker (as a detached job with live output) from
``assets/container/<kind>/Dockerfile`` — or, with ``container.source = "prebuilt"``, the
AWS image is pulled and only our payload is added — and pushed to the session's ECR
repository, the registry password going to ``docker login --password-stdin`` on the
host's standard input (never on a command line, never in a log). Where there is no docker
the runtime stands in for the image with a job virtualenv made from the same requirements.
These steps ship the build context, run the runtime's plan and record what was made.
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from .. import names
from ..aws import error_code, tag_dict
from ..remote.paths import IMAGE_DIR
from .base import Step, StepError
from .image import container_files, ecr_password, image_hash, image_plan, image_tag, image_uri, kind, source
from .records import BuiltImage, HostRecord, PushedImage, Repository
from .remote_job import ensure_host_ready, payload_files, run_job, upload


class EcrRepo(Step):
    id = "ecr-repo"

    def cli(self, ctx):
        return [
            f"aws ecr create-repository --repository-name {names.repository(ctx.name)} --image-scanning-configuration scanOnPush=true "
            f"--encryption-configuration encryptionType=AES256 --tags Key=inflab:session,Value={ctx.name}"
        ]

    def _find(self, ctx) -> dict | None:
        ecr = ctx.aws.client("ecr")
        try:
            repo = ecr.describe_repositories(repositoryNames=[names.repository(ctx.name)])["repositories"][0]
        except ClientError as e:
            if error_code(e) == "RepositoryNotFoundException":
                return None
            raise
        tags = tag_dict(ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"]).get("tags"))
        if tags.get(names.TAG_SESSION) != ctx.name:
            raise StepError(
                f"An ECR repository named {names.repository(ctx.name)} exists but does not belong to this session"
            )
        return repo

    def _remember(self, ctx, repo: dict) -> None:
        ctx.save(Repository(name=repo["repositoryName"], uri=repo["repositoryUri"], arn=repo["repositoryArn"]))

    def check(self, ctx):
        repo = self._find(ctx)
        if repo:
            self._remember(ctx, repo)
        return repo is not None

    def apply(self, ctx):
        ecr = ctx.aws.client("ecr")
        name = names.repository(ctx.name)
        with ctx.creating("ecr:repository", name) as made:
            repo = ecr.create_repository(
                repositoryName=name,
                imageScanningConfiguration={"scanOnPush": True},
                imageTagMutability="MUTABLE",
                encryptionConfiguration={"encryptionType": "AES256"},
                tags=ctx.tags(Name=name),
            )["repository"]
            made(repo["repositoryArn"])
        self._remember(ctx, repo)
        ctx.log(f"Created ECR repository {repo['repositoryUri']} (scan on push, encrypted)")

    def undo(self, ctx):
        ecr = ctx.aws.client("ecr")
        try:
            if self._find(ctx):
                ecr.delete_repository(repositoryName=names.repository(ctx.name), force=True)
                ctx.log(f"Deleted ECR repository {names.repository(ctx.name)} and its images")
        except StepError:
            pass  # not ours: leave it alone
        ctx.store.mark_deleted(ctx.name, "ecr:repository")
        ctx.forget(Repository)


class BuildImage(Step):
    id = "build-image"

    def cli(self, ctx):
        return list(image_plan(ctx).cli)

    def _state_ok(self, ctx) -> bool:
        img, host = ctx.load(BuiltImage), ctx.load(HostRecord)
        return bool(img and host) and img.hash == image_hash(ctx) and img.instance_id == host.instance_id

    def check(self, ctx):
        if not self._state_ok(ctx):
            return False
        from .remote_job import host_run

        probe = image_plan(ctx).probe
        r = host_run(ctx, lambda conn: conn.run(probe, check=False), timeout=60)
        return (r.stdout or "").strip() == image_hash(ctx)

    def apply(self, ctx):
        plan = image_plan(ctx)
        if plan.needs_registry and not ctx.load(Repository):
            raise StepError("No ECR repository recorded: run the ecr-repo step first")
        ensure_host_ready(ctx)  # docker there and usable, or the commands that make it so
        k = kind(ctx)
        if source(ctx) != ctx.config["container"]["source"]:
            ctx.log("container.source = prebuilt applies to the Neuron and GPU images; the CPU image is built")
        ctx.log(plan.note)
        files = container_files(k)

        async def ship(conn):
            await upload(conn, files, IMAGE_DIR)
            await upload(conn, payload_files(), f"{IMAGE_DIR}/payload")

        code, tail = run_job(ctx, "build-image", plan.script, before=ship)
        if code != 0:
            raise StepError(f"The image build failed (exit {code}): {' | '.join(tail[-3:])[-400:]}")
        host = ctx.load(HostRecord)
        ctx.save(
            BuiltImage(
                uri=image_uri(ctx),
                hash=image_hash(ctx),
                kind=k,
                runtime=ctx.runtime.kind,
                instance_id=host.instance_id if host else None,
            )
        )
        ctx.log(f"Ready: {image_uri(ctx)}" if plan.needs_registry else "Ready: the job virtualenv")

    def undo(self, ctx):
        ctx.forget(BuiltImage)  # it lives on the instance, which terminate removes


class PushImage(Step):
    id = "push-image"

    def cli(self, ctx):
        uri = image_uri(ctx)
        plan = ctx.runtime.push_plan(uri)
        if plan.script is None:
            return [f"# {plan.note}"]
        return [f"aws ecr get-login-password --region {ctx.region} | {plan.login}", f"docker push {uri}"]

    def check(self, ctx):
        pushed = ctx.load(PushedImage)
        if pushed is None or pushed.hash != image_hash(ctx):
            return False
        if not pushed.pushed:
            return True  # the runtime had nothing to push
        try:
            images = ctx.aws.client("ecr").describe_images(
                repositoryName=names.repository(ctx.name), imageIds=[{"imageTag": image_tag(ctx)}]
            )
        except ClientError as e:
            if error_code(e) in ("ImageNotFoundException", "RepositoryNotFoundException"):
                return False
            raise
        return bool(images["imageDetails"])

    def apply(self, ctx):
        image = ctx.load(BuiltImage)
        if not image:
            raise StepError("No image recorded: run the build-image step first")
        plan = ctx.runtime.push_plan(image.uri)
        if plan.script is None:
            ctx.save(PushedImage(uri=image.uri, hash=image.hash, pushed=False))
            ctx.log(plan.note)
            return
        registry, password = ecr_password(ctx.aws.client("ecr"))

        async def login(conn):
            r = await conn.run(plan.login, input=password + "\n", check=False)
            if r.exit_status != 0:
                raise StepError(f"docker login to {registry} failed: {(r.stderr or r.stdout or '').strip()[:300]}")
            ctx.log(f"docker logged in to {registry} (password passed on stdin)")

        code, tail = run_job(ctx, "push-image", plan.script, before=login)
        if code != 0:
            raise StepError(f"docker push failed (exit {code}): {' | '.join(tail[-3:])[-400:]}")
        ctx.save(PushedImage(uri=image.uri, hash=image.hash, pushed=True))
        ctx.log(plan.note)

    def undo(self, ctx):
        pushed = ctx.load(PushedImage)
        if pushed and pushed.pushed:
            try:
                ctx.aws.client("ecr").batch_delete_image(
                    repositoryName=names.repository(ctx.name), imageIds=[{"imageTag": pushed.uri.rsplit(":", 1)[1]}]
                )
                ctx.log(f"Deleted image {pushed.uri} from ECR")
            except ClientError as e:
                if error_code(e) != "RepositoryNotFoundException":
                    raise
        ctx.forget(PushedImage)
