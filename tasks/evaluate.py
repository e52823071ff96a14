"""The evaluate task: metrics on valid and test, comparison table and plots, logged to MLflow."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tabduel.data.dataset import load_spec
from tabduel.data.labels import scale_label
from tabduel.infra.config import EvaluateConfig, PipelineConfig, TrackingConfig, to_plain
from tabduel.infra.store import (
    StepResult,
    atomic_write_bytes,
    atomic_write_json,
    code_fingerprint,
    materialize,
    publish,
    sha256_tree,
    step_key,
)
from tabduel.infra.tracking import Tracker
from tabduel.models.evaluate import comparison, draw_plots, run_evaluation, target_scale, to_markdown
from tabduel.models.training import check_trained_on
from tabduel.reporting import log_evaluation

CODE = ["tabduel.models.evaluate", "tabduel.infra.plots", "tabduel.data.labels", "tabduel.data.target",
        "tabduel.models.training", "tabduel.data.features", __name__]


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
            draw_plots(tmp, ingested.path, features.path, predictions,
                       {kind: m.path for kind, m in models.items()}, cfg.dpi)
        return {}

    path, reused = materialize(pipeline.data_dir, "evaluate", key, force, build)
    tracker = Tracker.shared(tracking)
    runs = {kind: m.run_id for kind, m in models.items() if m.run_id}
    log_evaluation(tracker, path, parent_run_id, runs)
    for run_id in runs.values():
        tracker.finish(run_id)
    spec = load_spec(Path(ingested.path) / "dataset.toml")
    transform, params = target_scale(features.path)
    log.info(f"comparison (metrics of {scale_label(spec.target_title, transform, params)}):\n"
             + (path / "comparison.md").read_text())
    return publish(pipeline.data_dir, "evaluate", StepResult("evaluate", str(path), key, reused,
                                                                  dataset=features.dataset))
