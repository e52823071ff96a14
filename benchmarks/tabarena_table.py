"""tabduel's bench figures beside TabArena's published ones on the four datasets both hold.

    python benchmarks/tabarena_table.py --cells benchmarks/results/bench-dev-60s/cells \
        --out benchmarks/results/tabarena-vs-bench-dev-60s.json

Per dataset and family: the mean over a bench's outer seeds of the test RMSE on TabArena's target scale, for the
selected model (T) and the post-hoc ensemble (T+E): airfoil (dB), diamonds (raw price, from tabduel's log target
transformed back), California housing (ln of the value: the root of tabduel's test MSE on its log target), and the
two wines apart (TabArena pools red and white into one wine_quality dataset). TabArena's figures are those of its
stored per-split results (autogluon/tabarena, subsets/lite/results_per_split.csv, split r0f0, test RMSE), as issue
25 quotes them: tuned (T) and tuned + ensembled (T+E) RealMLP, TabM and XGBoost, and their defaults.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tabduel.infra.errors import ConfigError  # noqa: E402
from tabduel.infra.store import atomic_write_bytes, atomic_write_json  # noqa: E402
from tabduel.search.portfolio import read_cells  # noqa: E402

# TabArena (Erickson et al. 2025), split r0f0, test RMSE: (tuned, tuned + ensembled, default) per family
TABARENA = {
    "airfoil": {"target": "airfoil_self_noise (dB)", "realmlp": (1.057, 1.012, 1.126), "tabm": (0.985, 0.977, 1.088),
                "xgboost": (1.303, 1.313, 1.427)},
    "diamonds": {"target": "raw price", "realmlp": (516.2, 511.3, 530.3), "tabm": (526.6, 525.5, 526.6),
                 "xgboost": (535.6, 534.4, 538.6)},
    "california_housing": {"target": "houses: ln(value)", "realmlp": (0.2018, 0.2002, 0.2267),
                           "tabm": (0.2095, 0.2064, 0.2124), "xgboost": (0.2164, 0.2160, 0.2175)},
    "wine": {"target": "wine_quality (red + white pooled)", "realmlp": (0.5885, 0.5841, 0.6102),
             "tabm": (0.6074, 0.5966, 0.6176), "xgboost": (0.5979, 0.5990, 0.6138)},
}
# tabduel's dataset -> (TabArena's row, the cell score that is an RMSE on TabArena's scale)
SHARED = {"airfoil": ("airfoil", "rmse_orig"), "diamonds": ("diamonds", "rmse_orig"),
          "california_housing": ("california_housing", "root_mse"), "wine_red": ("wine", "rmse_orig"),
          "wine_white": ("wine", "rmse_orig")}


def rmse(cell: dict[str, Any], how: str, ensemble: bool) -> float:
    """A cell's test RMSE on TabArena's scale, of its selected model or its post-hoc ensemble."""
    pre = "ensemble_" if ensemble else ""
    if how == "rmse_orig":
        return float(cell.get(f"{pre}test_rmse_orig", math.nan))
    return math.sqrt(cell.get(f"{pre}test_mse", math.nan))


def table(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """{dataset: {family: {T, T+E, seeds}}} over the clean cells of the shared datasets."""
    out: dict[str, Any] = {}
    for c in cells:
        d, f = c["cell"]["dataset"], c["cell"]["family"]
        if d not in SHARED or c["cell"].get("corruption", "none") != "none":
            continue
        row = out.setdefault(d, {}).setdefault(f, {"seeds": [], "T": [], "T+E": []})
        row["seeds"].append(c["cell"]["seed"])
        row["T"].append(rmse(c, SHARED[d][1], False))
        row["T+E"].append(rmse(c, SHARED[d][1], True))
    for fams in out.values():
        for row in fams.values():
            row["T_mean"], row["T+E_mean"] = float(np.mean(row["T"])), float(np.mean(row["T+E"]))
    return out


def markdown(doc: dict[str, Any], families: list[str]) -> str:
    """The side-by-side table."""
    lines = ["| dataset (TabArena's target) | source | " + " | ".join(f"{f} T / T+E" for f in families) + " |",
             "|---|---|" + "---|" * len(families)]
    for d, (row, _) in SHARED.items():
        if d not in doc["tabduel"]:
            continue
        ours = doc["tabduel"][d]
        lines.append(f"| {d} | tabduel, {doc['budget']} | " + " | ".join(
            f"{ours[f]['T_mean']:.4g} / {ours[f]['T+E_mean']:.4g}" if f in ours else "-" for f in families) + " |")
        ta = TABARENA[row]
        lines.append(f"| {ta['target']} | TabArena r0f0 | " + " | ".join(
            f"{ta[f][0]:.4g} / {ta[f][1]:.4g}" if f in ta else "-" for f in families) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", nargs="+", required=True, type=Path, help="folders of a bench's cell results")
    p.add_argument("--families", default="mlp_portfolio,realmlp,tabm,xgboost", help="columns, comma-separated")
    p.add_argument("--budget", default="", help="how the bench's budget reads in the table, e.g. '1 CPU-min'")
    p.add_argument("--out", required=True, type=Path, help="the JSON to write (and <out>.md)")
    a = p.parse_args(argv)
    try:
        cells = read_cells(a.cells)
    except ConfigError as exc:
        raise SystemExit(f"tabarena_table: error: {exc}") from None
    doc = {"command": "python benchmarks/tabarena_table.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "budget": a.budget, "tabduel": table(cells), "tabarena": TABARENA}
    atomic_write_json(a.out, doc)
    text = markdown(doc, a.families.split(","))
    atomic_write_bytes(a.out.with_suffix(".md"), text.encode())
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
