"""The published implementations as peers of tabduel's own families: pytabkit's tuned-default regressors.

RealMLP-TD, LightGBM-TD and CatBoost-TD are the tuned defaults of Holzmüller et al. 2024 ("Better by Default");
TabM-D is TabM's default recipe (Gorishniy et al. 2024) as pytabkit packages it. Each is fitted on the CPU on the
train split, with the valid split as its validation set (the best epoch, or early stopping on boosting rounds), and
nothing is tuned: only the seed, the threads and, for tests, the epochs or rounds are settings.

They read the same imputed numeric matrices as tabduel's MLPs (pytabkit refuses NaN in numeric columns), every
column numeric: the comparison is of implementations on the same inputs, not of their categorical handling.

pytabkit (`pip install 'tabduel[peers]'`) is imported only when a peer is fitted or loaded; without it, a peer is
refused in one line. A fitted peer is saved with pickle (pytabkit's estimators have no other format): load only
models this machine wrote.
"""

from __future__ import annotations

import importlib
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tabduel.engine.data import Data
from tabduel.infra.config import (
    ModelSettings,
    PeerCatBoostConfig,
    PeerConfig,
    PeerLGBMConfig,
    PeerRealMLPConfig,
    PeerTabMConfig,
)
from tabduel.infra.errors import ConfigError
from tabduel.infra.runtime import cpu_threads
from tabduel.models.registry import IMPORT_NAMES, family

__all__ = ["fit", "save", "load", "predict"]


@dataclass(frozen=True)
class Peer:
    """One published implementation: pytabkit's estimator class and the argument its `iterations` setting sets."""

    estimator: str
    iterations: str


# One place per peer: its settings section and what pytabkit calls it.
PEERS: dict[type[PeerConfig], Peer] = {
    PeerRealMLPConfig: Peer("RealMLP_TD_Regressor", "n_epochs"),
    PeerTabMConfig: Peer("TabM_D_Regressor", "n_epochs"),
    PeerLGBMConfig: Peer("LGBM_TD_Regressor", "n_estimators"),
    PeerCatBoostConfig: Peer("CatBoost_TD_Regressor", "n_estimators"),
}
MODEL_FILE = "model.pkl"


@dataclass
class PeerFit:
    """A fitted pytabkit estimator and facts about the run (no per-epoch history: pytabkit keeps none)."""

    model: Any
    history: dict[str, list[float]]
    info: dict[str, Any]


def kind_of(cfg: PeerConfig) -> str:
    """The family kind (settings section) of a peer's settings."""
    return next(k for k, v in ModelSettings.sections.items() if v is type(cfg))


def pytabkit(kind: str) -> Any:
    """The pytabkit package; ConfigError in one line when the peers extra is not installed."""
    try:
        import pytabkit as module
    except ImportError as exc:
        raise ConfigError(f"{kind} needs the peers extra: pip install 'tabduel[peers]' ({exc})") from None
    return module


def preload(kind: str) -> None:
    """Import pytabkit and the library a peer fits with (pytabkit imports LightGBM and CatBoost on first use), so
    that no fit's clock counts an import; ConfigError in one line when one is missing."""
    family(kind).require()
    pytabkit(kind)
    for name in family(kind).packages:
        importlib.import_module(IMPORT_NAMES.get(name, name))


def estimator(cfg: PeerConfig) -> Any:
    """An unfitted pytabkit estimator of the peer that cfg configures: its tuned defaults, the CPU, cfg's seed and
    threads, and cfg's epochs or rounds when set."""
    peer = PEERS[type(cfg)]
    family(kind_of(cfg)).require()
    cls = getattr(pytabkit(kind_of(cfg)), peer.estimator)
    extra = {peer.iterations: cfg.iterations} if cfg.iterations else {}
    return cls(device="cpu", n_threads=cpu_threads(cfg.threads), random_state=cfg.seed, verbosity=-1, **extra)


def fit(data: Data, cfg: PeerConfig, on_step: Any = None) -> PeerFit:
    """Fit on the train split with the valid split as pytabkit's validation set (best epoch / early stopping)."""
    model = estimator(cfg)
    start = time.perf_counter()
    model.fit(_writable(data.x_train), _writable(data.y_train), X_val=_writable(data.x_valid),
              y_val=_writable(data.y_valid))
    info = {"device": "cpu", "threads": int(model.n_threads_), "train_seconds": time.perf_counter() - start,
            "estimator": PEERS[type(cfg)].estimator, **stopped_at(model)}
    return PeerFit(model, {}, info)


def stopped_at(model: Any) -> dict[str, int]:
    """What pytabkit chose on valid, where it says: the best epoch (RealMLP-TD) or the rounds kept (LightGBM,
    CatBoost); nothing for TabM-D."""
    params = getattr(model, "fit_params_", None) or {}
    if "n_estimators" in params:
        return {"best_iteration": int(params["n_estimators"])}
    stop = params.get("stop_epoch")
    if isinstance(stop, dict) and len(stop) == 1:
        return {"best_epoch": int(next(iter(stop.values())))}
    return {}


def _writable(x: np.ndarray) -> np.ndarray:
    """x as a writable float32 array (Parquet's arrays are read-only, which torch warns of inside pytabkit)."""
    x = np.asarray(x, dtype=np.float32)
    return x if x.flags.writeable else x.copy()


def save(result: PeerFit, directory: Path) -> None:
    """Pickle the fitted estimator into directory."""
    with (Path(directory) / MODEL_FILE).open("wb") as fh:
        pickle.dump(result.model, fh, protocol=pickle.HIGHEST_PROTOCOL)


def load(directory: str | Path) -> Any:
    """The saved estimator (pytabkit is needed to unpickle it)."""
    path = Path(directory) / MODEL_FILE
    pytabkit(f"the peer model in {directory}")
    with path.open("rb") as fh:
        return pickle.load(fh)


def predict(model: Any, x: np.ndarray) -> np.ndarray:
    """(rows, features) -> (rows,) float32 predictions."""
    return np.asarray(model.predict(_writable(x)), dtype=np.float32).reshape(-1)
