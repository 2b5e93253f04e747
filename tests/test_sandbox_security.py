"""The sandbox endpoint answers only the lab's own clients (DESIGN §9).

Any local user can reach a loopback port. Without the daemon's secret they get 403 from every
route — AWS calls, the emulator's state dump, its reset and config buttons, its dashboard, the
fault switches — and change nothing; the lab's clients carry the secret and work. The secret
lives in a file only this user can read, never in the log, and is sent to no other server.
"""

from __future__ import annotations

import json
import stat
import urllib.error
import urllib.request

import boto3
import pytest
from botocore.exceptions import ClientError
from conftest import sandbox_aws

from inflab import sandbox as sb
from inflab.aws import Aws
from inflab.sandbox.gate import HEALTH_PATH, SECRET_HEADER

REFUSAL = "it answers only the lab's own clients"
# What a signed EC2 call looks like on the wire (the emulator does not check signatures).
EC2_AUTH = (
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-west-2/ec2/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=0"
)
DESCRIBE_INSTANCES = (
    "POST",
    "/",
    b"Action=DescribeInstances&Version=2016-11-15",
    {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8", "Authorization": EC2_AUTH},
)
DATA_JSON = ("GET", "/moto-api/data.json", None, {})
# the dump walks every service in every region: late in a run, on a busy machine, it takes its time
DUMP_TIMEOUT_S = 240
DASHBOARD = ("GET", "/moto-api/", None, {})
RESET = ("POST", "/moto-api/reset", b"", {})
CONFIG = (
    "POST",
    "/moto-api/config",
    json.dumps({"lambda": {"use_docker": False}}).encode(),
    {"Content-Type": "application/json"},
)
FAULTS_GET = ("GET", "/inflab-sandbox/faults", None, {})
FAULTS_SET = (
    "POST",
    "/inflab-sandbox/faults",
    json.dumps({"run_instances": {"*": "InsufficientInstanceCapacity"}}).encode(),
    {"Content-Type": "application/json"},
)
ROUTES = {
    "ec2-describe-instances": DESCRIBE_INSTANCES,
    "data.json": DATA_JSON,
    "dashboard": DASHBOARD,
    "reset": RESET,
    "config": CONFIG,
    "faults-get": FAULTS_GET,
    "faults-set": FAULTS_SET,
}


def http(
    endpoint: str, route: tuple, secret_headers: dict[str, str] | None = None, timeout: float = 30
) -> tuple[int, str]:
    method, path, body, headers = route
    req = urllib.request.Request(
        endpoint + path, data=body, method=method, headers={**headers, **(secret_headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


@pytest.fixture
def lab_ec2(sandbox):
    return sandbox_aws(sandbox, who="lab").client("ec2")


@pytest.fixture
def group(lab_ec2, name):
    """A security group the lab made: it must outlive every refused request."""
    gid = lab_ec2.create_security_group(GroupName=f"inflab-{name}", Description="gate test")["GroupId"]
    yield gid
    lab_ec2.delete_security_group(GroupId=gid)


def wrong(sandbox) -> dict[str, str]:
    return {SECRET_HEADER: sandbox.secret[:-1] + ("A" if sandbox.secret[-1] != "A" else "B")}


@pytest.mark.parametrize("credential", ["no secret", "wrong secret"])
@pytest.mark.parametrize("route", ROUTES.values(), ids=ROUTES.keys())
def test_a_client_without_the_secret_is_refused_everywhere(sandbox, route, credential):
    status, body = http(sandbox.endpoint, route, wrong(sandbox) if credential == "wrong secret" else None)
    assert status == 403
    assert REFUSAL in body
    assert "Reservation" not in body and "key_material" not in body


@pytest.mark.parametrize("credential", ["no secret", "wrong secret"])
def test_refused_control_calls_change_nothing(sandbox, lab_ec2, group, faults, credential):
    given = wrong(sandbox) if credential == "wrong secret" else None
    faults({"run_instances": {"us-west-2d": "Unsupported"}})
    config = ("GET", "/moto-api/config", None, {})
    # the lab turns on what the refused CONFIG call would turn off
    assert http(
        sandbox.endpoint,
        (
            "POST",
            "/moto-api/config",
            json.dumps({"lambda": {"use_docker": True}}).encode(),
            {"Content-Type": "application/json"},
        ),
        sandbox.headers,
    )[0] in (200, 201)
    before = http(sandbox.endpoint, config, sandbox.headers)

    for route in (RESET, CONFIG, FAULTS_SET):
        assert http(sandbox.endpoint, route, given)[0] == 403

    # not reset: what the lab made is still there
    assert lab_ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["GroupId"] == group
    # the emulator's configuration and the fault table are as the lab left them
    assert http(sandbox.endpoint, config, sandbox.headers) == before
    assert json.loads(http(sandbox.endpoint, FAULTS_GET, sandbox.headers)[1])["run_instances"] == {
        "us-west-2d": "Unsupported"
    }


def test_a_plain_boto3_client_is_refused_with_a_message_saying_why(sandbox, group):
    ec2 = boto3.client(
        "ec2",
        endpoint_url=sandbox.endpoint,
        region_name="us-west-2",
        aws_access_key_id="someone-else",
        aws_secret_access_key="someone-else",
    )
    with pytest.raises(ClientError) as err:
        ec2.describe_instances()
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert err.value.response["Error"]["Code"] == "AccessDeniedException"
    assert REFUSAL in err.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as err:  # the JSON protocol reads the refusal too
        boto3.client(
            "ecr",
            endpoint_url=sandbox.endpoint,
            region_name="us-west-2",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        ).describe_repositories()
    assert REFUSAL in err.value.response["Error"]["Message"]


def test_a_lab_client_with_a_wrong_secret_is_refused(sandbox):
    ec2 = Aws(region="us-west-2", endpoint_url=sandbox.endpoint, headers=wrong(sandbox)).client("ec2")
    with pytest.raises(ClientError) as err:
        ec2.describe_instances()
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_the_lab_clients_are_answered(sandbox, lab_ec2, group):
    # the engine's and the tests' boto3 clients: Aws finds the secret by itself
    assert [g["GroupId"] for g in lab_ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"]] == [group]
    assert "Reservations" in lab_ec2.describe_instances()
    # the sandbox module's own calls
    baseline = sb.get_faults(sandbox)  # the AWS-like table the shared sandbox runs with: it stays
    assert sb.set_faults(sandbox, baseline) == baseline
    status, body = http(sandbox.endpoint, DATA_JSON, sandbox.headers, timeout=DUMP_TIMEOUT_S)
    assert status == 200 and group in body
    assert http(sandbox.endpoint, DASHBOARD, sandbox.headers)[0] == 200


def test_the_state_dump_still_answers_after_a_bucket_with_objects_is_deleted(sandbox, aws):
    # cleanup --delete-data does this; the emulator's own dump used to fail on the objects left behind
    s3 = aws("s3")
    s3.create_bucket(Bucket="inflab-dump-check", CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    s3.put_object(Bucket="inflab-dump-check", Key="r/result.json", Body=b"{}")
    s3.delete_object(Bucket="inflab-dump-check", Key="r/result.json")
    s3.delete_bucket(Bucket="inflab-dump-check")
    assert http(sandbox.endpoint, DATA_JSON, sandbox.headers, timeout=DUMP_TIMEOUT_S)[0] == 200


def test_health_stays_open_and_says_only_ok_and_pid(sandbox):
    with urllib.request.urlopen(f"{sandbox.endpoint}{HEALTH_PATH}", timeout=10) as r:
        assert json.loads(r.read()) == {"ok": True, "pid": sandbox.pid}


def test_the_secret_is_private_and_never_logged(sandbox, inflab_home):
    sdir = sb.state_dir(inflab_home)
    # requests with the secret, a wrong one and none have all been logged by now
    http(sandbox.endpoint, FAULTS_GET, sandbox.headers)
    http(sandbox.endpoint, FAULTS_GET, wrong(sandbox))
    assert len(sandbox.secret) >= 43  # secrets.token_urlsafe(32)
    for name in ("secret.json", "state.json"):
        assert stat.S_IMODE((sdir / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE(sdir.stat().st_mode) == 0o700
    assert sandbox.secret not in (sdir / "state.json").read_text()
    log = (sdir / "daemon.log").read_text(errors="replace")
    assert "GET /inflab-sandbox/faults" in log  # the log is there and has the requests
    assert sandbox.secret not in log
    assert sandbox.secret not in repr(sandbox) and sandbox.secret not in repr(
        Aws("us-west-2", endpoint_url=sandbox.endpoint, headers=sandbox.headers)
    )


def test_each_daemon_makes_its_own_secret(sandbox, tmp_path):
    other = sb.ensure_running(tmp_path)
    try:
        assert other.secret and other.secret != sandbox.secret
        assert (
            http(other.endpoint, DATA_JSON, sandbox.headers)[0] == 403
        )  # this home's secret opens only this home's sandbox
        assert http(other.endpoint, DATA_JSON, other.headers, timeout=DUMP_TIMEOUT_S)[0] == 200
    finally:
        sb.stop(tmp_path)
    assert not (sb.state_dir(tmp_path) / "secret.json").exists()
