"""Seeds, devices, core counts, clocks, and a throttled logger for long work."""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import random
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from tabduel.infra.errors import ConfigError
from tabduel.infra.model_sections import TIME_CLOCKS
from tabduel.infra.settings import check_choice

# The cores a thread's automatic settings may take when steps run side by side in one process (a pipeline trains its
# torch models beside XGBoost): set per thread by core_share(); 0: no share, every free core.
_CORE_SHARE: contextvars.ContextVar[int] = contextvars.ContextVar("tabduel_core_share", default=0)



def stopwatch(clock: str) -> Callable[[], float]:
    """Seconds since the call, counted by a clock: 'wall' (time.perf_counter) or 'cpu' (this process's CPU time,
    every thread's: what a bench's budgets count)."""
    check_choice("time clock", clock, TIME_CLOCKS)
    now = time.perf_counter if clock == "wall" else time.process_time
    start = now()
    return lambda: now() - start


class Every:
    """A logger that passes on the first info line, then at most one per `seconds`, and every warning."""

    def __init__(self, log: Any, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.log, self.seconds, self.clock = log, seconds, clock
        self.last = -math.inf

    def info(self, msg: str) -> None:
        now = self.clock()
        if now - self.last >= self.seconds:
            self.last = now
            self.log.info(msg)

    def warning(self, msg: str) -> None:
        self.log.warning(msg)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) with one explicit seed."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# Below this many multiply-adds per forward pass, a second thread costs more in synchronisation than it saves
# (measured in benchmarks/training.py: NN5 at batch 200 runs 1.6x faster on one thread than on two).
SMALL_STEP_MACS = 1_000_000


def _cgroup_cores(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup (v2 cpu.max or v1 cfs), in cores; None where unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def free_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup CPU quota; at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_cores()
    if quota is not None:
        cores = min(cores, int(quota) or 1)
    share = _CORE_SHARE.get()
    return max(1, min(cores, share) if share else cores)


@contextlib.contextmanager
def core_share(cores: int) -> Iterator[None]:
    """In this thread (and context), free_cores() is at most `cores` for the block (0: no cap)."""
    token = _CORE_SHARE.set(max(0, cores))
    try:
        yield
    finally:
        _CORE_SHARE.reset(token)


def cpu_threads(requested: int) -> int:
    """Threads for a CPU step: `requested` (0: every free core), never more than the free cores."""
    return min(requested, free_cores()) if requested > 0 else free_cores()


def torch_threads(requested: int, macs_per_step: int) -> int:
    """Intra-op threads for an MLP training step: as cpu_threads, except that (0) a small step gets one thread."""
    if requested > 0:
        return cpu_threads(requested)
    return 1 if macs_per_step < SMALL_STEP_MACS else free_cores()


@contextlib.contextmanager
def using_threads(n: int) -> Iterator[None]:
    """torch.set_num_threads(n) for the block, restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cuda_available(dev: Path = Path("/dev")) -> bool:
    """Whether torch sees a CUDA device; without an NVIDIA device node it answers without importing torch (~1.5 s)."""
    # dxg: WSL2
    if not (dev / "nvidiactl").exists() and not (dev / "dxg").exists() and not any(dev.glob("nvidia[0-9]*")):
        return False
    import torch

    return torch.cuda.is_available()


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
    if name.startswith("cuda:") and name[5:].isdigit() and int(name[5:]) >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r} asked for, but torch sees {torch.cuda.device_count()} CUDA device(s), "
                          f"numbered from 0")
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
