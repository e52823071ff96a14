"""Train K RealMLP-style nets of one shape at once: each member's own lr, weight decay, dropout (and seed).

The members are K copies of engine/realmlp.py's RealMLPNet, each built and initialised exactly as realmlp.fit
builds it from the member's settings, their parameters stacked into (K, ...) tensors. One forward pass of the
population is torch.vmap over torch.func.functional_call of that same module (no second copy of the recipe): the
batch's input rows are shared when the members share a seed (a search's batch of trials does), so the robust
scaling runs once and the layers' matmuls become batched ones. Each member keeps what realmlp.fit gives it alone:

- its batches: the permutation stream of its seed (shared, drawn once, when every member has the same seed);
- its dropout masks: drawn as F.dropout draws them (a bernoulli_ mask of the layer's shape, scaled by 1 / (1 - p))
  from a generator of its own seeded like the default generator that realmlp.fit seeds, at its own scheduled p;
- AdamW with its own lr and weight decay per parameter kind (RealMLP-TD's factors), torch.optim.AdamW's update
  written out with one value per member; the lr, weight-decay and dropout schedules at the same steps;
- its best epoch's weights (and, with patience, its own early stop: it then leaves the stacked tensors);
- divergence: a member whose train or valid loss stops being finite stops there, with the message realmlp.fit
  would raise; the others train on.

So member k's predictions equal those of realmlp.fit on member_config(cfg, members[k]), up to float rounding (a
batched matmul sums in another order): tests/test_realmlp_population.py checks it. On CUDA, F.dropout has a fused
kernel of its own, so only there do a population's dropout masks differ from a single fit's. A time limit
(cfg.max_seconds) is the whole population's: the caller multiplies a trial's own by the trials in it, as the MLP
population's callers do.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tabduel.engine.population import Member  # what differs between members: the MLP population's
from tabduel.engine.realmlp import RealMLPNet, initialized, parameter_groups
from tabduel.engine.torchfit import ONE_THREAD, Arrays, TorchFit, schedule, shared_batches, to_device
from tabduel.infra.config import RealMLPConfig
from tabduel.infra.runtime import cpu_threads, resolve_torch_device, seed_everything, stopwatch, using_threads

Tensor = torch.Tensor
EPS = 1e-8
BETA1 = 0.9
HINT = "lower the learning rate"  # what realmlp.fit's divergence message suggests
VALID_ROWS = 16384  # the valid split is predicted this many rows at a time (K members' activations each)


PER_MEMBER = tuple(f.name for f in dataclasses.fields(Member))  # the RealMLPConfig fields that members may differ in


def member_of(cfg: RealMLPConfig) -> Member:
    """cfg's per-member settings."""
    return Member(cfg.seed, cfg.lr, cfg.weight_decay, cfg.dropout)


def member_config(cfg: RealMLPConfig, m: Member) -> RealMLPConfig:
    """The settings of member m alone: cfg with m's seed, lr, weight decay and dropout."""
    return dataclasses.replace(cfg, seed=m.seed, lr=m.lr, weight_decay=m.weight_decay, dropout=m.dropout)


def shape_of(cfg: RealMLPConfig) -> RealMLPConfig:
    """The settings that members of one population share: cfg with the per-member ones blanked."""
    return member_config(cfg, Member(0, 1.0))


@dataclass
class PopulationFit:
    """Per member, the TorchFit that realmlp.fit would return (None where the member diverged, with the message
    realmlp.fit would raise in errors), and facts of the population's run."""

    fits: list[TorchFit | None]
    errors: list[str]
    info: dict[str, Any]


class _Method(nn.Module):
    """net.<name>(...) as a forward, for torch.func.functional_call (its parameters are net's, named 'net.*')."""

    def __init__(self, net: nn.Module, name: str):
        super().__init__()
        self.net, self.name = net, name

    def forward(self, *args: Any) -> Tensor:
        return getattr(self.net, self.name)(*args)


