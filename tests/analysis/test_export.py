"""analysis.export: full-training configs that load and build the trial's architecture."""

from __future__ import annotations

import json

import pytest

import analysis
from analysis._export import RECIPES
from analysis._export import main as export_main
from study.cli import run_cli
from study.config import ArchSpec, AttentionSpec, load_config
from study.costs import count_params
from study.models import build_model

ARCHS = [
    ArchSpec(backbone="resnet18", stem="lowres", width=0.25, num_classes=10,
             stages=tuple(AttentionSpec.of("eca", k=k) for k in (1, 3, 5, 7))),
    ArchSpec(backbone="resnet18", stem="lowres", width=0.25, num_classes=10,
             stages=(AttentionSpec.of("eca", gamma=3, b=2),) * 4),
    ArchSpec(backbone="resnet18", stem="lowres", width=0.25, num_classes=10,
             stages=(AttentionSpec.of("se", r=8), AttentionSpec("none"), AttentionSpec.of("eca", k=3), AttentionSpec.of("se", r=4))),
    ArchSpec(backbone="resnet18", stem="lowres", width=0.5, num_classes=10, stages=(AttentionSpec("none"),) * 4),
]


@pytest.fixture(scope="module")
def real_run(make_real_study):
    return make_real_study(ARCHS)


def test_export_round_trip_keeps_the_architecture(real_run, tmp_path):
    fr = analysis.load(real_run)
    out = tmp_path / "keep"
    index = analysis.export_trials(fr, out, top=4, keep_stem=True, num_classes=10)
    assert [e["rank"] for e in index] == [1, 2, 3, 4]
    assert [e["proxy_top1"] for e in index] == pytest.approx(sorted(fr.complete["top1"], reverse=True))
    rows = fr.trials.set_index("number")
    recorded = {t.number: t.user_attrs["stages"] for t in fr.study.get_trials()}
    for e in index:
        cfg = load_config(out / e["file"])
        trial = rows.loc[e["trial"]]
        assert cfg.arch.stages == ArchSpec.from_dict(trial["config"]["arch"]).stages
        model = build_model(cfg.arch)
        assert count_params(model) == trial["params"]  # same architecture, same parameter count
        assert [s.to_dict() for s in model.stage_info] == recorded[e["trial"]]  # same resolved k per stage
        assert e["proxy_top1"] == pytest.approx(trial["top1"])


def test_export_full_training_defaults(real_run, tmp_path, capsys):
    fr = analysis.load(real_run)
    with pytest.raises(SystemExit) as exc:
        run_cli(export_main, [str(real_run), "--pareto", "--out", str(tmp_path / "p"), "--recipe", "eca-imagenet"],
                prog="python -m analysis.export")
    assert exc.value.code == 0
    assert "wrote" in capsys.readouterr().out
    index = json.loads((tmp_path / "p" / "index.json").read_text())
    front = analysis.pareto_front(fr, cost="params")
    assert sorted(e["trial"] for e in index) == sorted(front["number"])
    assert (tmp_path / "p" / "index.csv").read_text().count("\n") == len(index) + 1
    for e in index:
        cfg = load_config(tmp_path / "p" / e["file"])
        assert e["selected_by"] == "pareto:params" and e["command"].startswith("python -m study.train --config ")
        r = cfg.recipe
        expected = (100, 256, 0.1, 1e-4, "step", 30, 0.1)
        assert (r.epochs, r.batch_size, r.lr, r.weight_decay, r.schedule, r.step_every, r.step_factor) == expected
        assert r == RECIPES["eca-imagenet"]
        assert cfg.arch.stem == "imagenet" and cfg.arch.num_classes == 100 and cfg.proxy.resolution == 224
        assert cfg.proxy.source == "cache" and cfg.proxy.images_per_class is None
        # the trial's architecture, at the full-training stem and class count
        trial = fr.trials.set_index("number").loc[e["trial"]]
        arch = ArchSpec.from_dict({**trial["config"]["arch"], "stem": "imagenet", "num_classes": 100})
        assert count_params(build_model(cfg.arch)) == count_params(build_model(arch))
        assert [s.k for s in build_model(cfg.arch).stage_info] == [s.k for s in build_model(trial["config"]["arch"]).stage_info]
    cos = analysis.full_training_config(fr.complete.iloc[0]["config"], recipe="in100-cosine")
    assert cos.recipe.schedule == "cosine" and cos.recipe.epochs == 120 and cos.recipe.label_smoothing == 0.1


def test_export_errors(real_run, tmp_path, capsys):
    for args, msg in (([str(tmp_path / "missing"), "--top", "2"], "does not exist"),
                      ([str(real_run)], "one of the arguments --top --pareto is required"),
                      ([str(real_run), "--top", "0"], "--top: must be >= 1"),
                      ([str(real_run), "--top", "1", "--recipe", "x"], "invalid choice"),
                      (["--storage", f"sqlite:///{real_run / 'study.db'}", "--study", "nope", "--top", "1"], "no study named 'nope'")):
        with pytest.raises(SystemExit) as exc:
            run_cli(export_main, args, prog="python -m analysis.export")
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("python -m analysis.export: error:") and msg in err[0], err
