"""MLP layers as plain tensors, with a hand-written backward pass.

One code path serves a single model and a population. Activations are feature-major, (features, batch): a
single model's weights are (out, in) matrices, as in torch.nn.Linear, and its biases (out, 1); a population of K
stacks them to (K, out, in) and (K, out, 1), and its activations gain a leading K dimension. A population's input
may stay (features, batch) when all members share a batch; the first layer is then one large matmul. For these
small nets, autograd's graph building costs more than the arithmetic; the backward pass below calls the same
ATen kernels autograd would, without the graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

Tensor = torch.Tensor
_FORWARD = {"sigmoid": torch.sigmoid, "relu": torch.relu, "gelu": nn.functional.gelu, "silu": nn.functional.silu,
            "tanh": torch.tanh}
ACTIVATIONS = tuple(_FORWARD)
_MODULES: dict[str, type[nn.Module]] = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU,
                                        "tanh": nn.Tanh}
# Activations whose derivative needs the pre-activation z; the others use their output.
_NEEDS_Z = {"gelu", "silu"}


@dataclass
class Params:
    """Weights (out, in) or (K, out, in) and biases (out, 1) or (K, out, 1), one pair per layer."""

    weights: list[Tensor]
    biases: list[Tensor]

    def tensors(self) -> list[Tensor]:
        """All tensors in the order w0, b0, w1, b1, ... (the optimizer's order)."""
        return [t for pair in zip(self.weights, self.biases) for t in pair]

    def clone(self) -> Params:
        """A deep copy."""
        return Params([w.clone() for w in self.weights], [b.clone() for b in self.biases])

    def select(self, rows: Tensor | slice) -> Params:
        """Members `rows` of a population (a new Params)."""
        return Params([w[rows] for w in self.weights], [b[rows] for b in self.biases])

    def to(self, device: torch.device | str) -> Params:
        """The same tensors on `device`."""
        return Params([w.to(device) for w in self.weights], [b.to(device) for b in self.biases])


def init_params(n_in: int, hidden: tuple[int, ...], seed: int) -> Params:
    """torch.nn.Linear's default initialisation, drawn from `seed` in the order nn.Sequential draws it."""
    gen = torch.Generator().manual_seed(seed)
    weights, biases = [], []
    sizes = (n_in, *hidden, 1)
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        w = torch.empty(fan_out, fan_in)
        nn.init.kaiming_uniform_(w, a=5 ** 0.5, generator=gen)
        bound = 1 / fan_in ** 0.5
        b = torch.empty(fan_out).uniform_(-bound, bound, generator=gen)
        weights.append(w)  # (out, in)
        biases.append(b.unsqueeze(1))  # (out, 1)
    return Params(weights, biases)


def stack(members: list[Params]) -> Params:
    """K single-model Params -> one population Params with a leading K dimension."""
    n_layers = len(members[0].weights)
    return Params([torch.stack([m.weights[i] for m in members]) for i in range(n_layers)],
                  [torch.stack([m.biases[i] for m in members]) for i in range(n_layers)])


def member(params: Params, k: int) -> Params:
    """Member k of a population as single-model Params."""
    return Params([w[k].clone() for w in params.weights], [b[k].clone() for b in params.biases])


def _affine(h: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """w @ h + b: h (in, batch) or (K, in, batch) -> (out, batch) or (K, out, batch)."""
    if w.dim() == 2:
        return torch.addmm(b, w, h)
    if h.dim() == 3:
        return torch.baddbmm(b, w, h)
    return torch.matmul(w, h).add_(b)  # a batch shared by all members: one (K * out, in) @ (in, batch) GEMM


def _activation_backward(grad: Tensor, z: Tensor | None, out: Tensor, activation: str) -> Tensor:
    """d loss / d z from d loss / d out, with the kernels autograd uses."""
    if activation == "sigmoid":
        return torch.ops.aten.sigmoid_backward(grad, out)
    if activation == "relu":
        return torch.ops.aten.threshold_backward(grad, out, 0)
    if activation == "tanh":
        return torch.ops.aten.tanh_backward(grad, out)
    if activation == "gelu":
        return torch.ops.aten.gelu_backward(grad, z)
    return torch.ops.aten.silu_backward(grad, z)


@dataclass
class Tape:
    """What the backward pass needs from a forward pass."""

    inputs: list[Tensor]  # the input of each layer (after activation and dropout)
    pre: list[Tensor | None]  # pre-activations, kept only where the derivative needs them
    post: list[Tensor]  # activation outputs before dropout
    masks: list[Tensor | None]  # dropout masks, already scaled by 1 / keep


def forward(params: Params, x: Tensor, activation: str, keep: Tensor | float | None = None,
            generator: torch.Generator | None = None, tape: Tape | None = None) -> Tensor:
    """Predictions (1, batch) or (K, 1, batch) from x (features, batch) or (K, features, batch).

    `keep` (a float, or a (K, 1, 1) tensor of 1 - dropout) applies inverted dropout after each hidden layer;
    `tape` records what backward() needs.
    """
    h = x
    last = len(params.weights) - 1
    for i, (w, b) in enumerate(zip(params.weights, params.biases)):
        if tape is not None:
            tape.inputs.append(h)
        z = _affine(h, w, b)
        if i == last:
            return z
        out = _FORWARD[activation](z)
        mask = None
        if keep is not None:
            mask = (torch.rand(out.shape, generator=generator, device=out.device) < keep).to(out.dtype) / keep
            h = out * mask
        else:
            h = out
        if tape is not None:
            tape.pre.append(z if activation in _NEEDS_Z else None)
            tape.post.append(out)
            tape.masks.append(mask)
    raise AssertionError("unreachable: an MLP has an output layer")


def backward(params: Params, tape: Tape, grad_out: Tensor, activation: str) -> list[Tensor]:
    """Gradients of the loss, in Params.tensors() order, from d loss / d predictions."""
    grads: list[Tensor] = [grad_out] * (2 * len(params.weights))
    d = grad_out  # (out, batch) or (K, out, batch)
    for i in range(len(params.weights) - 1, -1, -1):
        grads[2 * i] = torch.matmul(d, tape.inputs[i].mT)  # (out, in) or (K, out, in)
        grads[2 * i + 1] = d.sum(-1, keepdim=True)  # (out, 1) or (K, out, 1)
        if i > 0:
            d = params.weights[i].mT @ d
            if tape.masks[i - 1] is not None:
                d = d * tape.masks[i - 1]
            d = _activation_backward(d, tape.pre[i - 1], tape.post[i - 1], activation)
    return grads


def build_mlp(n_in: int, hidden: tuple[int, ...], activation: str, dropout: float) -> nn.Sequential:
    """n_in -> hidden... -> 1 as torch.nn layers, with an activation (and dropout) after each hidden layer."""
    layers: list[nn.Module] = []
    width = n_in
    for h in hidden:
        layers += [nn.Linear(width, h), _MODULES[activation]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


def to_sequential(params: Params, activation: str, dropout: float) -> nn.Sequential:
    """Single-model Params as the torch.nn.Sequential that models.mlp saves and MLflow logs."""
    n_in = params.weights[0].shape[1]
    hidden = tuple(w.shape[0] for w in params.weights[:-1])
    net = build_mlp(n_in, hidden, activation, dropout)
    linears = [m for m in net if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for layer, w, b in zip(linears, params.weights, params.biases):
            layer.weight.copy_(w)
            layer.bias.copy_(b.squeeze(1))
    return net.eval()
