"""What every command-line entry point shares: an argument parser whose errors are one
line, and a runner that turns input errors into one line on stderr and exit 2, and shows
any other error (a bug) with its traceback, exit 1.

Set ``STUDY_DEBUG=1`` to see the full traceback of an input error too.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

from study.validate import ConfigError

__all__ = ["UsageError", "ArgumentParser", "run_cli", "flag_names", "flag_error", "as_usage_error", "EXIT_USAGE", "EXIT_BUG",
           "EXIT_FAILED", "EXIT_NOTHING_FINISHED", "EXIT_INTERRUPTED"]

#: exit status of an internal error (a bug): its traceback is shown
EXIT_BUG = 1
#: exit status of bad input: one line, nothing created or changed
EXIT_USAGE = 2
#: exit status of a command that ran but whose work failed: a study stopped by its failed
#: trials (the max-failures rule), a training that failed or diverged, a ``--batch`` with such a run
EXIT_FAILED = 3
#: exit status of a study run that ended with no finished trial (complete or pruned) in the study
EXIT_NOTHING_FINISHED = 4
#: exit status of a command stopped by Ctrl-C (SIGINT), as the shell's 128 + 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A user's input is wrong; the message is shown as one line, exit status 2."""


def _options_by_dest(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each option's destination -> its longest option string, subcommands' options included."""
    out: dict[str, str] = {}
    for action in parser._actions:  # argparse keeps its actions there; it has no public listing
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out.update({k: v for k, v in _options_by_dest(sub).items() if k not in out})
        elif action.option_strings:
            out.setdefault(action.dest, max(action.option_strings, key=len))
    return out


def flag_names(parser: argparse.ArgumentParser | None, exceptions: Mapping[str, str] | None = None) -> Callable[[str], str]:
    """How a command line says a config field path: by rule, the option of ``parser`` whose
    destination is the path (``max_concurrent`` -> ``--max-concurrent``); ``exceptions`` maps
    a path (``run_dir`` -> ``--out``) or a path prefix ending in "." (``recipe.`` ->
    ``--set recipe.``) to its words where the rule does not hold (or, without a parser, to
    its words); a path neither knows is said as itself."""
    by_dest = _options_by_dest(parser) if parser is not None else {}
    table = dict(exceptions or {})

    def say(path: str) -> str:
        if path in table:
            return table[path]
        head, dot, rest = path.partition(".")
        if dot and f"{head}." in table:
            return table[f"{head}."] + rest
        return by_dest.get(path, path)

    return say


def flag_error(exc: ConfigError, parser: argparse.ArgumentParser | None, exceptions: Mapping[str, str] | None = None) -> UsageError:
    """A config error (its field path, as data) in a command line's words, as the one-line
    :class:`UsageError`: the path said as the flag that sets it (:func:`flag_names`)."""
    return UsageError(" ".join(exc.text(flag_names(parser, exceptions)).split()))


def as_usage_error(exc: BaseException, parser: argparse.ArgumentParser | None = None,
                   exceptions: Mapping[str, str] | None = None) -> UsageError:
    """A library's error about the user's input as the command line's one-line
    :class:`UsageError`: a :class:`~study.validate.ConfigError` with its field said as a flag
    of ``parser`` or as ``exceptions`` say it (:func:`flag_error`), any other error as its
    text. A CLI applies it where it hands the user's input to the library, so that other
    errors stay bugs."""
    if isinstance(exc, ConfigError) and (parser is not None or exceptions):
        return flag_error(exc, parser, exceptions)
    return UsageError(" ".join(str(exc).split()))


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line: ``prog: error: ... (see --help)``."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _input_error(exc: BaseException) -> bool:
    """Whether ``exc`` says the user's input is wrong (shown as one line, exit 2) rather
    than that the program has a bug: a :class:`UsageError`, a config that does not validate
    (:class:`study.validate.ConfigError`) or a file the user named that is not there."""
    return isinstance(exc, (UsageError, FileNotFoundError, ConfigError))


#: the line after an internal error's traceback
BUG_HINT = "this is a bug, not bad input: please report it with the traceback above"


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None, *, prog: str | None = None) -> NoReturn:
    """Run ``main(argv)`` and exit with its status; input errors become one line on stderr.

    Input errors (exit 2, no traceback): :class:`UsageError`, :class:`study.validate.ConfigError`
    and ``FileNotFoundError``; a CLI turns any other error that bad input causes into a
    :class:`UsageError` where it calls the library. ``KeyboardInterrupt`` exits 130. Anything
    else is a bug: its traceback, then one line saying so, exit 1.
    """
    name = prog or os.path.basename(sys.argv[0] or "study")
    try:
        code = main(argv)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
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
