"""The sandbox instance: an SSH server on loopback whose sessions run on this machine.

It lives in the sandbox daemon, beside the AWS emulator, and reads the emulator's state
to decide who may log in: a client key must be the public half of an EC2 key pair used by
a *running* emulated instance. That instance's directory
(``<INFLAB_HOME>/sandbox/instances/<instance-id>``) is the session's home and working
directory. Commands run through bash with real pipes, or on a real pty when the client
asks for one (``top``, ``htop`` and shells need that). SFTP is served too.

Anyone can reach it the usual way: ``ssh -p PORT -i KEY user@127.0.0.1``.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import signal
import stat
import struct
import termios
from pathlib import Path
from typing import Callable

import asyncssh

from ..private_files import write_private

ACCOUNT = "123456789012"


def load_or_create_host_key(path: Path) -> asyncssh.SSHKey:
    if path.exists():
        return asyncssh.read_private_key(str(path))
    key = asyncssh.generate_private_key("ssh-ed25519")
    write_private(path, key.export_private_key())
    return key


def _ours(path: Path, others: int) -> bool:
    """``path`` (not followed) is this user's and grants nothing in ``others`` to anyone else."""
    st = os.lstat(path)
    return st.st_uid == os.geteuid() and not st.st_mode & others and not stat.S_ISLNK(st.st_mode)


def lab_keys(home: Path) -> set[tuple[str, str]]:
    """Public halves of the session keys under INFLAB_HOME: files of the lab's user that only it can
    read, in its own session directories (a key another user left there opens nothing)."""
    out = set()
    for pem in (home / "sessions").glob("*/*.pem"):
        try:
            if not (_ours(pem, 0o077) and _ours(pem.parent, 0o022) and _ours(pem.parent.parent, 0o022)):
                continue
            out.add(tuple(asyncssh.read_private_key(str(pem)).export_public_key("openssh").decode().split()[:2]))
        except (OSError, ValueError, asyncssh.KeyImportError):
            continue
    return out


def running_instance_for_key(key: asyncssh.SSHKey) -> str | None:
    """The id of a running emulated instance launched with this public key, if any."""
    from moto.ec2.models import ec2_backends

    wanted = key.export_public_key("openssh").decode().split()[:2]
    for _ in range(3):  # the emulator's threads may change these dicts while we read them
        try:
            for backend in list(ec2_backends[ACCOUNT].values()):
                names = {
                    kp.key_name
                    for kp in list(backend.key_pairs.values())
                    if kp.material_public and kp.material_public.decode().split()[:2] == wanted
                }
                if not names:
                    continue
                for reservation in list(backend.reservations.values()):
                    for inst in list(reservation.instances):
                        if inst.key_name in names and inst.state == "running":
                            return inst.id
            return None
        except RuntimeError:
            continue
    return None


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


class _Server(asyncssh.SSHServer):
    def __init__(self, instances_dir: Path):
        self.instances_dir = instances_dir
        self.conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> bool:
        # Local port forwarding (ssh -L), as an instance's sshd allows, to the instance's own
        # loopback only: services the lab starts there (TorchServe) are reached this way.
        return dest_host in LOOPBACK_NAMES

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        # The emulated EC2 API has no authentication, so a key registered there is not enough:
        # it must also be one of this lab's session keys on disk.
        if tuple(key.export_public_key("openssh").decode().split()[:2]) not in lab_keys(
            self.instances_dir.parent.parent
        ):
            return False
        iid = running_instance_for_key(key)
        if iid is None:
            return False
        home = self.instances_dir / iid
        home.mkdir(parents=True, exist_ok=True)
        self.conn.set_extra_info(inflab_instance=iid, inflab_home=str(home))
        return True


class _SFTPServer(asyncssh.SFTPServer):
    """SFTP as on an instance: relative paths start in the user's home (the instance directory)."""

    def __init__(self, chan: asyncssh.SSHServerChannel):
        super().__init__(chan)
        self.home = os.fsencode(chan.get_extra_info("inflab_home"))

    def map_path(self, path: bytes) -> bytes:
        return path if path.startswith(b"/") else os.path.join(self.home, path)


def _set_winsize(fd: int, size: tuple[int, int, int, int]) -> None:
    cols, rows = size[0] or 80, size[1] or 24
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


async def _pump_reader(reader, write: Callable[[bytes], None]) -> None:
    while True:
        data = await reader.read(65536)
        if not data:
            break
        try:
            write(data)
        except (OSError, asyncssh.Error):  # the client went away: stop copying
            raise ConnectionResetError("client gone") from None


