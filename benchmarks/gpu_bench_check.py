"""Check the bench's `--device cuda` path for tabduel's torch families, beside the same machine's CPU.

    python benchmarks/gpu_bench_check.py --out DIR [--minutes 0.25] [--families mlp,realmlp,tabm]
                                         [--devices cuda,cpu] [--threads 4] [--work DIR]

On a bare GPU image without Optuna: PYTHONPATH=.gpuwheels:. python3 benchmarks/gpu_bench_check.py --out DIR
(.gpuwheels: an installed tree of optuna and its needs, `pip install --target` for Python 3.12).

It needs torch, numpy, pandas, pyarrow, scipy and optuna (no Prefect, MLflow or XGBoost). Data: a generated raw
file of 365 days (8760 rows, the Seoul file's size; never the UCI data), ingested and featurized with tabduel's
plain functions (each encoding base the families search, split at the outer seed as the bench does). Then, per
device and family, one bench cell (tabduel.bench.cells.run_cell, outer seed 4751, the bench's budget of --minutes:
CPU-seconds on the CPU, synchronized wall seconds on cuda) run in this process, one after another. Each cell checks:
- it kept its budget (over_budget is false);
- the tested model is the selected trial's own (tested == "selected") and its valid MSE, predicted again, is the
  search's best valid MSE (within 1e-6, absolute or relative);
- its trials trained on the cell's device (the best trial's device says cuda on cuda);
- at least one trial finished, its budget counted on the device's clock (budget_clock) and its test MSE finite.
The process's CUDA context is made once before the first cuda cell (cuda_context_seconds), so that no family is
charged for it.
The JSON holds each cell's trials, seconds spent, budget, test MSE and post-hoc ensemble test MSE, and per family
the trials per budget on cuda against the CPU. Results: DIR/gpu-bench-<card>.json (card: the GPU's name with
spaces as dashes, or "cpu" without a GPU). It exits non-zero with one line if any check fails, after writing it.
--work DIR keeps the generated features there (DIR/features/<base>) for benchmarks/gpu_check.py --features; the
cells' journals and search inputs are always new, in a temporary folder.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from rawdata import raw_rows, write_raw  # noqa: E402
from tabduel.bench.cells import Cell, bases_of, budget_clock, check_device, over_budget, run_cell  # noqa: E402
from tabduel.data.dataset import load_spec  # noqa: E402
from tabduel.data.features import make_features, save_features  # noqa: E402
from tabduel.data.ingest import ingest  # noqa: E402
from tabduel.infra.config import FeaturesConfig  # noqa: E402
from tabduel.infra.store import atomic_write_json, sha256_file  # noqa: E402
from tabduel.search.space import features_config  # noqa: E402
from tabduel.settings import Config  # noqa: E402

SEED = 4751  # the bench's first outer seed
SPEC = ROOT / "data" / "datasets" / "seoul_bike.toml"  # the built-in spec, which the generated file is shaped like
DATASET = "seoul-like"
KEPT = ("trials", "trials_failed", "trials_pruned", "cpu_seconds", "wall_seconds", "budget_cpu_seconds",
        "budget_clock", "device", "tested", "best_trial", "best_valid_mse", "tested_valid_mse", "test_mse", "test_r2",
        "test_rmse_orig", "ensemble_valid_mse", "ensemble_test_mse", "ensemble_library", "test_cpu_seconds",
        "best_params")


def build_features(work: Path, bases: list[str], seed: int, days: int) -> dict[str, str]:
    """The generated raw file ingested, and one features folder per encoding base (split at the outer seed)."""
    raw = write_raw(work / "raw.csv", raw_rows(days=days))
    spec = load_spec(SPEC)  # by path: tabduel.datasets (data/datasets) resolves only in an installed tabduel
    df, _ = ingest(str(raw), spec)
    out = {}
    for base in bases:
        splits, manifest = make_features(df, spec, features_config(base, spec, FeaturesConfig(), seed))
        out[base] = str(save_features(work / "features" / base, splits,
                                      {**manifest, "source_sha256": sha256_file(raw)}))
    return out


class Log:
    """run_cell's log: warnings always, info lines (the budget line, each trial) with --verbose."""

    def __init__(self, prefix: str, verbose: bool):
        self.prefix, self.verbose = prefix, verbose

    def info(self, msg: str) -> None:
        if self.verbose:
            print(f"  {self.prefix} {msg}", flush=True)

    def warning(self, msg: str) -> None:
        print(f"  {self.prefix} WARNING {msg}", flush=True)


