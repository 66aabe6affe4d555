"""``python -m analysis.kmap``: the k-vs-C answer of a study (see :mod:`analysis.kmap`)."""

from analysis.kmap._cli import main
from study.cli import run_cli

run_cli(main, prog="python -m analysis.kmap")
