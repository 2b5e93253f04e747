"""Steps `launch-template`, `launch` and `wait-running`: the instance itself."""

from __future__ import annotations

import secrets

from botocore.exceptions import ClientError

from .. import accelerators, names
from ..aws import error_code, error_message, inventory, tag_dict
from .base import Step, StepContext, StepError, WaitFailed
from .records import HostRecord, LaunchedInstance, PinnedHostKey, PreflightFindings, SecurityGroupId, Subnet

CAPACITY_ERRORS = {"InsufficientInstanceCapacity", "Unsupported", "InsufficientCapacity"}
QUOTA_ERRORS = {"InstanceLimitExceeded", "VcpuLimitExceeded", "InsufficientFreeAddressesInSubnet"}
PROFILE_NOT_READY = "Invalid IAM Instance Profile"


def metadata_options() -> dict:
    # IMDSv2 only: a token is required for every metadata call.
    return {"HttpTokens": "required", "HttpEndpoint": "enabled", "HttpPutResponseHopLimit": 2}


class LaunchTemplate(Step):
    id = "launch-template"

    def cli(self, ctx):
        return [
            f"aws ec2 create-launch-template --launch-template-name {names.launch_template(ctx.name)} "
            "--launch-template-data file://launch-template.json",
            f"aws ec2 describe-launch-template-versions --launch-template-name {names.launch_template(ctx.name)}",
        ]

    def data(self, ctx) -> dict:
        pf, group = ctx.load(PreflightFindings), ctx.load(SecurityGroupId)
        inst = ctx.config["instance"]
        return {
            "ImageId": pf.ami.id if pf else "<ami-id>",
            "InstanceType": inst["type"],
            "KeyName": names.key_pair(ctx.name),
            "SecurityGroupIds": [group.value if group else "<sg-id>"],
            "IamInstanceProfile": {"Name": names.instance_role(ctx.name)},
            "MetadataOptions": metadata_options(),
            "BlockDeviceMappings": [
                {
                    "DeviceName": pf.ami.root_device if pf else "/dev/sda1",
                    "Ebs": {
                        "VolumeSize": inst["volume_size_gb"],
                        "VolumeType": inst["volume_type"],
                        "Encrypted": True,
                        "DeleteOnTermination": True,
                    },
                }
            ],
            "TagSpecifications": [ctx.tag_spec("instance"), ctx.tag_spec("volume")],
        }

    def _find(self, ctx) -> dict | None:
        found = [
            t
            for t in inventory.launch_templates(ctx.aws, ctx.name)
            if t["LaunchTemplateName"] == names.launch_template(ctx.name)
        ]
        return found[0] if found else None

    def check(self, ctx):
        return self._find(ctx) is not None

    def apply(self, ctx):
        if not ctx.load(PreflightFindings) or not ctx.load(SecurityGroupId):
            raise StepError("Run the preflight and security-group steps first")
        ec2 = ctx.aws.client("ec2")
        with ctx.creating("ec2:launch-template", names.launch_template(ctx.name)) as made:
            lt = ec2.create_launch_template(
                LaunchTemplateName=names.launch_template(ctx.name),
                VersionDescription=f"inflab session {ctx.name}",
                LaunchTemplateData=self.data(ctx),
                TagSpecifications=[ctx.tag_spec("launch-template")],
            )["LaunchTemplate"]
            made(lt["LaunchTemplateId"])
        ctx.log(
            f"Created launch template {names.launch_template(ctx.name)} ({lt['LaunchTemplateId']}): {ctx.config.instance_type}, "
            f"IMDSv2 required, {ctx.config['instance']['volume_size_gb']} GB encrypted {ctx.config['instance']['volume_type']}"
        )

    def undo(self, ctx):
        t = self._find(ctx)
        if t:
            ctx.aws.client("ec2").delete_launch_template(LaunchTemplateId=t["LaunchTemplateId"])
            ctx.log(f"Deleted launch template {t['LaunchTemplateName']}")
        ctx.store.mark_deleted(ctx.name, "ec2:launch-template")


def client_token(ctx: StepContext, subnet_id: str) -> tuple[str, int | None]:
    """The ClientToken for a launch attempt in ``subnet_id``, and its ledger record if one is open.

    A fresh token per attempt: EC2 refuses a token whose instance was terminated
    (IdempotentInstanceTerminated), e.g. by the console or an instructor's cleanup. The token is
    written to the ledger before the call, so after a crash between the call and its answer the
    rerun asks again with the same token and gets the instance that call started, not a second one.
    """
    for r in reversed(ctx.store.ledger(ctx.name, live_only=True)):
        if r.kind == "ec2:instance" and r.status == "intended" and r.detail.get("subnet") == subnet_id:
            return r.name, r.id  # asked, never answered
    return f"inflab-{secrets.token_hex(16)}", None


