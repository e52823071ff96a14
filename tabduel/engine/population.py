"""Train K MLPs of one shape at once: stacked weights, batched matmuls, per-member early stopping."""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from tabduel.engine import memory, single
from tabduel.engine.data import Data
from tabduel.engine.net import Params, forward, init_params, member, stack
from tabduel.engine.optim import Optimizer
from tabduel.engine.single import SingleFit, diverged, macs_per_step, split_tensors, train_step
from tabduel.infra.config import MLPConfig
from tabduel.infra.errors import DivergedError
from tabduel.infra.runtime import resolve_torch_device, stopwatch, torch_threads, using_threads

Tensor = torch.Tensor
# (epoch, epochs, members still training, their mean train loss, their mean valid loss)
PopulationCallback = Callable[[int, int, int, float, float], None]
# (epoch, original indices of the members still training (k,), best valid loss of every member so far (K,))
#   -> a (k,) bool mask of the members to stop now (a pruner's decision; they keep their best weights)
MemberPrune = Callable[[int, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Member:
    """What differs between the members of a population."""

    seed: int
    lr: float
    weight_decay: float = 0.0
    dropout: float = 0.0


@dataclass
class PopulationFit:
    """K trained MLPs stacked (on the CPU), per-member losses (K, epochs; NaN once stopped) and facts."""

    params: Params
    members: tuple[Member, ...]
    history: dict[str, np.ndarray]
    info: dict[str, Any]

    def single(self, k: int) -> SingleFit:
        """Member k as if trained alone: its weights, its history and its own facts."""
        ran = int(self.info["epochs_run"][k])
        history = {name: [float(v) for v in values[k, :ran]] for name, values in self.history.items()}
        info = {"device": self.info["device"], "epochs_run": ran, "best_epoch": int(self.info["best_epoch"][k]),
                "best_valid_loss": float(self.info["best_valid_loss"][k]),
                "restored_best": self.info["restored_best"], "train_seconds": self.info["train_seconds"],
                "threads": self.info["threads"], "optimizer_update": self.info["optimizer_update"],
                "time_limited": self.info["time_limited"],
                "diverged_epoch": int(self.info["diverged_epoch"][k]),
                "pruned_epoch": int(self.info["pruned_epoch"][k]),
                "population": len(self.members)}
        return SingleFit(member(self.params, k), history, info)


def members_of(cfg: MLPConfig, n: int) -> tuple[Member, ...]:
    """n members of cfg with seeds cfg.seed, cfg.seed + 1, ... and cfg's other settings."""
    return tuple(Member(cfg.seed + i, cfg.lr, cfg.weight_decay, cfg.dropout) for i in range(n))


def shape_of(cfg: MLPConfig) -> MLPConfig:
    """The settings that members of one population share: cfg with the per-member ones blanked."""
    return dataclasses.replace(cfg, seed=0, lr=1.0, weight_decay=0.0, dropout=0.0, population=1)


def required_bytes(data: Data, cfg: MLPConfig, members: int) -> int:
    """Peak bytes of a population of `members` cfg-shaped MLPs on these data, the splits included."""
    splits = sum(a.nbytes for a in (data.x_train, data.y_train, data.x_valid, data.y_valid))
    own_order = cfg.batch_order == "member" and members > 1
    return splits + memory.population_bytes(members, data.x_train.shape[1], cfg.hidden, cfg.batch_size,
                                            cfg.optimizer, cfg.patience > 0, cfg.dropout > 0,
                                            data.x_valid.shape[0], data.x_train.shape[0] if own_order else 0)


def check_memory(data: Data, cfg: MLPConfig, members: int, available: int | None = -1) -> None:
    """Raise CapacityError, before anything is allocated, if `members` cfg-shaped MLPs would not fit the device.

    `available` overrides the free bytes the check assumes (-1: ask the device; None: skip the check).
    """
    device = torch.device(resolve_torch_device(cfg.device))
    shape = "-".join(map(str, (data.x_train.shape[1], *cfg.hidden, 1)))
    memory.check_fits(members, lambda k: required_bytes(data, cfg, k),
                      memory.available_bytes(device) if available == -1 else available, device, shape)


def _per_member(values: Sequence[float], device: torch.device) -> Tensor:
    return torch.tensor(values, dtype=torch.float32, device=device).view(-1, 1, 1)  # (K, 1, 1)


def _valid_losses(params: Params, xv: Tensor, yv: Tensor, activation: str, chunk: int) -> Tensor:
    """(K,) valid MSE of each member from xv (features, n_valid), yv (1, n_valid), `chunk` members at a time."""
    k = params.weights[0].shape[0]
    out = []
    for s in range(0, k, chunk):
        pred = forward(params.select(slice(s, s + chunk)), xv, activation)  # (chunk, 1, n_valid)
        out.append((pred - yv).square().mean(dim=(1, 2)))
    return torch.cat(out)


def fit(data: Data, cfg: MLPConfig, members: Sequence[Member], on_epoch: PopulationCallback | None = None,
        available: int | None = -1, compile: bool = False, prune: MemberPrune | None = None) -> PopulationFit:
    """Train len(members) MLPs of cfg's shape together; each member has its own seed, lr, weight decay, dropout.

    Member k sees the batches of its own permutation stream (seeded by its seed), exactly as a single model
    with that seed does, unless cfg.batch_order is 'shared'. With cfg.patience > 0, a member stops when its valid
    loss has not improved for patience epochs, keeps its best weights and drops out of the stacked tensors.
    A member whose train or valid loss stops being finite has diverged: its epoch is in info["diverged_epoch"]
    (0 for the others) and, with patience > 0, it stops training and keeps its best weights (without patience its
    weights are NaN); the caller leaves it out of any ensemble. When every member has diverged, DivergedError.
    After each epoch, prune (when given; it needs patience > 0) may stop members one by one: they keep their best
    weights and leave the stacked tensors like stopped ones; info["pruned_epoch"] holds the epoch of each (0: not).
    `available` is passed to check_memory. compile=True runs each minibatch step through torch.compile; on this
    project's 2-core CPU it measured 1.1x faster than eager for NN5 at K=64 (benchmarks/training.py, row
    compile_k64), after ~11 s of compiling, so it is off by default.
    """
    members = tuple(members)
    k_all = len(members)
    if k_all == 0:
        raise ValueError("a population needs at least one member")
    if prune is not None and cfg.patience <= 0:
        raise ValueError("pruning needs early stopping (patience > 0): a pruned member keeps its best weights")
    sized = dataclasses.replace(cfg, dropout=max(m.dropout for m in members))  # what memory depends on
    check_memory(data, sized, k_all, available)
    device = torch.device(resolve_torch_device(cfg.device))
    threads = torch_threads(cfg.threads, macs_per_step(data.x_train.shape[1], cfg.hidden, cfg.batch_size, k_all))
    epochs, bs = cfg.epochs, cfg.batch_size
    with using_threads(threads), torch.no_grad():
        xy, xv, yv = split_tensors(data, device)
        n, n_in = xy.shape[0], xy.shape[1] - 1
        params = stack([init_params(n_in, cfg.hidden, m.seed) for m in members]).to(device)
        opt = Optimizer(cfg.optimizer, params.tensors(), _per_member([m.lr for m in members], device),
                        _per_member([m.weight_decay for m in members], device))
        any_dropout = any(m.dropout > 0 for m in members)
        keep = _per_member([1 - m.dropout for m in members], device) if any_dropout else None
        seeds = [members[0].seed] if cfg.batch_order == "shared" else [m.seed for m in members]
        orders = [torch.Generator(device=device).manual_seed(s) for s in seeds]
        noise = torch.Generator(device=device).manual_seed(members[0].seed + 1)  # dropout masks
        chunk = memory.eval_chunk(k_all, xv.shape[0], cfg.hidden)

        active = torch.arange(k_all)  # original index of each row of the stacked tensors
        best = params.clone() if cfg.patience > 0 else None
        best_loss = torch.full((k_all,), float("inf"))
        best_epoch = torch.zeros(k_all, dtype=torch.long)
        epochs_run = torch.zeros(k_all, dtype=torch.long)
        diverged_at = torch.zeros(k_all, dtype=torch.long)
        pruned_at = torch.zeros(k_all, dtype=torch.long)
        train_hist = torch.full((k_all, epochs), float("nan"))
        valid_hist = torch.full((k_all, epochs), float("nan"))
        step = torch.compile(train_step) if compile else train_step
        buffer: Tensor | None = None
        timed_out = False
        member_epochs = 0  # member-epochs actually trained (stopped members cost nothing)
        start = time.perf_counter()
        limit = stopwatch(cfg.time_clock)  # what max_seconds counts
        for epoch in range(1, epochs + 1):
            k = active.numel()
            if len(orders) == 1:  # one permutation: the batch (features, batch) is shared, not copied K times
                rows = xy[torch.randperm(n, generator=orders[0], device=device)].t()  # (features + 1, n)
            else:  # each member's rows in its own order, gathered once per epoch into a reused buffer
                perms = torch.stack([torch.randperm(n, generator=g, device=device) for g in orders]).view(-1)
                if buffer is None or buffer.shape[0] != perms.numel():
                    buffer = torch.empty(perms.numel(), n_in + 1, device=device)  # fresh pages cost ~10 ms
                rows = torch.index_select(xy, 0, perms, out=buffer).view(k, n, n_in + 1).transpose(1, 2)
            total = torch.zeros(k, device=device)
            seen = n
            for i in range(0, n, bs):
                xb, yb = rows[..., :n_in, i:i + bs], rows[..., n_in:, i:i + bs]  # (k,) features or 1, batch
                total += step(params, opt, xb, yb, cfg.activation, keep, noise)
                if cfg.max_seconds and limit() >= cfg.max_seconds:  # per step: one epoch may outlast a budget
                    seen = min(n, i + bs)
                    break
            valid = _valid_losses(params, xv, yv, cfg.activation, chunk).cpu()  # (k,)
            train = (total / seen).cpu()
            member_epochs += k
            train_hist[active, epoch - 1] = train
            valid_hist[active, epoch - 1] = valid
            epochs_run[active] = epoch
            finite = torch.isfinite(train) & torch.isfinite(valid)
            if not finite.all():
                newly = active[~finite]
                diverged_at[newly[diverged_at[newly] == 0]] = epoch
                if bool((diverged_at > 0).all()):
                    worst = int((~finite).nonzero()[0, 0])
                    raise DivergedError(diverged(epoch, epochs, float(train[worst]), float(valid[worst]),
                                                 max(m.lr for m in members),
                                                 f"MLP training of all {k_all} population members"))
            improved = valid < best_loss[active]
            best_loss[active[improved]] = valid[improved]
            best_epoch[active[improved]] = epoch
            if on_epoch:
                on_epoch(epoch, epochs, k, float(train.mean()), float(valid.mean()))
            timed_out = bool(cfg.max_seconds) and limit() >= cfg.max_seconds
            pruned = torch.zeros(k, dtype=torch.bool)
            if prune is not None:
                mask = np.asarray(prune(epoch, active.numpy().copy(), best_loss.numpy().copy()), dtype=bool)
                if mask.shape != (k,):
                    raise ValueError(f"prune returned a mask of shape {mask.shape}, not ({k},): one per member "
                                     f"still training")
                pruned = torch.from_numpy(mask)
                pruned_at[active[pruned]] = epoch
            if best is None:
                if timed_out:
                    break
                continue
            better = improved.nonzero().squeeze(1).to(device)
            if better.numel():
                for kept, now in zip(best.tensors(), params.tensors()):
                    kept[active[improved].to(device)] = now[better]
            # a diverged member stops too, and a pruned one
            stopped = (epoch - best_epoch[active] >= cfg.patience) | ~finite | pruned
            if stopped.all() or timed_out:
                break
            if stopped.any():  # drop stopped members from every stacked tensor: they cost no more updates
                go_on = (~stopped).nonzero().squeeze(1)
                rows_on = go_on.to(device)
                params = params.select(rows_on)
                opt.select(rows_on)
                keep = keep[rows_on] if keep is not None else None
                if len(orders) > 1:
                    orders = [orders[int(j)] for j in go_on]
                active = active[go_on]
        seconds = time.perf_counter() - start
    final = (best if best is not None else params).to("cpu")
    info = {"device": str(device), "members": k_all, "epochs_run": epochs_run.numpy(),
            "best_epoch": best_epoch.numpy(), "best_valid_loss": best_loss.numpy(),
            "restored_best": cfg.patience > 0, "train_seconds": seconds, "member_epochs": member_epochs,
            "threads": threads, "optimizer_update": opt.kind, "batch_order": cfg.batch_order,
            "time_limited": timed_out, "diverged_epoch": diverged_at.numpy(), "pruned_epoch": pruned_at.numpy(),
            "estimated_bytes": required_bytes(data, sized, k_all)}
    return PopulationFit(final, members, {"train_loss": train_hist.numpy(), "valid_loss": valid_hist.numpy()},
                         info)


def fit_many(data: Data, configs: Sequence[MLPConfig], on_epoch: PopulationCallback | None = None
             ) -> list[SingleFit]:
    """Train every config, grouping those of one shape into a population; results in the order given."""
    groups: dict[MLPConfig, list[int]] = defaultdict(list)
    for i, cfg in enumerate(configs):
        groups[shape_of(cfg)].append(i)
    out: list[SingleFit | None] = [None] * len(configs)
    for shape, indices in groups.items():
        if len(indices) == 1:  # alone, the single-model path is faster (benchmarks/training.py, population_k1)
            out[indices[0]] = single.fit(data, configs[indices[0]])
            continue
        members = [Member(configs[i].seed, configs[i].lr, configs[i].weight_decay, configs[i].dropout)
                   for i in indices]
        result = fit(data, shape, members, on_epoch)
        for k, i in enumerate(indices):
            out[i] = result.single(k)
    return [r for r in out if r is not None]
