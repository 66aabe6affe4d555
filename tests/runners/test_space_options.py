"""A space's own command-line options: the space declares them (:class:`SpaceOption`), the
study CLI makes the flags from the declarations and forwards the values as the space's
options, without knowing the space (here: a space registered by the test)."""

from __future__ import annotations

import pytest

from runners.cli import build_parser, resolve_settings
from search_spaces import Budget, SpaceOption, declared_options, get_space, make_config, register_space
from search_spaces._registry import _SPACES
from study.cli import UsageError
from study.config import AttentionSpec

TINY = ["--proxy", "synthetic-small", "--width", "0.25", "--runner", "local"]


def _colour(text: str) -> str:
    if text not in ("red", "green"):
        raise ValueError(f"expected red or green, got {text!r}")
    return text.upper()


@pytest.fixture
def colour_space():
    """The space ``colours`` with the option ``--colour`` (required) and ``--shade`` (optional,
    kept on resume by default); removed after the test."""
    seen = []

    @register_space("colours", description="a test space with its own options", budget=Budget(trials=1, epochs=1),
                    options=(SpaceOption(key="colour", flag="--colour", help="the colour", parse=_colour, required="give --colour"),
                             SpaceOption(key="shade", flag="--shade", metavar="S", help="the shade")))
    def define(trial, *, backbone, options=None, **settings):
        seen.append(dict(options or {}))
        return make_config([AttentionSpec("none")] * 4, backbone=backbone, **settings)

    try:
        yield seen
    finally:
        _SPACES.pop("colours")


def _resolve(argv, tmp_path):
    args = build_parser().parse_args([*argv, "--out", str(tmp_path)])
    return resolve_settings(args, note=lambda text: None)


def test_declared_flags_are_built_and_their_values_reach_the_space(colour_space, tmp_path):
    assert {"--from", "--kinds", "--colour", "--shade"} <= set(declared_options())
    help_text = " ".join(build_parser().format_help().split())
    assert "--colour VALUE colours: the colour" in help_text and "--shade S colours: the shade" in help_text
    settings, space, created = _resolve(["--space", "colours", "--colour", "red", *TINY], tmp_path)
    assert created and space.name == "colours" and settings.space_options == {"colour": "RED"}
    assert colour_space[-1] == {"colour": "RED"}  # the dry run ran the space with its options
    assert dict(settings.space_context().options) == {"colour": "RED"}


def test_a_space_option_is_checked_as_its_declaration_says(colour_space, tmp_path):
    for argv, message in ((["--space", "colours", *TINY], "--colour: give --colour"),
                          (["--space", "colours", "--colour", "blue", *TINY], "--colour: expected red or green, got 'blue'"),
                          (["--space", "eca_kmap", "--shade", "dark", *TINY], "--shade: only the space(s) colours take it"),
                          (["--space", "eca_kmap", "--kinds", "eca", *TINY], "--kinds: only the attention_nas space chooses")):
        with pytest.raises(UsageError) as info:
            _resolve(argv, tmp_path)
        assert str(info.value).startswith(message), (argv, str(info.value))


def test_the_spaces_declare_from_and_kinds():
    assert [o.flag for o in get_space("kmap_confirm").options] == ["--from", "--delta", "--budget"]
    assert [o.flag for o in get_space("attention_nas").options] == ["--kinds"]
    assert get_space("attention_nas").options[0].parse(" eca, none ,") == ["eca", "none"]
    assert get_space("kmap_confirm").options[0].on_resume
    assert [o.flag for o in get_space("eca_kmap").options] == ["--delta", "--budget"]  # for its answer design


def test_declarations_are_validated():
    with pytest.raises(ValueError, match="flag must look like --name"):
        SpaceOption(key="x", flag="-x", help="h")
    with pytest.raises(ValueError, match="key: expected an identifier"):
        SpaceOption(key="not a key", flag="--x", help="h")
    with pytest.raises(ValueError, match="--kinds is another space's option for 'kinds', not 'sorts'"):
        register_space("sorts", description="d", budget=Budget(trials=1, epochs=1),
                       options=(SpaceOption(key="sorts", flag="--kinds", help="h"),))
    assert "sorts" not in _SPACES
