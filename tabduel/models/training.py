"""One entry point for every model family: its inputs from a features directory, fit, check, predict."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from tabduel.data.features import feature_names, load_xy
from tabduel.engine.data import Data
from tabduel.infra.config import ModelConfig, to_plain
from tabduel.infra.errors import DivergedError, TabduelError
from tabduel.infra.runtime import resolve_torch_device, resolve_xgboost_device
from tabduel.infra.store import read_json
from tabduel.models.registry import STEPS, Progress, family

RESOLVE_DEVICE = {"torch": resolve_torch_device, "xgboost": resolve_xgboost_device}


def load_data(features_dir: str | Path, kind: str = "") -> tuple[Data, dict[str, Any]]:
    """Train and valid arrays of a features output as model family `kind` takes them, with the manifest."""
    features_dir = Path(features_dir)
    manifest = read_json(features_dir / "manifest.json")
    native = native_missing(kind)
    x_train, y_train = load_xy(str(features_dir / "train.parquet"), manifest, native)
    x_valid, y_valid = load_xy(str(features_dir / "valid.parquet"), manifest, native)
    numeric = tuple(manifest.get("scaler", {}).get("mean", {}))
    return Data(x_train, y_train, x_valid, y_valid, tuple(feature_names(manifest, native)), numeric), manifest


def native_missing(kind: str) -> bool:
    """Whether family `kind` takes missing inputs as NaN ('' : no family, the imputed inputs)."""
    return family(kind).native_missing if kind else False


def fit(kind: str, data: Data, cfg: ModelConfig, progress: Progress | None = None) -> Any:
    """Fit one model family; progress gets (step, total, ...) per epoch or round. A model whose predictions on
    valid are not all finite raises DivergedError: it is never saved."""
    fam = family(kind)
    result = fam.fit(data, cfg, progress)
    check_finite(kind, fam.predict(result.model, data.x_valid))
    return result


def check_finite(kind: str, predictions: np.ndarray) -> None:
    """Raise DivergedError naming the model, how many of its predictions are NaN or infinite, and what to try."""
    bad = ~np.isfinite(predictions)
    if bad.any():
        raise DivergedError(f"{kind}: {int(bad.sum())} of {bad.size} predictions on the valid split are NaN or "
                            f"infinite; the model is not kept ({family(kind).hint})")


def predictor(kind: str, model_dir: str | Path) -> Callable[[np.ndarray], np.ndarray]:
    """A function (rows, features) -> (rows,) for a saved model."""
    fam = family(kind)
    model = fam.load(model_dir)
    return lambda x: fam.predict(model, x)


def settings_in_effect(kind: str, cfg: ModelConfig) -> dict[str, Any]:
    """A family's settings as they take effect: an 'auto' device resolved (a GPU model is another model)."""
    settings = to_plain(cfg)
    fam = family(kind)
    if fam.device:
        settings["device"] = RESOLVE_DEVICE[fam.device](cfg.device)
    return settings


def progress_logger(kind: str, log: Any) -> Progress:
    """A progress callback that logs about ten lines per fit (every 100th round of a boosted model)."""
    unit = family(kind).steps or "round"
    names = STEPS[unit]

    def report(step: int, total: int, *values: float) -> None:
        every = max(1, total // 10) if unit == "epoch" else 100
        if step == 1 or step % every == 0 or step == total:
            shown = " ".join(f"{n}={v:.5f}" for n, v in zip(names, values))
            log.info(f"{kind} {unit} {step}/{total} {shown}")
    return report


def check_trained_on(features: Any, models: dict[str, Any]) -> None:
    """Raise TabduelError unless every model (a StepResult) was trained on these features."""
    for kind, model in models.items():
        trained_on = read_json(Path(model.path) / "meta.json")["features_key"]
        if trained_on != features.key:
            raise TabduelError(f"the {kind} model in {model.path} was trained on features {trained_on}, not on "
                               f"{features.key}; run `tabduel train {kind}` on the current features first")
