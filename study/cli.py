"""What every command-line entry point shares: an argument parser whose errors are one
line, and a runner that turns input errors into one line on stderr and exit 2, and shows
any other error (a bug) with its traceback, exit 1.

Set ``STUDY_DEBUG=1`` to see the full traceback of an input error too.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

__all__ = ["UsageError", "ArgumentParser", "run_cli", "in_flags", "as_usage_error", "EXIT_USAGE", "EXIT_BUG"]

#: exit status of bad input
EXIT_USAGE = 2
#: exit status of an internal error (a bug)
EXIT_BUG = 1


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


def as_usage_error(exc: BaseException, flags: Mapping[str, str] | None = None) -> UsageError:
    """A library's error about the user's input (a ``ValueError`` from validating it, say)
    as the command line's one-line :class:`UsageError`, its parameter names said as the
    ``flags`` that set them (:func:`in_flags`). A CLI applies it where it hands the user's
    input to the library, so that other errors stay bugs."""
    return UsageError(in_flags(" ".join(str(exc).split()), flags or {}))


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line: ``prog: error: ... (see --help)``."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _input_error(exc: BaseException) -> bool:
    """Whether ``exc`` says the user's input is wrong (shown as one line, exit 2) rather
    than that the program has a bug: a :class:`UsageError`, a config that does not validate
    (:class:`study.config.ConfigError`) or a file the user named that is not there."""
    if isinstance(exc, (UsageError, FileNotFoundError)):
        return True
    from study.config import ConfigError

    return isinstance(exc, ConfigError)


#: the line after an internal error's traceback
BUG_HINT = "this is a bug, not bad input: please report it with the traceback above"


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None, *, prog: str | None = None) -> NoReturn:
    """Run ``main(argv)`` and exit with its status; input errors become one line on stderr.

    Input errors (exit 2, no traceback): :class:`UsageError`, :class:`study.config.ConfigError`
    and ``FileNotFoundError``; a CLI turns any other error that bad input causes into a
    :class:`UsageError` where it calls the library. ``KeyboardInterrupt`` exits 130. Anything
    else is a bug: its traceback, then one line saying so, exit 1.
    """
    name = prog or os.path.basename(sys.argv[0] or "study")
    try:
        code = main(argv)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        if not _input_error(exc):
            traceback.print_exc()
            print(f"{name}: internal error ({type(exc).__name__}): {BUG_HINT}", file=sys.stderr)
            sys.exit(EXIT_BUG)
        if os.environ.get("STUDY_DEBUG"):
            raise
        text = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{name}: error: {text}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    sys.exit(int(code or 0))
