"""study._cli: expected errors become one line on stderr and exit 2."""

import pytest

from study._cli import ArgumentParser, UsageError, run_cli
from study.config import ConfigError


def _main_raising(exc):
    def main(argv):
        raise exc

    return main


@pytest.mark.parametrize("exc", [ConfigError("width: must be in [0.25, 2.0]"), FileNotFoundError("no such file: x"), UsageError("bad\nflag")])
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
