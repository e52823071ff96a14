"""What a model family is: the record the registry lists (Family) and what its module implements (Implementation).

A family's own module (tabduel/models/<kind>.py) may declare its record here as `FAMILY = Family(...)`, beside its
settings section (`class XConfig(ModelSettings, section=kind)`): the registry finds it there. This module, like that
declaration, imports no heavy library.
"""

from __future__ import annotations

import importlib
import importlib.util
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from tabduel.infra.errors import ConfigError
from tabduel.infra.settings import ModelSettings

if typing.TYPE_CHECKING:
    import numpy as np

    from tabduel.engine.data import Data

IMPORT_NAMES = {"scikit-learn": "sklearn"}  # distributions whose module is named otherwise
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
    extra: str = ""  # the optional extra its packages come with (pip install 'tabduel[extra]'); "": the core install

    @property
    def config(self) -> type[ModelSettings]:
        """Its settings dataclass: the model section registered under its kind."""
        return ModelSettings.sections[self.kind]

    @property
    def search(self) -> str:
        """The search family (`tabduel search --families`) that tunes it ("": none): its settings' `search`."""
        return self.config.search_family

    @property
    def code_modules(self) -> tuple[str, ...]:
        """Every module whose source its cache key covers: its own, the listed ones, and the shared training code."""
        return (self.module, *self.code, "tabduel.models.registry", "tabduel.models.training", "tabduel.engine.data")

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
