"""Training-speed suite: ratios measured side by side in one run; writes benchmarks/results/training-<host>.json.

Rows (each runs in its own child process, so its peak RSS is its own):
  dataloader_vs_engine   NN5, 100 epochs: TensorDataset + DataLoader(shuffle) loop vs the engine's single model
  population_k{K}        K NN5 members (own seeds and learning rates) at once vs K sequential engine runs
  batch_order            K=64 members with their own permutations vs one shared permutation: speed and quality
  compile_k64            the population step through torch.compile vs eager (full runs only: compiling is slow)
  wide_mlp               3 x 256 ReLU AdamW: one model, and K=16 at once vs 16 sequential
  autograd_families      the cost of autograd: a 3 x 256 ReLU AdamW epoch in the autograd loop of the realmlp and
                         tabm families vs the engine's hand-written backward; and an epoch of each family's defaults
  xgboost                hist trees at 1 thread, at the free cores (tabduel's setting), and oversubscribed
  pipeline_overhead      `tabduel run` wall time vs the sum of its steps' pure compute (same process, warm imports)

Sequential baselines for large K time a sample of members and scale by K (each run is independent, so the time
is linear in K); the sample size is in each row. Repeats are interleaved and medians reported.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from _common import peak_rss_mib, run_child  # benchmarks/ is the script's directory, first on sys.path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "SeoulBikeData.csv"
CPU_KS = (1, 8, 64, 256)
GPU_KS = (1, 8, 64, 256, 1024)
GOALS = {"dataloader_vs_engine": ("ratio >=", 5.0), "population_k64": ("ratio >=", 10.0),
         "population_k1024": ("ratio >=", 100.0), "pipeline_overhead": ("ratio <=", 1.5)}


# ---------------------------------------------------------------- helpers (child side)

def _median(values: list[float]) -> float:
    return statistics.median(values)


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    sync()
    start = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - start, out


def sync() -> None:
    """Wait for queued CUDA work, so that wall times are honest on a GPU."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def prepare_features(source: str, out: Path) -> Path:
    """Ingest and featurise the raw file with tabduel's plain functions (defaults) into out/; return out."""

    from tabduel.data.dataset import load_spec
    from tabduel.data.features import make_features
    from tabduel.data.ingest import ingest
    from tabduel.infra.config import FeaturesConfig, to_plain
    from tabduel.infra.store import atomic_write_json, sha256_file

    spec = load_spec("")
    df, _ = ingest(source, spec)
    splits, manifest = make_features(df, spec, FeaturesConfig())
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in splits.items():
        frame.to_parquet(out / f"{name}.parquet", index=False)
    atomic_write_json(out / "manifest.json", {**manifest, "source_sha256": sha256_file(source),
                                              "config": to_plain(FeaturesConfig())})
    return out


def nn5(device: str, **kw: Any):
    from tabduel.infra.config import MLPConfig

    return MLPConfig(device=device, **kw)


def dataloader_fit(data, cfg, threads: int) -> tuple[float, float]:
    """The original analysis's pattern: TensorDataset + DataLoader(shuffle), nn.Sequential, autograd, torch.optim.

    Returns (seconds, final valid MSE)."""
    import torch
    import torch.nn.functional as F

    from tabduel.engine.net import build_mlp

    torch.set_num_threads(threads)
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = build_mlp(data.x_train.shape[1], cfg.hidden, cfg.activation, 0.0).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    ds = torch.utils.data.TensorDataset(torch.from_numpy(data.x_train), torch.from_numpy(data.y_train).unsqueeze(1))
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, shuffle=True)
    xv = torch.from_numpy(data.x_valid).to(device)
    yv = torch.from_numpy(data.y_valid).unsqueeze(1).to(device)

    def run() -> float:
        for _ in range(cfg.epochs):
            model.train()
            for xb, yb in loader:
                xb, yb = xb.to(device), yb.to(device)
                opt.zero_grad()
                F.mse_loss(model(xb), yb).backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                valid = F.mse_loss(model(xv), yv).item()
        return valid

    return _timed(run)


# ---------------------------------------------------------------- rows (child side)

