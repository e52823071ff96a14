"""How much memory a population needs, how much the device has, and a refusal that says so."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from tabduel.infra.errors import CapacityError

FLOAT = 4  # bytes of a float32
# The valid split is evaluated in chunks of members so its activations stay under this many bytes.
EVAL_CHUNK_BYTES = 256 * 2 ** 20
# Use at most this share of what the device reports free: other processes, other tensors.
HEADROOM = 0.8
# The sum of live tensors below understates the peak the process reaches (allocator caching and
# fragmentation, the index tensors of a gather, matmul temporaries): measured on this project's CPU machine,
# peak RSS growth was 1.0-1.4x that sum for NN5 x 1024, 64-64 x 512, 128 x 256 and 3 x 256 x 64 populations.
SAFETY = 1.5


def param_count(n_in: int, hidden: tuple[int, ...]) -> int:
    """Weights and biases of one n_in -> hidden... -> 1 MLP."""
    sizes = (n_in, *hidden, 1)
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def _eval_bytes_per_member(n_valid: int, hidden: tuple[int, ...]) -> int:
    """A valid-split forward pass keeps about three layer outputs of the widest layer alive per member."""
    return n_valid * (max(hidden, default=1) * 3 + 1) * FLOAT


def eval_chunk(members: int, n_valid: int, hidden: tuple[int, ...]) -> int:
    """Members per valid-split forward pass so that its activations fit EVAL_CHUNK_BYTES."""
    return max(1, min(members, EVAL_CHUNK_BYTES // max(_eval_bytes_per_member(n_valid, hidden), 1)))


def population_bytes(members: int, n_in: int, hidden: tuple[int, ...], batch: int, optimizer: str,
                     early_stopping: bool, dropout: bool, n_valid: int, n_train: int = 0) -> int:
    """Peak bytes a population of `members` needs beyond the data splits: linear in members.

    Per member: weights, gradients, a best copy (early stopping), Adam's two moments and the update's
    temporaries, one batch's saved activations (inputs, outputs, dropout masks, the backward pass's
    temporaries) and, when each member has its own batch order (n_train > 0), its copy of the train rows in
    that order; plus one valid-split chunk. Checked against the measured peak RSS growth in
    tests/test_engine.py.
    """
    adam = optimizer in ("adam", "adamw")
    copies = 2 + early_stopping + (2 if adam else 0) + (3 if adam else 1)
    per_step = batch * (n_in + sum(hidden) * (4 + 2 * dropout) + 3 * max(hidden, default=1) + 2)
    per_member = (param_count(n_in, hidden) * copies + per_step + n_train * (n_in + 1)) * FLOAT
    chunk = eval_chunk(members, n_valid, hidden)
    return int(SAFETY * (members * per_member + chunk * _eval_bytes_per_member(n_valid, hidden)))


def available_bytes(device: torch.device) -> int | None:
    """Free memory of the device: CUDA's free bytes, or the host's MemAvailable; None where unknown."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
    return None


def _gib(n: float) -> str:
    return f"{n / 2 ** 30:.2f} GiB" if n >= 2 ** 27 else f"{n / 2 ** 20:.0f} MiB"


def check_fits(members: int, need: Callable[[int], int], available: int | None, device: torch.device,
               shape: str) -> None:
    """Raise CapacityError when need(members) bytes exceed the usable share of `available` bytes."""
    if available is None:
        return
    usable = int(available * HEADROOM)
    if need(members) <= usable:
        return
    lo, hi = 0, members  # the most members that fit, by bisection: need() grows with members
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if need(mid) <= usable else (lo, mid - 1)
    raise CapacityError(
        f"a population of {members} MLPs {shape} needs about {_gib(need(members))} on {device}, but only "
        f"{_gib(usable)} of its {_gib(available)} free may be used; at most {lo} members fit. Train fewer members "
        f"(--population), smaller layers or a smaller batch, or split the population.")
