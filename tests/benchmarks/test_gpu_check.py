"""benchmarks/gpu_check.py: the CPU rehearsal of the GPU paths, at the smallest sizes; a
failing path is one line and the others still run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("gpu_check", None)


def _lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(("ok    ", "FAIL  "))]


def test_the_quick_cpu_rehearsal_prints_a_line_per_path_with_its_figure(gpu_check, capsys):
    assert gpu_check.main(["--cpu", "--quick", "--only", "trainer,attention,loader"]) == 0
    out = capsys.readouterr().out
    lines = _lines(out)
    names = ["trainer resnet18 16px", "trainer resnet50 16px", "attention resnet18 16px", "loader device 16px", "loader host 16px"]
    assert [line[6:].split("  ")[0] for line in lines] == names, out
    assert all(line.startswith("ok    ") for line in lines), out
    for line in lines[:2]:
        assert "trainer " in line and " img/s, bare loop " in line and "ratio " in line and "bf16 autocast, channels_last" in line
    assert "none " in lines[2] and "se " in lines[2] and "eca " in lines[2] and " ms (x" in lines[2]
    assert "batches/s" in lines[3] and "staging buffers" not in lines[3]
    assert "streamed through 2 staging buffers" in lines[4] and "batches identical to the device placement's" in lines[4]
    assert out.splitlines()[0].startswith("gpu_check on CPU")
    assert "gpu_check: 5 lines, 0 failed" in out.splitlines()[-1]


def test_a_failing_path_is_one_line_and_the_next_paths_run(gpu_check, capsys, monkeypatch):
    def broken(self, backbone, res):
        raise RuntimeError(f"no kernel for {backbone}\nat {res} px")

    monkeypatch.setattr(gpu_check.Check, "_attention_steps", broken)
    assert gpu_check.main(["--cpu", "--quick", "--only", "attention,loader"]) == 1
    out = capsys.readouterr().out
    lines = _lines(out)
    assert lines[0] == "FAIL  attention resnet18 16px: RuntimeError: no kernel for resnet18 at 16 px"
    assert [line[:6] for line in lines[1:]] == ["ok    ", "ok    "]
    assert out.splitlines()[-1].startswith("gpu_check: 3 lines, 1 failed (attention resnet18 16px)")


def test_host_streamed_batches_that_differ_from_the_device_placement_fail_the_loader_path(gpu_check, monkeypatch):
    from study.data import DeviceLoader

    stage = DeviceLoader._stage

    def corrupted(self, *args):
        x, done = stage(self, *args)
        x[0, 0, 0, 0] ^= 1  # one bit of one pixel
        return x, done

    monkeypatch.setattr(DeviceLoader, "_stage", corrupted)
    check = gpu_check.Check(torch.device("cpu"), gpu_check.QUICK, None)
    with pytest.raises(RuntimeError, match=r"batch 0 streamed from host memory differs from the device placement's"):
        gpu_check._same_batches(check.data(16), torch.device("cpu"), 8)


@pytest.mark.parametrize("argv,message", [(["--cpu", "--only", "trainer,gpu"],
                                           "--only: unknown path 'gpu' (valid: trainer, attention, loader, compile, ray)"),
                                          (["--cpu", "--threads", "0"], "--threads: must be >= 1, got 0")])
def test_bad_input_is_one_line_and_exit_2(gpu_check, capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        gpu_check.main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.strip().splitlines()[-1].endswith(f"error: {message}"), err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_it_points_to_the_cpu_rehearsal(gpu_check, capsys):
    with pytest.raises(SystemExit) as info:
        gpu_check.main(["--only", "trainer"])
    assert info.value.code == 2
    assert "no CUDA device here: run on a GPU machine, or with --cpu to rehearse the same paths on the CPU" in capsys.readouterr().err


@pytest.mark.slow
def test_the_quick_cpu_rehearsal_of_torch_compile_and_ddp_on_gloo(gpu_check, capsys, ray_cluster, quick_ray_train):
    """(slow: torch.compile builds C++ kernels for about a minute; Ray Train starts two workers)"""
    assert gpu_check.main(["--cpu", "--quick", "--only", "compile,ray", "--address", ray_cluster.address]) == 0
    lines = _lines(capsys.readouterr().out)
    assert lines[0].startswith("ok    compile resnet18 16px  eager ") and "speed-up" in lines[0]
    assert lines[1].startswith("ok    ray-train 2 workers gloo  ") and "2 ranks, identical weights" in lines[1] and "gloo" in lines[1]
