"""Instructor mode end to end in the sandbox: beacons, the roster, a demo room read and cleaned up,
unreachable participants reported while the others are read."""

from __future__ import annotations

import json
import os
import stat

import pytest
from conftest import sandbox_aws

from inflab import config
from inflab.aws import beacon, inventory
from inflab.config import ConfigError
from inflab.engine import Engine
from inflab.instructor import roster
from inflab.instructor.demo import make_room
from inflab.instructor.room import RoomReader

SHARED = """
[workshop]
name = "room"
sandbox = true
[[participant]]
label = "ana"
shared = true
"""


def new_session(store, name, **lab):
    cfg = config.from_dict({"lab": lab} if lab else {}, sandbox=True)
    store.create_session(name, cfg.data, sandbox=True, track=cfg.track)
    return Engine(store, name)


# ------------------------------------------------------------------------------------------- beacon
def test_each_step_transition_publishes_the_beacon_without_secrets(store, name, sandbox, aws, inflab_home):
    engine = new_session(store, name, participant="ana")
    assert engine.run("keypair").ok
    doc = beacon.read(engine.aws, name).beacon  # what the session wrote reads back as the same record
    assert doc is not None and beacon.Beacon.parse(doc.encode()) == doc
    assert doc.participant == "ana" and doc.session == name and doc.track == "inf1"
    assert (doc.step, doc.state) == ("security-group", "waiting")
    assert [m.step for m in doc.history] == ["credentials", "preflight", "keypair"]
    assert all(m.state == "done" and m.started <= m.finished for m in doc.history)
    assert doc.names.region == "us-west-2" and doc.names.config()["aws"] == {"region": "us-west-2"}
    tags = aws("ssm").list_tags_for_resource(ResourceType="Parameter", ResourceId=beacon.path(name))["TagList"]
    assert {"Key": "inflab:session", "Value": name} in tags
    text = aws("ssm").get_parameter(Name=beacon.path(name))["Parameter"]["Value"]
    key = (
        (store.session_dir(name) / "id_ed25519").read_text()
        if (store.session_dir(name) / "id_ed25519").exists()
        else ""
    )
    for secret in [sandbox.secret, *key.splitlines()[1:-1]]:
        assert secret and secret not in text
    # the resources listing and cleanup know it: cleanup removes it, last
    assert any(r["type"] == "ssm:parameter" for r in inventory.session_resources(engine.aws, name))
    errors, leftovers = engine.cleanup()
    assert (errors, leftovers) == ([], [])
    assert beacon.read(engine.aws, name) is None


def test_a_finished_session_says_so_in_its_beacon(store, name, sandbox):
    engine = new_session(store, name)
    assert engine.run_one("credentials").ok
    engine.run_step("terminate")  # a destructive step that ends the run finishes the session
    assert engine.finished()
    assert beacon.read(engine.aws, name).beacon.state == "finished"
    engine.cleanup()


def test_a_failing_beacon_never_fails_a_step(store, name, sandbox, monkeypatch):
    from botocore.exceptions import ClientError

    def refuse(*a, **k):
        raise ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": "no ssm:PutParameter"}}, "PutParameter"
        )

    monkeypatch.setattr(beacon, "publish", refuse)
    logged = []
    engine = new_session(store, name)
    engine.listener = lambda ev: logged.append(getattr(ev, "message", ""))
    assert engine.run("preflight").ok
    said = [m for m in logged if "progress beacon" in m]
    assert len(said) == 1 and "AccessDeniedException" in said[0] and "the steps go on" in said[0]


def test_beacon_off_publishes_nothing(store, name, sandbox):
    engine = new_session(store, name, beacon=False)
    assert engine.run("credentials").ok
    assert beacon.read(engine.aws, name) is None


