"""Features: date parts, ordinal or one-hot/cyclic encodings, target transform, split, scaling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tabduel.data import target
from tabduel.data.dataset import DatasetSpec
from tabduel.infra.config import FeaturesConfig
from tabduel.infra.errors import ConfigError, DataError
from tabduel.infra.store import atomic_write_json

SPLITS = ("train", "valid", "test")
ROW = "row"  # position of the row in the ingested table, kept for joins (e.g. back to the date)
MISSING_SUFFIX = "_missing"  # the indicator input of an imputed column
_PART_LEVELS = {"isoweekday": range(1, 8), "month": range(1, 13), "day_of_month": range(1, 32), "hour": range(24),
                "weekend": range(2)}


def date_part(dates: pd.DatetimeIndex, part: str) -> np.ndarray:
    """One calendar part of each timestamp as int64 (isoweekday: Monday = 1; weekend: 1 on Sat and Sun)."""
    values = {"hour": dates.hour, "minute": dates.minute, "isoweekday": dates.dayofweek + 1,
              "weekend": (dates.dayofweek >= 5).astype(int), "day_of_month": dates.day,
              "day_of_year": dates.dayofyear, "month": dates.month, "year": dates.year}[part]
    return np.asarray(values, dtype=np.int64)


def derive(df: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """Add date parts and encode categories as 1..k in spec order (rank order when ordered); missing stays NaN.

    The target is left on its original scale: its transform may be fitted on train (see make_features).
    """
    out = pd.DataFrame({ROW: np.arange(len(df), dtype=np.int64)})
    for col in spec.kept:
        if col.type == "category":
            codes = pd.Categorical(df[col.name], categories=list(col.levels)).codes.astype(np.float64) + 1
            codes[codes == 0] = np.nan  # pandas codes missing as -1
            out[col.name] = codes if np.isnan(codes).any() else codes.astype(np.int64)
        elif col.type in ("int", "float"):
            out[col.name] = df[col.name].to_numpy()
    if spec.date_parts:  # the spec guarantees a date column when it has date parts
        dates = pd.DatetimeIndex(df[spec.date_column])
        for name, part in spec.date_parts:
            out[name] = date_part(dates, part)
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


def onehot_columns(spec: DatasetSpec, cfg: FeaturesConfig) -> tuple[str, ...]:
    """Inputs one-hot encoded: those the settings name, plus unordered categories of more than two levels."""
    auto = tuple(name for name in spec.inputs if name in {c.name for c in spec.kept}
                 and spec.column(name).type == "category" and not spec.column(name).ordered
                 and len(spec.column(name).levels) > 2 and name not in cfg.cyclic)
    return tuple(dict.fromkeys(cfg.onehot + auto))


def encode(df: pd.DataFrame, spec: DatasetSpec, cfg: FeaturesConfig
           ) -> tuple[pd.DataFrame, list[str], list[str], dict[str, list[str]], dict[str, list[str]]]:
    """Model inputs as columns: (frame, feature names, columns to standardize, {indicator: columns it covers},
    {one-hot input: its columns, one per level in levels_of's order}).

    An imputed input's indicator `<name>_missing` follows its columns; it is not standardized.
    """
    cols: dict[str, np.ndarray] = {}
    scaled: list[str] = []
    covers: dict[str, list[str]] = {}
    categories: dict[str, list[str]] = {}
    onehot = onehot_columns(spec, cfg)
    for name in spec.inputs:
        x = df[name].to_numpy()
        mine: list[str] = []
        if name not in onehot and name not in cfg.cyclic:
            cols[name] = x.astype(np.float64)
            scaled.append(name)
            mine.append(name)
        if name in onehot:
            for level in levels_of(name, spec):
                cols[f"{name}_{level}"] = (x == level).astype(np.float64)
                mine.append(f"{name}_{level}")
            categories[name] = list(mine)
        if name in cfg.cyclic:
            angle = 2 * np.pi * x.astype(np.float64) / spec.period(name)
            cols[f"{name}_sin"] = np.sin(angle)
            cols[f"{name}_cos"] = np.cos(angle)
            mine += [f"{name}_sin", f"{name}_cos"]
        indicator = name + MISSING_SUFFIX
        if indicator in df.columns:
            cols[indicator] = df[indicator].to_numpy(dtype=np.float64)
            covers[indicator] = mine
    frame = pd.DataFrame(cols)
    return frame, list(frame.columns), scaled, covers, categories


def _statistic(values: pd.Series, how: str) -> float:
    """median, mean, or mode (the most frequent value; the smallest of a tie)."""
    if how == "median":
        return float(values.median())
    if how == "mean":
        return float(values.mean())
    counts = values.value_counts()
    return float(min(counts.index[counts == counts.max()]))


def impute(derived: pd.DataFrame, spec: DatasetSpec, train: np.ndarray) -> tuple[pd.DataFrame, dict[str, float]]:
    """Fill each input's missing values with its statistic on the train rows; add `<name>_missing` indicators."""
    out = derived.copy()
    fitted: dict[str, float] = {}
    for name in spec.inputs:
        if name not in out.columns or not out[name].isna().any():
            continue
        col = spec.column(name)
        known = out[name].iloc[train].dropna()
        if known.empty:
            raise DataError(f"column {name!r}: every value in the train split is missing; there is nothing to "
                            "impute from (drop the column from the inputs)")
        missing = out[name].isna()
        fitted[name] = _statistic(known, col.impute or "median")
        out[name] = out[name].fillna(fitted[name])
        if col.type == "category":
            out[name] = out[name].astype(np.int64)
        out[name + MISSING_SUFFIX] = missing.astype(np.float64)
    return out, fitted


def check_finite(frame: pd.DataFrame, columns: list[str], rows: np.ndarray, what: str) -> None:
    """Raise DataError naming the first column with a NaN or infinite value, and its first rows."""
    for name in columns:
        values = frame[name].to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            shown = ", ".join(f"row {int(rows[i]) + 1} ({values[i]!r})" for i in bad[:5])
            raise DataError(f"{what} {name!r} has {bad.size} NaN or infinite value(s) after reading and "
                            f"transforming: {shown} (rows of the ingested table)")


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
    """Typed ingest table -> scaled train/valid/test frames and their manifest.

    Everything fitted (target transform, imputation, scaling) is fitted on the train split only.
    """
    check_encodings(cfg, spec)
    derived = derive(df, spec)
    parts = split_indices(len(derived), cfg.split_seed, cfg.train_frac, cfg.valid_frac)
    rows = derived[ROW].to_numpy()
    y = derived[spec.target].to_numpy(dtype=np.float64)
    target.check_domain(y, spec.transform, spec.target, rows)
    params = target.fit(y[parts["train"]], spec.transform)
    z = target.forward(y, spec.transform, params)
    check_finite(pd.DataFrame({spec.target: z}), [spec.target], rows, f"target (after {spec.transform})")
    derived, imputed = impute(derived, spec, parts["train"])
    inputs, names, scaled, covers, categories = encode(derived, spec, cfg)
    check_finite(inputs, names, rows, "input")
    table = pd.concat([derived[[ROW]], inputs, pd.DataFrame({spec.target: z})], axis=1)
    raw_splits = {name: table.iloc[idx].reset_index(drop=True) for name, idx in parts.items()}
    scaler = fit_scaler(raw_splits["train"], scaled)
    splits = {name: apply_scaler(frame, scaler) for name, frame in raw_splits.items()}
    manifest = {
        "dataset": spec.name,
        "features": names,
        "target": spec.target,
        "target_transform": spec.transform,
        "target_params": params,
        "target_label": spec.target_label,
        "target_unit": spec.target_unit,
        "date_column": spec.date_column,
        "scaler": scaler,
        "imputed": imputed,
        "native_missing": covers,
        # each one-hot input's columns, a level each: a family may embed its category instead (realmlp, > 8 levels)
        "categories": categories,
        "split": {"seed": cfg.split_seed, "train_frac": cfg.train_frac, "valid_frac": cfg.valid_frac},
        "rows": {name: len(frame) for name, frame in splits.items()},
        "encodings": {"onehot": list(onehot_columns(spec, cfg)), "cyclic": list(cfg.cyclic)},
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


def feature_names(manifest: dict[str, Any], native_missing: bool = False) -> list[str]:
    """The model inputs: all features, or without the missing indicators for a family that takes NaN natively."""
    drop = set(manifest.get("native_missing", {})) if native_missing else set()
    return [name for name in manifest["features"] if name not in drop]


def load_xy(path: str, manifest: dict[str, Any], native_missing: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read one split's Parquet file as float32 (rows, features) and (rows,) arrays.

    native_missing: imputed cells become NaN again and their indicators are left out (XGBoost handles NaN itself).
    """
    with open(path, "rb") as f:  # Python's open: an audit hook (sys.addaudithook) sees which split is read
        frame = pd.read_parquet(f)
    if native_missing:
        for indicator, columns in manifest.get("native_missing", {}).items():
            frame.loc[frame[indicator].to_numpy() > 0.5, columns] = np.nan
    x = frame[feature_names(manifest, native_missing)].to_numpy(dtype=np.float32, copy=True)
    y = frame[manifest["target"]].to_numpy(dtype=np.float32, copy=True)
    return x, y
