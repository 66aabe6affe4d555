"""search_spaces: the registry, user spaces, conditional parameters, recorded stages,
reference points and the Table 2 grid - on real Optuna studies (in memory)."""

from __future__ import annotations

import dataclasses

import optuna
import pytest

import search_spaces
from search_spaces import Budget, SpaceContext, SpaceInfo, get_space, list_spaces, register_space, space_names
from search_spaces._eca_kmap import K_CHOICES
from search_spaces._paper_table2 import VARIANTS
from study import catalogue, record
from study.catalogue import psi, released_k
from study.config import ConfigError, ProxySpec, Recipe, TrialConfig

optuna.logging.set_verbosity(optuna.logging.WARNING)

SETTINGS = SpaceContext(backbone="resnet18", stem="lowres", width=None, proxy=ProxySpec(num_classes=10), recipe=Recipe(epochs=2), seed=3,
                        design="search")


def _run(space, n, *, sampler=None, settings=SETTINGS, references=True):
    study = optuna.create_study(sampler=sampler or optuna.samplers.RandomSampler(seed=0))
    if references:
        for name, params in space.reference_points(settings):
            study.enqueue_trial(params, user_attrs={record.REFERENCE: name})
    out = []
    for _ in range(n):
        trial = study.ask()
        config = space.suggest(trial, settings)
        study.tell(trial, 0.0)
        out.append((next(t for t in study.trials if t.number == trial.number), config))
    return study, out


#: the spaces this test file knows; a space added later has its own test (docs/architecture.md)
BUILT_IN = ["attention_nas", "eca_kmap", "kmap_confirm", "paper_table2", "se_ratio"]


def test_registry_lists_the_spaces_with_info():
    infos = list_spaces()
    assert [i.name for i in infos] == space_names() == sorted(space_names()) and set(BUILT_IN) <= set(space_names())
    for info in infos:
        assert isinstance(info, SpaceInfo) and info.description and info.budget.trials >= 1 and info.budget.epochs >= 1
    assert get_space("paper_table2").info.sampler == "grid"
    with pytest.raises(dataclasses.FrozenInstanceError):
        infos[0].name = "x"  # frozen


def test_unknown_space_names_the_valid_ones():
    with pytest.raises(ValueError, match=f"valid: {', '.join(space_names())}"):
        get_space("eca_kmapp")


def test_register_space_validates_and_refuses_duplicates():
    with pytest.raises(ValueError, match="budget trials"):
        Budget(trials=0, epochs=1)
    with pytest.raises(ValueError, match="space name"):
        register_space("bad name!", description="x", budget=Budget(trials=1, epochs=1))
    with pytest.raises(ValueError, match="already registered"):
        register_space("eca_kmap", description="x", budget=Budget(trials=1, epochs=1))(lambda trial, **kw: None)
    with pytest.raises(ValueError, match="grid"):
        register_space("gridless", description="x", budget=Budget(trials=1, epochs=1), sampler="grid")


#: what a space needs beyond the study settings (kmap_confirm: its design and the mapping it confirms)
EXTRA = {"kmap_confirm": {"design": "confirm", "options": {
    "arms": {"paper_psi": {"psi": {"gamma": 2.0, "b": 1.0}}, "fitted_psi": {"psi": {"gamma": 1.5, "b": 0.5}},
             "kstar": {"per_C": {"64": 7}, "else": {"psi": {"gamma": 2.0, "b": 1.0}}}, "released": {"k": [3, 5, 7, 7]},
             "none": {"none": True}},
    "widths": [0.25, 1.0]}}}


@pytest.mark.parametrize("name", space_names())
def test_every_space_returns_a_trial_config_and_records_config_and_stages(name):
    space = get_space(name)
    settings = SETTINGS.replace(**EXTRA.get(name, {}))
    study, out = _run(space, 6, settings=settings)
    for frozen, config in out:
        assert isinstance(config, TrialConfig)
        assert config.arch.num_classes == 10 and config.recipe.epochs == 2 and config.seed == 3
        assert TrialConfig.from_dict(frozen.user_attrs[record.CONFIG]) == config
        stages = frozen.user_attrs[record.STAGES]
        assert len(stages) == 4
        for st, spec in zip(stages, config.arch.stages):
            assert st["kind"] == spec.kind and st["channels"] >= 1
            if spec.kind in ("eca", "eca_ns"):
                assert st["k"] % 2 == 1  # ECA's resolved k is recorded


