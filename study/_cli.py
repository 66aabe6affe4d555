"""What every command-line entry point shares: an argument parser whose errors are one
line, and a runner that turns expected errors into one line on stderr and a non-zero exit.

Set ``STUDY_DEBUG=1`` to see the full traceback instead.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Callable, Mapping, NoReturn, Sequence

__all__ = ["UsageError", "ArgumentParser", "run_cli", "in_flags", "EXIT_USAGE"]

EXIT_USAGE = 2


class UsageError(Exception):
    """A user's input is wrong; the message is shown as one line, exit status 2."""


_LEADING = re.compile(r"^([A-Za-z_][\w.]*)(?=[: ])")
_QUOTED = re.compile(r"`([A-Za-z_][\w.]*)(=[^`]*)?`")


def in_flags(message: str, flags: Mapping[str, str]) -> str:
    """A library's error message in a command line's words.

    Library code names parameters, not flags: its messages start with the parameter
    (``"trials: must be ..."``, ``"root /data: no such folder"``, dotted for options:
    ``"pruner_options.warmup: ..."``) and mention other parameters in backticks
    (``"pass `force` to replace it"``). ``flags`` maps parameter names to the flags that set
    them; the leading name and every backticked one that it maps become the flag, and the
    other backticks are dropped.
    """
    text = _QUOTED.sub(lambda m: flags.get(m.group(1), m.group(1) + (m.group(2) or "")), message)
    lead = _LEADING.match(text)
    if lead and lead.group(1) in flags:
        text = flags[lead.group(1)] + text[lead.end():]
    return text


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
