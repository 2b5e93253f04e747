"""Steps `keypair`, `security-group` and `instance-profile`: how you (and the instance) get in."""

from __future__ import annotations

import json
from pathlib import Path

from .. import faultpoints
from ..private_files import write_private
from ..aws import error_code, inventory
from .base import Step, StepContext, StepError

def key_name(ctx: StepContext) -> str:
    return ctx.prefix


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
            f"ssh-keygen -t ed25519 -N '' -C {key_name(ctx)} -f {key_path(ctx)}",
            f"aws ec2 import-key-pair --key-name {key_name(ctx)} --public-key-material fileb://{key_path(ctx)}.pub "
            f"--tag-specifications 'ResourceType=key-pair,Tags=[{{Key=inflab:session,Value={ctx.name}}}]'",
        ]

    def _described(self, ctx) -> dict | None:
        try:
            return ctx.aws.client("ec2").describe_key_pairs(KeyNames=[key_name(ctx)])["KeyPairs"][0]
        except Exception as e:
            if error_code(e) == "InvalidKeyPair.NotFound":
                return None
            raise

    def check(self, ctx):
        """Done only if the key file holds the private half of the key pair AWS has now."""
        known = ctx.get("keypair") or {}
        pair = self._described(ctx)
        return (pair is not None and bool(known) and pair.get("KeyFingerprint") == known.get("fingerprint")
                and public_half(key_path(ctx)) == known.get("public_key"))

    def apply(self, ctx):
        import asyncssh

        ec2 = ctx.aws.client("ec2")
        path = key_path(ctx)
        if self._described(ctx):
            # A pair whose private half is not the file here (lost, cut short, or made elsewhere) is useless.
            ctx.log(f"Key pair {key_name(ctx)} exists but {path.name} does not hold its private key: replacing both")
            ec2.delete_key_pair(KeyName=key_name(ctx))
        key = asyncssh.generate_private_key("ssh-ed25519", comment=key_name(ctx))
        public = key.export_public_key("openssh")
        write_private(path, key.export_private_key("openssh"))  # exclusive temporary file, 0600, then renamed
        faultpoints.hit("keypair:key-written")
        rid = ctx.intend("ec2:key-pair", key_name(ctx))
        resp = ec2.import_key_pair(KeyName=key_name(ctx), PublicKeyMaterial=public, TagSpecifications=[ctx.tag_spec("key-pair")])
        ctx.put("keypair", {"fingerprint": resp.get("KeyFingerprint", ""), "public_key": public.decode().split()[1]})
        ctx.store.mark_created(rid, resp.get("KeyPairId", key_name(ctx)), {"fingerprint": resp.get("KeyFingerprint", "")})
        ctx.log(f"Made an ed25519 key here ({path}, mode 600) and imported its public half as key pair {key_name(ctx)}; "
                "the private key never leaves this machine")

    def undo(self, ctx):
        if self._described(ctx):
            ctx.aws.client("ec2").delete_key_pair(KeyName=key_name(ctx))
            ctx.log(f"Deleted key pair {key_name(ctx)}")
        key_path(ctx).unlink(missing_ok=True)
        ctx.store.delete(ctx.name, "keypair")
        ctx.store.mark_deleted(ctx.name, "ec2:key-pair")


def caller_cidr(ctx: StepContext) -> str:
    """Where SSH may come from: the config's CIDR, else what the runtime says (your public IP /32)."""
    return ctx.config["instance"]["ssh_cidr"] or ctx.runtime.caller_cidr()


def sg_name(ctx: StepContext) -> str:
    return f"{ctx.prefix}-ssh"


