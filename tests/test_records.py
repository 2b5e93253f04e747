"""The typed records steps hand on: each reads what the lab has always stored under its key and
writes it back unchanged; a stored value of the wrong shape is one clear line naming the key, the
field and the step to run again.

``data/legacy_session.json`` is a session the lab wrote before these records existed (see
``data/make_legacy_session.py``): every record reads from it, and the engine opens it.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from inflab.lab_steps import records
from inflab.lab_steps.records import (
    BuiltImage,
    CompiledModels,
    HostJobs,
    HostRecord,
    ModelArchive,
    PinnedHostKey,
    PreflightFindings,
    RecordError,
    ServerJob,
    SweepRound,
)
from inflab.session import Store

LEGACY = Path(__file__).parent / "data" / "legacy_session.json"
JSON_COLUMNS = ("config", "value", "detail", "data")


def legacy() -> dict:
    return json.loads(LEGACY.read_text())


def legacy_state() -> dict:
    return {row["key"]: row["value"] for row in legacy()["state"]}


def open_legacy(store: Store) -> str:
    """The legacy session, put into ``store`` row by row as the old code left it in its database."""
    dump = legacy()
    conn = sqlite3.connect(store.path)
    try:
        for table, rows in dump.items():
            for row in rows:
                row = {k: json.dumps(v) if k in JSON_COLUMNS else v for k, v in row.items()}
                cols = ", ".join(row)
                conn.execute(f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))
        conn.commit()
    finally:
        conn.close()
    return dump["sessions"][0]["name"]


# ------------------------------------------------------------------ the legacy session's values
def test_every_key_the_legacy_session_has_is_a_record():
    keys = set(legacy_state())
    by_key = {r.KEY for r in records.ALL}
    assert len(by_key) == len(records.ALL), "two records under one key"
    assert keys - by_key == set(), "a key the steps hand on that no record reads"
    # prices: only written where the Pricing API is (not in the sandbox the legacy session ran in); the
    # SageMaker exercise came after the legacy session
    assert by_key - keys == {"prices"} | {r.KEY for r in records.ALL if r.KEY.startswith("sagemaker_")}


@pytest.mark.parametrize("record", records.ALL, ids=lambda r: r.KEY)
def test_a_legacy_value_reads_and_writes_back_byte_for_byte(record):
    state = legacy_state()
    if record.KEY not in state:
        pytest.skip("not in a sandbox session")
    value = state[record.KEY]
    read = record.from_json(value)
    assert json.dumps(read.to_json()) == json.dumps(value)  # same keys, same order, same values


def test_legacy_values_read_as_typed_fields():
    state = legacy_state()
    host = HostRecord.from_json(state["host"])
    assert host.instance_id.startswith("i-") and host.user == "ubuntu" and host.public_ip
    pin = PinnedHostKey.from_json(state["host_key"])
    assert pin.for_host(host) is pin and pin.fingerprint.startswith("SHA256:")
    compiled = CompiledModels.from_json(state["compile"])
    assert compiled.artifacts[0].file.endswith(".pt") and compiled.artifacts[0].batch_size == 8
    assert ModelArchive.from_json(state["package"]).sha256 == state["package"]["sha256"]
    server = ServerJob.from_json(state["server"])
    assert server.running and server.workers == 1 and server.job == "serve-1"
    sweep = SweepRound.from_json(state["sweep"])
    assert set(sweep.jobs) == set(sweep.states) and all(end.state == "SUCCEEDED" for end in sweep.states.values())
    assert all(seen.attempts == 1 for seen in sweep.seen.values())
    jobs = HostJobs.from_json(state["jobs"])
    assert jobs.current["compile"] == "compile-1" and jobs.attempts["compile"] == 1
    assert PreflightFindings.from_json(state["preflight"]).subnets[0].zone.endswith("a")


# ------------------------------------------------------------------ reading tolerantly
HOST = {"instance_id": "i-0abc", "public_ip": "203.0.113.7", "zone": "us-west-2a", "user": "ubuntu", "name": "n"}


def test_keys_a_record_does_not_know_are_ignored():
    host = HostRecord.from_json({**HOST, "added_by_a_newer_inflab": [1, 2]})
    assert host == HostRecord.from_json(HOST)


def test_missing_optional_fields_take_their_defaults():
    image = BuiltImage.from_json({"uri": "repo:cpu-1", "hash": "1"})
    assert (image.kind, image.runtime, image.instance_id) == ("", "", None)
    host = HostRecord.from_json({k: v for k, v in HOST.items() if k not in ("zone", "name")})
    assert (host.zone, host.name) == ("", "")


@pytest.mark.parametrize(
    "record, value, says",
    [
        (HostRecord, {**HOST, "public_ip": 5}, "the session's 'host' record, field 'public_ip': expected text, got 5"),
        (HostRecord, {"public_ip": "203.0.113.7"}, "the session's 'host' record: missing fields 'instance_id', 'user'"),
        (HostRecord, ["i-0abc"], "the session's 'host' record: expected an object, got ['i-0abc']"),
        (
            PreflightFindings,
            {**legacy_state()["preflight"], "subnets": [{"id": "subnet-1"}]},
            "the session's 'preflight' record, field 'subnets'[0]: missing field 'zone'",
        ),
        (
            SweepRound,
            {"round": "r", "setup": "s", "jobs": {"a": "1"}, "seen": {"1": ["RUNNING", 1.0]}},
            "field 'seen'['1']: expected a list of 3 (state, since, attempts), got ['RUNNING', 1.0]",
        ),
        (ServerJob, {"n": True, "job": "serve-1"}, "field 'n': expected a whole number, got True"),
        (
            ModelArchive,
            {"settings": "s", "instance_id": "i", "labels": "two"},
            "field 'labels': expected a whole number",
        ),
        (HostJobs, {"compile": "compile-1", "compile#": "1"}, "the session's 'jobs' record, field 'compile#'"),
    ],
)
def test_a_value_of_the_wrong_shape_is_one_line_naming_the_key_and_field(record, value, says):
    with pytest.raises(RecordError) as e:
        record.from_json(value)
    line = str(e.value)
    assert says in line and "\n" not in line
    if record.WRITER:
        assert line.endswith(f"run the {record.WRITER} step again")


def test_a_record_is_saved_forgotten_and_loaded_through_the_store(tmp_path):
    store = Store(tmp_path)
    store.create_session("s", {}, sandbox=True, track="inf1")
    assert records.load(store, "s", HostRecord) is None
    records.save(store, "s", HostRecord.from_json(HOST))
    assert store.get("s", "host") == HOST  # the plain value, under the key it always had
    assert records.load(store, "s", HostRecord) == HostRecord.from_json(HOST)
    records.forget(store, "s", HostRecord)
    assert store.get("s", "host") is None


def test_refreshed_prices_are_stored_as_the_price_list_reads_them(tmp_path):
    """(Only the Pricing API refreshes prices, so the sandbox-made legacy session has none.)"""
    from inflab import prices
    from inflab.lab_steps.records import RefreshedPrices

    fetched = prices.Prices(
        {"inf1.xlarge": 0.228, "g5.xlarge": 1.006}, "AWS Pricing API, on-demand Linux, us-west-2", "2026-11-20"
    )
    store = Store(tmp_path)
    store.create_session("s", {}, sandbox=False, track="inf1")
    records.save(store, "s", RefreshedPrices(source=fetched.source, date=fetched.date, prices=dict(fetched.table)))
    assert json.dumps(store.get("s", "prices")) == json.dumps(fetched.to_store())  # as the report step always wrote it
    assert prices.from_store(store, "s") == fetched
    assert RefreshedPrices.from_json(fetched.to_store()).to_json() == fetched.to_store()