class _AdamW:
    """torch.optim.AdamW's single-tensor update (foreach off, as realmlp.fit runs it on a CPU) on stacked (K, ...)
    parameters, with each member's lr and weight decay times each parameter's kind factors and the schedules."""

    def __init__(self, params: list[Tensor], factors: list[tuple[float, float]], lr: np.ndarray, wd: np.ndarray,
                 beta2: float):
        self.factors, self.lr, self.wd, self.beta2 = factors, lr.astype(np.float64), wd.astype(np.float64), beta2
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.steps = 0

    def _per_member(self, values: np.ndarray, like: Tensor) -> Tensor:
        return torch.from_numpy(values.astype(np.float32)).to(like.device).view(-1, *([1] * (like.dim() - 1)))

    @torch.no_grad()
    def step(self, params: list[Tensor], lr_mult: float, wd_mult: float) -> None:
        """One update of every parameter from its .grad, as realmlp.fit's AdamW groups update it."""
        self.steps += 1
        b2 = self.beta2
        bias_correction1 = 1 - BETA1 ** self.steps
        bias_correction2_sqrt = (1 - b2 ** self.steps) ** 0.5
        for p, (glr, gwd), m, v in zip(params, self.factors, self.exp_avg, self.exp_avg_sq):
            lr = self.lr * glr * lr_mult  # as the single fit's group: (lr x factor) x multiplier, in float64
            wd = self.wd * gwd * wd_mult
            grad = p.grad
            if (wd != 0).any():  # a member without weight decay is multiplied by exactly 1
                p.mul_(self._per_member(1 - lr * wd, p))
            m.lerp_(grad, 1 - BETA1)
            v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            denom = (v.sqrt() / bias_correction2_sqrt).add_(EPS)
            p.add_(m * self._per_member(-(lr / bias_correction1), p) / denom)  # addcdiv_'s p + (value * m) / denom

    def select(self, rows: Tensor) -> None:
        """Keep only members `rows` (some stopped)."""
        keep = rows.cpu().numpy()
        self.lr, self.wd = self.lr[keep], self.wd[keep]
        self.exp_avg = [t[rows] for t in self.exp_avg]
        self.exp_avg_sq = [t[rows] for t in self.exp_avg_sq]


def _mask(shape: tuple[int, int], p: float, gen: torch.Generator, device: torch.device) -> Tensor:
    """F.dropout's mask on a CPU tensor of this shape: bernoulli(1 - p) from gen, scaled by 1 / (1 - p); ones at
    p = 0 (the single fit draws nothing there)."""
    if p <= 0:
        return torch.ones(shape, device=device)
    return torch.empty(shape, device=device).bernoulli_(1 - p, generator=gen).div_(1 - p)


def _same_buffers(nets: Sequence[RealMLPNet]) -> None:
    """The members share their buffers (scaling, target statistics: the data's, not the seed's); raise otherwise."""
    first = dict(nets[0].named_buffers())
    for net in nets[1:]:
        for name, buf in net.named_buffers():
            if not torch.equal(buf, first[name]):
                raise ValueError(f"population members differ in buffer {name!r}: they must train on the same data")


