"""The XGBoost reference model: hist trees, early stopping on the valid split."""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import xgboost as xgb

from tabduel.engine.data import Data
from tabduel.infra.config import XGBoostConfig
from tabduel.infra.errors import DivergedError, TrainingError
from tabduel.infra.runtime import cpu_threads, resolve_xgboost_device, stopwatch

RoundCallback = Callable[[int, int, float], None]  # (round, max rounds, valid rmse)


@dataclass
class XGBFit:
    """A fitted XGBRegressor, its per-round eval metric and facts about the run."""

    model: xgb.XGBRegressor
    history: dict[str, list[float]]
    info: dict[str, Any]


class _Progress(xgb.callback.TrainingCallback):
    """Reports each boosting round's valid rmse to a plain callback; stops boosting once max_seconds have passed."""

    def __init__(self, total: int, report: RoundCallback | None, max_seconds: float, clock: str):
        self.total, self.report, self.max_seconds = total, report, max_seconds
        self.elapsed = stopwatch(clock)
        self.timed_out = False

    def before_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
        # Checked before a round, not after: after one, True would end training before XGBoost's early stopping
        # (called after this callback) saw that round, and a best last round would be lost.
        self.timed_out = bool(self.max_seconds) and epoch > 0 and self.elapsed() >= self.max_seconds
        return self.timed_out  # True ends training; early stopping keeps the best round so far

    def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
        if self.report:
            self.report(epoch + 1, self.total, float(evals_log["validation_1"]["rmse"][-1]))
        return False


def fit(data: Data, cfg: XGBoostConfig, on_round: RoundCallback | None = None) -> XGBFit:
    """Fit on train with early stopping on valid; keep the best iteration."""
    device = resolve_xgboost_device(cfg.device)
    n_jobs = cpu_threads(cfg.n_jobs)
    progress = _Progress(cfg.n_estimators, on_round, cfg.max_seconds, cfg.time_clock)
    model = xgb.XGBRegressor(
        tree_method="hist", device=device, n_estimators=cfg.n_estimators, learning_rate=cfg.learning_rate,
        max_depth=cfg.max_depth, min_child_weight=cfg.min_child_weight, subsample=cfg.subsample,
        colsample_bytree=cfg.colsample_bytree, reg_lambda=cfg.reg_lambda, reg_alpha=cfg.reg_alpha,
        early_stopping_rounds=cfg.early_stopping_rounds or None, random_state=cfg.seed, n_jobs=n_jobs,
        eval_metric="rmse", callbacks=[progress] if on_round or cfg.max_seconds else None,
    )
    start = time.perf_counter()
    with xgboost_errors():
        model.fit(data.x_train, data.y_train, eval_set=[(data.x_train, data.y_train), (data.x_valid, data.y_valid)],
                  verbose=False)
    seconds = time.perf_counter() - start
    evals = model.evals_result()
    # Not "valid_rmse": that name is the evaluation metric, and MLflow shows a metric's highest step.
    history = {"round_train_rmse": evals["validation_0"]["rmse"], "round_valid_rmse": evals["validation_1"]["rmse"]}
    bad = next((i for i, v in enumerate(history["round_train_rmse"]) if not np.isfinite(v)), None)
    if bad is not None:
        raise DivergedError(f"XGBoost diverged at round {bad + 1}: its train RMSE is {history['round_train_rmse'][bad]}"
                            f" (learning_rate {cfg.learning_rate:g}; try a lower --xgboost-learning-rate)")
    best = getattr(model, "best_iteration", None)
    info = {"device": device, "n_jobs": n_jobs, "rounds_run": len(history["round_valid_rmse"]),
            "best_iteration": len(history["round_valid_rmse"]) - 1 if best is None else int(best),
            "train_seconds": seconds, "time_limited": progress.timed_out}
    model.set_params(callbacks=None)  # keep the saved model free of our callback
    return XGBFit(model, history, info)


def first_line(exc: BaseException) -> str:
    """The meaningful part of an XGBoost error: its first line without the timestamp, source path and 'Check
    failed' preamble, and none of the C++ stack trace that follows."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    text = re.sub(r"^\[\d{2}:\d{2}:\d{2}\]\s*", "", text)  # [12:34:56]
    text = re.sub(r"^\S+\.(cc|cu|h|cuh):\d+:\s*", "", text)  # /workspace/src/data/data.cc:512:
    text = re.sub(r"^Check failed:\s*[^:]*:\s*", "", text)  # Check failed: valid:
    return text[:500]


@contextlib.contextmanager
def xgboost_errors() -> Iterator[None]:
    """Turn an XGBoostError raised in the block into one TrainingError line."""
    try:
        yield
    except xgb.core.XGBoostError as exc:
        raise TrainingError(f"XGBoost failed: {first_line(exc)}") from exc


def save(result: XGBFit, directory: Path) -> None:
    """Write the booster in XGBoost's JSON format."""
    result.model.save_model(directory / "model.json")


def load(directory: str | Path) -> xgb.XGBRegressor:
    """Load the saved model; predict() uses its best iteration."""
    model = xgb.XGBRegressor()
    model.load_model(Path(directory) / "model.json")
    return model


def predict(model: xgb.XGBRegressor, x: np.ndarray) -> np.ndarray:
    """(rows, features) -> (rows,) predictions at the best iteration."""
    with xgboost_errors():
        return model.predict(x).astype(np.float32)