def _kill_group(pid: int) -> None:
    for sig in (signal.SIGHUP, signal.SIGTERM):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return


async def _run_pipes(process: asyncssh.SSHServerProcess, argv: list[str], env: dict, cwd: str) -> int:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=env,
        start_new_session=True,
    )

    async def feed_stdin():
        try:
            while True:
                data = await process.stdin.read(65536)
                if not data:
                    break
                proc.stdin.write(data)
                await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError, asyncssh.Error):
            pass
        finally:
            if proc.stdin and not proc.stdin.is_closing():
                proc.stdin.close()

    feeder = asyncio.create_task(feed_stdin())
    try:
        # Copy both output streams to the end, then exit: exiting early loses output.
        await asyncio.gather(
            _pump_reader(proc.stdout, process.stdout.write), _pump_reader(proc.stderr, process.stderr.write)
        )
        return await proc.wait()
    except ConnectionResetError:
        _kill_group(proc.pid)  # nobody reads its output any more
        return await proc.wait()
    finally:
        feeder.cancel()


async def _run_pty(process: asyncssh.SSHServerProcess, argv: list[str], env: dict, cwd: str) -> int:
    loop = asyncio.get_running_loop()
    master, slave = pty.openpty()
    _set_winsize(master, process.term_size)
    env["TERM"] = process.term_type or "xterm-256color"
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=cwd,
        env=env,
        start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
    )
    os.close(slave)
    done = asyncio.Event()

    def readable():
        try:
            data = os.read(master, 65536)
        except OSError:
            data = b""
        if data:
            try:
                process.stdout.write(data)
                return
            except (OSError, asyncssh.Error):  # the client went away: hang up on the program
                _kill_group(proc.pid)
        loop.remove_reader(master)
        done.set()

    loop.add_reader(master, readable)

    async def feed():
        while True:
            try:
                data = await process.stdin.read(4096)
            except asyncssh.TerminalSizeChanged as e:
                _set_winsize(master, (e.width, e.height, e.pixwidth, e.pixheight))
                continue
            except asyncssh.Error:
                break
            if not data:
                _kill_group(proc.pid)  # the client closed: like a dropped terminal
                break
            try:
                os.write(master, data)
            except OSError:
                break

    feeder = asyncio.create_task(feed())
    try:
        code = await proc.wait()
        try:
            await asyncio.wait_for(done.wait(), 2)
        except asyncio.TimeoutError:
            pass
        return code
    finally:
        loop.remove_reader(master)
        feeder.cancel()
        _kill_group(proc.pid)
        os.close(master)


def _process_factory(default_path: str):
    async def handle(process: asyncssh.SSHServerProcess) -> None:
        home = process.get_extra_info("inflab_home")
        env = {
            "HOME": home,
            "PATH": default_path,
            "USER": process.get_extra_info("username") or "ubuntu",
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "INFLAB_SANDBOX_INSTANCE": process.get_extra_info("inflab_instance"),
        }
        # pip's settings as on this machine (its index, find-links, proxy): the sandbox's
        # build-image step installs the job virtualenv with pip.
        env.update({k: v for k, v in os.environ.items() if k.startswith("PIP_")})
        env.update(process.env or {})
        command = process.command
        argv = ["/bin/bash", "-c", command] if command else ["/bin/bash", "-l"]
        try:
            if process.term_type:
                code = await _run_pty(process, argv, env, home)
            else:
                code = await _run_pipes(process, argv, env, home)
        except Exception as e:  # report, do not kill the server
            process.stderr.write(f"inflab sandbox: {e}\n")
            code = 255
        process.exit(code if code >= 0 else 128 - code)

    return handle


async def start_server(state_dir: Path, port: int = 0) -> asyncssh.SSHAcceptor:
    instances = state_dir / "instances"
    instances.mkdir(parents=True, exist_ok=True)
    host_key = load_or_create_host_key(state_dir / "ssh_host_ed25519_key")
    return await asyncssh.create_server(
        lambda: _Server(instances),
        "127.0.0.1",
        port,
        server_host_keys=[host_key],
        process_factory=_process_factory(os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")),
        sftp_factory=_SFTPServer,
        allow_scp=True,
        encoding=None,
        keepalive_interval=30,
    )


def host_key_fingerprints(state_dir: Path) -> list[str]:
    """The host key line as an EC2 console would print it, for pinning."""
    key = load_or_create_host_key(state_dir / "ssh_host_ed25519_key")
    return [f"256 {key.get_fingerprint('sha256')} root@sandbox (ED25519)"]
