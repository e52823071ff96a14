"""A TabM-style MLP (Gorishniy et al. 2024, "TabM: Advancing Tabular Deep Learning with Parameter-Efficient
Ensembling"), trained with autograd.

k members share one MLP. In "tabm" (BatchEnsemble) every linear layer computes ((x * r_i) @ W^T) * s_i + b_i for
member i: W is shared, the adapters r_i, s_i and the bias b_i are the member's own; in "tabm-mini" only one adapter
r_i, at the input, is the member's own and the MLP behind it is shared. Every member has its own linear head. The
adapters start at 1, except the first, which starts at random signs (normal values with embeddings), one value per
input feature. Training minimises the mean of the k members' losses, each member on its own permutation of the
train rows (or all on one, `share_batches`); the prediction is the mean of the k heads. Numeric inputs are first
mapped to normal scores by the train split's quantiles (the TabM paper's QuantileTransformer, `numeric`; the family
module fits it with tabduel.data.numeric's map and hands it in; its quantiles are buffers of the network, so a saved
model maps its inputs itself), then may be embedded: piecewise-linear (PLE,
quantile bins of the mapped train split, a linear term plus a zero-initialised piecewise-linear term per feature) or
periodic (the RealMLP family's PBLD embedding). AdamW decays the weights, the adapters and the heads, not the biases,
the PLE linear term or the periodic frequencies and phases (the paper's code: lib/deep.py's
default_zero_weight_decay_condition exempts biases, normalization layers and rtdl's LinearEmbeddings and _Periodic).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tabduel.engine.quantiles import QUANTILE_NOISE, QuantileMap, n_quantiles, numeric_inputs  # noqa: F401
from tabduel.engine.realmlp import PeriodicEmbedding
from tabduel.engine.torchfit import (
    ONE_THREAD,
    Arrays,
    Group,
    Plan,
    TorchFit,
    numeric_columns,
    shared_batches,
    to_device,
)
from tabduel.engine.torchfit import train as train_loop
from tabduel.infra.config import TabMConfig
from tabduel.infra.runtime import cpu_threads, resolve_torch_device, seed_everything, using_threads

Tensor = torch.Tensor
MEMORY_ROWS = 2048  # rows per chunk when a forward pass in eval mode gets more (k members of a large split)


def _uniform(shape: tuple[int, ...], fan_in: int, gen: torch.Generator | None) -> Tensor:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)), torch.nn.Linear's bound."""
    return (2 * torch.rand(shape, generator=gen) - 1) / math.sqrt(fan_in)


def quantile_bins(x: np.ndarray, n_bins: int) -> list[np.ndarray]:
    """Bin edges per column of x: the distinct train quantiles at 0, 1/n_bins, ..., 1 (a constant column: [v, v+1])."""
    edges = []
    for col in np.asarray(x, dtype=np.float64).T:
        e = np.unique(np.quantile(col, np.linspace(0, 1, n_bins + 1)))
        edges.append(e if len(e) >= 2 else np.array([e[0], e[0] + 1.0]))
    return edges