class Launch(Step):
    id = "launch"

    def cli(self, ctx):
        pf = ctx.load(PreflightFindings)
        subnets = (pf.subnets if pf else ()) or (Subnet(id="<subnet-id>", zone=""),)
        return [
            f"aws ec2 run-instances --launch-template LaunchTemplateName={names.launch_template(ctx.name)} "
            f"--subnet-id {subnets[0].id} --count 1 --client-token <token> "
            "--metadata-options HttpTokens=required,HttpEndpoint=enabled",
        ]

    def check(self, ctx):
        live = inventory.instances(ctx.aws, ctx.name, ["pending", "running"])
        if live:
            ctx.save(LaunchedInstance(id=live[0]["InstanceId"], zone=live[0]["Placement"]["AvailabilityZone"]))
            return True
        return False

    def apply(self, ctx, *, after_zone: str | None = None):
        """Launch in the first zone with capacity (``after_zone``: only the zones after that one)."""
        ec2 = ctx.aws.client("ec2")
        subnets = ctx.require(PreflightFindings).subnets
        if after_zone is not None:
            zones = [s.zone for s in subnets]
            subnets = subnets[zones.index(after_zone) + 1 :] if after_zone in zones else subnets
            if not subnets:
                raise StepError(
                    f"EC2 could not keep the {ctx.config.instance_type} it started in {after_zone}, and no zone "
                    f"after it is left to try in {ctx.region}. Run the launch step again in a few minutes, or "
                    "choose another region or instance type"
                )
        failed: list[str] = []
        for i, sub in enumerate(subnets):
            ctx.check_cancel()
            ctx.progress(i / len(subnets), f"Launching in {sub.zone}…")
            try:
                inst = self._launch_in(ctx, ec2, sub)
            except ClientError as e:
                code = error_code(e)
                if code in CAPACITY_ERRORS:
                    failed.append(f"{sub.zone} ({code})")
                    ctx.log(f"No {ctx.config.instance_type} capacity in {sub.zone} ({code}); trying the next zone")
                    continue
                if code in QUOTA_ERRORS:
                    quota_code, quota = accelerators.quota_of(ctx.config.instance_type)
                    raise StepError(
                        f"Your account's quota stops this launch ({code}: {error_message(e)}). In Service Quotas, "
                        f"request more '{quota}' vCPUs ({quota_code}) for EC2 in {ctx.region}, then run this step again"
                    ) from None
                raise
            ctx.save(LaunchedInstance(id=inst["InstanceId"], zone=sub.zone))
            ctx.log(
                f"Launched {inst['InstanceId']} ({ctx.config.instance_type}) in {sub.zone} from template {names.launch_template(ctx.name)}"
            )
            if failed:
                ctx.log(f"Zones without capacity: {', '.join(failed)}")
            return
        raise StepError(
            f"No zone of {ctx.region} had {ctx.config.instance_type} capacity: {', '.join(failed)}. "
            "Nothing was launched. Try again in a few minutes, or choose another region or instance type"
        )

    def _launch_in(self, ctx, ec2, sub: Subnet) -> dict:
        """One launch in one subnet, its token in the ledger before the call; the instance EC2 answers."""
        token, rid = client_token(ctx, sub.id)
        if rid is None:
            rid = ctx.intend("ec2:instance", token, {"subnet": sub.id, "zone": sub.zone})
        else:
            ctx.log(
                f"A launch in {sub.zone} was asked before the last stop and never answered: asking again with "
                "its client token (EC2 answers with that instance if it started, instead of starting another)"
            )
        try:
            inst = self._run(ctx, ec2, sub, token)
        except Exception as e:
            ctx.store.mark_deleted(ctx.name, "ec2:instance", token)
            if error_code(e) != "IdempotentInstanceTerminated":
                raise
            ctx.log(f"The instance that launch started was terminated since: launching a new one in {sub.zone}")
            return self._launch_in(ctx, ec2, sub)  # the record is closed: a fresh token
        ctx.store.mark_created(rid, inst["InstanceId"], {"subnet": sub.id, "zone": sub.zone})
        return inst

    def _run(self, ctx, ec2, sub, token) -> dict:
        for attempt in range(12):
            try:
                return ec2.run_instances(
                    LaunchTemplate={"LaunchTemplateName": names.launch_template(ctx.name), "Version": "$Latest"},
                    SubnetId=sub.id,
                    MinCount=1,
                    MaxCount=1,
                    ClientToken=token,
                    # Also given here (same values as the template): some EC2 implementations
                    # do not copy these from the template.
                    MetadataOptions=metadata_options(),
                    IamInstanceProfile={"Name": names.instance_role(ctx.name)},
                    TagSpecifications=[ctx.tag_spec("instance"), ctx.tag_spec("volume")],
                )["Instances"][0]
            except Exception as e:
                # A new instance profile takes a few seconds to be usable by EC2.
                if error_code(e) == "InvalidParameterValue" and PROFILE_NOT_READY in error_message(e) and attempt < 11:
                    ctx.progress(None, "Waiting for IAM to propagate the instance profile…")
                    ctx.sleep(5)
                    continue
                raise
        raise AssertionError("unreachable")

    def undo(self, ctx):
        terminate_instances(ctx)


