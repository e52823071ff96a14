"""The arrays a model family trains on: the engine's input, and the lowest shared type of every family."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Data:
    """Train and valid arrays: x (rows, features) float32, y (rows,) float32."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    features: tuple[str, ...]
    numeric: tuple[str, ...] = ()  # the numeric columns the features step standardized (its manifest's scaler keys)
    # the one-hot encoded inputs: (input, its one-hot columns, its missing indicator among features or "")
    categories: tuple[tuple[str, tuple[str, ...], str], ...] = ()
