"""Detached remote jobs: cut connections and restarted clients reattach with no lost or repeated byte."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest
from test_remote_ssh import sshd  # noqa: F401  (fixture: a real OpenSSH server on loopback)

from inflab import config
from inflab.remote import jobs
from inflab.remote.ssh import HostKeyPin, connect
from inflab.session import Store

# ~3,000 lines over about a second and a half, a progress-bar redraw, and a last line with no newline.
NOISY = (
    "for i in $(seq 1 3000); do echo \"line $i $(printf '%*s' $((i % 70)) '' | tr ' ' x)\"; "
    "[ $((i % 200)) = 0 ] && sleep 0.1; done; printf '50%%\\r100%%\\n'; echo to-stderr >&2; printf 'the end, no newline'"
)


async def start_noisy(sshd, base: str, store: Store, session: str):  # noqa: F811
    """Connect to the test sshd and start the noisy job, recorded in the session."""
    conn = await connect(sshd.target(), HostKeyPin(), timeout=20)
    jdir = await jobs.start(conn, "noisy", NOISY, base=base)
    store.job_record(session, "noisy", "127.0.0.1", jdir)
    return conn, jdir


@pytest.fixture
def session(inflab_home, name):
    store = Store(inflab_home)
    store.create_session(name, config.load(None, sandbox=True).data, sandbox=True, track="inf1")
    return name


async def test_a_cut_connection_reattaches_byte_for_byte(sshd, tmp_path, inflab_home, session):  # noqa: F811
    base = str(tmp_path / "jobs")
    store = Store(inflab_home)
    conn, jdir = await start_noisy(sshd, base, store, session)
    received: list[bytes] = []
    cuts = 0

    def on_lines(lines, offset):
        nonlocal cuts
        received.extend(lines)
        store.job_offset(session, "noisy", offset)
        if len(received) > 400 * (cuts + 1) and cuts < 3:
            cuts += 1
            conn.abort()  # the network drops mid-stream

    code = None
    for _ in range(10):
        try:
            code = await jobs.follow(conn, jdir, store.job(session, "noisy")["offset"], on_lines)
            break
        except FileNotFoundError:  # the job directory is gone: a real failure
            raise
        except Exception:  # the dropped connection surfaces as an error: reconnect
            conn = await connect(sshd.target(), HostKeyPin(), timeout=20)
    assert cuts == 3, "the connection should have been cut three times"
    assert code == 0
    log = (tmp_path / "jobs" / "noisy" / "out.log").read_bytes()
    assert b"\n".join(received) == log
    assert received[-1] == b"the end, no newline"
    store.job_finished(session, "noisy", code)
    assert store.job(session, "noisy")["status"] == "succeeded"


async def test_a_restarted_client_continues_where_the_last_one_stopped(sshd, tmp_path, inflab_home, session):  # noqa: F811
    base = str(tmp_path / "jobs")
    first_store = Store(inflab_home)
    conn, jdir = await start_noisy(sshd, base, first_store, session)
    shown: list[bytes] = []

    class Quit(Exception):
        pass

    def first_app(lines, offset):
        shown.extend(lines)
        first_store.job_offset(session, "noisy", offset)
        if len(shown) > 1000:
            raise Quit  # the user quits the app mid-stream

    with pytest.raises(Quit):
        await jobs.follow(conn, jdir, 0, first_app)
    conn.close()

    # A new app: new store object, new connection; only the database remembers.
    store = Store(inflab_home)
    rec = store.job(session, "noisy")
    assert 0 < rec["offset"] and rec["job_dir"] == jdir
    conn = await connect(sshd.target(), HostKeyPin(), timeout=20)
    again = await jobs.start(conn, "noisy", "echo this must not run", base=base)  # idempotent: not restarted
    assert again == jdir
    code = await jobs.follow(
        conn, jdir, rec["offset"], lambda lines, off: (shown.extend(lines), store.job_offset(session, "noisy", off))
    )
    conn.close()
    assert code == 0
    assert b"\n".join(shown) == (tmp_path / "jobs" / "noisy" / "out.log").read_bytes()


async def live_group_members(conn, pgid: int) -> list[str]:
    """The job's own processes (its process group) that still run: "STAT COMMAND" lines, zombies left out."""
    r = await conn.run(f'pids=$(pgrep -d, -g {pgid}) && ps -o stat=,args= -p "$pids" || true', check=False)
    return [line.strip() for line in r.stdout.splitlines() if line.strip() and not line.strip().startswith("Z")]