class SecurityGroup(Step):
    id = "security-group"

    def cli(self, ctx):
        cidr = ctx.get("ssh_cidr") or "<your-ip>/32"
        vpc = (ctx.get("preflight") or {}).get("vpc_id", "<vpc-id>")
        return [
            f"aws ec2 create-security-group --group-name {sg_name(ctx)} --vpc-id {vpc} "
            f"--description 'inflab SSH for session {ctx.name}'",
            f"aws ec2 authorize-security-group-ingress --group-id <sg-id> --protocol tcp --port 22 --cidr {cidr}",
        ]

    def _find(self, ctx) -> dict | None:
        groups = [g for g in inventory.security_groups(ctx.aws, ctx.name) if g["GroupName"] == sg_name(ctx)]
        return groups[0] if groups else None

    @staticmethod
    def _ssh_cidrs(group: dict) -> set[str]:
        out = set()
        for perm in group.get("IpPermissions", []):
            if perm.get("IpProtocol") == "tcp" and perm.get("FromPort") == 22 and perm.get("ToPort") == 22:
                out |= {r["CidrIp"] for r in perm.get("IpRanges", [])}
        return out

    def check(self, ctx):
        group = self._find(ctx)
        if not group:
            return False
        cidr = caller_cidr(ctx)
        return self._ssh_cidrs(group) == {cidr}

    def apply(self, ctx):
        ec2 = ctx.aws.client("ec2")
        cidr = caller_cidr(ctx)
        ctx.put("ssh_cidr", cidr)
        group = self._find(ctx)
        if group is None:
            vpc_id = ctx.get("preflight")["vpc_id"]
            rid = ctx.intend("ec2:security-group", sg_name(ctx))
            gid = ec2.create_security_group(
                GroupName=sg_name(ctx),
                Description=f"inflab SSH for session {ctx.name}",
                VpcId=vpc_id,
                TagSpecifications=[ctx.tag_spec("security-group")],
            )["GroupId"]
            ctx.store.mark_created(rid, gid)
            ctx.log(f"Created security group {sg_name(ctx)} ({gid}) in {vpc_id}")
            group = ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]
        gid = group["GroupId"]
        ctx.put("security_group_id", gid)
        stale = self._ssh_cidrs(group) - {cidr}
        if stale:
            ec2.revoke_security_group_ingress(
                GroupId=gid,
                IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": c} for c in sorted(stale)]}],
            )
            ctx.log(f"Removed SSH access from {', '.join(sorted(stale))} (no longer your address)")
        if cidr not in self._ssh_cidrs(group):
            ec2.authorize_security_group_ingress(
                GroupId=gid,
                IpPermissions=[
                    {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": cidr, "Description": "inflab: SSH from you"}]}
                ],
            )
            ctx.log(f"Allowed SSH (tcp/22) from {cidr} only")

    def undo(self, ctx):
        group = self._find(ctx)
        if group:
            ec2 = ctx.aws.client("ec2")
            for attempt in range(30):  # an instance that is still shutting down keeps the group in use
                try:
                    ec2.delete_security_group(GroupId=group["GroupId"])
                    break
                except Exception as e:
                    if error_code(e) != "DependencyViolation" or attempt == 29:
                        raise
                    ctx.progress(None, "Waiting for the instance to let go of the security group…")
                    ctx.sleep(5)
            ctx.log(f"Deleted security group {group['GroupName']} ({group['GroupId']})")
        ctx.store.mark_deleted(ctx.name, "ec2:security-group")


def role_name(ctx: StepContext) -> str:
    return f"{ctx.prefix}-instance"


# Attached by earlier versions of the lab; access is over SSH, so a role that still has it lets go of it.
SSM_CORE = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


def results_bucket(session: str, account: str) -> str:
    """The session's S3 bucket: named exactly (3-63 characters), so no other session's name can match it."""
    return f"inflab-{session}-{account}"


def log_group(session: str) -> str:
    return f"/inflab/{session}"


def lab_access_policy(ctx: StepContext, account: str) -> dict:
    """Only what the lab needs: its own ECR repository, S3 bucket and log group, by exact name.

    No wildcard follows a session name: session ``lab`` must get nothing of session ``lab-2``.
    """
    region = ctx.region
    bucket = results_bucket(ctx.name, account)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "EcrLogin", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
            {
                "Sid": "EcrLabRepository",
                "Effect": "Allow",
                "Action": [
                    "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                    "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage",
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
                "Resource": [f"arn:aws:logs:{region}:{account}:log-group:{log_group(ctx.name)}",
                             f"arn:aws:logs:{region}:{account}:log-group:{log_group(ctx.name)}:*"],
            },
        ],
    }


