"""Unit tests of inflab.config: defaults, sandbox AMI, and errors that name the key."""

from __future__ import annotations

import pytest

from inflab import config
from inflab.config import ConfigError


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


def test_user_file_only_changes_what_it_names(tmp_path):
    p = tmp_path / "lab.toml"
    p.write_text('[instance]\nvolume_size_gb = 512\n[batch]\nsizes = [1, 16]\n')
    cfg = config.load(p)
    assert cfg["instance"]["volume_size_gb"] == 512
    assert cfg["batch"]["sizes"] == [1, 16]
    # everything else keeps its default
    assert cfg.region == "us-west-2"
    assert cfg.instance_type == "inf1.2xlarge"
    assert cfg["instance"]["volume_type"] == "gp3"
    assert cfg["model"]["family"] == "bert"


def test_defaults_are_not_shared_between_loads():
    a = config.load(None)
    a["batch"]["sizes"].append(99)
    assert config.load(None)["batch"]["sizes"] == [2, 4, 8]


def test_sandbox_uses_the_amazon_linux_public_parameter():
    cfg = config.load(None, sandbox=True)
    assert cfg["instance"]["ami_ssm_parameter"] == "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
    assert cfg["instance"]["ami"] == ""
    assert cfg["instance"]["ami_name"] == ""


def test_real_aws_inf1_finds_the_neuron_dlami_by_name():
    cfg = config.load(None, sandbox=False)
    assert cfg["instance"]["ami_ssm_parameter"] == ""
    assert "Neuron" in cfg["instance"]["ami_name"]


def test_real_aws_inf2_uses_the_neuron_ssm_parameter():
    cfg = config.from_dict({"instance": {"type": "inf2.xlarge"}}, sandbox=False)
    assert cfg["instance"]["ami_ssm_parameter"].startswith("/aws/service/neuron/")


def test_an_explicit_ami_is_kept_in_the_sandbox():
    cfg = config.from_dict({"instance": {"ami": "ami-0123456789abcdef0"}}, sandbox=True)
    assert cfg["instance"]["ami"] == "ami-0123456789abcdef0"
    assert cfg["instance"]["ami_ssm_parameter"] == ""


def test_to_toml_round_trips(tmp_path):
    cfg = config.from_dict({"instance": {"volume_size_gb": 100, "ssh_cidr": "203.0.113.7/32"}, "batch": {"sizes": [1, 2]}})
    p = tmp_path / "again.toml"
    p.write_text(cfg.to_toml())
    assert config.load(p).data == cfg.data


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
    ({"instance": {"ssh_user": "Root User"}}, "instance.ssh_user"),
    ({"instance": {"volume_type": "st1"}}, "instance.volume_type"),
    ({"instance": {"subnet_id": "sub-123"}}, "instance.subnet_id"),
    ({"instance": {"ssh_cidr": "my laptop"}}, "instance.ssh_cidr"),
    ({"instance": {"ssh_cidr": "10.0.0.1/24"}}, "instance.ssh_cidr"),
    ({"instance": {"ssh_cidr": "0.0.0.0/0"}}, "instance.ssh_cidr"),
    ({"instance": {"ssh_cidr": "::/0"}}, "instance.ssh_cidr"),
    ({"model": {"family": "gpt"}}, "model.family"),
    ({"model": {"name": "  "}}, "model.name"),
    ({"model": {"max_length": 4}}, "model.max_length"),
    ({"model": {"image_size": 2048}}, "model.image_size"),
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
    ({"batch": {"max_vcpus": 0}}, "batch.max_vcpus"),
]


@pytest.mark.parametrize("user, key", BAD, ids=[f"{k}-{i}" for i, (_, k) in enumerate(BAD)])
def test_bad_values_name_the_key(user, key):
    with pytest.raises(ConfigError) as ei:
        config.from_dict(user, sandbox=True)
    msg = str(ei.value)
    assert msg.startswith(key + ":"), msg
    assert "\n" not in msg


def test_bad_profile_names_the_key_on_real_aws():
    with pytest.raises(ConfigError, match=r"^aws\.profile: "):
        config.from_dict({"aws": {"profile": "bad profile!"}}, sandbox=False)


def test_ssh_cidr_zero_prefix_says_why():
    with pytest.raises(ConfigError, match=r"instance\.ssh_cidr: .*whole internet"):
        config.from_dict({"instance": {"ssh_cidr": "0.0.0.0/0"}})


def test_wrong_type_says_what_was_expected():
    with pytest.raises(ConfigError) as ei:
        config.from_dict({"instance": {"volume_size_gb": "big"}})
    assert "an integer" in str(ei.value) and "'big'" in str(ei.value)


def test_unknown_key_lists_the_known_ones():
    with pytest.raises(ConfigError) as ei:
        config.from_dict({"instance": {"size": 3}})
    assert "volume_size_gb" in str(ei.value)


def test_missing_file_names_the_flag(tmp_path):
    with pytest.raises(ConfigError, match=r"^--config: no such file"):
        config.load(tmp_path / "nope.toml")


def test_malformed_toml_names_the_flag(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[instance\nvolume_size_gb = 3\n")
    with pytest.raises(ConfigError, match=r"^--config: .*not valid TOML"):
        config.load(p)


def test_directory_as_config_names_the_flag(tmp_path):
    with pytest.raises(ConfigError, match=r"^--config: cannot read"):
        config.load(tmp_path)


@pytest.mark.parametrize("good", ["lab-1", "a", "t0123456789", "x" * 31])
def test_good_session_names(good):
    assert config.validate_session_name(good) == good


@pytest.mark.parametrize("bad", ["Bad_Name", "", "-lead", "a b", "x" * 32, "ünï", "lab\n", "lab-1\n"])
def test_bad_session_names_name_the_flag(bad):
    with pytest.raises(ConfigError, match=r"^--name: "):
        config.validate_session_name(bad)
    with pytest.raises(ConfigError, match=r"^NAME: "):
        config.validate_session_name(bad, "NAME")
