"""Unit tests of inflab.config: defaults, typed access, the TOML the review screen shows,
stored snapshots, the bounds shared with the payload, and errors that name the key."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import socket
import tempfile
import tomllib
from pathlib import Path

import pytest
from conftest import unusable_config

from inflab import config
from inflab.config import ConfigError
from inflab.engine import Engine
from inflab.remote.payload import compile as comp, limits

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_are_the_workshops_values():
    cfg = config.load(None)
    assert cfg.region == "us-west-2"
    assert cfg["aws"]["region"] == "us-west-2"
    assert cfg.instance_type == "inf1.2xlarge"
    assert cfg.track == "inf1"
    assert cfg["instance"]["volume_size_gb"] == 256
    assert cfg["instance"]["volume_type"] == "gp3"
    assert cfg["model"]["family"] == "bert"
    assert cfg["batch"]["sizes"] == [2, 4, 8]


def test_sections_are_typed_records():
    cfg = config.from_dict({"bench": {"batch_size": 4, "rate": 50}, "batch": {"sizes": [1, 16]}}, sandbox=True)
    assert cfg.bench.batch_size == 4 and cfg.bench.rate == 50
    assert cfg.instance.type == "inf1.2xlarge" and cfg.instance.volume_size_gb == 256
    assert cfg.model.family == "bert" and cfg.model.int8 is True
    assert cfg.container.source == "build" and cfg.lab.track == "inf1" and cfg.aws.region == "us-west-2"
    assert cfg.batch.sizes == (1, 16) and cfg.batch.instance_types == ("inf1.2xlarge",)
    # the same values through the mapping view and the stored tree
    assert cfg["bench"]["batch_size"] == 4 and cfg.data["bench"]["batch_size"] == 4
    assert cfg.data["batch"]["sizes"] == [1, 16]


def test_a_config_cannot_be_changed_after_validation():
    cfg = config.load(None, sandbox=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.bench.batch_size = 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.bench = None
    with pytest.raises(TypeError):
        cfg["bench"]["batch_size"] = 0
    cfg.data["batch"]["sizes"].append(99)  # a copy
    assert cfg.batch.sizes == (2, 4, 8)
    assert config.load(None)["batch"]["sizes"] == [2, 4, 8]


def test_user_file_only_changes_what_it_names(tmp_path):
    p = tmp_path / "lab.toml"
    p.write_text("[instance]\nvolume_size_gb = 512\n[batch]\nsizes = [1, 16]\n")
    cfg = config.load(p)
    assert cfg.instance.volume_size_gb == 512
    assert cfg.batch.sizes == (1, 16)
    # everything else keeps its default
    assert cfg.region == "us-west-2"
    assert cfg.instance_type == "inf1.2xlarge"
    assert cfg.instance.volume_type == "gp3"
    assert cfg.model.family == "bert"


@pytest.mark.parametrize(
    "itype, how, login",
    [
        ("inf1.2xlarge", "Deep Learning AMI Neuron (Ubuntu 22.04) *", "ubuntu"),
        ("inf2.xlarge", "/aws/service/neuron/dlami/multi-framework/ubuntu-24.04/latest/image_id", "ubuntu"),
        ("trn1.2xlarge", "/aws/service/neuron/dlami/multi-framework/ubuntu-24.04/latest/image_id", "ubuntu"),
        (
            "g5.xlarge",
            "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id",
            "ubuntu",
        ),
        ("c6i.2xlarge", "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id", "ec2-user"),
    ],
)
@pytest.mark.parametrize("sandbox", [False, True])
def test_each_kind_has_its_own_default_ami_and_login(itype, how, login, sandbox):
    """A GPU type never gets the Neuron DLAMI (no NVIDIA driver there); the sandbox resolves the same defaults."""
    cfg = config.from_dict({"instance": {"type": itype}}, sandbox=sandbox)
    image = cfg.host_image
    assert how in (image.ssm_parameter, image.name)
    assert cfg.login_user == login
    assert (image.max_neuron_sdk == (2, 26, 0)) == itype.startswith("inf1")
    # nothing is filled into the snapshot: changing the type on the review screen changes the image
    assert (
        cfg.data["instance"]["ami_name"]
        == cfg.data["instance"]["ami_ssm_parameter"]
        == cfg.data["instance"]["ssh_user"]
        == ""
    )


def test_the_review_screen_says_what_an_empty_ami_and_login_become():
    text = config.from_dict({"instance": {"type": "g5.xlarge"}}).to_toml()
    ami = next(line for line in text.splitlines() if line.startswith("ami ="))
    user = next(line for line in text.splitlines() if line.startswith("ssh_user ="))
    assert "g5.xlarge" in ami and "Nvidia Driver GPU AMI" in ami
    assert "ubuntu" in user
    assert "ec2-user" in config.from_dict({"instance": {"type": "c7i.xlarge"}}).to_toml()


def test_an_explicit_ami_and_user_win_and_inf1_keeps_its_sdk_limit():
    cfg = config.from_dict({"instance": {"ami": "ami-0123456789abcdef0", "ssh_user": "admin"}}, sandbox=True)
    assert cfg.instance.ami == "ami-0123456789abcdef0" and cfg.login_user == "admin"
    assert cfg.host_image.max_neuron_sdk == (2, 26, 0)  # a hand-picked inf1 image is still checked
    cfg = config.from_dict({"instance": {"ami_name": "my-neuron-*"}})
    assert cfg.host_image.name == "my-neuron-*" and cfg.login_user == "ubuntu"


# ------------------------------------------------------------------ the TOML the review screen shows
# Values with the characters TOML has to quote or escape, in the keys that accept them.
ODD_STRINGS = {
    "instance": {"ami_name": "O'Neil's [test] (Ubuntu 22.04) @lab_*?", "ssh_cidr": "203.0.113.0/24"},
    "aws": {"profile": "équipe-ml+dev@corp.example"},
    "model": {"name": "org_ü/bert-base.v2"},
}


@pytest.mark.parametrize("sandbox", [True, False])
def test_to_toml_round_trips(sandbox):
    cfg = config.from_dict(
        {
            **ODD_STRINGS,
            "batch": {"sizes": [1, 2], "instance_types": ["inf1.xlarge", "c6i.4xlarge"]},
            "bench": {"mode": "open", "rate": 12.5},
        },
        sandbox=sandbox,
    )
    again = config.from_dict(tomllib.loads(cfg.to_toml()), sandbox=sandbox)
    assert again == cfg
    assert again.data == cfg.data
    assert again.instance.ami_name == "O'Neil's [test] (Ubuntu 22.04) @lab_*?"


def test_to_toml_file_loads_back(tmp_path):
    cfg = config.from_dict(
        {"instance": {"volume_size_gb": 100, "ssh_cidr": "203.0.113.7/32"}, "batch": {"sizes": [1, 2]}}
    )
    p = tmp_path / "again.toml"
    p.write_text(cfg.to_toml())
    assert config.load(p).data == cfg.data


def test_every_key_is_written_with_its_comment():
    text = config.load(None, sandbox=True).to_toml()
    section, seen = None, set()
    for line in text.splitlines():
        if m := re.fullmatch(r"\[(\w+)\]", line):
            section = m.group(1)
        elif line:
            key = line.split(" = ", 1)[0]
            if f"{section}.{key}" in ("instance.ami", "instance.ssh_user"):  # empty: says what it becomes
                assert "  # empty: " in line, line
            else:
                assert line.endswith("  # " + config.COMMENTS[f"{section}.{key}"]), line
            seen.add(f"{section}.{key}")
    assert seen == {f"{s}.{k}" for s, keys in config.DEFAULTS.items() for k in keys}


def test_the_comments_are_the_readmes():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("### Configuration", 1)[1].split("```toml", 1)[1].split("```", 1)[0]
    section, documented = None, 0
    for line in block.splitlines():
        if m := re.fullmatch(r"\[(\w+)\]", line.strip()):
            section = m.group(1)
        elif m := re.fullmatch(r"(\w+) = .*?\s+# (.*)", line):
            key, comment = f"{section}.{m.group(1)}", m.group(2)
            assert config.COMMENTS[key].startswith(comment), (key, comment, config.COMMENTS[key])
            documented += 1
    assert documented >= 20


@pytest.mark.parametrize(
    "key", [f"{s}.{k}" for s, keys in config.DEFAULTS.items() for k, v in keys.items() if isinstance(v, str)]
)
def test_no_string_key_takes_a_newline(key):
    """So no value can break the review screen's TOML: each is refused with one line naming it."""
    section, name = key.split(".")
    good = {
        "aws.region": "us-west-2",
        "lab.track": "inf1",
        "instance.type": "inf1.2xlarge",
        "instance.ssh_cidr": "203.0.113.7/32",
        "instance.ami_ssm_parameter": "/a/b",
        "instance.ami": "ami-0123abcd",
    }
    value = good.get(key, config.DEFAULTS[section][name] or "abc") + "\nx"
    with pytest.raises(ConfigError) as ei:
        config.from_dict({section: {name: value}}, sandbox=True)
    assert str(ei.value).startswith(key + ":") and "\n" not in str(ei.value), str(ei.value)


