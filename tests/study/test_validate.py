"""The one validation mechanism: errors carry the field path as data; CLIs say it as a flag by rule."""

from __future__ import annotations

import pickle

import pytest

from study.cli import ArgumentParser, flag_error, flag_names
from study.config import Recipe, TrialConfig
from study.validate import ConfigError, check_choice, check_int, check_number, nested


def test_an_error_carries_its_field_path_and_reason_as_data():
    with pytest.raises(ConfigError) as info:
        Recipe(lr=0)
    assert (info.value.field, str(info.value)) == ("lr", "lr: must be in (0.0, inf], got 0")
    assert info.value.reason == "must be in (0.0, inf], got 0"


def test_nested_configs_name_the_path_down_to_the_field():
    data = TrialConfig.from_dict({"arch": {"backbone": "resnet18", "stages": ["eca"] * 4}}).to_dict()
    data["recipe"]["lr"] = -1
    with pytest.raises(ConfigError) as info:
        TrialConfig.from_dict(data)
    assert info.value.field == "recipe.lr"
    data = TrialConfig.from_dict({"arch": {"backbone": "resnet18", "stages": ["eca"] * 4}}).to_dict()
    data["arch"]["width"] = 9.0
    with pytest.raises(ConfigError) as info:
        TrialConfig.from_dict(data)
    assert info.value.field == "arch.width"


def test_within_and_nested_prefix_the_field_and_its_refs():
    err = ConfigError("warmup", "must not exceed {epochs}", refs=["epochs"]).within("pruner_options")
    assert err.field == "pruner_options.warmup" and err.refs == ("pruner_options.epochs",)
    assert str(err) == "pruner_options.warmup: must not exceed `pruner_options.epochs`"
    with pytest.raises(ConfigError) as info, nested("proxy"):
        check_int(0, "resolution", 8)
    assert info.value.field == "proxy.resolution"


def test_checks_name_the_field_and_the_allowed_values():
    assert check_int(3, "trials", 1) == 3
    for bad in (0, True, 1.5, "3"):
        with pytest.raises(ConfigError, match=r"^trials: must be an integer >= 1"):
            check_int(bad, "trials", 1)
    with pytest.raises(ConfigError, match=r"runner: must be one of ray, local, got 'x'"):
        check_choice("x", "runner", ("ray", "local"))
    with pytest.raises(ConfigError, match=r"cpus: must be a number in \[0, 8\]"):
        check_number(float("nan"), "cpus", 0, 8)


def test_an_error_survives_pickling_with_its_data():  # Ray ships errors between processes
    err = pickle.loads(pickle.dumps(ConfigError("root", "no such folder", about="/data", refs=["x"])))
    assert (err.field, err.reason, err.about, err.refs, str(err)) == ("root", "no such folder", "/data", ("x",),
                                                                      "root /data: no such folder")


def _parser() -> ArgumentParser:
    p = ArgumentParser(prog="prog")
    p.add_argument("--max-concurrent", type=int)
    p.add_argument("--out")
    p.add_argument("--runner")
    p.add_argument("--address")
    sub = p.add_subparsers(dest="command")
    sub.add_parser("prepare").add_argument("--chunk-size", type=int)
    return p


def test_cli_says_a_field_path_as_its_flag_by_rule_and_exceptions_never_by_text():
    say = flag_names(_parser(), {"run_dir": "--out", "recipe.": "--set recipe."})
    assert say("max_concurrent") == "--max-concurrent"  # the rule: the option of that destination
    assert say("chunk_size") == "--chunk-size"  # a subcommand's option too
    assert say("run_dir") == "--out" and say("recipe.lr") == "--set recipe.lr"  # the exceptions
    assert say("stages[0].k") == "stages[0].k"  # no flag sets it: the path itself
    # the reason's text is never read: a field name inside it stays as written unless it is a ref
    err = ConfigError("address", "a Ray address needs {runner} ray; max_concurrent is unchanged", refs=["runner"])
    assert str(flag_error(err, _parser())) == "--address: a Ray address needs --runner ray; max_concurrent is unchanged"
