"""The pipeline flow and one flow per step, for running steps on their own."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from tabduel.infra.config import flatten
from tabduel.infra.store import StepResult, read_json, read_latest
from tabduel.infra.tracking import Tracker, git_commit
from tabduel.models.training import check_trained_on
from tabduel.reporting import log_ingest
from tabduel.settings import Config, dataset_name, load_config
from tabduel.tasks.evaluate import evaluate_task
from tabduel.tasks.features import features_task
from tabduel.tasks.ingest import ingest_task
from tabduel.tasks.train import attach_task, train_models, train_task


def _summary(steps: list[StepResult], tracker: Tracker | None = None, parent: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"steps": [{"step": s.step, "path": s.path, "reused": s.reused, "run_id": s.run_id}
                                     for s in steps]}
    if tracker is not None:
        out.update(tracking_uri=tracker.uri, experiment_id=tracker.experiment_id, parent_run_id=parent)
    return out


def close_stale_runs(tracker: Tracker) -> None:
    """Mark KILLED the runs that a killed or crashed tabduel process left RUNNING, and say so."""
    stale = tracker.close_stale_runs()
    if stale:
        get_run_logger().warning(f"marked {len(stale)} MLflow run(s) KILLED that a stopped process left RUNNING: "
                                 f"{', '.join(stale)}")


def _open_parent(tracker: Tracker, cfg: Config, name: str) -> str:
    parent = tracker.start_run(name, tags={"tabduel.step": name, "git_commit": git_commit(),
                                           "prefect_flow_run_id": flow_run.id, "tabduel.dataset": dataset_name(cfg)})
    tracker.log_params(parent, flatten(cfg.to_dict()))
    tracker.log_dict(parent, cfg.to_dict(), "config.json")
    return parent


def _latest(cfg: Config, step: str, command: str) -> StepResult:
    """The latest output of a step for the dataset of cfg, or an error naming the command to run."""
    name = dataset_name(cfg)
    hint = f"tabduel {command}" + (f" --dataset {cfg.ingest.dataset}" if cfg.ingest.dataset else "")
    return read_latest(cfg.pipeline.data_dir, step, name, hint)


@flow(name="tabduel-pipeline")
def pipeline_flow(config: dict[str, Any], force: bool = False) -> dict[str, Any]:
    """Raw CSV -> features -> MLP, XGBoost and linear models -> evaluation, in one MLflow parent run."""
    cfg = load_config(config)
    tracker = Tracker.shared(cfg.tracking)
    close_stale_runs(tracker)
    parent = _open_parent(tracker, cfg, "pipeline")
    with tracker.failing(parent, children=True):
        raw = ingest_task(cfg.pipeline, cfg.ingest, force)
        log_ingest(tracker, parent, raw.path)
        feats = features_task(raw, cfg.pipeline, cfg.features, force)
        models = train_models(cfg.pipeline.models, feats, cfg, parent, force)  # side by side, in lanes
        evaluation = evaluate_task(raw, feats, models, cfg.evaluate, cfg.pipeline, cfg.tracking, parent, force)
        tracker.log_artifact(parent, f"{feats.path}/manifest.json")
        tracker.finish(parent)
    summary = _summary([raw, feats, *models.values(), evaluation], tracker, parent)
    summary["metrics"] = read_json(f"{evaluation.path}/metrics.json")
    return summary


@flow(name="tabduel-ingest")
def ingest_flow(config: dict[str, Any], force: bool = False) -> dict[str, Any]:
    """Only the ingest step."""
    cfg = load_config(config)
    return _summary([ingest_task(cfg.pipeline, cfg.ingest, force)])


@flow(name="tabduel-features")
def features_flow(config: dict[str, Any], force: bool = False) -> dict[str, Any]:
    """Only the features step, on the latest ingest output."""
    cfg = load_config(config)
    raw = _latest(cfg, "ingest", "ingest")
    return _summary([features_task(raw, cfg.pipeline, cfg.features, force)])


@flow(name="tabduel-train")
def train_flow(kind: str, config: dict[str, Any], force: bool = False) -> dict[str, Any]:
    """Only one model's training, on the latest features output, in its own MLflow run."""
    cfg = load_config(config)
    feats = _latest(cfg, "features", "features")
    close_stale_runs(Tracker.shared(cfg.tracking))
    result = train_task(kind, feats, cfg.model(kind), cfg.pipeline, cfg.tracking, None, force)
    return _summary([result])


@flow(name="tabduel-evaluate")
def evaluate_flow(config: dict[str, Any], force: bool = False) -> dict[str, Any]:
    """Only evaluation, of the latest trained models, in a new MLflow parent run."""
    cfg = load_config(config)
    raw = _latest(cfg, "ingest", "ingest")
    feats = _latest(cfg, "features", "features")
    latest = {kind: _latest(cfg, f"models/{kind}", f"train {kind}") for kind in cfg.pipeline.models}
    check_trained_on(feats, latest)  # refuse before any MLflow run is opened
    tracker = Tracker.shared(cfg.tracking)
    close_stale_runs(tracker)
    parent = _open_parent(tracker, cfg, "evaluate")
    with tracker.failing(parent, children=True):
        models = {kind: attach_task(kind, m, cfg.tracking, parent) for kind, m in latest.items()}
        evaluation = evaluate_task(raw, feats, models, cfg.evaluate, cfg.pipeline, cfg.tracking, parent, force)
        tracker.finish(parent)
    summary = _summary([evaluation], tracker, parent)
    summary["metrics"] = read_json(f"{evaluation.path}/metrics.json")
    return summary
