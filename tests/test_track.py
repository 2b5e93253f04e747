"""The track declaration against what the lab shows of each step: its instructions, the AWS CLI
commands it stands for, its place in `inflab steps`. A step added to the track without its
instructions or its CLI panel fails here, not in front of a learner."""

from __future__ import annotations

import json
import os
from importlib import resources

import pytest
from conftest import run_cli

from inflab import config, sandbox as sb
from inflab.engine import Engine
from inflab.lab_steps import build
from inflab.session import Store
from inflab.track import EXERCISES, IDS, KEEP, TRACK, UNDO, StepSpec


@pytest.fixture(params=[True, False], ids=["sandbox", "aws"])
def engine(request, tmp_path, monkeypatch) -> Engine:
    """A session of each kind in a home of its own (the CLI texts must not need AWS or the sandbox)."""
    monkeypatch.setenv("INFLAB_HOME", str(tmp_path))
    store = Store(tmp_path)
    store.create_session(
        "s",
        config.from_dict({"lab": {"beacon": False}}, sandbox=request.param).data,
        sandbox=request.param,
        track="inf1",
    )
    yield Engine(store, "s", aws=object())  # any AWS call would fail on this
    assert sb.status(tmp_path) is None  # nothing started the sandbox


def test_ids_are_unique_and_each_spec_is_well_formed():
    assert len(IDS) == len(set(IDS))
    for spec in TRACK:
        assert spec.title and spec.title[0].isupper() and not spec.title.endswith("."), spec.id
        assert spec.exercise in EXERCISES and spec.teardown in (UNDO, KEEP), spec.id
        assert not (spec.ends_track and spec is not TRACK[-1]), "only the last step ends the track"


def test_every_step_has_its_instructions_headed_by_its_title():
    steps = resources.files("inflab.assets").joinpath("steps")
    for spec in TRACK:
        text = steps.joinpath(f"{spec.id}.md").read_text(encoding="utf-8")
        first = text.lstrip().splitlines()[0]
        assert first.startswith("# "), f"{spec.id}.md starts with {first!r}"
        assert len(text.split()) > 20, f"{spec.id}.md says too little to learn from"
    assert {p.name for p in steps.iterdir()} == {f"{sid}.md" for sid in IDS}  # none left over


def test_every_step_has_its_cli_panel_with_this_sessions_values(engine):
    for step in engine.steps:
        lines = engine.cli_lines(step.id)
        assert lines and all(isinstance(line, str) and line.strip() for line in lines), step.id
        commands = [line for line in lines if not line.lstrip().startswith("#")]
        assert commands or step.needs_host or engine.info.sandbox, f"{step.id}: only comments"
        for line in commands:
            assert " None" not in line and "=None" not in line, f"{step.id}: a value missing from {line!r}"


def test_the_step_objects_are_the_ones_the_track_names():
    assert [s.id for s in build()] == list(IDS)
    wrong = (StepSpec("keypair", "Create an SSH key pair", "provision", "access:SecurityGroup"),)
    with pytest.raises(ValueError, match="the track names access:SecurityGroup for step keypair"):
        build(wrong)


def test_inflab_steps_prints_the_specs(tmp_path):
    r = run_cli("steps", "--json", home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [s.as_dict() for s in TRACK]
    plain = run_cli("steps", home=tmp_path).stdout.splitlines()
    assert len(plain) == len(TRACK) and plain[0].split()[1] == TRACK[0].id
    assert not os.listdir(tmp_path) or not (tmp_path / "sandbox").exists()
