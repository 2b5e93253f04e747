"""A room with hostile participants, in the sandbox: what they publish in their accounts (beacons,
tags, Name tags) and what the roster says cannot crash, blind or steer the instructor.

One room for the module: good participants beside one per malformed beacon (nested 1,900 deep,
a history that is a list or a string, ``-Infinity``, infinite history times, too large), a beacon
and an instance Name tag full of Rich markup and an OSC 52 clipboard write, a string ``updated``
beside a number, and a participant whose own account names sessions ``../../victim`` and
``../../made`` (a beacon, tags). The cleanup test comes last: it removes the room.
"""

from __future__ import annotations

import io
import json
import secrets
import time

import pytest
from conftest import sandbox_aws
from rich.console import Console
from textual.widgets import DataTable, Static

from inflab.aws import beacon, inventory, tags
from inflab.instructor import roster
from inflab.instructor.records import RUNNING, UNREADABLE, WAITING
from inflab.instructor.room import RoomReader
from inflab.untrusted import shown

OSC52 = "\x1b]52;c;aGVsbG8=\x07"  # "write 'hello' to the clipboard"
CSI8 = "\x9b2J"  # an 8-bit CSI "erase the screen" (EC2 answers in XML, which carries no ESC: its tags get this)
MARKUP = "[/]"
REGION = "us-west-2"
P = "h" + secrets.token_hex(3)  # this module's session names: P-ana, P-deep, ...
MAL_ACCOUNT = str(10**11 + secrets.randbelow(9 * 10**11))
GOOD_NOW = time.time()


def good(session: str, participant: str, **fields) -> dict:
    doc = beacon.Beacon(
        session=session,
        participant=participant,
        track="inf1",
        sandbox=True,
        step="security-group",
        state="waiting",
        since=GOOD_NOW - 30,
        updated=GOOD_NOW - 5,
        history=(
            beacon.Mark("credentials", "done", GOOD_NOW - 90, GOOD_NOW - 80),
            beacon.Mark("keypair", "done", GOOD_NOW - 80, GOOD_NOW - 70),
        ),
    ).to_json()
    doc.update(fields)
    return doc


def deep(session: str) -> str:
    """3.8 KB nested 1,900 deep: json.loads alone gives up with a RecursionError."""
    return f'{{"v":1,"session":"{session}","state":"waiting","x":{"[" * 1900 + "]" * 1900}}}'


# label -> (session, the beacon's text, what the row's reason says)
HOSTILE = {
    "deep": (f"{P}-deep", deep(f"{P}-deep"), "nested 1901 levels deep"),
    "hist": (
        f"{P}-hist",
        json.dumps(good(f"{P}-hist", "hist", history=[1, 2])),
        "history: expected an object, got array",
    ),
    "histstr": (
        f"{P}-histstr",
        json.dumps(good(f"{P}-histstr", "histstr", history="launch")),
        "history: expected an object, got string",
    ),
    "since": (
        f"{P}-since",
        json.dumps(good(f"{P}-since", "since", since=float("-inf"))),
        "-Infinity is not a JSON number",
    ),
    "inf": (
        f"{P}-inf",
        json.dumps(good(f"{P}-inf", "inf", history={"launch": ["failed", 123.25, None]})).replace("123.25", "1e400"),
        "is not a time",
    ),
    "big": (f"{P}-big", json.dumps(good(f"{P}-big", "big", error="x" * 4500)), "larger than a beacon"),
}
MARKED = good(
    f"{P}-ana",
    "ana",
    step=MARKUP,
    state="running",
    error=f"boom {MARKUP} {OSC52} [bold]",
    history={
        "credentials": ["done", GOOD_NOW - 90, GOOD_NOW - 80],
        MARKUP: ["running", GOOD_NOW - 60, None],
        f"[link=file:///etc]{OSC52}": ["done", GOOD_NOW - 70, GOOD_NOW - 65],
    },
)
ROSTER = (
    f"""
[workshop]
name = "room \\u001b]52;c;aGVsbG8=\\u0007 {MARKUP} 3"
region = "{REGION}"
sandbox = true
"""
    + "".join(
        f'[[participant]]\nlabel = "{label}"\nshared = true\nsession = "{P}-{label}"\n'
        for label in ("ana", "ben", *HOSTILE)
    )
    + f"""
[[participant]]
label = "zed"
shared = true
[[participant]]
label = "mal"
role_arn = "arn:aws:iam::{MAL_ACCOUNT}:role/Hostile"
"""
)
BAD_NAMES = ("../../victim", "../../made", f"{CSI8}{MARKUP}")


