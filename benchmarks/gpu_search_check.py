"""One prepared GPU session: the search's CUDA path, the engine's CUDA checks and the population timings.

    python benchmarks/gpu_search_check.py --out DIR [--quick]

It needs only torch, numpy, pandas, pyarrow and scipy (no Prefect, MLflow, Optuna or XGBoost), so it runs on a
bare GPU image. Data: a generated raw file of 365 days (8760 rows, the Seoul file's size; never the UCI data).
1. Search trials on CUDA and on the same machine's CPU, side by side: a single NN5, a PLE-encoded 3x256 ensemble
   of 8, a periodic 4x512 ensemble of 4, and 8 same-shape trials x 4 seeds as one population of 32. Each records
   seconds, valid MSE and the device the engine used.
2. benchmarks/gpu_check.py (the engine's CUDA checks) on the ordinal features.
3. benchmarks/training.py --device cuda, rows population_k1 and population_k1024.
Results: DIR/gpu-search-<card>.json, DIR/gpu-check-*.json and DIR/training-cuda.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from rawdata import raw_rows, write_raw  # noqa: E402
from tabduel.data.dataset import load_spec  # noqa: E402
from tabduel.data.features import make_features  # noqa: E402
from tabduel.data.ingest import ingest  # noqa: E402
from tabduel.infra.config import FeaturesConfig, MLPConfig, to_plain  # noqa: E402
from tabduel.infra.store import atomic_write_json, sha256_file  # noqa: E402
from tabduel.search.space import Encoding, MLPTrial, features_config  # noqa: E402
from tabduel.search.trials import run_mlp  # noqa: E402


def features(source: Path, base: str, out: Path) -> Path:
    """Ingest + features of one encoding base with tabduel's plain functions."""
    spec = load_spec("")
    df, _ = ingest(str(source), spec)
    cfg = features_config(base, spec, FeaturesConfig())
    splits, manifest = make_features(df, spec, cfg)
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in splits.items():
        frame.to_parquet(out / f"{name}.parquet", index=False)
    atomic_write_json(out / "manifest.json",
                      {**manifest, "source_sha256": sha256_file(source), "config": to_plain(cfg)})
    return out


def cases(epochs: int) -> dict[str, tuple[str, list[MLPTrial]]]:
    base = MLPConfig(epochs=epochs, patience=0, seed=1)
    nn5 = MLPTrial(Encoding("ordinal"), base, 1)
    ple = MLPTrial(Encoding("ple", bins=16), dataclasses.replace(base, hidden=(256,) * 3, activation="relu",
                                                                 optimizer="adamw", lr=1e-3, batch_size=256), 8)
    periodic = MLPTrial(Encoding("periodic", frequencies=16, sigma=1.0),
                        dataclasses.replace(base, hidden=(512,) * 4, activation="silu", optimizer="adamw", lr=5e-4,
                                            dropout=0.1, batch_size=256), 4)
    grid = [MLPTrial(Encoding("onehot"), dataclasses.replace(base, hidden=(128,) * 2, activation="gelu",
                                                              optimizer="adam", lr=lr, batch_size=128), 4)
            for lr in (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2)]
    return {"nn5_single": ("ordinal", [nn5]), "ple_3x256_ens8": ("onehot", [ple]),
            "periodic_4x512_ens4": ("onehot", [periodic]), "grid_8trials_x4seeds_2x128": ("onehot", grid)}


def run_case(feats: Path, trials: list[MLPTrial], device: str, threads: int) -> dict:
    trials = [dataclasses.replace(t, mlp=dataclasses.replace(t.mlp, device=device, threads=threads)) for t in trials]
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    results = run_mlp(feats, trials)
    if device == "cuda":
        torch.cuda.synchronize()
    return {"seconds": round(time.perf_counter() - start, 3), "device": results[0]["device"],
            "valid_mse": [round(r["valid_mse"], 5) for r in results]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--quick", action="store_true", help="10 epochs and no subprocess rows (a local smoke run)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    card = torch.cuda.get_device_name(0) if cuda else "none"
    report: dict = {"card": card, "torch": torch.__version__, "python": platform.python_version(),
                    "cpu_threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d %H:%M"),
                    "command": "python benchmarks/gpu_search_check.py " + " ".join(sys.argv[1:]), "search": {}}
    epochs = 10 if args.quick else 60
    with tempfile.TemporaryDirectory(prefix="tabduel-gpu-") as tmp:
        raw = write_raw(Path(tmp) / "raw.csv", raw_rows(days=365))
        feats = {b: features(raw, b, Path(tmp) / b) for b in ("ordinal", "onehot")}
        run_mlp(feats["ordinal"], [cases(1)["nn5_single"][1][0]])  # warm-up: imports, first kernels
        for name, (base, trials) in cases(epochs).items():
            row = {"epochs": epochs, "trials": len(trials), "members": sum(t.ensemble for t in trials)}
            row["cpu"] = run_case(feats[base], trials, "cpu", torch.get_num_threads())
            if cuda:
                run_case(feats[base], trials[:1], "cuda", 1)  # warm-up of this shape's kernels
                row["cuda"] = run_case(feats[base], trials, "cuda", 1)
                row["cpu_over_cuda"] = round(row["cpu"]["seconds"] / row["cuda"]["seconds"], 2)
            report["search"][name] = row
            print(name, json.dumps(row), flush=True)
        if cuda and not args.quick:
            steps = {
                "gpu_check": [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--features",
                              str(feats["ordinal"]), "--out", str(out)],
                "training": [sys.executable, str(ROOT / "benchmarks" / "training.py"), "--device", "cuda",
                             "--source", str(raw), "--repeats", "1", "--rows",
                             "population_k1,population_k1024", "--out",
                             str(out / "training-cuda.json")],
            }
            for name, cmd in steps.items():
                start = time.perf_counter()
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
                report[name] = {"rc": proc.returncode, "seconds": round(time.perf_counter() - start, 1),
                                "tail": (proc.stdout + proc.stderr)[-3000:]}
                print(name, proc.returncode, (proc.stdout + proc.stderr)[-1500:], flush=True)
    dest = out / f"gpu-search-{card.replace(' ', '_')}.json"
    dest.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
