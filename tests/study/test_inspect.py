"""python -m study.inspect: tables in SI or the ECA paper's units, JSON, configs, errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from study.attention import list_attention
from study.cli import run_cli
from study.config import ArchSpec, AttentionSpec, TrialConfig
from study.inspect import inspect_arch, main, parse_attention


def _run(argv, capsys):
    assert main(argv) == 0
    return capsys.readouterr().out


def _params_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("params"))


@pytest.mark.parametrize(
    "argv,figure",
    [
        (["--attention", "none"], "24.37"),  # ResNet-50
        (["--released-k"], "24.37"),  # ECA-Net50 (k = 3, 5, 5, 7)
        (["--attention", "se:r=16,bias=false"], "26.77"),  # SE-ResNet-50, bias-free
        (["--backbone", "mobilenetv2", "--attention", "none"], "3.34"),  # MobileNetV2
    ],
)
def test_units_paper_reproduce_the_eca_papers_table(argv, figure, capsys):
    out = _run([*argv, "--units", "paper", "--res", "32"], capsys)
    assert re.search(rf"= {re.escape(figure)} M", _params_line(out)), out


def test_si_units_are_the_default(capsys):
    out = _run(["--attention", "none", "--res", "32"], capsys)
    assert "25,557,032" in _params_line(out) and "= 25.56 M" in _params_line(out)


def test_json_report(capsys):
    report = json.loads(_run(["--backbone", "resnet18", "--attention", "eca:gamma=2,b=1", "--stage", "1=se:r=8", "--stage", "3=eca:k=9",
                              "--res", "32", "--json"], capsys))
    stages = report["stages"]
    assert [s["kind"] for s in stages] == ["eca", "se", "eca", "eca"]
    assert [s.get("k") for s in stages] == [3, None, 5, 9]  # psi(64)=3, psi(256)=5, explicit 9
    assert stages[1]["attention_params"] == 2 * (2 * 128 * 16 + 16 + 128)
    assert stages[3]["attention_params"] == 2 * 9
    costs = report["costs"]
    assert costs["attention_params"] == sum(s["attention_params"] for s in stages)
    assert costs["params"] - report["baseline_params"] == costs["attention_params"]
    assert costs["resolution"] == report["resolution"] == 32 and costs["latency_ms"] is None
    assert report["arch"]["stages"][3] == {"kind": "eca", "k": 9}


def test_config_file_trial_or_bare_arch(tmp_path, capsys):
    arch = ArchSpec(backbone="resnet18", stem="lowres", width=0.5, num_classes=100, stages=(AttentionSpec.of("eca", k=5),) * 4)
    trial = tmp_path / "trial.json"
    trial.write_text(TrialConfig(arch=arch).to_json())
    bare = tmp_path / "arch.json"
    bare.write_text(json.dumps(arch.to_dict()))
    a = json.loads(_run(["--config", str(trial), "--json", "--res", "32"], capsys))
    b = json.loads(_run(["--config", str(bare), "--json", "--res", "32"], capsys))
    assert a == b and a["arch"] == arch.to_dict()
    c = json.loads(_run(["--config", str(bare), "--stage", "0=none", "--json", "--res", "32"], capsys))
    assert c["stages"][0]["kind"] == "none" and c["costs"]["params"] == a["costs"]["params"] - 2 * 5


def test_latency_and_table_layout(capsys):
    out = _run(["--backbone", "resnet18", "--stem", "lowres", "--width", "0.25", "--num-classes", "10", "--res", "16", "--latency"], capsys)
    lines = out.splitlines()
    assert lines[0].startswith("resnet18  stem=lowres  width=0.25  num_classes=10")
    assert lines[1].split() == ["stage", "C", "planes", "blocks", "attention", "parameters", "attn", "params"]
    assert re.match(r"\s*0\s+16\s+16\s+2\s+eca\s+k=3 \(psi: gamma=2, b=1, rule=paper\)\s+6$", lines[2])
    assert re.search(r"^latency\s+\d+\.\d+ ms", out, re.M) and re.search(r"^MACs@224", out, re.M)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--attention", "eca:k=4"], "stages[0]: attention 'eca': k must be an odd integer >= 1, got 4"),
        (["--attention", "eca:k"], "parameter 'k' is not NAME=VALUE"),
        (["--attention", "foo"], "unknown attention kind 'foo' (valid kinds: a2, bam, cbam,"),
        (["--attention", "se:channels=8"], "attention 'se': unknown parameter 'channels'"),
        (["--attention", "eca:kind=se"], "parameter 'kind' is not allowed"),
        (["--stage", "4=none"], "backbone 'resnet50' has stages 0..3"),
        (["--stage", "x=none"], "expected INDEX=ATTENTION"),
        (["--backbone", "vgg"], "argument --backbone: invalid choice"),
        (["--width", "3"], "width: must be in [0.25, 2.0], got 3.0"),
        (["--res", "2"], "--res: must be in [8, 4096]"),
        (["--latency", "--device", "tpu9", "--attention", "none", "--res", "16"], "device: expected e.g. 'cpu' or 'cuda', got 'tpu9'"),
        (["--config", "missing.json"], "missing.json: cannot read config"),
        (["--config", "x.json", "--backbone", "resnet18"], "--backbone cannot be combined with --config"),
        (["--released-k", "--attention", "se"], "--released-k cannot be combined with --attention"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, monkeypatch):
    monkeypatch.delenv("STUDY_DEBUG", raising=False)
    with pytest.raises(SystemExit) as info:
        run_cli(main, argv, prog="python -m study.inspect")
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("python -m study.inspect: error: ") and message in captured.err


def test_bad_json_config(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SystemExit):
        run_cli(main, ["--config", str(bad)], prog="inspect")
    assert "bad.json: not valid JSON" in capsys.readouterr().err


def test_parse_attention():
    assert parse_attention("eca:gamma=2,b=1,rule=timm") == AttentionSpec.of("eca", gamma=2, b=1, rule="timm")
    assert parse_attention("se:r=8,bias=false") == AttentionSpec.of("se", r=8, bias=False)
    assert parse_attention("none") == AttentionSpec("none")


def test_module_entry_point_default_is_eca_resnet50_at_224():
    proc = subprocess.run([sys.executable, "-m", "study.inspect"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "resnet50" in proc.stdout and "resolution=224 px" in proc.stdout
    ks = re.findall(r"eca\s+k=(\d+) \(psi: gamma=2, b=1", proc.stdout)
    assert ks == ["5", "5", "5", "7"]
    assert "25,557,118" in proc.stdout and "4,089,272,064" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "study.inspect", "--attention", "eca:k=2"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and bad.stderr.count("\n") == 1


@pytest.mark.parametrize("kind", list_attention())
def test_every_kind_is_inspected_per_stage_at_the_proxys_resolution(kind):
    """Registry-driven: every kind, its defaults fitted to the 32 px maps, parameter-free ones included."""
    report = inspect_arch(ArchSpec.uniform("resnet18", kind, stem="lowres", width=0.25, num_classes=10), 32)
    stages, costs = report["stages"], report["costs"]
    assert [s["kind"] for s in stages] == [kind] * 4
    assert sum(s["attention_params"] for s in stages) == costs["attention_params"] == costs["params"] - report["baseline_params"]
    assert report["attention_macs"] >= 0 and costs["macs_224"] > 0