def fit(data: Arrays, cfg: RealMLPConfig, members: Sequence[Member], quantiles: Any = None) -> PopulationFit:
    """Train len(members) RealMLP-style nets of cfg's shape together, member k as realmlp.fit trains
    member_config(cfg, members[k]) alone; cfg.max_seconds limits the whole population (0: none)."""
    members = tuple(members)
    k_all = len(members)
    if k_all == 0:
        raise ValueError("a population needs at least one member")
    seed_everything(members[0].seed)
    device = torch.device(resolve_torch_device(cfg.device))
    built: dict[int, RealMLPNet] = {}  # the init depends on the seed alone: once per seed, copied for the others
    nets = []
    for m in members:
        if m.seed not in built:
            built[m.seed] = initialized(data, member_config(cfg, m), quantiles)
            nets.append(built[m.seed])
        else:
            nets.append(copy.deepcopy(built[m.seed]))
    _same_buffers(nets)
    threads = cpu_threads(cfg.threads) if cfg.threads > 0 else ONE_THREAD
    start = time.perf_counter()
    with using_threads(threads):
        base = nets[0].to(device)
        xtr, ytr, xva, yva = to_device(data, device)
        y_mean, y_std = base.y_mean, base.y_std
        loss_scale = float(y_std) ** 2
        names = [name for name, _ in base.named_parameters()]
        kind = {id(p): (g.lr, g.wd) for g in parameter_groups(base) for p in g.params}
        factors = [kind[id(p)] for p in base.parameters()]
        params = [torch.stack([dict(net.named_parameters())[name].detach().to(device) for net in nets])
                  .requires_grad_() for name in names]
        opt = _AdamW(params, factors, np.array([m.lr for m in members]), np.array([m.weight_decay for m in members]),
                     cfg.beta2)
        train_call, eval_call = _Method(base, "normalized"), _Method(base, "forward")
        keys = [f"net.{name}" for name in names]
        widths = list(cfg.hidden)
        shared = len({m.seed for m in members}) == 1  # one batch order: the rows of a batch are every member's
        orders = [torch.Generator(device=device).manual_seed(m.seed) for m in (members[:1] if shared else members)]
        noise = [torch.Generator(device=device).manual_seed(m.seed) for m in members]  # realmlp.fit's default one
        batches = shared_batches(len(xtr), cfg.batch_size, device, drop_last=True)
        steps_per_epoch = len(batches(torch.Generator(device=device).manual_seed(members[0].seed)))
        total_steps = max(1, cfg.epochs * steps_per_epoch)

        def member_loss(p: dict[str, Tensor], x: Tensor, y: Tensor, masks: list[Tensor] | None) -> Tensor:
            return F.mse_loss(torch.func.functional_call(train_call, p, (x, masks)), y)

        def member_predict(p: dict[str, Tensor], x: Tensor) -> Tensor:
            return torch.func.functional_call(eval_call, p, (x,)).squeeze(-1)

        def valid_mse() -> Tensor:  # (k,)
            with torch.no_grad():
                pred = torch.cat([torch.vmap(member_predict, in_dims=(0, None))(dict(zip(keys, params)), rows)
                                  for rows in xva.split(VALID_ROWS)], dim=1)
                return (pred - yva).square().mean(dim=1)

        active = torch.arange(k_all)  # the original index of each row of the stacked tensors
        best = [p.detach().clone() for p in params]
        best_loss = np.full(k_all, math.inf)
        best_epoch = np.zeros(k_all, dtype=int)
        epochs_run = np.zeros(k_all, dtype=int)
        steps_run = np.zeros(k_all, dtype=int)
        train_hist = np.full((k_all, cfg.epochs), np.nan)
        valid_hist = np.full((k_all, cfg.epochs), np.nan)
        errors = [""] * k_all
        timed_out = False
        member_epochs = 0
        step = 0
        limit = stopwatch(cfg.time_clock)
        eval_cost, measured = 0.0, False  # as torchfit.train: the seconds of one valid evaluation
        for epoch in range(1, cfg.epochs + 1):
            base.train()
            k = active.numel()
            drawn = [batches(g) for g in orders]
            total = torch.zeros(k, device=device)
            n_batches = 0
            for b in range(len(drawn[0])):
                t = step / total_steps
                lr_mult, wd_mult = schedule(cfg.lr_schedule, t), schedule(cfg.wd_schedule, t)
                p_drop = [members[int(j)].dropout * schedule(cfg.dropout_schedule, t) for j in active]
                began = limit()
                idx = drawn[0][b] if shared else torch.stack([d[b] for d in drawn])  # (batch,) or (k, batch)
                x, y = xtr[idx], (ytr[idx] - y_mean) / y_std
                masks = None
                if any(p > 0 for p in p_drop):
                    rows = idx.shape[-1]
                    masks = [torch.stack([_mask((rows, w), p, noise[int(j)], device) for p, j in zip(p_drop, active)])
                             for w in widths]
                member_in = None if shared else 0
                losses = torch.vmap(member_loss, in_dims=(0, member_in, member_in, None if masks is None else 0))(
                    dict(zip(keys, params)), x, y, masks)  # (k,)
                for p in params:
                    p.grad = None
                losses.sum().backward()  # each member's loss reaches only its own rows of the stacked tensors
                opt.step(params, lr_mult, wd_mult)
                total += losses.detach()
                n_batches += 1
                step += 1
                if not measured and step == 2 and cfg.max_seconds:
                    losses.sum().item()
                    eval_cost = min((limit() - began) / 3 * len(xva) / max(1, idx.shape[-1]), cfg.max_seconds / 4)
                if cfg.max_seconds and limit() + 2 * eval_cost >= cfg.max_seconds:
                    timed_out = True
                    break
            steps_run[active.numpy()] += n_batches
            train = total.cpu().numpy().astype(np.float64) / max(1, n_batches) * loss_scale
            base.eval()
            began = limit()
            valid = valid_mse().cpu().numpy().astype(np.float64)
            eval_cost, measured = limit() - began, True
            member_epochs += k
            rows_now = active.numpy()
            train_hist[rows_now, epoch - 1] = train
            valid_hist[rows_now, epoch - 1] = valid
            epochs_run[rows_now] = epoch
            diverged = np.zeros(k, dtype=bool)
            for i, j in enumerate(rows_now):
                for what, value in (("the training loss", train[i]), ("the valid MSE", valid[i])):
                    if not math.isfinite(value):  # realmlp.fit's message (torchfit._check_finite)
                        errors[j] = f"{what} is {value} after epoch {epoch}: training diverged ({HINT})"
                        diverged[i] = True
                        break
            improved = ~diverged & (valid < best_loss[rows_now])
            best_loss[rows_now[improved]] = valid[improved]
            best_epoch[rows_now[improved]] = epoch
            if improved.any():
                better = torch.from_numpy(np.flatnonzero(improved)).to(device)
                where = torch.from_numpy(rows_now[improved]).to(device)
                for kept, now in zip(best, params):
                    kept[where] = now.detach()[better]
            stopped = diverged.copy()
            if cfg.patience > 0:
                stopped |= ~improved & (epoch - best_epoch[rows_now] >= cfg.patience)
            if timed_out or (cfg.max_seconds and limit() + 2 * eval_cost >= cfg.max_seconds):
                timed_out = True
                break
            if stopped.all():
                break
            if stopped.any():  # stopped members leave the stacked tensors: they cost no more steps
                go_on = torch.from_numpy(np.flatnonzero(~stopped))
                rows_on = go_on.to(device)
                params = [p.detach()[rows_on].requires_grad_() for p in params]
                opt.select(rows_on)
                if not shared:
                    orders = [orders[int(i)] for i in go_on]
                active = active[go_on]
        seconds = time.perf_counter() - start
    fits: list[TorchFit | None] = []
    for j, net in enumerate(nets):
        if errors[j]:
            fits.append(None)
            continue
        net = net.to("cpu")
        with torch.no_grad():
            for param, kept in zip(net.parameters(), best):
                param.copy_(kept[j].cpu())
        net.p_drop = 0.0
        ran = int(epochs_run[j])
        info = {"device": str(device), "epochs_run": ran, "best_epoch": int(best_epoch[j]),
                "best_valid_loss": float(best_loss[j]), "restored_best": True, "train_seconds": seconds,
                "steps": int(steps_run[j]), "time_limited": timed_out, "pruned_epoch": 0, "backward": "autograd",
                "threads": threads, "population": k_all}
        history = {"train_loss": [float(v) for v in train_hist[j, :ran]],
                   "valid_loss": [float(v) for v in valid_hist[j, :ran]]}
        fits.append(TorchFit(net.eval(), history, info))
    info = {"device": str(device), "members": k_all, "train_seconds": seconds, "member_epochs": member_epochs,
            "threads": threads, "time_limited": timed_out, "shared_batches": shared}
    return PopulationFit(fits, errors, info)
