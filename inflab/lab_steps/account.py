"""Steps `credentials` and `preflight`: who am I, and can this region run the instance?"""

from __future__ import annotations

import fnmatch
from datetime import datetime, timezone

from botocore.exceptions import ClientError

from .. import accelerators
from ..aws import error_code, error_message
from .base import Step, StepContext, StepError
from .records import Identity, MachineImage, PreflightFindings, Subnet

NO_CREDENTIALS = (
    "No AWS credentials found. Run `aws configure` (or `aws sso login`, or set AWS_PROFILE), "
    "or try the lab without an account: inflab new --sandbox"
)


def sso_expired(exc: BaseException, profile: str = "") -> str | None:
    """The line to show when ``exc`` says the AWS SSO session is missing or expired (at the first
    step or any later one), or None."""
    from botocore.exceptions import SSOError, TokenRetrievalError

    if not isinstance(exc, (SSOError, TokenRetrievalError)):
        return None
    login = "aws sso login" + (f" --profile {profile}" if profile else "")
    return f"Your AWS SSO session has expired or was never started ({exc}): run `{login}`, then run this step again"


class Credentials(Step):
    id = "credentials"

    def cli(self, ctx):
        return ["aws sts get-caller-identity"]

    def _identity(self, ctx: StepContext) -> dict:
        from botocore.exceptions import NoCredentialsError, NoRegionError, ProfileNotFound

        try:
            return ctx.aws.client("sts").get_caller_identity()
        except NoCredentialsError:
            raise StepError(NO_CREDENTIALS) from None
        except ProfileNotFound as e:
            raise StepError(f"aws.profile: {e}. Check ~/.aws/config, or use --sandbox") from None
        except NoRegionError:
            raise StepError("aws.region: no region set") from None
        except Exception as e:
            if (expired := sso_expired(e, ctx.config.aws.profile)) is not None:
                raise StepError(expired) from None
            code = error_code(e)
            if code in ("InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken", "UnrecognizedClientException"):
                raise StepError(
                    f"AWS rejected your credentials ({code}): {error_message(e)}. Run `aws configure` to fix them"
                ) from None
            raise

    def check(self, ctx):
        known = ctx.load(Identity)
        if not known:
            return False
        ident = self._identity(ctx)
        return ident["Account"] == known.account

    def apply(self, ctx):
        ident = self._identity(ctx)
        ctx.save(Identity(account=ident["Account"], arn=ident["Arn"]))
        ctx.log(f"Signed in to {ctx.runtime.where(ident['Account'])} as {ident['Arn']}")


