"""One entry point for every model family: its inputs from a features directory, fit, check, predict."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from tabduel.data.features import feature_names, load_xy
from tabduel.engine.data import Data
from tabduel.infra.config import ModelConfig, to_plain
from tabduel.infra.errors import DivergedError, TabduelError
from tabduel.infra.progress import FitProgress
from tabduel.infra.runtime import free_cores, resolve_torch_device, resolve_xgboost_device
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
    names = tuple(feature_names(manifest, native))
    return Data(x_train, y_train, x_valid, y_valid, names, numeric, categories(manifest, names)), manifest


def categories(manifest: dict[str, Any], names: Sequence[str]) -> tuple[tuple[str, tuple[str, ...], str], ...]:
    """The one-hot encoded inputs of a features output: (input, its one-hot columns, its missing indicator when it is
    among names, else ""); none from a manifest written before the features step recorded them."""
    covers = {tuple(columns): indicator for indicator, columns in manifest.get("native_missing", {}).items()}
    out = []
    for name, columns in manifest.get("categories", {}).items():
        indicator = covers.get(tuple(columns), "")
        out.append((name, tuple(columns), indicator if indicator in names else ""))
    return tuple(out)


def native_missing(kind: str) -> bool:
    """Whether family `kind` takes missing inputs as NaN ('' : no family, the imputed inputs)."""
    return family(kind).native_missing if kind else False


def fit(kind: str, data: Data, cfg: ModelConfig, progress: Progress | None = None) -> Any:
    """Fit one model family; progress gets (step, total, ...) per epoch or round. A model whose predictions on
    valid are not all finite raises DivergedError: it is never saved."""
    return fit_predict(kind, data, cfg, progress)[0]


def fit_predict(kind: str, data: Data, cfg: ModelConfig, progress: Progress | None = None) -> tuple[Any, np.ndarray]:
    """fit, and the fitted model's predictions on valid that it checked (a search trial scores them: predicting
    valid again would cost a wide ensemble seconds)."""
    fam = family(kind)
    result = fam.fit(data, cfg, progress)
    pred = getattr(result, "valid_pred", None)  # a torch fit's kept epoch, as scored: not predicted twice
    if pred is None:
        pred = fam.predict(result.model, data.x_valid)
    check_finite(kind, pred)
    return result, pred


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


def training_lanes(kinds: Sequence[str]) -> list[tuple[str, ...]]:
    """A run's models in lanes that train side by side, each lane in the order given: the families that use torch
    (pytabkit's peers too) in one, as torch's thread count is one setting per process; every other family in
    another."""
    torch_lane = tuple(k for k in kinds if {"torch", "pytabkit"} & set(family(k).packages))
    other = tuple(k for k in kinds if k not in torch_lane)
    return [lane for lane in (torch_lane, other) if lane]


def lane_cores(lanes: Sequence[tuple[str, ...]], lane: tuple[str, ...]) -> int:
    """The most cores a lane's thread settings may take (0: no cap). The torch lane (the first) is not capped: its
    families take one thread by default, measured fastest on 2 cores. Beside it, the other lane takes the rest."""
    if len(lanes) < 2 or lane is lanes[0]:
        return 0
    return max(1, free_cores() - 1)


def with_time_limit(cfg: ModelConfig, seconds: float) -> ModelConfig:
    """cfg with max_seconds = seconds (the pipeline's --time-limit) when its family has a time limit and cfg sets
    none of its own; else cfg unchanged."""
    if seconds > 0 and getattr(cfg, "max_seconds", None) == 0:
        return dataclasses.replace(cfg, max_seconds=seconds)
    return cfg


def progress_logger(kind: str, cfg: ModelConfig, log: Any, stream: Any = None) -> FitProgress:
    """A fit's progress reporter: a line at least every 30 s with the losses, the time so far and left, a bar on
    stream when it is a terminal. Close it after the fit."""
    unit = family(kind).steps
    early = bool(getattr(cfg, "patience", 0) or getattr(cfg, "early_stopping_rounds", 0))
    return FitProgress(kind, unit, STEPS.get(unit, ()), log, limit=getattr(cfg, "max_seconds", 0.0),
                       early_stopping=early, stream=stream)


def time_limit_message(kind: str, cfg: ModelConfig, info: dict[str, Any]) -> str:
    """One line on a fit that reached its time limit ('' when it did not): where it stopped, what it kept."""
    if not info.get("time_limited"):
        return ""
    if "rounds_run" in info:
        ran = f"round {info['rounds_run']} of {cfg.n_estimators}"
        kept = f"its best, round {info['best_iteration'] + 1}"
    else:
        ran = f"epoch {info['epochs_run']} of {cfg.epochs}"
        kept = f"its best, epoch {info['best_epoch']}" if info.get("restored_best") else "its last epoch (patience 0)"
    return (f"{kind}: reached its time limit of {cfg.max_seconds:g}s at {ran}; kept {kept} (raise --time-limit or "
            f"--{kind.replace('_', '-')}-max-seconds for a longer fit)")


def check_trained_on(features: Any, models: dict[str, Any]) -> None:
    """Raise TabduelError unless every model (a StepResult) was trained on these features."""
    for kind, model in models.items():
        trained_on = read_json(Path(model.path) / "meta.json")["features_key"]
        if trained_on != features.key:
            raise TabduelError(f"the {kind} model in {model.path} was trained on features {trained_on}, not on "
                               f"{features.key}; run `tabduel train {kind}` on the current features first")
