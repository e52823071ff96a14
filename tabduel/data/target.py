"""Target transforms: one place per transform, fitted on train, with the inverse back to the original scale."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from tabduel.infra.errors import DataError


@dataclass(frozen=True)
class Transform:
    """A target transform: its domain, forward and inverse maps; `fit` learns its params from train values."""

    name: str
    domain: str  # in words, for errors
    valid: Callable[[np.ndarray], np.ndarray]
    forward: Callable[[np.ndarray, dict[str, float]], np.ndarray]
    inverse: Callable[[np.ndarray, dict[str, float]], np.ndarray]
    fit: Callable[[np.ndarray], dict[str, float]] = lambda y: {}


def _yj_forward(y: np.ndarray, p: dict[str, float]) -> np.ndarray:
    lam, out = p["lambda"], np.empty_like(y, dtype=np.float64)
    pos = y >= 0
    out[pos] = np.log1p(y[pos]) if abs(lam) < 1e-8 else (np.power(y[pos] + 1, lam) - 1) / lam
    neg = ~pos
    out[neg] = -np.log1p(-y[neg]) if abs(lam - 2) < 1e-8 else -(np.power(1 - y[neg], 2 - lam) - 1) / (2 - lam)
    return out


def _yj_inverse(z: np.ndarray, p: dict[str, float]) -> np.ndarray:
    lam, out = p["lambda"], np.empty_like(z, dtype=np.float64)
    pos = z >= 0
    with np.errstate(invalid="ignore", over="ignore"):
        out[pos] = np.expm1(z[pos]) if abs(lam) < 1e-8 else np.power(np.maximum(z[pos] * lam + 1, 0), 1 / lam) - 1
        neg = ~pos
        out[neg] = (-np.expm1(-z[neg]) if abs(lam - 2) < 1e-8
                    else 1 - np.power(np.maximum(-(2 - lam) * z[neg] + 1, 0), 1 / (2 - lam)))
    return out


def _yj_fit(y: np.ndarray) -> dict[str, float]:
    from scipy import stats

    return {"lambda": float(stats.yeojohnson_normmax(np.asarray(y, dtype=np.float64)))}


TRANSFORMS: dict[str, Transform] = {t.name: t for t in (
    Transform("none", "any number", lambda y: np.isfinite(y), lambda y, p: y, lambda z, p: z),
    Transform("log", "above 0", lambda y: y > 0, lambda y, p: np.log(y), lambda z, p: np.exp(z)),
    Transform("log1p", "above -1", lambda y: y > -1, lambda y, p: np.log1p(y), lambda z, p: np.expm1(z)),
    Transform("log10p1", "above -1", lambda y: y > -1, lambda y, p: np.log10(1.0 + y),
              lambda z, p: np.power(10.0, z) - 1.0),
    Transform("sqrt", "0 or above", lambda y: y >= 0, lambda y, p: np.sqrt(y), lambda z, p: np.square(z)),
    Transform("yeo-johnson", "any number", lambda y: np.isfinite(y), _yj_forward, _yj_inverse, _yj_fit),
)}


def check_domain(y: np.ndarray, name: str, column: str, rows: np.ndarray | None = None) -> None:
    """Raise DataError naming the column and first rows whose target value the transform cannot take."""
    t = TRANSFORMS[name]
    y = np.asarray(y, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bad = np.flatnonzero(~(t.valid(y) & np.isfinite(y)))
    if bad.size:
        where = bad if rows is None else np.asarray(rows)[bad]
        shown = ", ".join(f"row {int(r) + 1} ({y[i]!r})" for r, i in zip(where[:5], bad[:5]))
        raise DataError(f"target {column!r}: transform {name!r} needs values {t.domain}; {bad.size} do not: {shown}")


def fit(y_train: np.ndarray, name: str) -> dict[str, Any]:
    """The transform's params fitted on the train targets (empty for fixed transforms)."""
    return TRANSFORMS[name].fit(np.asarray(y_train, dtype=np.float64))


def forward(y: np.ndarray, name: str, params: dict[str, Any] | None = None) -> np.ndarray:
    """Original scale -> model scale."""
    return TRANSFORMS[name].forward(np.asarray(y, dtype=np.float64), params or {})


def inverse(z: np.ndarray, name: str, params: dict[str, Any] | None = None) -> np.ndarray:
    """Model scale -> original scale."""
    return TRANSFORMS[name].inverse(np.asarray(z, dtype=np.float64), params or {})


def describe(name: str, params: dict[str, Any] | None = None) -> str:
    """The transform as a short formula for labels: 'log10(1 + y)', 'yeo-johnson(y; lambda=0.21)'."""
    formulas = {"none": "y", "log": "log(y)", "log1p": "log(1 + y)", "log10p1": "log10(1 + y)", "sqrt": "sqrt(y)"}
    if name == "yeo-johnson":
        lam = (params or {}).get("lambda")
        return "yeo-johnson(y)" if lam is None else f"yeo-johnson(y; lambda={lam:.3g})"
    return formulas[name]
