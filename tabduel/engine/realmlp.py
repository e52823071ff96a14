"""A RealMLP-style MLP (Holzmüller et al. 2024, "Better by Default"), trained with autograd.

The recipe, as pytabkit's RealMLP-TD regressor defines it (written here from the paper and that code's behaviour):

- numeric inputs: centred on the train median, divided by the train inter-quartile range (half the range where that
  is 0), then smoothly clipped, x / sqrt(1 + x^2 / 9); the other inputs (one-hot columns, indicators) pass through
  (`numeric`: robust, this; standard, the inputs as the features step standardized them; quantile, TabM's map of
  train quantiles to normal scores, engine/tabm.py's QuantileMap: tabduel's choices for the corruption bench);
- a one-hot encoded category (the features step's) with more than 8 levels in the train split is embedded instead:
  its levels seen in train get codes 1..m, a missing value (its indicator set) or a level not seen in train code 0,
  and each code a learned vector of 8 values, initialised N(0, 1) (row 0 too), learning at x1 with weight decay x1
  (pytabkit: max_one_hot_cat_size 9 and embedding_size 8, its categorical codes counted with the missing one;
  pytabkit fits its codes on train and valid together, tabduel on train);
- PBLD embeddings of each numeric input: cos(2 pi w x + b) with 16 frequencies w ~ N(0, 0.1^2) and phases
  b ~ U(-pi, pi), a per-feature linear map to 3 values, and the input itself appended ("densenet"): 4 values each;
- a diagonal scaling layer in front of the first linear layer (learning rate x6);
- the NTK parametrization: weights ~ N(0, 1), multiplied by 1/sqrt(fan_in) in the forward pass; at init each
  layer's weights are rescaled so that its pre-activations have unit sd on the train rows, and each bias is minus a
  random convex combination (Dirichlet(1)) of 5 train rows' pre-activations ("he+5"); biases learn at x0.1;
- a parametric activation z + alpha (f(z) - z), alpha initialised at 1 and learning at x0.1, f Mish (or SELU ...);
- dropout 0.15 and weight decay 0.02, both on a flat_cos schedule; the learning rate 0.2 on a coslog4 schedule;
  Adam with betas (0.9, 0.95) and decoupled weight decay (AdamW); 256 epochs of batches of 256, each epoch's last
  partial batch left out (pytabkit's drop_last);
- the target standardised for training; predictions clamped to the train target's range; the weights of the epoch
  with the best valid MSE are kept.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tabduel.engine.quantiles import QuantileMap, numeric_inputs
from tabduel.engine.torchfit import (
    ONE_THREAD,
    Arrays,
    Group,
    Plan,
    TorchFit,
    numeric_columns,
    schedule,
    shared_batches,
    to_device,
)
from tabduel.engine.torchfit import train as train_loop
from tabduel.infra.config import RealMLPConfig
from tabduel.infra.runtime import cpu_threads, resolve_torch_device, seed_everything, using_threads

Tensor = torch.Tensor
ACTIVATIONS = {"mish": F.mish, "selu": torch.selu, "relu": torch.relu, "silu": F.silu, "gelu": F.gelu}
INIT_ROWS = 8192  # at most this many train rows set the data-dependent initialisation
# Learning-rate and weight-decay factors per kind of parameter (pytabkit's RealMLP-TD).
FACTORS = {"weight": (1.0, 1.0), "bias": (0.1, 0.0), "alpha": (0.1, 1.0), "scale": (6.0, 1.0), "embedding": (0.1, 1.0),
           "category": (1.0, 1.0)}


def smooth_clip(x: Tensor) -> Tensor:
    """x / sqrt(1 + x^2 / 9): about x near 0, tending to +-3."""
    return x / torch.sqrt(1 + x.square() / 9)


def robust_scaling(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column of x (rows, columns): the median, and 1 / IQR (1 / half the range where the IQR is 0; 0 if
    constant)."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[1] == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    median = np.median(x, axis=0)
    spread = np.quantile(x, 0.75, axis=0) - np.quantile(x, 0.25, axis=0)
    half_range = 0.5 * (x.max(axis=0) - x.min(axis=0))
    spread = np.where(spread > 0, spread, half_range)
    inv = np.where(spread > 0, 1.0 / np.where(spread > 0, spread, 1.0), 0.0)
    return median.astype(np.float32), inv.astype(np.float32)


class PeriodicEmbedding(nn.Module):
    """PBLD: per numeric column, cos(2 pi w x + b) with `frequencies` terms, a linear map to dim - 1 values, and x."""

    def __init__(self, n: int, frequencies: int, dim: int, scale: float, gen: torch.Generator | None = None):
        super().__init__()
        self.w1 = nn.Parameter(scale * torch.randn(n, frequencies, generator=gen))
        self.b1 = nn.Parameter(math.pi * (2 * torch.rand(n, frequencies, generator=gen) - 1))
        bound = 1 / math.sqrt(frequencies)
        self.w2 = nn.Parameter(bound * (2 * torch.rand(n, frequencies, dim - 1, generator=gen) - 1))
        self.b2 = nn.Parameter(bound * (2 * torch.rand(n, dim - 1, generator=gen) - 1))

    def forward(self, x: Tensor) -> Tensor:
        """(..., n) -> (..., n * (dim - 1) + n): the embeddings of every column, then the columns themselves."""
        z = torch.cos(2 * math.pi * x.unsqueeze(-1) * self.w1 + self.b1)  # (..., n, frequencies)
        e = torch.einsum("...nf,nfo->...no", z, self.w2) + self.b2  # (..., n, dim - 1)
        return torch.cat([e.flatten(-2), x], dim=-1)


class CategoryEmbedding(nn.Module):
    """Learned vectors of embedded categories, looked up from their one-hot columns (and missing indicators)."""

    def __init__(self, categories: list[dict[str, Any]], dim: int, gen: torch.Generator | None = None):
        super().__init__()
        columns = [c for cat in categories for c in cat["columns"]]
        code_map = torch.zeros(len(columns), len(categories))  # one-hot column -> its level's code in its category
        row = 0
        for k, cat in enumerate(categories):
            code_map[row:row + len(cat["columns"]), k] = torch.tensor(cat["codes"], dtype=torch.float32)
            row += len(cat["columns"])
        sizes = torch.tensor([cat["size"] for cat in categories])
        self.register_buffer("columns", torch.tensor(columns, dtype=torch.long))
        self.register_buffer("code_map", code_map)
        self.register_buffer("top", (sizes - 1).float())
        self.register_buffer("offset", torch.cumsum(sizes, 0) - sizes)
        with_missing = [k for k, cat in enumerate(categories) if cat["missing"] >= 0]
        self.register_buffer("with_missing", torch.tensor(with_missing, dtype=torch.long))
        self.register_buffer("missing", torch.tensor([categories[k]["missing"] for k in with_missing],
                                                     dtype=torch.long))
        self.table = nn.Parameter(torch.randn(int(sizes.sum()), dim, generator=gen))

    def codes(self, x: Tensor) -> Tensor:
        """(rows, features) -> (rows, categories) int64 codes: 0 for a missing or unseen level."""
        codes = x[:, self.columns] @ self.code_map
        if len(self.with_missing):
            keep = torch.ones_like(codes).index_copy(1, self.with_missing, 1 - x[:, self.missing])
            codes = codes * keep
        return torch.minimum(codes.round().clamp_min(0), self.top).long()

    def forward(self, x: Tensor) -> Tensor:
        """(rows, features) -> (rows, categories * dim): each category's vector."""
        return self.table[self.codes(x) + self.offset].flatten(-2)


