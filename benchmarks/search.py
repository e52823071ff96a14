"""The search benchmark: MLP vs XGBoost on Seoul Bike with one stated budget per family, and what it found.

    python benchmarks/search.py --minutes 15            # 15 wall minutes per family = 30 CPU-minutes on 2 cores

It runs `tabduel search` in a fresh work directory (its own journal, MLflow store and data), then reads the
study's evidence and writes benchmarks/results/search-<label>.json: both families' best valid MSE, the refit test
MSE over the split seeds with the paired test, and the budget (trials, wall and CPU minutes) at which the MLP's
best-so-far valid MSE first reached XGBoost's best, or how far it stayed short.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import run_child  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "SeoulBikeData.csv"


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
    parser.add_argument("extra", nargs="*", help="more `tabduel search` flags, after --")
    args = parser.parse_args()

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
    from tabduel.search.study import SPENT, completed, open_storage

    storage = open_storage(str(work / "data" / "search" / "bench" / "journal.log"))
    studies = {fam: optuna.load_study(study_name=f"bench-{fam}", storage=storage) for fam in ("mlp", "xgboost")}
    curves = {fam: compare.best_so_far(completed(st)) for fam, st in studies.items()}
    spent = {fam: st.user_attrs.get(SPENT, 0.0) for fam, st in studies.items()}
    cores = free_cores()
    best = json.loads((work / "data" / "search" / "bench" / "best.json").read_text())
    final = json.loads((work / "data" / "search" / "bench" / "final.json").read_text())
    xgb_valid = best["xgboost"]["valid_mse"]
    hit = compare.first_crossing(curves["mlp"], xgb_valid)
    result = {
        "benchmark": "search", "host": socket.gethostname(), "cpus": os.cpu_count(), "free_cores": cores,
        "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": "python benchmarks/search.py " + " ".join(sys.argv[1:]), "tabduel_command": " ".join(cmd[1:]),
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
    dest.write_text(json.dumps(result, indent=2, default=float) + "\n")
    shutil.copy(work / "data" / "search" / "bench" / "best_so_far.png", dest.with_suffix(".best_so_far.png"))
    shutil.copy(work / "data" / "search" / "bench" / "final.png", dest.with_suffix(".final.png"))
    print(out[-3000:])
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
