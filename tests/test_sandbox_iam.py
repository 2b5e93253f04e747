"""`inflab sandbox start --iam-policy FILE`: the lab's calls checked as an IAM user holding only that policy.

Each daemon here has its own INFLAB_HOME (the shared test sandbox checks no policy).
"""

from __future__ import annotations

import copy
import json
import stat
import uuid
from pathlib import Path

import pytest
from conftest import run_cli, unusable_config

from inflab.aws import policy as pol

REFUSED = "IAM check refused"


def _start(home: Path, policy_file: Path):
    from inflab import sandbox as sb

    r = run_cli("sandbox", "start", "--iam-policy", str(policy_file), home=home, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"IAM check: on — the lab signs as an emulated user holding only the policy in {policy_file}" in r.stdout
    return sb.read_state(home)


def _refusals(home: Path) -> list[str]:
    return [line for line in (home / "sandbox" / "daemon.log").read_text().splitlines() if line.startswith(REFUSED)]


def _aws(info, key: tuple[str, str] | None, region: str = "us-west-2"):
    from inflab.aws import Aws, Credentials

    return Aws(
        region=region, endpoint_url=info.endpoint, headers=info.headers, credentials=Credentials(*key) if key else None
    )


@pytest.fixture(scope="module")
def enforced(tmp_path_factory):
    """A sandbox daemon of its own that checks the lab's calls against `inflab policy participant`."""
    from inflab import sandbox as sb

    home = tmp_path_factory.mktemp("iam-home")
    policy_file = home.parent / f"{home.name}-participant.json"
    r = run_cli("policy", "participant", home=home)
    policy_file.write_text(r.stdout)
    info = _start(home, policy_file)
    yield home, info, policy_file
    sb.stop(home)


# -- the sandbox's copy of a policy: what moto can check ------------------------------------------
def test_the_sandbox_allows_motos_s3_names_where_the_policy_allows_the_iam_action():
    """moto names an S3 request by its operation: the sandbox's table is the inverse of the policy's."""
    from inflab.sandbox.iam import MOTO_S3_NAMES

    inverse: dict[str, set[str]] = {}
    for (service, op), actions in pol._ACTION_OF.items():
        for action in actions:
            inverse.setdefault(action, set()).add(f"{service}:{op}")
    assert {a: set(n) for a, n in MOTO_S3_NAMES.items()} == inverse


def test_the_sandbox_copy_keeps_only_the_scoping_the_emulator_can_check():
    from inflab.sandbox.iam import emulator_copy

    doc = pol.participant()
    copy = emulator_copy(doc)

    def resources_of(action: str) -> set[str]:
        return {
            r
            for s in copy["Statement"]
            if action in s["Action"]
            for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
        }

    assert resources_of("ec2:RunInstances") == {"*"}  # moto checks EC2 against "*" only
    assert resources_of("batch:CreateComputeEnvironment") == {"*"}
    assert resources_of("iam:AddRoleToInstanceProfile") == {"*"}  # names a role, scoped to profiles
    assert resources_of("iam:CreateRole") == {f"arn:aws:iam::*:role{pol.IAM_PATH}{pol.NAME}"}
    assert resources_of("s3:CreateBucket") == {"arn:aws:s3:::inflab-*", "arn:aws:s3:::inflab-*/*"}
    assert resources_of("s3:HeadBucket") == resources_of("s3:ListBucket")
    for action in pol.needed(pol.LAB_CALLS):
        assert pol.allowed(copy, action) == pol.allowed(doc, action), action  # no action is lost or added


# -- the daemon ---------------------------------------------------------------------------------
def test_the_keys_are_the_emulators_and_only_in_the_daemons_private_file(enforced):
    home, info, policy_file = enforced
    lab, admin = info.access_key("lab"), info.access_key("admin")
    assert lab and admin and lab != admin
    secret = home / "sandbox" / "secret.json"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    state = (home / "sandbox" / "state.json").read_text()
    assert lab[1] not in state and admin[1] not in state
    r = run_cli("sandbox", "status", "--json", home=home)
    assert json.loads(r.stdout)["iam_policy"] == str(policy_file)
    assert lab[1] not in r.stdout
    # who is who, as the emulated STS sees it
    assert _aws(info, lab).client("sts").get_caller_identity()["Arn"].endswith(":user/inflab-sandbox/participant")
    assert _aws(info, admin).client("sts").get_caller_identity()["Arn"].endswith(":user/inflab-sandbox/sandbox-admin")


def test_a_client_without_the_users_key_is_refused(enforced):
    from botocore.exceptions import ClientError

    home, info, _ = enforced
    with pytest.raises(ClientError) as e:
        _aws(info, None).client("ec2").describe_instances()  # the placeholders the unchecked sandbox takes
    assert e.value.response["Error"]["Code"] == "AuthFailure"


def test_the_participant_policy_provisions_and_cleans_up_with_no_call_refused(enforced):
    """Provisioning and cleanup as the participant: nothing refused, also with roles of others under /inflab/."""
    home, info, _ = enforced
    name = "p" + uuid.uuid4().hex[:8]
    before = len(_refusals(home))
    r = run_cli("run", "--sandbox", "--name", name, "--until", "wait-running", home=home)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "as arn:aws:iam::123456789012:user/inflab-sandbox/participant" in r.stdout
    # what the lab made exists, as the sandbox's administrator sees it
    ec2 = _aws(info, info.access_key("admin")).client("ec2")
    found = ec2.describe_instances(Filters=[{"Name": "tag:inflab:session", "Values": [name]}])["Reservations"]
    assert [i["State"]["Name"] for res in found for i in res["Instances"]] == ["running"]
    # someone else's role and instance profile under the lab's IAM path: not the lab's to read
    iam = _aws(info, info.access_key("admin")).client("iam")
    other = f"team-{name}"
    iam.create_role(
        RoleName=other,
        Path=pol.IAM_PATH,
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
        ),
    )
    iam.create_instance_profile(InstanceProfileName=other, Path=pol.IAM_PATH)
    r = run_cli("cleanup", name, "--yes", home=home)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"Session {name}: everything it created is gone" in r.stdout
    assert _refusals(home)[before:] == [], "a call was refused (and its step hid it)"