def test_eca_kmap_is_conditional_and_records_resolved_k():
    space = get_space("eca_kmap")
    study, out = _run(space, 30, references=False)
    modes = set()
    for frozen, _ in out:
        p = frozen.params
        modes.add(p["k_mode"])
        assert p["width"] in (0.25, 0.5, 1.0)
        if p["k_mode"] == "fixed":
            assert "gamma" not in p and "b" not in p
            for i, st in enumerate(frozen.user_attrs[record.STAGES]):
                assert st["k"] == p[f"k_s{i}"] in K_CHOICES
        else:
            assert not any(k.startswith("k_s") for k in p)
            assert 1 <= p["gamma"] <= 4 and 0 <= p["b"] <= 4
            for st in frozen.user_attrs[record.STAGES]:
                assert st["k"] == psi(st["channels"], p["gamma"], p["b"])
    assert modes == {"fixed", "psi"}


def test_eca_kmap_reference_points_come_first():
    space = get_space("eca_kmap")
    study, out = _run(space, 3)
    refs = [f.user_attrs[record.REFERENCE] for f, _ in out]
    assert refs == ["paper_psi", "k3", "released"]
    paper, k3, released = (f.user_attrs[record.STAGES] for f, _ in out)
    assert [s["k"] for s in paper] == [psi(s["channels"], 2, 1) for s in paper]
    assert [s["k"] for s in k3] == [3, 3, 3, 3]
    assert tuple(s["k"] for s in released) == released_k("resnet18") == (3, 5, 7, 7)
    # with a fixed width the references do not carry one
    fixed = space.reference_points(SETTINGS.replace(width=0.25))
    assert all("width" not in p for _, p in fixed)
    mobilenet = dict(space.reference_points(SETTINGS.replace(backbone="mobilenetv2")))["released"]
    assert [mobilenet[f"k_s{i}"] for i in range(7)] == list(released_k("mobilenetv2"))


def test_attention_nas_samples_each_kinds_own_parameters_only():
    space = get_space("attention_nas")
    study, out = _run(space, 40, references=False)
    seen = set()
    for frozen, config in out:
        p = frozen.params
        for i, spec in enumerate(config.arch.stages):
            kind = p[f"kind_s{i}"]
            seen.add(kind)
            stage_params = {k for k in p if k.endswith(f"_s{i}") and k != f"kind_s{i}"}
            assert all(k.startswith(kind + "_") for k in stage_params), (kind, stage_params)
            for name in catalogue.get_kind(kind).params:  # every sampled parameter is the kind's, as it declares it
                if f"{kind}_{name}_s{i}" in p:
                    assert spec.kwargs[name] == p[f"{kind}_{name}_s{i}"]
    # every kind declared searched is chosen (none declared otherwise: se_var1 is ge_theta_minus, se_gc's groups must divide C)
    assert seen == set(catalogue.searched_kinds()) >= {
        "none", "se", "se_var2", "se_var3", "eca_ns", "eca", "cbam", "coord",
        "bam", "gc", "ge_theta_minus", "ge_theta", "ge_theta_plus", "a2", "gsop",
    }
    assert not {"se_var1", "se_gc"} & seen


