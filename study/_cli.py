"""What every command-line entry point shares: an argument parser whose errors are one
line, and a runner that turns expected errors into one line on stderr and a non-zero exit.

Set ``STUDY_DEBUG=1`` to see the full traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, NoReturn, Sequence

__all__ = ["UsageError", "ArgumentParser", "run_cli", "EXIT_USAGE"]

EXIT_USAGE = 2


class UsageError(Exception):
    """A user's input is wrong; the message is shown as one line, exit status 2."""


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line: ``prog: error: ... (see --help)``."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None, *, prog: str | None = None) -> NoReturn:
    """Run ``main(argv)`` and exit with its status; expected errors become one line on stderr.

    Expected errors: :class:`UsageError`, ``ValueError`` (including
    :class:`study.config.ConfigError`), ``FileNotFoundError``/``PermissionError``/``OSError``
    and ``KeyboardInterrupt`` (exit 130).
    """
    name = prog or os.path.basename(sys.argv[0] or "study")
    try:
        code = main(argv)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        sys.exit(130)
    except (UsageError, ValueError, OSError) as exc:
        if os.environ.get("STUDY_DEBUG"):
            raise
        text = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{name}: error: {text}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    sys.exit(int(code or 0))