# ------------------------------------------------------------------ snapshots from the session store
def test_a_stored_snapshot_loads_as_the_same_config(store, name):
    cfg = config.from_dict(ODD_STRINGS, sandbox=True)
    store.create_session(name, cfg.data, sandbox=True, track=cfg.track)
    assert config.LabConfig.from_snapshot(store.get_session(name).config, sandbox=True) == cfg


def test_a_snapshot_from_before_a_key_existed_gets_its_default():
    old = config.load(None, sandbox=True).data
    del old["instance"]["allow_wide_ssh"]
    assert config.LabConfig.from_snapshot(old, sandbox=True).instance.allow_wide_ssh is False


@pytest.mark.parametrize(
    "section, key, value",
    [
        ("instance", "ssh_cidr", "10.0.0.0/8"),  # accepted by older versions
        ("instance", "ssh_cidr", "2001:db8::/64"),
        ("model", "name", "a/.."),
        ("aws", "profile", "lab; rm -rf ~"),
        ("bench", "rate", "fast"),
        ("bench", "batch_size", 5000),
        ("batch", "sizes", None),
        ("instance", "kind", "x"),  # a key no version had
    ],
)
def test_an_edited_or_old_snapshot_is_refused_naming_the_key(section, key, value):
    snapshot = config.load(None, sandbox=True).data
    snapshot[section][key] = value
    with pytest.raises(ConfigError) as ei:
        config.LabConfig.from_snapshot(snapshot, sandbox=True)
    assert str(ei.value).startswith(f"{section}.{key}:") and "\n" not in str(ei.value), str(ei.value)


