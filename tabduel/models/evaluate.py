"""Evaluate: predictions for every split, metrics, and the comparison table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tabduel.data import target
from tabduel.data.dataset import load_spec
from tabduel.data.features import ROW, SPLITS, load_xy
from tabduel.data.labels import original_scale, scale_label
from tabduel.models.registry import family
from tabduel.models.training import predictor

METRICS = ("mse", "rmse", "mae", "r2")
ORIGINAL = "_orig"  # suffix of a metric on the target's original scale


def regression_metrics(y: np.ndarray, yhat: np.ndarray) -> dict[str, float]:
    """MSE, RMSE, MAE and R^2 of predictions yhat for targets y."""
    y = np.asarray(y, dtype=np.float64)
    err = np.asarray(yhat, dtype=np.float64) - y
    mse = float(np.mean(err**2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(err**2)) / ss_tot if ss_tot > 0 else float("nan")
    return {"mse": mse, "rmse": float(np.sqrt(mse)), "mae": float(np.mean(np.abs(err))), "r2": r2}


def predict_all(features_dir: str | Path, models: dict[str, str]) -> pd.DataFrame:
    """One row per data row: row, split, observed target and pred_<model> for each model."""
    features_dir = Path(features_dir)
    manifest = json.loads((features_dir / "manifest.json").read_text())
    predict = {kind: predictor(kind, path) for kind, path in models.items()}
    native = {kind: family(kind).native_missing for kind in models}
    frames = []
    for split in SPLITS:
        path = features_dir / f"{split}.parquet"
        x, y = load_xy(str(path), manifest)
        frame = pd.DataFrame({ROW: pd.read_parquet(path, columns=[ROW])[ROW], "split": split, "observed": y})
        x_native = load_xy(str(path), manifest, True)[0] if any(native.values()) else None
        for kind, fn in predict.items():
            frame[f"pred_{kind}"] = fn(x_native if native[kind] else x)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def metrics_table(predictions: pd.DataFrame, models: list[str], transform: str = "none",
                  params: dict[str, Any] | None = None) -> dict[str, dict[str, float]]:
    """{model: {'valid_mse': ..., 'test_r2': ..., 'test_rmse_orig': ...}} on the valid and test splits.

    Unsuffixed metrics are on the model's (transformed) scale; `_orig` ones on the target's original scale, when
    the target is transformed.
    """
    out: dict[str, dict[str, float]] = {}
    for kind in models:
        out[kind] = {}
        for split in ("valid", "test"):
            part = predictions[predictions["split"] == split]
            for name, value in regression_metrics(part["observed"], part[f"pred_{kind}"]).items():
                out[kind][f"{split}_{name}"] = value
            if transform != "none":
                orig = regression_metrics(target.inverse(part["observed"].to_numpy(), transform, params),
                                          target.inverse(part[f"pred_{kind}"].to_numpy(), transform, params))
                for name, value in orig.items():
                    out[kind][f"{split}_{name}{ORIGINAL}"] = value
    return out


def comparison(metrics: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Models as rows, metrics as columns (original-scale test metrics last, when present), best valid MSE first."""
    columns = [f"{split}_{name}" for split in ("valid", "test") for name in METRICS]
    columns += [c for c in (f"test_{name}{ORIGINAL}" for name in ("rmse", "mae", "r2"))
                if c in next(iter(metrics.values()))]
    frame = pd.DataFrame.from_dict(metrics, orient="index")[columns]
    frame.index.name = "model"
    return frame.sort_values("valid_mse")


def to_markdown(frame: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub-flavoured Markdown table of a frame with a named index."""
    head = [frame.index.name or ""] + list(frame.columns)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * len(frame.columns)) + "|"]
    for idx, row in frame.iterrows():
        lines.append("| " + " | ".join([str(idx)] + [f"{v:.{digits}f}" for v in row]) + " |")
    return "\n".join(lines) + "\n"


def run_evaluation(features_dir: str | Path, models: dict[str, str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Predictions of every model on every split, and their metrics."""
    predictions = predict_all(features_dir, models)
    transform, params = target_scale(features_dir)
    return predictions, metrics_table(predictions, list(models), transform, params)


def target_scale(features_dir: str | Path) -> tuple[str, dict]:
    """The target transform of a features output and its params fitted on train (e.g. yeo-johnson's lambda)."""
    manifest = json.loads((Path(features_dir) / "manifest.json").read_text())
    return manifest.get("target_transform", "none"), manifest.get("target_params") or {}


def draw_plots(out: Path, ingest_dir: str | Path, features_dir: str | Path, predictions: pd.DataFrame,
               models: dict[str, str | Path], dpi: int) -> None:
    """All PNGs of an evaluation into out/plots, labelled from the dataset spec and the target transform."""
    from tabduel.infra import plots  # matplotlib: imported only when plots are drawn

    folder = out / "plots"
    folder.mkdir()
    spec = load_spec(Path(ingest_dir) / "dataset.toml")
    transform, params = target_scale(features_dir)
    scale = scale_label(spec.target_title, transform, params)
    kinds = list(models)
    original = original_scale(predictions, kinds, transform, params)
    if spec.date_column:  # sums per day on the original scale, over every split
        table = pd.read_parquet(Path(ingest_dir) / "table.parquet", columns=[spec.date_column])
        rows = predictions[ROW].to_numpy()
        plots.daily_totals(table[spec.date_column].to_numpy()[rows], original["observed"].to_numpy(),
                           {kind: original[f"pred_{kind}"].to_numpy() for kind in kinds}, spec.target_label,
                           spec.target_unit, folder / "daily_totals.png", dpi)
    else:
        plots.by_split(original, kinds, spec.target_title, folder / "predicted_vs_observed_by_split.png", dpi)
    for kind, model_dir in models.items():
        plots.residuals(predictions, kind, folder / f"residuals_{kind}.png", dpi, scale)
        plots.predicted_vs_observed(predictions, kind, folder / f"predicted_vs_observed_{kind}.png", dpi, scale)
        history = json.loads((Path(model_dir) / "history.json").read_text())
        if history:
            per_epoch = family(kind).steps == "epoch"
            plots.loss_history(history, folder / f"loss_history_{kind}.png", dpi, title=f"{kind}: training history",
                               xlabel="epoch" if per_epoch else "boosting round",
                               ylabel=f"{'MSE' if per_epoch else 'RMSE'}, {scale}")