def test_the_instructor_policy_reads_the_room_and_cleans_up_a_participants_session(enforced, tmp_path):
    """A user holding only `inflab policy instructor` (the sandbox's copy of it) reads the room,
    checks the account and removes everything a participant's session made."""
    from inflab.aws import beacon
    from inflab.instructor.cleanup import clean_session
    from inflab.instructor.preflight import preflight_account
    from inflab.instructor.room import Account
    from inflab.runtime.sandbox import SandboxRuntime
    from inflab.sandbox.iam import emulator_copy

    home, info, _ = enforced
    name = "q" + uuid.uuid4().hex[:8]
    r = run_cli("run", "--sandbox", "--name", name, "--until", "wait-running", home=home)
    assert r.returncode == 0, r.stdout + r.stderr
    iam = _aws(info, info.access_key("admin")).client("iam")
    user = f"instructor-{name}"
    iam.create_user(UserName=user)
    arn = iam.create_policy(PolicyName=user, PolicyDocument=json.dumps(emulator_copy(pol.instructor())))["Policy"][
        "Arn"
    ]
    iam.attach_user_policy(UserName=user, PolicyArn=arn)
    k = iam.create_access_key(UserName=user)["AccessKey"]
    aws = _aws(info, (k["AccessKeyId"], k["SecretAccessKey"]))
    before = len(_refusals(home))

    room = Account(aws)
    assert name in room.beacons and name in room.instances
    checks = preflight_account(
        aws, reach="sandbox", region="us-west-2", participants=("ana",), instance_types=("inf1.2xlarge",)
    )
    assert checks.checks[0].ok, checks
    logged: list[str] = []
    published = beacon.read(aws, name)
    names = published.beacon.names if published and published.beacon else None
    errors, leftovers, _ = clean_session(
        aws, name, names, runtime=SandboxRuntime(home), delete_data=True, log=logged.append, work=tmp_path
    )
    assert (errors, leftovers) == ([], []), logged
    assert _refusals(home)[before:] == []


