"""The MLP families side by side at their defaults: one default fit each of realmlp, the MLP (NN5), XGBoost and
tabm per dataset and split seed, with valid and test MSE and training seconds; writes
benchmarks/results/families-<label>.json.

Without --suite: the Seoul features (the features step's defaults with the built-in Seoul spec) for split seeds 4751
and 4752. With --suite FILE: every dataset of that suite (its spec, its local source under --root, its features
overrides), for each split seed; this is what chooses the pipeline's default MLP (docs/results.md, "Which MLP the
pipeline trains by default"): the family with the lowest valid MSE relative to the best family, on average over the
datasets. Test MSE is reported beside it and plays no part in the choice.

Every model is loaded as tabduel.models.training.load_data gives it to its family and fitted on train with early
stopping (or best-epoch selection) on valid; MSE is on the model's (transformed) target scale. Each model's seed is its
split seed. Settings can be overridden per family with --set KIND.NAME=VALUE (e.g. --set tabm.k=16). --skip
KIND:DATASET leaves out one fit (e.g. one too slow for the session), and the results say so. Fits run in --workers
processes, one thread each by default, longest first; seconds are wall time of the fit on a machine that may be
shared: the results record the load average.
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
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "SeoulBikeData.csv"
KINDS = ("realmlp", "mlp", "xgboost", "tabm")
# Relative cost of one default fit per training row (measured on Seoul, one thread): orders the work longest first.
COST = {"tabm": 200.0, "realmlp": 15.0, "xgboost": 1.0, "mlp": 0.2}


def fit_row(feats: str, dataset: str, kind: str, seed: int, overrides: dict[str, str]) -> dict[str, Any]:
    """One default fit of a family on a features folder: its valid and test MSE and facts of the fit."""
    import numpy as np

    from tabduel.data.features import load_xy
    from tabduel.infra.config import build
    from tabduel.models.registry import family
    from tabduel.models.training import fit, load_data

    fam = family(kind)
    cfg = build(fam.config, {"seed": seed, **overrides}, f"{kind}.")
    manifest = json.loads((Path(feats) / "manifest.json").read_text())
    data, _ = load_data(Path(feats), kind)
    began, cpu = time.perf_counter(), time.process_time()
    result = fit(kind, data, cfg)
    seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - cpu
    x_test, y_test = load_xy(str(Path(feats) / "test.parquet"), manifest, fam.native_missing)
    valid = fam.predict(result.model, data.x_valid)
    pred = fam.predict(result.model, x_test)
    return {"dataset": dataset, "family": kind, "seed": seed, "train_rows": int(len(data.y_train)),
            "valid_mse": float(np.mean((valid - data.y_valid) ** 2)),
            "test_mse": float(np.mean((pred - y_test) ** 2)), "seconds": seconds, "cpu_seconds": cpu_seconds,
            "train_seconds": result.info.get("train_seconds"),
            "epochs_run": result.info.get("epochs_run", result.info.get("rounds_run")),
            "best_epoch": result.info.get("best_epoch", result.info.get("best_iteration")),
            "device": result.info.get("device"), "time_limited": bool(result.info.get("time_limited")),
            "settings": dataclasses.asdict(cfg)}


def choice(rows: list[dict[str, Any]], kinds: list[str]) -> dict[str, Any]:
    """Per family, the mean over datasets of (its mean valid MSE / the best family's), on the datasets every family
    in `kinds` was fitted on; the family with the lowest is chosen."""
    from statistics import mean

    def cell(kind: str, dataset: str) -> float | None:
        values = [r["valid_mse"] for r in rows if r["family"] == kind and r["dataset"] == dataset]
        return mean(values) if values else None

    datasets = sorted({r["dataset"] for r in rows})
    common = [d for d in datasets if all(cell(k, d) is not None for k in kinds)]
    ratios: dict[str, list[float]] = {k: [] for k in kinds}
    wins = {k: 0 for k in kinds}
    for d in common:
        best = min(cell(k, d) for k in kinds)  # type: ignore[type-var]
        for k in kinds:
            ratios[k].append(cell(k, d) / best)  # type: ignore[operator]
        wins[min(kinds, key=lambda k: cell(k, d))] += 1  # type: ignore[arg-type, return-value]
    score = {k: mean(v) for k, v in ratios.items() if v}
    out = {"families": kinds, "datasets": common, "left_out": [d for d in datasets if d not in common],
           "mean_valid_ratio_to_best": score, "valid_wins": wins,
           "chosen": min(score, key=score.__getitem__) if score else None}
    # Beside XGBoost at its defaults: each family's valid MSE over XGBoost's, and its slowest fit in CPU-seconds (one
    # thread: what a first run waits for on a quiet machine), on the datasets both were fitted on.
    if any(r["family"] == "xgboost" for r in rows):
        versus: dict[str, dict[str, Any]] = {}
        for k in kinds:
            both = [d for d in datasets if cell(k, d) is not None and cell("xgboost", d) is not None]
            if not both:
                continue
            ratio = {d: cell(k, d) / cell("xgboost", d) for d in both}  # type: ignore[operator]
            secs = [r.get("cpu_seconds", r["seconds"]) for r in rows if r["family"] == k and r["dataset"] in both]
            versus[k] = {"valid_ratio_to_xgboost": ratio, "mean_valid_ratio_to_xgboost": mean(ratio.values()),
                         "within_25pct_of_xgboost": sum(v <= 1.25 for v in ratio.values()), "datasets": len(both),
                         "max_cpu_seconds": max(secs), "total_cpu_seconds": sum(secs),
                         "time_limited_fits": sum(bool(r.get("time_limited")) for r in rows
                                                  if r["family"] == k and r["dataset"] in both)}
        out["versus_xgboost"] = versus
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=str(SHARED),
                        help="raw CSV without --suite [../shared/data/SeoulBikeData.csv]")
    parser.add_argument("--suite", default="", help="suite file: fit on each of its datasets instead")
    parser.add_argument("--root", default="", help="the suite's root for its sources (e.g. ../shared)")
    parser.add_argument("--seeds", default="4751,4752", help="split seeds, comma-separated [4751,4752]")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"families [{','.join(KINDS)}]")
    parser.add_argument("--set", action="append", default=[], metavar="KIND.NAME=VALUE",
                        help="override one default setting (repeatable)")
    parser.add_argument("--skip", action="append", default=[], metavar="KIND:DATASET",
                        help="leave out one family's fits on one dataset (repeatable)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the rows of the results file already there and fit only the missing ones")
    parser.add_argument("--workers", type=int, default=1, help="fits at once, each in its own process [1]")
    parser.add_argument("--workdir", default="/tmp/tabduel-families-bench", help="features are written here")
    parser.add_argument("--label", default=socket.gethostname(), help="results file suffix [the host name]")
    args = parser.parse_args()

    from tabduel.bench.suite import check_sources, dataset_config, load_suite, local_source
    from tabduel.data.dataset import load_spec
    from tabduel.data.features import make_features, save_features
    from tabduel.data.ingest import ingest
    from tabduel.infra.config import FeaturesConfig
    from tabduel.infra.runtime import free_cores
    from tabduel.settings import Config

    kinds = [k for k in args.kinds.split(",") if k]
    seeds = [int(s) for s in args.seeds.split(",")]
    overrides: dict[str, dict[str, str]] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        kind, _, name = key.partition(".")
        overrides.setdefault(kind, {})[name] = value
    skipped = {tuple(item.split(":", 1)) for item in args.skip}
    path = ROOT / "benchmarks" / "results" / f"families-{args.label}.json"
    command = "python benchmarks/families.py " + " ".join(sys.argv[1:])
    before = json.loads(path.read_text()) if args.resume and path.is_file() else {}
    rows: list[dict[str, Any]] = before.get("rows", [])
    commands = before.get("commands", [before["command"]] if before else []) + [command]
    wall_before = before.get("wall_seconds", 0.0)

    # (dataset name, spec path or "" for the built-in, raw file, features settings)
    sources: list[tuple[str, str, str, FeaturesConfig]] = []
    if args.suite:
        suite = load_suite(args.suite, args.root)
        check_sources(suite.datasets)
        for d in suite.datasets:
            sources.append((d.name, d.spec, local_source(d, args.workdir), dataset_config(Config(), d).features))
    else:
        sources.append(("seoul_bike", "", args.source, FeaturesConfig()))
    jobs = []  # (cost, features dir, dataset, kind, seed)
    for name, spec_path, raw, fcfg in sources:
        spec = load_spec(spec_path)
        df, _ = ingest(raw, spec)
        for seed in seeds:
            fc = dataclasses.replace(fcfg, split_seed=seed)
            feats = save_features(Path(args.workdir) / f"features-{name}-{seed}", *make_features(df, spec, fc))
            rows_train = int(round(len(df) * fc.train_frac))
            done = {r["family"] for r in rows if r["dataset"] == name and r["seed"] == seed}
            jobs += [(COST.get(kind, 1.0) * rows_train, str(feats), name, kind, seed) for kind in kinds
                     if (kind, name) not in skipped and kind not in done]
    jobs.sort(key=lambda j: -j[0])
    print(f"{len(jobs)} fits ({len(rows)} done before), {args.workers} at a time; {len(skipped)} left out: "
          f"{', '.join(':'.join(s) for s in sorted(skipped)) or 'none'}", flush=True)

    def write(rows: list[dict], wall: float) -> None:
        rows = sorted(rows, key=lambda r: (r["dataset"], r["seed"], kinds.index(r["family"])))
        out = {"benchmark": "families", "host": args.label, "hostname": socket.gethostname(),
               "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
               "python": platform.python_version(), "threads": free_cores(), "workers": args.workers,
               "load_average_1min": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M"),
               "command": command, "commands": commands, "wall_seconds": wall_before + wall,
               "skipped": sorted(":".join(s) for s in skipped), "rows": rows}
        if args.suite:
            out["choice"] = choice(rows, [k for k in kinds if k != "xgboost"])
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(out, indent=2) + "\n")
        os.replace(tmp, path)

    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, args.workers)) as pool:
        pending = {pool.submit(fit_row, feats, name, kind, seed, overrides.get(kind, {}))
                   for _, feats, name, kind, seed in jobs}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                row = future.result()
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "settings"}), flush=True)
            write(rows, time.perf_counter() - start)  # after every fit: a long run that is stopped keeps its rows
    print(f"\n{'dataset':20} {'family':10} " + " ".join(f"{'seed ' + str(s):>22}" for s in seeds))
    for name, *_ in sources:
        for kind in kinds:
            cells = [f"{r['test_mse']:.5f} ({r['seconds']:6.1f} s)" for s in seeds for r in rows
                     if r["family"] == kind and r["dataset"] == name and r["seed"] == s]
            print(f"{name:20} {kind:10} " + " ".join(f"{c:>22}" for c in cells))
    if args.suite:
        print(json.dumps(choice(rows, [k for k in kinds if k != "xgboost"]), indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
