"""The training loop of the autograd families (RealMLP-style, TabM-style): schedules, early stopping, NaN checks.

The NN5 fast path (single.py, population.py) writes its backward pass by hand; these families have layers that it
does not cover (periodic and piecewise-linear embeddings, parametric activations, BatchEnsemble adapters), so they
train with torch.nn modules, autograd and torch.optim.AdamW. Like single.py, the whole train split is one tensor on
the device, each epoch draws a fresh permutation from the model's seed, and the valid split is evaluated once per
epoch without autograd; the weights of the best valid epoch are kept.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np
import torch
from torch import nn

from tabduel.infra.config import SCHEDULES
from tabduel.infra.errors import DivergedError, TrainingError
from tabduel.infra.runtime import stopwatch

Tensor = torch.Tensor
# Automatic threads (threads = 0) are one for these families: on the 2-core VM, one thread ran an epoch of RealMLP's
# defaults 7-14x faster than two, and of TabM k=16 3x faster (benchmarks/results/families-vm.json's notes); set
# threads to use more.
ONE_THREAD = 1
# Rows per forward pass wherever these families predict: valid each epoch (the clock checked after each pass) and any
# split later (models/torchnets.predict). A float32 net's outputs move in the last bit with how its rows are grouped
# into matrix products (300 rows in one pass against 256 + 44 differ, on an Intel Xeon), so scoring and predicting
# group them alike, and a kept model predicts valid exactly as its trial was scored.
EVAL_ROWS = 256
# (epoch, epochs, train_loss, valid_loss) -> True to stop now (a pruner's decision; the best weights are kept)
EpochCallback = Callable[[int, int, float, float], "bool | None"]


class TrainingDiverged(DivergedError):
    """A training loss or valid loss became NaN or infinite."""


class TrainingCut(TrainingError):
    """A time-limited fit reached its limit before it scored one epoch on valid: it has no model to keep."""


class Arrays(Protocol):
    """What the engine needs of a data set: train and valid arrays, feature names, the numeric (scaled) columns."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    features: tuple[str, ...]


def numeric_columns(data: Arrays) -> list[int]:
    """Indices of the numeric columns (data.numeric names them; without that field, every column is numeric)."""
    names = tuple(getattr(data, "numeric", ()) or ())
    if not names:
        return list(range(data.x_train.shape[1]))
    wanted = set(names)
    return [i for i, name in enumerate(data.features) if name in wanted]


def schedule(name: str, t: float) -> float:
    """Multiplier of a setting at training progress t in [0, 1] (pytabkit's names and shapes).

    constant: 1; cos: 1 -> 0 as a half cosine; flat_cos: 1 for the first half, then a half cosine to 0;
    coslog4: 0.5 * (1 - cos(2 pi log2(1 + 15 t))), four cycles that grow longer, from 0 back to 0.
    """
    t = min(max(t, 0.0), 1.0)
    if name == "constant":
        return 1.0
    if name == "cos":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    if name == "flat_cos":
        return 1.0 if t < 0.5 else 0.5 * (1.0 + math.cos(math.pi * (t - 0.5) / 0.5))
    if name == "coslog4":
        return 0.5 * (1.0 - math.cos(2 * math.pi * math.log2(1.0 + 15.0 * t)))
    raise ValueError(f"unknown schedule {name!r} (one of {', '.join(SCHEDULES)})")


@dataclass
class Group:
    """Parameters that share a learning-rate factor and a weight-decay factor."""

    params: list[nn.Parameter]
    lr: float = 1.0
    wd: float = 1.0


@dataclass
class Plan:
    """How a family trains: optimizer groups, base settings, their schedules, and its loss and batches."""

    groups: list[Group]
    lr: float
    weight_decay: float
    betas: tuple[float, float]
    lr_schedule: str = "constant"
    wd_schedule: str = "constant"
    on_progress: Callable[[float], None] | None = None  # e.g. sets the dropout of the moment
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TorchFit:
    """A trained module (on the CPU, in eval mode), its per-epoch losses and facts about the run."""

    model: nn.Module
    history: dict[str, list[float]]
    info: dict[str, Any]
    valid_pred: np.ndarray | None = None  # (n_valid,) the kept epoch's predictions of valid, as it was scored


def _check_finite(value: float, what: str, epoch: int, hint: str) -> None:
    """Raise TrainingDiverged naming the epoch unless value is finite."""
    if not math.isfinite(value):
        raise TrainingDiverged(f"{what} is {value} after epoch {epoch}: training diverged ({hint})")


