"""scikit-learn's HistGradientBoostingRegressor, a second tree baseline beside XGBoost: the whole family in one module.

Its settings ([hgb], --hgb-* flags), its registry record (FAMILY) and its fit, save, load and predict are declared
here; tabduel.models.registry finds FAMILY, tabduel.settings gives Config its `hgb` section. The declaration imports
no heavy library: scikit-learn is imported inside the functions.

Missing values: taken natively (NaN inputs, as XGBoost). Early stopping: on the fixed valid split, not on
scikit-learn's internal one: fit(X_val=, y_val=) scores the loss on valid after every round and stops after
`early_stopping_rounds` rounds without improvement; scikit-learn keeps those last rounds, so the model is cut back to
the round of the best valid loss (selected on valid, as XGBoost's best iteration).

Saved without pickle: model.npz holds each tree's node table (a structured array, read back with
allow_pickle=False) and model.json the estimator's parameters, its baseline and the scikit-learn version. `load`
rebuilds a fitted HistGradientBoostingRegressor from them (its private tree predictors, as scikit-learn's own
fit leaves them), so MLflow logs a real scikit-learn model in its sklearn flavour, readable with scikit-learn alone.
skops would save the estimator without pickle too, but it is not installed and imports slowly (tracking.py); the
rebuild is checked against the fitted model's predictions in tests/test_hgb.py, and refused for another
scikit-learn version's node layout.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tabduel.infra.settings import ModelSettings, _opt
from tabduel.models.family import Family

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class HGBConfig(ModelSettings, section="hgb"):
    """scikit-learn's histogram gradient boosting (LightGBM-style leaf-wise trees), early stopping on valid."""

    max_iter: int = _opt(1000, "maximum boosting rounds", ge=1)
    learning_rate: float = _opt(0.05, "shrinkage per round", gt=0)
    max_leaf_nodes: int = _opt(31, "maximum leaves per tree", ge=2)
    max_depth: int = _opt(0, "maximum tree depth (0: no limit)", ge=0, note="0: no limit")
    min_samples_leaf: int = _opt(20, "minimum rows in a leaf", ge=1)
    l2_regularization: float = _opt(0.0, "L2 regularisation of the leaf values", ge=0)
    max_features: float = _opt(1.0, "fraction of the features each split may use", gt=0, le=1)
    max_bins: int = _opt(255, "bins per feature, besides the one of missing values", ge=2, le=255)
    early_stopping_rounds: int = _opt(50, "stop after this many rounds without a better valid loss (0: off, every "
                                      "round kept)", ge=0, note="0: off")
    seed: int = _opt(4751, "random seed (feature subsampling)", ge=0)
    threads: int = _opt(0, "OpenMP threads (0: the cores free to this process)", ge=0, note="0: automatic")


FAMILY = Family(
    "hgb", "tabduel.models.hgb", packages=("scikit-learn", "numpy"), code=("tabduel.infra.runtime",),
    flavour="sklearn", native_missing=True, hint="lower --hgb-learning-rate",
    summary="Train scikit-learn's HistGradientBoostingRegressor (histogram trees, missing values taken natively, "
            "early stopping on valid) on the latest features.")
FORMAT = 1  # of model.json / model.npz


@dataclass
class HGBFit:
    """A fitted HistGradientBoostingRegressor, its per-round RMSEs and facts about the run."""

    model: Any
    history: dict[str, list[float]]
    info: dict[str, Any]


