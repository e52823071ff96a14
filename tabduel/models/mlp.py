"""The PyTorch MLP family: the engine trains it; this module builds, saves, loads and predicts."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from tabduel.engine import population, single
from tabduel.engine.data import Data
from tabduel.engine.net import Params, build_mlp, forward, to_sequential
from tabduel.infra.config import MLPConfig

EpochCallback = Callable[[int, int, float, float], None]  # (epoch, epochs, train_loss, valid_loss)
MEMBER_COLUMNS = ("member", "seed", "lr", "weight_decay", "dropout", "epochs_run", "best_epoch", "valid_mse",
                  "diverged_epoch")


@dataclass
class MLPFit:
    """A trained MLP or ensemble (on the CPU), its per-epoch losses and facts about the run."""

    model: nn.Module
    architecture: dict[str, Any]
    history: dict[str, list[float]]
    info: dict[str, Any]
    members: list[dict[str, Any]] = field(default_factory=list)  # one row per population member


class Ensemble(nn.Module):
    """K MLPs of one shape with stacked weights; forward is the mean of their predictions."""

    def __init__(self, weights: list[torch.Tensor], biases: list[torch.Tensor], activation: str):
        super().__init__()
        self.weights = nn.ParameterList(nn.Parameter(w, requires_grad=False) for w in weights)  # (K, out, in)
        self.biases = nn.ParameterList(nn.Parameter(b, requires_grad=False) for b in biases)  # (K, out, 1)
        self.activation = activation

    def members_forward(self, x: torch.Tensor) -> torch.Tensor:
        """(rows, features) -> (K, rows): every member's prediction."""
        params = Params(list(self.weights), list(self.biases))
        return forward(params, x.t(), self.activation).squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(rows, features) -> (rows, 1): the members' mean prediction."""
        return self.members_forward(x).mean(dim=0).unsqueeze(1)


def _architecture(n_in: int, cfg: MLPConfig) -> dict[str, Any]:
    return {"n_in": n_in, "hidden": list(cfg.hidden), "activation": cfg.activation, "dropout": cfg.dropout,
            "members": cfg.population}


def fit(data: Data, cfg: MLPConfig, on_epoch: EpochCallback | None = None) -> MLPFit:
    """Train one MLP, or (cfg.population > 1) that many seeds at once as an ensemble, with the engine."""
    n_in = data.x_train.shape[1]
    if cfg.population == 1:
        result = single.fit(data, cfg, on_epoch)
        model = to_sequential(result.params, cfg.activation, cfg.dropout)
        return MLPFit(model, _architecture(n_in, cfg), result.history, result.info)

    def report(epoch: int, epochs: int, k: int, train_loss: float, valid_loss: float) -> None:
        if on_epoch:
            on_epoch(epoch, epochs, train_loss, valid_loss)

    population.check_memory(data, cfg, cfg.population)  # before building a list of cfg.population members
    pop = population.fit(data, cfg, population.members_of(cfg, cfg.population), report)
    # Members whose loss went NaN or infinite are left out of the ensemble (population.fit raised if all did).
    kept = np.flatnonzero(pop.info["diverged_epoch"] == 0)
    params = pop.params.select(torch.from_numpy(kept))
    ensemble = Ensemble(params.weights, params.biases, cfg.activation).eval()
    with torch.no_grad():
        per_member = ensemble.members_forward(torch.from_numpy(data.x_valid))  # (kept, n_valid)
        y = torch.from_numpy(data.y_valid)
        mse = ((per_member - y) ** 2).mean(dim=1).numpy()  # (kept,)
        ensemble_mse = float(((per_member.mean(dim=0) - y) ** 2).mean())
    member_mse = dict(zip(kept.tolist(), mse.tolist()))
    members = [{"member": k, "seed": m.seed, "lr": m.lr, "weight_decay": m.weight_decay, "dropout": m.dropout,
                "epochs_run": int(pop.info["epochs_run"][k]), "best_epoch": int(pop.info["best_epoch"][k]),
                "valid_mse": member_mse.get(k, float("nan")), "diverged_epoch": int(pop.info["diverged_epoch"][k])}
               for k, m in enumerate(pop.members)]
    ran = int(pop.info["epochs_run"][kept].max())
    # Per epoch, the mean over the kept members still training then.
    history = {name: [float(np.nanmean(values[kept, e])) for e in range(ran)] for name, values in pop.history.items()}
    info = {"device": pop.info["device"], "population": cfg.population, "members_kept": len(kept),
            "members_diverged": cfg.population - len(kept), "epochs_run": ran,
            "member_epochs": pop.info["member_epochs"], "restored_best": cfg.patience > 0,
            "train_seconds": pop.info["train_seconds"], "threads": pop.info["threads"],
            "optimizer_update": pop.info["optimizer_update"], "batch_order": cfg.batch_order,
            "time_limited": pop.info["time_limited"],
            "ensemble_valid_mse": ensemble_mse, "members_valid_mse_mean": float(mse.mean()),
            "members_valid_mse_sd": float(mse.std(ddof=1)) if len(mse) > 1 else 0.0,
            "members_valid_mse_min": float(mse.min()), "members_valid_mse_max": float(mse.max())}
    return MLPFit(ensemble, {**_architecture(n_in, cfg), "members": len(kept)}, history, info, members)


def save(result: MLPFit, directory: Path) -> None:
    """Write weights and architecture (and, for an ensemble, members.csv) into directory."""
    torch.save(result.model.state_dict(), directory / "model.pt")
    (directory / "architecture.json").write_text(json.dumps(result.architecture, indent=2))
    if result.members:
        with (directory / "members.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, MEMBER_COLUMNS)
            writer.writeheader()
            writer.writerows(result.members)


def load(directory: str | Path) -> nn.Module:
    """Rebuild the saved MLP (or ensemble) on the CPU in eval mode."""
    directory = Path(directory)
    arch = json.loads((directory / "architecture.json").read_text())
    state = torch.load(directory / "model.pt", map_location="cpu", weights_only=True)
    if "weights.0" in state:  # an ensemble (of one, when all other members diverged)
        n_layers = len(arch["hidden"]) + 1
        model: nn.Module = Ensemble([state[f"weights.{i}"] for i in range(n_layers)],
                                    [state[f"biases.{i}"] for i in range(n_layers)], arch["activation"])
    else:
        model = build_mlp(arch["n_in"], tuple(arch["hidden"]), arch["activation"], arch["dropout"])
        model.load_state_dict(state)
    return model.eval()


def predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """(rows, features) float32 -> (rows,) predictions."""
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).squeeze(1).numpy()