def terminate_instances(ctx: StepContext) -> list[str]:
    """Terminate every live instance of the session, wait for it, forget it. Returns the ids."""
    ec2 = ctx.aws.client("ec2")
    live = inventory.instances(ctx.aws, ctx.name)
    ids = [i["InstanceId"] for i in live]
    if ids:
        ec2.terminate_instances(InstanceIds=ids)
        ctx.log(f"Terminating {', '.join(ids)}…")
        ctx.wait_for(ec2, "instance_terminated", "Instance termination", InstanceIds=ids, delay=5)
        ctx.log(f"Terminated {', '.join(ids)}")
        for line in ctx.runtime.after_terminate(ids):
            ctx.log(f"Note: {line}")
    ctx.store.mark_deleted(ctx.name, "ec2:instance")
    ctx.forget(LaunchedInstance)
    ctx.forget(HostRecord)
    return ids


def verify_launch(ctx: StepContext, described: dict) -> None:
    """What was launched is what was asked for: IMDSv2 only, every volume encrypted."""
    iid = described["InstanceId"]
    tokens = (described.get("MetadataOptions") or {}).get("HttpTokens")
    if tokens != "required":
        raise StepError(
            f"{iid} was launched with instance metadata tokens {tokens!r}, not IMDSv2-only ('required'): "
            "terminate it (step terminate) and check the launch template"
        )
    pf = ctx.load(PreflightFindings)
    requested = {(pf.ami.root_device if pf else "") or "/dev/sda1"}
    ids = [b["Ebs"]["VolumeId"] for b in described.get("BlockDeviceMappings", []) if b.get("Ebs", {}).get("VolumeId")]
    volumes = ctx.aws.client("ec2").describe_volumes(VolumeIds=ids)["Volumes"] if ids else []
    for v in volumes:
        device = (v.get("Attachments") or [{}])[0].get("Device", "?")
        if v.get("Encrypted"):
            continue
        why = ctx.runtime.unrequested_volume(v) if device not in requested else None
        if why is None:
            raise StepError(
                f"Volume {v['VolumeId']} ({device}, {v.get('Size')} GB) of {iid} is not encrypted: "
                "terminate the instance (step terminate); the launch asked for encrypted volumes only"
            )
        ctx.log(f"Note: unencrypted volume {v['VolumeId']} ({device}, {v.get('Size')} GB) is {why}")
    ctx.log(
        f"Verified {iid}: metadata IMDSv2-only, {sum(1 for v in volumes if v.get('Encrypted'))} encrypted volume(s) as asked"
    )


# StateReason codes of an instance EC2 could not keep while it was starting: another zone may have room.
LAUNCH_CAPACITY_REASONS = {"Server.InsufficientInstanceCapacity", "Server.InternalError"}


def _instances_in(response: dict) -> list[dict]:
    return [i for r in response.get("Reservations") or [] for i in r.get("Instances") or []]


def _reason_code(response: dict) -> str:
    return next((i.get("StateReason", {}).get("Code", "") for i in _instances_in(response) if i.get("StateReason")), "")


def state_reason(response: dict) -> str:
    """Why a described instance stopped, as EC2 says it (StateReason.Message), with its state."""
    for i in _instances_in(response):
        reason = (i.get("StateReason") or {}).get("Message") or i.get("StateTransitionReason") or ""
        return i.get("State", {}).get("Name", "?") + (f": {reason}" if reason else "")
    return ""


