"""Seeds, devices and core counts."""

from __future__ import annotations

import os
import random

import numpy as np

from tabduel.errors import ConfigError


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) with one explicit seed."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def free_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def resolve_torch_device(name: str) -> str:
    """'auto' -> cuda if present, else mps, else cpu; an explicit device must exist."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but torch sees no CUDA device")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps' asked for, but it is not available")
    if name != "cpu" and not name.startswith(("cuda", "mps")):
        raise ConfigError(f"device {name!r} is not one of auto, cpu, cuda, cuda:N, mps")
    return name


def resolve_xgboost_device(name: str) -> str:
    """'auto' -> 'cuda' when torch sees a CUDA device, else 'cpu'."""
    if name == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if name != "cpu" and not name.startswith("cuda"):
        raise ConfigError(f"xgboost device {name!r} is not one of auto, cpu, cuda, cuda:N")
    return name
