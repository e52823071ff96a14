"""What every search trial reports, whichever family ran it: its valid MSE and the worker that ran it."""

from __future__ import annotations

import os
import socket

import numpy as np


def worker() -> str:
    """host:pid of the process that ran a trial (a pool process or a Dask worker)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def mse(pred: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error, in float64."""
    return float(np.mean((pred.astype(np.float64) - y.astype(np.float64)) ** 2))
