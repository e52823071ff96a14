"""Every model family in one place: what it is, what its module does, and what its outputs depend on.

A family is a module that implements `Implementation` (fit, save, load, predict), one `Family` record and a settings
section (`class XConfig(ModelSettings, section=kind)`). The built-in families below keep their records here and their
settings in tabduel/infra/model_sections.py, because the engine trains from those settings. Any other module of
tabduel.models that declares `FAMILY = Family(...)` (and its settings) is a family too: the registry imports it and
lists it after them, so a new family is one module (tabduel/models/hgb.py is one). Everything that differs between
families (its settings section, the inputs it takes, its devices, its MLflow flavour, its cache key, its search) is
asked of the record, never of the kind's name; tabduel.settings builds Config's model sections, and the CLI its
flags, from this list.

This module imports no heavy library (the CLI reads it to build --help); a built-in family's module, with torch,
xgboost or scikit-learn, is imported only when one of its models is fitted, saved, loaded or used. A module that
declares its own family is imported here, so it must import its heavy libraries inside its functions.
"""

from __future__ import annotations

import importlib
import pkgutil

import tabduel.infra.model_sections  # noqa: F401  (registers the built-in families' settings sections)
import tabduel.models
from tabduel.infra.errors import ConfigError
from tabduel.models.family import IMPORT_NAMES, STEPS, Family, Implementation, Progress  # noqa: F401  (re-exported)

_ENGINE = ("tabduel.engine.net", "tabduel.engine.optim", "tabduel.engine.single", "tabduel.engine.population",
           "tabduel.engine.memory", "tabduel.infra.runtime")
_AUTOGRAD = ("tabduel.models.torchnets", "tabduel.engine.torchfit", "tabduel.infra.runtime")

FAMILIES = (
    Family("mlp", "tabduel.models.mlp", code=_ENGINE, packages=("torch", "numpy"), device="torch", steps="epoch",
           flavour="pytorch", hint="lower --mlp-lr",
           summary="Train the PyTorch MLP (default: the original analysis's NN5) on the latest features. With "
                   "--population N, train N seeds at once and keep their ensemble mean as the model."),
    Family("xgboost", "tabduel.models.xgb", code=("tabduel.infra.runtime",), packages=("xgboost", "numpy"),
           device="xgboost", steps="round", flavour="xgboost", native_missing=True,
           hint="lower --xgboost-learning-rate",
           summary="Train XGBoost (hist trees, early stopping on valid) on the latest features."),
    Family("linear", "tabduel.models.linear", packages=("scikit-learn", "numpy"), flavour="sklearn",
           hint="look for near-duplicate or constant input columns",
           summary="Fit the ordinary least squares baseline on the latest features."),
    Family("realmlp", "tabduel.models.realmlp", code=(*_AUTOGRAD, "tabduel.engine.realmlp"),
           packages=("torch", "numpy"), device="torch", steps="epoch", flavour="pytorch", hint="lower --realmlp-lr",
           summary="Train a RealMLP-style MLP (robust scaling and smooth clipping, periodic embeddings, a front "
                   "scaling layer, NTK parametrization; defaults: pytabkit's RealMLP-TD) on the latest features."),
    Family("tabm", "tabduel.models.tabm", code=(*_AUTOGRAD, "tabduel.engine.tabm", "tabduel.engine.realmlp"),
           packages=("torch", "numpy"), device="torch", steps="epoch", flavour="pytorch", hint="lower --tabm-lr",
           summary="Train a TabM-style ensemble (k MLPs sharing their weights through BatchEnsemble adapters, "
                   "piecewise-linear embeddings; the prediction is the mean of the k heads) on the latest features."),
)

# The published implementations beside tabduel's own (tabduel/models/peers.py): pytabkit's tuned-default regressors,
# with `pip install 'tabduel[peers]'`; each is a search and bench family of the same name (tabduel/search/peers.py).
_PEER = {"module": "tabduel.models.peers", "flavour": "pytabkit", "extra": "peers",
         "hint": "look for extreme or constant input columns, or try another seed"}
FAMILIES += (
    Family("peer_realmlp", packages=("pytabkit", "torch", "numpy"), **_PEER,
           summary="Fit pytabkit's RealMLP-TD regressor (Holzmüller et al. 2024) with its tuned defaults, best epoch "
                   "on valid, on the latest features (needs tabduel[peers])."),
    Family("peer_tabm", packages=("pytabkit", "torch", "numpy"), **_PEER,
           summary="Fit pytabkit's TabM-D regressor (Gorishniy et al. 2024; k = 32) with its defaults, early stopping "
                   "on valid, on the latest features (needs tabduel[peers])."),
    Family("peer_lgbm", packages=("pytabkit", "lightgbm", "numpy"), **_PEER,
           summary="Fit pytabkit's LightGBM-TD regressor (Holzmüller et al. 2024) with its tuned defaults, early "
                   "stopping on valid, on the latest features (needs tabduel[peers])."),
    Family("peer_catboost", packages=("pytabkit", "catboost", "numpy"), **_PEER,
           summary="Fit pytabkit's CatBoost-TD regressor (Holzmüller et al. 2024) with its tuned defaults, early "
                   "stopping on valid, on the latest features (needs tabduel[peers])."),
)
# Modules of tabduel.models that are neither a built-in family's nor declare one: the discovery skips them.
_SHARED = ("family", "registry", "training", "evaluate", "torchnets")


def declared_families() -> tuple[Family, ...]:
    """The families that modules of tabduel.models declare themselves (`FAMILY = Family(...)`), by module name;
    imports those modules (they are light: their heavy libraries are imported inside their functions)."""
    known = {f.module for f in BUILT_IN} | {f"tabduel.models.{name}" for name in _SHARED}
    found = []
    for info in sorted(pkgutil.iter_modules(tabduel.models.__path__), key=lambda m: m.name):
        name = f"tabduel.models.{info.name}"
        if name not in known:
            declared = getattr(importlib.import_module(name), "FAMILY", None)
            if isinstance(declared, Family):
                found.append(declared)
    return tuple(found)


BUILT_IN = FAMILIES  # declared above, their settings in tabduel/infra/model_sections.py
FAMILIES = BUILT_IN + declared_families()
_BY_KIND = {f.kind: f for f in FAMILIES}
if len(_BY_KIND) != len(FAMILIES):
    raise TypeError(f"two model families have one kind: {[f.kind for f in FAMILIES]}")


def kinds() -> tuple[str, ...]:
    """The kinds of every registered family, in registry order."""
    return tuple(_BY_KIND)


def family(kind: str) -> Family:
    """The registered family of a kind; ConfigError (one line, naming the known kinds) for any other."""
    try:
        return _BY_KIND[kind]
    except KeyError:
        raise ConfigError(f"model family {kind!r} is not one of: {', '.join(_BY_KIND)}") from None
