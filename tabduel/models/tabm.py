"""The TabM-style family: the engine (engine/tabm.py) trains it; this module saves, loads and predicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tabduel.data.numeric import fit_numeric
from tabduel.engine import tabm
from tabduel.engine.data import Data
from tabduel.engine.torchfit import numeric_columns
from tabduel.infra.config import TabMConfig
from tabduel.models.torchnets import EpochCallback, NetFit, predict, save
from tabduel.models.torchnets import load as _load

__all__ = ["fit", "save", "load", "predict", "train_quantiles"]


def train_quantiles(data: Data, cfg: TabMConfig) -> Any:
    """The TabM paper's quantile map of the numeric columns, fitted on train (fit_numeric: n_train/30 quantiles,
    10-1000, train plus N(0, 1e-5^2) noise from cfg.seed), as a QuantileTransformer; None with numeric = standard."""
    numeric = numeric_columns(data)
    if cfg.numeric != "quantile" or not numeric:
        return None
    m = fit_numeric(data.x_train, tuple(numeric), "quantile", n_quantiles=tabm.n_quantiles(len(data.x_train)),
                    noise=tabm.QUANTILE_NOISE, seed=cfg.seed)
    return m.quantiles


def fit(data: Data, cfg: TabMConfig, on_epoch: EpochCallback | None = None) -> NetFit:
    """Train one TabM-style ensemble (k members, one model) with the engine, its inputs quantile-mapped."""
    result = tabm.fit(data, cfg, on_epoch, train_quantiles(data, cfg))
    return NetFit(result.model, dict(result.model.arch), result.history, result.info, result.valid_pred)


def load(directory: str | Path) -> tabm.TabMNet:
    """Rebuild the saved ensemble on the CPU in eval mode."""
    return _load(directory, tabm.TabMNet)
