"""Crash windows closed and one driver per session: kills at exact points (fault points, not sleeps),
a key file cut short, a job that ended while nobody was looking, two runs racing for one session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

from conftest import ROOT, run_cli, sandbox_aws

from inflab.engine import Engine
from inflab.lab_steps import remote_job


def _live_instances(aws, session: str) -> list[dict]:
    res = aws("ec2").describe_instances(
        Filters=[
            {"Name": "tag:inflab:session", "Values": [session]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )
    return [i for r in res["Reservations"] for i in r["Instances"]]


def test_killed_between_writing_the_key_and_importing_it(name, cli, aws, store):
    r = cli("run", "--sandbox", "--name", name, "--until", "keypair", env={"INFLAB_FAULT_POINT": "keypair:key-written"})
    assert r.returncode == 137, r.stdout + r.stderr
    assert (store.session_dir(name) / f"inflab-{name}.pem").exists()

    r = cli("run", "--name", name, "--until", "connect")
    assert r.returncode == 0, r.stdout + r.stderr
    pairs = aws("ec2").describe_key_pairs(Filters=[{"Name": "tag:inflab:session", "Values": [name]}])["KeyPairs"]
    assert len(pairs) == 1
    assert len(_live_instances(aws, name)) == 1


def test_a_key_file_cut_short_is_replaced_not_trusted(name, cli, aws, store):
    r = cli("run", "--sandbox", "--name", name, "--until", "keypair")
    assert r.returncode == 0, r.stderr
    pem = store.session_dir(name) / f"inflab-{name}.pem"
    pem.write_bytes(b"")  # what a kill between creating and writing the file used to leave

    r = cli("run", "--name", name, "--until", "connect")

    assert r.returncode == 0, r.stdout + r.stderr
    assert "does not hold its private key: replacing both" in r.stdout
    assert "Connected to" in r.stdout
    assert os.stat(pem).st_mode & 0o777 == 0o600 and pem.stat().st_size > 100
    pairs = aws("ec2").describe_key_pairs(Filters=[{"Name": "tag:inflab:session", "Values": [name]}])["KeyPairs"]
    assert len(pairs) == 1


def test_no_private_key_is_ever_given_to_aws(name, cli, store, sandbox):
    """The key is made here; AWS gets the public half through ImportKeyPair. The emulator's whole
    state (what moto's data.json serves, asked with the daemon's secret) holds no private key."""
    import urllib.request

    from inflab.lab_steps.access import public_half

    r = cli("run", "--sandbox", "--name", name, "--until", "connect")
    assert r.returncode == 0, r.stderr
    assert "imported its public half" in r.stdout
    pem = store.session_dir(name) / f"inflab-{name}.pem"
    assert public_half(pem) == store.get(name, "keypair")["public_key"]
    req = urllib.request.Request(f"{sandbox.endpoint}/moto-api/data.json", headers=sandbox.headers)
    with urllib.request.urlopen(req, timeout=30) as resp:
        state = resp.read().decode()
    assert store.get(name, "keypair")["public_key"] in state, "the search covers the key pairs"
    assert "PRIVATE KEY" not in state
    private = pem.read_text()
    assert all(line not in state for line in private.splitlines()[1:-1] if len(line) > 20)


JOB_SCRIPT = textwrap.dedent("""
    import sys
    from inflab.engine import Engine
    from inflab.lab_steps import remote_job
    from inflab.session import Store
    engine = Engine(Store(), sys.argv[1])
    ctx = engine.context(engine.step("compile"))
    ctx.output = lambda lines: print("\\n".join(lines), flush=True)
    print(remote_job.run_job(ctx, "probe", "echo one; echo two; echo three"))
