"""The TabM-style family: the engine (engine/tabm.py) trains it; this module saves, loads and predicts."""

from __future__ import annotations

from pathlib import Path

from tabduel.engine import tabm
from tabduel.engine.data import Data
from tabduel.infra.config import TabMConfig
from tabduel.models.torchnets import EpochCallback, NetFit, predict, save
from tabduel.models.torchnets import load as _load

__all__ = ["fit", "save", "load", "predict"]


def fit(data: Data, cfg: TabMConfig, on_epoch: EpochCallback | None = None) -> NetFit:
    """Train one TabM-style ensemble (k members, one model) with the engine."""
    result = tabm.fit(data, cfg, on_epoch)
    return NetFit(result.model, dict(result.model.arch), result.history, result.info)


def load(directory: str | Path) -> tabm.TabMNet:
    """Rebuild the saved ensemble on the CPU in eval mode."""
    return _load(directory, tabm.TabMNet)
