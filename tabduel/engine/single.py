"""Train one MLP: whole splits as device tensors, a fresh permutation per epoch, no DataLoader, no autograd."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from tabduel.engine.data import Data
from tabduel.engine.net import Params, Tape, backward, forward, init_params
from tabduel.engine.optim import Optimizer
from tabduel.infra.config import MLPConfig
from tabduel.infra.errors import DivergedError
from tabduel.infra.runtime import resolve_torch_device, seed_everything, stopwatch, torch_threads, using_threads

Tensor = torch.Tensor
# (epoch, epochs, train_loss, valid_loss) -> True to stop now (a pruner's decision; the best weights are kept)
EpochCallback = Callable[[int, int, float, float], "bool | None"]


@dataclass
class SingleFit:
    """Trained weights (on the CPU), per-epoch losses and facts about the run."""

    params: Params
    history: dict[str, list[float]]
    info: dict[str, Any]


def split_tensors(data: Data, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """On the device: train rows [x | y] (n, features + 1), for one gather per epoch; x_valid transposed
    (features, n_valid) and y_valid (1, n_valid)."""
    xy = torch.from_numpy(np.ascontiguousarray(np.column_stack([data.x_train, data.y_train]))).to(device)
    xv = torch.from_numpy(np.ascontiguousarray(data.x_valid.T)).to(device)
    yv = torch.from_numpy(data.y_valid).to(device).unsqueeze(0)
    return xy, xv, yv


def macs_per_step(n_in: int, hidden: tuple[int, ...], batch: int, members: int = 1) -> int:
    """Multiply-adds of one forward pass of a batch (backward costs about twice that)."""
    sizes = (n_in, *hidden, 1)
    return members * batch * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def train_step(params: Params, opt: Optimizer, xb: Tensor, yb: Tensor, activation: str,
               keep: Tensor | float | None, noise: torch.Generator) -> Tensor:
    """One minibatch update of a model or of every member of a population; returns the summed squared error:
    a scalar, or (k,) per member."""
    tape = Tape([], [], [], [])
    err = forward(params, xb, activation, keep, noise, tape) - yb  # (1, batch) or (k, 1, batch)
    opt.step(params.tensors(), backward(params, tape, err * (2.0 / xb.shape[-1]), activation))
    return err.square().sum(dim=(-2, -1))


def diverged(epoch: int, epochs: int, train_loss: float, valid_loss: float, lr: float,
             who: str = "MLP training") -> str:
    """What to tell a user whose MLP's loss stopped being finite."""
    return (f"{who} diverged at epoch {epoch} of {epochs} (train loss {train_loss:.4g}, valid loss "
            f"{valid_loss:.4g}): the learning rate {lr:g} is too high for this model and data; try mlp.lr = "
            f"{lr / 10:g} (--mlp-lr), or optimizer adam with a small lr")


def fit(data: Data, cfg: MLPConfig, on_epoch: EpochCallback | None = None) -> SingleFit:
    """Train on data.train, watch data.valid; with patience > 0 stop early and keep the best weights; stop when
    on_epoch returns True (info["pruned_epoch"]: that epoch, else 0)."""
    seed_everything(cfg.seed)
    device = torch.device(resolve_torch_device(cfg.device))
    n_in = data.x_train.shape[1]
    threads = torch_threads(cfg.threads, macs_per_step(n_in, cfg.hidden, cfg.batch_size))
    with using_threads(threads), torch.no_grad():
        xy, xv, yv = split_tensors(data, device)
        params = init_params(n_in, cfg.hidden, cfg.seed).to(device)
        opt = Optimizer(cfg.optimizer, params.tensors(), cfg.lr, cfg.weight_decay)
        order = torch.Generator(device=device).manual_seed(cfg.seed)
        noise = torch.Generator(device=device).manual_seed(cfg.seed + 1)  # dropout masks
        keep = 1.0 - cfg.dropout if cfg.dropout > 0 else None
        n, bs = xy.shape[0], cfg.batch_size

        history: dict[str, list[float]] = {"train_loss": [], "valid_loss": []}
        best_loss, best_epoch, best = float("inf"), 0, None
        timed_out = False
        pruned_epoch = 0
        start = time.perf_counter()
        limit = stopwatch(cfg.time_clock)  # what max_seconds counts
        for epoch in range(1, cfg.epochs + 1):
            perm = torch.randperm(n, generator=order, device=device)
            rows = xy[perm].t()  # (features + 1, n): the epoch's rows in batch order, gathered once
            total = torch.zeros((), device=device)
            seen = n
            for i in range(0, n, bs):
                xb, yb = rows[:n_in, i:i + bs], rows[n_in:, i:i + bs]  # (features, batch), (1, batch)
                total += train_step(params, opt, xb, yb, cfg.activation, keep, noise)
                if cfg.max_seconds and limit() >= cfg.max_seconds:  # per step: one epoch may outlast a budget
                    timed_out, seen = True, min(n, i + bs)
                    break
            valid_loss = (forward(params, xv, cfg.activation) - yv).square().mean().item()
            train_loss = total.item() / seen
            if not (math.isfinite(train_loss) and math.isfinite(valid_loss)):  # checked once per epoch: two floats
                raise DivergedError(diverged(epoch, cfg.epochs, train_loss, valid_loss, cfg.lr))
            history["train_loss"].append(train_loss)
            history["valid_loss"].append(valid_loss)
            stop = bool(on_epoch(epoch, cfg.epochs, train_loss, valid_loss)) if on_epoch else False
            if valid_loss < best_loss:
                best_loss, best_epoch = valid_loss, epoch
                best = params.clone() if cfg.patience > 0 else None
            elif cfg.patience > 0 and epoch - best_epoch >= cfg.patience:
                break
            if stop:
                pruned_epoch = epoch
                break
            if timed_out or (cfg.max_seconds and limit() >= cfg.max_seconds):  # a cut epoch was scored too
                timed_out = True
                break
        seconds = time.perf_counter() - start
    final = (best if best is not None else params).to("cpu")
    info = {"device": str(device), "epochs_run": len(history["train_loss"]), "best_epoch": best_epoch,
            "best_valid_loss": best_loss, "restored_best": cfg.patience > 0, "train_seconds": seconds,
            "threads": threads, "optimizer_update": opt.kind, "time_limited": timed_out,
            "pruned_epoch": pruned_epoch}
    return SingleFit(final, history, info)
