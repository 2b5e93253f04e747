"""Steps `keypair`, `security-group` and `instance-profile`: how you (and the instance) get in."""

from __future__ import annotations

import json
from pathlib import Path

from botocore.exceptions import ClientError

from .. import faultpoints, names
from ..aws import error_code
from ..private_files import write_private
from . import ssh_rule
from .base import Step, StepContext
from .iam_roles import remove_role
from .records import Identity, ImportedKey, InstanceProfileRef, PreflightFindings, SecurityGroupId, SshCidr


def key_path(ctx: StepContext) -> Path:
    return ctx.key_path


def public_half(path: Path) -> str | None:
    """The OpenSSH public key of the private key file at ``path``, or None if it is missing or unreadable."""
    import asyncssh

    try:
        return asyncssh.read_private_key(str(path)).export_public_key("openssh").decode().split()[1]
    except (OSError, ValueError, asyncssh.KeyImportError):
        return None


class KeyPair(Step):
    """The key is made here and only its public half goes to AWS: no AWS ever holds the private key."""

    id = "keypair"

    def cli(self, ctx):
        return [
            f"ssh-keygen -t ed25519 -N '' -C {names.key_pair(ctx.name)} -f {key_path(ctx)}",
            f"aws ec2 import-key-pair --key-name {names.key_pair(ctx.name)} --public-key-material fileb://{key_path(ctx)}.pub "
            f"--tag-specifications 'ResourceType=key-pair,Tags=[{{Key=inflab:session,Value={ctx.name}}}]'",
        ]

    def _described(self, ctx) -> dict | None:
        try:
            return ctx.aws.client("ec2").describe_key_pairs(KeyNames=[names.key_pair(ctx.name)])["KeyPairs"][0]
        except ClientError as e:
            if error_code(e) == "InvalidKeyPair.NotFound":
                return None
            raise

    def check(self, ctx):
        """Done only if the key file holds the private half of the key pair AWS has now."""
        known = ctx.load(ImportedKey)
        pair = self._described(ctx)
        return (
            pair is not None
            and known is not None
            and pair.get("KeyFingerprint") == known.fingerprint
            and public_half(key_path(ctx)) == known.public_key
        )

    def apply(self, ctx):
        import asyncssh

        ec2 = ctx.aws.client("ec2")
        path = key_path(ctx)
        if self._described(ctx):
            # A pair whose private half is not the file here (lost, cut short, or made elsewhere) is useless.
            ctx.log(
                f"Key pair {names.key_pair(ctx.name)} exists but {path.name} does not hold its private key: replacing both"
            )
            ec2.delete_key_pair(KeyName=names.key_pair(ctx.name))
        key = asyncssh.generate_private_key("ssh-ed25519", comment=names.key_pair(ctx.name))
        public = key.export_public_key("openssh")
        write_private(path, key.export_private_key("openssh"))  # exclusive temporary file, 0600, then renamed
        faultpoints.hit("keypair:key-written")
        with ctx.creating("ec2:key-pair", names.key_pair(ctx.name)) as made:
            resp = ec2.import_key_pair(
                KeyName=names.key_pair(ctx.name), PublicKeyMaterial=public, TagSpecifications=[ctx.tag_spec("key-pair")]
            )
            ctx.save(ImportedKey(fingerprint=resp.get("KeyFingerprint", ""), public_key=public.decode().split()[1]))
            made(resp.get("KeyPairId", names.key_pair(ctx.name)), {"fingerprint": resp.get("KeyFingerprint", "")})
        ctx.log(
            f"Made an ed25519 key here ({path}, mode 600) and imported its public half as key pair {names.key_pair(ctx.name)}; "
            "the private key never leaves this machine"
        )

    def undo(self, ctx):
        if self._described(ctx):
            ctx.aws.client("ec2").delete_key_pair(KeyName=names.key_pair(ctx.name))
            ctx.log(f"Deleted key pair {names.key_pair(ctx.name)}")
        key_path(ctx).unlink(missing_ok=True)
        ctx.forget(ImportedKey)
        ctx.store.mark_deleted(ctx.name, "ec2:key-pair")


class SecurityGroup(Step):
    id = "security-group"

    def cli(self, ctx):
        known, pf = ctx.load(SshCidr), ctx.load(PreflightFindings)
        cidr = known.value if known else "<your-ip>/32"
        vpc = pf.vpc_id if pf else "<vpc-id>"
        return [
            f"aws ec2 create-security-group --group-name {names.ssh_security_group(ctx.name)} --vpc-id {vpc} "
            f"--description 'inflab SSH for session {ctx.name}'",
            f"aws ec2 authorize-security-group-ingress --group-id <sg-id> --protocol tcp --port 22 --cidr {cidr}",
        ]

    def check(self, ctx):
        return ssh_rule.current(ctx)

    def apply(self, ctx):
        ec2 = ctx.aws.client("ec2")
        group = ssh_rule.find_group(ctx)
        if group is None:
            vpc_id = ctx.require(PreflightFindings).vpc_id
            with ctx.creating("ec2:security-group", names.ssh_security_group(ctx.name)) as made:
                gid = ec2.create_security_group(
                    GroupName=names.ssh_security_group(ctx.name),
                    Description=f"inflab SSH for session {ctx.name}",
                    VpcId=vpc_id,
                    TagSpecifications=[ctx.tag_spec("security-group")],
                )["GroupId"]
                made(gid)
            ctx.log(f"Created security group {names.ssh_security_group(ctx.name)} ({gid}) in {vpc_id}")
            group = ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]
        ctx.save(SecurityGroupId(value=group["GroupId"]))
        ssh_rule.fit(ctx, group)

    def undo(self, ctx):
        group = ssh_rule.find_group(ctx)
        if group:
            ec2 = ctx.aws.client("ec2")
            for attempt in range(30):  # an instance that is still shutting down keeps the group in use
                try:
                    ec2.delete_security_group(GroupId=group["GroupId"])
                    break
                except ClientError as e:
                    if error_code(e) != "DependencyViolation" or attempt == 29:
                        raise
                    ctx.progress(None, "Waiting for the instance to let go of the security group…")
                    ctx.sleep(5)
            ctx.log(f"Deleted security group {group['GroupName']} ({group['GroupId']})")
        ctx.store.mark_deleted(ctx.name, "ec2:security-group")