def test_a_long_history_is_cut_to_fit_the_parameter():
    doc = beacon.Beacon(
        "s",
        state="failed",
        error="x" * 300,
        history=tuple(beacon.Mark(f"step{i}", "done", 1.0 * i, 2.0 * i) for i in range(200)),
    )
    text = doc.encode()
    assert len(text.encode()) <= beacon.MAX_BYTES
    back = json.loads(text)
    assert back["cut"] is True and "step199" in back["history"] and "step0" not in back["history"]
    assert back["error"] == "x" * 300 and len(back["history"]) <= beacon.MAX_ITEMS
    assert beacon.Beacon.parse(text).history[-1] == beacon.Mark("step199", "done", 199.0, 398.0)


# ------------------------------------------------------------------------------------------- roster
BAD_ROSTERS = [
    ("[workshop]\nregion = 'mars-1'\n[[participant]]\nlabel='a'\nshared=true", "workshop.region:"),
    ("[workshop]\nnmae = 'x'\n[[participant]]\nlabel='a'\nshared=true", "workshop.nmae: unknown key"),
    ("[workshop]\nname = 'x'", "participant: the roster names no participant"),
    ("[[participant]]\nlabel='a'", "participant[1]: give exactly one of profile, role_arn or shared"),
    ("[[participant]]\nlabel='a'\nprofile='p'\nshared=true", "participant[1]: give exactly one"),
    ("[[participant]]\nlabel='a'\nrole_arn='arn:aws:iam::12:role/x'", "participant[1].role_arn:"),
    (
        "[[participant]]\nlabel='a'\nshared=true\n[[participant]]\nlabel='a'\nshared=true",
        "participant[2].label: 'a' is also",
    ),
    ("[[participant]]\nlabel=''\nshared=true", "participant[1].label:"),
    (
        "[[participant]]\nlabel='a'\nprofile='p'\nexternal_id='zz'",
        "participant[1].external_id: only goes with role_arn",
    ),
    ("[[participant]]\nlabel='a'\nprofile='p'\nsession='s'", "participant[1].session: only goes with shared"),
    ("[stuck]\nbuild-imag = 3\n[[participant]]\nlabel='a'\nshared=true", "stuck.build-imag: not a step id"),
    ("[stuck]\ndefault = -1\n[[participant]]\nlabel='a'\nshared=true", "stuck.default: -1 is outside"),
    ("[workshop]\nconcurrency = 0\n[[participant]]\nlabel='a'\nshared=true", "workshop.concurrency: 0 is outside"),
    ("[workshop]\ninstance_types = ['inf9.big']\n[[participant]]\nlabel='a'\nshared=true", "workshop.instance_types:"),
    (
        "[workshop]\nsandbox = true\n[[participant]]\nlabel='a'\nprofile='p'",
        "participant[1].profile: the sandbox has no",
    ),
    ('[[participant]]\nlabel="a\\nb"\nshared=true', "participant[1].label: a line break"),
    ("[[participant]]\nlabel = [", "ROSTER:"),
]


@pytest.mark.parametrize("text,says", BAD_ROSTERS, ids=[s for _, s in BAD_ROSTERS])
def test_a_bad_roster_is_one_line_naming_the_key(text, says, tmp_path):
    path = tmp_path / "room.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as ei:
        roster.load(path)
    assert str(ei.value).startswith(says) and "\n" not in str(ei.value), str(ei.value)


def test_the_cli_refuses_a_roster_in_one_line_exit_2(tmp_path, cli, inflab_home):
    path = tmp_path / "room.toml"
    path.write_text(BAD_ROSTERS[5][0])
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for args, says in [
        ((str(path), "--once"), "participant[1].role_arn:"),
        ((str(tmp_path), "--once"), "is a directory"),
        ((str(fifo), "--once"), "is a FIFO"),
        ((str(tmp_path / "none.toml"),), "no such file"),
        ((), "ROSTER: give the roster file"),
        (("--demo", "3"), "--write-roster: --demo needs"),
        (("--demo", "0", "--write-roster", str(tmp_path / "r.toml")), "--demo: 0 is not a room size"),
        ((str(path), "--once", "--preflight"), "--preflight: cannot be combined with --once"),
    ]:
        r = cli("instructor", *args, timeout=60)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.count("\n") == 1 and says in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    assert not (tmp_path / "r.toml").exists()


