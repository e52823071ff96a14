"""Parity of a tabduel family with its reference package: the same data and seeds, tabduel's defaults against the
package's own model and recipe, mean test MSE over the seeds; writes benchmarks/results/parity-<family>.json.

    python benchmarks/parity.py --family realmlp              # pytabkit's RealMLP_TD_Regressor, 256 epochs, seeds 1-5
    python benchmarks/parity.py --family realmlp --epochs 64  # the size tests/test_parity.py runs
    python benchmarks/parity.py --family tabm                 # the tabm package; defaults (k 32, width 512): minutes
    python benchmarks/parity.py --family tabm --k 8 --d-block 128 --seeds 5

realmlp: generated rows (seeded) with 4 numeric inputs, a 4-level category (one-hot on both sides) and a 20-level
category with about 3% missing cells (embedded on both sides), through tabduel's features step (the ordinal variant)
with its default split. tabduel reads the features output as its pipeline training does; pytabkit reads the same
rows: the numeric inputs as the features step scaled them and each category as a pandas category, fitted on train
with valid as its validation set (the best epoch on valid is kept), as tabduel/models/peers.py fits pytabkit.

tabm: sklearn's make_friedman1 (1,500 rows, 8 features, 5 informative, noise sd 1; data seed 0), split 60/20/20 once;
seeds 0..n-1 are the models' seeds. Both sides get the same float32 arrays and train on one CPU thread.

Each family is one entry of FAMILIES: its measuring function and its reference's name.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import sys
import tempfile
import time
from copy import deepcopy
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's tabduel, not another one installed in the environment
RESULTS = ROOT / "benchmarks" / "results"
Split = dict[str, np.ndarray]  # x_train, y_train, x_valid, y_valid, x_test, y_test


# ------------------------------------------------------------------ realmlp

LEVELS = 20  # levels of the embedded category (> 8)
SMALL_LEVELS = 4  # levels of the one-hot category (<= 8)


def spec() -> Any:
    """The generated data's dataset spec: 4 numeric inputs, a 4-level and a 20-level unordered category."""
    from tabduel.data.dataset import parse_spec

    columns = [{"raw": f"x{i}", "name": f"x{i}", "type": "float"} for i in range(1, 5)]
    columns += [{"raw": "kind", "name": "kind", "type": "category", "levels": [f"k{j}" for j in range(SMALL_LEVELS)]},
                {"raw": "city", "name": "city", "type": "category", "levels": [f"c{j:02d}" for j in range(LEVELS)],
                 "on_missing": "impute"},
                {"raw": "y", "name": "y", "type": "float"}]
    return parse_spec({"name": "parity", "target": {"column": "y"},
                       "features": {"inputs": ["x1", "x2", "x3", "x4", "kind", "city"]}, "columns": columns})


def table(n: int = 1500, seed: int = 0) -> pd.DataFrame:
    """n generated rows as the ingest step types them: y depends on every input, most on the 20-level category."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    city_effect = rng.normal(0, 1.0, LEVELS)
    kind_effect = np.array([0.0, 0.5, -0.5, 1.0])
    city = rng.integers(0, LEVELS, n)
    kind = rng.integers(0, SMALL_LEVELS, n)
    y = (np.sin(2 * x[:, 0]) + 0.5 * x[:, 1] ** 2 - 0.5 * x[:, 2] + 0.3 * x[:, 2] * x[:, 3] + city_effect[city]
         + kind_effect[kind] + 0.6 * city_effect[city] * x[:, 0] + rng.normal(0, 0.3, n))
    frame = pd.DataFrame({f"x{i + 1}": x[:, i] for i in range(4)})
    frame["kind"] = [f"k{j}" for j in kind]
    cities = np.array([f"c{j:02d}" for j in city], dtype=object)
    cities[rng.random(n) < 0.03] = None
    frame["city"] = cities
    frame["y"] = y
    return frame


def features(directory: Path, n: int = 1500, seed: int = 0) -> Path:
    """Write the generated table's ordinal features (tabduel's features step, its default split) into directory."""
    from tabduel.data.features import make_features, save_features
    from tabduel.infra.config import FeaturesConfig
    from tabduel.search.space import features_config

    s = spec()
    return save_features(directory, *make_features(table(n, seed), s, features_config("ordinal", s,
                                                                                         FeaturesConfig())))


def test_mse(pred: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error of predictions on the test split."""
    return float(np.mean((np.asarray(pred, dtype=np.float64) - np.asarray(y, dtype=np.float64)) ** 2))


