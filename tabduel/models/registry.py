"""Every model family in one place: what it is, what its module does, and what its outputs depend on.

A family is a module that implements `Implementation` (fit, save, load, predict) and one `Family` record in
FAMILIES below, with a settings dataclass in tabduel/infra/config.py (`class XConfig(ModelSettings, section=kind)`
and a Config field of that name). Everything that differs between families (its settings section, the inputs it
takes, its devices, its MLflow flavour, its cache key, its search) is asked of the record, never of the kind's name.

This module imports no heavy library (the CLI reads it to build --help); a family's module, with torch, xgboost or
scikit-learn, is imported only when one of its models is fitted, saved, loaded or used.
"""

from __future__ import annotations

import importlib
import importlib.util
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from tabduel.infra.config import Config, ModelSettings
from tabduel.infra.errors import ConfigError

if typing.TYPE_CHECKING:
    import numpy as np

    from tabduel.engine.data import Data

Progress = Callable[..., None]  # (step, total, *values): per epoch (train_loss, valid_loss) or round (valid_rmse)
STEPS = {"epoch": ("train_loss", "valid_loss"), "round": ("valid_rmse",)}  # what each kind of step reports


class Implementation(Protocol):
    """What a family's module provides."""

    def fit(self, data: Data, cfg: Any, progress: Progress | None = None) -> Any:
        """Train on data.x_train, early-stop on data.x_valid; a result with .model, .history and .info."""

    def save(self, result: Any, directory: Path) -> None:
        """Write the fitted model into directory (no pickle)."""

    def load(self, directory: str | Path) -> Any:
        """The saved model, ready to predict on the CPU."""

    def predict(self, model: Any, x: np.ndarray) -> np.ndarray:
        """(rows, features) float32 -> (rows,) float32 predictions."""


@dataclass(frozen=True)
class Family:
    """One model family: its kind, its module, and the facts the pipeline, the cache and MLflow need of it."""

    kind: str  # the --models name, the [kind] settings section, the models/<kind>/ folder, the MLflow run's name
    module: str  # the module that implements it (Implementation)
    summary: str  # what `tabduel train <kind>` does, for --help
    flavour: str  # the MLflow flavour its model is logged with (a key of tabduel.infra.tracking.FLAVOURS)
    packages: tuple[str, ...]  # third-party distributions whose versions its cache key covers
    code: tuple[str, ...] = ()  # modules besides `module` whose source its cache key covers
    device: str = ""  # how its `device` setting resolves (a key of training.RESOLVE_DEVICE); "" when it has none
    steps: str = ""  # what its progress reports count (one of STEPS): "epoch", "round", or "" for none
    native_missing: bool = False  # it takes missing inputs as NaN (else the imputed value and a missing indicator)
    hint: str = ""  # what to try when its predictions are not finite
    search: str = ""  # the search family (`tabduel search --families`) that tunes it, if any
    extra: str = ""  # the optional extra its packages come with (pip install 'tabduel[extra]'); "": the core install

    @property
    def config(self) -> type[ModelSettings]:
        """Its settings dataclass: the type of Config's section named as the kind."""
        return typing.get_type_hints(Config)[self.kind]

    @property
    def code_modules(self) -> tuple[str, ...]:
        """Every module whose source its cache key covers: its own, the listed ones, and the shared training code."""
        return (self.module, *self.code, __name__, "tabduel.models.training", "tabduel.engine.data")

    def require(self) -> None:
        """ConfigError in one line unless the packages of its extra can be imported here (the core's always can)."""
        if not self.extra:
            return
        for name in self.packages:
            module = IMPORT_NAMES.get(name, name)
            try:
                found = importlib.util.find_spec(module) is not None
            except ImportError:  # a finder that refuses the module
                found = False
            if not found:
                raise ConfigError(f"{self.kind} needs the {self.extra} extra: pip install 'tabduel[{self.extra}]' "
                                  f"(No module named {module!r})")

    def implementation(self) -> Implementation:
        """Its module, imported on first use."""
        return importlib.import_module(self.module)  # type: ignore[return-value]

    def fit(self, data: Data, cfg: Any, progress: Progress | None = None) -> Any:
        """Its module's fit."""
        return self.implementation().fit(data, cfg, progress)

    def save(self, result: Any, directory: Path) -> None:
        """Its module's save."""
        self.implementation().save(result, directory)

    def load(self, directory: str | Path) -> Any:
        """Its module's load."""
        return self.implementation().load(directory)

    def predict(self, model: Any, x: np.ndarray) -> np.ndarray:
        """Its module's predict."""
        return self.implementation().predict(model, x)