class PiecewiseLinearEmbedding(nn.Module):
    """PLE per numeric column: a linear term w0 x + b0 plus a zero-initialised linear map of the column's
    piecewise-linear encoding (the first bin open to the left, the last to the right)."""

    def __init__(self, n: int, max_bins: int, dim: int, gen: torch.Generator | None = None):
        super().__init__()
        self.register_buffer("left", torch.zeros(n, max_bins))
        self.register_buffer("width", torch.ones(n, max_bins))
        self.register_buffer("low", torch.zeros(n, max_bins))  # clamp bounds of each bin's encoding
        self.register_buffer("high", torch.ones(n, max_bins))
        self.register_buffer("mask", torch.zeros(n, max_bins))  # 1 for a column's real bins, 0 for padding
        self.w0 = nn.Parameter(_uniform((n, dim), dim, gen))
        self.b0 = nn.Parameter(_uniform((n, dim), dim, gen))
        self.weight = nn.Parameter(torch.zeros(n, max_bins, dim))

    @torch.no_grad()
    def set_bins(self, edges: list[np.ndarray]) -> None:
        """Load the bin edges of every column (each at most max_bins + 1 edges)."""
        for j, e in enumerate(edges):
            count = len(e) - 1
            self.left[j, :count] = torch.from_numpy(e[:-1].astype(np.float32))
            self.width[j, :count] = torch.from_numpy(np.diff(e).astype(np.float32))
            self.mask[j] = 0
            self.mask[j, :count] = 1
            self.low[j] = 0
            self.high[j] = 1
            self.low[j, 0] = -math.inf
            self.high[j, count - 1] = math.inf

    def encode(self, x: Tensor) -> Tensor:
        """(..., n) -> (..., n, max_bins) piecewise-linear encoding."""
        enc = (x.unsqueeze(-1) - self.left) / self.width
        return torch.minimum(torch.maximum(enc, self.low), self.high) * self.mask

    def forward(self, x: Tensor) -> Tensor:
        """(..., n) -> (..., n * dim)."""
        e = x.unsqueeze(-1) * self.w0 + self.b0 + torch.einsum("...nb,nbd->...nd", self.encode(x), self.weight)
        return e.flatten(-2)


class EnsembleLinear(nn.Module):
    """BatchEnsemble: ((x * r) @ W^T) * s + b on (rows, k, in), with W shared and r, s, b per member."""

    def __init__(self, k: int, d_in: int, d_out: int, gen: torch.Generator | None = None):
        super().__init__()
        self.weight = nn.Parameter(_uniform((d_out, d_in), d_in, gen))
        self.r = nn.Parameter(torch.ones(k, d_in))
        self.s = nn.Parameter(torch.ones(k, d_out))
        self.bias = nn.Parameter(_uniform((d_out,), d_in, gen).expand(k, d_out).clone())  # equal at init

    def forward(self, x: Tensor) -> Tensor:
        """(rows, k, in) -> (rows, k, out)."""
        return (x * self.r) @ self.weight.t() * self.s + self.bias


class SharedLinear(nn.Module):
    """One linear layer applied to every member: (rows, k, in) -> (rows, k, out)."""

    def __init__(self, d_in: int, d_out: int, gen: torch.Generator | None = None):
        super().__init__()
        self.weight = nn.Parameter(_uniform((d_out, d_in), d_in, gen))
        self.bias = nn.Parameter(_uniform((d_out,), d_in, gen))

    def forward(self, x: Tensor) -> Tensor:
        """x @ W^T + b."""
        return F.linear(x, self.weight, self.bias)


