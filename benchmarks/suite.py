"""Run `tabduel run` on its defaults on every dev-suite dataset; write benchmarks/results/suite-runs-<label>.json.

Each dataset runs as a user would: a fresh `python -m tabduel run --dataset data/datasets/<spec> --source
../shared/data/suite/<file>` process in a new working directory (its own data/ and mlflow.db). Recorded per dataset:
rows, missing cells handled (and how), the valid/test metrics of the default models (the device's default MLP family,
XGBoost and the linear model) on the model scale and, for a transformed target, on the original scale, each fit's
seconds and whether it reached the time limit, and the run's wall seconds (the longest silence between two lines of
its output too). This is one split (the features step's default seed) and default settings: what a first run gives,
not the benchmark (that is `tabduel bench`).

With --draft, a file of one's own as a new user meets it: `tabduel spec draft FILE --target COL > s.toml`, then
`tabduel run --dataset s.toml --source FILE`, both timed (DRAFTS lists the files and their targets).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import tempfile
import time
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


# --draft: (raw file under ../shared/data, target, columns to ignore) of files a new user might bring
DRAFTS = {
    "california_housing": ("suite/california_housing/housing.csv", "median_house_value", ""),
    "kc_house": ("suite/kc_house_sales/kc_house_data.csv", "price", "id"),
    "seoul_bike": ("SeoulBikeData.csv", "Rented Bike Count", ""),
}


def longest_silence(out: str) -> float:
    """The longest gap, in seconds, between two timestamped (HH:MM:SS.fff) lines of a run's output."""
    import re

    stamps = [int(h) * 3600 + int(m) * 60 + float(s)
              for h, m, s in re.findall(r"^(\d\d):(\d\d):(\d\d\.\d+) \|", out, flags=re.MULTILINE)]
    return round(max((b - a) % 86400 for a, b in zip(stamps, stamps[1:])), 1) if len(stamps) > 1 else 0.0


def run_one(spec: str | Path, source: Path, draft: tuple[str, str] | None = None) -> dict:
    """One cold `tabduel run` of a dataset in a fresh directory (after `tabduel spec draft` with draft = (target,
    ignore)): its facts, metrics, fits and wall seconds."""
    with tempfile.TemporaryDirectory(prefix="tabduel-suite-") as tmp:
        draft_s = 0.0
        if draft:
            spec = Path(tmp) / "s.toml"
            cmd = [sys.executable, "-m", "tabduel", "spec", "draft", str(source), "--target", draft[0], "-o", str(spec)]
            _, draft_s, _ = run_child(cmd + (["--ignore", draft[1]] if draft[1] else []), Path(tmp))
        cmd = [sys.executable, "-m", "tabduel", "run", "--dataset", str(spec), "--source", str(source)]
        out, wall, rss = run_child(cmd, Path(tmp))
        data = Path(tmp, "data")
        ingest = json.loads(next(data.glob("ingest/*/ingest.json")).read_text())
        metrics = json.loads(next(data.glob("evaluate/*/metrics.json")).read_text())
        manifest = json.loads(next(data.glob("features/*/manifest.json")).read_text())
        fits = {}
        for meta_path in data.glob("models/*/*/meta.json"):
            meta = json.loads(meta_path.read_text())
            info = meta["info"]
            fits[meta["kind"]] = {"train_seconds": round(info.get("train_seconds", 0.0), 1),
                                  "time_limited": bool(info.get("time_limited")),
                                  "epochs_or_rounds": info.get("epochs_run", info.get("rounds_run")),
                                  "max_seconds": meta["config"].get("max_seconds")}
    return {"dataset": ingest["dataset"], "rows": ingest["rows"], "rows_read": ingest["rows_read"],
            "missing": ingest["missing"], "dropped_rows": ingest["dropped_rows"],
            "missing_cells": sum(v["cells"] for v in ingest["missing"].values()),
            "target_transform": manifest["target_transform"], "features": len(manifest["features"]),
            "metrics": metrics, "fits": fits, "draft_s": round(draft_s, 1), "wall_s": round(wall, 1),
            "longest_silence_s": longest_silence(out), "peak_rss_mib": round(rss, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma-separated spec files (or with --draft, names) to run "
                        "(default: all)")
    parser.add_argument("--draft", action="store_true", help="draft each file's spec first (DRAFTS), as a new user")
    parser.add_argument("--label", default=socket.gethostname(), help="results file suffix [the host name]")
    args = parser.parse_args()
    if not SUITE.is_dir():
        sys.exit(f"{SUITE} not found: the suite's raw files are needed")
    names = DRAFTS if args.draft else DATASETS
    chosen = [s.strip() for s in args.only.split(",") if s.strip()] or list(names)
    out = ROOT / "benchmarks" / "results" / f"suite-{'drafts' if args.draft else 'runs'}-{args.label}.json"
    results = {}
    for name in chosen:
        load = os.getloadavg()[0]
        if args.draft:
            file, target, ignore = DRAFTS[name]
            row = run_one("", SUITE.parent / file, (target, ignore))
        else:
            row = run_one(ROOT / "data" / "datasets" / name, SUITE / DATASETS[name])
        results[name] = {**row, "load_average_1min_before": round(load, 2)}
        m = row["metrics"]
        print(f"{name:<24} {row['rows']:>6} rows, {row['missing_cells']:>4} missing; test MSE "
              + ", ".join(f"{k} {m[k]['test_mse']:.4g}" for k in m) + f"; {row['wall_s']:.0f} s", flush=True)
        doc = {"command": "python benchmarks/suite.py " + " ".join(sys.argv[1:]),
               "machine": {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                           "python": platform.python_version()},
               "date": time.strftime("%Y-%m-%d %H:%M"), "datasets": results}
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, out)  # after each dataset: a killed run keeps what it finished
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
