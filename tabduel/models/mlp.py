"""The PyTorch MLP: whole splits as device tensors, batches drawn from a permutation."""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tabduel.config import MLPConfig
from tabduel.models import Data
from tabduel.runtime import resolve_torch_device, seed_everything

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "sigmoid": nn.Sigmoid, "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh,
}
EpochCallback = Callable[[int, int, float, float], None]  # (epoch, epochs, train_loss, valid_loss)


@dataclass
class MLPFit:
    """A trained MLP (on the CPU), its per-epoch losses and facts about the run."""

    model: nn.Module
    architecture: dict[str, Any]
    history: dict[str, list[float]]
    info: dict[str, Any]


def build_mlp(n_in: int, hidden: tuple[int, ...], activation: str, dropout: float) -> nn.Sequential:
    """n_in -> hidden... -> 1, with an activation (and dropout) after each hidden layer."""
    layers: list[nn.Module] = []
    width = n_in
    for h in hidden:
        layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


def make_optimizer(cfg: MLPConfig, params: Any, device: torch.device) -> torch.optim.Optimizer:
    """SGD, Adam or AdamW; fused kernels on CUDA, foreach elsewhere."""
    fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fast)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fast)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fast)


def fit(data: Data, cfg: MLPConfig, on_epoch: EpochCallback | None = None) -> MLPFit:
    """Train on data.train, watch data.valid; with patience > 0 stop early and keep the best weights."""
    seed_everything(cfg.seed)
    device = torch.device(resolve_torch_device(cfg.device))
    n_in = data.x_train.shape[1]
    model = build_mlp(n_in, cfg.hidden, cfg.activation, cfg.dropout).to(device)
    opt = make_optimizer(cfg, model.parameters(), device)
    xt = torch.from_numpy(data.x_train).to(device)               # (n, features)
    yt = torch.from_numpy(data.y_train).to(device).unsqueeze(1)  # (n, 1)
    xv = torch.from_numpy(data.x_valid).to(device)
    yv = torch.from_numpy(data.y_valid).to(device).unsqueeze(1)
    gen = torch.Generator(device=device)
    gen.manual_seed(cfg.seed)
    n, bs = xt.shape[0], cfg.batch_size

    history: dict[str, list[float]] = {"train_loss": [], "valid_loss": []}
    best = (float("inf"), 0, None)  # (valid loss, epoch, state)
    start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=gen, device=device)
        total = torch.zeros((), device=device)
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            loss = F.mse_loss(model(xt[idx]), yt[idx])  # (batch, 1) vs (batch, 1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * idx.numel()
        model.eval()
        with torch.no_grad():
            valid_loss = F.mse_loss(model(xv), yv).item()
        train_loss = (total / n).item()
        history["train_loss"].append(train_loss)
        history["valid_loss"].append(valid_loss)
        if on_epoch:
            on_epoch(epoch, cfg.epochs, train_loss, valid_loss)
        if valid_loss < best[0]:
            state = copy.deepcopy(model.state_dict()) if cfg.patience > 0 else None
            best = (valid_loss, epoch, state)
        elif cfg.patience > 0 and epoch - best[1] >= cfg.patience:
            break
    seconds = time.perf_counter() - start
    if cfg.patience > 0 and best[2] is not None:
        model.load_state_dict(best[2])
    model = model.cpu().eval()
    info = {"device": str(device), "epochs_run": len(history["train_loss"]), "best_epoch": best[1],
            "best_valid_loss": best[0], "restored_best": cfg.patience > 0, "train_seconds": seconds}
    arch = {"n_in": n_in, "hidden": list(cfg.hidden), "activation": cfg.activation, "dropout": cfg.dropout}
    return MLPFit(model, arch, history, info)


def save(result: MLPFit, directory: Path) -> None:
    """Write weights and architecture into directory."""
    torch.save(result.model.state_dict(), directory / "model.pt")
    (directory / "architecture.json").write_text(json.dumps(result.architecture, indent=2))


def load(directory: str | Path) -> nn.Module:
    """Rebuild the saved MLP on the CPU in eval mode."""
    directory = Path(directory)
    arch = json.loads((directory / "architecture.json").read_text())
    model = build_mlp(arch["n_in"], tuple(arch["hidden"]), arch["activation"], arch["dropout"])
    model.load_state_dict(torch.load(directory / "model.pt", map_location="cpu", weights_only=True))
    return model.eval()


def predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """(rows, features) float32 -> (rows,) predictions."""
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).squeeze(1).numpy()
