"""SGD, Adam and AdamW updates on plain tensors, with torch.optim's formulas.

A single model's hyperparameters are floats, and its update is a handful of foreach (multi-tensor) kernels, or
torch's fused Adam/AdamW kernel where the build has one. A population's hyperparameters are (K, 1, 1) tensors,
one value per member, broadcast over its stacked (K, ...) parameters.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor
BETAS = (0.9, 0.999)
EPS = 1e-8


class Optimizer:
    """The update rule of one optimizer over a fixed list of parameter tensors (updated in place)."""

    def __init__(self, name: str, params: list[Tensor], lr: float | Tensor, weight_decay: float | Tensor):
        if name not in ("sgd", "adam", "adamw"):
            raise ValueError(f"optimizer {name!r} is not one of sgd, adam, adamw")
        self.name, self.lr, self.weight_decay = name, lr, weight_decay
        self.per_member = isinstance(lr, Tensor)
        # A population whose members all have weight decay 0 skips its term (saves three kernels per tensor).
        self.decays = bool((weight_decay != 0).any()) if isinstance(weight_decay, Tensor) else weight_decay != 0
        self.steps = 0
        self.exp_avg: list[Tensor] = []
        self.exp_avg_sq: list[Tensor] = []
        if name != "sgd":
            self.exp_avg = [torch.zeros_like(p) for p in params]
            self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self._fused = (not self.per_member and name != "sgd"
                       and hasattr(torch, f"_fused_{name}_") and params[0].device.type in ("cpu", "cuda"))
        self._step_tensors = [torch.zeros((), device=p.device) for p in params] if self._fused else []

    @property
    def kind(self) -> str:
        """How the update runs: fused, foreach or per-member (broadcast)."""
        return "per-member" if self.per_member else "fused" if self._fused else "foreach"

    def step(self, params: list[Tensor], grads: list[Tensor]) -> None:
        """One update of params from grads (grads may be overwritten)."""
        self.steps += 1
        if self.name == "sgd":
            self._sgd(params, grads)
        elif self._fused:
            torch._foreach_add_(self._step_tensors, 1)
            kernel = torch._fused_adam_ if self.name == "adam" else torch._fused_adamw_
            kernel(params, grads, self.exp_avg, self.exp_avg_sq, [], self._step_tensors, lr=self.lr,
                   beta1=BETAS[0], beta2=BETAS[1], weight_decay=self.weight_decay, eps=EPS, amsgrad=False,
                   maximize=False, grad_scale=None, found_inf=None)
        elif self.per_member:
            self._adam_per_member(params, grads)
        else:
            self._adam_foreach(params, grads)

    def _sgd(self, params: list[Tensor], grads: list[Tensor]) -> None:
        if not self.per_member:
            if self.weight_decay:
                torch._foreach_add_(grads, params, alpha=self.weight_decay)
            torch._foreach_add_(params, grads, alpha=-self.lr)
            return
        for p, g in zip(params, grads):
            if self.decays:
                g = g.addcmul(self.weight_decay, p)
            p.addcmul_(g, self.lr, value=-1)

    def _adam_foreach(self, params: list[Tensor], grads: list[Tensor]) -> None:
        b1, b2 = BETAS
        if self.name == "adamw":
            torch._foreach_mul_(params, 1 - self.lr * self.weight_decay)
        elif self.weight_decay:
            torch._foreach_add_(grads, params, alpha=self.weight_decay)
        torch._foreach_lerp_(self.exp_avg, grads, 1 - b1)
        torch._foreach_mul_(self.exp_avg_sq, b2)
        torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, 1 - b2)
        step_size = self.lr / (1 - b1 ** self.steps)
        denom = torch._foreach_sqrt(self.exp_avg_sq)
        torch._foreach_div_(denom, (1 - b2 ** self.steps) ** 0.5)
        torch._foreach_add_(denom, EPS)
        torch._foreach_addcdiv_(params, self.exp_avg, denom, -step_size)

    def _adam_per_member(self, params: list[Tensor], grads: list[Tensor]) -> None:
        b1, b2 = BETAS
        step_size = self.lr / (1 - b1 ** self.steps)  # (K, 1, 1)
        root_bc2 = (1 - b2 ** self.steps) ** 0.5
        for p, g, m, v in zip(params, grads, self.exp_avg, self.exp_avg_sq):
            if self.name == "adamw" and self.decays:
                p.mul_(1 - self.lr * self.weight_decay)
            elif self.decays:
                g = g.addcmul(self.weight_decay, p)
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            p.sub_(step_size * m / (v.sqrt() / root_bc2 + EPS))

    def select(self, rows: Tensor) -> None:
        """Keep only members `rows` (a population that stopped some members)."""
        if not self.per_member:
            raise ValueError("select() is for population optimizers")
        self.lr, self.weight_decay = self.lr[rows], self.weight_decay[rows]
        self.decays = bool((self.weight_decay != 0).any())
        self.exp_avg = [m[rows] for m in self.exp_avg]
        self.exp_avg_sq = [v[rows] for v in self.exp_avg_sq]
