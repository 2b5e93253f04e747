"""``serve.input`` on its way to the instance: the user's file lands there readable by its user
only (0600), even over a copy an earlier run left readable by everyone; a file that became a
link after the session was made stops the step in one line."""

from __future__ import annotations

import stat

import pytest

from inflab.engine import Engine
from inflab.lab_steps import remote_job
from inflab.lab_steps.base import StepError
from inflab.lab_steps.served import SAMPLES, request_input, ship_input
from inflab.remote.paths import WORK_DIR


@pytest.fixture
def session_with_input(name, cli, store, sandbox, tmp_path):
    req = tmp_path / "req.json"
    req.write_bytes(b'{"sentence1": "private words", "sentence2": "b"}')
    req.chmod(0o644)
    conf = tmp_path / "lab.toml"
    conf.write_text('[serve]\ninput = "req.json"\n')
    r = cli("run", "--sandbox", "--name", name, "--config", str(conf), "--until", "connect")
    assert r.returncode == 0, r.stdout + r.stderr
    engine = Engine(store, name)
    return engine.context(engine.step("serve")), req


async def test_the_request_input_is_copied_to_the_instance_0600(session_with_input, store, name, inflab_home):
    ctx, req = session_with_input
    home = inflab_home / "sandbox" / "instances" / store.get(name, "host")["instance_id"]
    landed = home / WORK_DIR / SAMPLES / "input-req.json"
    landed.parent.mkdir(parents=True, exist_ok=True)
    landed.write_bytes(b"an earlier copy")
    landed.chmod(0o644)

    conn = await remote_job.connect(ctx)
    async with conn:
        await ship_input(ctx)(conn)

    assert landed.read_bytes() == req.read_bytes()
    assert stat.S_IMODE(landed.stat().st_mode) == 0o600


def test_an_input_replaced_by_a_link_stops_the_step_in_one_line(session_with_input, tmp_path):
    ctx, req = session_with_input
    req.unlink()
    req.symlink_to("/etc/passwd")
    with pytest.raises(StepError) as e:
        request_input(ctx)
    assert str(e.value) == f"serve.input: {req} is a symbolic link; name the file itself"
