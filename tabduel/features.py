"""Features: date parts, ordinal or one-hot/cyclic encodings, target transform, split, scaling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tabduel.config import FeaturesConfig
from tabduel.dataset import DatasetSpec
from tabduel.errors import ConfigError, DataError
from tabduel.store import atomic_write_json

SPLITS = ("train", "valid", "test")
ROW = "row"  # position of the row in the ingested table, kept for joins (e.g. back to the date)
_PART_LEVELS = {"isoweekday": range(1, 8), "month": range(1, 13), "day_of_month": range(1, 32)}


def derive(df: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """Add date parts, encode categories as 1..k in spec order, transform the target, drop dates."""
    out = pd.DataFrame({ROW: np.arange(len(df), dtype=np.int64)})
    date_cols = [c.name for c in spec.columns if c.type == "date"]
    dates = pd.DatetimeIndex(df[date_cols[0]]) if date_cols else None
    for col in spec.columns:
        if col.type == "category":
            codes = pd.Categorical(df[col.name], categories=list(col.levels)).codes
            out[col.name] = codes.astype(np.int64) + 1
        elif col.type in ("int", "float"):
            out[col.name] = df[col.name].to_numpy()
    for name, part in spec.date_parts:  # the spec guarantees a date column when it has date parts
        values = {"isoweekday": dates.dayofweek + 1, "month": dates.month,
                  "day_of_month": dates.day, "year": dates.year}[part]
        out[name] = np.asarray(values, dtype=np.int64)
    y = df[spec.target].to_numpy(dtype=np.float64)
    out[spec.target] = np.log10(1.0 + y) if spec.transform == "log10p1" else y
    return out


def levels_of(name: str, spec: DatasetSpec) -> list[int]:
    """The fixed integer levels of a column, for one-hot encoding (same in every split)."""
    for part_name, part in spec.date_parts:
        if part_name == name and part in _PART_LEVELS:
            return list(_PART_LEVELS[part])
    col = spec.column(name)
    if col.type == "category":
        return list(range(1, len(col.levels) + 1))
    if col.type == "int" and col.min is not None and col.max is not None:
        return list(range(int(col.min), int(col.max) + 1))
    raise ConfigError(f"features.onehot: column {name!r} has no fixed set of levels")


def check_encodings(cfg: FeaturesConfig, spec: DatasetSpec) -> None:
    """Check the encoding options against the spec, naming any column that cannot take them."""
    for name in cfg.onehot + cfg.cyclic:
        if name not in spec.inputs:
            raise ConfigError(f"features: {name!r} is not an input column (inputs: {', '.join(spec.inputs)})")
    for name in cfg.onehot:
        levels_of(name, spec)
    for name in cfg.cyclic:
        if spec.period(name) is None:
            raise ConfigError(f"features.cyclic: column {name!r} has no period in the dataset spec")


def encode(df: pd.DataFrame, spec: DatasetSpec, cfg: FeaturesConfig) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Model inputs as columns; returns (frame, feature names, names of the columns to standardize)."""
    cols: dict[str, np.ndarray] = {}
    scaled: list[str] = []
    for name in spec.inputs:
        x = df[name].to_numpy()
        if name not in cfg.onehot and name not in cfg.cyclic:
            cols[name] = x.astype(np.float64)
            scaled.append(name)
        if name in cfg.onehot:
            for level in levels_of(name, spec):
                cols[f"{name}_{level}"] = (x == level).astype(np.float64)
        if name in cfg.cyclic:
            angle = 2 * np.pi * x.astype(np.float64) / spec.period(name)
            cols[f"{name}_sin"] = np.sin(angle)
            cols[f"{name}_cos"] = np.cos(angle)
    frame = pd.DataFrame(cols)
    return frame, list(frame.columns), scaled


def split_indices(n: int, seed: int, train_frac: float, valid_frac: float) -> dict[str, np.ndarray]:
    """Row indices of train/valid/test from one seeded permutation."""
    perm = np.random.default_rng(seed).permutation(n)
    n_train = int(round(n * train_frac))
    n_valid = int(round(n * valid_frac))
    parts = {"train": perm[:n_train], "valid": perm[n_train:n_train + n_valid], "test": perm[n_train + n_valid:]}
    for name, idx in parts.items():
        if len(idx) == 0:
            raise DataError(f"the {name} split is empty: {n} rows are too few for fractions "
                            f"{train_frac}/{valid_frac}")
    return parts


def fit_scaler(train: pd.DataFrame, columns: list[str]) -> dict[str, dict[str, float]]:
    """Mean and sd (ddof=1) of each column on the train split; a constant column gets sd 1."""
    mean = {c: float(train[c].mean()) for c in columns}
    sd = {}
    for c in columns:
        s = float(train[c].std(ddof=1)) if len(train) > 1 else 0.0
        sd[c] = s if s > 0 and np.isfinite(s) else 1.0
    return {"mean": mean, "sd": sd}


def apply_scaler(frame: pd.DataFrame, scaler: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Standardize the scaler's columns; other columns pass through."""
    out = frame.copy()
    for c, m in scaler["mean"].items():
        out[c] = (out[c] - m) / scaler["sd"][c]
    return out


def make_features(df: pd.DataFrame, spec: DatasetSpec,
                  cfg: FeaturesConfig) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Typed ingest table -> scaled train/valid/test frames and their manifest."""
    check_encodings(cfg, spec)
    derived = derive(df, spec)
    inputs, names, scaled = encode(derived, spec, cfg)
    table = pd.concat([derived[[ROW]], inputs, derived[[spec.target]]], axis=1)
    parts = split_indices(len(table), cfg.split_seed, cfg.train_frac, cfg.valid_frac)
    raw_splits = {name: table.iloc[idx].reset_index(drop=True) for name, idx in parts.items()}
    scaler = fit_scaler(raw_splits["train"], scaled)
    splits = {name: apply_scaler(frame, scaler) for name, frame in raw_splits.items()}
    manifest = {
        "dataset": spec.name,
        "features": names,
        "target": spec.target,
        "target_transform": spec.transform,
        "scaler": scaler,
        "split": {"seed": cfg.split_seed, "train_frac": cfg.train_frac, "valid_frac": cfg.valid_frac},
        "rows": {name: len(frame) for name, frame in splits.items()},
        "encodings": {"onehot": list(cfg.onehot), "cyclic": list(cfg.cyclic)},
    }
    return splits, manifest


def save_features(out: str | Path, splits: dict[str, pd.DataFrame], manifest: dict[str, Any]) -> Path:
    """Write the splits as <out>/<split>.parquet and the manifest as <out>/manifest.json; return out."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in splits.items():
        frame.to_parquet(out / f"{name}.parquet", index=False)
    atomic_write_json(out / "manifest.json", manifest)
    return out


def load_xy(path: str, manifest: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Read one split's Parquet file as float32 (rows, features) and (rows,) arrays."""
    frame = pd.read_parquet(path)
    x = frame[manifest["features"]].to_numpy(dtype=np.float32, copy=True)
    y = frame[manifest["target"]].to_numpy(dtype=np.float32, copy=True)
    return x, y
