"""The RealMLP-style family: the engine (engine/realmlp.py) trains it; this module saves, loads and predicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from tabduel.engine import realmlp, realmlp_population
from tabduel.engine.data import Data
from tabduel.infra.config import RealMLPConfig
from tabduel.models.tabm import train_quantiles
from tabduel.models.torchnets import EpochCallback, NetFit, predict, save
from tabduel.models.torchnets import load as _load

__all__ = ["fit", "fit_population", "save", "load", "predict"]


def fit(data: Data, cfg: RealMLPConfig, on_epoch: EpochCallback | None = None) -> NetFit:
    """Train one RealMLP-style net with the engine (numeric = quantile: the map fitted on train, as TabM's)."""
    result = realmlp.fit(data, cfg, on_epoch, train_quantiles(data, cfg))
    return NetFit(result.model, dict(result.model.arch), result.history, result.info, result.valid_pred)


def fit_population(data: Data, cfg: RealMLPConfig, members: Sequence[realmlp_population.Member]
                   ) -> tuple[list[NetFit | None], list[str], dict[str, Any]]:
    """Train RealMLP-style nets of cfg's shape as one population (engine/realmlp_population.py), member k as fit
    trains realmlp_population.member_config(cfg, members[k]); per member its NetFit (None where it diverged) and
    the divergence message fit would raise (else ""), and the population's facts."""
    members = tuple(members)
    if cfg.numeric == "quantile" and len({m.seed for m in members}) > 1:
        raise ValueError("numeric = quantile fits its map with the seed's noise: a population's members need one seed")
    quantiles = train_quantiles(data, realmlp_population.member_config(cfg, members[0])) if members else None
    pop = realmlp_population.fit(data, cfg, members, quantiles)
    fits = [None if f is None else NetFit(f.model, dict(f.model.arch), f.history, f.info) for f in pop.fits]
    return fits, pop.errors, pop.info


def load(directory: str | Path) -> realmlp.RealMLPNet:
    """Rebuild the saved net on the CPU in eval mode."""
    return _load(directory, realmlp.RealMLPNet)
