"""The one config format: JSON round trip, defaults, and errors that name the key."""

import dataclasses
import json

import pytest

from study.config import ArchSpec, AttentionSpec, ConfigError, ProxySpec, Recipe, TrialConfig, load_config

ISSUE_EXAMPLE = {
    "backbone": "resnet50",
    "stem": "imagenet",
    "width": 1.0,
    "num_classes": 1000,
    "stages": [{"kind": "eca", "k": 3}, {"kind": "eca", "gamma": 2, "b": 1}, {"kind": "se", "r": 16}, {"kind": "none"}],
}


def test_arch_json_form_round_trips():
    arch = ArchSpec.from_dict(ISSUE_EXAMPLE)
    assert arch.stages[0] == AttentionSpec.of("eca", k=3)
    assert arch.stages[1].kwargs == {"gamma": 2, "b": 1}
    assert arch.stages[3].kind == "none" and arch.stages[3].kwargs == {}
    again = ArchSpec.from_dict(json.loads(json.dumps(arch.to_dict())))
    assert again == arch
    assert hash(again) == hash(arch)


def test_trial_config_round_trips_through_json():
    config = TrialConfig(
        arch=ArchSpec.from_dict(ISSUE_EXAMPLE),
        recipe=Recipe(epochs=3, lr=0.05, schedule="step", step_every=1),
        proxy=ProxySpec(resolution=16, num_classes=10, images_per_class=0.5),
        seed=7,
    )
    assert TrialConfig.from_json(config.to_json()) == config
    assert TrialConfig.from_dict(config.to_dict()) == config


def test_trial_config_fills_defaults_for_optional_sections():
    config = TrialConfig.from_dict({"arch": ISSUE_EXAMPLE})
    assert config.recipe == Recipe() and config.proxy == ProxySpec() and config.seed == 0


@pytest.mark.parametrize(
    "data, key",
    [
        ({"arch": ISSUE_EXAMPLE, "recipie": {}}, "recipie"),
        ({"recipe": {}}, "arch"),
        ({"arch": {**ISSUE_EXAMPLE, "depth": 3}}, "depth"),
        ({"arch": {k: v for k, v in ISSUE_EXAMPLE.items() if k != "stages"}}, "stages"),
        ({"arch": ISSUE_EXAMPLE, "recipe": {"epochs": 0}}, "epochs"),
        ({"arch": ISSUE_EXAMPLE, "recipe": {"schedule": "linear"}}, "schedule"),
        ({"arch": ISSUE_EXAMPLE, "proxy": {"images_per_class": 1.5}}, "images_per_class"),
        ({"arch": {**ISSUE_EXAMPLE, "width": 4}}, "width"),
        ({"arch": {**ISSUE_EXAMPLE, "stages": [{"k": 3}] * 4}}, "kind"),
        ({"arch": {**ISSUE_EXAMPLE, "psi_input": "inner"}}, "psi_input"),
    ],
)
def test_bad_config_names_the_key(data, key):
    with pytest.raises(ConfigError, match=key):
        TrialConfig.from_dict(data)


def test_repr_lists_only_non_default_fields():
    assert repr(Recipe(epochs=5)) == "Recipe(epochs=5)"
    assert repr(ProxySpec()) == "ProxySpec()"


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Recipe().epochs = 3  # type: ignore[misc]


def test_images_per_class_fraction_or_count():
    assert ProxySpec(images_per_class=0.25).images_per_class == 0.25
    assert ProxySpec(images_per_class=20).images_per_class == 20
    assert ProxySpec(images_per_class=20.0).images_per_class == 20
    with pytest.raises(ConfigError, match="images_per_class"):
        ProxySpec(images_per_class=0)


def test_load_config_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigError, match="nope.json"):
        load_config(missing)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(bad)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"arch": ISSUE_EXAMPLE}))
    assert load_config(good).arch.backbone == "resnet50"