def embedded_categories(data: Arrays, max_one_hot: int) -> list[dict[str, Any]]:
    """The one-hot encoded categories with more than max_one_hot levels seen in train (rows whose value is not
    missing): their one-hot columns, each column's code (1..m in column order for a seen level, 0 for an unseen
    one), the column of their missing indicator (-1: none) and their table's size m + 1."""
    index = {name: i for i, name in enumerate(data.features)}
    out = []
    for _, columns, indicator in getattr(data, "categories", ()):
        if not all(c in index for c in columns):
            continue
        cols = [index[c] for c in columns]
        present = data.x_train[:, cols] > 0.5
        if indicator:
            present &= data.x_train[:, [index[indicator]]] < 0.5
        seen = present.any(axis=0)
        m = int(seen.sum())
        if m > max_one_hot:
            codes = np.where(seen, np.cumsum(seen), 0)
            out.append({"columns": cols, "codes": [int(c) for c in codes],
                        "missing": index[indicator] if indicator else -1, "size": m + 1})
    return out


class RealMLPNet(nn.Module):
    """The network; forward(x) takes the features step's columns (rows, features) and predicts (rows, 1)."""

    def __init__(self, arch: dict[str, Any], gen: torch.Generator | None = None):
        super().__init__()
        self.arch = dict(arch)
        n_in, numeric = arch["n_in"], list(arch["numeric"])
        categories = list(arch.get("categories", []))  # embedded ones (a model saved before them has none)
        taken = set(numeric) | {c for cat in categories for c in [*cat["columns"], cat["missing"]]}
        other = [i for i in range(n_in) if i not in taken]
        self.register_buffer("num_idx", torch.tensor(numeric, dtype=torch.long))
        self.register_buffer("other_idx", torch.tensor(other, dtype=torch.long))
        n_num = len(numeric)
        self.register_buffer("center", torch.zeros(n_num))
        self.register_buffer("inv_scale", torch.ones(n_num))
        self.register_buffer("y_mean", torch.zeros(()))
        self.register_buffer("y_std", torch.ones(()))
        self.register_buffer("y_low", torch.tensor(-math.inf))
        self.register_buffer("y_high", torch.tensor(math.inf))
        self.numeric_map = arch.get("numeric_map", "robust")  # a model saved before the setting: RealMLP-TD's
        q = arch.get("quantiles", 0)
        self.quantile: QuantileMap | None = QuantileMap(q, n_num) if q and n_num else None
        self.embedding = (PeriodicEmbedding(n_num, arch["frequencies"], arch["embedding_dim"], arch["embedding_scale"],
                                            gen) if arch["embedding"] == "pbld" and n_num else None)
        self.categories = CategoryEmbedding(categories, arch["category_dim"], gen) if categories else None
        width = (n_num * arch["embedding_dim"] if self.embedding is not None else n_num) + len(other)
        width += len(categories) * arch["category_dim"] if categories else 0
        self.scale = nn.Parameter(torch.ones(width)) if arch["front_scale"] else None
        sizes = (width, *arch["hidden"], 1)
        self.weights = nn.ParameterList(nn.Parameter(torch.randn(a, b, generator=gen))
                                        for a, b in zip(sizes[:-1], sizes[1:]))  # (in, out), NTK: N(0, 1)
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(b)) for b in sizes[1:])
        self.alphas = nn.ParameterList(nn.Parameter(torch.ones(b)) for b in arch["hidden"]) \
            if arch["parametric"] else None
        self.p_drop = 0.0

    def inputs(self, x: Tensor) -> Tensor:
        """The first linear layer's input: scaled, clipped, embedded numeric columns, the others, embedded
        categories, front scaling."""
        xn = x[..., self.num_idx]
        if self.numeric_map == "robust":
            xn = smooth_clip((xn - self.center) * self.inv_scale)
        elif self.quantile is not None:
            xn = self.quantile(xn)
        parts = [self.embedding(xn) if self.embedding is not None else xn, x[..., self.other_idx]]
        if self.categories is not None:
            parts.append(self.categories(x))
        h = torch.cat(parts, dim=-1)
        return h * self.scale if self.scale is not None else h

    def layer(self, i: int, h: Tensor) -> Tensor:
        """Pre-activations of layer i: h @ W / sqrt(fan_in) + b."""
        w = self.weights[i]
        return torch.addmm(self.biases[i], h, w, alpha=1 / math.sqrt(w.shape[0]))

    def activate(self, i: int, z: Tensor) -> Tensor:
        """The (parametric) activation of hidden layer i."""
        f = ACTIVATIONS[self.arch["activation"]](z)
        return z + (f - z) * self.alphas[i] if self.alphas is not None else f

    def normalized(self, x: Tensor, masks: Sequence[Tensor] | None = None) -> Tensor:
        """(rows, features) -> (rows,) predictions of the standardised target. masks: one (rows, width) dropout
        mask per hidden layer, already scaled by 1 / (1 - p), in place of F.dropout at p_drop (a population draws
        each member's masks from its own generator: engine/realmlp_population.py)."""
        h = self.inputs(x)
        last = len(self.weights) - 1
        for i in range(last):
            h = self.activate(i, self.layer(i, h))
            if masks is not None:
                h = h * masks[i]
            elif self.p_drop > 0:
                h = F.dropout(h, self.p_drop, training=self.training)
        return self.layer(last, h).squeeze(-1)

    def forward(self, x: Tensor) -> Tensor:
        """(rows, features) -> (rows, 1) predictions on the target's scale; clamped to the train range in eval."""
        y = self.normalized(x) * self.y_std + self.y_mean
        if not self.training:
            y = torch.minimum(torch.maximum(y, self.y_low), self.y_high)
        return y.unsqueeze(1)