def put(ssm, name: str, text: str) -> None:
    ssm.put_parameter(
        Name=beacon.PREFIX + name,
        Value=text,
        Type="String",
        Overwrite=True,
        Tier="Advanced" if len(text.encode()) > beacon.MAX_BYTES else "Standard",
    )


def launch(ec2, session: str, name: str = "") -> str:
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    tag_list = [{"Key": "inflab:session", "Value": session}] + ([{"Key": "Name", "Value": name}] if name else [])
    answer = ec2.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.micro",
        TagSpecifications=[{"ResourceType": "instance", "Tags": tag_list}],
    )
    return answer["Instances"][0]["InstanceId"]


# -- without AWS ----------------------------------------------------------------------------------------
def test_untrusted_text_is_shown_with_its_control_characters_visible():
    assert shown(f"step {OSC52}") == "step \\x1b]52;c;aGVsbG8=\\x07"
    assert shown(shown(OSC52)) == shown(OSC52)  # idempotent: safe to apply twice
    for raw, visible in (
        ("a\u202eb", "a\\u202eb"),
        ("\ud800", "\\ud800"),
        (CSI8, "\\x9b2J"),
        ("a\nb", "a\\x0ab"),
        ("\U000e0041", "\\U000e0041"),
    ):
        assert shown(raw) == visible
        shown(raw).encode("utf-8")  # a lone surrogate no longer breaks the terminal's encoding
    assert shown("plain ü [/] text") == "plain ü [/] text"
    assert shown("x" * 50, limit=10) == "x" * 9 + "…"
    from inflab.untrusted import shown_text

    assert shown_text(f"{MARKUP}{OSC52}", "red").plain == f"{MARKUP}\\x1b]52;c;aGVsbG8=\\x07"  # markup stays text


@pytest.mark.parametrize("label", list(HOSTILE))
def test_a_malformed_beacon_is_a_reason_never_an_exception(label):
    session, text, says = HOSTILE[label]
    found = beacon.read_parameter(beacon.path(session), text)
    assert found.beacon is None and says in found.problem and "\n" not in found.problem
    with pytest.raises(beacon.BeaconError):
        beacon.Beacon.parse(text)


SCHEMA_CASES = [
    ("s-upd", json.dumps(good("s-upd", "x", updated="soon")), "updated: expected a time"),
    ("s-arr", "[1, 2]", "a JSON array, not an object"),
    ("s-v2", json.dumps(good("s-v2", "x", v=2)), "schema 2"),
    ("s-other", json.dumps(good("s-x", "x")), "it names another session"),
    ("s-nan", json.dumps(good("s-nan", "x", updated=float("nan"))), "NaN is not a JSON number"),
    ("s-huge", json.dumps(good("s-huge", "x", since=123.25)).replace("123.25", "9" * 400), "is not a time"),
    ("s-state", json.dumps(good("s-state", "x", state="\x1b[2J")), "state:"),
    ("s-name", json.dumps(good("s-name", "x", names={"batch": {"sizes": ["8"]}})), "names.batch.sizes"),
    ("../../x", json.dumps(good("../../x", "x")), "not a session name"),
]


@pytest.mark.parametrize("name,text,says", SCHEMA_CASES, ids=[c[2] for c in SCHEMA_CASES])
def test_the_schema_is_checked_field_by_field(name, text, says):
    found = beacon.read_parameter(beacon.PREFIX + name, text)
    assert found.beacon is None and says in found.problem, found.problem
    assert found.valid_name == (name != "../../x")


