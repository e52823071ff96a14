"""Controlled corruptions of an ingested table, for the bench's test of hypothesis 2 (MLPs are less robust to messy
data). Each one is a function (table, spec, search rows, level, rng) -> (table, spec), registered in CORRUPTIONS.

The search rows are the train and valid rows of an outer split: row corruptions (missing cells, outliers, label
noise) touch only them, so the outer test set stays as published; column corruptions (extra features, exp
transforms) must reach every row, since a model needs the same inputs at test time, and anything they fit is
fitted on the search rows only. The features step then fits imputation, scaling and the target transform on the
corrupted train split, as it would on a messy file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from tabduel.data.dataset import ColumnSpec, DatasetSpec
from tabduel.infra.errors import ConfigError

Corrupt = Callable[[pd.DataFrame, DatasetSpec, np.ndarray, float, np.random.Generator],
                   tuple[pd.DataFrame, DatasetSpec]]


def _input_columns(spec: DatasetSpec, types: tuple[str, ...]) -> list[str]:
    """Inputs that are columns of the table (not date parts) of the given types."""
    kept = {c.name: c for c in spec.kept}
    return [n for n in spec.inputs if n in kept and kept[n].type in types]


def missing(table: pd.DataFrame, spec: DatasetSpec, rows: np.ndarray, level: float, rng: np.random.Generator
            ) -> tuple[pd.DataFrame, DatasetSpec]:
    """Missing completely at random: a `level` fraction of the search rows' cells of every input column emptied;
    the features step imputes them (median, mode for categories) and adds missing indicators."""
    out = table.copy()
    columns = []
    for name in _input_columns(spec, ("int", "float", "category")):
        hit = rows[rng.random(len(rows)) < level]
        if not len(hit):
            continue
        if out[name].dtype.kind in "iub":
            out[name] = out[name].astype(np.float64)
        out.loc[hit, name] = np.nan
        columns.append(name)
    new = tuple(dataclasses.replace(c, impute=c.impute or ("mode" if c.type == "category" else "median"))
                if c.name in columns else c for c in spec.columns)
    return out, dataclasses.replace(spec, columns=new)


def outliers(table: pd.DataFrame, spec: DatasetSpec, rows: np.ndarray, level: float, rng: np.random.Generator
             ) -> tuple[pd.DataFrame, DatasetSpec]:
    """A `level` fraction of the search rows' numeric input values pushed away from the column's median on those
    rows by a factor drawn uniformly from 10 to 100."""
    out = table.copy()
    for name in _input_columns(spec, ("int", "float")):
        values = out[name].to_numpy(dtype=np.float64, copy=True)
        hit = rows[rng.random(len(rows)) < level]
        if not len(hit):
            continue
        med = float(np.nanmedian(values[rows]))
        spread = values[hit] - med
        spread[spread == 0] = float(np.nanstd(values[rows])) or 1.0  # a value at the median still moves
        values[hit] = med + spread * rng.uniform(10, 100, len(hit))
        out[name] = values
    return out, spec


def extra(table: pd.DataFrame, spec: DatasetSpec, rows: np.ndarray, level: float, rng: np.random.Generator
          ) -> tuple[pd.DataFrame, DatasetSpec]:
    """round(level x inputs) uninformative inputs: each a numeric input's values shuffled, within the search rows
    and within the other rows apart, so its distribution is realistic and it says nothing of the target."""
    numeric = _input_columns(spec, ("int", "float"))
    count = int(round(level * len(spec.inputs)))
    if not count or not numeric:
        return table, spec
    out = table.copy()
    rest = np.setdiff1d(np.arange(len(table)), rows)
    columns, names = list(spec.columns), list(spec.inputs)
    for i in range(count):
        source = out[numeric[i % len(numeric)]].to_numpy(dtype=np.float64)
        values = source.copy()
        for part in (rows, rest):
            values[part] = source[rng.permutation(part)]
        name = f"noise_{i + 1}"
        out[name] = values
        columns.append(ColumnSpec(raw=name, name=name, type="float"))
        names.append(name)
    return out, dataclasses.replace(spec, columns=tuple(columns), inputs=tuple(names))


def exp(table: pd.DataFrame, spec: DatasetSpec, rows: np.ndarray, level: float, rng: np.random.Generator
        ) -> tuple[pd.DataFrame, DatasetSpec]:
    """A `level` fraction of the numeric inputs (chosen at random) replaced by exp(2 z), z standardized with the
    search rows' mean and sd: monotone, so a tree sees the same splits, but heavy-tailed (log-normal, sigma 2)."""
    numeric = _input_columns(spec, ("int", "float"))
    count = int(round(level * len(numeric)))
    out = table.copy()
    for name in rng.permutation(numeric)[:count] if count else []:
        values = out[name].to_numpy(dtype=np.float64)
        mean, sd = float(np.nanmean(values[rows])), float(np.nanstd(values[rows])) or 1.0
        out[name] = np.exp(2 * (values - mean) / sd)
    return out, spec


def label_noise(table: pd.DataFrame, spec: DatasetSpec, rows: np.ndarray, level: float, rng: np.random.Generator
                ) -> tuple[pd.DataFrame, DatasetSpec]:
    """A `level` fraction of the search rows' targets replaced by targets of other search rows, drawn at random
    (values stay in the target's domain, so its transform still applies)."""
    out = table.copy()
    hit = rows[rng.random(len(rows)) < level]
    if len(hit):
        y = out[spec.target].to_numpy(copy=True)
        y[hit] = y[rng.choice(rows, len(hit))]
        out[spec.target] = y
    return out, spec


@dataclass(frozen=True)
class Corruption:
    """A registered corruption: its function and the levels the bench runs by default (0 is the clean data)."""

    apply: Corrupt
    levels: tuple[float, ...]
    what: str


CORRUPTIONS: dict[str, Corruption] = {
    "missing": Corruption(missing, (0.0, 0.1, 0.3), "cells missing completely at random (fraction)"),
    "outliers": Corruption(outliers, (0.0, 0.01, 0.05), "numeric input values scaled 10-100x (fraction)"),
    "extra": Corruption(extra, (0.0, 0.5, 1.0), "uninformative inputs added (per input)"),
    "exp": Corruption(exp, (0.0, 0.5, 1.0), "numeric inputs through exp (fraction)"),
    "label_noise": Corruption(label_noise, (0.0, 0.1, 0.3), "targets replaced by others' (fraction)"),
}


def check(name: str) -> Corruption:
    """The registered corruption, or ConfigError naming the known ones."""
    if name not in CORRUPTIONS:
        raise ConfigError(f"corruption {name!r} is not one of: {', '.join(CORRUPTIONS)}")
    return CORRUPTIONS[name]


def corrupt(name: str, table: pd.DataFrame, spec: DatasetSpec, rows: np.ndarray, level: float, seed: int
            ) -> tuple[pd.DataFrame, DatasetSpec]:
    """Apply corruption `name` at `level` to the table (search rows `rows`), seeded; level 0 returns it as is."""
    c = check(name)
    if not 0 <= level <= 1:
        raise ConfigError(f"corruption {name}: level = {level} must be between 0 and 1")
    if level == 0:
        return table, spec
    return c.apply(table.reset_index(drop=True), spec, np.asarray(rows), level, np.random.default_rng(seed))
