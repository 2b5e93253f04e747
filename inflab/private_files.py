"""The lab's own directories and private files: a home nobody else can plant things in.

The lab keeps a private key, the sandbox's secret and the session store under its home
(``INFLAB_HOME``). A home another user prepared is not trusted: a link they left there would
take the key (or overwrite one of our files) the moment we wrote through it. So:

- the home and every directory the lab writes in belong to this user and are writable by
  nobody else; the home's parents belong to this user or to root, and one that others may
  write in is sticky (as ``/tmp`` is), so nobody can rename the home away under us;
- a private file is written to a temporary file made exclusively beside it (mkstemp:
  ``O_CREAT | O_EXCL | O_NOFOLLOW``, mode 0600 from the first byte) and renamed over it;
- a file the lab keeps open (the store, a lock, a log) is opened without following a link
  and must be a regular file of this user's.

Anything else raises :class:`UnsafePath`, one line naming the path and its owner (or its
mode); nothing is written. Standard library only: the store, the steps and the sandbox use it.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from .errors import InputError

PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600


class UnsafePath(InputError, RuntimeError):
    """A path the lab will not write in or through; the message is one line naming it."""


def _who(uid: int) -> str:
    import pwd

    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def _writers(mode: int) -> str:
    return "everyone" if mode & stat.S_IWOTH else "its group"


def _refuse_dir(path: Path, st: os.stat_result) -> None:
    """UnsafePath unless ``st`` (of ``path``, not followed) is a directory of ours that only we may write in."""
    me = os.geteuid()
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePath(f"{path} is a symbolic link: the lab does not follow links in its own directories; remove it")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePath(f"{path} is not a directory")
    if st.st_uid != me:
        raise UnsafePath(
            f"{path} belongs to {_who(st.st_uid)}, not to you ({_who(me)}): the lab keeps its private "
            "keys there; use a directory of your own"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafePath(
            f"{path} can be written by {_writers(st.st_mode)} (mode {stat.S_IMODE(st.st_mode):04o}): "
            f"the lab keeps its private keys there; chmod go-w {path}, or use a directory of your own"
        )


def check_parents(path: Path) -> None:
    """The existing parents of ``path`` (as written, and as links resolve) belong to this user or
    root, and none that another may write in lets them rename what is in it (no sticky bit)."""
    me = os.geteuid()
    lexical = Path(os.path.abspath(path))
    seen: set[Path] = set()
    for chain in (lexical.parents, Path(os.path.realpath(lexical)).parents):
        for parent in reversed(chain):
            if parent in seen:
                continue
            seen.add(parent)
            try:
                st = os.lstat(parent)
            except OSError:
                break  # missing (it will be made by us) or not a directory (the caller says so)
            if st.st_uid not in (me, 0):
                raise UnsafePath(
                    f"{parent} belongs to {_who(st.st_uid)}, who could swap {path} for a directory of "
                    "theirs: use a home whose parents are yours (or root's)"
                )
            if stat.S_ISLNK(st.st_mode):
                continue  # followed in the resolved chain
            if not stat.S_ISDIR(st.st_mode):
                break
            if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
                raise UnsafePath(
                    f"{parent} can be written by {_writers(st.st_mode)} (mode {stat.S_IMODE(st.st_mode):04o}, "
                    f"not sticky): another user could swap {path} for a directory of theirs"
                )


def check_home(home: Path) -> None:
    """The lab's home, if it exists, and its parents: see :func:`check_parents` and :func:`check_dir`.
    A home that is a link is judged by the directory it leads to (and the link by its parents)."""
    check_parents(home)
    try:
        st = os.stat(home)
    except OSError:
        return  # not made yet, or not a directory: the caller makes it or says so
    _refuse_dir(Path(home), st)


def check_dir(path: Path, *, tighten: bool = True) -> bool:
    """If ``path`` exists it must be a directory of ours that only we may write in (not a link);
    ``tighten`` makes one that others may read 0700. False when there is nothing there."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError as e:
        try:
            st = os.lstat(path)
        except OSError:
            raise UnsafePath(f"{path}: cannot open it ({e.strerror})") from None
        _refuse_dir(Path(path), st)
        raise UnsafePath(f"{path}: cannot open it ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        _refuse_dir(Path(path), st)
        if tighten and st.st_mode & 0o077:
            os.fchmod(fd, PRIVATE_DIR)
    finally:
        os.close(fd)
    return True


def private_dir(path: Path) -> Path:
    """``path`` as a directory of ours, mode 0700: made if missing (its parent must exist and be
    safe: the caller made it so), checked and tightened if there. Returns ``path``."""
    path = Path(path)
    try:
        os.mkdir(path, PRIVATE_DIR)
    except FileExistsError:
        pass
    except OSError as e:
        raise UnsafePath(f"{path}: cannot make it ({e.strerror})") from None
    check_dir(path)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``, mode 0600 from the first byte: written to a file made
    exclusively beside it (never through a link someone left there), synced, then renamed over
    it, so a kill leaves the old file or the new one, never half. The directory must be ours."""
    path = Path(path)
    check_dir(path.parent, tighten=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def open_own(path: Path, flags: int) -> int:
    """A file descriptor on ``path``, a regular file of ours (made 0600 if ``flags`` has O_CREAT
    and it is missing; an existing one readable by others is made 0600). The last component is
    never followed: a link is :class:`UnsafePath`, and so is another user's file."""
    try:
        fd = os.open(
            path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0), PRIVATE_FILE
        )
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnsafePath(
                f"{path} is a symbolic link: the lab does not follow links in its own directories; remove it"
            ) from None
        if e.errno in (errno.EISDIR, errno.ENXIO):  # a directory, or a FIFO nobody reads
            raise UnsafePath(f"{path} is not a regular file") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath(f"{path} is not a regular file")
        if st.st_uid != os.geteuid():
            raise UnsafePath(
                f"{path} belongs to {_who(st.st_uid)}, not to you ({_who(os.geteuid())}): "
                "the lab will not use it; move it aside"
            )
        if st.st_mode & 0o077:
            os.fchmod(fd, PRIVATE_FILE)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd
