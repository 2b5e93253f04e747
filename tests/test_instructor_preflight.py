"""Instructor preflight: what an instructor reads about each account before the workshop.

The emulator has no Service Quotas for EC2, so most tests answer with botocore Stubbers on
real boto3 clients; one test runs against the sandbox to see the real calls go through.
"""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ProfileNotFound
from botocore.stub import Stubber
from conftest import sandbox_aws

from inflab.instructor.preflight import NOT_CHECKED, preflight_account, quota_of, summary_lines
from inflab.instructor.records import AccountPreflight, Check

REGION = "us-west-2"
ACCOUNT = "111122223333"
ROOM = ("ana", "ben", "cy")
INF = ("L-1945791B", "Running On-Demand Inf instances")
G = ("L-DB2E81BA", "Running On-Demand G and VT instances")
STANDARD = ("L-1216C47A", "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances")


class Stubbed:
    """What preflight_account takes as ``aws``: real boto3 clients, each with a Stubber attached."""

    def __init__(self) -> None:
        self.clients = {
            name: boto3.client(name, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
            for name in ("sts", "ec2", "service-quotas")
        }
        self.stub = {name: Stubber(c) for name, c in self.clients.items()}
        for s in self.stub.values():
            s.activate()
        self.asked: list[str] = []

    def client(self, name: str):
        self.asked.append(name)
        return self.clients[name]

    def all_answered(self) -> None:
        for s in self.stub.values():
            s.assert_no_pending_responses()

    # -- the answers, queued in the order the preflight asks --
    def identity(self) -> None:
        self.stub["sts"].add_response(
            "get_caller_identity",
            {"UserId": "AIDAEXAMPLE", "Account": ACCOUNT, "Arn": f"arn:aws:iam::{ACCOUNT}:user/ana"},
            {},
        )

    def zones(self, n: int = 4) -> None:
        self.stub["ec2"].add_response(
            "describe_availability_zones",
            {
                "AvailabilityZones": [
                    {"ZoneName": f"{REGION}{z}", "ZoneType": "availability-zone", "State": "available"}
                    for z in "abcd"[:n]
                ]
            },
            {},
        )

    def offered(self, instance_type: str, zones: str) -> None:
        self.stub["ec2"].add_response(
            "describe_instance_type_offerings",
            {
                "InstanceTypeOfferings": [
                    {"InstanceType": instance_type, "LocationType": "availability-zone", "Location": f"{REGION}{z}"}
                    for z in zones
                ]
            },
            {"LocationType": "availability-zone", "Filters": [{"Name": "instance-type", "Values": [instance_type]}]},
        )

    def vcpus(self, sizes: dict[str, int]) -> None:
        self.stub["ec2"].add_response(
            "describe_instance_types",
            {"InstanceTypes": [{"InstanceType": t, "VCpuInfo": {"DefaultVCpus": n}} for t, n in sizes.items()]},
            {"InstanceTypes": list(sizes)},
        )

    def quota(self, code: str, value: float) -> None:
        self.stub["service-quotas"].add_response(
            "get_service_quota",
            {"Quota": {"ServiceCode": "ec2", "QuotaCode": code, "Value": value}},
            {"ServiceCode": "ec2", "QuotaCode": code},
        )

    def default_vpc(self, present: bool = True) -> None:
        self.stub["ec2"].add_response(
            "describe_vpcs",
            {"Vpcs": [{"VpcId": "vpc-0abc1234", "IsDefault": True}] if present else []},
            {"Filters": [{"Name": "isDefault", "Values": ["true"]}]},
        )


def one_inf_account(quota: float = 32, *, vpc: bool = True) -> Stubbed:
    """An account that offers inf1.2xlarge (8 vCPUs) in 3 of 4 zones, with the given Inf quota."""
    aws = Stubbed()
    aws.identity()
    aws.zones(4)
    aws.offered("inf1.2xlarge", "abc")
    aws.vcpus({"inf1.2xlarge": 8})
    aws.quota(INF[0], quota)
    aws.default_vpc(vpc)
    return aws


def check(result: AccountPreflight, name: str) -> Check:
    (found,) = [c for c in result.checks if c.name == name]
    return found


def run(
    aws, types: tuple[str, ...] = ("inf1.2xlarge",), *, reach: str = "profile ana", participants: tuple[str, ...] = ROOM
) -> AccountPreflight:
    return preflight_account(aws, reach=reach, region=REGION, participants=participants, instance_types=types)


def test_a_healthy_account_is_ready():
    aws = one_inf_account(quota=32)
    result = run(aws)
    aws.all_answered()
    assert [c.name for c in result.checks] == ["credentials", "offerings", "quota", "default-vpc"]
    assert all(c.ok is True for c in result.checks), result.checks
    assert result.account == ACCOUNT
    assert check(result, "offerings").detail == "inf1.2xlarge: us-west-2a, us-west-2b, us-west-2c (3 of 4 zones)"
    assert check(result, "quota").detail == (
        "Running On-Demand Inf instances: quota 32 vCPUs, the room needs 24 (3 participants × inf1.2xlarge 8 vCPUs)"
    )
    assert "vpc-0abc1234" in check(result, "default-vpc").detail
    assert summary_lines([result]) == ["1 of 1 account(s) ready"]


def test_a_zero_inf_quota_will_fail_and_says_how_to_ask_for_more():
    aws = one_inf_account(quota=0)
    result = run(aws)
    aws.all_answered()
    quota = check(result, "quota")
    assert quota.ok is False
    assert "quota 0 vCPUs" in quota.detail
    assert "needs 24 (3 participants × inf1.2xlarge 8 vCPUs)" in quota.detail
    assert (
        "aws service-quotas request-service-quota-increase --service-code ec2 --quota-code L-1945791B "
        "--desired-value 24 --region us-west-2 --profile ana"
    ) in quota.detail
    lines = summary_lines([result])
    assert lines[0].startswith(f"WILL FAIL  us-west-2 {ACCOUNT} (ana, ben, cy): Running On-Demand Inf instances")
    assert lines[-1] == "0 of 1 account(s) ready"


@pytest.mark.parametrize(("quota", "ok"), [(23, False), (24, True)])
def test_a_quota_of_exactly_what_the_room_needs_is_enough(quota, ok):
    aws = one_inf_account(quota=quota)
    assert check(run(aws), "quota").ok is ok


def test_a_type_offered_in_no_zone_fails_and_the_other_is_fine():
    aws = Stubbed()
    aws.identity()
    aws.zones(4)
    aws.offered("inf1.2xlarge", "ab")
    aws.offered("inf2.xlarge", "")
    aws.vcpus({"inf1.2xlarge": 8, "inf2.xlarge": 4})
    aws.quota(INF[0], 100)  # one Inf bucket for both types: 3 × (8 + 4) = 36
    aws.default_vpc()
    result = run(aws, ("inf1.2xlarge", "inf2.xlarge"))
    aws.all_answered()
    first, second = [c for c in result.checks if c.name == "offerings"]
    assert first.ok is True and first.detail == "inf1.2xlarge: us-west-2a, us-west-2b (2 of 4 zones)"
    assert second.ok is False
    assert second.detail == (
        "inf2.xlarge is offered in no Availability Zone of us-west-2 — pick another region or instance type"
    )
    assert check(result, "quota").detail.endswith(
        "the room needs 36 (3 participants × (inf1.2xlarge 8 + inf2.xlarge 4) vCPUs)"
    )
    assert summary_lines([result])[0].startswith(
        f"WILL FAIL  us-west-2 {ACCOUNT} (ana, ben, cy): inf2.xlarge is offered"
    )


def test_g_types_count_against_the_g_quota_and_each_bucket_is_read_once():
    aws = Stubbed()
    aws.identity()
    aws.zones(4)
    aws.offered("inf1.2xlarge", "abcd")
    aws.offered("g5.xlarge", "abcd")
    aws.offered("g4dn.xlarge", "ab")
    aws.vcpus({"inf1.2xlarge": 8, "g5.xlarge": 4, "g4dn.xlarge": 4})
    aws.quota(INF[0], 24)
    aws.quota(G[0], 16)  # the room needs 3 × (4 + 4) = 24
    aws.default_vpc()
    result = run(aws, ("inf1.2xlarge", "g5.xlarge", "g4dn.xlarge"))
    aws.all_answered()  # two quota answers queued, two read: a third read would have found none
    inf, g = [c for c in result.checks if c.name == "quota"]
    assert inf.ok is True and inf.detail.startswith("Running On-Demand Inf instances: quota 24 vCPUs")
    assert g.ok is False
    assert g.detail.startswith(
        "Running On-Demand G and VT instances: quota 16 vCPUs, the room needs 24 "
        "(3 participants × (g5.xlarge 4 + g4dn.xlarge 4) vCPUs)"
    )
    assert "--quota-code L-DB2E81BA --desired-value 24" in g.detail


@pytest.mark.parametrize(
    ("instance_type", "quota"),
    [
        ("inf2.xlarge", INF),
        ("trn1.2xlarge", ("L-2C3B7624", "Running On-Demand Trn instances")),
        ("trn1n.32xlarge", ("L-2C3B7624", "Running On-Demand Trn instances")),
        ("g4dn.xlarge", G),
        ("vt1.3xlarge", G),
        ("p3.2xlarge", ("L-417A185B", "Running On-Demand P instances")),
        ("c6i.2xlarge", STANDARD),
        ("m5.large", STANDARD),
        ("t3.micro", STANDARD),
    ],
)
def test_each_family_counts_against_its_quota(instance_type, quota):
    assert quota_of(instance_type) == quota


def test_an_unreadable_quota_is_unknown_and_the_account_still_counts_as_ready():
    aws = Stubbed()
    aws.identity()
    aws.zones(4)
    aws.offered("inf1.2xlarge", "abc")
    aws.vcpus({"inf1.2xlarge": 8})
    aws.stub["service-quotas"].add_client_error(
        "get_service_quota", "AccessDeniedException", "The request failed because you are not allowed to read quotas."
    )
    aws.default_vpc()
    result = run(aws)
    aws.all_answered()
    quota = check(result, "quota")
    assert quota.ok is None
    assert quota.detail.startswith(
        "could not read the Running On-Demand Inf instances quota L-1945791B (AccessDeniedException: The request failed"
    )
    assert "Service Quotas console" in quota.detail and "the room needs 24 vCPUs" in quota.detail
    lines = summary_lines([result])
    assert len(lines) == 2
    assert lines[0].startswith(f"UNKNOWN    us-west-2 {ACCOUNT} (ana, ben, cy): could not read")
    assert lines[1] == "1 of 1 account(s) ready"


def test_vcpus_come_from_the_built_in_table_when_ec2_cannot_say():
    aws = Stubbed()
    aws.identity()
    aws.zones(4)
    aws.offered("inf1.2xlarge", "abc")
    aws.offered("c7i.large", "abcd")
    aws.stub["ec2"].add_client_error("describe_instance_types", "UnauthorizedOperation", "You are not authorized.")
    aws.quota(INF[0], 24)
    aws.quota(STANDARD[0], 64)
    aws.default_vpc()
    result = run(aws, ("inf1.2xlarge", "c7i.large"))
    aws.all_answered()
    inf, standard = [c for c in result.checks if c.name == "quota"]
    assert inf.ok is True and "the room needs 24 (3 participants × inf1.2xlarge 8 vCPUs)" in inf.detail
    assert standard.ok is True and "the room needs 6 (3 participants × c7i.large 2 vCPUs)" in standard.detail


def test_no_default_vpc_fails_with_the_way_to_make_one():
    aws = one_inf_account(vpc=False)
    result = run(aws)
    aws.all_answered()
    vpc = check(result, "default-vpc")
    assert vpc.ok is False
    assert vpc.detail == (
        "no default VPC in us-west-2: the lab launches into default subnets — create one "
        "(aws ec2 create-default-vpc --region us-west-2) or give each participant instance.subnet_id"
    )
    assert summary_lines([result])[-1] == "0 of 1 account(s) ready"


class NoProfile:
    def client(self, name: str):
        raise ProfileNotFound(profile="ana")


@pytest.mark.parametrize("broken", ["expired", "no-profile"])
def test_credentials_that_do_not_work_leave_the_rest_unchecked(broken):
    if broken == "expired":
        aws = Stubbed()
        aws.stub["sts"].add_client_error(
            "get_caller_identity", "ExpiredToken", "The security token included in the request is expired", 403
        )
        why = "cannot use these credentials: ExpiredToken: The security token included in the request is expired"
    else:
        aws = NoProfile()
        why = "cannot use these credentials: ProfileNotFound: The config profile (ana) could not be found"
    result = run(aws, ("inf1.2xlarge", "g5.xlarge"))
    if broken == "expired":
        aws.all_answered()
        assert aws.asked == ["sts"]  # nothing else was asked of an account whose credentials failed
    assert result.account == ""
    assert result.checks[0] == Check("credentials", False, why)
    assert [c.name for c in result.checks[1:]] == ["offerings", "offerings", "quota", "quota", "default-vpc"]
    assert all(c.ok is None and c.detail == NOT_CHECKED for c in result.checks[1:])
    assert summary_lines([result]) == [
        f"WILL FAIL  us-west-2 profile ana (ana, ben, cy): {why}",
        "0 of 1 account(s) ready",
    ]


def test_the_summary_names_at_most_five_participants_and_counts_ready_accounts():
    bad = AccountPreflight(
        ACCOUNT,
        REGION,
        "shared",
        tuple(f"p{i}" for i in range(1, 8)),
        (Check("credentials", True, "ok"), Check("default-vpc", False, "no default VPC")),
    )
    good = AccountPreflight(
        "444455556666",
        "eu-west-1",
        "role arn:aws:iam::444455556666:role/lab",
        ("zoe",),
        (Check("credentials", True, "ok"),),
    )
    assert summary_lines([bad, good]) == [
        f"WILL FAIL  us-west-2 {ACCOUNT} (p1, p2, p3, p4, p5 +2 more): no default VPC",
        "1 of 2 account(s) ready",
    ]
    assert summary_lines([]) == ["No accounts to check"]


def test_the_sandbox_answers_every_check_but_the_quota(sandbox):

    aws = sandbox_aws(sandbox, REGION)
    result = preflight_account(aws, reach="shared", region=REGION, participants=ROOM, instance_types=("inf1.2xlarge",))
    assert result.account == "123456789012"
    assert check(result, "credentials").ok is True
    offerings = check(result, "offerings")
    assert offerings.ok is True and offerings.detail.startswith("inf1.2xlarge: us-west-2")
    assert check(result, "default-vpc").ok is True
    quota = check(result, "quota")
    assert quota.ok is None and quota.detail.startswith(
        "the sandbox cannot check the Running On-Demand Inf instances quota"
    )
    assert "on AWS this compares the account's with the room's need (the room needs 24 vCPUs)" in quota.detail
    assert any(line.startswith("UNKNOWN") and "the sandbox cannot check" in line for line in summary_lines([result]))
    assert summary_lines([result])[-1] == "1 of 1 account(s) ready"


def test_a_quota_the_account_never_changed_is_read_as_aws_default():
    """GetServiceQuota has no applied value for such a quota (NoSuchResourceException): AWS's default is the value."""
    aws = Stubbed()
    aws.identity()
    aws.zones(4)
    aws.offered("inf1.2xlarge", "abc")
    aws.vcpus({"inf1.2xlarge": 8})
    aws.stub["service-quotas"].add_client_error(
        "get_service_quota",
        "NoSuchResourceException",
        "The request failed because applied value for the specified context Id do not exist.",
    )
    aws.stub["service-quotas"].add_response(
        "get_aws_default_service_quota",
        {"Quota": {"ServiceCode": "ec2", "QuotaCode": INF[0], "Value": 8}},
        {"ServiceCode": "ec2", "QuotaCode": INF[0]},
    )
    aws.default_vpc()
    result = run(aws)
    aws.all_answered()
    quota = check(result, "quota")
    assert quota.ok is False  # 8 vCPUs by default, the room of three needs 24
    assert "quota 8 vCPUs (AWS's default: no value applied to this account)" in quota.detail
    assert "--desired-value 24" in quota.detail


def test_the_sweep_counts_against_the_quotas_too():
    """Each participant's sweep holds min(max_vcpus, jobs x the type's vCPUs) at once, one whole instance per job."""
    from inflab.instructor.roster import from_dict

    roster = from_dict(
        {
            "workshop": {"instance_types": ["inf1.2xlarge"]},
            "sweep": {"instance_types": ["inf1.6xlarge", "g5.xlarge"], "jobs": 3, "max_vcpus": 64},
            "participant": [{"label": x, "shared": True} for x in ROOM],
        }
    )
    aws = Stubbed()
    aws.identity()
    aws.zones(4)
    aws.offered("inf1.2xlarge", "abc")
    aws.vcpus({"inf1.2xlarge": 8, "inf1.6xlarge": 24, "g5.xlarge": 4})
    aws.quota(INF[0], 200)
    aws.quota(G[0], 16)
    aws.default_vpc()
    result = preflight_account(
        aws,
        reach="profile ana",
        region=REGION,
        participants=ROOM,
        instance_types=roster.instance_types,
        sweep=roster.sweep_vcpus,
        sweep_types=roster.sweep_types,
    )
    aws.all_answered()
    inf, g = [c for c in result.checks if c.name == "quota"]
    # Inf: 3 × (8 for the instance + min(64, 3 × 24) = 64 for the sweep) = 216 > 200
    assert inf.ok is False and "the room needs 216" in inf.detail and "sweep on inf1.6xlarge 64" in inf.detail
    # G: 3 × min(64, 3 × 4) = 36 > 16
    assert g.ok is False and "the room needs 36" in g.detail