""")


def test_a_kill_as_a_job_ends_is_collected_once_on_the_next_run(sandbox, name, cli, store, inflab_home):
    r = cli("run", "--sandbox", "--name", name, "--until", "connect")
    assert r.returncode == 0, r.stderr
    env = dict(os.environ, INFLAB_HOME=str(inflab_home), INFLAB_FAULT_POINT="job:ended")
    p = subprocess.run(
        [sys.executable, "-c", JOB_SCRIPT, name], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )
    assert p.returncode == 137, p.stdout + p.stderr
    assert p.stdout.split() == ["one", "two", "three"]
    job_id = store.get(name, "jobs")["probe"]
    assert store.job(name, job_id)["status"] == "running"  # the session did not learn that it ended

    seen: list[str] = []
    engine = Engine(store, name)
    ctx = engine.context(engine.step("compile"))
    ctx.output = seen.extend
    code, _ = remote_job.run_job(ctx, "probe", "echo one; echo two; echo three")

    assert code == 0, "the exit-code file decides: the job succeeded"
    assert seen == [], "no line is delivered twice"
    assert store.get(name, "jobs")["probe"] == job_id, "the job is not started a second time"
    assert store.job(name, job_id)["status"] == "succeeded"


def test_results_with_a_run_id_are_stored_once(store, name):
    from inflab import config

    store.create_session(name, config.load(None, sandbox=True).data, sandbox=True, track="inf1")
    assert store.add_result(name, "benchmark", {"x": 1}, key="run-1")
    assert not store.add_result(name, "benchmark", {"x": 1}, key="run-1")
    assert store.add_result(name, "benchmark", {"x": 2}, key="run-2")
    assert len(store.results(name, "benchmark")) == 2


RACES = 6  # races a run must lose (exit 2, one line) with one instance made, for the test to pass


def _race(home, session: str) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    args = ("run", "--sandbox", "--name", session, "--until", "launch")
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.submit(run_cli, *args, home=home), pool.submit(run_cli, *args, home=home)
        return a.result(), b.result()


def test_two_runs_on_one_session_never_make_two_instances(sandbox, inflab_home, aws, name):
    names, losers = [], 0
    for i in range(20):  # until the race has been seen RACES times (up to 20 sessions)
        if losers >= RACES:
            break
        session = f"{name}-{i}"
        names.append(session)
        a, b = _race(inflab_home, session)
        codes = sorted([a.returncode, b.returncode])
        assert codes in ([0, 0], [0, 2]), a.stderr + b.stderr
        for r in (a, b):
            if r.returncode == 2:
                losers += 1
                line = r.stderr.strip()
                assert "\n" not in line and "Traceback" not in line
                assert f"session {session} is in use by pid" in line and "inflab run --name" in line
        assert len(_live_instances(aws, session)) == 1, f"{session}: two instances"
    assert losers >= 1, "the race never happened: the test proves nothing"
    listed = run_cli("sessions", "--json", home=inflab_home)
    assert listed.returncode == 0, listed.stderr
    rows = [r["name"] for r in json.loads(listed.stdout)]
    assert all(rows.count(session) == 1 for session in names)


def test_a_sessions_role_grants_nothing_on_a_session_whose_name_extends_its_own(store):
    """Session `lab` must get nothing of session `lab-2` (or `lab2`, `lab-`…): no wildcard after a name."""
    from fnmatch import fnmatchcase

    from inflab import config
    from inflab.lab_steps.access import lab_access_policy
    from inflab.lab_steps.base import StepContext
    from inflab.names import log_group, results_bucket
    from inflab.runtime.select import for_session

    account, region = "123456789012", "us-west-2"

    def arns(session: str) -> list[str]:
        return [
            f"arn:aws:ecr:{region}:{account}:repository/inflab-{session}",
            f"arn:aws:s3:::{results_bucket(session, account)}",
            f"arn:aws:s3:::{results_bucket(session, account)}/results.json",
            f"arn:aws:logs:{region}:{account}:log-group:{log_group(session)}",
            f"arn:aws:logs:{region}:{account}:log-group:{log_group(session)}:log-stream:job-1",
        ]

    def granted(session: str) -> list[str]:
        ctx = StepContext(name=session, config=config.load(None), runtime=for_session(False, store.home), store=store)
        out = []
        for st in lab_access_policy(ctx, account)["Statement"]:
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            out += [r for r in resources if r != "*"]
        return out

    mine = granted("lab")
    for arn in arns("lab"):
        assert any(fnmatchcase(arn, pattern) for pattern in mine), f"lab needs {arn}"
    for other in ("lab-2", "lab2", "lab-x-y", "labs"):
        for arn in arns(other):
            assert not any(fnmatchcase(arn, pattern) for pattern in mine), f"lab's role reaches {arn}"


def test_launch_is_verified_unencrypted_volumes_fail_outside_the_emulator(name, cli, store, aws, sandbox):
    import pytest

    from inflab import config
    from inflab.lab_steps.base import StepContext, StepError
    from inflab.lab_steps.instance import verify_launch
    from inflab.runtime.aws import AwsRuntime

    r = cli("run", "--sandbox", "--name", name, "--until", "wait-running")
    assert r.returncode == 0, r.stderr
    assert "metadata IMDSv2-only" in r.stdout and "1 encrypted volume(s) as asked" in r.stdout
    iid = store.get(name, "host")["instance_id"]
    described = aws("ec2").describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    # a plain volume the launch did not ask for, beside the encrypted one it did
    plain = aws("ec2").create_volume(AvailabilityZone=described["Placement"]["AvailabilityZone"], Size=8)["VolumeId"]
    described = {
        **described,
        "BlockDeviceMappings": [
            *described["BlockDeviceMappings"],
            {"DeviceName": "/dev/sdf", "Ebs": {"VolumeId": plain}},
        ],
    }
    lab_aws = sandbox_aws(sandbox, who="lab")
    ctx = StepContext(
        name=name,
        config=config.load(None),
        runtime=AwsRuntime(),
        store=store,
        aws_factory=lambda: lab_aws,
        log=lambda m: None,
    )
    with pytest.raises(StepError, match="is not encrypted"):  # on AWS an unrequested plain volume is an error
        verify_launch(ctx, described)
    with pytest.raises(StepError, match="IMDSv2"):
        verify_launch(ctx, {**described, "MetadataOptions": {"HttpTokens": "optional"}})