def architecture(data: Arrays, cfg: RealMLPConfig) -> dict[str, Any]:
    """The settings that define the network's shape (saved beside its weights)."""
    return {"n_in": int(data.x_train.shape[1]), "numeric": numeric_columns(data), "hidden": list(cfg.hidden),
            "activation": cfg.activation, "parametric": cfg.parametric_activation, "embedding": cfg.embedding,
            "frequencies": cfg.frequencies, "embedding_dim": cfg.embedding_dim, "embedding_scale": cfg.embedding_scale,
            "front_scale": cfg.front_scale, "categories": embedded_categories(data, cfg.max_one_hot),
            "category_dim": cfg.category_dim, "numeric_map": cfg.numeric}


@torch.no_grad()
def initialize(net: RealMLPNet, x: np.ndarray, y: np.ndarray, gen: torch.Generator) -> None:
    """Data-dependent init on the CPU: robust scaling, target standardisation, unit-sd pre-activations, he+5 biases."""
    center, inv = robust_scaling(x[:, net.num_idx.numpy()])
    net.center.copy_(torch.from_numpy(center))
    net.inv_scale.copy_(torch.from_numpy(inv))
    y64 = np.asarray(y, dtype=np.float64)
    net.y_mean.fill_(float(y64.mean()))
    net.y_std.fill_(float(y64.std()) if y64.std() > 0 else 1.0)
    net.y_low.fill_(float(y64.min()))
    net.y_high.fill_(float(y64.max()))
    rows = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if len(rows) > INIT_ROWS:
        rows = rows[torch.randperm(len(rows), generator=gen)[:INIT_ROWS]]
    h = net.inputs(rows)
    last = len(net.weights) - 1
    for i, (w, b) in enumerate(zip(net.weights, net.biases)):
        z = h @ w / math.sqrt(w.shape[0])
        sd = z.std(dim=0, correction=0)
        w.div_(torch.where(sd > 0, sd, torch.ones_like(sd)))
        z = h @ w / math.sqrt(w.shape[0])
        picks = torch.randint(0, len(z), (z.shape[1], 5), generator=gen)  # 5 rows per unit
        mix = torch.empty(z.shape[1], 5).exponential_(1.0, generator=gen)
        mix /= mix.sum(dim=1, keepdim=True)
        chosen = z.t().gather(1, picks)  # (units, 5)
        b.copy_(-(chosen * mix).sum(dim=1))
        if i < last:
            h = net.activate(i, z + b)


