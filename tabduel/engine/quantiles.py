"""The TabM paper's quantile map of numeric inputs in torch (sklearn's QuantileTransformer with normal output), which
tabm and realmlp (numeric = quantile) carry as buffers, so that a saved network maps raw inputs by itself."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from tabduel.engine.torchfit import Arrays, numeric_columns

Tensor = torch.Tensor
QUANTILE_NOISE = 1e-5  # sd of the noise added to train before fitting the quantiles (TabM's example.ipynb)
BOUND = 1e-7  # sklearn's QuantileTransformer: a value within this of the ends maps to the end's score


def n_quantiles(n_train: int) -> int:
    """The TabM paper's number of quantiles: n_train // 30, at least 10 and at most 1000."""
    return max(min(n_train // 30, 1000), 10)


def _interp(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """np.interp per column: x (rows, n), xp and fp (q, n) with xp ascending per column (ties allowed)."""
    xs, xpt = x.t().contiguous(), xp.t().contiguous()  # (n, rows), (n, q)
    hi = torch.searchsorted(xpt, xs, right=True).clamp(1, xp.shape[0] - 1)  # first knot above x (np.interp's)
    x0, x1 = xpt.gather(1, hi - 1), xpt.gather(1, hi)
    f0, f1 = fp.t().gather(1, hi - 1), fp.t().gather(1, hi)
    span = x1 - x0
    t = torch.where(span > 0, (xs - x0) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(xs))
    out = f0 + t.clamp(0, 1) * (f1 - f0)
    out = torch.where(xs <= xpt[:, :1], fp.t()[:, :1], out)
    return torch.where(xs >= xpt[:, -1:], fp.t()[:, -1:], out).t()


class QuantileMap(nn.Module):
    """sklearn's QuantileTransformer(output_distribution="normal").transform of the numeric columns, in torch: its
    fitted quantiles and references are buffers, so that the saved weights carry the map."""

    def __init__(self, q: int, n: int):
        super().__init__()
        self.register_buffer("quantiles", torch.zeros(q, n))
        self.register_buffer("references", torch.linspace(0, 1, q))

    @torch.no_grad()
    def set(self, transformer: Any) -> None:
        """Load a fitted QuantileTransformer's quantiles_ (q, n) and references_ (q,)."""
        self.quantiles.copy_(torch.from_numpy(np.asarray(transformer.quantiles_, dtype=np.float32)))
        self.references.copy_(torch.from_numpy(np.asarray(transformer.references_, dtype=np.float32)))

    def forward(self, x: Tensor) -> Tensor:
        """(..., n) -> (..., n) normal scores, as sklearn computes them (in float64 where the device has it)."""
        shape = x.shape
        dtype = torch.float32 if x.device.type == "mps" else torch.float64
        x2 = x.reshape(-1, shape[-1]).to(dtype)
        q = self.quantiles.to(dtype)
        r = self.references.to(dtype).unsqueeze(1).expand_as(q)
        # sklearn: the mean of the interpolation up and down, so that tied quantiles map to their middle
        p = 0.5 * (_interp(x2, q, r) - _interp(-x2, -q.flip(0), -r.flip(0)))
        p = torch.where(x2 + BOUND > q[-1:], torch.ones_like(p), p)  # sklearn's order: the upper end, then the lower
        p = torch.where(x2 - BOUND < q[:1], torch.zeros_like(p), p)
        eps = float(np.spacing(1))
        z = torch.special.ndtri(p.clamp(BOUND - eps, 1 - (BOUND - eps)))
        return z.to(x.dtype).reshape(shape)


def numeric_inputs(data: Arrays, cfg: Any, quantiles: Any = None) -> tuple[np.ndarray, Any]:
    """The train split's numeric columns as the network's embedding sees them, and the quantile map it applies
    (quantiles: a QuantileTransformer fitted on them, which numeric = quantile needs; None with numeric = standard)."""
    numeric = numeric_columns(data)
    x = np.asarray(data.x_train[:, numeric], dtype=np.float32)
    if cfg.numeric != "quantile" or not numeric:
        return x, None
    if quantiles is None or np.shape(getattr(quantiles, "quantiles_", None))[-1:] != (len(numeric),):
        raise ValueError(f"numeric = quantile needs a QuantileTransformer fitted on the {len(numeric)} numeric "
                         "train columns (tabduel.models.tabm.train_quantiles fits it)")
    qmap = QuantileMap(quantiles.quantiles_.shape[0], len(numeric))
    qmap.set(quantiles)
    with torch.no_grad():  # the network's own map, so that the bins are those of what it will see
        return qmap(torch.from_numpy(x)).numpy(), quantiles
