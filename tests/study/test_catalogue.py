"""study.catalogue: the facts the layers share without torch - every attention kind's
declaration read from its module's source, psi and the released k, the backbones' plans."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from study import catalogue
from study.attention import get_attention, list_attention
from study.catalogue import AttentionKind, Param
from study.catalogue._kinds import _read

ROOT = Path(__file__).resolve().parents[2]


def test_the_catalogue_knows_every_kind_without_torch():
    code = ("import json, sys\nfrom study import catalogue\n"
            "print(json.dumps([catalogue.kind_names(), list(catalogue.psi_kinds()), list(catalogue.searched_kinds()),"
            " catalogue.num_stages('mobilenetv2'), catalogue.psi(512), 'torch' in sys.modules]))\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    names, psi_kinds, searched, stages, k, torch_loaded = json.loads(res.stdout.strip().splitlines()[-1])
    assert not torch_loaded
    assert names == list_attention() and stages == 7 and k == 5
    assert {"eca", "eca_ns"} <= set(psi_kinds) == {n for n in names if get_attention(n).USES_PSI}
    assert not {"se_var1", "se_gc"} & set(searched) and {"none", "se", "eca", "bam", "gsop"} <= set(searched)


@pytest.mark.parametrize("kind", list_attention())
def test_each_kind_is_declared_once_in_its_module(kind):
    cls = get_attention(kind)
    declared = catalogue.get_kind(kind)
    assert cls.declaration == declared and cls.kind == kind  # the class's declaration is the one read from the source
    assert cls.__module__ in catalogue.kind_modules()
    assert dict(cls.PARAMS) == declared.defaults and cls.MAP_PARAMS == declared.map_params and cls.USES_PSI == declared.psi
    for name, param in declared.params.items():  # a limit and a search range a narrow stage can still take
        if param.choices and param.at_most:
            assert param.fitting(2, 2) and all(c <= max(1, param.limit(2, 2)) for c in param.fitting(2, 2)), name


def test_a_declaration_uses_literals_and_the_vocabulary_only(tmp_path):
    good = tmp_path / "good.py"
    good.write_text("import torch\nfrom study.catalogue import AttentionKind, Param, REDUCTIONS\n"
                    "X_KIND = AttentionKind('x', params={'r': Param(16, choices=REDUCTIONS, at_most='channels')}, paper='p')\n")
    (kind,) = _read(good)
    assert kind == AttentionKind("x", params={"r": Param(16, choices=(2, 4, 8, 16, 32), at_most="channels")}, paper="p")
    bad = tmp_path / "bad.py"
    bad.write_text("from study.catalogue import AttentionKind, Param\nR = (2, 4)\nX_KIND = AttentionKind('x', params={'r': Param(4, "
                   "choices=R)})\n")
    with pytest.raises(ImportError, match=r"bad.py:3: an attention kind's declaration may use literals and AttentionKind, Param"):
        list(_read(bad))


def test_declarations_are_checked():
    with pytest.raises(ValueError, match="at_most: must be one of channels"):
        Param(4, at_most="width")
    with pytest.raises(ValueError, match="choices or over a span, not both"):
        Param(4, choices=(1, 2), span=(0.0, 1.0))
    with pytest.raises(ValueError, match="mode 'fixed' must name searched parameters"):
        AttentionKind("x", params={"k": Param(3)}, modes={"fixed": ("k",)})
    with pytest.raises(ValueError, match="map_params must name parameters"):
        AttentionKind("x", map_params=("size",))
    with pytest.raises(ValueError, match=r"unknown attention kind 'sk' \(valid kinds: a2, bam,"):
        catalogue.get_kind("sk")
    r = Param(16, choices=(2, 4, 8, 16, 32), at_most="channels // 2")
    assert r.fitting(64) == (2, 4, 8, 16, 32) and r.fitting(8) == (2, 4) and r.fitting(3) == (1,)


def test_plans_psi_and_released_k():
    assert [p.channels for p in catalogue.stage_plans("resnet50")] == [256, 512, 1024, 2048]
    assert [p.channels for p in catalogue.stage_plans("mobilenetv2", 0.25)] == [8, 8, 8, 16, 24, 40, 80]
    assert catalogue.feature_maps("resnet50", "imagenet", 1.0, 224) == ((56, 56), (28, 28), (14, 14), (7, 7))
    assert catalogue.released_k("mobilenetv2") == (1, 1, 1, 1, 3, 3, 3) and catalogue.psi(64) == 3
    with pytest.raises(ValueError, match=r"unknown backbone 'vgg' \(valid backbones: mobilenetv2, resnet101"):
        catalogue.num_stages("vgg")