class TabMNet(nn.Module):
    """The network; forward(x) takes the features step's columns (rows, features) and predicts (rows, 1), the mean
    of the k members; members(x) gives each member's prediction of the standardised target, (rows, k)."""

    def __init__(self, arch: dict[str, Any], gen: torch.Generator | None = None):
        super().__init__()
        self.arch = dict(arch)
        k, n_in, numeric = arch["k"], arch["n_in"], list(arch["numeric"])
        other = [i for i in range(n_in) if i not in set(numeric)]
        self.register_buffer("num_idx", torch.tensor(numeric, dtype=torch.long))
        self.register_buffer("other_idx", torch.tensor(other, dtype=torch.long))
        self.register_buffer("y_mean", torch.zeros(()))
        self.register_buffer("y_std", torch.ones(()))
        n_num, dim = len(numeric), arch["embedding_dim"]
        q = arch.get("quantiles", 0)  # 0: no quantile map (numeric = standard, or a model saved before it)
        self.quantile: QuantileMap | None = QuantileMap(q, n_num) if q and n_num else None
        if arch["embedding"] == "ple" and n_num:
            self.embedding: nn.Module | None = PiecewiseLinearEmbedding(n_num, arch["bins"], dim, gen)
        elif arch["embedding"] == "periodic" and n_num:
            self.embedding = PeriodicEmbedding(n_num, arch["frequencies"], dim, arch["embedding_scale"], gen)
        else:
            self.embedding = None
        per_feature = dim if self.embedding is not None else 1
        width = n_num * per_feature + len(other)
        sizes = (width, *([arch["d_block"]] * arch["n_blocks"]))
        mini = arch["variant"] == "tabm-mini"
        self.adapter = nn.Parameter(torch.ones(k, width)) if mini else None
        self.blocks = nn.ModuleList(SharedLinear(a, b, gen) if mini else EnsembleLinear(k, a, b, gen)
                                    for a, b in zip(sizes[:-1], sizes[1:]))
        self.head_w = nn.Parameter(_uniform((k, sizes[-1]), sizes[-1], gen))
        self.head_b = nn.Parameter(_uniform((k,), sizes[-1], gen))
        first = self.adapter if mini else self.blocks[0].r
        sections = [per_feature] * n_num + [1] * len(other)
        with torch.no_grad():  # one random value per member and input feature (not per embedding dimension)
            if self.embedding is not None:
                draw = torch.randn(k, len(sections), generator=gen)
            else:
                draw = 2 * torch.randint(0, 2, (k, len(sections)), generator=gen).float() - 1
            first.copy_(torch.repeat_interleave(draw, torch.tensor(sections), dim=1))
        self.dropout = arch["dropout"]

    def inputs(self, x: Tensor) -> Tensor:
        """(..., features) -> (..., width): mapped and embedded numeric columns, then the others."""
        xn = x[..., self.num_idx]
        if self.quantile is not None:
            xn = self.quantile(xn)
        parts = [self.embedding(xn) if self.embedding is not None else xn, x[..., self.other_idx]]
        return torch.cat(parts, dim=-1)

    def members(self, x: Tensor) -> Tensor:
        """(rows, features), or (rows, k, features) with a batch per member -> (rows, k) standardised predictions."""
        h = self.inputs(x)
        if h.dim() == 2:
            h = h.unsqueeze(1).expand(-1, self.arch["k"], -1)
        if self.adapter is not None:
            h = h * self.adapter
        for block in self.blocks:
            h = F.dropout(F.relu(block(h)), self.dropout, training=self.training)
        return (h * self.head_w).sum(-1) + self.head_b

    def forward(self, x: Tensor) -> Tensor:
        """(rows, features) -> (rows, 1): the mean of the members' predictions on the target's scale."""
        if self.training or len(x) <= MEMORY_ROWS:
            return (self.members(x).mean(dim=1) * self.y_std + self.y_mean).unsqueeze(1)
        return torch.cat([self.forward(part) for part in x.split(MEMORY_ROWS)])


def architecture(data: Arrays, cfg: TabMConfig, quantiles: Any = None) -> dict[str, Any]:
    """The settings that define the network's shape (saved beside its weights); quantiles as numeric_inputs'."""
    numeric = numeric_columns(data)
    x, transformer = numeric_inputs(data, cfg, quantiles)
    bins = max(len(e) - 1 for e in quantile_bins(x, cfg.bins)) if numeric else 0
    n_blocks = cfg.n_blocks or (3 if cfg.embedding == "none" else 2)
    return {"n_in": int(data.x_train.shape[1]), "numeric": numeric, "k": cfg.k, "variant": cfg.variant,
            "d_block": cfg.d_block, "n_blocks": n_blocks, "dropout": cfg.dropout, "embedding": cfg.embedding,
            "embedding_dim": cfg.embedding_dim, "bins": bins, "frequencies": cfg.frequencies,
            "embedding_scale": cfg.embedding_scale,
            "quantiles": 0 if transformer is None else int(transformer.quantiles_.shape[0])}


