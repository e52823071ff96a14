"""Run `tabduel run` on its defaults on every dev-suite dataset; write benchmarks/results/suite-runs-<host>.json.

Each dataset runs as a user would: a fresh `python -m tabduel run --dataset data/datasets/<spec> --source
../shared/data/suite/<file>` process in a new working directory (its own data/ and mlflow.db). Recorded per dataset:
rows, missing cells handled (and how), the valid/test metrics of the MLP (the default NN5), XGBoost and the linear
model on the model scale and, for a transformed target, on the original scale, and the run's wall seconds.
This is one split (the features step's default seed) and default settings: a smoke test of the pipeline on messy
data, not the benchmark (that is `tabduel bench`).
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import sys
import tempfile
from pathlib import Path

from _common import run_child  # benchmarks/ is the script's directory, first on sys.path

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT.parent / "shared" / "data" / "suite"
DATASETS = {  # spec in data/datasets/ -> raw file under ../shared/data/suite/
    "wine_red.toml": "wine_quality/winequality-red.csv",
    "wine_white.toml": "wine_quality/winequality-white.csv",
    "auto_mpg.toml": "auto_mpg/auto-mpg.data",
    "california_housing.toml": "california_housing/housing.csv",
    "abalone.toml": "abalone/abalone.data",
    "diamonds.toml": "diamonds/diamonds.csv",
    "airfoil.toml": "airfoil_self_noise/airfoil_self_noise.dat",
    "ames_housing.toml": "ames_housing/AmesHousing.csv",
    "kc_house.toml": "kc_house_sales/kc_house_data.csv",
}


def run_one(spec: str, source: Path) -> dict:
    """One cold `tabduel run` of a dataset in a fresh directory: its facts, metrics and wall seconds."""
    with tempfile.TemporaryDirectory(prefix="tabduel-suite-") as tmp:
        cmd = [sys.executable, "-m", "tabduel", "run", "--dataset", str(ROOT / "data" / "datasets" / spec),
               "--source", str(source)]
        out, wall, rss = run_child(cmd, Path(tmp))
        data = Path(tmp, "data")
        ingest = json.loads(next(data.glob("ingest/*/ingest.json")).read_text())
        metrics = json.loads(next(data.glob("evaluate/*/metrics.json")).read_text())
        manifest = json.loads(next(data.glob("features/*/manifest.json")).read_text())
    return {"dataset": ingest["dataset"], "rows": ingest["rows"], "rows_read": ingest["rows_read"],
            "missing": ingest["missing"], "dropped_rows": ingest["dropped_rows"],
            "missing_cells": sum(v["cells"] for v in ingest["missing"].values()),
            "target_transform": manifest["target_transform"], "features": len(manifest["features"]),
            "metrics": metrics, "wall_s": round(wall, 1), "peak_rss_mib": round(rss, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma-separated spec files to run (default: all)")
    args = parser.parse_args()
    if not SUITE.is_dir():
        sys.exit(f"{SUITE} not found: the suite's raw files are needed")
    chosen = [s.strip() for s in args.only.split(",") if s.strip()] or list(DATASETS)
    results = {}
    for spec in chosen:
        row = run_one(spec, SUITE / DATASETS[spec])
        results[spec] = row
        m = row["metrics"]
        print(f"{spec:<24} {row['rows']:>6} rows, {row['missing_cells']:>4} missing; test MSE "
              + ", ".join(f"{k} {m[k]['test_mse']:.4g}" for k in m) + f"; {row['wall_s']:.0f} s", flush=True)
    out = ROOT / "benchmarks" / "results" / f"suite-runs-{socket.gethostname()}.json"
    out.write_text(json.dumps({"command": "python benchmarks/suite.py" + (f" --only {args.only}" if args.only else ""),
                               "machine": {"cpu": platform.processor() or platform.machine(),
                                           "python": platform.python_version()},
                               "datasets": results}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
