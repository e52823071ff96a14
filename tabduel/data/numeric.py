"""How an MLP sees its numeric inputs beyond standardization: clipped to the train range, or quantile-normalized.

A tree splits at thresholds, so a value past the train range gets the prediction of the last one seen. An MLP
extrapolates: on Seoul Bike, test hours with 31 and 37 standard deviations of rain (the train maximum is 22.5)
were predicted more than ten times too low. Both maps here are fitted on the train split only and bound every split
to what train has seen; `quantile` also spreads skewed columns (rain, snow, solar) over a normal scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tabduel.infra.config import NUMERIC_MAPS as NUMERIC
from tabduel.infra.errors import ConfigError


@dataclass(frozen=True)
class NumericMap:
    """A fitted map of some columns of x; the other columns pass through unchanged."""

    kind: str
    columns: tuple[int, ...]
    lo: np.ndarray | None = None  # clip: (columns,) train minimum
    hi: np.ndarray | None = None  # clip: (columns,) train maximum
    quantiles: Any = None  # quantile: sklearn's QuantileTransformer, fitted on the train columns
    center: np.ndarray | None = None  # robust: (columns,) train median
    scale: np.ndarray | None = None  # robust: (columns,) train interquartile range (1 where it is 0)


def fit_numeric(x_train: np.ndarray, columns: tuple[int, ...], kind: str, *, n_quantiles: int = 0,
                noise: float = 0.0, seed: int = 0) -> NumericMap:
    """Fit the map `kind` (standard: none, clip, quantile, robust) of x_train's columns on the train split; quantile
    takes n_quantiles (0: min(1000, rows)) and, with noise > 0, fits on train plus N(0, noise^2) drawn from seed."""
    if kind not in NUMERIC:
        raise ConfigError(f"numeric map {kind!r} is not one of: {', '.join(NUMERIC)}")
    if x_train.ndim != 2 or any(not 0 <= c < x_train.shape[1] for c in columns):
        raise ConfigError(f"numeric map: columns {columns} do not all index x's shape {x_train.shape}")
    if kind == "standard":
        return NumericMap(kind, tuple(columns))
    part = x_train[:, list(columns)].astype(np.float64)  # (rows, columns)
    if kind == "clip":
        return NumericMap(kind, tuple(columns), lo=part.min(axis=0), hi=part.max(axis=0))
    if kind == "robust":
        q1, med, q3 = np.percentile(part, [25, 50, 75], axis=0)
        iqr = q3 - q1
        return NumericMap(kind, tuple(columns), center=med, scale=np.where(iqr > 0, iqr, 1.0))
    from sklearn.preprocessing import QuantileTransformer

    if n_quantiles < 0 or noise < 0:
        raise ConfigError(f"numeric map: n_quantiles ({n_quantiles}) and noise ({noise}) must not be negative")
    if noise > 0:  # ties (a column of few values) spread a little, so that the quantiles differ (TabM's example)
        part = part + np.random.default_rng(seed).normal(0.0, noise, part.shape)
    qt = QuantileTransformer(n_quantiles=min(n_quantiles or 1000, len(part)), output_distribution="normal",
                             subsample=None)
    return NumericMap(kind, tuple(columns), quantiles=qt.fit(part))


def map_numeric(m: NumericMap, x: np.ndarray) -> np.ndarray:
    """(rows, features) -> (rows, features) float32 with m's columns mapped; x itself is left as it was."""
    if m.kind == "standard" or not m.columns:
        return x
    out = np.array(x, dtype=np.float32, copy=True)
    cols = list(m.columns)
    if m.kind == "clip":
        out[:, cols] = np.clip(out[:, cols], m.lo, m.hi)
    elif m.kind == "robust":  # median and IQR: an outlier moves neither, unlike the mean and sd
        out[:, cols] = (out[:, cols] - m.center) / m.scale
    else:  # values past the train range map to the ends of the normal scale (sklearn bounds them)
        out[:, cols] = m.quantiles.transform(out[:, cols].astype(np.float64))
    return out