def build(data: Arrays, cfg: TabMConfig, quantiles: Any = None) -> TabMNet:
    """The initialised network, on the CPU, drawn from cfg.seed; its quantile map (quantiles, fitted on train), bins
    and target scaling from train."""
    x, transformer = numeric_inputs(data, cfg, quantiles)
    gen = torch.Generator().manual_seed(cfg.seed)
    net = TabMNet(architecture(data, cfg, quantiles), gen)
    if net.quantile is not None:
        net.quantile.set(transformer)
    if isinstance(net.embedding, PiecewiseLinearEmbedding):
        net.embedding.set_bins(quantile_bins(x, cfg.bins))
    y = np.asarray(data.y_train, dtype=np.float64)
    with torch.no_grad():
        net.y_mean.fill_(float(y.mean()))
        net.y_std.fill_(float(y.std()) if y.std() > 0 else 1.0)
    return net


# Not decayed, as the TabM paper's default_zero_weight_decay_condition (lib/deep.py; pytabkit's copy in
# nn_models/tabm.py): every bias, and rtdl's LinearEmbeddings (the PLE linear term: w0, b0) and _Periodic (the periodic
# frequencies and phases: w1, b1). Decayed: shared weights, the adapters r, s and tabm-mini's, the heads, the PLE's
# piecewise-linear weights and the periodic embedding's linear map (w2). tabduel has no normalization layers.
NO_DECAY = ("bias", "head_b", "w0", "b0", "w1", "b1", "b2")


def parameter_groups(net: TabMNet) -> list[Group]:
    """Weights, adapters and heads decay; biases, the PLE linear term and the periodic frequencies do not."""
    quiet = [p for name, p in net.named_parameters() if name.split(".")[-1] in NO_DECAY]
    ids = {id(p) for p in quiet}
    return [Group([p for p in net.parameters() if id(p) not in ids]), Group(quiet, 1.0, 0.0)]


def member_batches(n: int, k: int, batch_size: int, device: torch.device):
    """Each epoch, each member its own permutation: batches of (k, batch) row indices."""
    def draw(gen: torch.Generator) -> list[Tensor]:
        order = torch.rand((k, n), generator=gen, device=device).argsort(dim=1)
        return list(order.split(batch_size, dim=1))
    return draw


def fit(data: Arrays, cfg: TabMConfig, on_epoch: Any = None, quantiles: Any = None) -> TorchFit:
    """Train a TabM-style ensemble as one model (quantiles: the train quantile map numeric = quantile needs); keep
    the weights of the epoch with the best valid MSE."""
    seed_everything(cfg.seed)
    device = torch.device(resolve_torch_device(cfg.device))
    net = build(data, cfg, quantiles)
    threads = cpu_threads(cfg.threads) if cfg.threads > 0 else ONE_THREAD
    with using_threads(threads):
        net = net.to(device)
        xtr, ytr, xva, yva = to_device(data, device)
        z = (ytr - net.y_mean) / net.y_std

        def loss(model: nn.Module, idx: Tensor) -> Tensor:
            if idx.dim() == 1:  # one batch for all members
                return F.mse_loss(model.members(xtr[idx]), z[idx].unsqueeze(1).expand(-1, cfg.k))
            return F.mse_loss(model.members(xtr[idx.t()]), z[idx.t()])  # (batch, k, features), (batch, k)

        batches = (shared_batches(len(xtr), cfg.batch_size, device) if cfg.share_batches
                   else member_batches(len(xtr), cfg.k, cfg.batch_size, device))
        plan = Plan(parameter_groups(net), cfg.lr, cfg.weight_decay, (0.9, 0.999), extra={"members": cfg.k})
        result = train_loop(net, plan, xtr, ytr, xva, yva, batches=batches, loss=loss,
                            predict=lambda m, x: m(x).squeeze(1), epochs=cfg.epochs, patience=cfg.patience,
                            seed=cfg.seed, max_seconds=cfg.max_seconds, time_clock=cfg.time_clock,
                            loss_scale=float(net.y_std) ** 2, on_epoch=on_epoch)
    result.info["threads"] = threads
    return result
