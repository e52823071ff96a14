"""Numeric-feature embeddings in the manner of Gorishniy et al. 2022, "On Embeddings for Numerical Features in
Tabular Deep Learning": piecewise-linear encoding (PLE) with quantile bins, and periodic embeddings.

Both are fitted on the train split only and applied to every split as a preprocessing step. PLE is exactly the
paper's (it is not trained there either). The periodic embedding keeps its random frequencies fixed: the paper
also trains them, which tabduel's hand-written backward pass does not; the MLP's first layer then plays the part of
the paper's linear layer ("PL").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tabduel.infra.errors import ConfigError

KINDS = ("ple", "periodic")


@dataclass(frozen=True)
class Embedding:
    """A fitted embedding of some columns of x: PLE bin edges or periodic frequencies per column."""

    kind: str
    columns: tuple[int, ...]  # indices into x's columns; the other columns pass through unchanged
    edges: tuple[np.ndarray, ...] = ()  # PLE: the bin edges of each column, (bins + 1,)
    frequencies: np.ndarray | None = None  # periodic: (columns, k)

    @property
    def width(self) -> int:
        """Number of output columns that replace the embedded ones."""
        if self.kind == "ple":
            return sum(len(e) - 1 for e in self.edges)
        return 2 * int(np.prod(self.frequencies.shape))


def _check_columns(x: np.ndarray, columns: tuple[int, ...]) -> None:
    if x.ndim != 2:
        raise ConfigError(f"embedding: x must be (rows, features), got shape {x.shape}")
    bad = [c for c in columns if not 0 <= c < x.shape[1]]
    if bad:
        raise ConfigError(f"embedding: column index {bad[0]} is outside x's {x.shape[1]} columns")


def fit_ple(x_train: np.ndarray, columns: tuple[int, ...], bins: int) -> Embedding:
    """Quantile bin edges of each column on the train split; a column with fewer distinct values gets fewer bins."""
    if bins < 2:
        raise ConfigError(f"ple bins = {bins}: must be at least 2")
    _check_columns(x_train, columns)
    edges = []
    for c in columns:
        e = np.unique(np.quantile(x_train[:, c].astype(np.float64), np.linspace(0, 1, bins + 1)))
        edges.append(e if len(e) >= 2 else np.array([e[0] - 0.5, e[0] + 0.5]))  # a constant column: one bin
    return Embedding("ple", tuple(columns), edges=tuple(edges))


def fit_periodic(n_features: int, columns: tuple[int, ...], k: int, sigma: float, seed: int) -> Embedding:
    """k frequencies per column drawn from N(0, sigma^2), as the paper initialises them."""
    if k < 1:
        raise ConfigError(f"periodic frequencies = {k}: must be at least 1")
    if sigma <= 0:
        raise ConfigError(f"periodic sigma = {sigma}: must be positive")
    _check_columns(np.zeros((1, n_features)), columns)
    freqs = np.random.default_rng(seed).normal(0.0, sigma, size=(len(columns), k))
    return Embedding("periodic", tuple(columns), frequencies=freqs)


def ple(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(rows,) -> (rows, bins): 1 for bins below x, the fraction of x's own bin, 0 above; the first bin
    extends left and the last extends right unclipped, as in the paper."""
    lo, hi = edges[:-1], edges[1:]
    t = (x[:, None] - lo) / (hi - lo)  # (rows, bins)
    out = np.clip(t, 0.0, 1.0)
    out[:, 0] = np.minimum(t[:, 0], 1.0)
    out[:, -1] = np.maximum(t[:, -1], 0.0) if len(lo) > 1 else t[:, -1]
    return out


def apply(emb: Embedding, x: np.ndarray) -> np.ndarray:
    """(rows, features) -> (rows, features - embedded + width) float32: embedded columns replaced, others kept."""
    _check_columns(x, emb.columns)
    keep = [c for c in range(x.shape[1]) if c not in emb.columns]
    parts = [x[:, keep].astype(np.float64)]
    if emb.kind == "ple":
        parts += [ple(x[:, c].astype(np.float64), e) for c, e in zip(emb.columns, emb.edges)]
    elif emb.kind == "periodic":
        angle = 2 * np.pi * x[:, emb.columns, None].astype(np.float64) * emb.frequencies  # (rows, columns, k)
        parts += [np.sin(angle).reshape(len(x), -1), np.cos(angle).reshape(len(x), -1)]
    else:
        raise ConfigError(f"embedding kind {emb.kind!r} is not one of: {', '.join(KINDS)}")
    return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)