def test_attention_nas_map_and_width_dependent_parameters_fit_their_stage():
    import torch

    from study.models import build_model, stage_sizes

    settings = SETTINGS.replace(width=0.25)
    study, out = _run(get_space("attention_nas"), 40, settings=settings, references=False)
    built = 0
    for frozen, config in out:
        sides = [max(hw) for hw in stage_sizes(config.arch, 32)]
        for st, side, spec in zip(frozen.user_attrs[record.STAGES], sides, config.arch.stages):
            C, kw = st["channels"], spec.kwargs
            if st["kind"] == "bam":
                assert kw["dilation"] < side and kw["r"] <= C
            if st["kind"] == "gc":
                assert kw["r"] <= C // 2
            if st["kind"].startswith("ge_theta"):
                assert kw["extent"] < side
                assert kw.get("size") == (side if kw["extent"] == 0 and st["kind"] != "ge_theta_minus" else None)
            if st["kind"] == "gsop":
                assert kw["dim"] <= C
        if built < 6 and any(s.kind in ("bam", "ge_theta", "ge_theta_plus", "gc", "a2", "gsop") for s in config.arch.stages):
            built += 1
            assert build_model(config.arch)(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert built == 6


def test_attention_nas_kinds_restricts_the_choice():
    space = get_space("attention_nas")
    for kinds in (("none", "eca"), "eca, se_var1"):
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
        seen = set()
        for _ in range(8):
            trial = study.ask()
            config = space.suggest(trial, SETTINGS.replace(options={"kinds": kinds}))
            study.tell(trial, 0.0)
            seen |= {s.kind for s in config.arch.stages}
        assert seen == ({"none", "eca"} if kinds == ("none", "eca") else {"eca", "se_var1"})
    trial = optuna.create_study().ask()
    with pytest.raises(ValueError, match=r"kinds: unknown attention kind 'sk' \(valid kinds: a2, bam,"):
        space.suggest(trial, SETTINGS.replace(options={"kinds": ("eca", "sk")}))
    with pytest.raises(ValueError, match="kinds: expected at least one attention kind"):
        space.suggest(trial, SETTINGS.replace(options={"kinds": ()}))
    # BAM cannot run on a 1x1 map (ImageNet stem at 32 px: the last stage is 1x1)
    tiny_maps = SETTINGS.replace(stem="imagenet")
    config = space.suggest(optuna.create_study().ask(), tiny_maps.replace(options={"kinds": ("bam", "none")}))
    assert config.arch.stages[3].kind == "none"
    with pytest.raises(ValueError, match=r"kinds: none of bam fits stage 3 \(a 1x1 feature map at 32 px\)"):
        space.suggest(optuna.create_study().ask(), tiny_maps.replace(options={"kinds": ("bam",)}))


def test_se_ratio_per_stage_r():
    study, out = _run(get_space("se_ratio"), 5, references=False)
    for frozen, config in out:
        assert [s.kind for s in config.arch.stages] == ["se"] * 4
        assert [s["r"] for s in frozen.user_attrs[record.STAGES]] == [frozen.params[f"r_s{i}"] for i in range(4)]


def test_paper_table2_grid_walks_every_variant_once():
    space = get_space("paper_table2")
    grid = space.grid_space(SETTINGS)
    assert grid == {"variant": list(VARIANTS)} and len(VARIANTS) == 10
    class Grid(optuna.samplers.GridSampler):  # ask/tell outside optimize(): no study.stop()
        def after_trial(self, *args):
            pass

    sampler = Grid(grid, seed=0)
    study, out = _run(space, 10, sampler=sampler, settings=SETTINGS.replace(width=0.25))
    assert sorted(f.params["variant"] for f, _ in out) == sorted(VARIANTS)
    for frozen, _ in out:
        v = frozen.params["variant"]
        stages = frozen.user_attrs[record.STAGES]
        if v.startswith("se_gc"):
            for st in stages:
                assert st["kind"] == "se_gc" and st["channels"] % st["groups"] == 0
            if v == "se_gc2":  # C/16 groups
                assert [st["groups"] for st in stages] == [st["channels"] // 16 for st in stages]
        elif v in ("eca", "eca_ns"):
            assert [st["k"] for st in stages] == [3] * 4
        elif v == "vanilla":
            assert {st["kind"] for st in stages} == {"none"}


def test_user_space_from_a_file(tmp_path):
    f = tmp_path / "my_space.py"
    f.write_text(
        "from search_spaces import Budget, make_config\n"
        "from study.config import AttentionSpec\n"
        "def define(trial, *, backbone, width=None, **settings):\n"
        "    '''ECA with one k everywhere.'''\n"
        "    k = trial.suggest_categorical('k', [3, 5])\n"
        "    return make_config([AttentionSpec.of('eca', k=k)] * 4, backbone=backbone, width=width or 0.25, **settings)\n"
        "define.budget = Budget(trials=2, epochs=1)\n"
    )
    space = get_space(f"{f}:define")
    assert space.info.description == "ECA with one k everywhere." and space.info.budget == Budget(trials=2, epochs=1)
    study, out = _run(space, 2)
    assert all(f_.user_attrs[record.STAGES][0]["k"] == f_.params["k"] for f_, _ in out)
    with pytest.raises(ValueError, match="has no function 'nope'"):
        get_space(f"{f}:nope")
    with pytest.raises(ValueError, match="no such file"):
        get_space(f"{tmp_path / 'absent.py'}:define")
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ValueError, match="cannot import.*boom"):
        get_space(f"{broken}:define")


def test_a_space_written_either_way_gets_the_same_settings(tmp_path):
    """A space written the new way takes the context; one written the old way (keywords,
    make_config) keeps working through the one adapter, and a misspelt key is an error."""
    f = tmp_path / "both.py"
    f.write_text(
        "from search_spaces import make_config\n"
        "from study.config import AttentionSpec\n"
        "def new(trial, ctx):\n"
        "    return ctx.config([AttentionSpec.of('se', r=trial.suggest_categorical('r', [4, 8]))] * 4, width=0.25)\n"
        "def old(trial, *, backbone, width=None, **settings):\n"
        "    r = trial.suggest_categorical('r', [4, 8])\n"
        "    return make_config([AttentionSpec.of('se', r=r)] * 4, backbone=backbone, width=0.25, **settings)\n"
        "def misspelt(trial, *, backbone, width=None, **settings):\n"
        "    return make_config([AttentionSpec('none')] * 4, backbone=backbone, width=0.25, widht=0.5, **settings)\n"
    )
    configs = []
    for fn in ("new", "old"):
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        configs.append(get_space(f"{f}:{fn}").suggest(study.ask(), SETTINGS))
    assert configs[0] == configs[1] and configs[0].seed == 3 and configs[0].proxy.num_classes == 10
    with pytest.raises(TypeError, match="widht"):
        get_space(f"{f}:misspelt").suggest(optuna.create_study().ask(), SETTINGS)


def test_a_user_file_is_imported_once(tmp_path, monkeypatch):
    from search_spaces import _registry

    monkeypatch.setattr(_registry, "_SPACES", _registry._SPACES.copy())  # the registration is undone after
    # study.run resolves a user space several times (e.g. --space FILE:fn --resume); a file
    # that registers a space (or does anything once) must not be executed again
    f = tmp_path / "registering.py"
    f.write_text(
        "from search_spaces import Budget, make_config, register_space\n"
        "from study.config import AttentionSpec\n"
        "@register_space('user_registered_once', description='x', budget=Budget(trials=1, epochs=1))\n"
        "def define(trial, *, backbone, width=None, **settings):\n"
        "    return make_config([AttentionSpec('none')] * 4, backbone=backbone, width=0.25, **settings)\n"
    )
    first = get_space(f"{f}:define")
    second = get_space(f"{f}:define")
    assert first.define is second.define


def test_a_space_returning_no_trial_config_is_an_error(tmp_path):
    f = tmp_path / "bad.py"
    f.write_text("def define(trial, **kw):\n    return {'arch': 1}\n")
    study = optuna.create_study()
    with pytest.raises(TypeError, match="must return a TrialConfig"):
        get_space(f"{f}:define").suggest(study.ask(), SETTINGS)


def test_invalid_settings_fail_in_the_space():
    space = get_space("se_ratio")
    study = optuna.create_study()
    with pytest.raises(ConfigError, match="width"):
        space.suggest(study.ask(), SETTINGS.replace(width=4.0))
    with pytest.raises(ValueError, match="backbone"):
        space.suggest(study.ask(), SETTINGS.replace(backbone="resnet7"))


def test_public_api():
    assert set(search_spaces.__all__) >= {"register_space", "get_space", "list_spaces", "SpaceInfo", "Budget", "Space"}


def test_kmap_confirm_arms_resolve_per_width_and_its_missing_source():
    space = get_space("kmap_confirm")
    settings = SETTINGS.replace(**EXTRA["kmap_confirm"])
    assert space.info.default_design == "confirm"
    study = optuna.create_study()
    for arm in EXTRA["kmap_confirm"]["options"]["arms"]:
        for w in (0.25, 1.0):
            study.enqueue_trial({"arm": arm, "width": w})
    got = {}
    for _ in range(10):
        trial = study.ask()
        config = space.suggest(trial, settings)
        study.tell(trial, 0.0)
        got[(trial.params["arm"], trial.params["width"])] = (trial.user_attrs[record.STAGES], config)
    for w in (0.25, 1.0):
        stages = {arm: got[(arm, w)][0] for arm in EXTRA["kmap_confirm"]["options"]["arms"]}
        assert [s["k"] for s in stages["fitted_psi"]] == [psi(s["channels"], 1.5, 0.5) for s in stages["fitted_psi"]]
        assert [s["k"] for s in stages["paper_psi"]] == [psi(s["channels"], 2, 1) for s in stages["paper_psi"]]
        assert [s["k"] for s in stages["released"]] == list(released_k("resnet18")) and {s["kind"] for s in stages["none"]} == {"none"}
        # k* per C: its own k where it names the C, the paper's psi elsewhere
        assert [s["k"] for s in stages["kstar"]] == [7 if s["channels"] == 64 else psi(s["channels"], 2, 1) for s in stages["kstar"]]
    assert {c.arch.width for _, c in got.values()} == {0.25, 1.0}
    with pytest.raises(ValueError, match="kmap_confirm needs the arms to compare"):
        _run(space, 1, settings=SETTINGS.replace(design="confirm"))


def test_identical_and_shared_arms_are_found():
    from search_spaces import default_arms, identical_arms

    arms = {**default_arms("resnet18"), "fitted_psi": {"psi": {"gamma": 100.0, "b": 300.0}}}  # psi gives 3 at every C: as k3
    identical, same_as = identical_arms(arms, "resnet18", "lowres", (0.25, 0.5, 1.0))
    assert identical == ["timm_rule"]  # psi >= 3 at every C of these widths: the paper's own networks
    assert same_as == {"fitted_psi": "k3"}
