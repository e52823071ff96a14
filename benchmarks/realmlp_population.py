"""RealMLP trials per CPU-minute, each trial alone against batches trained as one population (search.realmlp_batch).

    python benchmarks/realmlp_population.py --cpu-minutes 2 --epochs 16 --batches 1,4

For each dataset (Seoul Bike, California housing) and each batch size, the realmlp family is searched on one outer
split as a bench cell searches it (one trial at a time on one thread, a budget in CPU-seconds, the trials' time
limits on the same clock), one after another in one run; the variants of a dataset share the TPE seed. Then each
variant's trials per CPU-minute and its ratio to batch 1's: of all trials, and of the full ones (the budget's last
cut trials left out), and the CPU-seconds of a full trial per shape (TPE draws other shapes in each variant, and a
population's gain depends on the shape); its selected trial's valid MSE and that trial's test MSE (one split, one
seed: a check, not a comparison). --epochs sets search.realmlp_epochs: at the default 256, one
trial outlasts a 2-minute budget, and a budget that cuts every trial measures the cut, not the training. Writes
benchmarks/results/realmlp-population-<label>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from pathlib import Path

from _common import ROOT, machine, outer_features, write_result

SHARED = ROOT.parent / "shared" / "data"
DATASETS = {"seoul_bike": SHARED / "SeoulBikeData.csv",
            "california_housing": SHARED / "suite" / "california_housing" / "housing.csv"}


def study_facts(journal: Path, epochs: int) -> dict:
    """Facts of a cell's trials that its row leaves out: each trial's shape, epochs, CPU-seconds and population; the
    full trials (every epoch run, no time limit reached: the budget cut none) per CPU-minute of their own; the mean
    CPU-seconds of a full trial by shape (hidden layers, numeric embedding), as TPE draws other shapes in each
    variant."""
    import optuna

    from tabduel.search.study import open_storage

    study = optuna.load_study(study_name="cell-realmlp", storage=open_storage(str(journal)))
    trials = [{"number": t.number, "state": t.state.name.lower(),
               "shape": f"{t.params['hidden']} {t.params['embedding']}",
               "epochs_run": t.user_attrs.get("epochs_run"), "cpu_seconds": t.user_attrs.get("cpu_seconds"),
               "population_trials": t.user_attrs.get("population_trials", 1),
               "time_limited": bool(t.user_attrs.get("time_limited"))} for t in study.trials
              if t.state.name in ("COMPLETE", "FAIL")]
    full = [t for t in trials if t["state"] == "complete" and not t["time_limited"] and t["epochs_run"] == epochs]
    shapes: dict[str, list[float]] = {}
    for t in full:
        shapes.setdefault(t["shape"], []).append(t["cpu_seconds"])
    return {"time_limited_trials": sum(t["time_limited"] for t in trials), "full_trials": len(full),
            "full_trials_per_cpu_minute": len(full) / (sum(t["cpu_seconds"] for t in full) / 60) if full else 0.0,
            "cpu_seconds_per_full_trial_by_shape": {k: {"trials": len(v), "mean": sum(v) / len(v)}
                                                    for k, v in sorted(shapes.items())},
            "trial_log": trials}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-minutes", type=float, default=2.0, help="CPU-minutes per variant [2]")
    parser.add_argument("--epochs", type=int, default=16, help="search.realmlp_epochs of every trial [16]")
    parser.add_argument("--batches", default="1,4", help="search.realmlp_batch values, comma-separated [1,4]")
    parser.add_argument("--datasets", default=",".join(DATASETS), help=f"of {', '.join(DATASETS)} [both]")
    parser.add_argument("--seed", type=int, default=4751, help="the outer split's seed [4751]")
    parser.add_argument("--workdir", default="/tmp/tabduel-realmlp-population", help="fresh work directory")
    parser.add_argument("--label", default="vm", help="results file suffix [vm]")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tabduel.bench.cells import Cell, run_cell
    from tabduel.settings import load_config

    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cfg = load_config({})
    batches = [int(b) for b in args.batches.split(",")]
    out: dict[str, dict] = {}
    for dataset in args.datasets.split(","):
        features, n_rows = outer_features(DATASETS[dataset], dataset, work / dataset / "features", ["ordinal"],
                                          args.seed)
        rows: dict[str, dict] = {}
        for batch in batches:
            c = dataclasses.replace(
                cfg, bench=dataclasses.replace(cfg.bench, minutes=args.cpu_minutes, trials=0),
                search=dataclasses.replace(cfg.search, realmlp_batch=batch, realmlp_epochs=args.epochs))
            name = f"batch{batch}"
            print(f"{dataset} {name}: {args.cpu_minutes} CPU-minutes, {args.epochs} epochs a trial ...", flush=True)
            journal = work / dataset / name / "j.log"
            journal.parent.mkdir(parents=True)
            r = run_cell(Cell(dataset, "realmlp", args.seed), features, c, journal, threads=1)
            rows[name] = {"realmlp_batch": batch, "trials": r["trials"], "trials_failed": r["trials_failed"],
                          "cpu_seconds": r["cpu_seconds"], "wall_seconds": r["wall_seconds"],
                          "trials_per_cpu_minute": r["trials"] / (r["cpu_seconds"] / 60),
                          "best_valid_mse": r["best_valid_mse"], "test_mse": r["test_mse"],
                          "best_trial": r["best_trial"], "best_params": r["best_params"],
                          **study_facts(journal, args.epochs)}
            print(f"  {r['trials']} trials in {r['cpu_seconds']:.0f} CPU-s "
                  f"({rows[name]['trials_per_cpu_minute']:.2f} per CPU-minute); best valid "
                  f"{r['best_valid_mse']:.5f}, its test {r['test_mse']:.5f}", flush=True)
        first = rows[f"batch{batches[0]}"]
        for row in rows.values():
            for key in ("trials_per_cpu_minute", "full_trials_per_cpu_minute"):
                row[f"{key}_vs_first"] = row[key] / first[key]
            # per shape, the first variant's CPU-seconds per full trial over this one's (> 1: this one is cheaper)
            row["speedup_by_shape_vs_first"] = {
                shape: first["cpu_seconds_per_full_trial_by_shape"][shape]["mean"] / v["mean"]
                for shape, v in row["cpu_seconds_per_full_trial_by_shape"].items()
                if shape in first["cpu_seconds_per_full_trial_by_shape"]}
        out[dataset] = {"train_rows": int(n_rows * cfg.features.train_frac), "variants": rows}
    result = {"benchmark": "realmlp-population", **machine("realmlp_population.py"), "outer_seed": args.seed,
              "cpu_minutes_per_variant": args.cpu_minutes, "realmlp_epochs": args.epochs, "threads": 1,
              "note": "one trial (or population) at a time on one thread, as a bench cell runs; budgets are "
                      "CPU-seconds, so a busy machine changes the wall time, not the counts; one outer seed",
              "datasets": out}
    write_result(ROOT / "benchmarks" / "results" / f"realmlp-population-{args.label}.json", result)


if __name__ == "__main__":
    main()