@pytest.mark.parametrize("snapshot, first", [([], "the saved configuration"), ({"bench": [1]}, "bench:")])
def test_a_snapshot_of_the_wrong_shape_is_refused(snapshot, first):
    with pytest.raises(ConfigError, match="^" + first):
        config.LabConfig.from_snapshot(snapshot, sandbox=False)


# ------------------------------------------------------------------ bounds shared with the payload
SHARED = [  # (config section, key, compile.py flag, the bound in limits.py)
    ("model", "max_length", "--max-length", limits.MAX_LENGTH),
    ("model", "image_size", "--image-size", limits.IMAGE_SIZE),
    ("bench", "batch_size", "--batch-size", limits.BATCH_SIZE),
]


def _compile_accepts(flag: str, value: int) -> bool:
    argv = ["--family", "bert", "--target", "cpu", "--batch-size", "1", "--out", "m", flag, str(value)]
    try:
        comp.parse_args(argv)
    except SystemExit as e:
        assert e.code == 2
        return False
    return True


def _config_accepts(section: str, key: str, value: int) -> bool:
    try:
        config.from_dict({section: {key: value}}, sandbox=True)
    except ConfigError as e:
        assert str(e).startswith(f"{section}.{key}: "), str(e)
        return False
    return True


@pytest.mark.parametrize("section, key, flag, bound", SHARED, ids=[s[2] for s in SHARED])
def test_compile_and_config_agree_on_each_bound(section, key, flag, bound, capsys):
    for value, ok in ((bound.low - 1, False), (bound.low, True), (bound.high, True), (bound.high + 1, False)):
        assert _config_accepts(section, key, value) is ok, (key, value)
        assert _compile_accepts(flag, value) is ok, (flag, value)
    assert f"within {bound}" in capsys.readouterr().err


BENCH_BOUNDS = [
    ("workers_per_model", limits.WORKERS_PER_MODEL),
    ("n_models", limits.N_MODELS),
    ("min_queries", limits.MIN_QUERIES),
    ("max_duration_s", limits.MAX_DURATION_S),
    ("min_duration_s", limits.MIN_DURATION_S),
    ("rate", limits.RATE),
]


