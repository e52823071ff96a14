"""Check the MLP's CUDA path and time it against the CPU of the same machine, side by side.

Usage: python benchmarks/gpu_check.py --features data/features/<key> [--out DIR]

It needs only torch, numpy, pandas and pyarrow (no Prefect, MLflow or XGBoost), so it runs on a bare
GPU image. It checks that:
- device 'auto' resolves to cuda;
- the engine's optimizer updates step on CUDA (fused Adam/AdamW kernels, foreach SGD, per-member population);
- a population member trained on CUDA matches the same config trained alone on CUDA (NN5's fast path, and a
  RealMLP population's member against realmlp.fit alone);
- the population memory check reads the card's free memory;
- NN5 trained on CUDA reaches the CPU's valid MSE;
- a CUDA-trained model saves and reloads on the CPU with the same predictions.
It then times NN5 and a 3x256 ReLU MLP on CPU and CUDA, and fits each autograd family (realmlp, tabm: the default
MLP on CUDA) on both devices with the same settings and seed: each trains on CUDA, reaches the CPU's valid MSE within
a tolerance, and reloads on the CPU with the same predictions. It writes gpu-check-<card>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tabduel.engine import memory, population, single  # noqa: E402
from tabduel.engine.optim import Optimizer  # noqa: E402
from tabduel.infra.config import MLPConfig  # noqa: E402
from tabduel.infra.runtime import resolve_torch_device  # noqa: E402
from tabduel.models import mlp  # noqa: E402
from tabduel.models.training import load_data  # noqa: E402


def timed_fit(data, cfg: MLPConfig) -> dict:
    """One fit's wall time (after a 1-epoch warm-up on the same device) and final valid MSE."""
    mlp.fit(data, dataclasses.replace(cfg, epochs=1))
    if cfg.device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    fit = mlp.fit(data, cfg)
    if cfg.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 3), "epochs_per_s": round(cfg.epochs / seconds, 1),
            "valid_mse": round(fit.history["valid_loss"][-1], 5), "fit": fit}


# The autograd families, each with fewer epochs than its default so that the CPU side stays short; tolerance: the
# largest relative difference of valid MSE between the devices taken as "the same quality" (their float arithmetic and
# kernels differ, so the two runs are not bit-identical).
FAMILY_CHECKS = {"realmlp": {"epochs": 30}, "tabm": {"epochs": 10, "patience": 0}}
FAMILY_TOLERANCE = 0.25


def family_check(kind: str, data, devices: tuple[str, str] = ("cpu", "cuda"), **settings) -> dict:
    """One autograd family fitted on two devices with the same settings and seed: seconds, epochs per second, valid
    MSE, whether the second device's model reloads on the CPU with the same predictions."""
    from tabduel.models.registry import family

    fam = family(kind)
    out: dict = {"family": kind, "settings": settings}
    for device in devices:
        cfg = fam.config(**{**settings, "device": device})
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fam.fit(data, cfg)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        valid = fam.predict(result.model, data.x_valid)
        out[device] = {"seconds": round(seconds, 3), "epochs_per_s": round(result.info["epochs_run"] / seconds, 2),
                       "valid_mse": round(float(np.mean((valid - data.y_valid) ** 2)), 6),
                       "trained_on": result.info["device"]}
        with tempfile.TemporaryDirectory() as tmp:
            fam.save(result, Path(tmp))
            out[device]["reloads_on_cpu"] = bool(np.allclose(fam.predict(fam.load(tmp), data.x_valid), valid,
                                                             rtol=1e-4, atol=1e-5))
    first, second = (out[d]["valid_mse"] for d in devices)
    out["relative_valid_mse_difference"] = round(abs(second - first) / first, 4)
    out["speedup"] = round(out[devices[0]]["seconds"] / out[devices[1]]["seconds"], 2)
    return out


