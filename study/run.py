"""``python -m study.run``: run a named search space as an Optuna study, on Ray Tune or locally.

The documented entry point of studies. The command line lives with what it drives, in
:mod:`runners.cli` (flags, settings, output); this module only hands ``argv`` to it, so the
core package :mod:`study` imports nothing above it but here.

    python -m study.run --space eca_kmap
    python -m study.run --list-spaces
"""

from __future__ import annotations

from collections.abc import Sequence

from study.cli import run_cli

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the study command line (:func:`runners.cli.main`) on ``argv``."""
    from runners.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    run_cli(main, prog="python -m study.run")