def test_a_roster_round_trips_through_its_file(tmp_path):
    text = (
        SHARED
        + '[[participant]]\nlabel = "ben"\nrole_arn = "arn:aws:iam::111122223333:role/Inflab"\nexternal_id = "room3"\n'
    )
    r = roster.from_dict(config.parse_toml(text))
    assert roster.from_dict(config.parse_toml(r.to_toml())) == r
    assert (
        r.participant("ben").reach == "role arn:aws:iam::111122223333:role/Inflab"
        and "room3" not in r.participant("ben").reach
    )


# ------------------------------------------------------------------------------------------- the room
@pytest.fixture(scope="module")
def demo_room(sandbox, inflab_home):
    from inflab.session import Store

    store = Store(inflab_home)
    room = make_room(store, 3, log=lambda line: None)
    return room


def test_a_demo_room_reads_as_three_rows_with_step_state_and_resources(demo_room, tmp_path, cli, sandbox):
    path = tmp_path / "room.toml"
    path.write_text(demo_room.to_toml())
    r = cli("instructor", str(path), "--once", "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    rows = {row["label"]: row for row in out["rows"]}
    assert list(rows) == ["ana", "ben", "cy"]
    assert (rows["ana"]["step"], rows["ana"]["state"], rows["ana"]["exercise"]) == (
        "security-group",
        "waiting",
        "provision",
    )
    assert (rows["ben"]["step"], rows["ben"]["state"], rows["ben"]["exercise"]) == ("monitor", "waiting", "model")
    assert (rows["cy"]["step"], rows["cy"]["state"]) == ("launch", "failed")
    assert "capacity" in rows["cy"]["error"] and rows["cy"]["history"][-1]["error"] == rows["cy"]["error"]
    assert len(rows["ben"]["instances"]) == 1 and rows["ben"]["instances"][0]["state"] == "running"
    assert rows["ben"]["instances"][0]["type"] == "inf1.2xlarge" and rows["ben"]["instances"][0]["per_hour"] > 0
    assert rows["ana"]["instances"] == [] and rows["cy"]["instances"] == []
    assert all(row["account"] == "123456789012" for row in rows.values())
    assert out["summary"]["failed"] == 1 and out["summary"]["at"] == {
        "provision": 2,
        "model": 1,
        "serving": 0,
        "sagemaker": 0,
        "sweep": 0,
    }
    assert out["summary"]["spend_usd"] > 0 and "nothing is billed" in out["summary"]["price_source"]
    table = cli("instructor", str(path), "--once", timeout=120)
    assert table.returncode == 0 and "1 failed" in table.stdout and "monitor" in table.stdout


def test_an_unreachable_participant_is_a_row_with_the_reason_while_the_others_are_read(demo_room, faults, inflab_home):
    denied = "arn:aws:iam::222233334444:role/InflabInstructor"
    text = demo_room.to_toml() + (
        f'[[participant]]\nlabel = "dan"\nrole_arn = "{denied}"\n'
        '[[participant]]\nlabel = "eve"\nrole_arn = "arn:aws:iam::333344445555:role/Ok"\n'
    )
    faults({"assume_role": {denied: "AccessDenied"}})
    reader = RoomReader(roster.from_dict(config.parse_toml(text)), inflab_home)
    try:
        rows = {r.label: r for r in reader.refresh().rows}
    finally:
        reader.close()
    assert rows["dan"].state == "unreachable" and "AccessDenied" in rows["dan"].reason and denied in rows["dan"].reason
    assert rows["eve"].state == "no session" and rows["eve"].account == "333344445555"  # its own (empty) account
    assert rows["ben"].state == "waiting" and rows["ben"].instances


def test_a_missing_profile_is_reported_in_its_row(tmp_path, cli):
    empty = tmp_path / "aws-config"
    empty.write_text("")
    path = tmp_path / "room.toml"
    path.write_text('[[participant]]\nlabel = "ana"\nprofile = "nope"\n')
    env = {"AWS_CONFIG_FILE": str(empty), "AWS_SHARED_CREDENTIALS_FILE": str(empty)}
    r = cli("instructor", str(path), "--once", "--json", env=env, timeout=60)
    assert r.returncode == 1, r.stderr
    row = json.loads(r.stdout)["rows"][0]
    assert row["state"] == "unreachable" and "nope" in row["reason"] and "could not be found" in row["reason"]


async def test_the_dashboard_shows_the_demo_room(demo_room, inflab_home):
    """The screen on the real room (sandbox): three rows, the right step and state, ben's instance, the summary."""
    from textual.widgets import DataTable

    from inflab.tui.instructor import InstructorApp

    reader = RoomReader(demo_room, inflab_home)
    app = InstructorApp(reader, refresh_s=30)
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            table = app.screen.query_one(DataTable)
            for _ in range(1200):  # the first refresh (a busy machine may take a while)
                if app.screen.refreshes >= 1 and table.row_count == 3:
                    break
                await pilot.pause(0.05)

            def cells(label: str) -> str:
                return " | ".join(str(c) for c in table.get_row(label))

            assert "security-group" in cells("ana") and "waiting" in cells("ana")
            assert "model · monitor" in cells("ben") and "1 inf1.2xlarge" in cells("ben")
            assert "launch" in cells("cy") and "failed" in cells("cy")
            summary = str(app.screen.query_one("#room-summary").render())
            assert "2 at provision" in summary and "1 at model" in summary and "1 failed" in summary
            table.move_cursor(row=table.get_row_index("cy"))
            await pilot.press("enter")
            for _ in range(600):
                if "capacity" in " ".join(str(w.render()) for w in app.screen.query("Static")):
                    break
                await pilot.pause(0.05)
            assert "capacity" in " ".join(str(w.render()) for w in app.screen.query("Static"))
    finally:
        reader.close()


def test_cleanup_all_leaves_no_tagged_resource_and_no_beacon(
    demo_room, tmp_path, cli, aws, tagged, sandbox, inflab_home
):

    path = tmp_path / "room.toml"
    path.write_text(demo_room.to_toml())
    sessions = [p.session for p in demo_room.participants]
    assert tagged(sessions[1])["instances"]  # ben's instance is there before
    r = cli("instructor", str(path), "--cleanup-all", "--yes", "--json", timeout=300)
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)
    assert [x["label"] for x in results] == ["ana", "ben", "cy"] and all(x["ok"] for x in results)
    lab_aws = sandbox_aws(sandbox)
    for session in sessions:
        assert inventory.session_resources(lab_aws, session) == []
        assert beacon.read(lab_aws, session) is None
        assert all(not v for v in tagged(session).values()), tagged(session)
    again = cli("instructor", str(path), "--once", "--json", timeout=60)
    assert {row["state"] for row in json.loads(again.stdout)["rows"]} == {"no session"}


def test_cleanup_all_without_yes_off_a_terminal_refuses(tmp_path, cli):
    path = tmp_path / "room.toml"
    path.write_text(SHARED)
    r = cli("instructor", str(path), "--cleanup-all", timeout=60)
    assert r.returncode == 2 and "--yes:" in r.stderr


def test_write_roster_refuses_a_directory_and_makes_nothing(tmp_path, cli, store):
    before = {s.name for s in store.list_sessions()}
    r = cli("instructor", "--demo", "2", "--write-roster", str(tmp_path), timeout=60)
    assert r.returncode == 2 and "exists and is not a regular file" in r.stderr
    assert {s.name for s in store.list_sessions()} == before
    assert stat.S_ISDIR(os.stat(tmp_path).st_mode)