def train(model: nn.Module, plan: Plan, xtr: Tensor, ytr: Tensor, xva: Tensor, yva: Tensor, *,
          batches: Callable[[torch.Generator], list[Tensor]], loss: Callable[[nn.Module, Tensor], Tensor],
          predict: Callable[[nn.Module, Tensor], Tensor], epochs: int, patience: int, seed: int,
          max_seconds: float = 0.0, time_clock: str = "wall", loss_scale: float = 1.0,
          on_epoch: EpochCallback | None = None,
          hint: str = "lower the learning rate") -> TorchFit:
    """Train `model` in place with AdamW; keep the weights of the best valid epoch.

    batches(gen) gives one epoch's index tensors; loss(model, idx) the mean training loss of a batch; predict(model,
    x) the model's predictions of x on the target's scale. With patience > 0, stop after that many epochs without a
    better valid MSE. loss_scale turns the training loss back to the target's scale for the history. When on_epoch
    returns True, stop there (info["pruned_epoch"]: that epoch, else 0).
    """
    device = xtr.device
    opt = torch.optim.AdamW([{"params": g.params, "lr": plan.lr * g.lr, "weight_decay": plan.weight_decay * g.wd}
                             for g in plan.groups if g.params], lr=plan.lr, betas=plan.betas, eps=1e-8,
                            foreach=device.type == "cuda")
    factors = [(plan.lr * g.lr, plan.weight_decay * g.wd) for g in plan.groups if g.params]
    order = torch.Generator(device=device).manual_seed(seed)
    steps_per_epoch = len(batches(torch.Generator(device=device).manual_seed(seed)))
    total_steps = max(1, epochs * steps_per_epoch)

    history: dict[str, list[float]] = {"train_loss": [], "valid_loss": []}
    best_loss, best_epoch, best_state = float("inf"), 0, None
    timed_out = False
    pruned_epoch = 0
    step = 0
    start = time.perf_counter()
    limit = stopwatch(time_clock)  # what max_seconds counts: wall-clock or this process's CPU-seconds
    # The limit's seconds of one valid evaluation: a limited fit stops while there is room for one more (its next
    # epoch's; its caller takes the kept epoch's predictions, valid_pred), seconds on a wide ensemble. Until the first
    # is measured, estimated from the second step: a forward pass is a third of a step. The evaluation itself goes
    # in passes of EVAL_ROWS rows and checks the clock after each, so no evaluation outlasts the limit by more than
    # one pass: a cut evaluation scores nothing, and the fit keeps its best scored epoch.
    eval_cost, measured = 0.0, False
    best_pred: Tensor | None = None
    for epoch in range(1, epochs + 1):
        model.train()
        total = torch.zeros((), device=device)
        n_batches = 0
        for idx in batches(order):
            t = step / total_steps
            lr_mult, wd_mult = schedule(plan.lr_schedule, t), schedule(plan.wd_schedule, t)
            for group, (lr, wd) in zip(opt.param_groups, factors):
                group["lr"] = lr * lr_mult
                group["weight_decay"] = wd * wd_mult
            if plan.on_progress:
                plan.on_progress(t)
            began = limit()
            opt.zero_grad(set_to_none=True)
            batch_loss = loss(model, idx)
            batch_loss.backward()
            opt.step()
            total += batch_loss.detach()
            n_batches += 1
            step += 1
            if not measured and step == 2 and max_seconds:  # the 2nd step (the 1st allocates the optimizer's
                batch_loss.item()  # state), synchronized by .item(); idx: (batch,) or (k, batch) per member
                eval_cost = min((limit() - began) / 3 * len(xva) / max(1, idx.shape[-1]), max_seconds / 4)
            if max_seconds and limit() + eval_cost >= max_seconds:  # per step: an epoch may outlast a budget
                timed_out = True
                break
        train_loss = total.item() / max(1, n_batches) * loss_scale
        _check_finite(train_loss, "the training loss", epoch, hint)
        model.eval()
        began = limit()
        parts: list[Tensor] = []
        with torch.no_grad():
            for rows in xva.split(EVAL_ROWS):  # (<= EVAL_ROWS, features) -> (<= EVAL_ROWS,)
                parts.append(predict(model, rows))
                if max_seconds and limit() >= max_seconds and len(parts) * EVAL_ROWS < len(xva):
                    break
        if len(parts) * EVAL_ROWS < len(xva):  # the limit cut this evaluation: the epoch is not scored
            timed_out = True
            break
        pred = torch.cat(parts)
        valid_loss = (pred - yva).square().mean().item()
        eval_cost, measured = limit() - began, True
        _check_finite(valid_loss, "the valid MSE", epoch, hint)
        history["train_loss"].append(train_loss)
        history["valid_loss"].append(valid_loss)
        stop = bool(on_epoch(epoch, epochs, train_loss, valid_loss)) if on_epoch else False
        if valid_loss < best_loss:
            best_loss, best_epoch = valid_loss, epoch
            best_state = copy.deepcopy(model.state_dict())
            best_pred = pred
        elif patience > 0 and epoch - best_epoch >= patience:
            break
        if stop:
            pruned_epoch = epoch
            break
        if timed_out or (max_seconds and limit() + eval_cost >= max_seconds):  # a cut epoch was scored too
            timed_out = True
            break
    seconds = time.perf_counter() - start
    if best_state is None and timed_out:
        raise TrainingCut(f"stopped at its limit of {max_seconds:g} s before it scored an epoch on valid (one "
                          f"evaluation of {len(xva)} rows costs more than the limit left): no model")
    if best_state is not None:
        model.load_state_dict(best_state)
    model = model.to("cpu").eval()
    info = {"device": str(device), "epochs_run": len(history["train_loss"]), "best_epoch": best_epoch,
            "best_valid_loss": best_loss, "restored_best": True, "train_seconds": seconds,
            "steps": step, "time_limited": timed_out, "pruned_epoch": pruned_epoch, "backward": "autograd",
            **plan.extra}
    valid_pred = None if best_pred is None else best_pred.detach().to("cpu").numpy().astype(np.float32).reshape(-1)
    return TorchFit(model, history, info, valid_pred)


def shared_batches(n: int, batch_size: int, device: torch.device, drop_last: bool = False
                   ) -> Callable[[torch.Generator], list[Tensor]]:
    """One permutation per epoch, cut into batches of row indices: the last one may be smaller, or with drop_last
    is left out (as pytabkit does; batches of min(batch_size, n) rows)."""
    size = min(batch_size, n) if drop_last else batch_size
    keep = n // size * size if drop_last else n

    def draw(gen: torch.Generator) -> list[Tensor]:
        return list(torch.randperm(n, generator=gen, device=device)[:keep].split(size))
    return draw


def to_device(data: Arrays, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """x_train, y_train, x_valid, y_valid as float32 tensors on the device."""
    def t(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(device)
    return t(data.x_train), t(data.y_train), t(data.x_valid), t(data.y_valid)
