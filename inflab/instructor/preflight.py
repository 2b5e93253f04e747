"""Preflight of an instructor's room, one AWS account and region at a time, before the workshop starts.

What would stop participants on the day, found the day before: credentials that do not work,
an instance type no Availability Zone of the region offers, an on-demand vCPU quota too small
for everyone at once (new accounts often have 0 for Inf, Trn, G and P instances), and no
default VPC to launch into. Every problem becomes a :class:`Check` with one line a person can
act on; nothing here raises for an AWS error.
"""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from inflab import accelerators
from inflab.aws import error_code, error_message
from inflab.instructor.records import AccountPreflight, Check

STANDARD_QUOTA = accelerators.STANDARD_QUOTA
QUOTAS = accelerators.QUOTAS
NOT_CHECKED = "not checked: the credentials did not work"
_AwsErrors = (ClientError, BotoCoreError)


def _why(exc: Exception) -> str:
    """The error in one line: ``CODE: message`` for AWS's answers, ``Type: text`` for the rest."""
    if isinstance(exc, ClientError):
        text = f"{error_code(exc)}: {error_message(exc)}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


quota_of = accelerators.quota_of


def _buckets(instance_types: tuple[str, ...]) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for t in dict.fromkeys(instance_types):
        out.setdefault(quota_of(t), []).append(t)
    return out


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _offerings(ec2: Any, region: str, instance_types: tuple[str, ...]) -> list[Check]:
    try:
        zones = [
            z["ZoneName"]
            for z in ec2.describe_availability_zones()["AvailabilityZones"]
            if z.get("ZoneType", "availability-zone") == "availability-zone"
        ]
        of_zones = f" of {len(zones)} zones"
    except _AwsErrors:
        of_zones = " zones"  # the count is a nicety: the offerings still say where
    checks = []
    for t in dict.fromkeys(instance_types):
        try:
            offered: set[str] = set()
            pages = ec2.get_paginator("describe_instance_type_offerings").paginate(
                LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": [t]}]
            )
            for page in pages:
                offered |= {o["Location"] for o in page["InstanceTypeOfferings"] if o["InstanceType"] == t}
        except _AwsErrors as e:
            checks.append(Check("offerings", None, f"could not read where {t} is offered in {region} ({_why(e)})"))
            continue
        if not offered:
            checks.append(
                Check(
                    "offerings",
                    False,
                    f"{t} is offered in no Availability Zone of {region} — pick another region or instance type",
                )
            )
        else:
            checks.append(Check("offerings", True, f"{t}: {', '.join(sorted(offered))} ({len(offered)}{of_zones})"))
    return checks


def _vcpus(ec2: Any, instance_types: tuple[str, ...]) -> dict[str, int]:
    """vCPUs per type, from EC2, else from the lab's table of instance types."""
    found: dict[str, int] = {}
    try:
        pages = ec2.get_paginator("describe_instance_types").paginate(InstanceTypes=list(dict.fromkeys(instance_types)))
        for page in pages:
            found |= {i["InstanceType"]: i["VCpuInfo"]["DefaultVCpus"] for i in page["InstanceTypes"]}
    except _AwsErrors:
        pass  # an unknown type fails the whole call: fall back on the table
    sizes = {t: found.get(t) or accelerators.vcpus_of(t) for t in instance_types}
    return {t: n for t, n in sizes.items() if n}


