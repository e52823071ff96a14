"""Ordinary least squares, the original analysis's comparison baseline."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LinearRegression

from tabduel.engine.data import Data
from tabduel.infra.config import LinearConfig


@dataclass
class LinearFit:
    """A fitted least-squares model and facts about the run."""

    model: LinearRegression
    history: dict[str, list[float]]
    info: dict[str, Any]


def fit(data: Data, cfg: LinearConfig, on_step: Any = None) -> LinearFit:
    """Least squares on the train split (valid is not used)."""
    start = time.perf_counter()
    model = LinearRegression(fit_intercept=cfg.fit_intercept).fit(data.x_train.astype(np.float64), data.y_train)
    return LinearFit(model, {}, {"train_seconds": time.perf_counter() - start})


def save(result: LinearFit, directory: Path) -> None:
    """Write coefficients and intercept as JSON (no pickle)."""
    model = result.model
    payload = {"coef": [float(c) for c in model.coef_], "intercept": float(model.intercept_),
               "fit_intercept": model.fit_intercept}
    (directory / "model.json").write_text(json.dumps(payload, indent=2))


def load(directory: str | Path) -> LinearRegression:
    """Rebuild a fitted LinearRegression from the saved coefficients."""
    payload = json.loads((Path(directory) / "model.json").read_text())
    model = LinearRegression(fit_intercept=payload["fit_intercept"])
    model.coef_ = np.asarray(payload["coef"], dtype=np.float64)
    model.intercept_ = float(payload["intercept"])
    model.n_features_in_ = len(payload["coef"])
    return model


def predict(model: LinearRegression, x: np.ndarray) -> np.ndarray:
    """(rows, features) -> (rows,) predictions."""
    return model.predict(x.astype(np.float64)).astype(np.float32)
