"""K-fold bagged trials, as TabArena bags its configs: each trial is K fits on the search's rows (train + valid),
fit k trained without fold k and stopped early on it; the trial's score is the MSE of its out-of-fold predictions,
its model the mean of its K fits, and the post-hoc ensemble mixes trials on those out-of-fold predictions.

The folds are written once per cell (`make_folds`) as features folders of their own, so every family's run function
(search/trials.py) reads a fold as it reads any train/valid split: one place for bagging, whatever the family.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tabduel.infra.errors import TabduelError
from tabduel.search.families import CPU_SPENT, run_trials, search_family
from tabduel.search.scores import mse

SPLITS = ("train.parquet", "valid.parquet")


@dataclass(frozen=True)
class Folds:
    """A features view's K folds: one features folder per fold, and the targets of the rows in out-of-fold order
    (fold 0's valid rows, then fold 1's, ...)."""

    dirs: tuple[str, ...]
    y: np.ndarray = field(repr=False)  # (n_train + n_valid,) float32, on the model's (transformed) scale


def make_folds(view: str | Path, root: str | Path, k: int, seed: int) -> Folds:
    """<root>/<view name>-bag<k>-s<seed>/fold<i>/: the view's train and valid rows dealt into k folds (a permutation
    seeded by `seed`); fold i's folder trains on the other folds and validates on fold i, its other files (the
    manifest; no split, so never a test file) linked from the view. Written once, whole or not at all."""
    view = Path(view)
    dest = Path(root) / f"{view.name}-bag{k}-s{seed}"
    if not dest.is_dir():
        rows = pd.concat([pd.read_parquet(view / name) for name in SPLITS], ignore_index=True)
        fold = np.random.default_rng(seed).permutation(len(rows)) % k  # (rows,) each row's fold, sizes within 1
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
        for i in range(k):
            d = tmp / f"fold{i}"
            d.mkdir()
            for f in view.iterdir():
                if f.is_file() and f.suffix != ".parquet":  # the manifest; never a split (nor a test file)
                    try:
                        os.link(f, d / f.name)
                    except OSError:
                        shutil.copy2(f, d / f.name)
            rows[fold != i].to_parquet(d / "train.parquet", index=False)
            rows[fold == i].to_parquet(d / "valid.parquet", index=False)
        try:
            os.rename(tmp, dest)
        except OSError:  # another cell made it first
            shutil.rmtree(tmp, ignore_errors=True)
    dirs = tuple(str(dest / f"fold{i}") for i in range(k))
    target = json.loads((Path(dirs[0]) / "manifest.json").read_text())["target"]
    y = np.concatenate([pd.read_parquet(Path(d) / "valid.parquet", columns=[target])[target].to_numpy(np.float32)
                        for d in dirs])
    return Folds(dirs, y)


@dataclass
class KeptBag:
    """A bagged trial as it was fitted: its K fits (KeptMLP or KeptModel, fit i validated on fold i) and their
    out-of-fold predictions; it predicts new rows as the mean of its fits."""

    fits: list[Any]
    valid: np.ndarray  # (n_train + n_valid,) out-of-fold predictions, in the folds' order
    source: str = ""  # the features view the folds were dealt from (whose held-out test split scores it)

    @property
    def kind(self) -> str:
        return self.fits[0].kind

    @property
    def manifest(self) -> dict[str, Any]:
        return self.fits[0].manifest

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(rows, features) -> (rows,) the mean of the K fits' predictions."""
        return np.mean([np.asarray(f.predict(x), dtype=np.float64).reshape(-1) for f in self.fits], axis=0)

    def predict_valid(self) -> tuple[np.ndarray, np.ndarray]:
        """(out-of-fold predictions, targets), each fit predicting its own fold's valid file again."""
        pairs = [f.predict_valid() for f in self.fits]
        return np.concatenate([p for p, _ in pairs]), np.concatenate([y for _, y in pairs])

    def rebased(self, root: str | Path) -> "KeptBag":
        """The same bag with its view and its folds' folders found under root (its bench's inputs)."""
        fits = [f.rebased(Path(root) / Path(f.source).parent.name) for f in self.fits]
        return KeptBag(fits, self.valid, str(Path(root) / Path(self.source).name))


class BagOutOfBudget(TabduelError):
    """A bagged trial's earlier fits spent the seconds it had: its later fits did not run."""


def run_bagged(name: str, folds: Folds, specs: list[Any], keep: bool = False, source: str = "",
               seconds: float = math.inf) -> list[dict[str, Any]]:
    """Train a group of a search family's trials once per fold (run_trials); with `seconds` (what each trial may
    spend in all), fit k of a trial is capped at what the earlier fits left, shared among the fits to come, so that
    their loading and scoring, which no fit's cap counts, come out of the later fits' share (BagOutOfBudget when
    nothing is left). Per trial: the MSE of its out-of-fold predictions as valid_mse, its folds' scores and errors,
    their CPU-seconds summed, and (keep) the KeptBag as row["model"]. A trial with a diverged, pruned or unkept fit
    is not finite. An exception carries the CPU-seconds of every fold so far (CPU_SPENT)."""
    fam = search_family(name)
    spent = 0.0
    per_fold: list[list[dict[str, Any]]] = []
    k = len(folds.dirs)
    for i, d in enumerate(folds.dirs):
        run_specs = specs
        if math.isfinite(seconds) and fam.cap is not None:
            left = seconds - spent / len(specs)
            if left <= 0:
                exc = BagOutOfBudget(f"{name}: a bagged trial spent its {seconds:.3g} s in {i} of its {k} fits")
                setattr(exc, CPU_SPENT, spent)
                raise exc
            run_specs = [fam.cap(spec, left / (k - i)) for spec in specs]
        start = time.process_time()
        try:
            per_fold.append(run_trials(name, d, run_specs, False, True))
        except Exception as exc:
            setattr(exc, CPU_SPENT, spent + float(getattr(exc, CPU_SPENT, time.process_time() - start)))
            raise
        spent += sum(r.get("cpu_seconds", 0.0) for r in per_fold[-1])
    out = []
    for i in range(len(specs)):
        rows = [fold[i] for fold in per_fold]
        fits = [r.pop("model", None) for r in rows]
        ok = all(f is not None and math.isfinite(r["valid_mse"]) and not r.get("pruned") for f, r in zip(fits, rows))
        oof = np.concatenate([np.asarray(f.valid).reshape(-1) for f in fits]) if ok else None
        errors = [f"fold {j}: {r['error']}" for j, r in enumerate(rows) if r.get("error")]
        row = {**rows[0], "valid_mse": mse(oof, folds.y) if ok else math.nan,
               **({"error": "; ".join(errors)} if errors else {}),
               "fold_valid_mse": [float(r["valid_mse"]) for r in rows], "folds": len(rows),
               "seconds": float(sum(r["seconds"] for r in rows)),
               "cpu_seconds": float(sum(r.get("cpu_seconds", 0.0) for r in rows)),
               "time_limited": any(bool(r.get("time_limited")) for r in rows)}
        for key in ("group_seconds", "group_cpu_seconds"):  # a population's: summed over the folds too
            if key in rows[0]:
                row[key] = float(sum(r[key] for r in rows))
        if keep and ok:
            row["model"] = KeptBag(fits, oof, source)
        out.append(row)
    return out
