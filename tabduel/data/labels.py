"""Words for the target's scale, from the dataset spec and the target transform (no plotting here)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tabduel.data.target import describe, inverse


def scale_label(title: str, transform: str, params: dict | None = None) -> str:
    """The scale models are fitted on, in words: 'log10(1 + y), y = rented bikes (bikes per hour)', or the title."""
    return title if transform == "none" else f"{describe(transform, params)}, y = {title}"


def original_scale(predictions: pd.DataFrame, models: list[str], transform: str,
                   params: dict | None = None) -> pd.DataFrame:
    """The predictions frame with observed and pred_<model> mapped back from the model scale to the original one."""
    out = predictions.copy()
    for column in ["observed"] + [f"pred_{kind}" for kind in models]:
        out[column] = inverse(out[column].to_numpy(dtype=np.float64), transform, params)
    return out