def row_dataloader_vs_engine(data, device: str, quick: bool, repeats: int) -> dict[str, Any]:
    from tabduel.engine import single
    from tabduel.infra.runtime import free_cores

    cfg = nn5(device)
    dl_default, dl_one, engine = [], [], []
    mse: dict[str, float] = {}
    for _ in range(repeats):
        t, mse["dataloader"] = dataloader_fit(data, cfg, free_cores())
        dl_default.append(t)
        t, _ = dataloader_fit(data, cfg, 1)
        dl_one.append(t)
        t, fit = _timed(lambda: single.fit(data, cfg))
        engine.append(t)
        mse["engine"] = fit.history["valid_loss"][-1]
    best_baseline = min(_median(dl_default), _median(dl_one))
    return {"figures": {"dataloader_s_all_cores": round(_median(dl_default), 3),
                        "dataloader_s_one_thread": round(_median(dl_one), 3),
                        "engine_s": round(_median(engine), 3), "engine_threads": fit.info["threads"],
                        "epochs": cfg.epochs, "valid_mse": {k: round(v, 5) for k, v in mse.items()}},
            "ratio": round(best_baseline / _median(engine), 2),
            "ratio_means": "faster DataLoader setting / engine"}


def _members(k: int):
    import numpy as np

    from tabduel.engine.population import Member

    lrs = np.geomspace(0.02, 0.2, k) if k > 1 else [0.05]
    return [Member(seed=1000 + i, lr=float(lr)) for i, lr in enumerate(lrs)]


