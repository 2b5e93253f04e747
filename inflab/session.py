"""The session store: one SQLite file (mode 0600) for every saved session.

It holds each session's config snapshot, step states with timestamps and errors, the
resource ledger (written *before* each create call), remote job records, results, a
small key/value state, and an event log. Secrets never go in here: AWS keys stay in
the credential chain, and the SSH private key is a 0600 file in the session directory.

Each call opens its own connection, so the store is safe to use from the TUI's worker
threads and from several processes at once (WAL journal, busy timeout).
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from . import private_files
from .errors import EXIT_FAILED, EXIT_USAGE, InflabError, InputError

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    name TEXT PRIMARY KEY,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    sandbox INTEGER NOT NULL,
    track TEXT NOT NULL,
    config TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS steps (
    session TEXT NOT NULL,
    step TEXT NOT NULL,
    state TEXT NOT NULL,
    started REAL,
    finished REAL,
    error TEXT,
    PRIMARY KEY (session, step)
);
CREATE TABLE IF NOT EXISTS resources (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session TEXT NOT NULL,
    step TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    physical_id TEXT,
    region TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS state (
    session TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (session, key)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session TEXT NOT NULL,
    ts REAL NOT NULL,
    step TEXT,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    session TEXT NOT NULL,
    job TEXT NOT NULL,
    host TEXT NOT NULL,
    job_dir TEXT NOT NULL,
    offset INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    exit_code INTEGER,
    PRIMARY KEY (session, job)
);
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session TEXT NOT NULL,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    key TEXT
);
CREATE INDEX IF NOT EXISTS events_by_session ON events (session, id);
CREATE INDEX IF NOT EXISTS resources_by_session ON resources (session, id);
"""

# Step states, as shown in the TUI and `inflab steps`/`sessions`. STALE: the step was done,
# but what it made is no longer there (found when the session was opened).
PENDING, RUNNING, DONE, SKIPPED, FAILED, UNDONE, CANCELLED, STALE = (
    "pending",
    "running",
    "done",
    "skipped",
    "failed",
    "undone",
    "cancelled",
    "stale",
)

# The directories the store and the session locks keep under the home (see inflab.private_files).
LAB_DIRS = ("sessions", "locks")

# Ledger statuses.
INTENDED, CREATED, DELETED = "intended", "created", "deleted"


def default_home() -> Path:
    env = os.environ.get("INFLAB_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_path

    return user_data_path("inflab", appauthor=False)


class SessionNotFound(KeyError):
    pass


class StoreError(InflabError, RuntimeError):
    """The session store cannot be used; ``corrupt`` tells a damaged file (a failure, exit 1) from a
    bad place for it (bad input, exit 2)."""

    def __init__(self, message: str, *, corrupt: bool = False):
        super().__init__(message)
        self.corrupt = corrupt
        self.exit_code = EXIT_FAILED if corrupt else EXIT_USAGE


class SessionBusy(InputError, RuntimeError):
    """Another process drives the session; the message says which (pid, command, since when)."""


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, TypeError, ValueError):
        return False
    except PermissionError:
        return True
    return True


