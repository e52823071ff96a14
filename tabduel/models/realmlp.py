"""The RealMLP-style family: the engine (engine/realmlp.py) trains it; this module saves, loads and predicts."""

from __future__ import annotations

from pathlib import Path

from tabduel.engine import realmlp
from tabduel.engine.data import Data
from tabduel.infra.config import RealMLPConfig
from tabduel.models.tabm import train_quantiles
from tabduel.models.torchnets import EpochCallback, NetFit, predict, save
from tabduel.models.torchnets import load as _load

__all__ = ["fit", "save", "load", "predict"]


def fit(data: Data, cfg: RealMLPConfig, on_epoch: EpochCallback | None = None) -> NetFit:
    """Train one RealMLP-style net with the engine (numeric = quantile: the map fitted on train, as TabM's)."""
    result = realmlp.fit(data, cfg, on_epoch, train_quantiles(data, cfg))
    return NetFit(result.model, dict(result.model.arch), result.history, result.info)


def load(directory: str | Path) -> realmlp.RealMLPNet:
    """Rebuild the saved net on the CPU in eval mode."""
    return _load(directory, realmlp.RealMLPNet)