@pytest.fixture(scope="module")
def room(sandbox, inflab_home, tmp_path_factory):
    """The hostile room, published; yields (roster file, the shared account's Aws, mal's Aws, victim dir)."""
    shared = sandbox_aws(sandbox, REGION, per_thread=False)
    mal = sandbox_aws(sandbox, REGION, per_thread=False, role_arn=f"arn:aws:iam::{MAL_ACCOUNT}:role/Hostile")
    ssm, ec2 = shared.client("ssm"), shared.client("ec2")
    put(ssm, f"{P}-ana", json.dumps(MARKED))
    launch(ec2, f"{P}-ana", name=f"{MARKUP} web {CSI8}")
    beacon.publish(
        shared, beacon.Beacon.parse(json.dumps(good(f"{P}-ben", "ben"))), tags(f"{P}-ben", "inf1"), tagged=False
    )
    for session, text, _ in HOSTILE.values():
        put(ssm, session, text)
    launch(ec2, f"{P}-deep")  # the hostile beacon's session has a running instance: cleanup must still find it
    put(ssm, f"{P}-zed1", json.dumps(good(f"{P}-zed1", "zed")))
    put(ssm, f"{P}-zed2", json.dumps(good(f"{P}-zed2", "zed", updated="soon")))
    put(mal.client("ssm"), "../../victim", json.dumps(good("../../victim", "mal")))
    for name in BAD_NAMES[1:]:
        launch(mal.client("ec2"), name)
    work = tmp_path_factory.mktemp("tmpdir")  # TMPDIR of the cleanup: where ../../victim pointed from a stand-in store
    victim = work / "victim"
    victim.mkdir()
    (victim / "known_hosts").write_text("github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsab\n")
    launch(mal.client("ec2"), str(victim))  # a tag may name an absolute path too
    path = tmp_path_factory.mktemp("roster") / "room.toml"
    path.write_text(ROSTER)
    yield path, shared, mal, work
    for iid in [
        i["InstanceId"] for r in mal.client("ec2").describe_instances()["Reservations"] for i in r["Instances"]
    ]:
        mal.client("ec2").terminate_instances(InstanceIds=[iid])
    for aws, name in ((mal, "../../victim"), (shared, f"{P}-zed2")):
        try:
            aws.client("ssm").delete_parameter(Name=beacon.PREFIX + name)
        except Exception:  # noqa: BLE001 (gone already)
            pass


def read_room(path, home):
    reader = RoomReader(roster.load(path), home)
    try:
        return {r.label: r for r in reader.refresh().rows}
    finally:
        reader.close()


def test_each_hostile_beacon_is_its_own_row_and_the_others_are_read(room, inflab_home):
    rows = read_room(room[0], inflab_home)
    assert rows["ben"].state == WAITING and rows["ben"].step == "security-group" and not rows["ben"].reason
    assert rows["ana"].state == RUNNING and rows["ana"].step == MARKUP and len(rows["ana"].instances) == 1
    assert [m.step for m in rows["ana"].history][1] == MARKUP
    for label, (session, _, says) in HOSTILE.items():
        row = rows[label]
        assert row.state == UNREADABLE and row.account == "123456789012" and row.session == session, (label, row)
        assert says in row.reason and beacon.path(session) in row.reason, (label, row.reason)
    assert len(rows["deep"].instances) == 1  # its tags still show: the running instance is on the row
    assert rows["zed"].state == WAITING and rows["zed"].session == f"{P}-zed1"  # a string `updated` beside a number
    # mal's own account names only sessions that are not session names: a row saying so, never a path
    mal = rows["mal"]
    assert mal.state == UNREADABLE and mal.account == MAL_ACCOUNT and mal.session == ""
    said = " ".join((mal.reason, *mal.warnings))
    assert "'../../victim'" in said and "'../../made'" in said and "not a session name" in said
    assert "/victim'" in " ".join(mal.warnings)
    assert "\x9b" not in said and "\\x9b2J" in said


def test_once_prints_hostile_text_safely_and_json_is_strict(room, cli):
    text = cli("instructor", str(room[0]), "--once", timeout=180)
    assert text.returncode == 1, text.stderr  # unreadable rows
    assert "Traceback" not in text.stderr
    for raw in ("\x1b", "\x07"):
        assert raw not in text.stdout
    assert "\\x1b]52;c;aGVsbG8=\\x07" in text.stdout  # ana's error, made visible
    lines = {line.split()[0]: line for line in text.stdout.splitlines()[2:]}
    assert "nested 1901 levels deep" in lines["deep"] and "unreadable" in lines["deep"]

    as_json = cli("instructor", str(room[0]), "--once", "--json", timeout=180)
    assert as_json.returncode == 1, as_json.stderr

    def refuse(constant):
        raise AssertionError(f"--json printed {constant}, which is not JSON")

    out = json.loads(as_json.stdout, parse_constant=refuse)
    json.dumps(out, allow_nan=False)
    assert "\x1b" not in as_json.stdout and "\\u001b]52" in as_json.stdout  # escaped inside JSON strings
    rows = {r["label"]: r for r in out["rows"]}
    assert rows["ana"]["error"] == MARKED["error"]  # JSON keeps the text as it was, escaped
    assert rows["since"]["state"] == "unreadable" and rows["since"]["since"] is None
    assert out["summary"]["unreadable"] == len(HOSTILE) + 1


def screen_text(app) -> str:
    console = Console(
        width=app.size.width,
        height=app.size.height,
        file=io.StringIO(),
        record=True,
        legacy_windows=False,
        color_system=None,
    )
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