@pytest.mark.parametrize("key, bound", BENCH_BOUNDS, ids=[b[0] for b in BENCH_BOUNDS])
def test_bench_keys_use_the_payloads_bounds(key, bound):
    roomy = {"min_duration_s": limits.MIN_DURATION_S.low, "max_duration_s": limits.MAX_DURATION_S.high}

    def accepts(value) -> bool:  # with durations that leave each other room (max below min is refused)
        try:
            config.from_dict({"bench": {**roomy, key: value}})
        except ConfigError as e:
            assert str(e) == f"bench.{key}: {value} is outside {bound}"
            return False
        return True

    assert [accepts(v) for v in (bound.low - 1, bound.low, bound.high, bound.high + 1)] == [False, True, True, False]


# ------------------------------------------------------------------ values refused, one line naming the key
LONG = "a" * 300
BAD = [
    # (user config, key the message must name)
    ({"instance": {"volume_size_gb": "big"}}, "instance.volume_size_gb"),
    ({"instance": {"volume_size_gb": True}}, "instance.volume_size_gb"),
    ({"instance": {"volume_size_gb": 4}}, "instance.volume_size_gb"),
    ({"instance": {"volume_size_gb": 20000}}, "instance.volume_size_gb"),
    ({"instance": {"size": 3}}, "instance.size"),
    ({"network": {"vpc": "x"}}, "network"),
    ({"aws": "us-west-2"}, "aws"),
    ({"aws": {"region": "us-west-9"}}, "aws.region"),
    ({"aws": {"region": 5}}, "aws.region"),
    ({"lab": {"track": "inf3"}}, "lab.track"),
    ({"instance": {"type": "inf1.huge"}}, "instance.type"),
    ({"instance": {"type": "foo.large"}}, "instance.type"),
    ({"instance": {"type": "inf1"}}, "instance.type"),
    ({"instance": {"type": "inf1.2xlarge\n"}}, "instance.type"),
    ({"instance": {"ami": "ami-xyz"}}, "instance.ami"),
    ({"instance": {"ami_ssm_parameter": "aws/service/x"}}, "instance.ami_ssm_parameter"),
    ({"instance": {"ami_ssm_parameter": "/aws/service x"}}, "instance.ami_ssm_parameter"),
    ({"instance": {"ami_name": "Deep Learning\nAMI"}}, "instance.ami_name"),
    ({"instance": {"ami_name": 'Deep "Learning"'}}, "instance.ami_name"),
    ({"instance": {"ssh_user": "Root User"}}, "instance.ssh_user"),
    ({"instance": {"type": "inf1.99xlarge"}}, "instance.type"),
    ({"instance": {"type": "p3.2xlarge"}}, "instance.type"),
    ({"batch": {"instance_types": ["p3.8xlarge"]}}, "batch.instance_types"),
    ({"batch": {"instance_types": ["inf1.99xlarge"]}}, "batch.instance_types"),
    ({"batch": {"runnable_timeout_min": 5}}, "batch.runnable_timeout_min"),
    ({"instance": {"volume_type": "st1"}}, "instance.volume_type"),
    ({"instance": {"subnet_id": "sub-123"}}, "instance.subnet_id"),
    ({"instance": {"ssh_cidr": "my laptop"}}, "instance.ssh_cidr"),
    ({"instance": {"ssh_cidr": "10.0.0.1/24"}}, "instance.ssh_cidr"),
    ({"instance": {"ssh_cidr": "203.0.113.7"}}, "instance.ssh_cidr"),
    ({"instance": {"ssh_cidr": "203.0.113.0/024"}}, "instance.ssh_cidr"),
    ({"instance": {"ssh_cidr": "0.0.0.0/0"}}, "instance.ssh_cidr"),
    ({"instance": {"ssh_cidr": "0.0.0.0/0", "allow_wide_ssh": True}}, "instance.ssh_cidr"),
    ({"instance": {"ssh_cidr": "10.0.0.0/16"}}, "instance.ssh_cidr"),
    ({"instance": {"ssh_cidr": "203.0.112.0/23"}}, "instance.ssh_cidr"),
    ({"instance": {"ssh_cidr": "::/0"}}, "instance.ssh_cidr"),
    ({"instance": {"ssh_cidr": "2001:db8::1/128"}}, "instance.ssh_cidr"),
    ({"instance": {"allow_wide_ssh": "yes"}}, "instance.allow_wide_ssh"),
    ({"model": {"family": "gpt"}}, "model.family"),
    ({"model": {"name": "  "}}, "model.name"),
    ({"model": {"name": "a/.."}}, "model.name"),
    ({"model": {"name": ".."}}, "model.name"),
    ({"model": {"name": "../bert"}}, "model.name"),
    ({"model": {"name": ".hidden"}}, "model.name"),
    ({"model": {"name": "bert."}}, "model.name"),
    ({"model": {"name": "org/.bert"}}, "model.name"),
    ({"model": {"name": "org/bert."}}, "model.name"),
    ({"model": {"name": "/bert"}}, "model.name"),
    ({"model": {"name": "bert/"}}, "model.name"),
    ({"model": {"name": "a/b/c"}}, "model.name"),
    ({"model": {"name": "a//b"}}, "model.name"),
    ({"model": {"name": "bert..base"}}, "model.name"),
    ({"model": {"name": "microsoft/resnet-50"}}, "model.name"),  # a resnet model for the bert family
    ({"model": {"max_length": 4}}, "model.max_length"),
    ({"model": {"image_size": 2048}}, "model.image_size"),
    ({"model": {"size": "medium"}}, "model.size"),
    ({"model": {"size": "Tiny"}}, "model.size"),
    ({"model": {"size": 1}}, "model.size"),
    ({"model": {"offline": "yes"}}, "model.offline"),
    ({"model": {"int8": 1}}, "model.int8"),
    ({"container": {"source": "pull"}}, "container.source"),
    ({"container": {"source": ""}}, "container.source"),
    ({"container": {"target": "tpu"}}, "container.target"),
    ({"container": {"target": "cuda"}}, "container.target"),  # the payload's name; the container's is gpu
    ({"container": {"target": 1}}, "container.target"),
    ({"bench": {"batch_size": 0}}, "bench.batch_size"),
    ({"bench": {"batch_size": 1025}}, "bench.batch_size"),
    ({"bench": {"batch_size": "8"}}, "bench.batch_size"),
    ({"bench": {"batch_size": 8.0}}, "bench.batch_size"),
    ({"bench": {"n_models": -1}}, "bench.n_models"),
    ({"bench": {"workers_per_model": 0}}, "bench.workers_per_model"),
    ({"bench": {"min_duration_s": 0}}, "bench.min_duration_s"),
    ({"bench": {"min_queries": 0}}, "bench.min_queries"),
    ({"bench": {"max_duration_s": 5}}, "bench.max_duration_s"),  # below min_duration_s (10)
    ({"bench": {"max_duration_s": 10**300}}, "bench.max_duration_s"),
    ({"bench": {"mode": "poisson"}}, "bench.mode"),
    ({"bench": {"mode": "open"}}, "bench.rate"),  # open loop without a rate
    ({"bench": {"rate": -1.0}}, "bench.rate"),
    ({"bench": {"rate": "fast"}}, "bench.rate"),
    ({"bench": {"rate": True}}, "bench.rate"),
    ({"bench": {"rate": math.nan}}, "bench.rate"),
    ({"bench": {"rate": math.inf}}, "bench.rate"),
    ({"bench": {"rate": -math.inf}}, "bench.rate"),
    ({"bench": {"mode": "open", "rate": math.nan}}, "bench.rate"),
    ({"bench": {"rate": 2e6}}, "bench.rate"),
    ({"batch": {"sizes": []}}, "batch.sizes"),
    ({"batch": {"sizes": [2, 4, 2]}}, "batch.sizes"),
    ({"batch": {"sizes": [0]}}, "batch.sizes"),
    ({"batch": {"sizes": [2, "4"]}}, "batch.sizes"),
    ({"batch": {"sizes": [True]}}, "batch.sizes"),
    ({"batch": {"sizes": 4}}, "batch.sizes"),
    ({"batch": {"instance_types": []}}, "batch.instance_types"),
    ({"batch": {"instance_types": ["inf1.huge"]}}, "batch.instance_types"),
    ({"batch": {"instance_types": [3]}}, "batch.instance_types"),
    ({"batch": {"instance_types": ["inf1.xlarge\n"]}}, "batch.instance_types"),
    ({"batch": {"instance_types": ["inf1.xlarge", LONG]}}, "batch.instance_types"),
    ({"batch": {"max_vcpus": 0}}, "batch.max_vcpus"),
    ({"batch": {"instance_types": ["inf1.xlarge", "inf1.xlarge"]}}, "batch.instance_types"),
    ({"batch": {"families": []}}, "batch.families"),
    ({"batch": {"families": ["gpt"]}}, "batch.families"),
    ({"batch": {"families": ["bert", "bert"]}}, "batch.families"),
    (
        {
            "batch": {
                "sizes": list(range(1, 31)),
                "instance_types": ["inf1.xlarge", "c6i.4xlarge"],
                "families": ["bert", "resnet"],
            }
        },
        "batch.sizes",
    ),  # 120 jobs
    ({"batch": {"min_duration_s": 0}}, "batch.min_duration_s"),
    ({"batch": {"min_duration_s": 30, "max_duration_s": 20}}, "batch.max_duration_s"),
    ({"aws": {"profile": "my profile"}}, "aws.profile"),  # refused in the sandbox too
    ({"aws": {"profile": "lab;rm -rf ~"}}, "aws.profile"),
    ({"aws": {"profile": "$(whoami)"}}, "aws.profile"),
    ({"aws": {"profile": "a`id`"}}, "aws.profile"),
    ({"aws": {"profile": "a|b"}}, "aws.profile"),
    ({"aws": {"profile": "a\nb"}}, "aws.profile"),
    ({"a\nb": {}}, "'a\\nb'"),  # odd key names are quoted, so the message stays one line
    ({"bench": {"a\nb": 1}}, "bench.'a\\nb'"),
] + [({s: {k: LONG}}, f"{s}.{k}") for s, keys in config.DEFAULTS.items() for k, v in keys.items() if isinstance(v, str)]


