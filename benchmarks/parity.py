"""Parity of a tabduel family with its reference package: the same generated data, split and epochs, several seeds.

`python benchmarks/parity.py --family realmlp` fits tabduel's `realmlp` on its defaults and pytabkit's
RealMLP_TD_Regressor on its tuned defaults, each on the same train split with the same valid split as its
validation set (the best epoch on valid is kept, as tabduel/models/peers.py fits pytabkit), for each seed, and
writes each side's test MSE, their means and the ratio to benchmarks/results/parity-<family>.json.

The data: generated rows (seeded) with 4 numeric inputs, a 4-level category (one-hot on both sides) and a 20-level
category with about 3% missing cells (embedded on both sides), through tabduel's features step (the ordinal variant)
with its default split. tabduel reads the features output as its pipeline training does; the reference reads the same
rows: the numeric inputs as the features step scaled them (both sides scale them robustly again) and each category as
a pandas category (pytabkit's categorical handling), its target the features' target.

A family's reference is a function (REFERENCES) of (features directory, seed, epochs) -> test MSE; another family's
is one more entry there.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's tabduel, not another one installed in the environment
RESULTS = ROOT / "benchmarks" / "results"
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


REFERENCES: dict[str, tuple[str, Callable[[Path, int, int], float]]] = {
    "realmlp": ("pytabkit RealMLP_TD_Regressor", reference_realmlp),
}


def measure(family: str, seeds: list[int], epochs: int, n: int = 1500, data_seed: int = 0,
            settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Both sides' test MSE per seed on the same features, their means and the ratio tabduel / reference
    (settings: tabduel's family's settings that differ from its defaults, none by default)."""
    import torch

    torch.set_num_threads(1)
    name, reference = REFERENCES[family]
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


def main() -> None:
    """Measure one family against its reference and write benchmarks/results/parity-<family>.json."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=sorted(REFERENCES), required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--epochs", type=int, default=256, help="epochs on both sides (default: both's default)")
    parser.add_argument("--rows", type=int, default=1500)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=INT",
                        help="a setting of tabduel's family (an integer), e.g. max_one_hot=1000 (no embedding)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    settings = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not value.lstrip("-").isdigit():
            parser.error(f"--set {item!r}: expected NAME=INT")
        settings[name] = int(value)
    result = measure(args.family, args.seeds, args.epochs, args.rows, settings=settings)
    result["command"] = (f"python benchmarks/parity.py --family {args.family} --seeds {' '.join(map(str, args.seeds))}"
                         f" --epochs {args.epochs} --rows {args.rows}" + "".join(f" --set {s}" for s in args.set))
    result["machine"] = platform.node()
    out = args.out or RESULTS / f"parity-{args.family}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("tabduel_mean_test_mse", "reference_mean_test_mse", "ratio")}))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
