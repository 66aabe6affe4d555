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
    #: the study's seed
    seed: int | None = None

    def settings(self) -> dict[str, Any]:
        """As :class:`runners.StudySettings` takes it (``prepared=``): the values it sets."""
        values = {"space_options": self.options, "backbone": self.backbone, "stem": self.stem, "proxy": self.proxy,
                  "epochs": self.epochs, "recipe": self.recipe, "seed": self.seed}
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
    """``--from RUN``: the source study's answer (read by :mod:`analysis`) gives the arms (its
    fitted psi and k* per C beside the fixed mappings) and, with ``--delta`` and ``--budget``,
    the decision rule the confirmation stores before its first run; the source gives the
    backbone, stem, proxy, a longer recipe, and a seed whose paired seeds are not its own
    (:mod:`runners.cli._confirm`)."""
    import analysis
    from runners.cli._confirm import confirm_options, confirm_seed

    source = str(values["source"])
    try:
        fr = analysis.load(source)
        an = analysis.analyze_kmap(fr)
    except (ValueError, OSError) as exc:
        raise UsageError(f"--from {source}: {' '.join(str(exc).split())}") from None
    cfg = next((c for c in fr.trials["config"] if isinstance(c, dict)), None)
    backbone = cfg["arch"]["backbone"] if cfg else dict(fr.settings).get("backbone") or "resnet18"
    stem = cfg["arch"]["stem"] if cfg else dict(fr.settings).get("stem") or "lowres"
    try:
        options = confirm_options(an, backbone=backbone, stem=stem, delta=values.get("delta"), budget=values.get("budget"))
    except ValueError as exc:
        raise UsageError(f"--from {source}: {' '.join(str(exc).split())}") from None
    options.update({
        "source": public_url(source) if is_storage_url(source) else str(Path(source).resolve()),
        "source_study": fr.name, "source_evidence": bool(an.effect.evidence), "source_verdict": an.effect.verdict(),
        "source_seeds": sorted({int(s) for s in fr.trials["seed"].dropna()}) if "seed" in fr.trials else [],
        "validation": "the source study's validation images (fresh images need the answer design, which splits them)",
    })
    seed = confirm_seed(int(dict(fr.settings).get("seed") or 0))
    if cfg is not None:
        recipe = Recipe.from_dict(cfg["recipe"]).to_dict()
        return Preparation(options, backbone=backbone, stem=stem, proxy=ProxySpec.from_dict(cfg["proxy"]),
                           epochs=CONFIRM_EPOCHS_FACTOR * int(recipe["epochs"]), recipe={k: v for k, v in recipe.items() if k != "epochs"},
                           seed=seed)
    return Preparation(options, backbone=backbone, seed=seed)
