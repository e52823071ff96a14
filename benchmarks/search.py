"""The search benchmark: MLP vs XGBoost on Seoul Bike with one stated budget per family, and what it found.

    python benchmarks/search.py --minutes 15            # 15 wall minutes per family = 30 CPU-minutes on 2 cores
    python benchmarks/search.py --rate --cpu-minutes 4  # MLP trials per CPU-minute: pruning and batches, side by side

It runs `tabduel search` in a fresh work directory (its own journal, MLflow store and data), then reads the
study's evidence and writes benchmarks/results/search-<label>.json: both families' best valid MSE, the refit test
MSE over the split seeds with the paired test, and the budget (trials, wall and CPU minutes) at which the MLP's
best-so-far valid MSE first reached XGBoost's best, or how far it stayed short.

With --rate it measures what multi-fidelity pruning (--search-pruner) and batched trials (--search-mlp-batch) buy:
the MLP family searched on one outer split of Seoul Bike, as a bench cell does (one trial at a time on one thread,
a budget in CPU-seconds), once per variant, one after another in one run; then each variant's trials per CPU-minute,
its ratio to the plain search's, its best valid MSE, and the test MSE of its refitted best (one split: a check,
not a comparison). It writes benchmarks/results/search-rate-<label>.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import machine, outer_features, run_child, write_result  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "SeoulBikeData.csv"
# --rate: (search.pruner, search.mlp_batch) of each variant; the first is the plain search the others are put beside
RATE_VARIANTS = {"plain": ("none", 1), "hyperband": ("hyperband", 1), "batch4": ("none", 4),
                 "hyperband_batch4": ("hyperband", 4)}


def rate(args: argparse.Namespace) -> None:
    """Trials per CPU-minute of the MLP search, plain and with pruning and batches, on one outer split of Seoul."""
    import dataclasses

    sys.path.insert(0, str(ROOT))
    from tabduel.bench.cells import Cell, bases_of, run_cell
    from tabduel.settings import load_config

    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cfg = load_config({})
    features, _ = outer_features(args.source, "seoul_bike", work / "features", bases_of("mlp"), args.seed)
    rows: dict[str, dict] = {}
    for name, (pruner, batch) in RATE_VARIANTS.items():
        c = dataclasses.replace(cfg, bench=dataclasses.replace(cfg.bench, minutes=args.cpu_minutes, trials=0),
                                search=dataclasses.replace(cfg.search, pruner=pruner, mlp_batch=batch))
        print(f"{name}: pruner {pruner}, batch {batch}, {args.cpu_minutes} CPU-minutes ...", flush=True)
        r = run_cell(Cell("seoul_bike", "mlp", args.seed), features, c, work / f"{name}.log", threads=1)
        rows[name] = {"pruner": pruner, "mlp_batch": batch, "trials": r["trials"], "trials_pruned": r["trials_pruned"],
                      "trials_failed": r["trials_failed"], "cpu_seconds": r["cpu_seconds"],
                      "wall_seconds": r["wall_seconds"], "trials_per_cpu_minute": r["trials"] / (r["cpu_seconds"] / 60),
                      "best_valid_mse": r["best_valid_mse"], "test_mse": r["test_mse"], "best_params": r["best_params"]}
        print(f"  {r['trials']} trials ({r['trials_pruned']} pruned) in {r['cpu_seconds']:.0f} CPU-s; best valid "
              f"{r['best_valid_mse']:.5f}, test {r['test_mse']:.5f}", flush=True)
    plain = rows["plain"]["trials_per_cpu_minute"]
    for row in rows.values():
        row["trials_per_cpu_minute_vs_plain"] = row["trials_per_cpu_minute"] / plain
    result = {"benchmark": "search-rate", **machine("search.py"), "dataset": "seoul_bike",
              "outer_seed": args.seed, "cpu_minutes_per_variant": args.cpu_minutes, "threads": 1,
              "note": "one trial at a time on one thread, as a bench cell runs; budgets are CPU-seconds, so a busy "
                      "machine changes the wall time, not the counts",
              "variants": rows}
    write_result(ROOT / "benchmarks" / "results" / f"search-rate-{args.label}.json", result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=15.0, help="wall-clock minutes per family [15]")
    parser.add_argument("--trials", type=int, default=0, help="trials per family (0: only the minutes) [0]")
    parser.add_argument("--source", default=str(SHARED), help="raw CSV [../shared/data/SeoulBikeData.csv]")
    parser.add_argument("--workdir", default="/tmp/tabduel-search-bench", help="fresh work directory")
    parser.add_argument("--label", default="vm", help="results file suffix [vm]")
    parser.add_argument("--extend", action="store_true",
                        help="extend the search already in --workdir by --minutes per family (--more-trials), "
                             "instead of starting a fresh one")
    parser.add_argument("--rate", action="store_true",
                        help="measure MLP trials per CPU-minute with and without pruning and batches instead")
    parser.add_argument("--cpu-minutes", type=float, default=4.0, help="--rate: CPU-minutes per variant [4]")
    parser.add_argument("--seed", type=int, default=4751, help="--rate: the outer split's seed [4751]")
    parser.add_argument("extra", nargs="*", help="more `tabduel search` flags, after --")
    args = parser.parse_args()
    if args.rate:
        rate(args)
        return

    work = Path(args.workdir)
    tabduel = str(Path(sys.executable).parent / "tabduel")
    cmd = [tabduel, "search", "--source", args.source, "--minutes", str(args.minutes), "--study", "bench"]
    if args.extend:  # the stored studies go on: budgets add up
        cmd += ["--more-trials", str(args.trials or 100000)]
    else:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        cmd += ["--trials", str(args.trials)]
    cmd += args.extra
    print("running:", " ".join(cmd), flush=True)
    out, wall, _ = run_child(cmd, cwd=work)
    (work / f"search-{args.label}.log").write_text(out)

    sys.path.insert(0, str(ROOT))
    import optuna

    from tabduel.infra.runtime import free_cores
    from tabduel.search import compare
    from tabduel.search.study import SPENT, budgeted_trials, completed, open_storage

    storage = open_storage(str(work / "data" / "search" / "bench" / "journal.log"))
    studies = {fam: optuna.load_study(study_name=f"bench-{fam}", storage=storage) for fam in ("mlp", "xgboost")}
    curves = {fam: compare.best_so_far(completed(st), budgeted_trials(st)) for fam, st in studies.items()}
    spent = {fam: st.user_attrs.get(SPENT, 0.0) for fam, st in studies.items()}
    cores = free_cores()
    best = json.loads((work / "data" / "search" / "bench" / "best.json").read_text())
    final = json.loads((work / "data" / "search" / "bench" / "final.json").read_text())
    xgb_valid = best["xgboost"]["valid_mse"]
    hit = compare.first_crossing(curves["mlp"], xgb_valid)
    result = {
        "benchmark": "search", **machine("search.py"), "free_cores": cores, "tabduel_command": " ".join(cmd[1:]),
        "wall_seconds": wall, "extended": args.extend,
        "budget_per_family": {"wall_minutes_this_run": args.minutes, "trials": args.trials or None,
                              "wall_minutes_spent": {f: v / 60 for f, v in spent.items()},
                              "cpu_minutes_spent": {f: v / 60 * cores for f, v in spent.items()}},
        "trials_complete": {fam: len(c) for fam, c in curves.items()},
        "best": best,
        "mlp_reaches_xgboost_valid": None if hit is None else {
            **hit, "wall_minutes": hit["seconds"] / 60, "cpu_minutes": hit["seconds"] / 60 * cores},
        "mlp_valid_gap_at_end": best["mlp"]["valid_mse"] - xgb_valid,
        "final": final,
        "curves": {fam: c.to_dict(orient="list") for fam, c in curves.items()},
    }
    dest = ROOT / "benchmarks" / "results" / f"search-{args.label}.json"
    write_result(dest, result)
    shutil.copy(work / "data" / "search" / "bench" / "best_so_far.png", dest.with_suffix(".best_so_far.png"))
    shutil.copy(work / "data" / "search" / "bench" / "final.png", dest.with_suffix(".final.png"))
    print(out[-3000:])
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