@pytest.mark.parametrize("sandbox", [True, False], ids=["sandbox", "aws"])
@pytest.mark.parametrize("user, key", BAD, ids=[f"{k}-{i}" for i, (_, k) in enumerate(BAD)])
def test_bad_values_name_the_key(user, key, sandbox):
    with pytest.raises(ConfigError) as ei:
        config.from_dict(user, sandbox=sandbox)
    msg = str(ei.value)
    assert msg.startswith(key + ":"), msg
    assert "\n" not in msg and len(msg) < 300, msg


GOOD = [
    {"instance": {"ssh_cidr": "10.0.0.0/8", "allow_wide_ssh": True}},
    {"instance": {"ssh_cidr": "203.0.113.0/24"}},
    {"instance": {"ami_name": "Deep Learning AMI Neuron (Ubuntu 22.04) 2024*"}},
    {"model": {"name": "google-bert/bert-base-cased"}},
    {"model": {"name": "org/model.v2"}},
    {"model": {"name": "bert_base-1.0"}},
    {"model": {"size": "tiny"}},
    {"model": {"size": "full"}},
    {"container": {"target": "gpu", "source": "prebuilt"}},
    {"bench": {"mode": "open", "rate": 100}},
    {"bench": {"n_models": 0, "min_duration_s": 1, "max_duration_s": 1}},
    {"aws": {"profile": "dev.team+ml@corp_1"}},
]