class WaitRunning(Step):
    id = "wait-running"

    def cli(self, ctx):
        inst = ctx.load(LaunchedInstance)
        iid = inst.id if inst else "<instance-id>"
        return [
            f"aws ec2 wait instance-running --instance-ids {iid}",
            f"aws ec2 describe-instances --instance-ids {iid} --query 'Reservations[].Instances[].PublicIpAddress'",
        ]

    def _describe(self, ctx) -> dict | None:
        inst = ctx.load(LaunchedInstance)
        if not inst:
            return None
        try:
            res = ctx.aws.client("ec2").describe_instances(InstanceIds=[inst.id])["Reservations"]
        except ClientError as e:
            if error_code(e) == "InvalidInstanceID.NotFound":
                return None
            raise
        return res[0]["Instances"][0] if res else None

    def check(self, ctx):
        d = self._describe(ctx)
        host = ctx.load(HostRecord)
        return (
            bool(d)
            and d["State"]["Name"] == "running"
            and bool(d.get("PublicIpAddress"))
            and host is not None
            and host.instance_id == d["InstanceId"]
            and host.public_ip == d["PublicIpAddress"]
        )

    def apply(self, ctx):
        inst = ctx.load(LaunchedInstance)
        if not inst:
            raise StepError("No instance to wait for: run the launch step first")
        ec2 = ctx.aws.client("ec2")
        while True:
            try:
                ctx.wait_for(
                    ec2,
                    "instance_running",
                    f"Instance {inst.id} starting",
                    InstanceIds=[inst.id],
                    delay=5,
                    explain=state_reason,
                )
                break
            except WaitFailed as e:
                code = _reason_code(e.response)
                if code not in LAUNCH_CAPACITY_REASONS:
                    raise StepError(
                        f"{e}. Nothing of it is running: run the launch step again"
                        + (
                            " (check the AMI and that the account may use the volume's KMS key)"
                            if code == "Client.InternalError"
                            else ""
                        )
                    ) from None
                ctx.store.mark_deleted(ctx.name, "ec2:instance", inst.id)
                ctx.forget(LaunchedInstance)
                ctx.log(
                    f"{inst.id} died while starting in {inst.zone} ({state_reason(e.response)}): "
                    "launching in the next zone"
                )
                Launch().apply(ctx, after_zone=inst.zone)
                inst = ctx.require(LaunchedInstance)
        d = self._describe(ctx)
        ip = d.get("PublicIpAddress")
        if not ip:
            raise StepError(f"{inst.id} is running but has no public IP: its subnet does not map public addresses")
        ctx.save(
            HostRecord(
                instance_id=inst.id,
                public_ip=ip,
                zone=inst.zone,
                user=ctx.config.login_user,
                name=tag_dict(d.get("Tags")).get("Name", ""),
            )
        )
        ctx.log(f"{inst.id} is running in {inst.zone} at {ip}")
        verify_launch(ctx, d)
        if ctx.runtime.boot_note:
            ctx.log(ctx.runtime.boot_note)


class Terminate(Step):
    id = "terminate"

    def cli(self, ctx):
        inst = ctx.load(LaunchedInstance)
        iid = inst.id if inst else "<instance-id>"
        return [
            ctx.runtime.stop_plan(ctx.name).cli,
            f"aws ec2 terminate-instances --instance-ids {iid}",
            f"aws ec2 wait instance-terminated --instance-ids {iid}",
        ]

    def check(self, ctx):
        from .sagemaker_aws import leftovers

        return not inventory.instances(ctx.aws, ctx.name) and not leftovers(ctx)

    def _stop_work(self, ctx) -> None:
        """Best effort: stop the session's containers and jobs before the instance goes."""
        pin = ctx.load(PinnedHostKey)
        if not (pin and pin.fingerprint) or not ctx.load(HostRecord):
            return
        from .remote_job import host_run

        plan = ctx.runtime.stop_plan(ctx.name)
        try:
            host_run(ctx, lambda conn: conn.run(plan.command, check=False), timeout=60)
            ctx.log(f"Stopped the session's {plan.what} on the instance")
        except Exception as e:  # the instance may be gone or unreachable already: terminate anyway
            ctx.log(f"Could not reach the instance to stop its work first ({e}); terminating anyway")

    def apply(self, ctx):
        from .sagemaker_aws import teardown

        teardown(ctx, data=True)  # a SageMaker endpoint of the session is billed like an instance: it goes too
        self._stop_work(ctx)
        ids = terminate_instances(ctx)
        if not ids:
            ctx.log("No running instance for this session")
        ctx.log("Results stay in the session: inflab report " + ctx.name)

    def undo(self, ctx):
        """Nothing to put back: a terminated instance cannot return (launch makes a new one)."""
