"""A home another user prepared: the lab refuses it in one line (exit 2) and writes nothing; a
link someone left in the lab's directories never receives a key, a secret or a database.

"Another user" is simulated by a directory group- or world-writable, or (as root) one chowned
to ``nobody`` (uid 65534)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from conftest import run_cli

from inflab import private_files
from inflab.session import Store, StoreError

NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root")


def _tree(path: Path) -> dict[str, tuple[int, int, bytes | str]]:
    """Everything under ``path``: (mode, owner, content or link target), to show nothing changed."""
    out = {}
    for p in sorted([path, *path.rglob("*")]):
        st = p.lstat()
        what = os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else b""
        out[str(p.relative_to(path))] = (st.st_mode, st.st_uid, what)
    return out


def _one_line_error(r) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def _planted_home(root: Path, name: str) -> tuple[Path, Path]:
    """A home prepared by someone else: a session directory of ``name`` whose key's temporary
    file is a link to a file of theirs (``stolen``), where the key would be written."""
    home, stolen = root / "home", root / "stolen"
    (home / "sessions" / name).mkdir(parents=True)
    (home / "sessions" / name / f"inflab-{name}.pem.tmp").symlink_to(stolen)
    (home / "sessions" / name / "known_hosts.tmp").symlink_to(stolen)
    return home, stolen


@pytest.mark.parametrize(
    "how", ["owned-by-nobody", "world-writable", "group-writable", "parent-owned-by-nobody", "parent-world-writable"]
)
def test_a_home_another_user_prepared_is_refused_and_nothing_is_written(how, tmp_path):
    if how in ("owned-by-nobody", "parent-owned-by-nobody") and os.geteuid() != 0:
        pytest.skip("giving a directory to another user needs root")
    home, stolen = _planted_home(tmp_path, "x1")
    where = home
    if how == "owned-by-nobody":
        for p in [home, *home.rglob("*")]:
            os.lchown(p, NOBODY, -1)
        says = f"belongs to uid {NOBODY}"
    elif how == "world-writable":
        home.chmod(0o777)
        says = "can be written by everyone (mode 0777)"
    elif how == "group-writable":
        home.chmod(0o770)
        says = "can be written by its group (mode 0770)"
    elif how == "parent-owned-by-nobody":
        os.chown(tmp_path, NOBODY, -1)
        where, says = tmp_path, f"belongs to uid {NOBODY}"
    else:
        tmp_path.chmod(0o777)  # not sticky: whoever writes there can swap the home for another
        where, says = tmp_path, "not sticky"
    before = _tree(tmp_path)

    for args in (["run", "--sandbox", "--name", "x1", "--until", "keypair"], ["sessions"], ["sandbox", "status"]):
        r = run_cli(*args, home=home, timeout=60)
        line = _one_line_error(r)
        assert f"INFLAB_HOME: {where} " in line and says in line, line

    assert not stolen.exists(), "the key went through the planted link"
    assert _tree(tmp_path) == before, "something was written in a home another user could reach"


def test_a_home_under_a_sticky_world_writable_directory_is_fine(tmp_path):
    """As /tmp: others may write there, but not rename what is yours."""
    tmp_path.chmod(0o1777)
    home = tmp_path / "home"
    store = Store(home)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert store.session_dir("x1").is_dir()


def test_planted_temporary_links_never_receive_the_key_or_the_host_key(name, cli, store, sandbox):
    """Even in a home of ours, a link where the lab's temporary file goes is not written through:
    temporary files are made exclusively (mkstemp), then renamed over the key and known_hosts."""
    from inflab.engine import Engine

    d = store.session_dir(name)
    stolen = d.parent.parent.parent / f"stolen-{name}"
    (d / f"inflab-{name}.pem.tmp").symlink_to(stolen)
    (d / "known_hosts.tmp").symlink_to(stolen)

    r = cli("run", "--sandbox", "--name", name, "--until", "connect")
    assert r.returncode == 0, r.stdout + r.stderr
    Engine(store, name).ssh_command("true")  # what `o` (open a shell) writes: the known_hosts file

    assert not stolen.exists(), "the private key or the host key went through a planted link"
    for f in (d / f"inflab-{name}.pem", d / "known_hosts"):
        st = f.lstat()
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, f


@as_root
def test_a_session_directory_of_another_user_is_refused_before_anything_is_recorded(tmp_path):
    home = tmp_path / "home"
    store = Store(home)
    (home / "sessions" / "x1").mkdir(parents=True)
    os.chown(home / "sessions" / "x1", NOBODY, -1)

    r = run_cli("run", "--sandbox", "--name", "x1", "--until", "credentials", home=home, timeout=60)

    line = _one_line_error(r)
    assert f"{home / 'sessions' / 'x1'} belongs to uid {NOBODY}" in line, line
    assert not store.has_session("x1"), "a session was recorded in a directory the lab refused"


# ---------------------------------------------------------------------------- the store


@pytest.mark.parametrize("target_kind", ["a-0644-file", "an-empty-file"])
@pytest.mark.parametrize("side", ["", "-wal"])
def test_a_planted_store_link_is_refused_and_its_target_untouched(target_kind, side, tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_bytes(b"" if target_kind == "an-empty-file" else b"my notes\n")
    victim.chmod(0o644)
    if side:
        Store(home)  # a store of ours, with a planted side file beside it
    (home / f"inflab.db{side}").symlink_to(victim)

    r = run_cli("sessions", home=home, timeout=30)

    line = _one_line_error(r)
    assert f"{home / ('inflab.db' + side)} is a symbolic link" in line, line
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644, "the link's target was chmod-ed"
    assert victim.read_bytes() == (b"" if target_kind == "an-empty-file" else b"my notes\n"), "the target was written"


@as_root
def test_a_store_file_of_another_user_is_refused_and_untouched(tmp_path):
    home = tmp_path / "home"
    Store(home)
    db = home / "inflab.db"
    db.chmod(0o644)
    os.chown(db, NOBODY, -1)
    before = db.read_bytes()

    r = run_cli("sessions", home=home, timeout=30)

    line = _one_line_error(r)
    assert f"{db} belongs to uid {NOBODY}" in line, line
    assert db.read_bytes() == before and stat.S_IMODE(db.stat().st_mode) == 0o644


def test_sessions_and_locks_are_0700_and_an_old_0755_one_is_tightened(tmp_path):
    home = tmp_path / "home"
    store = Store(home)
    store.session_dir("x1")
    assert stat.S_IMODE((home / "sessions").stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "sessions" / "x1").stat().st_mode) == 0o700

    (home / "sessions").chmod(0o755)  # what earlier versions made
    Store(home)
    assert stat.S_IMODE((home / "sessions").stat().st_mode) == 0o700


def test_a_planted_lock_link_is_refused_and_its_target_untouched(tmp_path):
    from inflab.session import SessionLock

    home = tmp_path / "home"
    Store(home)
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    (home / "locks").mkdir(mode=0o700)
    (home / "locks" / "x1.lock").symlink_to(victim)

    with pytest.raises(private_files.UnsafePath, match="is a symbolic link"):
        SessionLock(home, "x1").acquire("test")
    assert victim.read_text() == "keep me\n"


def test_store_errors_name_the_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o777)
    home.chmod(0o777)
    with pytest.raises(StoreError, match=r"can be written by everyone"):
        Store(home)
    assert list(home.iterdir()) == []


# ---------------------------------------------------------------------------- the sandbox's own files


def test_the_sandbox_does_not_log_through_a_planted_link(tmp_path):
    from inflab import sandbox as sb

    home = tmp_path / "home"
    Store(home)
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    (home / "sandbox").mkdir(mode=0o700)
    (home / "sandbox" / "daemon.log").symlink_to(victim)
    try:
        with pytest.raises(private_files.UnsafePath, match="daemon.log is a symbolic link"):
            sb.ensure_running(home)
    finally:
        sb.stop(home)
    assert victim.read_text() == "keep me\n"


@as_root
def test_a_sandbox_directory_of_another_user_is_refused(tmp_path):
    home = tmp_path / "home"
    Store(home)
    (home / "sandbox").mkdir(mode=0o700)
    os.chown(home / "sandbox", NOBODY, -1)

    r = run_cli("sandbox", "status", home=home, timeout=30)

    assert f"{home / 'sandbox'} belongs to uid {NOBODY}" in _one_line_error(r)


def test_the_sandbox_instance_accepts_only_keys_the_lab_made(tmp_path):
    """A key file someone else left among the sessions (or one others can read) lets nobody in."""
    import asyncssh

    from inflab.sandbox.sshd import lab_keys

    home = tmp_path / "home"
    store = Store(home)

    def key(session: str, mode: int = 0o600) -> tuple[str, str]:
        k = asyncssh.generate_private_key("ssh-ed25519")
        path = store.session_dir(session) / f"inflab-{session}.pem"
        private_files.write_private(path, k.export_private_key())
        path.chmod(mode)
        return tuple(k.export_public_key("openssh").decode().split()[:2])

    ours, readable = key("ours"), key("readable", 0o644)
    keys = [ours, readable]
    if os.geteuid() == 0:
        theirs = key("theirs")
        os.chown(store.session_dir("theirs"), NOBODY, -1)
        keys.append(theirs)
    found = lab_keys(home)
    assert ours in found
    assert not (set(keys[1:]) & found), "a key another user could have planted (or read) opens the sandbox instance"


@pytest.mark.parametrize("side", ["-wal", "-shm"])
def test_a_store_opened_while_another_process_ends_sqlites_side_files_opens(side, tmp_path, monkeypatch):
    """SQLite removes the -wal and -shm files when its last connection closes: one seen a moment ago
    and gone when opened is nothing to check, not "cannot write inflab.db" (two runs on one session
    starting together met exactly this)."""
    home = tmp_path / "home"
    Store(home).create_session("s1", {}, sandbox=True, track="inf1")
    gone = Path(str(home / "inflab.db") + side)
    gone.touch(mode=0o600)  # there when the store looks ...
    real = private_files.open_own

    def vanishing(path, flags):
        if Path(path) == gone:
            gone.unlink(missing_ok=True)  # ... removed by the other process before it is opened
        return real(path, flags)

    monkeypatch.setattr(private_files, "open_own", vanishing)
    assert Store(home).get_session("s1").name == "s1"