def close(a: float, b: float, tol: float = 1e-6) -> bool:
    """abs(a - b) within tol, absolute or relative to b (pytest.approx(b, abs=tol) with its rel=1e-6)."""
    return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= max(tol, tol * abs(b))


def cell_checks(r: dict, device: str) -> dict[str, bool]:
    return {"within_budget": not over_budget(r),
            "tested_selected": r.get("tested") == "selected",
            "tested_valid_is_best_valid": close(float(r.get("tested_valid_mse", math.nan)),
                                                float(r.get("best_valid_mse", math.nan))),
            "trained_on_device": str(r.get("device", "")).startswith(device),
            "budget_clock": r.get("budget_clock") == budget_clock(device),
            "a_trial_finished": int(r.get("trials", 0)) >= 1,
            "test_mse_finite": math.isfinite(float(r.get("test_mse", math.nan)))}


def run_one(family: str, device: str, features: dict[str, str], minutes: float, threads: int, work: Path,
            verbose: bool) -> dict:
    cfg = Config.from_dict({"bench": {"device": device, "minutes": minutes, "trials": 0, "first_seed": SEED}})
    cell = Cell(DATASET, family, SEED)
    journal = work / "journals" / device / f"{family}.log"
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        r = run_cell(cell, {b: features[b] for b in bases_of(family)}, cfg, journal, threads=threads,
                     log=Log(f"[{device} {family}]", verbose), inputs=work / "inputs")
    except Exception as exc:  # noqa: BLE001 - a failed cell is a failed check, the others still run
        traceback.print_exc()
        return {"family": family, "device": device, "error": f"{type(exc).__name__}: {exc}".splitlines()[0],
                "seconds_in_run_cell": round(time.perf_counter() - start, 2),
                "checks": {"ran": False}}
    row = {"family": family, "device_asked": device, "threads": threads, **{k: r.get(k) for k in KEPT},
           "seconds_in_run_cell": round(time.perf_counter() - start, 2)}
    budget = r.get("budget_cpu_seconds")
    row["trials_per_budget_minute"] = round(r["trials"] / (budget / 60), 2) if budget else None
    row["trials_per_wall_second"] = round(r["trials"] / r["wall_seconds"], 3) if r.get("wall_seconds") else None
    if cuda:
        row["cuda_peak_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    row["checks"] = {"ran": True, **cell_checks(r, device)}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results", help="where to write gpu-bench-<card>.json")
    parser.add_argument("--minutes", type=float, default=0.25,
                        help="each cell's budget in minutes (CPU-minutes on cpu, wall minutes on cuda)")
    parser.add_argument("--families", default="mlp,realmlp,tabm", help="comma-separated torch families")
    parser.add_argument("--devices", "--device", default="cuda,cpu", help="comma-separated: cuda, cpu (in order)")
    parser.add_argument("--threads", type=int, default=4, help="threads per cell (run_cell's threads)")
    parser.add_argument("--days", type=int, default=365, help="days of generated hourly rows (365: 8760 rows)")
    parser.add_argument("--work", default="", help="keep the features here, DIR/features/<base> (default: a temp dir)")
    parser.add_argument("--verbose", action="store_true", help="print each cell's budget and trial lines")
    args = parser.parse_args()
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    bad = [d for d in devices if d not in ("cuda", "cpu")]
    if bad or not devices:
        raise SystemExit(f"--devices {args.devices!r}: name cuda and/or cpu")

    import optuna

    cuda_seen = torch.cuda.is_available()
    card = torch.cuda.get_device_name(0) if cuda_seen else "cpu"
    report: dict = {"card": card, "python": platform.python_version(), "torch": torch.__version__,
                    "torch_cuda": torch.version.cuda, "optuna": optuna.__version__, "cuda_available": cuda_seen,
                    "cpu_threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "command": "python benchmarks/gpu_bench_check.py " + " ".join(sys.argv[1:]),
                    "dataset": DATASET, "outer_seed": SEED, "minutes": args.minutes, "families": families,
                    "devices": devices, "threads": args.threads, "cells": []}
    checks: dict[str, bool] = {}
    begun = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tabduel-gpu-bench-") as tmp:
        work = Path(args.work).resolve() if args.work else Path(tmp)  # the features; journals always start afresh
        work.mkdir(parents=True, exist_ok=True)
        bases = sorted({b for f in families for b in bases_of(f)})
        start = time.perf_counter()
        features = build_features(work, bases, SEED, args.days)
        report["rows"] = args.days * 24
        report["features_seconds"] = round(time.perf_counter() - start, 2)
        print(f"features {', '.join(bases)} of {args.days * 24} generated rows in {report['features_seconds']}s "
              f"({work / 'features'})", flush=True)
        for device in devices:
            try:
                check_device(device, families)
                checks[f"{device}_check_device"] = True
            except Exception as exc:  # noqa: BLE001 - ConfigError: one line
                print(f"{device}: {exc}", flush=True)
                checks[f"{device}_check_device"] = False
                continue
            if device == "cuda":  # the process's CUDA context, once (the bench's process pays it in its first cell)
                start = time.perf_counter()
                torch.zeros(1, device="cuda").sum().item()
                report["cuda_context_seconds"] = round(time.perf_counter() - start, 2)
            for family in families:
                print(f"{device} {family}: running a {args.minutes * 60:g}s {budget_clock(device)}-clock cell ...",
                      flush=True)
                row = run_one(family, device, features, args.minutes, args.threads, Path(tmp), args.verbose)
                report["cells"].append(row)
                for name, ok in row["checks"].items():
                    checks[f"{device}_{family}_{name}"] = bool(ok)
                if "error" in row:
                    print(f"{device} {family}: FAILED {row['error']}", flush=True)
                else:
                    failed = [k for k, v in row["checks"].items() if not v]
                    print(f"{device} {family}: {row['trials']} trials in {row['cpu_seconds']:.2f}/"
                          f"{row['budget_cpu_seconds']:g} {row['budget_clock']}-s (wall {row['wall_seconds']:.1f}s, "
                          f"run_cell {row['seconds_in_run_cell']:.1f}s) on {row['device']}; "
                          f"valid {row['best_valid_mse']:.5f} test {row['test_mse']:.5f} "
                          f"ens-test {row['ensemble_test_mse']:.5f}"
                          + (f"; FAILED {', '.join(failed)}" if failed else "; ok"), flush=True)
    by = {(c["family"], c.get("device_asked", c.get("device"))): c for c in report["cells"]}
    report["cuda_vs_cpu"] = {}
    for family in families:
        g, c = by.get((family, "cuda")), by.get((family, "cpu"))
        if g and c and "error" not in g and "error" not in c:
            report["cuda_vs_cpu"][family] = {
                "cuda_trials": g["trials"], "cpu_trials": c["trials"],
                "budget_seconds": g["budget_cpu_seconds"],
                "cuda_trials_per_budget_minute": g["trials_per_budget_minute"],
                "cpu_trials_per_budget_minute": c["trials_per_budget_minute"],
                "cuda_over_cpu_trials": round(g["trials"] / c["trials"], 2) if c["trials"] else None,
                "cuda_test_mse": g["test_mse"], "cpu_test_mse": c["test_mse"],
                "cuda_ensemble_test_mse": g["ensemble_test_mse"], "cpu_ensemble_test_mse": c["ensemble_test_mse"]}
    report["checks"] = checks
    report["all_passed"] = bool(checks) and all(checks.values())
    report["seconds_total"] = round(time.perf_counter() - begun, 1)
    dest = Path(args.out) / f"gpu-bench-{card.replace(' ', '-')}.json"
    atomic_write_json(dest, report)
    for family, row in report["cuda_vs_cpu"].items():
        print(f"{family:<8} trials per budget minute: cuda {row['cuda_trials_per_budget_minute']} "
              f"cpu {row['cpu_trials_per_budget_minute']}; test mse cuda {row['cuda_test_mse']:.5f} "
              f"cpu {row['cpu_test_mse']:.5f}", flush=True)
    print(f"wrote {dest} ({report['seconds_total']}s)", flush=True)
    failed = [k for k, v in checks.items() if not v]
    if failed or not checks:
        raise SystemExit(f"gpu_bench_check: {len(failed)} check(s) failed: {', '.join(failed) or 'none ran'}")
    print("gpu_bench_check: all checks passed", flush=True)


if __name__ == "__main__":
    main()