def _quota_value(quotas: Any, code: str) -> tuple[float, str]:
    """The account's quota ``code`` and where the figure comes from. Quotas an account never had
    changed have no applied value (NoSuchResourceException): then AWS's default is the value."""
    try:
        return float(quotas.get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"]), ""
    except ClientError as e:
        if error_code(e) != "NoSuchResourceException":
            raise
    value = float(quotas.get_aws_default_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"])
    return value, " (AWS's default: no value applied to this account)"


def _quota(
    quotas: Any,
    *,
    code: str,
    name: str,
    types: list[str],
    vcpus: dict[str, int],
    people: int,
    region: str,
    reach: str,
    sweep: dict[str, int] | None = None,
) -> Check:
    sweep = {t: n for t, n in (sweep or {}).items() if accelerators.quota_of(t)[0] == code}
    unknown = [t for t in types if t not in vcpus]
    each = sum(vcpus.get(t, 1) for t in types) + sum(sweep.values())  # at least 1 vCPU for a type of unknown size
    need = people * each
    who = f"{people} participant{'s' if people != 1 else ''}"
    parts = [f"{t} {vcpus[t]}" for t in types if t in vcpus] + [f"sweep on {t} {n}" for t, n in sweep.items()]
    sizes = " + ".join(parts)
    why = f"{who} × {sizes} vCPUs" if len(parts) == 1 else f"{who} × ({sizes}) vCPUs"
    try:
        value, source = _quota_value(quotas, code)
    except _AwsErrors as e:
        needs = f"the room needs {need} vCPUs" if not unknown else f"the vCPUs of {', '.join(unknown)} are unknown"
        if urlsplit(getattr(getattr(quotas, "meta", None), "endpoint_url", "") or "").hostname in (
            "127.0.0.1",
            "localhost",
        ):
            return Check(
                "quota",
                None,
                f"the sandbox cannot check the {name} quota {code}: its emulated account has "
                f"no EC2 quotas; on AWS this compares the account's with the room's need ({needs})",
            )
        return Check(
            "quota",
            None,
            f"could not read the {name} quota {code} ({_why(e)}); check it in the Service Quotas console: {needs}",
        )
    have = f"{name}: quota {_number(value)} vCPUs{source}"
    if value < need:
        profile = f" --profile {reach.split(' ', 1)[1]}" if reach.startswith("profile ") else ""
        needs = (
            f"the room needs {need} ({why})"
            if not unknown
            else f"the room needs at least {need} (the vCPUs of {', '.join(unknown)} are unknown)"
        )
        return Check(
            "quota",
            False,
            f"{have}, {needs} — request an increase: aws service-quotas "
            f"request-service-quota-increase --service-code ec2 --quota-code {code} "
            f"--desired-value {need} --region {region}{profile}",
        )
    if unknown:
        return Check(
            "quota",
            None,
            f"{have}; the vCPUs of {', '.join(unknown)} are unknown, so the room's need "
            f"is too: work it out by hand (each participant runs one of each type)",
        )
    return Check("quota", True, f"{have}, the room needs {need} ({why})")


def _default_vpc(ec2: Any, region: str) -> Check:
    try:
        vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    except _AwsErrors as e:
        return Check("default-vpc", None, f"could not look for the default VPC of {region} ({_why(e)})")
    if not vpcs:
        return Check(
            "default-vpc",
            False,
            f"no default VPC in {region}: the lab launches into default subnets — "
            f"create one (aws ec2 create-default-vpc --region {region}) "
            "or give each participant instance.subnet_id",
        )
    return Check("default-vpc", True, f"{vpcs[0]['VpcId']} in {region}")


def preflight_account(
    aws: Any,
    *,
    reach: str,
    region: str,
    participants: tuple[str, ...],
    instance_types: tuple[str, ...],
    sweep: Callable[[dict[str, int]], dict[str, int]] | None = None,
    sweep_types: tuple[str, ...] = (),
) -> AccountPreflight:
    """Check one account and region for the participants who will use it (see the module's docstring).

    ``aws``: anything whose ``client(service)`` gives a boto3 client for that account and region.
    ``sweep``: vCPUs per type -> the vCPUs each participant's Batch sweep holds at once per type
    (:meth:`Roster.sweep_vcpus`), for the ``sweep_types``: they count against the same quotas.
    """
    buckets = _buckets(tuple(dict.fromkeys(instance_types + sweep_types)))

    def result(account: str, checks: list[Check]) -> AccountPreflight:
        return AccountPreflight(
            account=account, region=region, reach=reach, participants=tuple(participants), checks=tuple(checks)
        )

    def not_checked(detail: str) -> list[Check]:
        return (
            [Check("offerings", None, detail) for _ in dict.fromkeys(instance_types)]
            + [Check("quota", None, detail) for _ in buckets]
            + [Check("default-vpc", None, detail)]
        )

    try:
        me = aws.client("sts").get_caller_identity()
        account = str(me["Account"])
    except _AwsErrors as e:
        return result(
            "", [Check("credentials", False, f"cannot use these credentials: {_why(e)}"), *not_checked(NOT_CHECKED)]
        )
    checks = [Check("credentials", True, f"account {account} as {me.get('Arn') or reach}")]
    try:
        ec2 = aws.client("ec2")
        quotas = aws.client("service-quotas") if buckets else None
    except _AwsErrors as e:
        return result(account, checks + not_checked(f"not checked: {_why(e)}"))
    checks += _offerings(ec2, region, instance_types)
    vcpus = _vcpus(ec2, tuple(dict.fromkeys(instance_types + sweep_types))) if buckets else {}
    held = sweep(vcpus) if sweep else {}
    for (code, name), types in buckets.items():
        checks.append(
            _quota(
                quotas,
                code=code,
                name=name,
                types=[t for t in types if t in instance_types],
                vcpus=vcpus,
                people=len(participants),
                region=region,
                reach=reach,
                sweep=held,
            )
        )
    checks.append(_default_vpc(ec2, region))
    return result(account, checks)


def _labels(participants: tuple[str, ...]) -> str:
    shown = ", ".join(participants[:5])
    more = f" +{len(participants) - 5} more" if len(participants) > 5 else ""
    return f"({shown}{more})" if participants else "(no participants)"


def summary_lines(results: list[AccountPreflight]) -> list[str]:
    """What will fail and where, before the event; then what could not be told; then how many accounts are ready.

    An account whose credentials failed shows that one line: its other checks were not made.
    """
    if not results:
        return ["No accounts to check"]

    def where(r: AccountPreflight) -> str:
        return f"{r.region} {r.account or r.reach} {_labels(r.participants)}"

    lines = [f"WILL FAIL  {where(r)}: {c.detail}" for r in results for c in r.failing]
    lines += [
        f"UNKNOWN    {where(r)}: {c.detail}"
        for r in results
        for c in r.unknown
        if not any(f.name == "credentials" for f in r.failing)
    ]
    ready = sum(not r.failing for r in results)
    lines.append(f"{ready} of {len(results)} account(s) ready")
    return lines