def estimator(cfg: HGBConfig) -> Any:
    """The unfitted HistGradientBoostingRegressor of the settings."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(
        loss="squared_error", learning_rate=cfg.learning_rate, max_iter=cfg.max_iter,
        max_leaf_nodes=cfg.max_leaf_nodes, max_depth=cfg.max_depth or None, min_samples_leaf=cfg.min_samples_leaf,
        l2_regularization=cfg.l2_regularization, max_features=cfg.max_features, max_bins=cfg.max_bins,
        categorical_features=None, early_stopping=cfg.early_stopping_rounds > 0, scoring="loss",
        n_iter_no_change=max(cfg.early_stopping_rounds, 1), random_state=cfg.seed)


def _rmse(scores: np.ndarray) -> list[float]:
    """Per-round RMSEs of scikit-learn's scores (minus the half squared error), the baseline's left out."""
    import numpy as np

    return [float(v) for v in np.sqrt(np.maximum(-2.0 * np.asarray(scores[1:], dtype=np.float64), 0.0))]


def fit(data: Any, cfg: HGBConfig, progress: Any = None) -> HGBFit:
    """Boost on train with valid as the early-stopping set; keep the rounds up to the best valid loss."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    from tabduel.infra.runtime import cpu_threads

    model = estimator(cfg)
    threads = cpu_threads(cfg.threads)
    start = time.perf_counter()
    with threadpool_limits(limits=threads, user_api="openmp"):
        if model.early_stopping:
            model.fit(data.x_train, data.y_train, X_val=data.x_valid, y_val=data.y_valid)
        else:
            model.fit(data.x_train, data.y_train)
    seconds = time.perf_counter() - start
    rounds = int(model.n_iter_)
    history: dict[str, list[float]] = {}
    best = rounds
    if model.early_stopping:  # validation_score_[i]: the valid score after i rounds (0: the baseline alone)
        history = {"round_train_rmse": _rmse(model.train_score_), "round_valid_rmse": _rmse(model.validation_score_)}
        best = max(1, int(np.argmax(model.validation_score_)))
        _keep(model, best)
    return HGBFit(model, history, {"rounds_run": rounds, "best_iteration": best, "threads": threads,
                                   "train_seconds": seconds})


def _keep(model: Any, rounds: int) -> None:
    """Cut a fitted model back to its first `rounds` trees."""
    model._predictors = model._predictors[:rounds]  # n_iter_ counts them


def save(result: HGBFit, directory: Path) -> None:
    """Write the trees' node tables (model.npz) and the parameters and baseline (model.json); no pickle."""
    import numpy as np
    import sklearn

    model = result.model
    arrays: dict[str, np.ndarray] = {}
    for i, (tree,) in enumerate(model._predictors):
        arrays[f"nodes_{i}"] = tree.nodes
        arrays[f"binned_bitsets_{i}"] = tree.binned_left_cat_bitsets
        arrays[f"raw_bitsets_{i}"] = tree.raw_left_cat_bitsets
    np.savez(Path(directory) / "model.npz", **arrays)
    meta = {"format": FORMAT, "sklearn": sklearn.__version__, "trees": len(model._predictors),
            "features": int(model.n_features_in_), "baseline": float(np.ravel(model._baseline_prediction)[0]),
            "params": model.get_params()}
    (Path(directory) / "model.json").write_text(json.dumps(meta, indent=2))


def load(directory: str | Path) -> Any:
    """The saved model as a fitted HistGradientBoostingRegressor (ready to predict, and to log in MLflow)."""
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.ensemble._hist_gradient_boosting.binning import _BinMapper
    from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

    from tabduel.infra.errors import TabduelError

    directory = Path(directory)
    meta = json.loads((directory / "model.json").read_text())
    model = HistGradientBoostingRegressor(**meta["params"])
    trees = []
    with np.load(directory / "model.npz", allow_pickle=False) as arrays:
        for i in range(meta["trees"]):
            nodes = arrays[f"nodes_{i}"]
            if nodes.dtype != PREDICTOR_RECORD_DTYPE:
                raise TabduelError(f"{directory}: saved by scikit-learn {meta['sklearn']}, whose tree layout this "
                                   f"scikit-learn does not read; train hgb again")
            trees.append([TreePredictor(nodes, arrays[f"binned_bitsets_{i}"], arrays[f"raw_bitsets_{i}"])])
    n = meta["features"]
    bins = _BinMapper()
    bins.is_categorical_ = np.zeros(n, dtype=np.uint8)  # no categorical features: no known categories
    bins.bin_thresholds_ = [np.zeros(0)] * n
    model._bin_mapper = bins
    model._predictors = trees
    model._baseline_prediction = np.full((1, 1), meta["baseline"], dtype=np.float64)
    model._loss = model._get_loss(sample_weight=None)
    model._preprocessor = None
    model._is_categorical_remapped = None
    model.is_categorical_ = None
    model.n_trees_per_iteration_ = 1
    model.n_features_in_ = n
    return model


def predict(model: Any, x: np.ndarray) -> np.ndarray:
    """(rows, features) -> (rows,) float32 predictions; NaN inputs follow each split's learned side."""
    import numpy as np

    return model.predict(np.asarray(x, dtype=np.float64)).astype(np.float32)
