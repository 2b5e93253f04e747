"""Bad input through the real CLI: exit code 2, one line on stderr naming the key or flag,
no traceback, and nothing created — no session, no session directory, nothing in the sandbox."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from conftest import run_cli, unusable_config

# (id, config file text or None, extra args — "{name}" and "{config}" are filled in, expected substring)
# A config of None means no --config is given unless the args name one.
CASES = [
    ("wrong-type", '[instance]\nvolume_size_gb = "big"\n', None, "instance.volume_size_gb"),
    ("bool-for-int", "[instance]\nvolume_size_gb = true\n", None, "instance.volume_size_gb"),
    ("unknown-key", "[instance]\nsize = 3\n", None, "instance.size"),
    ("unknown-section", '[network]\nvpc = "vpc-1"\n', None, "network"),
    ("bad-region", '[aws]\nregion = "us-west-9"\n', None, "aws.region"),
    ("bad-type-size", '[instance]\ntype = "inf1.huge"\n', None, "instance.type"),
    ("bad-type-family", '[instance]\ntype = "foo.large"\n', None, "instance.type"),
    ("empty-batch-sizes", "[batch]\nsizes = []\n", None, "batch.sizes"),
    ("duplicate-batch-size", "[batch]\nsizes = [2, 4, 2]\n", None, "batch.sizes"),
    ("zero-batch-size", "[batch]\nsizes = [0, 2]\n", None, "batch.sizes"),
    ("malformed-toml", "[instance\nvolume_size_gb = 3\n", None, "--config"),
    ("ssh-to-the-world", '[instance]\nssh_cidr = "0.0.0.0/0"\n', None, "instance.ssh_cidr"),
    ("ssh-cidr-not-cidr", '[instance]\nssh_cidr = "my laptop"\n', None, "instance.ssh_cidr"),
    ("bad-volume-type", '[instance]\nvolume_type = "st1"\n', None, "instance.volume_type"),
    ("nan-rate", '[bench]\nmode = "open"\nrate = nan\n', None, "bench.rate"),
    ("ipv6-ssh-cidr", '[instance]\nssh_cidr = "2001:db8::/64"\n', None, "IPv6 ingress is not supported"),
    ("wide-ssh-cidr", '[instance]\nssh_cidr = "10.0.0.0/8"\n', None, "instance.allow_wide_ssh"),
    ("path-model-name", '[model]\nname = "a/.."\n', None, "model.name"),
    ("shell-profile-in-sandbox", '[aws]\nprofile = "x; rm -rf ~"\n', None, "aws.profile"),
    ("300-characters", f'[instance]\nami_name = "{"a" * 300}"\n', None, "instance.ami_name"),
    ("missing-config-file", None, ["run", "--sandbox", "--name", "{name}", "--config", "{missing}"], "--config"),
    (
        "bad-config-json-mode",
        '[instance]\nvolume_size_gb = "big"\n',
        ["run", "--sandbox", "--json", "--name", "{name}", "--config", "{config}"],
        "instance.volume_size_gb",
    ),
    ("bad-name", None, ["run", "--sandbox", "--name", "Bad_Name"], "--name"),
    ("name-too-long", None, ["run", "--sandbox", "--name", "x" * 40], "--name"),
    ("name-with-newline", None, ["run", "--sandbox", "--name", "{name}\n", "--until", "credentials"], "--name"),
    (
        "type-with-newline",
        '[instance]\ntype = "inf1.2xlarge\\n"\n',
        ["run", "--sandbox", "--name", "{name}", "--config", "{config}", "--until", "credentials"],
        "instance.type",
    ),
    ("missing-name", None, ["run", "--sandbox"], "--name"),
    ("unknown-until", None, ["run", "--sandbox", "--name", "{name}", "--until", "bogus"], "--until"),
    (
        "bad-grid",
        '[batch]\nfamilies = ["gpt"]\n',
        ["run", "--sandbox", "--name", "{name}", "--config", "{config}", "--until", "batch-submit"],
        "batch.families",
    ),
    (
        "grid-too-big",
        '[batch]\nsizes = [1, 2, 3, 4, 5, 6, 7, 8]\ninstance_types = ["inf1.xlarge", "inf2.xlarge", "g5.xlarge", "c6i.4xlarge"]\n'
        'families = ["bert", "resnet"]\n',
        ["run", "--sandbox", "--name", "{name}", "--config", "{config}", "--until", "batch-submit"],
        "batch.sizes",
    ),
    ("unknown-flag", None, ["run", "--sandbox", "--name", "{name}", "--frobnicate"], "--frobnicate"),
    ("unknown-flag-sessions", None, ["sessions", "--frobnicate"], "--frobnicate"),
    ("resources-no-session", None, ["resources", "{name}"], "NAME"),
    ("resources-bad-name", None, ["resources", "Bad_Name"], "NAME"),
    ("cleanup-no-session", None, ["cleanup", "{name}", "--yes"], "NAME"),
    ("cleanup-no-session-no-yes", None, ["cleanup", "{name}"], "NAME"),
    ("resume-no-session", None, ["resume", "{name}"], "NAME"),
]


def _sessions(cli) -> list[str]:
    """The saved sessions, read from the store the CLI writes (quicker than asking the CLI each time;
    `inflab sessions --json` itself is checked once, below)."""
    from inflab.session import Store

    return [s.name for s in Store().list_sessions()]


def _assert_one_line_error(r, expected: str) -> None:
    assert "Traceback" not in r.stdout and "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"stderr is not one line: {r.stderr!r}"
    assert expected in lines[0], lines[0]
    assert r.stdout == "", r.stdout


def _session_dirs(inflab_home) -> set[str]:
    d = inflab_home / "sessions"
    return {p.name for p in d.iterdir()} if d.exists() else set()


def _assert_nothing_for(name: str, cli, tagged, inflab_home, sessions_before, dirs_before) -> None:
    after = _sessions(cli)
    assert name not in after
    assert set(after) == set(sessions_before)
    assert not (inflab_home / "sessions" / name).exists()
    assert _session_dirs(inflab_home) == dirs_before
    found = tagged(name)
    assert all(not v for v in found.values()), {k: len(v) for k, v in found.items()}


@pytest.mark.parametrize("case_id, toml, args, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_creates_nothing(
    case_id, toml, args, expected, name, tmp_path, cli, sandbox, tagged, inflab_home
):
    cfg = tmp_path / "lab.toml"
    if toml is not None:
        cfg.write_text(toml)
    if args is None:
        args = ["run", "--sandbox", "--name", "{name}", "--config", "{config}"]
    argv = [a.format(name=name, config=str(cfg), missing=str(tmp_path / "no-such.toml")) for a in args]

    sessions_before, dirs_before = _sessions(cli), _session_dirs(inflab_home)

    r = cli(*argv, input="")

    _assert_one_line_error(r, expected)
    _assert_nothing_for(name, cli, tagged, inflab_home, sessions_before, dirs_before)


UNREADABLE = [
    ("fifo", "FIFO"),
    ("dev-zero", "character device"),
    ("socket", "socket"),
    ("proc-mem", "cannot read"),
    ("symlink-loop", "symbolic links"),
    ("directory", "directory"),
    ("long-name", "too long"),
    ("not-utf8", "not UTF-8"),
    ("deep-array", "nested too deeply"),
    ("too-big", "larger than 1 MiB"),
]


@pytest.mark.parametrize("kind, says", UNREADABLE, ids=[u[0] for u in UNREADABLE])
def test_config_files_the_cli_cannot_read_create_nothing(kind, says, name, tmp_path):
    home = tmp_path / "inflab-home"  # not there yet: a refused run must not make it
    with tempfile.TemporaryDirectory(prefix="cfg") as d:  # short: socket paths are limited to ~100 bytes
        path = unusable_config(kind, Path(d))

        r = run_cli(
            "run",
            "--sandbox",
            "--name",
            name,
            "--config",
            path,
            "--until",
            "credentials",
            home=home,
            timeout=60,
            input="",
        )

    _assert_one_line_error(r, "--config")
    assert says in r.stderr, r.stderr
    assert not home.exists(), sorted(p.name for p in home.iterdir())
    r = run_cli("sessions", "--json", home=home)
    assert r.returncode == 0 and json.loads(r.stdout) == [], r.stdout + r.stderr


def test_cleanup_without_yes_and_no_terminal_refuses_and_deletes_nothing(name, cli, sandbox, tagged):
    r = cli("run", "--sandbox", "--name", name, "--until", "keypair")
    assert r.returncode == 0, r.stderr
    assert len(tagged(name)["key_pairs"]) == 1

    r = cli("cleanup", name, input="")  # stdin is a pipe, not a terminal

    _assert_one_line_error(r, "--yes")
    assert len(tagged(name)["key_pairs"]) == 1
    listed = cli("sessions", "--json")
    assert listed.returncode == 0 and name in [x["name"] for x in json.loads(listed.stdout)]


def test_rerun_with_a_different_config_is_refused(name, tmp_path, cli, sandbox, tagged):
    r = cli("run", "--sandbox", "--name", name, "--until", "credentials")
    assert r.returncode == 0, r.stderr
    cfg = tmp_path / "other.toml"
    cfg.write_text("[instance]\nvolume_size_gb = 100\n")

    r = cli("run", "--sandbox", "--name", name, "--config", str(cfg), "--until", "keypair")

    _assert_one_line_error(r, "--config")
    assert not tagged(name)["key_pairs"]


def test_new_with_an_existing_name_is_refused(name, cli, sandbox):
    r = cli("run", "--sandbox", "--name", name, "--until", "credentials")
    assert r.returncode == 0, r.stderr

    r = cli("new", "--sandbox", "--name", name, input="")

    _assert_one_line_error(r, "--name")


@pytest.mark.parametrize("where", ["a-file", "under-dev-null"])
def test_an_inflab_home_that_cannot_be_a_directory_is_one_line(where, tmp_path, cli):
    home = tmp_path / "home-file" if where == "a-file" else Path("/dev/null/inflab")
    if where == "a-file":
        home.write_text("not a directory")
    for args in (["sessions"], ["run", "--sandbox", "--name", "x1", "--until", "credentials"]):
        r = cli(*args, env={"INFLAB_HOME": str(home)}, timeout=30)
        _assert_one_line_error(r, "INFLAB_HOME")
        assert "is not a directory" in r.stderr
    if where == "a-file":
        assert home.read_text() == "not a directory"


def test_a_corrupt_store_says_where_and_what_to_do(tmp_path, cli):
    db = tmp_path / "inflab.db"
    db.write_bytes(b"\x00garbage, not SQLite" * 300)
    before = db.read_bytes()
    r = cli("sessions", env={"INFLAB_HOME": str(tmp_path)}, timeout=30)
    assert r.returncode == 1
    line = r.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert str(db) in line and "damaged" in line and "move it aside" in line
    assert db.read_bytes() == before, "the damaged file is left as it was"
