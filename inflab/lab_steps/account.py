"""Steps `credentials` and `preflight`: who am I, and can this region run the instance?"""

from __future__ import annotations

import fnmatch

from ..aws import error_code, error_message
from .base import Step, StepContext, StepError

NO_CREDENTIALS = (
    "No AWS credentials found. Run `aws configure` (or `aws sso login`, or set AWS_PROFILE), "
    "or try the lab without an account: inflab new --sandbox"
)


class Credentials(Step):
    id = "credentials"
    title = "Check your AWS credentials"

    def cli(self, ctx):
        return ["aws sts get-caller-identity"]

    def _identity(self, ctx: StepContext) -> dict:
        from botocore.exceptions import NoCredentialsError, NoRegionError, ProfileNotFound, TokenRetrievalError

        try:
            return ctx.aws.client("sts").get_caller_identity()
        except NoCredentialsError:
            raise StepError(NO_CREDENTIALS) from None
        except ProfileNotFound as e:
            raise StepError(f"aws.profile: {e}. Check ~/.aws/config, or use --sandbox") from None
        except TokenRetrievalError:
            raise StepError("Your SSO session has expired: run `aws sso login` and try again") from None
        except NoRegionError:
            raise StepError("aws.region: no region set") from None
        except Exception as e:
            code = error_code(e)
            if code in ("InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken", "UnrecognizedClientException"):
                raise StepError(f"AWS rejected your credentials ({code}): {error_message(e)}. Run `aws configure` to fix them") from None
            raise

    def check(self, ctx):
        known = ctx.get("identity")
        if not known:
            return False
        ident = self._identity(ctx)
        return ident["Account"] == known["account"]

    def apply(self, ctx):
        ident = self._identity(ctx)
        ctx.put("identity", {"account": ident["Account"], "arn": ident["Arn"]})
        ctx.log(f"Signed in to {ctx.runtime.where(ident['Account'])} as {ident['Arn']}")


class Preflight(Step):
    id = "preflight"
    title = "Check the instance type, zones and AMI"

    def cli(self, ctx):
        it = ctx.config.instance_type
        cmds = [
            f"aws ec2 describe-instance-type-offerings --region {ctx.region} --location-type availability-zone "
            f"--filters Name=instance-type,Values={it} --query 'InstanceTypeOfferings[].Location'",
            "aws ec2 describe-subnets --filters Name=default-for-az,Values=true",
        ]
        inst = ctx.config["instance"]
        if inst["ami"]:
            cmds.append(f"aws ec2 describe-images --image-ids {inst['ami']}")
        elif inst["ami_ssm_parameter"]:
            cmds.append(f"aws ssm get-parameter --name {inst['ami_ssm_parameter']} --query Parameter.Value")
        else:
            cmds.append(f"aws ec2 describe-images --owners amazon --filters 'Name=name,Values={inst['ami_name']}'")
        return cmds

    def _fingerprint(self, ctx):
        inst = ctx.config["instance"]
        return [ctx.region, inst["type"], inst["ami"], inst["ami_ssm_parameter"], inst["ami_name"], inst["subnet_id"]]

    def check(self, ctx):
        pf = ctx.get("preflight")
        if not pf or pf.get("fingerprint") != self._fingerprint(ctx):
            return False
        # What was found must still be there (a default VPC can be deleted and remade).
        try:
            ctx.aws.client("ec2").describe_subnets(SubnetIds=[s["id"] for s in pf["subnets"]])
        except Exception as e:
            if error_code(e).startswith("InvalidSubnetID"):
                ctx.log("The subnets found earlier are gone: looking again")
                return False
            raise
        return True

    def _resolve_ami(self, ctx) -> dict:
        ec2 = ctx.aws.client("ec2")
        inst = ctx.config["instance"]
        ami_id = inst["ami"]
        if not ami_id and inst["ami_ssm_parameter"]:
            try:
                ami_id = ctx.aws.client("ssm").get_parameter(Name=inst["ami_ssm_parameter"])["Parameter"]["Value"]
            except Exception as e:
                if error_code(e) == "ParameterNotFound":
                    raise StepError(
                        f"instance.ami_ssm_parameter: {inst['ami_ssm_parameter']} does not exist in {ctx.region}"
                    ) from None
                raise
            ctx.log(f"AMI from SSM parameter {inst['ami_ssm_parameter']}: {ami_id}")
        if ami_id:
            try:
                images = ec2.describe_images(ImageIds=[ami_id])["Images"]
            except Exception as e:
                if error_code(e) in ("InvalidAMIID.NotFound", "InvalidAMIID.Malformed"):
                    images = []
                else:
                    raise
            if not images:
                raise StepError(f"instance.ami: {ami_id} is not available in {ctx.region}")
            image = images[0]
        else:
            images = ec2.describe_images(Owners=["amazon"], Filters=[{"Name": "name", "Values": [inst["ami_name"]]}])["Images"]
            images = [i for i in images if fnmatch.fnmatchcase(i.get("Name", ""), inst["ami_name"])]
            if not images:
                raise StepError(
                    f"instance.ami_name: no Amazon image matches {inst['ami_name']!r} in {ctx.region}; "
                    "set instance.ami to an AMI id"
                )
            image = max(images, key=lambda i: i.get("CreationDate", ""))
            ctx.log(f"Newest AMI matching {inst['ami_name']!r}: {image['ImageId']} ({image.get('Name')})")
        return {"id": image["ImageId"], "name": image.get("Name", ""), "root_device": image.get("RootDeviceName") or "/dev/sda1"}

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
            except Exception as e:
                if error_code(e).startswith("InvalidSubnetID"):
                    raise StepError(f"instance.subnet_id: {subnet_id} does not exist in {ctx.region}") from None
                raise
            if subnets[0]["AvailabilityZone"] not in zones:
                raise StepError(f"instance.subnet_id: {subnet_id} is in {subnets[0]['AvailabilityZone']}, where {it} is not offered")
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
        ctx.log(f"Image: {ami['id']} {ami['name']} (root device {ami['root_device']})")
        ctx.put(
            "preflight",
            {
                "fingerprint": self._fingerprint(ctx),
                "zones": zones,
                "vpc_id": vpc_id,
                "subnets": [{"id": s["SubnetId"], "zone": s["AvailabilityZone"]} for s in subnets],
                "ami": ami,
            },
        )