def _population_vs_sequential(data, cfg, members, sample: int, repeats: int) -> dict[str, Any]:
    import dataclasses

    from tabduel.engine import population, single

    k = len(members)
    picks = sorted({round(i * (k - 1) / max(sample - 1, 1)) for i in range(min(sample, k))})
    seq, pop_t = [], []
    for _ in range(repeats):
        t = 0.0
        for i in picks:
            m = members[i]
            t += _timed(lambda: single.fit(data, dataclasses.replace(cfg, seed=m.seed, lr=m.lr)))[0]
        seq.append(t / len(picks) * k)
        t, pop = _timed(lambda: population.fit(data, cfg, members))
        pop_t.append(t)
    epochs = cfg.epochs
    seq_rate = k * epochs / _median(seq)
    pop_rate = pop.info["member_epochs"] / _median(pop_t)
    valid = pop.info["best_valid_loss"]
    return {"figures": {"members": k, "epochs": epochs, "sequential_sample": len(picks),
                        "sequential_s": round(_median(seq), 3), "population_s": round(_median(pop_t), 3),
                        "sequential_model_epochs_per_s": round(seq_rate, 1),
                        "population_model_epochs_per_s": round(pop_rate, 1),
                        "population_threads": pop.info["threads"],
                        "estimated_mib": round(pop.info["estimated_bytes"] / 2 ** 20, 1),
                        "members_valid_mse_median": round(float(sorted(valid)[len(valid) // 2]), 5)},
            "ratio": round(pop_rate / seq_rate, 2), "ratio_means": "population / sequential throughput"}


def row_population(k: int):
    def run(data, device: str, quick: bool, repeats: int) -> dict[str, Any]:
        cfg = nn5(device, epochs=20 if quick else 100)
        return _population_vs_sequential(data, cfg, _members(k), 4 if quick else 8, repeats)
    return run


def row_batch_order(data, device: str, quick: bool, repeats: int) -> dict[str, Any]:
    import numpy as np
    import torch

    from tabduel.engine import net, population

    members = _members(64)
    out: dict[str, dict[str, float]] = {}
    times: dict[str, list[float]] = {"member": [], "shared": []}
    for _ in range(repeats):
        for order in ("member", "shared"):
            cfg = nn5(device, epochs=20 if quick else 100, batch_order=order)
            t, pop = _timed(lambda: population.fit(data, cfg, members))
            times[order].append(t)
            with torch.no_grad():
                pred = net.forward(pop.params, torch.from_numpy(data.x_valid).t(), "sigmoid").squeeze(1)
            ens = float(((pred.mean(0) - torch.from_numpy(data.y_valid)) ** 2).mean())
            valid = np.asarray(pop.info["best_valid_loss"])
            out[order] = {"members_valid_mse_mean": round(float(valid.mean()), 5),
                          "members_valid_mse_sd": round(float(valid.std(ddof=1)), 5),
                          "ensemble_valid_mse": round(ens, 5)}
    for order in out:
        out[order]["seconds"] = round(_median(times[order]), 3)
    return {"figures": {"members": 64, **{f"{o}_{k}": v for o, d in out.items() for k, v in d.items()}},
            "ratio": round(out["member"]["seconds"] / out["shared"]["seconds"], 2),
            "ratio_means": "speed of one shared permutation over per-member permutations"}


def row_compile_k64(data, device: str, quick: bool, repeats: int) -> dict[str, Any]:
    """The population step through torch.compile against eager, K=64 NN5; the first compiled run includes compiling."""
    from tabduel.engine import population

    cfg = nn5(device, epochs=20 if quick else 100)
    members = _members(64)
    first, _ = _timed(lambda: population.fit(data, cfg, members, compile=True))
    eager, compiled = [], []
    for _ in range(repeats):
        eager.append(_timed(lambda: population.fit(data, cfg, members))[0])
        compiled.append(_timed(lambda: population.fit(data, cfg, members, compile=True))[0])
    return {"figures": {"members": 64, "epochs": cfg.epochs, "eager_s": round(_median(eager), 3),
                        "compiled_s": round(_median(compiled), 3), "first_compiled_run_s": round(first, 3)},
            "ratio": round(_median(eager) / _median(compiled), 2),
            "ratio_means": "eager / compiled time, compiled after warm-up (> 1: compile pays)"}


def row_wide_mlp(data, device: str, quick: bool, repeats: int) -> dict[str, Any]:
    from tabduel.engine import single

    cfg = nn5(device, hidden=(256, 256, 256), activation="relu", optimizer="adamw", lr=1e-3, weight_decay=1e-4,
              epochs=3 if quick else 10)
    one = [_timed(lambda: single.fit(data, cfg))[0] for _ in range(repeats)]
    members = [m.__class__(seed=m.seed, lr=m.lr / 50, weight_decay=1e-4) for m in _members(16)]
    result = _population_vs_sequential(data, cfg, members, 2, repeats)
    result["figures"]["single_s"] = round(_median(one), 3)
    result["figures"]["single_epoch_s"] = round(_median(one) / cfg.epochs, 4)
    return result


def row_autograd_families(data, device: str, quick: bool, repeats: int) -> dict[str, Any]:
    from tabduel.engine import realmlp, single
    from tabduel.infra.config import RealMLPConfig, TabMConfig
    from tabduel.models import tabm as tabm_family

    epochs = 2 if quick else 5
    wide = nn5(device, hidden=(256, 256, 256), activation="relu", optimizer="adamw", lr=1e-3, weight_decay=1e-4,
               batch_size=256, epochs=epochs)
    # The realmlp family's network with its extras off is the same 3 x 256 ReLU MLP (NTK-scaled weights).
    plain = RealMLPConfig(device=device, hidden=(256, 256, 256), activation="relu", parametric_activation=False,
                          embedding="none", front_scale=False, lr=1e-3, lr_schedule="constant", weight_decay=1e-4,
                          wd_schedule="constant", dropout=0.0, batch_size=256, epochs=epochs)
    runs = {"engine": lambda: single.fit(data, wide), "autograd": lambda: realmlp.fit(data, plain),
            "realmlp_defaults": lambda: realmlp.fit(data, RealMLPConfig(device=device, epochs=epochs)),
            "tabm_defaults": lambda: tabm_family.fit(data, TabMConfig(device=device, epochs=epochs, patience=0))}
    per_epoch: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            fit = run()
            per_epoch[name].append(fit.info["train_seconds"] / fit.info["epochs_run"])
    epoch = {name: _median(v) for name, v in per_epoch.items()}
    return {"figures": {f"{name}_epoch_s": round(v, 4) for name, v in epoch.items()}
            | {"epochs": epochs, "batch_size": 256, "tabm_k": TabMConfig().k,
               "realmlp_defaults_vs_engine": round(epoch["realmlp_defaults"] / epoch["engine"], 2),
               "tabm_defaults_vs_engine": round(epoch["tabm_defaults"] / epoch["engine"], 2)},
            "ratio": round(epoch["autograd"] / epoch["engine"], 2),
            "ratio_means": "autograd-loop epoch / hand-written-backward epoch, same 3 x 256 MLP"}


def row_xgboost(data, device: str, quick: bool, repeats: int) -> dict[str, Any]:
    import torch

    if importlib.util.find_spec("xgboost") is None:
        return {"figures": "unmeasured: xgboost is not installed here", "ratio": None, "ratio_means": ""}

    from tabduel.infra.config import XGBoostConfig
    from tabduel.infra.runtime import cpu_threads, free_cores
    from tabduel.models import xgb

    rounds = 300 if quick else 2000
    ours = cpu_threads(0)
    settings = {"one_thread": ("cpu", 1), "free_cores": ("cpu", ours), "oversubscribed": ("cpu", 4 * free_cores())}
    if device.startswith("cuda") and torch.cuda.is_available():
        settings["cuda"] = ("cuda", ours)
    times: dict[str, list[float]] = {k: [] for k in settings}
    mse: dict[str, float] = {}
    for _ in range(repeats):
        for name, (dev, jobs) in settings.items():
            cfg = XGBoostConfig(n_estimators=rounds, device=dev, n_jobs=jobs)
            t, fit = _timed(lambda: xgb.fit(data, cfg))
            times[name].append(t)
            mse[name] = round(min(fit.history["round_valid_rmse"]) ** 2, 5)
    figures = {f"{name}_s": round(_median(ts), 3) for name, ts in times.items()}
    figures.update({"threads_free_cores": ours, "threads_oversubscribed": 4 * free_cores(),
                    "max_rounds": rounds, "best_valid_mse": mse})
    # Side by side with an MLP population in another thread of the same process (as parallel trials run):
    # each taking every core, against the cores split between them.
    both = {"each_all_cores": (free_cores(), free_cores()), "cores_split": (max(1, ours // 2), max(1, ours // 2))}
    for name, (jobs, threads) in both.items():
        walls, xgb_s = [], []
        for _ in range(repeats):
            w, x = _side_by_side(data, device, rounds, jobs, threads, quick)
            walls.append(w)
            xgb_s.append(x)
        figures[f"with_mlp_{name}_wall_s"] = round(_median(walls), 3)
        figures[f"with_mlp_{name}_xgboost_s"] = round(_median(xgb_s), 3)
    if "cuda" not in settings:
        figures["cuda_s"] = "unmeasured: no CUDA device"
    figures["alone_oversubscribed_over_free_cores"] = round(_median(times["oversubscribed"])
                                                             / _median(times["free_cores"]), 2)
    return {"figures": figures,
            "ratio": round(figures["with_mlp_each_all_cores_wall_s"] / figures["with_mlp_cores_split_wall_s"], 2),
            "ratio_means": "XGBoost + MLP population side by side: wall time with each on all cores / cores split"}


def _side_by_side(data, device: str, rounds: int, jobs: int, threads: int, quick: bool) -> tuple[float, float]:
    """Wall time of XGBoost (n_jobs=jobs) and a 64-member NN5 population (threads) run at once; and XGBoost's."""
    import threading

    from tabduel.engine import population
    from tabduel.infra.config import XGBoostConfig
    from tabduel.models import xgb

    cfg = nn5(device, epochs=10 if quick else 30, threads=threads)
    worker = threading.Thread(target=lambda: population.fit(data, cfg, _members(64)))
    start = time.perf_counter()
    worker.start()
    xgb_seconds, _ = _timed(lambda: xgb.fit(data, XGBoostConfig(n_estimators=rounds, device="cpu", n_jobs=jobs)))
    worker.join()
    return time.perf_counter() - start, xgb_seconds


def row_pipeline_compute(data, device: str, quick: bool, repeats: int, source: str = "") -> dict[str, Any]:
    """Pure compute of the pipeline's steps with default settings, libraries already imported."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tabduel.data.dataset import load_spec
    from tabduel.data.features import make_features
    from tabduel.data.ingest import ingest
    from tabduel.models.evaluate import draw_plots, run_evaluation
    from tabduel.models.registry import family
    from tabduel.models.training import fit, load_data
    from tabduel.settings import Config, with_dataset_defaults

    cfg = with_dataset_defaults(Config())  # the models `tabduel run` trains: the built-in spec's
    steps: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        spec = load_spec("")
        df, _ = ingest(source, spec)
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp / "table.parquet")
        (tmp / "dataset.toml").write_bytes(Path(spec.path).read_bytes())
        steps["ingest"] = time.perf_counter() - start
        start = time.perf_counter()
        splits, manifest = make_features(pd.read_parquet(tmp / "table.parquet"), spec, cfg.features)
        feats = tmp / "features"
        feats.mkdir()
        for name, frame in splits.items():
            frame.to_parquet(feats / f"{name}.parquet", index=False)
        (feats / "manifest.json").write_text(json.dumps(manifest))
        steps["features"] = time.perf_counter() - start
        dirs = {}
        for kind in cfg.pipeline.models:
            start = time.perf_counter()
            d, _ = load_data(feats, kind)  # as the train task loads them (per-family missing values)
            result = fit(kind, d, cfg.model(kind))
            dirs[kind] = tmp / kind
            dirs[kind].mkdir()
            family(kind).save(result, dirs[kind])
            (dirs[kind] / "history.json").write_text(json.dumps(result.history))  # as the train task writes it
            steps[f"train_{kind}"] = time.perf_counter() - start
        start = time.perf_counter()
        predictions, _ = run_evaluation(feats, {k: str(v) for k, v in dirs.items()})
        (tmp / "evaluate").mkdir()
        draw_plots(tmp / "evaluate", tmp, feats, predictions, dirs, cfg.evaluate.dpi)
        steps["evaluate"] = time.perf_counter() - start
    return {"figures": {"steps_s": {k: round(v, 3) for k, v in steps.items()},
                        "compute_s": round(sum(steps.values()), 3)}}


ROWS: dict[str, Callable[..., dict[str, Any]]] = {
    "dataloader_vs_engine": row_dataloader_vs_engine,
    **{f"population_k{k}": row_population(k) for k in GPU_KS},
    "batch_order": row_batch_order,
    "compile_k64": row_compile_k64,
    "wide_mlp": row_wide_mlp,
    "autograd_families": row_autograd_families,
    "xgboost": row_xgboost,
    "pipeline_compute": row_pipeline_compute,
}


def child(args: argparse.Namespace) -> None:
    """Run one row in this process and print its result as JSON on the last line."""
    import torch

    from tabduel.models.training import load_data

    data, _ = load_data(args.features)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    extra = {"source": args.source} if args.row == "pipeline_compute" else {}
    result = ROWS[args.row](data, args.device, args.quick, args.repeats, **extra)
    if torch.cuda.is_available():
        result["cuda_max_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
    result["peak_rss_mib"] = round(peak_rss_mib(), 1)
    print(json.dumps(result))


# ---------------------------------------------------------------- parent

def versions() -> dict[str, str]:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__}
    try:
        import xgboost

        info["xgboost"] = xgboost.__version__
    except ImportError:  # a bare GPU image: the xgboost row reports itself unmeasured
        info["xgboost"] = "not installed"
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
        info["cuda"] = str(torch.version.cuda)
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer epochs, rounds and repeats: under 3 minutes")
    parser.add_argument("--source", default=str(SHARED) if SHARED.is_file() else "",
                        help="raw Seoul Bike CSV (default: ../shared/data/SeoulBikeData.csv)")
    parser.add_argument("--device", default="auto", help="auto (cuda when present), cpu or cuda")
    parser.add_argument("--repeats", type=int, default=0, help="interleaved repeats per row (default 1 quick, 3 full)")
    parser.add_argument("--rows", default="", help="comma-separated subset of rows to run")
    parser.add_argument("--out", default="", help="results JSON (default benchmarks/results/training-<host>.json)")
    parser.add_argument("--row", help=argparse.SUPPRESS)
    parser.add_argument("--features", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.source:
        raise SystemExit("no raw file: pass --source PATH (the UCI SeoulBikeData.csv)")
    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.repeats = args.repeats or (1 if args.quick else 3)
    if args.row:
        child(args)
        return

    ks = GPU_KS if args.device.startswith("cuda") else CPU_KS
    names = ["dataloader_vs_engine", *(f"population_k{k}" for k in ks), "batch_order",
             *([] if args.quick else ["compile_k64"]), "wide_mlp", "autograd_families", "xgboost",
             "pipeline_overhead"]
    if args.rows:
        names = [n for n in names if n in args.rows.split(",")]
    started = time.perf_counter()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tabduel-bench-") as tmp:
        feats = prepare_features(args.source, Path(tmp) / "features")
        base = [sys.executable, str(Path(__file__).resolve()), "--source", args.source, "--device", args.device,
                "--features", str(feats), "--repeats", str(args.repeats)] + (["--quick"] if args.quick else [])
        for name in names:
            print(f"-- {name} ...", flush=True)
            if name == "pipeline_overhead" and not all(map(importlib.util.find_spec, ("prefect", "mlflow"))):
                results[name] = {"figures": "unmeasured: Prefect or MLflow is not installed here", "ratio": None,
                                 "ratio_means": ""}
            elif name == "pipeline_overhead":
                results[name] = pipeline_overhead(base, args, Path(tmp))
            else:
                out, wall, _ = run_child(base + ["--row", name])  # the child reports its own peak RSS
                results[name] = {**json.loads(out.strip().splitlines()[-1]), "row_wall_s": round(wall, 1)}
            goal = GOALS.get(name)
            if goal:
                results[name]["goal"] = f"{goal[0]} {goal[1]}"
            print(f"   ratio {results[name]['ratio']} ({results[name]['ratio_means']}); "
                  f"{json.dumps(results[name]['figures'])}", flush=True)
    if not args.device.startswith("cuda"):
        results["population_k1024"] = {"figures": "unmeasured: no GPU in this run", "goal": "ratio >= 100.0 on GPU"}
    total = time.perf_counter() - started
    report = {"benchmark": "training", "host": socket.gethostname(), "cpus": os.cpu_count(), "device": args.device,
              "quick": args.quick, "repeats": args.repeats, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
              "command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
              "versions": versions(), "total_s": round(total, 1), "rows": results}
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"training-{socket.gethostname()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(results)
    print(f"\n{total:.0f}s in all; wrote {out}")


def pipeline_overhead(base: list[str], args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """`tabduel run --force` (fresh process; its stores exist) against the pure compute of its steps.

    Also timed: the first, cold run in a fresh directory (it creates the MLflow and Prefect databases), and a plain
    Python process that imports the same libraries and runs the same steps without Prefect or MLflow.
    """
    work = tmp / "pipeline"
    work.mkdir()
    cmd = [sys.executable, "-m", "tabduel", "run", "--source", args.source]
    _, cold, rss = run_child(cmd, cwd=work)
    walls, computes, plains, steps = [], [], [], {}
    for _ in range(args.repeats):
        _, wall, peak = run_child(cmd + ["--force"], cwd=work)
        walls.append(wall)
        rss = max(rss, peak)
        out, plain, _ = run_child(base + ["--row", "pipeline_compute"])
        figures = json.loads(out.strip().splitlines()[-1])["figures"]
        computes.append(figures["compute_s"])
        plains.append(plain)
        steps = figures["steps_s"]
    wall, compute, plain = _median(walls), _median(computes), _median(plains)
    # ru_maxrss of a child is at least the parent's peak; say what that floor was.
    return {"figures": {"tabduel_run_force_s": round(wall, 2), "tabduel_run_cold_s": round(cold, 2),
                        "peak_rss_floor_from_parent_mib": round(peak_rss_mib(), 1),
                        "compute_s": round(compute, 2), "steps_s": steps,
                        "plain_process_s": round(plain, 2), "overhead_s": round(wall - compute, 2),
                        "ratio_vs_plain_process": round(wall / plain, 2)},
            "ratio": round(wall / compute, 2), "ratio_means": "tabduel run --force wall time / pure compute",
            "peak_rss_mib": round(rss, 1)}


def print_table(results: dict[str, Any]) -> None:
    print(f"\n{'row':<24}{'ratio':>8}  {'goal':<14}{'peak RSS MiB':>13}  what the ratio is")
    for name, r in results.items():
        ratio = r.get("ratio", "-")
        print(f"{name:<24}{ratio!s:>8}  {r.get('goal', ''):<14}{r.get('peak_rss_mib', '-')!s:>13}  "
              f"{r.get('ratio_means', r.get('figures'))}")


if __name__ == "__main__":
    main()