class Preflight(Step):
    id = "preflight"

    def cli(self, ctx):
        it = ctx.config.instance_type
        cmds = [
            f"aws ec2 describe-instance-type-offerings --region {ctx.region} --location-type availability-zone "
            f"--filters Name=instance-type,Values={it} --query 'InstanceTypeOfferings[].Location'",
            "aws ec2 describe-subnets --filters Name=default-for-az,Values=true",
        ]
        inst, image = ctx.config.instance, ctx.config.host_image
        if inst.ami:
            cmds.append(f"aws ec2 describe-images --image-ids {inst.ami}")
        elif image.ssm_parameter:
            cmds.append(f"aws ssm get-parameter --name {image.ssm_parameter} --query Parameter.Value")
        else:
            cmds.append(
                f"aws ec2 describe-images --owners amazon --filters 'Name=name,Values={image.name}' "
                "--query 'Images[].[CreationDate,ImageId,Name,Description]'"
                + (
                    "  # the newest whose Description names Neuron SDK 2.26.0 or older; add --include-deprecated "
                    "when none is current"
                    if image.max_neuron_sdk
                    else ""
                )
            )
        return cmds

    def _fingerprint(self, ctx):
        inst = ctx.config["instance"]
        image = ctx.config.host_image
        return [ctx.region, inst["type"], inst["ami"], image.ssm_parameter, image.name, inst["subnet_id"]]

    def check(self, ctx):
        pf = ctx.load(PreflightFindings)
        if not pf or pf.fingerprint != tuple(self._fingerprint(ctx)):
            return False
        # What was found must still be there (a default VPC can be deleted and remade).
        try:
            ctx.aws.client("ec2").describe_subnets(SubnetIds=[s.id for s in pf.subnets])
        except ClientError as e:
            if error_code(e).startswith("InvalidSubnetID"):
                ctx.log("The subnets found earlier are gone: looking again")
                return False
            raise
        return True

    def _resolve_ami(self, ctx) -> MachineImage:
        """The AMI to launch: the one named, the one a public parameter names, or the newest Amazon
        image named like the pattern — for Inf1 only images whose Neuron SDK still supports it
        (deprecated ones too, when no current one does: AWS hides them from a plain look-up)."""
        ec2 = ctx.aws.client("ec2")
        inst, image_spec = ctx.config.instance, ctx.config.host_image
        key = (
            "instance.ami"
            if inst.ami
            else "instance.ami_ssm_parameter"
            if inst.ami_ssm_parameter
            else "instance.ami_name"
        )
        if not (inst.ami or inst.ami_ssm_parameter or inst.ami_name):
            key = f"the default AMI of {ctx.config.instance_type} ({image_spec.what})"
        ami_id = inst.ami
        if not ami_id and image_spec.ssm_parameter:
            try:
                ami_id = ctx.aws.client("ssm").get_parameter(Name=image_spec.ssm_parameter)["Parameter"]["Value"]
            except ClientError as e:
                if error_code(e) == "ParameterNotFound":
                    raise StepError(
                        f"{key}: the public parameter {image_spec.ssm_parameter} does not exist in {ctx.region}"
                    ) from None
                raise
            ctx.log(f"AMI from the public parameter {image_spec.ssm_parameter}: {ami_id}")
        if ami_id:
            try:
                images = ec2.describe_images(ImageIds=[ami_id])["Images"]  # named by id: deprecated ones too
            except ClientError as e:
                if error_code(e) in ("InvalidAMIID.NotFound", "InvalidAMIID.Malformed"):
                    images = []
                else:
                    raise
            if not images:
                raise StepError(f"{key}: {ami_id} is not available in {ctx.region}")
            image = images[0]
            self._check_sdk(ctx, key, image, image_spec.max_neuron_sdk)
        else:
            image = self._newest_by_name(ctx, ec2, key, image_spec)
        sdk = accelerators.neuron_sdk(image.get("Description"))
        when = image.get("DeprecationTime") or ""
        if when and when <= datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"):
            ctx.log(
                f"Note: {image['ImageId']} was deprecated on {when[:10]} (AWS no longer lists it by default); "
                "it still launches"
            )
        return MachineImage(
            id=image["ImageId"],
            name=image.get("Name", ""),
            root_device=image.get("RootDeviceName") or "/dev/sda1",
            neuron_sdk=accelerators.sdk_text(sdk) if sdk else "",
            user=ctx.config.login_user,
            deprecated=when,
        )

    def _check_sdk(self, ctx, key: str, image: dict, cap) -> None:
        sdk = accelerators.neuron_sdk(image.get("Description"))
        if cap and sdk and sdk > cap:
            raise StepError(
                f"{key}: {image['ImageId']} ({image.get('Name')}) carries Neuron SDK {accelerators.sdk_text(sdk)}, "
                f"whose Neuron driver no longer supports {ctx.config.instance_type} (Inf1 needs Neuron SDK "
                f"{accelerators.sdk_text(cap)} or older): leave {key.split(' ')[0] if key.startswith('instance.') else 'instance.ami'} "
                "empty to pick the newest DLAMI that does"
            )

    def _newest_by_name(self, ctx, ec2, key: str, spec) -> dict:
        pattern = spec.name
        cap = spec.max_neuron_sdk

        def usable(include_deprecated: bool) -> tuple[list[dict], int]:
            kwargs = {"IncludeDeprecated": True} if include_deprecated else {}
            found = ec2.describe_images(
                Owners=["amazon"],
                Filters=[{"Name": "name", "Values": [pattern]}, {"Name": "state", "Values": ["available"]}],
                **kwargs,
            )["Images"]
            found = [i for i in found if fnmatch.fnmatchcase(i.get("Name", ""), pattern)]
            fits = [
                i for i in found if not cap or not (sdk := accelerators.neuron_sdk(i.get("Description"))) or sdk <= cap
            ]
            return fits, len(found) - len(fits)

        images, too_new = usable(False)
        if not images:
            images, too_new = usable(True)
            if images:
                ctx.log(
                    f"No current Amazon image named {pattern!r} supports {ctx.config.instance_type}: using a deprecated "
                    "one (AWS lists deprecated images only when asked; they still launch)"
                )
        if not images:
            why = (
                f"; {too_new} match(es) carry a Neuron SDK newer than {accelerators.sdk_text(cap)}, which no longer "
                f"supports Inf1"
                if too_new
                else ""
            )
            raise StepError(
                f"{key}: no Amazon image named {pattern!r} fits {ctx.config.instance_type} in {ctx.region}{why}. "
                "Set instance.ami to an AMI id"
            )
        image = max(images, key=lambda i: i.get("CreationDate", ""))
        sdk = accelerators.neuron_sdk(image.get("Description"))
        skipped = f"; skipped {too_new} newer image(s) whose Neuron SDK no longer supports Inf1" if too_new else ""
        ctx.log(
            f"Newest Amazon image named {pattern!r}"
            + (f" with Neuron SDK {accelerators.sdk_text(cap)} or older" if cap else "")
            + f": {image['ImageId']} ({image.get('Name')}"
            + (f", Neuron SDK {accelerators.sdk_text(sdk)}" if sdk else "")
            + f"){skipped}"
        )
        return image

    def apply(self, ctx):
        ec2 = ctx.aws.client("ec2")
        it = ctx.config.instance_type
        offers = ec2.describe_instance_type_offerings(
            LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": [it]}]
        )["InstanceTypeOfferings"]
        zones = sorted({o["Location"] for o in offers})
        if not zones:
            raise StepError(
                f"instance.type: {it} is not offered in any zone of {ctx.region}. "
                "Pick a region that has it (us-east-1, us-west-2 do) or another instance type"
            )
        ctx.log(f"{it} is offered in {', '.join(zones)}")
        ctx.check_cancel()

        subnet_id = ctx.config["instance"]["subnet_id"]
        if subnet_id:
            try:
                subnets = ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"]
            except ClientError as e:
                if error_code(e).startswith("InvalidSubnetID"):
                    raise StepError(f"instance.subnet_id: {subnet_id} does not exist in {ctx.region}") from None
                raise
            if subnets[0]["AvailabilityZone"] not in zones:
                raise StepError(
                    f"instance.subnet_id: {subnet_id} is in {subnets[0]['AvailabilityZone']}, where {it} is not offered"
                )
        else:
            subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
            subnets = [s for s in subnets if s["AvailabilityZone"] in zones]
            if not subnets:
                raise StepError(
                    f"No default subnet in the zones that offer {it} ({', '.join(zones)}). "
                    "Create a default VPC (aws ec2 create-default-vpc) or set instance.subnet_id"
                )
        subnets.sort(key=lambda s: s["AvailabilityZone"])
        vpc_id = subnets[0]["VpcId"]
        ctx.log("Candidate subnets: " + ", ".join(f"{s['SubnetId']} ({s['AvailabilityZone']})" for s in subnets))
        ctx.check_cancel()
        ami = self._resolve_ami(ctx)
        ctx.log(
            f"Image: {ami.id} {ami.name} (root device {ami.root_device}"
            + (f", Neuron SDK {ami.neuron_sdk}" if ami.neuron_sdk else "")
            + f"); login user {ami.user}"
        )
        ctx.save(
            PreflightFindings(
                fingerprint=tuple(self._fingerprint(ctx)),
                zones=tuple(zones),
                vpc_id=vpc_id,
                subnets=tuple(Subnet(id=s["SubnetId"], zone=s["AvailabilityZone"]) for s in subnets),
                ami=ami,
            )
        )
