"""Parity of a tabduel family with its reference package: the same data and seeds, tabduel's defaults against the
package's own model and recipe, mean test MSE over the seeds.

    python benchmarks/parity.py --family tabm                 # the defaults (k 32, width 512): minutes on one core
    python benchmarks/parity.py --family tabm --k 8 --d-block 128 --seeds 5   # the size tests/test_parity.py runs

The data: a generated regression table (sklearn's make_friedman1: 1,500 rows, 8 features, 5 of them informative,
noise sd 1; data seed 0), split 60/20/20 once; seeds 0..n-1 are the models' seeds. Both sides get the same float32
arrays and train on one CPU thread. Each family has a pair (tabduel's fit, the reference's fit), each returning the
test MSE of one seed on the target's scale; `--family realmlp` is a new entry in FAMILIES.

It writes benchmarks/results/parity-<family>.json (unless --out -): per-seed test MSE and seconds of both, the means
and their ratio (tabduel / reference), the settings and the command.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from copy import deepcopy
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
Split = dict[str, np.ndarray]  # x_train, y_train, x_valid, y_valid, x_test, y_test


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
FAMILIES: dict[str, tuple[Fit, Fit, str]] = {
    "tabm": (tabm_tabduel, tabm_reference, "tabm 0.0.3 (TabM.make + PiecewiseLinearEmbeddings, example.ipynb's "
                                           "recipe with the paper's weight-decay groups)"),
}


def compare(family: str, seeds: int, size: dict[str, int], rows: int = 1500) -> dict[str, Any]:
    """Test MSE of tabduel's family and of its reference on friedman(rows), model seeds 0..seeds-1, one thread."""
    import torch

    if family not in FAMILIES:
        raise SystemExit(f"--family {family!r} is not one of: {', '.join(FAMILIES)}")
    torch.set_num_threads(1)
    ours, theirs, reference = FAMILIES[family]
    split = friedman(rows)
    rows_out: dict[str, Any] = {"tabduel": {"mse": [], "seconds": []}, "reference": {"mse": [], "seconds": []}}
    for seed in range(seeds):
        for side, fit in (("tabduel", ours), ("reference", theirs)):
            start = time.perf_counter()
            rows_out[side]["mse"].append(fit(split, seed, size))
            rows_out[side]["seconds"].append(round(time.perf_counter() - start, 2))
    for side in ("tabduel", "reference"):
        rows_out[side]["mean_mse"] = float(np.mean(rows_out[side]["mse"]))
    return {"family": family, "reference_package": reference, "dataset": f"make_friedman1, {rows} rows, 8 features, noise 1, "
            "data seed 0, 60/20/20", "seeds": list(range(seeds)), "size": size, **rows_out,
            "ratio": rows_out["tabduel"]["mean_mse"] / rows_out["reference"]["mean_mse"]}


def main() -> None:
    """Run one family's comparison and write its JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--family", default="tabm", help=f"one of: {', '.join(FAMILIES)}")
    ap.add_argument("--seeds", type=int, default=5, help="model seeds 0..N-1 (default 5)")
    ap.add_argument("--rows", type=int, default=1500, help="rows of the generated table (default 1500)")
    ap.add_argument("--k", type=int, default=32, help="tabm: ensemble members of both sides (default 32)")
    ap.add_argument("--d-block", type=int, default=512, help="tabm: hidden width of both sides (default 512)")
    ap.add_argument("--out", default="", help="JSON path (default benchmarks/results/parity-<family>.json; - : none)")
    args = ap.parse_args()
    size = {"k": args.k, "d_block": args.d_block} if args.family == "tabm" else {}
    start = time.perf_counter()
    result = compare(args.family, args.seeds, size, args.rows)
    result.update(command="python benchmarks/parity.py " + " ".join(sys.argv[1:]),
                  seconds=round(time.perf_counter() - start, 1), machine=platform.node(),
                  python=platform.python_version(), threads=1)
    print(json.dumps(result, indent=2))
    if args.out != "-":
        out = Path(args.out) if args.out else RESULTS / f"parity-{args.family}.json"
        out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