@pytest.mark.parametrize("user", GOOD, ids=[repr(u) for u in GOOD])
def test_good_values_are_kept(user):
    cfg = config.from_dict(user, sandbox=True)
    for section, values in user.items():
        for key, value in values.items():
            assert cfg[section][key] == value


def test_ipv6_ssh_cidr_says_ipv4_is_needed():
    with pytest.raises(ConfigError, match=r"^instance\.ssh_cidr: IPv6 ingress is not supported; give an IPv4 CIDR"):
        config.from_dict({"instance": {"ssh_cidr": "2001:db8::/64"}})


def test_wide_ssh_cidr_names_the_key_that_allows_it():
    with pytest.raises(ConfigError, match=r"^instance\.ssh_cidr: .*65,536 addresses.*instance\.allow_wide_ssh = true"):
        config.from_dict({"instance": {"ssh_cidr": "10.1.0.0/16"}})


def test_ssh_cidr_zero_prefix_says_why():
    with pytest.raises(ConfigError, match=r"instance\.ssh_cidr: .*whole internet"):
        config.from_dict({"instance": {"ssh_cidr": "0.0.0.0/0", "allow_wide_ssh": True}})


def test_nan_rate_says_it_is_not_a_number(tmp_path):
    p = tmp_path / "lab.toml"
    p.write_text('[bench]\nmode = "open"\nrate = nan\n')
    with pytest.raises(ConfigError, match=r"^bench\.rate: nan is not a finite number$"):
        config.load(p)