_ENGINE = ("tabduel.engine.net", "tabduel.engine.optim", "tabduel.engine.single", "tabduel.engine.population",
           "tabduel.engine.memory", "tabduel.infra.runtime")
_AUTOGRAD = ("tabduel.models.torchnets", "tabduel.engine.torchfit", "tabduel.infra.runtime")

FAMILIES = (
    Family("mlp", "tabduel.models.mlp", code=_ENGINE, packages=("torch", "numpy"), device="torch", steps="epoch",
           flavour="pytorch", hint="lower --mlp-lr", search="mlp",
           summary="Train the PyTorch MLP (default: the original analysis's NN5) on the latest features. With "
                   "--population N, train N seeds at once and keep their ensemble mean as the model."),
    Family("xgboost", "tabduel.models.xgb", code=("tabduel.infra.runtime",), packages=("xgboost", "numpy"),
           device="xgboost", steps="round", flavour="xgboost", native_missing=True,
           hint="lower --xgboost-learning-rate", search="xgboost",
           summary="Train XGBoost (hist trees, early stopping on valid) on the latest features."),
    Family("linear", "tabduel.models.linear", packages=("scikit-learn", "numpy"), flavour="sklearn",
           hint="look for near-duplicate or constant input columns",
           summary="Fit the ordinary least squares baseline on the latest features."),
    Family("realmlp", "tabduel.models.realmlp", code=(*_AUTOGRAD, "tabduel.engine.realmlp"),
           packages=("torch", "numpy"), device="torch", steps="epoch", flavour="pytorch", hint="lower --realmlp-lr",
           search="realmlp",
           summary="Train a RealMLP-style MLP (robust scaling and smooth clipping, periodic embeddings, a front "
                   "scaling layer, NTK parametrization; defaults: pytabkit's RealMLP-TD) on the latest features."),
    Family("tabm", "tabduel.models.tabm", code=(*_AUTOGRAD, "tabduel.engine.tabm", "tabduel.engine.realmlp"),
           packages=("torch", "numpy"), device="torch", steps="epoch", flavour="pytorch", hint="lower --tabm-lr",
           search="tabm",
           summary="Train a TabM-style ensemble (k MLPs sharing their weights through BatchEnsemble adapters, "
                   "piecewise-linear embeddings; the prediction is the mean of the k heads) on the latest features."),
)

# The published implementations beside tabduel's own (tabduel/models/peers.py): pytabkit's tuned-default regressors,
# with `pip install 'tabduel[peers]'`; each is a search and bench family of the same name (tabduel/search/peers.py).
_PEER = {"module": "tabduel.models.peers", "flavour": "pytabkit", "extra": "peers",
         "hint": "look for extreme or constant input columns, or try another seed"}
FAMILIES += (
    Family("peer_realmlp", search="peer_realmlp", packages=("pytabkit", "torch", "numpy"), **_PEER,
           summary="Fit pytabkit's RealMLP-TD regressor (Holzmüller et al. 2024) with its tuned defaults, best epoch "
                   "on valid, on the latest features (needs tabduel[peers])."),
    Family("peer_tabm", search="peer_tabm", packages=("pytabkit", "torch", "numpy"), **_PEER,
           summary="Fit pytabkit's TabM-D regressor (Gorishniy et al. 2024; k = 32) with its defaults, early stopping "
                   "on valid, on the latest features (needs tabduel[peers])."),
    Family("peer_lgbm", search="peer_lgbm", packages=("pytabkit", "lightgbm", "numpy"), **_PEER,
           summary="Fit pytabkit's LightGBM-TD regressor (Holzmüller et al. 2024) with its tuned defaults, early "
                   "stopping on valid, on the latest features (needs tabduel[peers])."),
    Family("peer_catboost", search="peer_catboost", packages=("pytabkit", "catboost", "numpy"), **_PEER,
           summary="Fit pytabkit's CatBoost-TD regressor (Holzmüller et al. 2024) with its tuned defaults, early "
                   "stopping on valid, on the latest features (needs tabduel[peers])."),
)
IMPORT_NAMES = {"scikit-learn": "sklearn"}  # distributions whose module is named otherwise
_BY_KIND = {f.kind: f for f in FAMILIES}


def kinds() -> tuple[str, ...]:
    """The kinds of every registered family, in registry order."""
    return tuple(_BY_KIND)


def family(kind: str) -> Family:
    """The registered family of a kind; ConfigError (one line, naming the known kinds) for any other."""
    try:
        return _BY_KIND[kind]
    except KeyError:
        raise ConfigError(f"model family {kind!r} is not one of: {', '.join(_BY_KIND)}") from None
