"""Write ``legacy_session.json``: a sandbox session the lab ran through every step that hands
state to a later one, dumped from the session store table by table.

The session runs up to ``report`` with the instance and the server left up (``serve-stop`` and
``terminate`` left out), so its state has every key the steps write before the teardown: the
host and its pinned key, the image, the compiled models, the package, the server, the serve check,
the load test, the sweep and its report. Then everything it made is cleaned up.

    PYTHONPATH=$PWD python tests/data/make_legacy_session.py tests/data/legacy_session.json

The store keeps no secret (DESIGN §9), so neither does the dump: no key, token or credential.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import tempfile
from pathlib import Path

NAME = "legacy"
SHORT = {
    "bench": {"min_duration_s": 2, "min_queries": 50, "max_duration_s": 10},
    "serve": {"step_s": 1, "rates": [4, 8], "latency_limit_ms": 2000},
    "batch": {"sizes": [2, 4], "min_duration_s": 1, "max_duration_s": 4},
    "model": {"int8": False},
}
TABLES = {  # what a session is on disk, but the event log (what was said, not what is)
    "sessions": "name",
    "steps": "session",
    "state": "session",
    "resources": "session",
    "jobs": "session",
    "results": "session",
}


def dump(db: Path, name: str) -> dict:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        out = {}
        for table, column in TABLES.items():
            rows = [dict(r) for r in conn.execute(f"SELECT * FROM {table} WHERE {column}=? ORDER BY rowid", (name,))]
            for r in rows:
                for k in ("config", "value", "detail", "data"):  # JSON columns: kept as the JSON text they are
                    if isinstance(r.get(k), str):
                        r[k] = json.loads(r[k])
            out[table] = rows
        return out
    finally:
        conn.close()


def main(out: str) -> int:
    home = Path(tempfile.mkdtemp(prefix="inflab-legacy-"))
    os.environ["INFLAB_HOME"] = str(home)
    from inflab import config, sandbox
    from inflab.engine import Engine
    from inflab.session import Store

    store = Store(home)
    cfg = config.from_dict(SHORT, sandbox=True)
    store.create_session(NAME, cfg.data, sandbox=True, track="inf1")
    engine = Engine(store, NAME, listener=lambda e: print(e, flush=True))
    try:
        result = engine.run("report", exclude=("serve-stop", "terminate"))
        if not result.ok:
            print(f"failed at {result.step}: {result.error}", file=sys.stderr)
            return 1
        Path(out).write_text(json.dumps(dump(store.path, NAME), indent=1, sort_keys=False) + "\n")
        print(f"wrote {out}")
        return 0
    finally:
        engine.cleanup(delete_data=True)
        sandbox.stop(home)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