async def test_cancel_stops_the_whole_process_group(sshd, tmp_path):  # noqa: F811
    base = str(tmp_path / "jobs")
    conn = await connect(sshd.target(), HostKeyPin(), timeout=20)
    async with conn:
        jdir = await jobs.start(conn, "sleepy", "sleep 300 & sleep 301; echo never", base=base)
        pgid = int((tmp_path / "jobs" / "sleepy" / "pid").read_text())
        for _ in range(50):  # both sleeps are up a moment after the start
            members = await live_group_members(conn, pgid)
            if sum("sleep 30" in m for m in members) == 2:
                break
            await asyncio.sleep(0.1)
        assert sum("sleep 30" in m for m in members) == 2, members
        st = await jobs.status(conn, jdir)
        assert st.running and st.exit_code is None
        await jobs.cancel(conn, jdir)
        for _ in range(50):
            st = await jobs.status(conn, jdir)
            if not st.running:
                break
            await asyncio.sleep(0.1)
        assert not st.running and st.exit_code != 0
        for _ in range(30):  # a signalled process may take a moment to go on a loaded machine
            members = await live_group_members(conn, pgid)
            if not members:
                break
            await asyncio.sleep(0.1)
        assert members == []
        assert b"never" not in (tmp_path / "jobs" / "sleepy" / "out.log").read_bytes()


def job_dir_by_hand(root: Path, pid: int, log: bytes) -> Path:
    """A job directory as the host leaves it (no exit_code yet), written without starting a job."""
    d = root / "jobs" / "byhand"
    d.mkdir(parents=True)
    (d / "cmd.sh").write_text("true\n")
    (d / "out.log").write_bytes(log)
    (d / "pid").write_text(f"{pid}\n")
    return d


@pytest.fixture
def live_process():
    """A process of our own, in its own process group, alive for the whole test."""
    proc = subprocess.Popen(["sleep", "600"], start_new_session=True)
    yield proc.pid
    proc.kill()
    proc.wait()


async def test_the_exit_code_file_decides_even_while_the_process_still_looks_alive(sshd, tmp_path, live_process):  # noqa: F811
    # The job wrote exit_code and ended, but its process is still in the table (not reaped yet).
    d = job_dir_by_hand(tmp_path, live_process, b"finished\n")
    conn = await connect(sshd.target(), HostKeyPin(), timeout=20)
    async with conn:
        st = await jobs.status(conn, str(d))
        assert st.running and st.exit_code is None  # no exit_code yet: the live process says running
        (d / "exit_code").write_text("0\n")
        st = await jobs.status(conn, str(d))
        assert not st.running and st.exit_code == 0
        (d / "exit_code").write_text("3\n")
        assert (await jobs.status(conn, str(d))).exit_code == 3
        lines: list[bytes] = []
        assert await jobs.follow(conn, str(d), 0, lambda ls, off: lines.extend(ls)) == 3
    assert lines == [b"finished"]


async def test_a_killed_job_whose_process_is_not_reaped_yet_has_ended(sshd, tmp_path):  # noqa: F811
    proc = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        proc.kill()
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # ended, left unreaped: a zombie
        d = job_dir_by_hand(tmp_path, proc.pid, b"")
        conn = await connect(sshd.target(), HostKeyPin(), timeout=20)
        async with conn:
            st = await jobs.status(conn, str(d))
    finally:
        proc.wait()
    assert not st.running and st.exit_code == jobs.LOST


async def test_follow_waits_for_an_exit_code_written_just_after_the_process_is_gone(sshd, tmp_path, monkeypatch):  # noqa: F811
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid whose process has ended and been reaped
    d = job_dir_by_hand(tmp_path, gone.pid, b"step 1\nstep 2\n")
    real_status = jobs.status
    asked: list[jobs.JobStatus] = []

    async def status_then_exit_code(conn, jdir):
        st = await real_status(conn, jdir)
        asked.append(st)
        if len(asked) == 1:  # the job writes exit_code right after the host was first asked
            (d / "exit_code").write_text("0\n")
        return st

    monkeypatch.setattr(jobs, "status", status_then_exit_code)
    conn = await connect(sshd.target(), HostKeyPin(), timeout=20)
    async with conn:
        lines: list[bytes] = []
        code = await jobs.follow(conn, str(d), 0, lambda ls, off: lines.extend(ls))
    assert asked[0].exit_code == jobs.LOST  # the first look found the process gone and no exit_code
    assert code == 0
    assert lines == [b"step 1", b"step 2"]


async def test_a_job_runs_detached_on_the_sandbox_instance(name, cli, store, sandbox):
    from inflab.remote.ssh import Target

    r = cli("run", "--sandbox", "--name", name, "--until", "connect")
    assert r.returncode == 0, r.stderr
    host = store.get(name, "host")
    target = Target("127.0.0.1", sandbox.ssh_port, host["user"], str(store.session_dir(name) / f"inflab-{name}.pem"))
    conn = await connect(target, HostKeyPin(fingerprint=store.get(name, "host_key")["fingerprint"]), timeout=20)
    async with conn:
        jdir = await jobs.start(conn, "hello", "echo hello; sleep 0.3; echo $HOME")
        lines: list[bytes] = []
        code = await jobs.follow(conn, jdir, 0, lambda ls, off: lines.extend(ls))
    assert code == 0
    assert lines[0] == b"hello"
    assert lines[1].decode().endswith(host["instance_id"])  # the instance's own home directory