def tabduel_mse(family: str, features_dir: Path, seed: int, epochs: int, settings: dict[str, Any] | None = None
                ) -> float:
    """Test MSE of tabduel's family on its defaults (one thread, the given seed and epochs, and settings when given),
    as the pipeline fits it."""
    from tabduel.data.features import load_xy
    from tabduel.models import training
    from tabduel.models.registry import family as family_of
    from tabduel.settings import Config

    data, manifest = training.load_data(features_dir, family)
    cfg = dataclasses.replace(Config().model(family), seed=seed, epochs=epochs, threads=1, device="cpu",
                              **(settings or {}))
    result = training.fit(family, data, cfg)
    x_test, y_test = load_xy(str(features_dir / "test.parquet"), manifest, training.native_missing(family))
    return test_mse(family_of(family).predict(result.model, x_test), y_test)


def reference_frames(features_dir: Path) -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
    """Each split's (X, y) for a reference package: the scaled numeric inputs and each one-hot category back as a
    pandas category of its levels (missing where the features step imputed it)."""
    manifest = json.loads((features_dir / "manifest.json").read_text())
    covers = {tuple(cols): ind for ind, cols in manifest.get("native_missing", {}).items()}
    out = {}
    for split in ("train", "valid", "test"):
        frame = pd.read_parquet(features_dir / f"{split}.parquet")
        x = pd.DataFrame({name: frame[name].to_numpy(np.float32) for name in manifest["scaler"]["mean"]})
        for name, cols in manifest["categories"].items():
            level = np.asarray(cols, dtype=object)[frame[cols].to_numpy().argmax(axis=1)]
            indicator = covers.get(tuple(cols))
            if indicator:
                level[frame[indicator].to_numpy() > 0.5] = None
            x[name] = pd.Categorical(level, categories=list(cols))
        out[split] = (x, frame[manifest["target"]].to_numpy(np.float32))
    return out


def reference_realmlp(features_dir: Path, seed: int, epochs: int) -> float:
    """Test MSE of pytabkit's RealMLP_TD_Regressor (tuned defaults, CPU, one thread, the given seed and epochs),
    fitted on train with valid as its validation set (its best epoch on valid is kept)."""
    from pytabkit import RealMLP_TD_Regressor

    frames = reference_frames(features_dir)
    (x, y), (xv, yv), (xt, yt) = frames["train"], frames["valid"], frames["test"]
    model = RealMLP_TD_Regressor(device="cpu", n_threads=1, random_state=seed, verbosity=-1, n_epochs=epochs)
    model.fit(x, y, X_val=xv, y_val=yv)
    return test_mse(model.predict(xt), yt)


REALMLP_REFERENCES: dict[str, tuple[str, Callable[[Path, int, int], float]]] = {
    "realmlp": ("pytabkit RealMLP_TD_Regressor", reference_realmlp),
}