def realmlp_population_check(data, device: str = "cuda") -> bool:
    """Two RealMLP members (their own lr and weight decay, dropout 0: CUDA's dropout masks are not the CPU's) trained
    as one population on CUDA predict valid as each trained alone on CUDA does."""
    from tabduel.engine import realmlp, realmlp_population
    from tabduel.infra.config import RealMLPConfig
    from tabduel.models import realmlp as realmlp_family

    cfg = RealMLPConfig(epochs=5, dropout=0.0, device=device)
    members = [realmlp_population.Member(cfg.seed, lr, wd) for lr, wd in ((0.04, 0.0), (0.1, 0.02))]
    pop = realmlp_population.fit(data, cfg, members)
    if any(pop.errors):
        return False
    return all(np.allclose(realmlp_family.predict(fit.model, data.x_valid),
                           realmlp_family.predict(realmlp.fit(data, realmlp_population.member_config(cfg, m)).model,
                                                  data.x_valid), rtol=1e-3, atol=1e-3)
               for m, fit in zip(members, pop.fits))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", required=True, help="a features output directory (manifest.json + splits)")
    parser.add_argument("--out", default="benchmarks/results", help="where to write the JSON")
    args = parser.parse_args()

    data, manifest = load_data(args.features)
    report: dict = {"python": platform.python_version(), "torch": torch.__version__,
                    "cuda_available": torch.cuda.is_available(), "rows": manifest["rows"]}
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: nothing to check")
    props = torch.cuda.get_device_properties(0)
    report.update(card=props.name, cuda=torch.version.cuda, sms=props.multi_processor_count,
                  cpu_threads=torch.get_num_threads())
    checks: dict[str, bool] = {"auto_is_cuda": resolve_torch_device("auto") == "cuda"}

    device = torch.device("cuda")
    for name in ("sgd", "adam", "adamw"):
        for per_member in (False, True):
            params = [torch.randn(4, 3, 5, device=device), torch.randn(4, 3, 1, device=device)]
            before = [p.clone() for p in params]
            lr = torch.full((4, 1, 1), 0.01, device=device) if per_member else 0.01
            opt = Optimizer(name, params, lr, lr if per_member else 0.01)
            opt.step(params, [torch.randn_like(p) for p in params])
            moved = all(not torch.equal(a, b) for a, b in zip(before, params))
            want = "per-member" if per_member else "foreach" if name == "sgd" else "fused"
            checks[f"{name}_{want}_steps"] = moved and opt.kind == want
    small = MLPConfig(hidden=(32, 16), optimizer="adamw", lr=3e-3, epochs=5, patience=2, device="cuda")
    members = [population.Member(seed=s, lr=lr) for s, lr in ((1, 3e-3), (2, 1e-2), (3, 3e-2))]
    pop = population.fit(data, small, members)
    alone = single.fit(data, dataclasses.replace(small, seed=2, lr=1e-2))
    checks["population_member_matches_alone_on_cuda"] = all(
        torch.allclose(a, b, rtol=1e-3, atol=1e-4) for a, b in zip(pop.single(1).params.tensors(),
                                                                    alone.params.tensors()))
    checks["memory_check_reads_cuda_free_bytes"] = (memory.available_bytes(device) or 0) > 0
    checks["realmlp_population_member_matches_alone_on_cuda"] = realmlp_population_check(data)

    rows = []
    configs = {
        "nn5": MLPConfig(),
        "wide_3x256_relu_adamw": MLPConfig(hidden=(256, 256, 256), activation="relu", optimizer="adamw",
                                          lr=1e-3, weight_decay=1e-4, batch_size=256, epochs=100),
    }
    for label, cfg in configs.items():
        cpu = timed_fit(data, dataclasses.replace(cfg, device="cpu"))
        gpu = timed_fit(data, dataclasses.replace(cfg, device="cuda"))
        rows.append({"model": label, "cpu": {k: v for k, v in cpu.items() if k != "fit"},
                     "cuda": {k: v for k, v in gpu.items() if k != "fit"},
                     "cuda_speedup_over_cpu": round(cpu["seconds"] / gpu["seconds"], 2)})
        print(f"{label:<24} cpu {cpu['seconds']:7.2f}s  cuda {gpu['seconds']:7.2f}s  "
              f"speedup {cpu['seconds'] / gpu['seconds']:5.2f}x  valid mse cpu {cpu['valid_mse']:.4f} "
              f"cuda {gpu['valid_mse']:.4f}", flush=True)
        if label == "nn5":
            checks["nn5_cuda_matches_cpu_quality"] = abs(gpu["valid_mse"] - cpu["valid_mse"]) < 0.02
            with tempfile.TemporaryDirectory() as tmp:
                mlp.save(gpu["fit"], Path(tmp))
                reloaded = mlp.load(tmp)
                same = np.allclose(mlp.predict(reloaded, data.x_valid), mlp.predict(gpu["fit"].model, data.x_valid))
            checks["cuda_model_reloads_on_cpu"] = bool(same)
    families = []
    for kind, settings in FAMILY_CHECKS.items():
        row = family_check(kind, data, **settings)
        families.append(row)
        checks[f"{kind}_trains_on_cuda"] = row["cuda"]["trained_on"].startswith("cuda")
        checks[f"{kind}_cuda_matches_cpu_quality"] = row["relative_valid_mse_difference"] <= FAMILY_TOLERANCE
        checks[f"{kind}_cuda_model_reloads_on_cpu"] = row["cuda"]["reloads_on_cpu"]
        print(f"{kind:<24} cpu {row['cpu']['seconds']:7.2f}s  cuda {row['cuda']['seconds']:7.2f}s  speedup "
              f"{row['speedup']:5.2f}x  valid mse cpu {row['cpu']['valid_mse']:.4f} "
              f"cuda {row['cuda']['valid_mse']:.4f}",
              flush=True)
    report["checks"] = checks
    report["timings"] = rows
    report["families"] = families
    out = Path(args.out) / f"gpu-check-{props.name.replace(' ', '-')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(checks, indent=2))
    print(f"wrote {out}")
    if not all(checks.values()):
        raise SystemExit("a CUDA check failed")


if __name__ == "__main__":
    main()
