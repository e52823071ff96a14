"""The evaluate task: metrics on valid and test, comparison table and plots, logged to MLflow."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tabduel.data.dataset import load_spec
from tabduel.data.features import ROW
from tabduel.data.labels import original_scale, scale_label
from tabduel.infra.config import EvaluateConfig, PipelineConfig, TrackingConfig, to_plain
from tabduel.infra.store import (
    StepResult,
    atomic_write_bytes,
    atomic_write_json,
    code_fingerprint,
    materialize,
    publish,
    read_json,
    sha256_tree,
    step_key,
)
from tabduel.infra.tracking import Tracker
from tabduel.models.evaluate import comparison, run_evaluation, to_markdown
from tabduel.models.registry import family
from tabduel.models.training import check_trained_on
from tabduel.reporting import log_evaluation

CODE = ["tabduel.models.evaluate", "tabduel.infra.plots", "tabduel.data.labels", "tabduel.data.target",
        "tabduel.models.training", "tabduel.data.features", __name__]


def draw_plots(out: Path, ingested: StepResult, features: StepResult, predictions: pd.DataFrame,
               models: dict[str, StepResult], cfg: EvaluateConfig) -> None:
    """All PNGs of an evaluation into out/plots, labelled from the dataset spec and the target transform."""
    from tabduel.infra import plots  # matplotlib: imported only when plots are drawn

    folder = out / "plots"
    folder.mkdir()
    spec = load_spec(Path(ingested.path) / "dataset.toml")
    transform, params = target_scale(features)
    scale = scale_label(spec.target_title, transform, params)
    kinds = list(models)
    original = original_scale(predictions, kinds, transform, params)
    if spec.date_column:  # sums per day on the original scale, over every split
        table = pd.read_parquet(Path(ingested.path) / "table.parquet", columns=[spec.date_column])
        rows = predictions[ROW].to_numpy()
        plots.daily_totals(table[spec.date_column].to_numpy()[rows], original["observed"].to_numpy(),
                           {kind: original[f"pred_{kind}"].to_numpy() for kind in kinds}, spec.target_label,
                           spec.target_unit, folder / "daily_totals.png", cfg.dpi)
    else:
        plots.by_split(original, kinds, spec.target_title, folder / "predicted_vs_observed_by_split.png", cfg.dpi)
    for kind, model in models.items():
        plots.residuals(predictions, kind, folder / f"residuals_{kind}.png", cfg.dpi, scale)
        plots.predicted_vs_observed(predictions, kind, folder / f"predicted_vs_observed_{kind}.png", cfg.dpi, scale)
        history = read_json(Path(model.path) / "history.json")
        if history:
            per_epoch = family(kind).steps == "epoch"
            plots.loss_history(history, folder / f"loss_history_{kind}.png", cfg.dpi, title=f"{kind}: training history",
                               xlabel="epoch" if per_epoch else "boosting round",
                               ylabel=f"{'MSE' if per_epoch else 'RMSE'}, {scale}")


def target_scale(features: StepResult) -> tuple[str, dict]:
    """The target transform of a features output and its params fitted on train (e.g. yeo-johnson's lambda)."""
    manifest = read_json(Path(features.path) / "manifest.json")
    return manifest.get("target_transform", "none"), manifest.get("target_params") or {}


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(ingested: StepResult, features: StepResult, models: dict[str, StepResult], cfg: EvaluateConfig,
                  pipeline: PipelineConfig, tracking: TrackingConfig, parent_run_id: str | None = None,
                  force: bool = False) -> StepResult:
    """Write <data_dir>/evaluate/<key>/ and log metrics and plots; ends the model runs."""
    log = get_run_logger()
    check_trained_on(features, models)
    inputs = {"ingest": sha256_tree(ingested.path), "features": sha256_tree(features.path),
              **{f"model-{kind}": sha256_tree(m.path) for kind, m in sorted(models.items())}}
    key = step_key("evaluate", inputs, to_plain(cfg), code_fingerprint(CODE, ["matplotlib", "pandas", "numpy"]))

    def build(tmp: Path) -> dict:
        predictions, metrics = run_evaluation(features.path, {kind: m.path for kind, m in models.items()})
        predictions.to_parquet(tmp / "predictions.parquet", index=False)
        atomic_write_json(tmp / "metrics.json", metrics)
        table = comparison(metrics)
        table.to_csv(tmp / "comparison.csv")
        atomic_write_bytes(tmp / "comparison.md", to_markdown(table).encode())
        if cfg.plots:
            draw_plots(tmp, ingested, features, predictions, models, cfg)
        return {}

    path, reused = materialize(pipeline.data_dir, "evaluate", key, force, build)
    tracker = Tracker.shared(tracking)
    runs = {kind: m.run_id for kind, m in models.items() if m.run_id}
    log_evaluation(tracker, path, parent_run_id, runs)
    for run_id in runs.values():
        tracker.finish(run_id)
    spec = load_spec(Path(ingested.path) / "dataset.toml")
    transform, params = target_scale(features)
    log.info(f"comparison (metrics of {scale_label(spec.target_title, transform, params)}):\n"
             + (path / "comparison.md").read_text())
    return publish(pipeline.data_dir, "evaluate", StepResult("evaluate", str(path), key, reused,
                                                                  dataset=features.dataset))
