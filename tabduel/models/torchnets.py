"""Save, load and predict for the autograd families (realmlp, tabm): a state dict and its architecture."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from tabduel.engine.torchfit import EVAL_ROWS

EpochCallback = Callable[[int, int, float, float], None]  # (epoch, epochs, train_loss, valid_loss)


@dataclass
class NetFit:
    """A trained network (on the CPU, eval mode), its architecture, per-epoch losses and facts about the run."""

    model: nn.Module
    architecture: dict[str, Any]
    history: dict[str, list[float]]
    info: dict[str, Any]
    valid_pred: Any = None  # (n_valid,) the kept epoch's predictions of valid as training scored them, or None


def save(result: NetFit, directory: Path) -> None:
    """Write the weights (model.pt) and the architecture (architecture.json) into directory."""
    torch.save(result.model.state_dict(), directory / "model.pt")
    (directory / "architecture.json").write_text(json.dumps(result.architecture, indent=2))


def load(directory: str | Path, build: Callable[[dict[str, Any]], nn.Module]) -> nn.Module:
    """Rebuild a saved network on the CPU in eval mode."""
    directory = Path(directory)
    arch = json.loads((directory / "architecture.json").read_text())
    model = build(arch)
    model.load_state_dict(torch.load(directory / "model.pt", map_location="cpu", weights_only=True))
    return model.eval()


def predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """(rows, features) float32 -> (rows,) predictions, EVAL_ROWS rows a pass as training scored valid."""
    rows = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    with torch.no_grad():
        parts = [model(part).squeeze(1) for part in rows.split(EVAL_ROWS)]  # (<= EVAL_ROWS, 1) -> (<= EVAL_ROWS,)
    return torch.cat(parts).numpy() if parts else np.zeros(0, dtype=np.float32)
