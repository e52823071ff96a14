"""The MLP families side by side on the Seoul features: one default fit each of realmlp, the MLP (NN5), XGBoost and
tabm per split seed, with test MSE and training seconds; writes benchmarks/results/families-<host>.json.

Features are the features step's defaults with the built-in Seoul spec (`tabduel features`), for split seeds 4751 and
4752; every model is loaded as tabduel.models.training.load_data gives it to its family and fitted on train with early
stopping (or best-epoch selection) on valid; test MSE is on the model's (transformed) target scale. Each model's seed
is its split seed. Settings can be overridden per family with --set KIND.NAME=VALUE (e.g. --set tabm.k=16).
Seconds are wall time of the fit on a machine that may be shared: the results record the load average.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "SeoulBikeData.csv"
KINDS = ("realmlp", "mlp", "xgboost", "tabm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=str(SHARED), help="raw CSV [../shared/data/SeoulBikeData.csv]")
    parser.add_argument("--seeds", default="4751,4752", help="split seeds, comma-separated [4751,4752]")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"families [{','.join(KINDS)}]")
    parser.add_argument("--set", action="append", default=[], metavar="KIND.NAME=VALUE",
                        help="override one default setting (repeatable)")
    parser.add_argument("--workdir", default="/tmp/tabduel-families-bench", help="features are written here")
    parser.add_argument("--label", default=socket.gethostname(), help="results file suffix [the host name]")
    args = parser.parse_args()

    import numpy as np

    from tabduel.data.dataset import load_spec
    from tabduel.data.features import load_xy, make_features, save_features
    from tabduel.data.ingest import ingest
    from tabduel.infra.config import FeaturesConfig, build
    from tabduel.infra.runtime import free_cores
    from tabduel.models.registry import family
    from tabduel.models.training import fit, load_data

    kinds = [k for k in args.kinds.split(",") if k]
    overrides: dict[str, dict[str, str]] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        kind, _, name = key.partition(".")
        overrides.setdefault(kind, {})[name] = value
    path = ROOT / "benchmarks" / "results" / f"families-{args.label}.json"

    def write(rows: list[dict], wall: float) -> None:
        out = {"benchmark": "families", "host": args.label, "hostname": socket.gethostname(),
               "machine": platform.processor() or platform.machine(), "python": platform.python_version(),
               "threads": free_cores(), "load_average_1min": os.getloadavg()[0],
               "date": time.strftime("%Y-%m-%d %H:%M"),
               "command": "python benchmarks/families.py " + " ".join(sys.argv[1:]), "wall_seconds": wall, "rows": rows}
        path.write_text(json.dumps(out, indent=2) + "\n")

    spec = load_spec("")
    df, _ = ingest(args.source, spec)
    rows = []
    start = time.perf_counter()
    for seed in [int(s) for s in args.seeds.split(",")]:
        feats = save_features(Path(args.workdir) / f"features-{seed}",
                              *make_features(df, spec, FeaturesConfig(split_seed=seed)))
        manifest = json.loads((feats / "manifest.json").read_text())
        for kind in kinds:
            section = family(kind).config
            cfg = build(section, {"seed": seed, **overrides.get(kind, {})}, f"{kind}.")
            data, _ = load_data(feats, kind)
            began = time.perf_counter()
            result = fit(kind, data, cfg)
            seconds = time.perf_counter() - began
            x_test, y_test = load_xy(str(feats / "test.parquet"), manifest, family(kind).native_missing)
            fam = family(kind)
            pred = fam.predict(result.model, x_test)
            valid = fam.predict(result.model, data.x_valid)
            row = {"family": kind, "seed": seed, "valid_mse": float(np.mean((valid - data.y_valid) ** 2)),
                   "test_mse": float(np.mean((pred - y_test) ** 2)), "seconds": seconds,
                   "train_seconds": result.info.get("train_seconds"),
                   "epochs_run": result.info.get("epochs_run", result.info.get("rounds_run")),
                   "best_epoch": result.info.get("best_epoch", result.info.get("best_iteration")),
                   "device": result.info.get("device"), "settings": dataclasses.asdict(cfg)}
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "settings"}), flush=True)
            write(rows, time.perf_counter() - start)  # after every row: a long run that is stopped keeps its rows
    print(f"\n{'family':10} " + " ".join(f"{'seed ' + str(s):>22}" for s in sorted({r['seed'] for r in rows})))
    for kind in kinds:
        cells = [f"{r['test_mse']:.5f} ({r['seconds']:6.1f} s)" for r in rows if r["family"] == kind]
        print(f"{kind:10} " + " ".join(f"{c:>22}" for c in cells))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
