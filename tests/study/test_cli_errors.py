"""study.cli: expected errors become one line on stderr and exit 2."""

import pytest

from study.cli import BUG_HINT, ArgumentParser, UsageError, run_cli
from study.config import ConfigError


def _main_raising(exc):
    def main(argv):
        raise exc

    return main


@pytest.mark.parametrize("exc", [ConfigError("width: must be in [0.25, 2.0]"), FileNotFoundError("no such file: x"),
                                 UsageError("bad\nflag")])
def test_expected_errors_are_one_line_and_exit_2(exc, capsys, monkeypatch):
    monkeypatch.delenv("STUDY_DEBUG", raising=False)
    with pytest.raises(SystemExit) as info:
        run_cli(_main_raising(exc), [], prog="prog")
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("prog: error: ")
    assert "Traceback" not in err


def test_parser_errors_are_usage_errors():
    parser = ArgumentParser(prog="prog")
    parser.add_argument("--n", type=int)
    with pytest.raises(UsageError, match="--n"):
        parser.parse_args(["--n", "x"])


def test_exit_status_of_main_is_returned():
    with pytest.raises(SystemExit) as info:
        run_cli(lambda argv: 3, [])
    assert info.value.code == 3


@pytest.mark.parametrize("exc", [RuntimeError("boom"), ValueError("an internal invariant"), OSError("disk full"), KeyError("x")])
def test_other_errors_are_bugs_with_a_traceback_and_exit_1(exc, capsys, monkeypatch):
    monkeypatch.delenv("STUDY_DEBUG", raising=False)
    with pytest.raises(SystemExit) as info:
        run_cli(_main_raising(exc), [], prog="prog")
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and type(exc).__name__ in err
    assert err.splitlines()[-1] == f"prog: internal error ({type(exc).__name__}): {BUG_HINT}"


def test_an_internal_error_deep_inside_a_cli_is_not_bad_input(capsys, monkeypatch):
    """A plain ValueError raised far below the command line (here: where study.inspect
    measures the costs) is a bug: its traceback and exit 1, not a one-line usage error."""
    import study.costs
    from study.inspect import main

    def broken(*args, **kwargs):
        raise ValueError("an internal invariant does not hold")

    monkeypatch.delenv("STUDY_DEBUG", raising=False)
    monkeypatch.setattr(study.costs, "count_params", broken)
    with pytest.raises(SystemExit) as info:
        run_cli(main, ["--backbone", "resnet18", "--attention", "none", "--res", "16"], prog="python -m study.inspect")
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last):" in err and "in broken" in err and "an internal invariant does not hold" in err
    assert err.splitlines()[-1].startswith("python -m study.inspect: internal error (ValueError): this is a bug")


def test_an_internal_error_inside_the_study_cli_is_not_bad_input(tmp_path, capsys, monkeypatch):
    """The study command line: an error from below that no flag caused shows its traceback."""
    import runners._run
    from study.run import main

    def broken(*args, **kwargs):
        raise RuntimeError("the dry run broke")

    monkeypatch.delenv("STUDY_DEBUG", raising=False)
    monkeypatch.setattr(runners._run, "dry_run", broken)
    with pytest.raises(SystemExit) as info:
        run_cli(main, ["--space", "eca_kmap", "--runner", "local", "--out", str(tmp_path)], prog="python -m study.run")
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last):" in err and "the dry run broke" in err
    assert err.splitlines()[-1].startswith("python -m study.run: internal error (RuntimeError)")