async def painted(pilot, app, *texts: str, timeout: float = 15) -> str:
    """The screen once it shows every one of ``texts`` (a busy machine paints after the widgets
    change), or as it is when ``timeout`` ends: the asserts that follow then say what is missing."""
    deadline = time.monotonic() + timeout
    await pilot.pause()
    seen = screen_text(app)
    while not all(t in seen for t in texts) and time.monotonic() < deadline:
        await pilot.pause(0.05)
        seen = screen_text(app)
    return seen


async def test_the_dashboard_and_every_drill_in_survive_the_room(room, inflab_home):
    """Every participant opened in turn: markup shows as text, escapes are made visible, nothing crashes."""
    from inflab.tui.instructor import InstructorApp
    from inflab.tui.instructor_screens import ParticipantScreen

    reader = RoomReader(roster.load(room[0]), inflab_home)
    app = InstructorApp(reader, refresh_s=600)
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            dashboard = app.screen
            for _ in range(1200):
                if dashboard.refreshes >= 1:
                    break
                await pilot.pause(0.05)
            assert dashboard.refreshes >= 1, dashboard.status_text()
            seen = await painted(pilot, app, "\\x1b]52", MARKUP, "unreadable")
            assert "\x1b" not in seen and "\\x1b]52" in seen and MARKUP in seen
            assert "unreadable" in seen
            table = dashboard.query_one("#room", DataTable)
            for label in reader.labels:
                table.move_cursor(row=table.get_row_index(label))
                await pilot.press("enter")
                details = app.screen
                assert isinstance(details, ParticipantScreen) and details.row.label == label
                for _ in range(600):
                    if details.resources is not None or "Could not" in str(
                        details.query_one("#resources-status", Static).render()
                    ):
                        break
                    await pilot.pause(0.05)
                expected = {"ana": ("Last error: boom",), "deep": ("nested 1901 levels deep",)}.get(label, ())
                seen = await painted(pilot, app, *expected)
                assert "\x1b" not in seen and "\x9b" not in seen, label
                if label == "ana":
                    history = details.query_one("#history", DataTable)
                    steps = [str(history.get_row_at(i)[0]) for i in range(history.row_count)]
                    assert steps == ["credentials", MARKUP, f"[link=file:///etc]{shown(OSC52)}"]
                    resources = details.query_one("#resources", DataTable)
                    names = [str(resources.get_row_at(i)[1]) for i in range(resources.row_count)]
                    assert f"{MARKUP} web {shown(CSI8)}" in names
                    assert f"Last error: boom {MARKUP} {shown(OSC52)} [bold]" in seen
                if label == "deep":
                    assert "nested 1901 levels deep" in seen
                await pilot.press("escape")
                assert app.screen is dashboard
    finally:
        reader.close()


def test_cleanup_all_goes_by_tags_and_never_uses_a_hostile_name_as_a_path(room, cli, inflab_home, sandbox):
    """Last: removes the room. The hostile beacon's running instance is terminated; ../../victim's
    known_hosts is left alone and ../../made is never created; nothing of the cleanup lands in TMPDIR."""
    path, shared, mal, work = room
    before = (work / "victim" / "known_hosts").read_text()
    r = cli("instructor", str(path), "--cleanup-all", "--yes", env={"TMPDIR": str(work)}, timeout=600)
    assert r.returncode == 1, r.stderr  # mal's names could not be cleaned up
    assert "Traceback" not in r.stderr and "\x1b" not in r.stdout + r.stderr and "\x07" not in r.stdout + r.stderr
    assert (work / "victim" / "known_hosts").read_text() == before
    assert sorted(p.name for p in work.iterdir()) == ["victim"]  # no ../../made, no stand-in store
    assert not (work.parent / "made").exists() and not (work.parent / "victim").exists()
    lines = {line.split()[1]: line for line in r.stdout.splitlines() if line[:1] in "✓✗"}
    for label in ("ana", "ben", "zed", *HOSTILE):
        assert lines[label].startswith("✓") and "nothing tagged is left" in lines[label], lines[label]
    assert lines["mal"].startswith("✗") and "'../../victim'" in lines["mal"] and "not a session name" in lines["mal"]
    assert "\\x9b2J" in lines["mal"] and "\x9b" not in r.stdout
    for session in [f"{P}-{label}" for label in ("ana", "ben", *HOSTILE)] + [f"{P}-zed1"]:
        assert inventory.session_resources(shared, session) == [], session
    # what mal's account holds under names that are not session names was left for a person to look at
    assert beacon.read(mal, "../../victim") is not None
    left = [
        i
        for r_ in mal.client("ec2").describe_instances()["Reservations"]
        for i in r_["Instances"]
        if i["State"]["Name"] == "running"
    ]
    assert len(left) == 3