@pytest.mark.sandbox  # a daemon of its own, with a narrower policy
def test_a_call_the_policy_does_not_allow_fails_its_step_in_one_line(tmp_path):
    """With ec2:CreateSecurityGroup taken out of the participant's policy, the lab stops at
    security-group with AWS's refusal, and the daemon's log names it."""
    from inflab import sandbox as sb

    home = tmp_path / "home"
    doc = copy.deepcopy(pol.participant())
    for s in doc["Statement"]:
        s["Action"] = [a for a in s["Action"] if a != "ec2:CreateSecurityGroup"]
    assert not pol.allowed(doc, "ec2:CreateSecurityGroup")
    policy_file = tmp_path / "without-create-sg.json"
    policy_file.write_text(json.dumps(doc))
    _start(home, policy_file)
    try:
        r = run_cli("run", "--sandbox", "--name", "denied", "--until", "launch", home=home)
        assert r.returncode == 1
        assert "✓ keypair" in r.stdout and "✓ instance-profile" not in r.stdout
        (line,) = r.stderr.strip().splitlines()
        assert line.startswith("inflab: step security-group failed: AWS refused CreateSecurityGroup: AccessDenied")
        assert "is not authorized to perform: ec2:CreateSecurityGroup" in line
        assert [x for x in _refusals(home) if "ec2:CreateSecurityGroup" in x]
        # the same run with the action allowed goes on: nothing else of the lab was refused
        assert all("ec2:CreateSecurityGroup" in x for x in _refusals(home))
    finally:
        sb.stop(home)


# -- bad --iam-policy: one line, exit 2, nothing started -------------------------------------
def _policy_file(kind: str, d: Path) -> str:
    p = d / "policy.json"
    texts = {
        "not-json": "Version: 2012-10-17\n",
        "not-a-policy": json.dumps({"name": "lab"}),
        "a-list-of-strings": json.dumps(["s3:GetObject"]),
        "bad-effect": json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Maybe", "Action": "s3:GetObject", "Resource": "*"}]}
        ),
        "trust-policy": json.dumps(pol.trust("111122223333", "room3")),
        "deep-json": "[" * 100_000 + "]" * 100_000,
    }
    if kind in texts:
        p.write_text(texts[kind])
        return str(p)
    if kind == "missing":
        return str(d / "nowhere.json")
    return unusable_config(kind, d)


@pytest.mark.parametrize(
    "kind",
    [
        "missing",
        "directory",
        "fifo",
        "socket",
        "symlink-loop",
        "dev-zero",
        "proc-mem",
        "not-utf8",
        "too-big",
        "not-json",
        "not-a-policy",
        "a-list-of-strings",
        "bad-effect",
        "trust-policy",
        "deep-json",
    ],
)
def test_a_bad_iam_policy_file_is_one_line_and_starts_nothing(tmp_path, kind):
    d = tmp_path / "files"
    d.mkdir()
    path = _policy_file(kind, d)
    home = tmp_path / "home"
    r = run_cli("sandbox", "start", "--iam-policy", path, home=home, timeout=60)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("inflab: error: --iam-policy: "), r.stderr
    assert "Traceback" not in r.stderr
    assert not home.exists(), "nothing was created or started"


def test_a_running_sandbox_is_not_given_another_policy(enforced, tmp_path):
    home, info, policy_file = enforced
    other = tmp_path / "other.json"
    other.write_text(policy_file.read_text())
    r = run_cli("sandbox", "start", "--iam-policy", str(other), home=home)
    assert r.returncode == 2
    assert r.stderr.strip() == (
        f"inflab: error: --iam-policy: the sandbox is running already, checking the policy in "
        f"{policy_file}; stop it first (inflab sandbox stop)"
    )
    r = run_cli("sandbox", "start", home=home)  # without the flag: says what runs
    assert r.returncode == 0 and "IAM check: on" in r.stdout
    from inflab import sandbox as sb

    assert sb.read_state(home).pid == info.pid