def measure(family: str, seeds: list[int], epochs: int, n: int = 1500, data_seed: int = 0,
            settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Both sides' test MSE per seed on the same features, their means and the ratio tabduel / reference
    (settings: tabduel's family's settings that differ from its defaults, none by default)."""
    import torch

    torch.set_num_threads(1)
    name, reference = REALMLP_REFERENCES[family]
    rows = []
    with tempfile.TemporaryDirectory(prefix="tabduel-parity-") as tmp:
        feats = features(Path(tmp) / "features", n, data_seed)
        for seed in seeds:
            start = time.perf_counter()
            ours = tabduel_mse(family, feats, seed, epochs, settings)
            middle = time.perf_counter()
            theirs = reference(feats, seed, epochs)
            rows.append({"seed": seed, "tabduel_test_mse": ours, "reference_test_mse": theirs,
                         "tabduel_seconds": middle - start, "reference_seconds": time.perf_counter() - middle})
    ours_mean = float(np.mean([r["tabduel_test_mse"] for r in rows]))
    theirs_mean = float(np.mean([r["reference_test_mse"] for r in rows]))
    return {"family": family, "reference": name, "dataset": f"generated parity table ({n} rows, data seed "
            f"{data_seed}; 4 numeric, a {SMALL_LEVELS}-level and a {LEVELS}-level category)", "epochs": epochs,
            "settings": dict(settings or {}),
            "seeds": seeds, "runs": rows, "tabduel_mean_test_mse": ours_mean, "reference_mean_test_mse": theirs_mean,
            "ratio": ours_mean / theirs_mean}



# ------------------------------------------------------------------ tabm

def friedman(rows: int = 1500, seed: int = 0) -> Split:
    """make_friedman1 (8 features, noise sd 1) split 60/20/20 by a permutation from seed, as float32 arrays."""
    from sklearn.datasets import make_friedman1

    x, y = make_friedman1(n_samples=rows, n_features=8, noise=1.0, random_state=seed)
    order = np.random.default_rng(seed).permutation(rows)
    a, b = int(0.6 * rows), int(0.8 * rows)
    parts = {"train": order[:a], "valid": order[a:b], "test": order[b:]}
    out: Split = {}
    for name, idx in parts.items():
        out[f"x_{name}"] = x[idx].astype(np.float32)
        out[f"y_{name}"] = y[idx].astype(np.float32)
    return out


def mse(pred: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error in float64."""
    return float(np.mean((np.asarray(pred, np.float64) - np.asarray(y, np.float64)) ** 2))


# ------------------------------------------------------------------ tabm

def tabm_tabduel(split: Split, seed: int, size: dict[str, int]) -> float:
    """tabduel's tabm family on its defaults (but k and d_block from size), one CPU thread: test MSE."""
    from tabduel.engine.data import Data
    from tabduel.infra.config import TabMConfig
    from tabduel.models import tabm

    names = tuple(f"x{i}" for i in range(split["x_train"].shape[1]))
    data = Data(split["x_train"], split["y_train"], split["x_valid"], split["y_valid"], names, names)
    cfg = TabMConfig(seed=seed, device="cpu", threads=1, **size)
    fit = tabm.fit(data, cfg)
    return mse(tabm.predict(fit.model, split["x_test"]), split["y_test"])


def _tabm_parameter_groups(model: Any) -> list[dict[str, Any]]:
    """The TabM paper's AdamW groups (lib/deep.py make_parameter_groups with default_zero_weight_decay_condition):
    no weight decay on biases, normalization layers and rtdl_num_embeddings' LinearEmbeddings, LinearReLUEmbeddings
    and _Periodic; the rest decays."""
    import rtdl_num_embeddings
    from torch import nn

    exempt = (nn.BatchNorm1d, nn.LayerNorm, nn.InstanceNorm1d, rtdl_num_embeddings.LinearEmbeddings,
              rtdl_num_embeddings.LinearReLUEmbeddings, rtdl_num_embeddings._Periodic)
    quiet = {id(p): p for m in model.modules() for name, p in m.named_parameters()
             if name.endswith("bias") or isinstance(m, exempt)}
    return [{"params": [p for p in model.parameters() if id(p) not in quiet]},
            {"params": list(quiet.values()), "weight_decay": 0.0}]


def tabm_reference(split: Split, seed: int, size: dict[str, int]) -> float:
    """The tabm package's TabM.make with PiecewiseLinearEmbeddings (48 bins, 16 values, version B) trained as its
    example.ipynb does: QuantileTransformer inputs (train + N(0, 1e-5) noise), standardized target, AdamW lr 2e-3
    wd 3e-4 (the paper's groups), batch 256 shared by the members, mean loss of the k heads, early stopping on valid
    RMSE with patience 16, the best epoch's weights; k and d_block from size. Test MSE of the mean of the k heads."""
    import rtdl_num_embeddings
    import tabm
    import torch
    import torch.nn.functional as F
    from sklearn.preprocessing import QuantileTransformer

    torch.manual_seed(seed)
    x_train = split["x_train"]
    noise = np.random.default_rng(seed).normal(0.0, 1e-5, x_train.shape).astype(x_train.dtype)
    qt = QuantileTransformer(n_quantiles=max(min(len(x_train) // 30, 1000), 10), output_distribution="normal",
                             subsample=10**9).fit(x_train + noise)
    x = {p: torch.as_tensor(qt.transform(split[f"x_{p}"]).astype(np.float32)) for p in ("train", "valid", "test")}
    y_mean, y_std = float(split["y_train"].mean()), float(split["y_train"].std())
    y_train = torch.as_tensor((split["y_train"] - y_mean) / y_std)

    embeddings = rtdl_num_embeddings.PiecewiseLinearEmbeddings(
        rtdl_num_embeddings.compute_bins(x["train"], n_bins=48), d_embedding=16, activation=False, version="B")
    model = tabm.TabM.make(n_num_features=x_train.shape[1], d_out=1, num_embeddings=embeddings, **size)
    optimizer = torch.optim.AdamW(_tabm_parameter_groups(model), lr=2e-3, weight_decay=3e-4)

    def predict(part: str) -> np.ndarray:
        model.eval()
        with torch.inference_mode():
            out = torch.cat([model(x[part][idx]).squeeze(-1) for idx in torch.arange(len(x[part])).split(8096)])
        return out.numpy().mean(1) * y_std + y_mean  # the mean of the k predictions

    best, best_state, patience, remaining = math.inf, deepcopy(model.state_dict()), 16, 16
    for _ in range(10**9):
        for idx in torch.randperm(len(y_train)).split(256):
            model.train()
            optimizer.zero_grad()
            pred = model(x["train"][idx]).squeeze(-1)  # (batch, k)
            F.mse_loss(pred.flatten(0, 1), y_train[idx].repeat_interleave(model.k)).backward()
            optimizer.step()
        score = mse(predict("valid"), split["y_valid"])
        if score < best:
            best, best_state, remaining = score, deepcopy(model.state_dict()), patience
        else:
            remaining -= 1
        if remaining < 0:
            break
    model.load_state_dict(best_state)
    return mse(predict("test"), split["y_test"])


Fit = Callable[[Split, int, dict[str, int]], float]
TABM_FITS: dict[str, tuple[Fit, Fit, str]] = {
    "tabm": (tabm_tabduel, tabm_reference, "tabm 0.0.3 (TabM.make + PiecewiseLinearEmbeddings, example.ipynb's "
                                           "recipe with the paper's weight-decay groups)"),
}


def compare(family: str, seeds: int, size: dict[str, int], rows: int = 1500) -> dict[str, Any]:
    """Test MSE of tabduel's family and of its reference on friedman(rows), model seeds 0..seeds-1, one thread."""
    import torch

    torch.set_num_threads(1)
    ours, theirs, reference = TABM_FITS[family]
    split = friedman(rows)
    rows_out: dict[str, Any] = {"tabduel": {"mse": [], "seconds": []}, "reference": {"mse": [], "seconds": []}}
    for seed in range(seeds):
        for side, fit in (("tabduel", ours), ("reference", theirs)):
            start = time.perf_counter()
            rows_out[side]["mse"].append(fit(split, seed, size))
            rows_out[side]["seconds"].append(round(time.perf_counter() - start, 2))
    for side in ("tabduel", "reference"):
        rows_out[side]["mean_mse"] = float(np.mean(rows_out[side]["mse"]))
    return {"family": family, "reference_package": reference,
            "dataset": f"make_friedman1, {rows} rows, 8 features, noise 1, "
            "data seed 0, 60/20/20", "seeds": list(range(seeds)), "size": size, **rows_out,
            "ratio": rows_out["tabduel"]["mean_mse"] / rows_out["reference"]["mean_mse"]}



FAMILIES = ("realmlp", "tabm")  # realmlp: measure(); tabm: compare()


def main() -> None:
    """Measure one family against its reference and write benchmarks/results/parity-<family>.json."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--family", choices=FAMILIES, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=None,
                    help="realmlp: the model seeds (default 1 2 3 4 5); tabm: how many, seeds 0..N-1 (default 5)")
    ap.add_argument("--rows", type=int, default=1500, help="rows of the generated table (default 1500)")
    ap.add_argument("--epochs", type=int, default=256, help="realmlp: epochs on both sides (default 256, both's)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=INT",
                    help="realmlp: a setting of tabduel's family (an integer), e.g. max_one_hot=1000 (no embedding)")
    ap.add_argument("--k", type=int, default=32, help="tabm: ensemble members of both sides (default 32)")
    ap.add_argument("--d-block", type=int, default=512, help="tabm: hidden width of both sides (default 512)")
    ap.add_argument("--out", default="", help="JSON path (default benchmarks/results/parity-<family>.json; - : none)")
    args = ap.parse_args()
    start = time.perf_counter()
    if args.family == "tabm":
        result = compare("tabm", (args.seeds or [5])[0], {"k": args.k, "d_block": args.d_block}, args.rows)
    else:
        settings = {}
        for item in args.set:
            name, sep, value = item.partition("=")
            if not sep or not value.lstrip("-").isdigit():
                ap.error(f"--set {item!r}: expected NAME=INT")
            settings[name] = int(value)
        result = measure("realmlp", args.seeds or [1, 2, 3, 4, 5], args.epochs, args.rows, settings=settings)
    result.update(command="python benchmarks/parity.py " + " ".join(sys.argv[1:]),
                  seconds=round(time.perf_counter() - start, 1), machine=platform.node(),
                  python=platform.python_version(), threads=1)
    print(json.dumps(result, indent=2))
    if args.out != "-":
        out = Path(args.out) if args.out else RESULTS / f"parity-{args.family}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
