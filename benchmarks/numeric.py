"""Hypothesis 2 on a search's best MLP: does bounding its numeric inputs (clip, quantile) change its test MSE?

    python benchmarks/numeric.py --from benchmarks/results/search-vm-extended.json

It refits the best MLP config that a search benchmark found with each numeric map (standard: as searched; clip: to
the train range; quantile: train quantiles to normal scores) and the best XGBoost config, on the same split seeds
as that benchmark's final comparison, one fit at a time on all free cores. It writes
benchmarks/results/numeric-<label>.json: test MSE per seed and map, mean +- sd, and paired tests of each map
against standard and against XGBoost.
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "SeoulBikeData.csv"
MAPS = ("standard", "clip", "quantile")


def write_features(df, spec, base: str, seed: int, out: Path) -> Path:
    """The features step's output of one encoding base and split seed, as plain files under out."""
    from tabduel.data.features import make_features, save_features
    from tabduel.infra.config import FeaturesConfig
    from tabduel.search.space import features_config

    return save_features(out, *make_features(df, spec, features_config(base, spec, FeaturesConfig(), split_seed=seed)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="source_result",
                        default=str(ROOT / "benchmarks" / "results" / "search-vm-extended.json"),
                        help="a search benchmark's results file [search-vm-extended.json]")
    parser.add_argument("--source", default=str(SHARED), help="raw CSV [../shared/data/SeoulBikeData.csv]")
    parser.add_argument("--workdir", default="/tmp/tabduel-numeric-bench", help="features are written here")
    parser.add_argument("--label", default="vm", help="results file suffix [vm]")
    args = parser.parse_args()

    from tabduel.data.dataset import load_spec
    from tabduel.data.ingest import ingest
    from tabduel.infra.config import SearchConfig
    from tabduel.infra.runtime import free_cores
    from tabduel.search.compare import paired_comparison
    from tabduel.search.report import rebuild
    from tabduel.search.trials import run_mlp, run_xgboost

    found = json.loads(Path(args.source_result).read_text())
    seeds = found["final"]["seeds"]
    threads = free_cores()
    s = SearchConfig()  # the search's defaults: its epochs, patience and per-trial time limit
    spec = load_spec("")
    df, _ = ingest(args.source, spec)
    start = time.perf_counter()
    rows = []
    for seed in seeds:
        mlp = {m: rebuild("mlp", {**found["best"]["mlp"]["params"], "numeric": m}, s, threads) for m in MAPS}
        base = mlp["standard"].encoding.base
        feats = write_features(df, spec, base, seed, Path(args.workdir) / f"{base}-{seed}")
        for m, trial in mlp.items():
            r = run_mlp(feats, [trial], with_test=True)[0]
            rows.append({"family": f"mlp-{m}", "seed": seed, "valid_mse": r["valid_mse"], "test_mse": r["test_mse"],
                         "seconds": r["seconds"]})
            print(json.dumps(rows[-1]), flush=True)
        ordinal = write_features(df, spec, "ordinal", seed, Path(args.workdir) / f"ordinal-{seed}")
        r = run_xgboost(ordinal, rebuild("xgboost", found["best"]["xgboost"]["params"], s, threads), with_test=True)
        rows.append({"family": "xgboost", "seed": seed, "valid_mse": r["valid_mse"], "test_mse": r["test_mse"],
                     "seconds": r["seconds"]})
        print(json.dumps(rows[-1]), flush=True)
    paired = {f"{m}_vs_standard": paired_comparison(rows, f"mlp-{m}", "mlp-standard") for m in MAPS[1:]}
    paired.update({f"{m}_vs_xgboost": paired_comparison(rows, f"mlp-{m}", "xgboost") for m in MAPS})
    out = {
        "benchmark": "numeric", "host": args.label, "machine": platform.processor() or platform.machine(),
        "hostname": socket.gethostname(), "python": platform.python_version(), "threads": threads,
        "date": time.strftime("%Y-%m-%d %H:%M"), "command": "python benchmarks/numeric.py " + " ".join(sys.argv[1:]),
        "from": str(Path(args.source_result).relative_to(ROOT)) if Path(args.source_result).resolve().is_relative_to(
            ROOT) else args.source_result,
        "mlp_params": found["best"]["mlp"]["params"], "xgboost_params": found["best"]["xgboost"]["params"],
        "seeds": seeds, "wall_seconds": time.perf_counter() - start, "rows": rows, "paired": paired,
    }
    path = ROOT / "benchmarks" / "results" / f"numeric-{args.label}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    for name, p in paired.items():
        a, b = (f"mlp-{x}" if x in MAPS else x for x in name.split("_vs_"))
        print(f"{a} {p[f'{a}_test_mse_mean']:.5f} vs {b} {p[f'{b}_test_mse_mean']:.5f}: diff {p['diff_mean']:+.5f}"
              f" +- {p['diff_sd']:.5f}, t p = {p['t_p_value']:.3f}, {a} lower on {p[f'{a}_wins']} of {p['n']} seeds")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