def remove_role(ctx: StepContext, name: str) -> None:
    """Delete role ``name`` and the instance profile of the same name (safe when either is gone):
    the profile lets go of its roles, the role of its policies, then each is deleted."""
    iam = ctx.aws.client("iam")
    try:
        prof = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    except Exception as e:
        if error_code(e) != "NoSuchEntity":
            raise
        prof = None
    if prof:
        for r in prof.get("Roles", []):
            iam.remove_role_from_instance_profile(InstanceProfileName=name, RoleName=r["RoleName"])
        iam.delete_instance_profile(InstanceProfileName=name)
        ctx.log(f"Deleted instance profile {name}")
    try:
        iam.get_role(RoleName=name)
    except Exception as e:
        if error_code(e) == "NoSuchEntity":
            return
        raise
    for other in iam.list_instance_profiles_for_role(RoleName=name)["InstanceProfiles"]:
        iam.remove_role_from_instance_profile(InstanceProfileName=other["InstanceProfileName"], RoleName=name)
    for p in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
        iam.detach_role_policy(RoleName=name, PolicyArn=p["PolicyArn"])
    for p in iam.list_role_policies(RoleName=name)["PolicyNames"]:
        iam.delete_role_policy(RoleName=name, PolicyName=p)
    iam.delete_role(RoleName=name)
    ctx.log(f"Deleted role {name}")


class InstanceProfile(Step):
    id = "instance-profile"

    def cli(self, ctx):
        r = role_name(ctx)
        return [
            f"aws iam create-role --role-name {r} --path /inflab/ --assume-role-policy-document file://trust-ec2.json",
            f"aws iam put-role-policy --role-name {r} --policy-name inflab-lab-access --policy-document file://lab-access.json",
            f"aws iam create-instance-profile --instance-profile-name {r} --path /inflab/",
            f"aws iam add-role-to-instance-profile --instance-profile-name {r} --role-name {r}",
            f"aws iam wait instance-profile-exists --instance-profile-name {r}",
        ]

    def _profile(self, ctx) -> dict | None:
        try:
            return ctx.aws.client("iam").get_instance_profile(InstanceProfileName=role_name(ctx))["InstanceProfile"]
        except Exception as e:
            if error_code(e) == "NoSuchEntity":
                return None
            raise

    def _role_exists(self, ctx) -> bool:
        try:
            ctx.aws.client("iam").get_role(RoleName=role_name(ctx))
            return True
        except Exception as e:
            if error_code(e) == "NoSuchEntity":
                return False
            raise

    def check(self, ctx):
        prof = self._profile(ctx)
        return bool(prof) and any(r["RoleName"] == role_name(ctx) for r in prof.get("Roles", []))

    def apply(self, ctx):
        iam = ctx.aws.client("iam")
        name = role_name(ctx)
        account = (ctx.get("identity") or {}).get("account") or ctx.aws.client("sts").get_caller_identity()["Account"]
        if not self._role_exists(ctx):
            rid = ctx.intend("iam:role", name)
            role = iam.create_role(
                RoleName=name,
                Path="/inflab/",
                AssumeRolePolicyDocument=json.dumps(TRUST),
                Description=f"inflab instance role for session {ctx.name}",
                Tags=ctx.tags(),
            )["Role"]
            ctx.store.mark_created(rid, role["Arn"])
            ctx.log(f"Created role {name}")
        iam.get_waiter("role_exists").wait(RoleName=name, WaiterConfig={"Delay": 2, "MaxAttempts": 30})
        attached = [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]]
        if SSM_CORE in attached:
            iam.detach_role_policy(RoleName=name, PolicyArn=SSM_CORE)
            ctx.log("Detached AmazonSSMManagedInstanceCore (the lab reaches the instance over SSH only)")
        iam.put_role_policy(RoleName=name, PolicyName="inflab-lab-access", PolicyDocument=json.dumps(lab_access_policy(ctx, account)))
        ctx.log("Gave the role one inline policy, inflab-lab-access: this session's ECR repository, S3 bucket and log "
                "group, by exact name, and nothing else")
        ctx.check_cancel()
        prof = self._profile(ctx)
        if prof is None:
            rid = ctx.intend("iam:instance-profile", name)
            prof = iam.create_instance_profile(InstanceProfileName=name, Path="/inflab/", Tags=ctx.tags())["InstanceProfile"]
            ctx.store.mark_created(rid, prof["Arn"])
            ctx.log(f"Created instance profile {name}")
        if not any(r["RoleName"] == name for r in prof.get("Roles", [])):
            iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
        ctx.progress(None, "Waiting for IAM to publish the instance profile…")
        iam.get_waiter("instance_profile_exists").wait(InstanceProfileName=name, WaiterConfig={"Delay": 2, "MaxAttempts": 30})
        ctx.put("instance_profile", {"name": name, "arn": prof["Arn"]})

    def undo(self, ctx):
        remove_role(ctx, role_name(ctx))
        ctx.store.mark_deleted(ctx.name, "iam:instance-profile")
        ctx.store.mark_deleted(ctx.name, "iam:role")