# Attached by earlier versions of the lab; access is over SSH, so a role that still has it lets go of it.
SSM_CORE = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


def lab_access_policy(ctx: StepContext, account: str) -> dict:
    """Only what the lab needs: its own ECR repository, S3 bucket and log group, by exact name.

    No wildcard follows a session name: session ``lab`` must get nothing of session ``lab-2``.
    """
    region = ctx.region
    bucket = names.results_bucket(ctx.name, account)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "EcrLogin", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
            {
                "Sid": "EcrLabRepository",
                "Effect": "Allow",
                "Action": [
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                    "ecr:InitiateLayerUpload",
                    "ecr:UploadLayerPart",
                    "ecr:CompleteLayerUpload",
                    "ecr:PutImage",
                ],
                "Resource": f"arn:aws:ecr:{region}:{account}:repository/{ctx.prefix}",
            },
            {
                "Sid": "S3LabBucket",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
            },
            {
                "Sid": "LabLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": [
                    f"arn:aws:logs:{region}:{account}:log-group:{names.log_group(ctx.name)}",
                    f"arn:aws:logs:{region}:{account}:log-group:{names.log_group(ctx.name)}:*",
                ],
            },
        ],
    }


class InstanceProfile(Step):
    id = "instance-profile"

    def cli(self, ctx):
        r = names.instance_role(ctx.name)
        return [
            f"aws iam create-role --role-name {r} --path /inflab/ --assume-role-policy-document file://trust-ec2.json",
            f"aws iam put-role-policy --role-name {r} --policy-name inflab-lab-access --policy-document file://lab-access.json",
            f"aws iam create-instance-profile --instance-profile-name {r} --path /inflab/",
            f"aws iam add-role-to-instance-profile --instance-profile-name {r} --role-name {r}",
            f"aws iam wait instance-profile-exists --instance-profile-name {r}",
        ]

    def _profile(self, ctx) -> dict | None:
        try:
            return ctx.aws.client("iam").get_instance_profile(InstanceProfileName=names.instance_role(ctx.name))[
                "InstanceProfile"
            ]
        except ClientError as e:
            if error_code(e) == "NoSuchEntity":
                return None
            raise

    def _role_exists(self, ctx) -> bool:
        try:
            ctx.aws.client("iam").get_role(RoleName=names.instance_role(ctx.name))
            return True
        except ClientError as e:
            if error_code(e) == "NoSuchEntity":
                return False
            raise

    def check(self, ctx):
        prof = self._profile(ctx)
        return bool(prof) and any(r["RoleName"] == names.instance_role(ctx.name) for r in prof.get("Roles", []))

    def apply(self, ctx):
        iam = ctx.aws.client("iam")
        name = names.instance_role(ctx.name)
        identity = ctx.load(Identity)
        account = (identity.account if identity else "") or ctx.aws.client("sts").get_caller_identity()["Account"]
        if not self._role_exists(ctx):
            with ctx.creating("iam:role", name) as made:
                role = iam.create_role(
                    RoleName=name,
                    Path="/inflab/",
                    AssumeRolePolicyDocument=json.dumps(TRUST),
                    Description=f"inflab instance role for session {ctx.name}",
                    Tags=ctx.tags(),
                )["Role"]
                made(role["Arn"])
            ctx.log(f"Created role {name}")
        iam.get_waiter("role_exists").wait(RoleName=name, WaiterConfig={"Delay": 2, "MaxAttempts": 30})
        attached = [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]]
        if SSM_CORE in attached:
            iam.detach_role_policy(RoleName=name, PolicyArn=SSM_CORE)
            ctx.log("Detached AmazonSSMManagedInstanceCore (the lab reaches the instance over SSH only)")
        iam.put_role_policy(
            RoleName=name, PolicyName="inflab-lab-access", PolicyDocument=json.dumps(lab_access_policy(ctx, account))
        )
        ctx.log(
            "Gave the role one inline policy, inflab-lab-access: this session's ECR repository, S3 bucket and log "
            "group, by exact name, and nothing else"
        )
        ctx.check_cancel()
        prof = self._profile(ctx)
        if prof is None:
            with ctx.creating("iam:instance-profile", name) as made:
                prof = iam.create_instance_profile(InstanceProfileName=name, Path="/inflab/", Tags=ctx.tags())[
                    "InstanceProfile"
                ]
                made(prof["Arn"])
            ctx.log(f"Created instance profile {name}")
        if not any(r["RoleName"] == name for r in prof.get("Roles", [])):
            iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
        ctx.progress(None, "Waiting for IAM to publish the instance profile…")
        iam.get_waiter("instance_profile_exists").wait(
            InstanceProfileName=name, WaiterConfig={"Delay": 2, "MaxAttempts": 30}
        )
        ctx.save(InstanceProfileRef(name=name, arn=prof["Arn"]))

    def undo(self, ctx):
        remove_role(ctx, names.instance_role(ctx.name))
        ctx.store.mark_deleted(ctx.name, "iam:instance-profile")
        ctx.store.mark_deleted(ctx.name, "iam:role")