def test_wrong_type_says_what_was_expected():
    with pytest.raises(ConfigError) as ei:
        config.from_dict({"instance": {"volume_size_gb": "big"}})
    assert "an integer" in str(ei.value) and "'big'" in str(ei.value)


def test_unknown_key_lists_the_known_ones():
    with pytest.raises(ConfigError) as ei:
        config.from_dict({"instance": {"size": 3}})
    assert "volume_size_gb" in str(ei.value)


# ------------------------------------------------------------------ config files that cannot be read
def test_missing_file_names_the_flag(tmp_path):
    with pytest.raises(ConfigError, match=r"^--config: no such file"):
        config.load(tmp_path / "nope.toml")


def test_malformed_toml_names_the_flag(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[instance\nvolume_size_gb = 3\n")
    with pytest.raises(ConfigError, match=r"^--config: .*not valid TOML"):
        config.load(p)


UNREADABLE = [
    ("directory", "is a directory"),
    ("symlink-loop", "symbolic links"),
    ("long-name", "too long"),
    ("not-utf8", "not UTF-8"),
    ("deep-array", "nested too deeply"),
    ("huge-integer", "not valid TOML"),
    ("too-big", "larger than 1 MiB"),
    ("dev-zero", "character device"),
    ("proc-mem", "cannot read"),
]


@pytest.mark.parametrize("kind, says", UNREADABLE, ids=[u[0] for u in UNREADABLE])
def test_unreadable_config_files_name_the_flag(kind, says, tmp_path):
    with pytest.raises(ConfigError) as ei:
        config.load(unusable_config(kind, tmp_path))
    msg = str(ei.value)
    assert msg.startswith("--config: ") and says in msg and "\n" not in msg, msg


def test_a_socket_is_not_a_config_file():
    with tempfile.TemporaryDirectory(prefix="cfg") as d, socket.socket(socket.AF_UNIX) as s:
        s.bind(f"{d}/lab.toml")  # a short path: socket paths are limited to ~100 bytes
        with pytest.raises(ConfigError, match=r"^--config: .* is a socket, not a regular file$"):
            config.load(f"{d}/lab.toml")


def test_review_text_that_nests_too_deeply_is_a_config_error():
    with pytest.raises(ConfigError, match="^nested too deeply"):
        config.parse_toml("x = " + "[" * 50_000 + "]" * 50_000)


# ------------------------------------------------------------------ the review screen
async def test_review_screen_shows_toml_that_starts_the_session_as_configured(store, name):
    from textual.widgets import TextArea

    from inflab.tui.app import InflabApp

    cfg = config.from_dict(ODD_STRINGS, sandbox=True)
    app = InflabApp(store, engines=Engine, mode="new", name=name, config=cfg, sandbox=True)
    opened = []
    app.open_session = opened.append  # the wizard that would open next has tests of its own
    async with app.run_test(size=(140, 45)) as pilot:
        shown = app.screen.query_one("#config-text", TextArea).text
        assert "O'Neil's [test] (Ubuntu 22.04) @lab_*?" in shown
        assert config.from_dict(tomllib.loads(shown), sandbox=True) == cfg
        await pilot.press("ctrl+s")
        await pilot.pause()
    assert opened == [name]
    assert config.LabConfig.from_snapshot(store.get_session(name).config, sandbox=True) == cfg


@pytest.mark.parametrize(
    "line, error",
    [
        ('ami_name = "Deep Learning AMI\\nNeuron"', "instance.ami_name: "),  # a newline, written the TOML way
        ('ami_name = "Deep Learning AMI \\"Neuron\\""', "instance.ami_name: "),
        ("ami_name = " + "[" * 50_000 + "]" * 50_000, "The configuration is nested too deeply"),
        ('ami_name = "unterminated', "The configuration is not valid TOML"),
    ],
)
async def test_review_screen_refuses_what_validation_refuses(store, name, line, error):
    from textual.widgets import Static, TextArea

    from inflab.tui.app import InflabApp
    from inflab.tui.screens import ConfigReview

    app = InflabApp(store, engines=Engine, mode="new", name=name, config=config.load(None, sandbox=True), sandbox=True)
    async with app.run_test(size=(140, 45)) as pilot:
        area = app.screen.query_one("#config-text", TextArea)
        area.text = re.sub(r"^ami_name = .*$", lambda _: line, area.text, count=1, flags=re.M)
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, ConfigReview)
        shown = str(app.screen.query_one("#config-error", Static).render())
        assert shown.startswith(error) and "\n" not in shown, shown
    assert not store.has_session(name)


# ------------------------------------------------------------------ session names
@pytest.mark.parametrize("good", ["lab-1", "a", "t0123456789", "x" * 31])
def test_good_session_names(good):
    assert config.validate_session_name(good) == good


@pytest.mark.parametrize("bad", ["Bad_Name", "", "-lead", "a b", "x" * 32, "ünï", "lab\n", "lab-1\n"])
def test_bad_session_names_name_the_flag(bad):
    with pytest.raises(ConfigError, match=r"^--name: "):
        config.validate_session_name(bad)
    with pytest.raises(ConfigError, match=r"^NAME: "):
        config.validate_session_name(bad, "NAME")


# ---------------------------------------------------------------------- serve.input: only a file of your own


def _serve_input_config(d: Path, value: str) -> Path:
    path = d / "lab.toml"
    path.write_text(f'[serve]\ninput = "{value}"\n')
    return path


def _request(d: Path, name: str = "req.json", mode: int = 0o644) -> Path:
    p = d / name
    p.write_bytes(b'{"sentence1": "a", "sentence2": "b"}')
    p.chmod(mode)
    return p


@pytest.mark.parametrize(
    "case", ["link-to-a-readable-file", "link-to-shadow", "link-loop", "dotdot", "dotdot-absolute"]
)
def test_serve_input_refuses_links_and_dotdot_in_one_line(case, tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    if case == "link-to-a-readable-file":
        (conf / "req.json").symlink_to(_request(tmp_path))
        value, says = "req.json", "is a symbolic link"
    elif case == "link-to-shadow":
        (conf / "req.json").symlink_to("/etc/shadow")
        value, says = "req.json", "is a symbolic link"
    elif case == "link-loop":
        (conf / "a").symlink_to(conf / "b")
        (conf / "b").symlink_to(conf / "a")
        value, says = "a", "is a symbolic link"
    elif case == "dotdot":
        _request(tmp_path)
        value, says = "../req.json", "has a '..' in it"
    else:
        _request(tmp_path)
        value, says = f"{conf}/../req.json", "has a '..' in it"
    with pytest.raises(ConfigError) as e:
        config.load(_serve_input_config(conf, value))
    line = str(e.value)
    assert "\n" not in line and line.startswith("serve.input: ") and says in line, line


@pytest.mark.skipif(os.geteuid() != 0, reason="a file only root can read needs root to be read at all")
@pytest.mark.parametrize("case", ["another-users-private-file", "shadow-under-sudo"])
def test_serve_input_refuses_a_file_only_root_could_read(case, tmp_path, monkeypatch):
    if case == "another-users-private-file":
        target = _request(tmp_path, mode=0o600)
        os.chown(target, 65534, 65534)
    else:
        if not os.path.exists("/etc/shadow"):
            pytest.skip("no /etc/shadow here")
        monkeypatch.setenv("SUDO_UID", "65534")  # root through sudo, for user 65534
        target = Path("/etc/shadow")
    with pytest.raises(ConfigError) as e:
        config.load(_serve_input_config(tmp_path, str(target)))
    line = str(e.value)
    assert line.startswith(f"serve.input: {target} is not readable by you") and "\n" not in line, line


def test_serve_input_accepts_your_own_files_and_everyones(tmp_path):
    own = _request(tmp_path, "own.json", mode=0o600)
    assert config.load(_serve_input_config(tmp_path, "own.json")).serve.input == str(own)
    shared = _request(tmp_path, "shared.json", mode=0o644)
    if os.geteuid() == 0:
        os.chown(shared, 65534, 65534)  # another user's, readable by everyone
    assert config.load(_serve_input_config(tmp_path, "shared.json")).serve.input == str(shared)


def test_a_bad_serve_input_through_the_cli_is_one_line_and_creates_nothing(tmp_path):
    from conftest import run_cli

    home = tmp_path / "home"
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    r = run_cli(
        "run",
        "--sandbox",
        "--name",
        "x1",
        "--until",
        "credentials",
        "--config",
        str(_serve_input_config(tmp_path, "a")),
        home=home,
        timeout=60,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("inflab: error: serve.input: "), r.stderr
    assert not (home / "sessions").exists()
