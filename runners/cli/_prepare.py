"""Preparations of a space's options: what the study CLI does with the values of the options
a space declares (:class:`search_spaces.SpaceOption`) before the study is defined.

Most spaces need none: the parsed values become the study's ``space_options`` as they are.
A space whose options start a workflow that needs analysis (``kmap_confirm --from RUN``: a
study from another study's analysis) has its preparation here, on the top floor, registered
by the space's name with :func:`prepares`; the resolution of the flags calls it through
:func:`preparation_for` without knowing which space it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search_spaces import CONFIRM_DECISION as DECISION
from study.cli import UsageError
from study.config import ProxySpec, Recipe
from study.storage import is_storage_url, public_url

if TYPE_CHECKING:  # annotations only
    from study.config import ProxySpec

__all__ = ["Preparation", "prepares", "preparation_for", "CONFIRM_EPOCHS_FACTOR"]


@dataclass(frozen=True)
class Preparation:
    """A space's prepared options: the study's ``space_options`` and the defaults they set
    (None: the settings' own default), layer 3 of the order of defaults
    (:mod:`runners._defaults`): a flag the user gives still wins over a default here."""

    options: dict[str, Any] = field(default_factory=dict)
    backbone: str | None = None
    stem: str | None = None
    #: the proxy (a :class:`study.config.ProxySpec`)
    proxy: ProxySpec | None = None
    epochs: int | None = None
    #: the recipe's fields other than the epochs
    recipe: dict[str, Any] | None = None

    def settings(self) -> dict[str, Any]:
        """As :class:`runners.StudySettings` takes it (``prepared=``): the values it sets."""
        values = {"space_options": self.options, "backbone": self.backbone, "stem": self.stem, "proxy": self.proxy,
                  "epochs": self.epochs, "recipe": self.recipe}
        return {k: v for k, v in values.items() if v is not None}


PrepareFn = Callable[[Mapping[str, Any]], Preparation]
_PREPARATIONS: dict[str, PrepareFn] = {}


def prepares(space: str) -> Callable[[PrepareFn], PrepareFn]:
    """Decorator: ``fn(values) -> Preparation`` prepares the options of the space ``space``
    (``values``: its declared options given on the command line, parsed, by key)."""

    def deco(fn: PrepareFn) -> PrepareFn:
        if space in _PREPARATIONS and _PREPARATIONS[space] is not fn:
            raise ValueError(f"space {space!r} already has a preparation ({_PREPARATIONS[space].__name__})")
        _PREPARATIONS[space] = fn
        return fn

    return deco


def preparation_for(space: str) -> PrepareFn:
    """The preparation of the space named ``space``; without one, the values are the options."""
    return _PREPARATIONS.get(space, lambda values: Preparation(options=dict(values)))


#: the confirmation trains this many times the source study's epochs unless --epochs says otherwise
CONFIRM_EPOCHS_FACTOR = 3


@prepares("kmap_confirm")
def confirm_from_study(values: Mapping[str, Any]) -> Preparation:
    """``--from RUN``: the source study's fitted mapping (read by :mod:`analysis`) and the
    defaults the confirmation takes from it (backbone, stem, proxy, a longer recipe)."""
    import analysis

    source = str(values["source"])
    try:
        fr = analysis.load(source)
        an = analysis.analyze_kmap(fr)
    except (ValueError, OSError) as exc:
        raise UsageError(f"--from {source}: {' '.join(str(exc).split())}") from None
    if an.fitted is None:
        raise UsageError(f"--from {source}: no psi(C; gamma, b) fits the k this study ran ({'; '.join(an.notes)})")
    options = {
        "source": public_url(source) if is_storage_url(source) else str(Path(source).resolve()),
        "source_study": fr.name, "fitted": {"gamma": an.fitted.gamma, "b": an.fitted.b},
        "source_evidence": bool(an.effect.evidence), "source_verdict": an.effect.verdict(), "decision": DECISION,
    }
    cfg = next((c for c in fr.trials["config"] if isinstance(c, dict)), None)
    if cfg is not None:
        recipe = Recipe.from_dict(cfg["recipe"]).to_dict()
        return Preparation(options, backbone=cfg["arch"]["backbone"], stem=cfg["arch"]["stem"],
                           proxy=ProxySpec.from_dict(cfg["proxy"]), epochs=CONFIRM_EPOCHS_FACTOR * int(recipe["epochs"]),
                           recipe={k: v for k, v in recipe.items() if k != "epochs"})
    return Preparation(options, backbone=dict(fr.settings).get("backbone") or None)
