"""The docs cannot drift from the code: every ``python -m ...`` command line in README.md and
docs/*.md parses with its CLI's real parser, every ``python benchmarks/X.py`` names a script
that exists, every link between the pages lands on a page and a heading, README.md stays a
front door (at most 200 lines, the two set-up commands first) whose Python example names
what the packages have, and docs/benchmarks.md is what benchmarks/docs_table.py generates
from the committed benchmarks/results/*.json."""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import shlex
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
#: ``python -m MODULE`` -> the module whose ``build_parser()`` is that command line's parser
PARSERS = {
    "study.run": "runners.cli",
    "study.train": "study.train",
    "study.inspect": "study.inspect",
    "study.data": "study.data.__main__",
    "analysis.report": "analysis.report",
    "analysis.export": "analysis.export",
    "analysis.kmap": "analysis.kmap",
}
#: packages of this repository: a ``python -m`` of one of them must be a CLI in PARSERS
OURS = ("study", "analysis", "runners", "search_spaces", "benchmarks")
SETUP = ("pip install torch==2.13.0 && pip install -e . && python -m study.run --space eca_kmap",
         "pip install torch==2.13.0 && pip install -e '.[test]' && python -m pytest")


def _code(text: str) -> list[str]:
    """The command lines of a page: every line of its fenced code blocks (continuations
    joined) and every inline code span that starts with ``python`` and has arguments (a bare
    ``python -m MODULE`` in prose names the command; in a code block it is one)."""
    lines, fence = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
            continue
        if fence:
            if lines and lines[-1].endswith("\\"):
                lines[-1] = lines[-1][:-1] + " " + line.strip()
            else:
                lines.append(line.strip())
        else:
            lines += [m for m in re.findall(r"`([^`\n]+)`", line) if m.startswith("python ") and len(m.split()) > 3]
    return lines


def _segments(line: str) -> list[list[str]]:
    """Each command of a shell line (split at ``&&``, ``||``, ``;`` and ``|``), as words;
    a comment ends the line."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:  # not shell (a JSON line, a picture)
        return []
    out, cur = [], []
    for w in words:
        if w in ("&&", "||", ";", "|"):
            out.append(cur)
            cur = []
        else:
            cur.append(w)
    return [c for c in [*out, cur] if c]


def _commands(prefix: list[str]) -> list[tuple[str, str, list[str]]]:
    """(page, line, words after the prefix) for every command that starts with ``prefix``."""
    found = []
    for page in PAGES:
        for line in _code(page.read_text()):
            for words in _segments(line):
                while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):  # VAR=value before the command
                    words = words[1:]
                if words[: len(prefix)] == prefix:
                    found.append((page.relative_to(REPO).as_posix(), line, words[len(prefix):]))
    return found


MODULE_COMMANDS = _commands(["python", "-m"])


def test_the_docs_have_command_lines():
    modules = {words[0] for _, _, words in MODULE_COMMANDS if words}
    assert {"study.run", "analysis.kmap", "analysis.report", "analysis.export", "study.train"} <= modules


@pytest.mark.parametrize("page,line,words", MODULE_COMMANDS, ids=[f"{p}: {line[:70]}" for p, line, _ in MODULE_COMMANDS])
def test_every_python_m_line_parses_with_its_cli(page, line, words):
    from study.cli import UsageError

    module, args = words[0], words[1:]
    if module.split(".")[0] not in OURS:
        return  # pytest, pip: not ours to check
    assert module in PARSERS, f"{page}: `{line}`: {module} is not a CLI of this repository (known: {', '.join(PARSERS)})"
    parser = importlib.import_module(PARSERS[module]).build_parser()
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            parser.parse_args(args)
    except UsageError as exc:
        pytest.fail(f"{page}: `{line}` does not parse: {exc}")
    except SystemExit as exc:  # --help exits 0; a plain argparse error exits 2
        if exc.code not in (0, None):
            pytest.fail(f"{page}: `{line}` does not parse: {out.getvalue().strip()}")


def test_every_benchmark_command_names_a_script():
    for page, line, words in _commands(["python"]):
        if words and words[0].startswith("benchmarks/"):
            assert (REPO / words[0]).is_file(), f"{page}: `{line}`: no {words[0]}"


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def test_links_between_pages_land():
    anchors = {p.resolve(): {_slug(h) for h in re.findall(r"^#+ (.+)$", p.read_text(), re.M)} for p in PAGES}
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # an address outside the repository
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page.resolve()
            assert dest.exists(), f"{page.relative_to(REPO)}: link to {target}: no such file"
            if anchor:
                assert anchor in anchors.get(dest, set()), f"{page.relative_to(REPO)}: link to {target}: no such heading"


def test_readme_is_a_front_door():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 200, f"README.md has {len(text.splitlines())} lines; the reference belongs in docs/"
    blocks = re.findall(r"```bash\n(.*?)\n```", text, re.S)
    assert tuple(blocks[:2]) == SETUP, "README.md must open with the two set-up commands, verbatim"


def test_benchmarks_page_is_generated_from_the_results():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        docs_table = importlib.import_module("docs_table")
        results = importlib.import_module("_results")
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    page = (REPO / "docs" / "benchmarks.md").read_text()
    expected = docs_table.render(page, docs_table.generate_section(results.read_results(), docs_table.scripts()))
    assert page == expected, "docs/benchmarks.md is not what benchmarks/results/*.json give: run python benchmarks/docs_table.py"


def test_readme_python_example_names_what_exists():
    """The example's imports and its settings run as written (the study itself is run by hand:
    minutes); every ``analysis.NAME`` it calls exists."""
    import analysis

    code = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert code, "README.md has no Python example"
    head = re.split(r"\n(?=Path\(|run_study\()", code[0])[0]  # up to the first line that makes a folder or runs
    namespace: dict = {}
    exec(compile(head, "README.md", "exec"), namespace)  # imports and StudySettings(...): its fields as the example gives them
    for name in re.findall(r"\banalysis\.(\w+)", code[0]):
        assert hasattr(analysis, name), f"README.md's example calls analysis.{name}, which analysis does not have"
