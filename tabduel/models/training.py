"""One entry point for every model family: fit from a features directory, save, load, predict."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np

from tabduel.data.features import feature_names, load_xy
from tabduel.engine.data import Data
from tabduel.infra.config import ModelConfig
from tabduel.infra.errors import DivergedError, TabduelError
from tabduel.infra.store import read_json

MODULES = {"mlp": "tabduel.models.mlp", "xgboost": "tabduel.models.xgb", "linear": "tabduel.models.linear",
           "realmlp": "tabduel.models.realmlp", "tabm": "tabduel.models.tabm"}
# Families that take missing values as NaN (the others get the imputed value and a missing indicator).
NATIVE_MISSING = {"xgboost"}
# Library code each family's output depends on (for cache keys), and its third-party packages.
CODE = {
    "mlp": ([MODULES["mlp"], "tabduel.engine.net", "tabduel.engine.optim", "tabduel.engine.single",
             "tabduel.engine.population", "tabduel.engine.memory", "tabduel.models.training", "tabduel.infra.runtime"],
            ["torch", "numpy"]),
    "xgboost": ([MODULES["xgboost"], "tabduel.models.training", "tabduel.infra.runtime"], ["xgboost", "numpy"]),
    "linear": ([MODULES["linear"], "tabduel.models.training"], ["scikit-learn", "numpy"]),
    "realmlp": ([MODULES["realmlp"], "tabduel.models.torchnets", "tabduel.engine.realmlp", "tabduel.engine.torchfit",
                 "tabduel.models.training", "tabduel.infra.runtime"], ["torch", "numpy"]),
    "tabm": ([MODULES["tabm"], "tabduel.models.torchnets", "tabduel.engine.tabm", "tabduel.engine.realmlp",
              "tabduel.engine.torchfit", "tabduel.models.training", "tabduel.infra.runtime"], ["torch", "numpy"]),
}


def family(kind: str) -> ModuleType:
    """The module of a model family, imported on first use (torch, xgboost and sklearn are slow to import)."""
    return importlib.import_module(MODULES[kind])


def load_data(features_dir: str | Path, kind: str = "") -> tuple[Data, dict[str, Any]]:
    """Train and valid arrays of a features output as model family `kind` takes them, with the manifest."""
    features_dir = Path(features_dir)
    manifest = read_json(features_dir / "manifest.json")
    native = kind in NATIVE_MISSING
    x_train, y_train = load_xy(str(features_dir / "train.parquet"), manifest, native)
    x_valid, y_valid = load_xy(str(features_dir / "valid.parquet"), manifest, native)
    numeric = tuple(manifest.get("scaler", {}).get("mean", {}))
    return Data(x_train, y_train, x_valid, y_valid, tuple(feature_names(manifest, native)), numeric), manifest


def fit(kind: str, data: Data, cfg: ModelConfig, progress: Callable[..., None] | None = None) -> Any:
    """Fit one model family; progress gets (step, total, ...) per epoch or round. A model whose predictions on
    valid are not all finite raises DivergedError: it is never saved."""
    module = family(kind)
    result = module.fit(data, cfg, progress)
    check_finite(kind, module.predict(result.model, data.x_valid))
    return result


def check_finite(kind: str, predictions: np.ndarray) -> None:
    """Raise DivergedError naming the model and how many of its predictions are NaN or infinite."""
    bad = ~np.isfinite(predictions)
    if bad.any():
        hint = {"mlp": "lower --mlp-lr", "xgboost": "lower --xgboost-learning-rate",
                "linear": "look for near-duplicate or constant input columns"}[kind]
        raise DivergedError(f"{kind}: {int(bad.sum())} of {bad.size} predictions on the valid split are NaN or "
                            f"infinite; the model is not kept ({hint})")


def predictor(kind: str, model_dir: str | Path) -> Callable[[np.ndarray], np.ndarray]:
    """A function (rows, features) -> (rows,) for a saved model."""
    module = family(kind)
    model = module.load(model_dir)
    return lambda x: module.predict(model, x)


def check_trained_on(features: Any, models: dict[str, Any]) -> None:
    """Raise TabduelError unless every model (a StepResult) was trained on these features."""
    for kind, model in models.items():
        trained_on = read_json(Path(model.path) / "meta.json")["features_key"]
        if trained_on != features.key:
            raise TabduelError(f"the {kind} model in {model.path} was trained on features {trained_on}, not on "
                               f"{features.key}; run `tabduel train {kind}` on the current features first")