class SessionLock:
    """One process drives a session at a time: an OS lock on a file, released by the kernel if the holder dies.

    The holder writes who it is into the file, so a second process can say who holds it.
    """

    def __init__(self, home: Path, name: str):
        self.path = Path(home) / "locks" / f"{name}.lock"
        self.name = name
        self._fd: int | None = None

    def holder(self, wait: float = 2.0) -> str:
        """Who holds the lock; the holder writes it just after locking, so wait a moment for it."""
        deadline = time.monotonic() + wait
        while True:
            try:
                info = json.loads(self.path.read_text() or "{}")
            except (OSError, ValueError):
                info = {}
            if (info and _alive(info.get("pid"))) or time.monotonic() >= deadline:
                break  # (a dead pid is the last holder's line, not yet replaced by the new holder's)
            time.sleep(0.05)
        since = time.strftime("%H:%M:%S", time.localtime(info["since"])) if "since" in info else "?"
        return f"pid {info.get('pid', '?')} ({info.get('command', 'inflab')}) since {since}"

    def acquire(self, command: str) -> SessionLock:
        import fcntl

        private_files.private_dir(self.path.parent)
        fd = private_files.open_own(self.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SessionBusy(
                f"session {self.name} is in use by {self.holder()}; try again when it has finished"
            ) from None
        os.ftruncate(fd, 0)  # a reader sees an empty file until the whole line is there
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": command, "since": time.time()}).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # nobody holds it now
            os.close(self._fd)  # closing drops the lock
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


@dataclass(frozen=True)
class SessionInfo:
    name: str
    created: float
    updated: float
    sandbox: bool
    track: str
    config: dict[str, Any]


@dataclass(frozen=True)
class Resource:
    id: int
    session: str
    step: str
    kind: str
    name: str
    physical_id: str | None
    region: str
    status: str
    detail: dict[str, Any]
    created: float = 0.0  # when the lab asked for it (epoch seconds)


class Store:
    """Access to the session database under ``home``."""

    def __init__(self, home: Path | None = None):
        self.home = Path(home) if home else default_home()
        where = "INFLAB_HOME" if os.environ.get("INFLAB_HOME") else "the data directory"
        self.path = self.home / "inflab.db"
        try:
            # A home another user prepared (or can swap) is refused before anything is written in it.
            private_files.check_home(self.home)
            try:
                self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
            except (FileExistsError, NotADirectoryError):
                raise StoreError(f"{where}: {self.home} is not a directory") from None
            except OSError as e:
                raise StoreError(f"{where}: cannot create {self.home} ({e.strerror})") from None
            if not self.home.is_dir():
                raise StoreError(f"{where}: {self.home} is not a directory")
            private_files.check_home(self.home)
            for sub in LAB_DIRS:
                private_files.check_dir(self.home / sub)
            for side in ("", "-wal", "-shm"):
                # Created 0600 before SQLite opens it, never through a link, and only a file of ours. SQLite's
                # -wal and -shm files come and go (another process's last connection removes them): one that
                # is not there, or is gone by the time it is opened, has nothing to check.
                try:
                    fd = private_files.open_own(
                        Path(str(self.path) + side), os.O_RDONLY | (os.O_CREAT if not side else 0)
                    )
                except FileNotFoundError:
                    if not side:
                        raise
                    continue
                os.close(fd)
        except private_files.UnsafePath as e:
            raise StoreError(f"{where}: {e}") from None
        except OSError as e:
            raise StoreError(f"{where}: cannot write {self.path} ({e.strerror})") from None
        try:
            with self._conn() as c:
                c.executescript(SCHEMA)
                if "key" not in {r["name"] for r in c.execute("PRAGMA table_info(results)")}:
                    c.execute("ALTER TABLE results ADD COLUMN key TEXT")  # stores from before result keys
                # A result with a key (its run id) is stored once, however often it is collected.
                c.execute("CREATE UNIQUE INDEX IF NOT EXISTS results_once ON results (session, kind, key)")
        except sqlite3.DatabaseError as e:
            raise StoreError(
                f"the session store {self.path} is damaged ({e}); move it aside to start afresh "
                "(your AWS resources are untouched: find them with the inflab:session tag)",
                corrupt=True,
            ) from None

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            yield conn
        finally:
            conn.close()
        for suffix in ("-wal", "-shm"):
            # SQLite's side files get the process umask; keep them private too. Another
            # connection may remove them at any moment, so a vanished file is fine.
            try:
                st = os.lstat(str(self.path) + suffix)
                if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077:
                    os.chmod(str(self.path) + suffix, 0o600)
            except FileNotFoundError:
                pass

    # -- sessions --------------------------------------------------------------------
    def session_dir(self, name: str) -> Path:
        """``sessions/<name>``, made 0700 (and ``sessions/`` too); :class:`~inflab.private_files.UnsafePath`
        if either is a link, another user's, or writable by others."""
        private_files.private_dir(self.home / "sessions")
        return private_files.private_dir(self.home / "sessions" / name)

    def create_session(self, name: str, config: dict[str, Any], *, sandbox: bool, track: str) -> SessionInfo:
        self.session_dir(name)  # a directory the lab cannot use stops it before anything is recorded
        now = time.time()
        with self._conn() as c:
            c.execute(
                "INSERT INTO sessions (name, created, updated, sandbox, track, config) VALUES (?,?,?,?,?,?)",
                (name, now, now, int(sandbox), track, json.dumps(config)),
            )
        self.event(name, None, "session", f"session {name} created ({'sandbox' if sandbox else 'AWS'})")
        return self.get_session(name)

    def get_session(self, name: str) -> SessionInfo:
        with self._conn() as c:
            row = c.execute("SELECT * FROM sessions WHERE name=?", (name,)).fetchone()
        if row is None:
            raise SessionNotFound(name)
        return SessionInfo(
            row["name"], row["created"], row["updated"], bool(row["sandbox"]), row["track"], json.loads(row["config"])
        )

    def has_session(self, name: str) -> bool:
        with self._conn() as c:
            return c.execute("SELECT 1 FROM sessions WHERE name=?", (name,)).fetchone() is not None

    def list_sessions(self) -> list[SessionInfo]:
        with self._conn() as c:
            rows = c.execute("SELECT * FROM sessions ORDER BY updated DESC").fetchall()
        return [
            SessionInfo(r["name"], r["created"], r["updated"], bool(r["sandbox"]), r["track"], json.loads(r["config"]))
            for r in rows
        ]

    def delete_session(self, name: str) -> None:
        """Forget a session: its records, results and directory (key file, known_hosts)."""
        import shutil

        with self._conn() as c:
            for table in ("steps", "resources", "state", "events", "jobs", "results"):
                c.execute(f"DELETE FROM {table} WHERE session=?", (name,))
            c.execute("DELETE FROM sessions WHERE name=?", (name,))
        shutil.rmtree(self.home / "sessions" / name, ignore_errors=True)

    def new_session_name(self) -> str:
        """A free default name: lab-YYYYMMDD-HHMM, with -2, -3… if taken."""
        base = time.strftime("lab-%Y%m%d-%H%M")
        name, n = base, 1
        while self.has_session(name):
            n += 1
            name = f"{base}-{n}"
        return name

    def progress(self, name: str, step_ids: list[str]) -> tuple[int, str | None]:
        """(steps done or skipped, the first one that is not) by the record."""
        states = self.step_states(name)
        done = [i for i in step_ids if states.get(i, {}).get("state") in (DONE, SKIPPED)]
        return len(done), next((i for i in step_ids if i not in done), None)

    # -- steps -----------------------------------------------------------------------
    def set_step(self, session: str, step: str, state: str, error: str | None = None) -> None:
        now = time.time()
        with self._conn() as c:
            if state == RUNNING:
                c.execute(
                    "INSERT INTO steps (session, step, state, started, finished, error) VALUES (?,?,?,?,NULL,NULL) "
                    "ON CONFLICT(session, step) DO UPDATE SET state=excluded.state, started=excluded.started, "
                    "finished=NULL, error=NULL",
                    (session, step, state, now),
                )
            else:
                c.execute(
                    "INSERT INTO steps (session, step, state, started, finished, error) VALUES (?,?,?,NULL,?,?) "
                    "ON CONFLICT(session, step) DO UPDATE SET state=excluded.state, finished=excluded.finished, "
                    "error=excluded.error",
                    (session, step, state, now, error),
                )
            c.execute("UPDATE sessions SET updated=? WHERE name=?", (now, session))

    def step_states(self, session: str) -> dict[str, dict[str, Any]]:
        with self._conn() as c:
            rows = c.execute("SELECT * FROM steps WHERE session=?", (session,)).fetchall()
        return {r["step"]: dict(r) for r in rows}

    # -- resource ledger ---------------------------------------------------------------
    def intend(self, session: str, step: str, kind: str, name: str, region: str, detail: dict | None = None) -> int:
        """Record that we are about to create a resource. Call *before* the create call."""
        now = time.time()
        with self._conn() as c:
            cur = c.execute(
                "INSERT INTO resources (session, step, kind, name, physical_id, region, status, created, updated, detail) "
                "VALUES (?,?,?,?,NULL,?,?,?,?,?)",
                (session, step, kind, name, region, INTENDED, now, now, json.dumps(detail or {})),
            )
            return int(cur.lastrowid)

    def mark_created(self, rid: int, physical_id: str, detail: dict | None = None) -> None:
        with self._conn() as c:
            if detail is None:
                c.execute(
                    "UPDATE resources SET status=?, physical_id=?, updated=? WHERE id=?",
                    (CREATED, physical_id, time.time(), rid),
                )
            else:
                c.execute(
                    "UPDATE resources SET status=?, physical_id=?, updated=?, detail=? WHERE id=?",
                    (CREATED, physical_id, time.time(), json.dumps(detail), rid),
                )

    def mark_deleted(self, session: str, kind: str, name: str | None = None) -> None:
        with self._conn() as c:
            if name is None:
                c.execute(
                    "UPDATE resources SET status=?, updated=? WHERE session=? AND kind=? AND status!=?",
                    (DELETED, time.time(), session, kind, DELETED),
                )
            else:
                c.execute(
                    "UPDATE resources SET status=?, updated=? WHERE session=? AND kind=? AND (name=? OR physical_id=?) AND status!=?",
                    (DELETED, time.time(), session, kind, name, name, DELETED),
                )

    def ledger(self, session: str, *, live_only: bool = False) -> list[Resource]:
        q = "SELECT * FROM resources WHERE session=?" + (" AND status!='deleted'" if live_only else "") + " ORDER BY id"
        with self._conn() as c:
            rows = c.execute(q, (session,)).fetchall()
        return [
            Resource(
                r["id"],
                r["session"],
                r["step"],
                r["kind"],
                r["name"],
                r["physical_id"],
                r["region"],
                r["status"],
                json.loads(r["detail"] or "{}"),
                r["created"],
            )
            for r in rows
        ]

    # -- key/value state -----------------------------------------------------------------
    def put(self, session: str, key: str, value: Any) -> None:
        with self._conn() as c:
            c.execute(
                "INSERT INTO state (session, key, value) VALUES (?,?,?) ON CONFLICT(session, key) DO UPDATE SET value=excluded.value",
                (session, key, json.dumps(value)),
            )

    def get(self, session: str, key: str, default: Any = None) -> Any:
        with self._conn() as c:
            row = c.execute("SELECT value FROM state WHERE session=? AND key=?", (session, key)).fetchone()
        return json.loads(row["value"]) if row else default

    def delete(self, session: str, key: str) -> None:
        with self._conn() as c:
            c.execute("DELETE FROM state WHERE session=? AND key=?", (session, key))

    # -- events ----------------------------------------------------------------------------
    def event(self, session: str, step: str | None, kind: str, message: str) -> None:
        with self._conn() as c:
            c.execute(
                "INSERT INTO events (session, ts, step, kind, message) VALUES (?,?,?,?,?)",
                (session, time.time(), step, kind, message),
            )

    def events(self, session: str, *, since_id: int = 0) -> list[dict[str, Any]]:
        with self._conn() as c:
            rows = c.execute(
                "SELECT * FROM events WHERE session=? AND id>? ORDER BY id", (session, since_id)
            ).fetchall()
        return [dict(r) for r in rows]

    # -- remote jobs ---------------------------------------------------------------------------
    def job_record(self, session: str, job: str, host: str, job_dir: str) -> dict[str, Any]:
        """Record a remote job (kept as it is if known: its offset survives restarts)."""
        with self._conn() as c:
            c.execute(
                "INSERT INTO jobs (session, job, host, job_dir, offset, status) VALUES (?,?,?,?,0,'running') "
                "ON CONFLICT(session, job) DO NOTHING",
                (session, job, host, job_dir),
            )
        return self.job(session, job)

    def job(self, session: str, job: str) -> dict[str, Any] | None:
        with self._conn() as c:
            row = c.execute("SELECT * FROM jobs WHERE session=? AND job=?", (session, job)).fetchone()
        return dict(row) if row else None

    def job_offset(self, session: str, job: str, offset: int) -> None:
        with self._conn() as c:
            c.execute("UPDATE jobs SET offset=? WHERE session=? AND job=? AND offset<?", (offset, session, job, offset))

    def job_finished(self, session: str, job: str, exit_code: int) -> None:
        with self._conn() as c:
            c.execute(
                "UPDATE jobs SET status=?, exit_code=? WHERE session=? AND job=?",
                ("succeeded" if exit_code == 0 else "failed", exit_code, session, job),
            )

    # -- results -----------------------------------------------------------------------------
    def add_result(self, session: str, kind: str, data: dict[str, Any], key: str | None = None) -> bool:
        """Store a result; with a ``key`` (e.g. its run id) a second copy is ignored. True if stored."""
        with self._conn() as c:
            cur = c.execute(
                "INSERT OR IGNORE INTO results (session, ts, kind, data, key) VALUES (?,?,?,?,?)",
                (session, time.time(), kind, json.dumps(data), key),
            )
            return cur.rowcount == 1

    def has_result(self, session: str, kind: str, key: str) -> bool:
        with self._conn() as c:
            return (
                c.execute("SELECT 1 FROM results WHERE session=? AND kind=? AND key=?", (session, kind, key)).fetchone()
                is not None
            )

    def results(self, session: str, kind: str | None = None) -> list[dict[str, Any]]:
        q, args = "SELECT * FROM results WHERE session=?", [session]
        if kind:
            q += " AND kind=?"
            args.append(kind)
        with self._conn() as c:
            rows = c.execute(q + " ORDER BY id", args).fetchall()
        return [{"ts": r["ts"], "kind": r["kind"], "data": json.loads(r["data"])} for r in rows]