def parameter_groups(net: RealMLPNet) -> list[Group]:
    """Optimizer groups with RealMLP-TD's learning-rate and weight-decay factors."""
    kinds = {"weight": list(net.weights), "bias": list(net.biases),
             "alpha": list(net.alphas) if net.alphas is not None else [],
             "scale": [net.scale] if net.scale is not None else [],
             "embedding": list(net.embedding.parameters()) if net.embedding is not None else [],
             "category": [net.categories.table] if net.categories is not None else []}
    return [Group(params, *FACTORS[kind]) for kind, params in kinds.items()]


def initialized(data: Arrays, cfg: RealMLPConfig, quantiles: Any = None) -> RealMLPNet:
    """cfg's net on the CPU, its weights drawn from cfg.seed and initialised on data's train split, as fit trains it
    (quantiles: as fit takes them)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    _, transformer = numeric_inputs(data, cfg, quantiles)  # the same check and map as TabM's
    arch = {**architecture(data, cfg), "quantiles": 0 if transformer is None else int(transformer.quantiles_.shape[0])}
    net = RealMLPNet(arch, gen)
    if net.quantile is not None:
        net.quantile.set(transformer)
    initialize(net, data.x_train, data.y_train, gen)
    return net


def fit(data: Arrays, cfg: RealMLPConfig, on_epoch: Any = None, quantiles: Any = None) -> TorchFit:
    """Train a RealMLP-style net on data's train split; keep the weights of the epoch with the best valid MSE
    (quantiles: a QuantileTransformer fitted on the numeric train columns, which numeric = quantile needs)."""
    seed_everything(cfg.seed)
    device = torch.device(resolve_torch_device(cfg.device))
    net = initialized(data, cfg, quantiles)
    threads = cpu_threads(cfg.threads) if cfg.threads > 0 else ONE_THREAD
    with using_threads(threads):
        net = net.to(device)
        xtr, ytr, xva, yva = to_device(data, device)
        y_mean, y_std = net.y_mean, net.y_std

        def set_dropout(t: float) -> None:
            net.p_drop = cfg.dropout * schedule(cfg.dropout_schedule, t)

        def loss(model: nn.Module, idx: Tensor) -> Tensor:
            return F.mse_loss(model.normalized(xtr[idx]), (ytr[idx] - y_mean) / y_std)

        plan = Plan(parameter_groups(net), cfg.lr, cfg.weight_decay, (0.9, cfg.beta2), cfg.lr_schedule,
                    cfg.wd_schedule, set_dropout)
        batches = shared_batches(len(xtr), cfg.batch_size, device, drop_last=True)
        result = train_loop(net, plan, xtr, ytr, xva, yva, batches=batches,
                            loss=loss, predict=lambda m, x: m(x).squeeze(1), epochs=cfg.epochs,
                            patience=cfg.patience, seed=cfg.seed, max_seconds=cfg.max_seconds,
                            time_clock=cfg.time_clock, loss_scale=float(y_std) ** 2, on_epoch=on_epoch)
    result.model.p_drop = 0.0
    result.info["threads"] = threads
    return result
